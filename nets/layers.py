"""Binary and k-bit quantized layers: plain, trainable torch modules.

Conventions (shared with the XNOR engine, ``mapping/fpga.py``):

* ``BinarySign``: sign with **sign(0) = +1** (torch's ``sign`` gives 0), straight-through gradient
  clipped to |x| <= 1 (Hubara et al., "Binarized Neural Networks", NeurIPS 2016).
* ``BinaryConv2d`` / ``BinaryLinear``: latent float weights, ``sign(w)`` (±1) in the forward pass.
  The input is whatever the previous layer produced: ±1 from a ``BinarySign``, k-bit codes from a
  ``QuantAct``, or a raw (e.g. 8-bit integer) image for a first layer. ``pad_value`` states the
  padding semantics per layer: 0 (torch zero padding; the engine masks the taps out), +1 (Larq
  "one padding") or -1 (daBNN).
* ``QuantConv2d`` / ``QuantLinear`` (``bits`` = k): weights on the 2^k **odd** levels
  ``{-(2^k-1), ..., -1, +1, ..., 2^k-1} * s`` — exactly the values a sum of k {-1,+1} branches
  ``sum_i 2^i t_i`` represents (Sun et al., arXiv 2106.09886) — with a power-of-two scale ``s`` so
  the float forward pass is exact. k = 1 gives ±s.
* ``QuantAct`` (``bits`` = k): unsigned activations ``q * scale`` with codes ``q`` in
  ``[0, 2^k - 1]``, ``q = clamp(round_half_even(x / scale))``; scale defaults to 2^-k (a power of
  two, values in [0, 1)). Clipped straight-through gradient.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["binary_sign", "BinarySign", "BinaryConv2d", "BinaryLinear", "QuantAct", "QuantConv2d",
           "QuantLinear", "quantize_weight_odd"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with sign(0) = +1; gradient passes straight through where |x| <= 1."""
    return _SignSTE.apply(x)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _check_bits(bits: int, lo: int = 1, hi: int = 16) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(f"bits must be an integer in [{lo}, {hi}], got {bits!r}")
    return bits


def _check_pad_value(v: float) -> float:
    if v not in (0, 1, -1):
        raise ValueError(f"pad_value must be 0, +1 or -1, got {v!r}")
    return float(v)


def quantize_weight_odd(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """Quantize ``w`` onto the 2^bits odd levels times a power-of-two scale.

    Returns ``(w_q, s)`` with ``w_q = w_int * s``, ``w_int`` odd in [-(2^k-1), 2^k-1] and
    ``s = 2^ceil(log2(max|w| / (2^k-1)))`` (so the largest weight is representable). The gradient
    of ``w_q`` w.r.t. ``w`` is the identity (straight-through)."""
    n = 2**bits - 1
    m = float(w.detach().abs().max()) if w.numel() else 0.0
    s = 2.0 ** math.ceil(math.log2(m / n)) if m > 0 else 1.0
    u = torch.clamp(torch.round((w.detach() / s + n) / 2), 0, n)
    w_q = (2 * u - n) * s
    return w + (w_q - w).detach(), s


class BinarySign(nn.Module):
    """Binarize activations to ±1 (sign(0) = +1), straight-through gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_sign(x)


class BinaryConv2d(nn.Conv2d):
    """Conv2d with ±1 weights (latent float weights, sign in the forward pass).

    ``pad_value``: value of the padded border, 0 (torch zero padding), +1 or -1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, pad_value: float = 0.0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if isinstance(self.padding, str):
            raise ValueError("BinaryConv2d takes integer padding")
        self.pad_value = _check_pad_value(pad_value)

    @property
    def binary_weight(self) -> torch.Tensor:
        """The ±1 weights the forward pass uses (detached)."""
        return binary_sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_padded(self, x, binary_sign(self.weight))


class BinaryLinear(nn.Linear):
    """Linear layer with ±1 weights (latent float weights, sign in the forward pass)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias)

    @property
    def binary_weight(self) -> torch.Tensor:
        return binary_sign(self.weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binary_sign(self.weight), self.bias)


class _OddLevelWeights:
    """The k-bit odd-level weights (and their power-of-two scale) a quantized layer computes with."""

    weight: torch.Tensor
    bits: int

    @property
    def quant_weight(self) -> torch.Tensor:
        return quantize_weight_odd(self.weight.detach(), self.bits)[0]

    @property
    def weight_scale(self) -> float:
        return quantize_weight_odd(self.weight.detach(), self.bits)[1]


class QuantConv2d(_OddLevelWeights, nn.Conv2d):
    """Conv2d with k-bit odd-level weights (``bits`` = k) and a power-of-two scale."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, bits: int = 2):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if isinstance(self.padding, str):
            raise ValueError("QuantConv2d takes integer padding")
        self.bits = _check_bits(bits)
        self.pad_value = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_padded(self, x, quantize_weight_odd(self.weight, self.bits)[0])


class QuantLinear(_OddLevelWeights, nn.Linear):
    """Linear layer with k-bit odd-level weights (``bits`` = k) and a power-of-two scale."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, bits: int = 2):
        super().__init__(in_features, out_features, bias)
        self.bits = _check_bits(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, quantize_weight_odd(self.weight, self.bits)[0], self.bias)


class QuantAct(nn.Module):
    """Unsigned k-bit activation: ``clamp(round(x / scale), 0, 2^k - 1) * scale``.

    ``scale`` defaults to 2^-k (values in [0, 1)); a power of two keeps the next layer's float
    arithmetic exact. Gradient: straight-through inside the clipping range, zero outside."""

    def __init__(self, bits: int = 2, scale: float | None = None):
        super().__init__()
        self.bits = _check_bits(bits)
        self.scale = float(scale) if scale is not None else 2.0 ** -bits
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = (2**self.bits - 1) * self.scale
        xc = torch.clamp(x, 0.0, top)
        q = torch.clamp(torch.round(x / self.scale), 0, 2**self.bits - 1) * self.scale
        return xc + (q - xc).detach()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scale={self.scale}"


def _conv_padded(m: nn.Conv2d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    ph, pw = _pair(m.padding)
    if m.pad_value != 0 and (ph or pw):
        x = F.pad(x, (pw, pw, ph, ph), value=m.pad_value)
        return F.conv2d(x, w, m.bias, m.stride, 0, m.dilation, m.groups)
    return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _register() -> None:
    from mapping.binary import register_layers

    register_layers(BinarySign=BinarySign, BinaryConv2d=BinaryConv2d, BinaryLinear=BinaryLinear,
                    QuantConv2d=QuantConv2d, QuantLinear=QuantLinear, QuantAct=QuantAct)


_register()
