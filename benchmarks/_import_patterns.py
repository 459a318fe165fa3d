"""The catalogue of ``bench_import_patterns.py``: small hand-written torch modules, one layer or op each, grouped by
category, each with a realistic input shape (batch 1; the bench also runs batch 2 where ``batch2`` is True).

A pattern is a builder (``build() -> nn.Module``, seeded by the bench) so every run starts from fresh weights. Ops that
need a second tensor take it from a buffer or from the input itself: ``hwsim.simulate`` feeds one input ``x``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Pattern:
    category: str                         # the table it appears in
    name: str                             # unique over the catalogue
    build: Callable[[], nn.Module]        # a fresh module (weights from torch's global seed)
    shape: tuple[int, ...]                # input shape at batch 1
    batch2: bool = True                   # whether batch 2 is meaningful (False: sequence-first, batch 1 only)
    note: str = ""                        # why batch2 is False, or what the pattern stands for


class Fn(nn.Module):
    """``forward(x) = fn(self, x)``: a one-op module; submodules and buffers come in as keyword arguments."""

    def __init__(self, fn: Callable, **parts):
        super().__init__()
        self.fn = fn
        for k, v in parts.items():
            if isinstance(v, nn.Module):
                self.add_module(k, v)
            else:
                self.register_buffer(k, v)

    def forward(self, x):
        return self.fn(self, x)


def fn(f: Callable, **parts) -> Callable[[], nn.Module]:
    return lambda: Fn(f, **{k: (v() if callable(v) and not isinstance(v, (torch.Tensor, nn.Module)) else v)
                            for k, v in parts.items()})


def seq(*mods: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(*(m() for m in mods))


def _randn(*shape: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(*shape)


IMG = (1, 8, 12, 12)      # a small feature map
VEC = (1, 16)             # features
SEQ = (1, 6, 16)          # (batch, tokens, features)
SIG = (1, 4, 32)          # (batch, channels, length)

_C = "convolution"
_P = "pooling"
_N = "normalisation"
_A = "activation"
_M = "arithmetic and math"
_D = "data movement"
_K = "masks"
_T = "attention"
_R = "recurrent"
_S = "resampling"
_Q = "quantization-style"
_B = "batch handling"
_X = "beyond the IR (expected refusals)"


def _conv() -> list[Pattern]:
    c = nn.Conv2d
    return [
        Pattern(_C, "Conv2d 3x3", lambda: c(3, 8, 3, padding=1), (1, 3, 16, 16)),
        Pattern(_C, "Conv2d 3x3 stride 2", lambda: c(8, 16, 3, stride=2, padding=1), IMG),
        Pattern(_C, "Conv2d 1x1 no bias", lambda: c(8, 16, 1, bias=False), IMG),
        Pattern(_C, "Conv2d grouped (g=4)", lambda: c(8, 16, 3, padding=1, groups=4), IMG),
        Pattern(_C, "Conv2d depthwise", lambda: c(8, 8, 3, padding=1, groups=8), IMG),
        Pattern(_C, "Conv2d dilated (d=2)", lambda: c(8, 8, 3, padding=2, dilation=2), IMG),
        Pattern(_C, "Conv2d padding='same' 5x5", lambda: c(8, 8, 5, padding="same"), IMG),
        Pattern(_C, "Conv2d 1x5 asymmetric kernel", lambda: c(8, 8, (1, 5), padding=(0, 2)), IMG),
        Pattern(_C, "Conv2d 7x7 stride 2 stem", lambda: c(3, 8, 7, stride=2, padding=3), (1, 3, 32, 32)),
        Pattern(_C, "Conv2d padding_mode=reflect", lambda: c(8, 8, 3, padding=1, padding_mode="reflect"), IMG),
        Pattern(_C, "Conv2d padding_mode=replicate", lambda: c(8, 8, 3, padding=1, padding_mode="replicate"), IMG),
        Pattern(_C, "Conv2d padding_mode=circular", lambda: c(8, 8, 3, padding=1, padding_mode="circular"), IMG),
        Pattern(_C, "F.conv2d with a weight buffer", fn(lambda m, x: F.conv2d(x, m.w, padding=1), w=_randn(4, 8, 3, 3)),
                IMG),
        Pattern(_C, "Conv1d k3", lambda: nn.Conv1d(4, 8, 3, padding=1), SIG),
        Pattern(_C, "Conv1d depthwise dilated stride 2",
                lambda: nn.Conv1d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4), SIG),
        Pattern(_C, "ConvTranspose2d 2x2 stride 2", lambda: nn.ConvTranspose2d(8, 4, 2, stride=2), IMG),
        Pattern(_C, "ConvTranspose2d 3x3 s2 p1 output_padding 1",
                lambda: nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), IMG),
        Pattern(_C, "ConvTranspose2d dilated (d=2)", lambda: nn.ConvTranspose2d(8, 4, 3, stride=2, dilation=2), IMG),
        Pattern(_C, "ConvTranspose2d grouped", lambda: nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=2), IMG),
        Pattern(_C, "Conv3d 3x3x3", lambda: nn.Conv3d(2, 4, 3, padding=1), (1, 2, 4, 8, 8)),
        Pattern(_C, "Linear", lambda: nn.Linear(16, 8), VEC),
        Pattern(_C, "Linear on tokens (B, L, F)", lambda: nn.Linear(16, 8), SEQ),
        Pattern(_C, "Conv-BN-ReLU block", seq(lambda: c(8, 8, 3, padding=1, bias=False), lambda: nn.BatchNorm2d(8),
                                              nn.ReLU), IMG),
    ]


def _pool() -> list[Pattern]:
    return [
        Pattern(_P, "MaxPool2d 2x2", lambda: nn.MaxPool2d(2), IMG),
        Pattern(_P, "MaxPool2d 3x3 s2 p1", lambda: nn.MaxPool2d(3, 2, 1), IMG),
        Pattern(_P, "MaxPool2d ceil_mode", lambda: nn.MaxPool2d(3, 2, ceil_mode=True), (1, 8, 11, 11)),
        Pattern(_P, "AvgPool2d 2x2", lambda: nn.AvgPool2d(2), IMG),
        Pattern(_P, "AvgPool2d 3x3 p1 count_include_pad=False",
                lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False), IMG),
        Pattern(_P, "AvgPool2d ceil_mode", lambda: nn.AvgPool2d(2, ceil_mode=True), (1, 8, 11, 11)),
        Pattern(_P, "AvgPool2d 3 s2 p1 ceil_mode (last window in the padding)",
                lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True), (1, 8, 10, 10)),
        Pattern(_P, "AvgPool2d divisor_override", lambda: nn.AvgPool2d(2, divisor_override=3), IMG),
        Pattern(_P, "MaxPool2d dilation 2", lambda: nn.MaxPool2d(3, 1, dilation=2), IMG),
        Pattern(_P, "MaxPool2d return_indices (values used)",
                fn(lambda m, x: m.p(x)[0], p=lambda: nn.MaxPool2d(2, return_indices=True)), IMG),
        Pattern(_P, "AdaptiveAvgPool2d 1", lambda: nn.AdaptiveAvgPool2d(1), IMG),
        Pattern(_P, "AdaptiveAvgPool2d 3x3 (divisible)", lambda: nn.AdaptiveAvgPool2d(3), IMG),
        Pattern(_P, "AdaptiveAvgPool2d 5x5 (not divisible)", lambda: nn.AdaptiveAvgPool2d(5), IMG),
        Pattern(_P, "AdaptiveMaxPool2d 1", lambda: nn.AdaptiveMaxPool2d(1), IMG),
        Pattern(_P, "AdaptiveMaxPool2d 3", lambda: nn.AdaptiveMaxPool2d(3), IMG),
        Pattern(_P, "global mean x.mean((2, 3))", fn(lambda m, x: x.mean((2, 3))), IMG),
        Pattern(_P, "MaxPool1d 2", lambda: nn.MaxPool1d(2), SIG),
        Pattern(_P, "AvgPool1d 3 s2 p1", lambda: nn.AvgPool1d(3, 2, 1), SIG),
        Pattern(_P, "AdaptiveAvgPool1d 1", lambda: nn.AdaptiveAvgPool1d(1), SIG),
        Pattern(_P, "LPPool2d p=2", lambda: nn.LPPool2d(2, 2), IMG),
        Pattern(_P, "MaxPool3d 2", lambda: nn.MaxPool3d(2), (1, 2, 4, 8, 8)),
        Pattern(_P, "AvgPool3d 2", lambda: nn.AvgPool3d(2), (1, 2, 4, 8, 8)),
    ]


def _norm() -> list[Pattern]:
    def bn(n):  # non-trivial running statistics, so eval mode is not the identity
        def build():
            m = nn.BatchNorm2d(n) if n == 8 else nn.BatchNorm1d(n)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            return m
        return build
    return [
        Pattern(_N, "BatchNorm2d", bn(8), IMG),
        Pattern(_N, "BatchNorm1d on features", bn(16), VEC),
        Pattern(_N, "BatchNorm1d on (B, C, L)", bn(4), SIG),
        Pattern(_N, "LayerNorm last dim", lambda: nn.LayerNorm(16), SEQ),
        Pattern(_N, "LayerNorm over (C, H, W)", lambda: nn.LayerNorm([8, 12, 12]), IMG),
        Pattern(_N, "GroupNorm 4 groups", lambda: nn.GroupNorm(4, 8), IMG),
        Pattern(_N, "InstanceNorm2d", lambda: nn.InstanceNorm2d(8), IMG),
        Pattern(_N, "InstanceNorm2d affine", lambda: nn.InstanceNorm2d(8, affine=True), IMG),
        Pattern(_N, "RMSNorm", lambda: nn.RMSNorm(16), SEQ),
        Pattern(_N, "F.normalize (L2 over channels)", fn(lambda m, x: F.normalize(x, dim=1)), IMG),
        Pattern(_N, "LocalResponseNorm", lambda: nn.LocalResponseNorm(3), IMG),
    ]


def _act() -> list[Pattern]:
    acts: list[tuple[str, Callable[[], nn.Module]]] = [
        ("ReLU", nn.ReLU), ("ReLU6", nn.ReLU6), ("LeakyReLU 0.1", lambda: nn.LeakyReLU(0.1)), ("ELU", nn.ELU),
        ("SELU", nn.SELU), ("CELU alpha 0.5", lambda: nn.CELU(0.5)), ("GELU", nn.GELU),
        ("GELU tanh", lambda: nn.GELU("tanh")), ("SiLU", nn.SiLU), ("Mish", nn.Mish), ("Sigmoid", nn.Sigmoid),
        ("Tanh", nn.Tanh), ("Hardsigmoid", nn.Hardsigmoid), ("Hardswish", nn.Hardswish),
        ("Hardtanh -2..2", lambda: nn.Hardtanh(-2, 2)), ("PReLU (one slope)", nn.PReLU),
        ("PReLU per channel", lambda: nn.PReLU(8)), ("Softplus", nn.Softplus),
        ("Softplus beta 2 threshold 5", lambda: nn.Softplus(2, 5)), ("LogSigmoid", nn.LogSigmoid),
        ("Softsign", nn.Softsign), ("Tanhshrink", nn.Tanhshrink), ("Threshold 0.1 -> 20", lambda: nn.Threshold(0.1, 20)),
        ("Hardshrink", nn.Hardshrink), ("Softshrink", nn.Softshrink), ("Softmax over channels", lambda: nn.Softmax(1)),
        ("LogSoftmax over channels", lambda: nn.LogSoftmax(1)), ("Softmin over channels", lambda: nn.Softmin(1)),
        ("Softmax2d", nn.Softmax2d), ("GLU over channels", lambda: nn.GLU(1)), ("RReLU (eval)", nn.RReLU),
    ]
    return [Pattern(_A, n, b, IMG) for n, b in acts] + [
        Pattern(_A, "torch.sign", fn(lambda m, x: torch.sign(x)), IMG),
    ]


def _math() -> list[Pattern]:
    b = _randn(1, 8, 1, 1)
    return [
        Pattern(_M, "add per-channel bias (broadcast)", fn(lambda m, x: x + m.b, b=b), IMG),
        Pattern(_M, "mul per-channel scale (broadcast)", fn(lambda m, x: x * m.b, b=b), IMG),
        Pattern(_M, "div by per-row norm (broadcast)", fn(lambda m, x: x / (x.abs().sum(-1, keepdim=True) + 1)), IMG),
        Pattern(_M, "sub scalar, rsub", fn(lambda m, x: (x - 0.5) + (1 - x) * 2), IMG),
        Pattern(_M, "residual x + f(x)", fn(lambda m, x: x + m.conv(x), conv=lambda: nn.Conv2d(8, 8, 3, padding=1)),
                IMG),
        Pattern(_M, "pow 2", fn(lambda m, x: x ** 2), IMG),
        Pattern(_M, "pow 3", fn(lambda m, x: torch.pow(x, 3)), IMG),
        Pattern(_M, "pow 0.5 of |x|+1", fn(lambda m, x: (x.abs() + 1) ** 0.5), IMG),
        Pattern(_M, "sqrt of |x|+eps", fn(lambda m, x: torch.sqrt(x.abs() + 1e-3)), IMG),
        Pattern(_M, "rsqrt of x^2+1", fn(lambda m, x: torch.rsqrt(x * x + 1)), IMG),
        Pattern(_M, "exp", fn(lambda m, x: torch.exp(x)), IMG),
        Pattern(_M, "log of |x|+1", fn(lambda m, x: torch.log(x.abs() + 1)), IMG),
        Pattern(_M, "erf", fn(lambda m, x: torch.erf(x)), IMG),
        Pattern(_M, "sin + cos (positional encodings)", fn(lambda m, x: torch.sin(x) + torch.cos(x)), IMG),
        Pattern(_M, "log1p", fn(lambda m, x: torch.log1p(x.abs())), IMG),
        Pattern(_M, "abs, neg", fn(lambda m, x: -x.abs()), IMG),
        Pattern(_M, "reciprocal of x^2+1", fn(lambda m, x: torch.reciprocal(x * x + 1)), IMG),
        Pattern(_M, "clamp -1..1", fn(lambda m, x: x.clamp(-1, 1)), IMG),
        Pattern(_M, "clamp_min 0.2", fn(lambda m, x: x.clamp_min(0.2)), IMG),
        Pattern(_M, "maximum / minimum of two tensors", fn(lambda m, x: torch.maximum(x, m.b) + torch.minimum(x, -m.b),
                                                           b=b), IMG),
        Pattern(_M, "clamp with tensor bounds", fn(lambda m, x: torch.clamp(x, min=m.b), b=b), IMG),
        Pattern(_M, "div by a buffer holding 0 (inf, NaN as torch)", fn(lambda m, x: x / m.z, z=torch.arange(8.0).reshape(
            1, 8, 1, 1)), IMG),
        Pattern(_M, "addcmul", fn(lambda m, x: torch.addcmul(x, x, x, value=0.5)), IMG),
        Pattern(_M, "lerp", fn(lambda m, x: torch.lerp(x, 2 * x, 0.3)), IMG),
        Pattern(_M, "remainder x % 0.5", fn(lambda m, x: x % 0.5), IMG),
        Pattern(_M, "mean over channels keepdim", fn(lambda m, x: x.mean(1, keepdim=True)), IMG),
        Pattern(_M, "sum over last dim", fn(lambda m, x: x.sum(-1)), IMG),
        Pattern(_M, "amax over channels", fn(lambda m, x: x.amax(1)), IMG),
        Pattern(_M, "amin over last dim", fn(lambda m, x: x.amin(-1)), IMG),
        Pattern(_M, "max(dim).values", fn(lambda m, x: x.max(1).values), IMG),
        Pattern(_M, "var over last dim", fn(lambda m, x: x.var(-1)), SEQ),
        Pattern(_M, "std over last dim (unbiased=False)", fn(lambda m, x: x.std(-1, unbiased=False)), SEQ),
        Pattern(_M, "matmul x @ x^T (token similarity)", fn(lambda m, x: x @ x.transpose(-1, -2)), SEQ),
        Pattern(_M, "bmm", fn(lambda m, x: torch.bmm(x, x.transpose(1, 2))), SEQ),
        Pattern(_M, "baddbmm", fn(lambda m, x: torch.baddbmm(x[..., :6], x, x.transpose(1, 2))), SEQ),
        Pattern(_M, "x.norm(dim=-1)", fn(lambda m, x: x.norm(dim=-1)), SEQ),
        Pattern(_M, "F.cosine_similarity", fn(lambda m, x: F.cosine_similarity(x, x.flip(-1), dim=-1)), SEQ),
        Pattern(_M, "matmul with a weight buffer", fn(lambda m, x: torch.matmul(x, m.w), w=_randn(16, 4)), SEQ),
        Pattern(_M, "einsum 'bld,de->ble'", fn(lambda m, x: torch.einsum("bld,de->ble", x, m.w), w=_randn(16, 4)), SEQ),
        Pattern(_M, "prod over last dim", fn(lambda m, x: x.prod(-1)), SEQ),
    ]


def _moves() -> list[Pattern]:
    return [
        Pattern(_D, "reshape / view", fn(lambda m, x: x.reshape(x.shape[0], 8, 144)), IMG),
        Pattern(_D, "flatten", lambda: nn.Flatten(), IMG),
        Pattern(_D, "permute NCHW -> NHWC", fn(lambda m, x: x.permute(0, 2, 3, 1)), IMG),
        Pattern(_D, "transpose(1, 2) of tokens", fn(lambda m, x: x.transpose(1, 2)), SEQ),
        Pattern(_D, "cat along channels", fn(lambda m, x: torch.cat([x, torch.relu(x)], 1)), IMG),
        Pattern(_D, "stack", fn(lambda m, x: torch.stack([x, x * 2], 1)), SEQ),
        Pattern(_D, "split + add", fn(lambda m, x: sum(torch.split(x, 2, 1))), IMG),
        Pattern(_D, "chunk (GLU-style gate)", fn(lambda m, x: (lambda a, b: a * torch.sigmoid(b))(*x.chunk(2, 1))), IMG),
        Pattern(_D, "slice x[:, :, 2:10]", fn(lambda m, x: x[:, :, 2:10]), IMG),
        Pattern(_D, "strided slice x[..., ::2]", fn(lambda m, x: x[..., ::2]), IMG),
        Pattern(_D, "flip last dim", fn(lambda m, x: torch.flip(x, [-1])), IMG),
        Pattern(_D, "roll by 2", fn(lambda m, x: torch.roll(x, 2, -1)), IMG),
        Pattern(_D, "repeat", fn(lambda m, x: x.repeat(1, 2, 1, 1)), IMG),
        Pattern(_D, "tile", fn(lambda m, x: x.tile((1, 1, 2))), SEQ),
        Pattern(_D, "pixel_shuffle 2", lambda: nn.PixelShuffle(2), IMG),
        Pattern(_D, "pixel_unshuffle 2", lambda: nn.PixelUnshuffle(2), IMG),
        Pattern(_D, "channel shuffle (view-transpose-view)",
                fn(lambda m, x: x.view(x.shape[0], 2, 4, 12, 12).transpose(1, 2).reshape(x.shape[0], 8, 12, 12)), IMG),
        Pattern(_D, "nn.ChannelShuffle", lambda: nn.ChannelShuffle(2), IMG),
        Pattern(_D, "expand a channel", fn(lambda m, x: x[:, :1].expand(-1, 8, -1, -1) + x), IMG),
        Pattern(_D, "unsqueeze / squeeze", fn(lambda m, x: x.unsqueeze(1).squeeze(1) * 2), SEQ),
        Pattern(_D, "F.pad constant", fn(lambda m, x: F.pad(x, (1, 2, 0, 1), value=0.5)), IMG),
        Pattern(_D, "F.pad negative (crop)", fn(lambda m, x: F.pad(x, (-1, -2, 1, 0))), IMG),
        Pattern(_D, "ZeroPad2d", lambda: nn.ZeroPad2d(2), IMG),
        Pattern(_D, "ReflectionPad2d", lambda: nn.ReflectionPad2d(2), IMG),
        Pattern(_D, "ReplicationPad2d", lambda: nn.ReplicationPad2d((1, 2, 0, 1)), IMG),
        Pattern(_D, "CircularPad2d", lambda: nn.CircularPad2d(1), IMG),
        Pattern(_D, "ReflectionPad1d", lambda: nn.ReflectionPad1d(3), SIG),
        Pattern(_D, "narrow / select an index", fn(lambda m, x: x.narrow(2, 1, 5)[:, 2]), IMG),
        Pattern(_D, "unflatten", fn(lambda m, x: x.flatten(2).unflatten(2, (6, 24))), IMG),
        Pattern(_D, "cat zeros made with x.new_zeros", fn(lambda m, x: torch.cat([x, x.new_zeros(x.shape[0], 2, 12, 12)],
                                                                               1)), IMG),
        Pattern(_D, "gather with fixed indices", fn(lambda m, x: torch.gather(x, 1, m.i),
                                                    i=torch.zeros(1, 2, 12, 12, dtype=torch.long)), IMG, False,
                "the index buffer has batch 1"),
        Pattern(_D, "index_select channels", fn(lambda m, x: x.index_select(1, m.i), i=torch.tensor([3, 0, 5])), IMG),
    ]


def _masks() -> list[Pattern]:
    def causal_softmax(m, x):
        s = x @ x.transpose(-1, -2)
        return torch.softmax(s.masked_fill(m.mask, float("-inf")), -1)
    return [
        Pattern(_K, "x > 0 as float", fn(lambda m, x: (x > 0).float()), IMG),
        Pattern(_K, "x >= buffer, x == 0", fn(lambda m, x: (x >= m.b).float() + (x == 0).float(), b=_randn(1, 8, 1, 1)),
                IMG),
        Pattern(_K, "torch.where(x > 0, x, 0.1 x)", fn(lambda m, x: torch.where(x > 0, x, 0.1 * x)), IMG),
        Pattern(_K, "safe division where(y != 0, x / y, 0) (inf, NaN in the branch not taken)",
                fn(lambda m, x: torch.where(torch.relu(x) != 0, x / torch.relu(x), torch.zeros_like(x))), IMG),
        Pattern(_K, "masked_fill(x < 0, 0)", fn(lambda m, x: x.masked_fill(x < 0, 0.0)), IMG),
        Pattern(_K, "causal mask: masked_fill -inf then softmax", fn(causal_softmax,
                                                                    mask=torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)),
                SEQ),
        Pattern(_K, "logical and / or / not", fn(lambda m, x: ((x > -1) & (x < 1) | ~(x > 2)).float() * x), IMG),
        Pattern(_K, "logical xor", fn(lambda m, x: ((x > 0) ^ (x > 1)).float()), IMG),
        Pattern(_K, "mask.sum() (a reduction of a mask)", fn(lambda m, x: (x > 0).sum(1)), IMG),
        Pattern(_K, "softmax of a fully masked row (NaN, as torch)",
                fn(lambda m, x: torch.softmax(x.masked_fill(m.mask, float("-inf")), -1),
                   mask=torch.tensor([[True] * 16] + [[False] * 16] * 5)), SEQ),
    ]


def _batch() -> list[Pattern]:
    """Models that touch the batch dimension: each must run at batch 2 as torch does, or be refused."""
    return [
        Pattern(_B, "flatten everything x.reshape(-1)", fn(lambda m, x: x.reshape(-1)), IMG),
        Pattern(_B, "reshape(1, -1) then softmax (batch hard-coded as 1)",
                fn(lambda m, x: torch.softmax(x.reshape(1, -1), -1)), IMG),
        Pattern(_B, "x - x.mean(0) (a reduction over the batch)", fn(lambda m, x: x - x.mean(0, keepdim=True)), IMG),
        Pattern(_B, "x.sum() (everything, the batch included)", fn(lambda m, x: x.sum().reshape(1, 1)), IMG),
        Pattern(_B, "transpose(0, 1) with as many channels as samples", fn(lambda m, x: x.transpose(0, 1) * 2),
                (1, 2, 16)),
        Pattern(_B, "cat a class token expanded to the batch",
                fn(lambda m, x: torch.cat([m.t.expand(x.shape[0], -1, -1), x], 1), t=_randn(1, 1, 16)), SEQ),
    ]


def _attn() -> list[Pattern]:
    def sdpa(causal):
        def f(m, x):
            q = x.view(x.shape[0], 6, 2, 8).transpose(1, 2)
            return F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=causal)
        return f

    def mha(batch_first):
        return fn(lambda m, x: m.a(x, x, x, need_weights=False)[0],
                  a=lambda: nn.MultiheadAttention(16, 2, batch_first=batch_first))
    enc = lambda **kw: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, **kw)  # noqa: E731
    seq_first = "sequence-first: the batch is dim 1 (traced at batch 1)"
    return [
        Pattern(_T, "scaled_dot_product_attention", fn(sdpa(False)), (1, 6, 16)),
        Pattern(_T, "scaled_dot_product_attention causal", fn(sdpa(True)), (1, 6, 16)),
        Pattern(_T, "hand-written attention softmax(q k^T / sqrt d) v",
                fn(lambda m, x: torch.softmax(m.q(x) @ m.k(x).transpose(1, 2) / 4.0, -1) @ x,
                   q=lambda: nn.Linear(16, 16), k=lambda: nn.Linear(16, 16)), SEQ),
        Pattern(_T, "MultiheadAttention batch_first", mha(True), SEQ),
        Pattern(_T, "MultiheadAttention sequence-first (L, B, E)", mha(False), (6, 1, 16), False, seq_first),
        Pattern(_T, "TransformerEncoderLayer", lambda: enc(), SEQ),
        Pattern(_T, "TransformerEncoderLayer norm_first GELU", lambda: enc(norm_first=True, activation="gelu"), SEQ),
        Pattern(_T, "TransformerEncoder 2 layers", lambda: nn.TransformerEncoder(enc(), 2, enable_nested_tensor=False),
                SEQ),
        Pattern(_T, "TransformerDecoderLayer (memory = input)",
                fn(lambda m, x: m.d(x, x), d=lambda: nn.TransformerDecoderLayer(16, 2, 32, 0.0, batch_first=True)), SEQ),
    ]


def _rnn() -> list[Pattern]:
    def r(cls, out=0, **kw):
        return fn(lambda m, x: m.r(x)[0] if out == 0 else m.r(x)[1][0] if cls is nn.LSTM else m.r(x)[1],
                  r=lambda: cls(16, 12, **kw))
    seq_first = "sequence-first: the batch is dim 1 (traced at batch 1)"
    return [
        Pattern(_R, "LSTM batch_first", r(nn.LSTM, batch_first=True), SEQ),
        Pattern(_R, "LSTM sequence-first (L, B, F)", r(nn.LSTM), (6, 1, 16), False, seq_first),
        Pattern(_R, "LSTM bidirectional", r(nn.LSTM, batch_first=True, bidirectional=True), SEQ),
        Pattern(_R, "LSTM 2 layers", r(nn.LSTM, batch_first=True, num_layers=2), SEQ),
        Pattern(_R, "LSTM h_n", r(nn.LSTM, out=1, batch_first=True), SEQ),
        Pattern(_R, "GRU batch_first", r(nn.GRU, batch_first=True), SEQ),
        Pattern(_R, "GRU bidirectional 2 layers", r(nn.GRU, batch_first=True, bidirectional=True, num_layers=2), SEQ),
        Pattern(_R, "RNN tanh batch_first", r(nn.RNN, batch_first=True), SEQ),
        Pattern(_R, "RNN relu", r(nn.RNN, batch_first=True, nonlinearity="relu"), SEQ),
        Pattern(_R, "LSTMCell", fn(lambda m, x: m.c(x)[0], c=lambda: nn.LSTMCell(16, 12)), VEC),
    ]


def _resample() -> list[Pattern]:
    def up(**kw):
        return fn(lambda m, x: F.interpolate(x, **kw))
    return [
        Pattern(_S, "interpolate nearest x2", up(scale_factor=2, mode="nearest"), IMG),
        Pattern(_S, "interpolate nearest to size 18 (x1.5)", up(size=18, mode="nearest"), IMG),
        Pattern(_S, "interpolate nearest x1.7 (scale_factor)", up(scale_factor=1.7, mode="nearest"), IMG),
        Pattern(_S, "interpolate nearest x0.5", up(scale_factor=0.5, mode="nearest"), IMG),
        Pattern(_S, "interpolate nearest-exact x2", up(scale_factor=2, mode="nearest-exact"), IMG),
        Pattern(_S, "interpolate bilinear x2", up(scale_factor=2, mode="bilinear"), IMG),
        Pattern(_S, "interpolate bilinear align_corners", up(scale_factor=2, mode="bilinear", align_corners=True), IMG),
        Pattern(_S, "interpolate bilinear downsample to 5", up(size=5, mode="bilinear"), IMG),
        Pattern(_S, "interpolate bilinear x1.5", up(scale_factor=1.5, mode="bilinear"), IMG),
        Pattern(_S, "interpolate bilinear antialias (downsample)", up(size=5, mode="bilinear", antialias=True), IMG),
        Pattern(_S, "nn.Upsample nearest x2", lambda: nn.Upsample(scale_factor=2), IMG),
        Pattern(_S, "nn.Upsample nearest (2, 3)", lambda: nn.Upsample(scale_factor=(2, 3)), IMG),
        Pattern(_S, "nn.UpsamplingBilinear2d", lambda: nn.UpsamplingBilinear2d(scale_factor=2), IMG),
        Pattern(_S, "interpolate bicubic x2", up(scale_factor=2, mode="bicubic"), IMG),
        Pattern(_S, "interpolate linear 1-d x2", up(scale_factor=2, mode="linear"), SIG),
    ]


def _quant() -> list[Pattern]:
    return [
        Pattern(_Q, "torch.round", fn(lambda m, x: torch.round(x * 4)), IMG),
        Pattern(_Q, "torch.floor", fn(lambda m, x: torch.floor(x * 4)), IMG),
        Pattern(_Q, "fake quant round(x / s).clamp * s",
                fn(lambda m, x: torch.clamp(torch.round(x / 0.05), -128, 127) * 0.05), IMG),
        Pattern(_Q, "STE fake quant x + (round(x) - x).detach()", fn(lambda m, x: x + (torch.round(x) - x).detach()),
                IMG),
        Pattern(_Q, "x.half().float() (fp16 rounding)", fn(lambda m, x: (3.3 * x).half().float()), IMG),
        Pattern(_Q, "x.int().float() (truncation)", fn(lambda m, x: (3 * x).int().float()), IMG),
        Pattern(_Q, "torch.fake_quantize_per_tensor_affine",
                fn(lambda m, x: torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)), IMG),
    ]


def _refused() -> list[Pattern]:
    emb = fn(lambda m, x: m.e((x.abs() * 3).long().clamp(max=9)), e=lambda: nn.Embedding(10, 4))
    qconv = fn(lambda m, x: m.c(torch.quantize_per_tensor(x, 0.05, 0, torch.quint8)).dequantize(),
               c=lambda: torch.ao.nn.quantized.Conv2d(8, 8, 3, padding=1))
    return [
        Pattern(_X, "ConvTranspose1d", lambda: nn.ConvTranspose1d(4, 4, 2, stride=2), SIG),
        Pattern(_X, "nn.Embedding (indices from the input)", emb, (1, 8)),
        Pattern(_X, "F.unfold (im2col)", fn(lambda m, x: F.unfold(x, 3, padding=1)), IMG),
        Pattern(_X, "torch.sort", fn(lambda m, x: torch.sort(x, -1).values), SEQ),
        Pattern(_X, "torch.topk", fn(lambda m, x: torch.topk(x, 3, -1).values), SEQ),
        Pattern(_X, "argmax", fn(lambda m, x: x.argmax(-1)), SEQ),
        Pattern(_X, "cumsum", fn(lambda m, x: x.cumsum(-1)), SEQ),
        Pattern(_X, "grid_sample", fn(lambda m, x: F.grid_sample(x, m.g, align_corners=False),
                                      g=lambda: torch.rand(1, 6, 6, 2) * 2 - 1), IMG, False,
                "the grid buffer has batch 1"),
        Pattern(_X, "torch.ao quantized Conv2d", qconv, IMG),
        Pattern(_X, "F.dropout(x, 0.5) (training=True by default, random in eval)", fn(lambda m, x: F.dropout(x, 0.5)),
                IMG),
        Pattern(_X, "nn.Identity (output = input)", lambda: nn.Identity(), IMG),
    ]


def catalogue() -> list[Pattern]:
    pats = (_conv() + _pool() + _norm() + _act() + _math() + _moves() + _batch() + _masks() + _attn() + _rnn() + _resample()
            + _quant() + _refused())
    names = [p.name for p in pats]
    assert len(set(names)) == len(names), "pattern names must be unique"
    return pats


CATEGORIES = (_C, _P, _N, _A, _M, _D, _B, _K, _T, _R, _S, _Q, _X)
