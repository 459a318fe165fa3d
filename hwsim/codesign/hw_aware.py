"""Hardware-aware fine-tuning: a torch copy of a network whose conv/linear layers compute as the crossbars do.

``hw_aware(model, spec)`` returns a :class:`HwAware` module (a deep copy; the user's model is untouched) whose
``nn.Conv2d`` / ``nn.Linear`` layers emulate, in the forward pass, the arithmetic of the bit-level IMC simulator
(:mod:`hwsim.imc.numerics`, :mod:`hwsim.imc.functional`) for every layer the simulator runs on crossbars:

1. batch norm folded into the conv/linear before it, exactly as ``mapping.passes.fold_bn`` does it (with the
   BN's running statistics, which are frozen during fine-tuning; gamma and beta train through the fold);
2. inputs quantized per sample (max-abs of each sample's input, signed iff it has a negative value) to
   ``input_bits``, weights per output channel (symmetric) to ``weight_bits`` (``mapping.passes.quantize``);
3. the crossbar: offset or differential weight encoding, inputs in ``dac_bits`` steps, weights in ``cell_bits``
   cells, rows split in ``spec.rows``, ISAAC's column flips, one partial sum per (row split, input step, cell
   column), ADC clipping (CLIP) or rescaling (SCALE) with ``rint``, shift-and-add, the digital offset
   corrections (:mod:`hwsim.imc.numerics` steps 1-4). When no ADC can clip and there is no noise, the
   integer GEMM, as the simulator computes it then;
4. the device and circuit physics of :mod:`hwsim.imc.physics`, in its order: stuck-at cells (``stuck_at_rate``),
   finite on/off ratio (``on_off_ratio``), programming noise (``conductance_sigma``), PCM drift at
   ``drift_time_s`` with optional global compensation, IR drop (``ir_drop``), read noise (``read_sigma``), the
   2^-F conductance grid, Gaussian ADC noise (``adc_noise_lsb``) and the ADC transfer (``adc_inl_lsb``,
   ``adc_dnl_lsb``). Every random draw is made afresh at every forward pass (a new chip per batch, so training
   sees the spread over chips, where the simulator fixes the per-seed ones for a seed); the ADC transfer is drawn
   once per forward pass and shared by every layer's ADCs, as the simulator draws one per chip and seed;
5. dequantization ``acc · s_x · s_w[o] + bias``.

Gradients are straight-through (STE): every ``rint`` passes its gradient unchanged; a bit or cell slice of an
integer ``v`` passes ``1 / (n·2^shift)`` of it (n slices), so the shift-and-add of the slices has gradient 1;
clipping by the ADC stops the gradient of the clipped partial sums (the gradient of ``clamp``); quantization
scales are treated as constants. With no noise and no clipping the gradient is that of the integer GEMM.

Not emulated: ops the simulator runs on the digital units (float32 there, torch here); spec fields this module does
not know (a non-default one warns). ``HwAware.plain()`` gives the fine-tuned net as a plain torch module.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, ShapeError, UnsupportedOpError
from hwsim.imc import physics as ph
from hwsim.imc.spec import IMCSpec, SignedWeights

__all__ = ["hw_aware", "check_spec", "crossbar_acc", "EMULATED_FIELDS", "COST_ONLY_FIELDS"]

# IMCSpec fields the emulation reproduces (geometry, encodings, ADC, device and circuit physics)
EMULATED_FIELDS = frozenset({
    "rows", "cell_bits", "weight_bits", "input_bits", "dac_bits", "adc_bits", "adc_mode", "signed_weights",
    "column_flip", "conductance_sigma", "stuck_at_rate", "adc_noise_lsb", "on_off_ratio", "read_sigma",
    "drift_time_s", "drift_t0_s", "drift_nu_mean", "drift_nu_std", "drift_compensation", "adc_inl_lsb",
    "adc_dnl_lsb", "ir_drop", "reference_column",
})
# IMCSpec fields that change cost, placement or timing but never the numbers the crossbars compute
COST_ONLY_FIELDS = frozenset({
    "name", "cols", "adc_ref_bits", "cols_per_adc", "crossbars_per_tile", "tiles", "buffer_bytes_per_tile",
    "duplication", "clock_hz", "read_time_s", "adc_rate_hz", "sample_hold", "digital_ops_per_cycle",
    "buffer_bandwidth_bytes_s", "noc_bandwidth_bytes_s", "dram_bandwidth_bytes_s", "write_time_s_per_row",
    "adc_energy_pj", "dac_energy_pj", "crossbar_read_energy_pj", "sample_hold_energy_pj", "shift_add_energy_pj",
    "buffer_energy_pj_per_bit", "noc_energy_pj_per_bit", "dram_energy_pj_per_bit", "digital_energy_pj_per_op",
    "tech_node_nm", "write_energy_pj_per_cell", "tile_other_power_w", "adc_area_um2", "dac_area_um2",
    "crossbar_area_um2", "sample_hold_area_um2", "shift_add_area_um2", "tile_other_area_mm2",
})


def check_spec(spec: IMCSpec) -> list[str]:
    """The spec fields set away from their defaults that the emulation does not reproduce (hw_aware warns once each)."""
    default = IMCSpec()
    return [f.name for f in dataclasses.fields(spec)
            if f.name not in EMULATED_FIELDS | COST_ONLY_FIELDS and getattr(spec, f.name) != getattr(default, f.name)]


# ----------------------------------------------------------------------------- straight-through pieces
@functools.cache
def _autograd():
    """The two autograd functions (built on first use: importing this module does not import torch)."""
    import torch

    class Digits(torch.autograd.Function):
        """[...] integer-valued v -> [count, ...]: its ``width``-bit digits, least significant first. Forward:
        digit i is ``(v >> i·width) & (2^width - 1)``; backward: digit i passes ``1 / (count·2^(i·width))`` of
        its gradient, so the shift-and-add of the digits has gradient 1 (straight-through)."""

        @staticmethod
        def forward(ctx, v, width: int, count: int):
            ctx.width, ctx.count = width, count
            return torch.stack([torch.remainder(torch.floor(v / 2.0 ** (i * width)), 2.0**width)
                                for i in range(count)])

        @staticmethod
        def backward(ctx, g):
            w = torch.tensor([1.0 / (ctx.count * 2.0 ** (i * ctx.width)) for i in range(ctx.count)], dtype=g.dtype)
            return (g * w.view((-1,) + (1,) * (g.dim() - 1))).sum(0), None, None

    class Adc(torch.autograd.Function):
        """ADC values ``code·lsb`` of partial sums p: ``x = (p + noise)/lsb`` (noise Gaussian, std ``noise_std``,
        drawn afresh), ``code = clip(rint(x), 0, top)``, or with a transfer ``thr`` the number of thresholds
        <= x (at most top). Backward: straight through, zero where the code saturated (the gradient of clip)."""

        @staticmethod
        def forward(ctx, p, lsb: float, top: float, noise_std: float, thr):
            t = p + noise_std * torch.randn_like(p) if noise_std > 0 else p
            if thr is None:
                code = torch.round(t / lsb) if lsb != 1.0 else torch.round(t)
                ctx.save_for_backward((code >= 0) & (code <= top))
            else:
                x = t.double() / lsb
                code = torch.searchsorted(thr, x.contiguous(), right=True).to(p.dtype)
                ctx.save_for_backward((x > -0.5) & (x < top + 0.5))
            code.clamp_(0.0, top)
            return code.mul_(lsb) if lsb != 1.0 else code

        @staticmethod
        def backward(ctx, g):
            (mask,) = ctx.saved_tensors
            return g * mask, None, None, None, None

    return Digits, Adc


def _grid(g, spec: IMCSpec):
    """Conductances [G, rows, Q] on the simulator's 2^-F grid (F per group from its largest cell;
    :func:`hwsim.imc.physics.grid_bits`), straight-through."""
    import torch

    gmax = g.detach().abs().flatten(1).amax(1) if g.numel() else torch.zeros(g.shape[0])
    sc = torch.tensor([2.0 ** ph.grid_bits(spec, float(m)) for m in gmax], dtype=g.dtype).view(-1, 1, 1)
    return g + (torch.round(g.detach() * sc) / sc - g.detach())


def _cells(g, spec: IMCSpec):
    """Steps 1-4 of :mod:`hwsim.imc.physics` (without the drift compensation) on levels [G, rows, Q], every random
    draw made afresh: (g at t0, g at t)."""
    import torch

    if spec.stuck_at_rate > 0:
        hit = torch.rand_like(g) < spec.stuck_at_rate
        high = torch.rand_like(g) < 0.5
        g = torch.where(hit, torch.where(high, 2.0**spec.cell_bits - 1, 0.0).to(g.dtype), g)
    g = g + ph.g_offset(spec)
    if spec.conductance_sigma > 0:
        g = torch.clamp(g * (1 + spec.conductance_sigma * torch.randn_like(g)), min=0.0)
    g0 = g
    if ph.drifts(spec):
        nu = torch.abs(spec.drift_nu_mean + spec.drift_nu_std * torch.randn_like(g))
        g = g * (spec.drift_time_s / spec.drift_t0_s) ** (-nu)
    return g0, g


def _read(g, spec: IMCSpec):
    import torch

    return torch.clamp(g * (1 + spec.read_sigma * torch.randn_like(g)), min=0.0)


def _physics(lv, spec: IMCSpec):
    """Stored levels [G, rows, Q] of one row split -> the conductances one read sees, in levels (steps 1-7 of
    :mod:`hwsim.imc.physics`, every random draw made afresh), on the simulator's grid when not integers. With a
    reference column, one level-0 cell per row takes the same effects and is subtracted from every column."""
    import torch

    dtype, lv = lv.dtype, lv.double()  # float64, as the simulator computes them, before the grid rounds them
    g0, g = _cells(lv, spec)
    ref = _cells(torch.zeros_like(lv[:, :, :1]), spec)[1] if spec.reference_column else None
    if ph.drifts(spec) and spec.drift_compensation:
        s0, s1 = g0.sum((1, 2), keepdim=True), g.sum((1, 2), keepdim=True)
        alpha = torch.where(s1 > 0, s0 / torch.where(s1 > 0, s1, 1.0), 1.0)
        g, ref = g * alpha, (None if ref is None else ref * alpha)
    if spec.ir_drop > 0:
        r = torch.arange(g.shape[1], dtype=g.dtype)
        att = (1.0 - spec.ir_drop * r / max(spec.rows - 1, 1)).view(1, -1, 1)
        g, ref = g * att, (None if ref is None else ref * att)
    if ref is not None and spec.read_sigma > 0:  # both columns read afresh, then subtracted
        return _grid(_read(_grid(g, spec), spec) - _read(ref, spec), spec).to(dtype)
    if ref is not None:
        g = g - ref
    if ph.analog(spec):
        g = _grid(g, spec)
    if spec.read_sigma > 0:
        g = _grid(_read(g, spec), spec)
    return g.to(dtype)


# the ADC transfer of the chip a forward pass of HwAware runs on (None outside one: each layer call draws its own)
_CHIP_ADC: contextvars.ContextVar = contextvars.ContextVar("hw_aware_chip_adc", default=None)


def _draw_thresholds(spec: IMCSpec):
    """One ADC transfer (float64 tensor of thresholds, DNL drawn from torch's generator) when INL/DNL are set, else
    None."""
    import torch

    if not ph.nonlinear_adc(spec):
        return None
    seed = int(torch.randint(0, 2**31 - 1, (1,))) if spec.adc_dnl_lsb > 0 else 0
    return torch.from_numpy(ph.adc_thresholds(spec, np.random.default_rng(seed)))


def _thresholds(spec: IMCSpec):
    """The ADC transfer of the current chip: the one :class:`HwAware`'s forward pass drew for every layer (the
    simulator draws one per chip and seed, shared by all its ADCs), or a fresh one for a layer called alone."""
    chip = _CHIP_ADC.get()
    return chip[0] if chip is not None and chip[1] == spec else _draw_thresholds(spec)


# ----------------------------------------------------------------------------- the crossbar
def _split_cells(nominals: list, k0: int, rows: int, spec: IMCSpec):
    """Stored levels [G, rows, Q] of one row split over every (sign, slice, column) pair, their shift-and-add
    weights [G, Q] (2^(s·c) · matrix sign · −1 when flipped) and the flipped pairs' digital weights [G, N]."""
    import torch

    cmax = float(2**spec.cell_bits - 1)
    shift = torch.tensor([2.0 ** (s * spec.cell_bits) for s in range(spec.slices)], dtype=torch.float64)
    cells, coef, flip_w = [], [], 0.0
    for nom, sign in nominals:
        cell = nom[:, :, k0:k0 + rows, :]  # [S, G, rows, N]
        s_n, g, _, n = cell.shape
        flip = torch.zeros((s_n, g, 1, n), dtype=torch.bool)
        if spec.column_flip:  # ISAAC §5: pairs whose cells sum past half the full scale store the complement
            flip = 2 * cell.detach().sum(dim=2, keepdim=True) > rows * cmax
            cell = torch.where(flip, cmax - cell, cell)
        fl = flip[:, :, 0, :].to(torch.float64)  # [S, G, N]
        cells.append(cell.permute(1, 2, 0, 3).reshape(g, rows, s_n * n))
        coef.append((sign * shift.view(-1, 1, 1) * (1 - 2 * fl)).permute(1, 0, 2).reshape(g, s_n * n))
        flip_w = flip_w + sign * cmax * (shift.view(-1, 1, 1) * fl).sum(0)
    return torch.cat(cells, dim=2), torch.cat(coef, dim=1), flip_w


def crossbar_acc(qx, qw, x_signed, spec: IMCSpec):
    """``Σ_k q_x[g, m, k]·q_w[g, k, n]`` as the crossbars compute it (:mod:`hwsim.imc.numerics` steps 1-4 with the
    physics of :mod:`hwsim.imc.physics`): [G, M, N] float64. qx [G, M, K], qw [G, K, N]: integer-valued float
    tensors (straight-through to the float ones); x_signed: one bool, or one per row m."""
    import torch
    import torch.nn.functional as F

    from hwsim.imc.numerics import _lsb as adc_lsb

    digits, adc = _autograd()
    gn, m, k = qx.shape
    j_n, top = spec.input_steps, float(2**spec.adc_bits - 1)
    ox = 2.0 ** (spec.input_bits - 1) * torch.as_tensor(x_signed, dtype=torch.float64).reshape(1, -1, 1)
    u = qx + ox.to(qx.dtype)
    xs = digits.apply(u.transpose(1, 2), spec.dac_bits, j_n).permute(1, 0, 3, 2).reshape(gn, j_n * m, k)
    ow = 2.0 ** (spec.weight_bits - 1) if spec.signed_weights == SignedWeights.OFFSET else 0.0
    mats = [(qw + ow, 1.0)] if ow else [(F.relu(qw), 1.0), (F.relu(-qw), -1.0)]
    nominals = [(digits.apply(mat, spec.cell_bits, spec.slices), sign) for mat, sign in mats]  # [S, G, K, N]
    shift_j = torch.tensor([[2.0 ** (j * spec.dac_bits) for j in range(j_n)]])
    thr = _thresholds(spec)
    acc = torch.zeros((gn, m, qw.shape[2]), dtype=torch.float64)
    for k0 in range(0, k, spec.rows):
        rows = min(spec.rows, k - k0)
        cells, coef, flip_w = _split_cells(nominals, k0, rows, spec)
        g = _physics(cells, spec)  # [G, rows, Q]
        p = torch.matmul(xs[:, :, k0:k0 + rows], g)  # [G, J·M, Q]: the bit-line partial sums
        lsb = adc_lsb(spec, rows)  # the simulator's own
        v = adc.apply(p, lsb, top, spec.adc_noise_lsb * lsb, thr)
        # Σ_j 2^(j·d)·value: exact in float32 while its bound (codes·lsb·2^input_bits) stays below 2^24
        dt = torch.float32 if top * lsb * 2.0**spec.input_bits < 2**24 else torch.float64
        vj = torch.matmul(shift_j.to(dt), v.to(dt).view(gn, j_n, -1)).view(gn, m, -1, qw.shape[2])
        acc = acc + (vj.to(torch.float64) * coef.view(gn, 1, -1, qw.shape[2])).sum(2)
        if torch.is_tensor(flip_w):  # + cmax·Σ_{k in split} u for every flipped pair (exact digital sums)
            acc = acc + u[:, :, k0:k0 + rows].sum(-1, keepdim=True).to(torch.float64) * flip_w.unsqueeze(1)
    if ow:
        acc = acc - ow * u.sum(-1, keepdim=True).to(torch.float64)
    return acc - ox * qw.sum(1, keepdim=True).to(torch.float64)


def _quant_input(x, bits: int, per_sample: bool):
    """Max-abs quantization of each sample (axis 0; of the whole tensor if not ``per_sample``) as ``input_scales``
    / ``quantize_input`` do it: integer-valued tensor (straight-through), float64 scales [N], signedness [N]."""
    import torch

    xd = x.detach()
    flat = xd.reshape(len(xd) if per_sample else 1, -1)
    signed, half = flat.amin(1) < 0, 2.0 ** (bits - 1) - 1
    if half < 1 and bool(signed.any()):
        raise HwsimError(f"{bits}-bit signed inputs have no positive level; use input_bits >= 2 for signed inputs")
    qmax = torch.where(signed, half, 2.0**bits - 1).double()
    mx = flat.abs().amax(1).double()
    s = torch.where(mx > 0, mx / qmax, torch.ones_like(mx))
    sb, lo = s.view((-1,) + (1,) * (x.dim() - 1)), torch.where(signed, -qmax, 0.0)
    q = torch.clamp(torch.round(xd.double() / sb), lo.view_as(sb), qmax.view_as(sb)).to(x.dtype)
    xs = x / sb.to(x.dtype)
    return xs + (q - xs).detach(), s.expand(len(x)), signed.expand(len(x))


def _quant_weight(w, bits: int):
    """Per-output-channel symmetric quantization (``quantize_weights``): integer-valued weights (straight-through)
    and the float64 scales [O]."""
    import torch

    qmax = 2 ** (bits - 1) - 1
    wd = w.detach().double()
    m = wd.reshape(wd.shape[0], -1).abs().amax(1)
    s = torch.where(m > 0, m / qmax, torch.ones_like(m))
    sb = s.view((-1,) + (1,) * (w.dim() - 1))
    q = torch.clamp(torch.round(wd / sb), -qmax, qmax).to(w.dtype)
    # an all-zero channel dequantizes with scale 0, as quantize_weights gives it
    return w / sb.to(w.dtype) + (q - w / sb.to(w.dtype)).detach(), torch.where(m > 0, s, torch.zeros_like(s))


def _folded(layer, bn):
    """Weight and bias with ``bn`` folded in, as ``fold_bn`` does: float64 arithmetic rounded to float32."""
    import torch

    w = layer.weight
    if bn is None:
        return w, layer.bias
    b = layer.bias.double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    wf = (w.double() * s.view((-1,) + (1,) * (w.dim() - 1))).to(w.dtype)
    return wf, ((b - mean) * s + beta).to(w.dtype)


def _dequant(acc, sx, sw, bias, dtype):
    """``acc · s_x · s_w[o] + bias`` on [..., O] (float64, then rounded to the layer's dtype)."""
    y = acc * (sx * sw)
    if bias is not None:
        y = y + bias.double()
    return y.to(dtype)


def _exact(spec: IMCSpec, k: int) -> bool:
    """The simulator's own choice of the exact integer GEMM for a matrix of ``k`` rows."""
    from hwsim.imc.numerics import exact_matmul_needed

    return exact_matmul_needed(spec, k)


# ----------------------------------------------------------------------------- the emulating layers
def _conv_forward(layer, x):
    """What an emulating conv computes (module docstring)."""
    import torch
    import torch.nn.functional as F

    spec: IMCSpec = layer._hw_spec
    if isinstance(layer.padding, str):
        raise UnsupportedOpError(f"hw_aware: conv padding {layer.padding!r}")
    w, b = _folded(layer, layer._hw_bn)
    qx, sx, signed = _quant_input(x, spec.input_bits, layer._hw_per_sample)
    sx, pad = sx.view(-1, 1, 1, 1), layer.padding if layer.padding_mode == "zeros" else (0, 0)
    if layer.padding_mode != "zeros":  # the IR's PAD in that mode, then the conv: a copy, so padding the codes is exact
        qx = F.pad(qx, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
    qw, sw = _quant_weight(w, spec.weight_bits)
    g, kg = layer.groups, qw[0].numel()
    if _exact(spec, kg):  # the simulator's exact integer conv
        dt = torch.float32 if kg * 2.0**spec.input_bits * 2.0 ** (spec.weight_bits - 1) < 2**24 else torch.float64
        acc = F.conv2d(qx.to(dt), qw.to(dt), None, layer.stride, pad, layer.dilation, g).double()
        return _dequant(acc.permute(0, 2, 3, 1), sx, sw, b, x.dtype).permute(0, 3, 1, 2)
    (n, _, h, wd), (kh, kw), (sh, sw_), (dh, dw) = qx.shape, layer.kernel_size, layer.stride, layer.dilation
    oh, ow = (h + 2 * pad[0] - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pad[1] - dw * (kw - 1) - 1) // sw_ + 1
    cols = F.unfold(qx, layer.kernel_size, layer.dilation, pad, layer.stride)  # [N, C·kh·kw, L]
    cols = cols.view(n, g, kg, -1).permute(1, 0, 3, 2).reshape(g, -1, kg)  # [G, N·L, Kg]
    acc = crossbar_acc(cols, qw.reshape(g, -1, kg).transpose(1, 2), signed.repeat_interleave(oh * ow), spec)
    acc = acc.view(g, n, oh, ow, -1).permute(1, 2, 3, 0, 4).reshape(n, oh, ow, layer.out_channels)
    return _dequant(acc, sx, sw, b, x.dtype).permute(0, 3, 1, 2)


def _linear_forward(layer, x):
    """What an emulating linear computes (module docstring), on [..., F] inputs."""
    spec: IMCSpec = layer._hw_spec
    w, b = _folded(layer, layer._hw_bn)
    qx, sx, signed = _quant_input(x, spec.input_bits, layer._hw_per_sample)
    rows = x[0].numel() // x.shape[-1]  # GEMM rows per sample
    qx, sx, signed = qx.reshape(-1, x.shape[-1]), sx.repeat_interleave(rows).view(-1, 1), signed.repeat_interleave(rows)
    qw, sw = _quant_weight(w, spec.weight_bits)
    if _exact(spec, qw.shape[1]):  # the simulator's exact integer GEMM
        acc = qx.double() @ qw.double().T
    else:
        acc = crossbar_acc(qx.unsqueeze(0), qw.T.unsqueeze(0), signed, spec)[0]
    return _dequant(acc, sx, sw, b, x.dtype).reshape(x.shape[:-1] + (qw.shape[0],))


@functools.cache
def _classes() -> dict[str, Any]:
    """The emulating layer classes and :class:`HwAware` (built on first use: no torch import at module import)."""
    from torch import nn

    class CrossbarConv2d(nn.Conv2d):
        """nn.Conv2d computing as the crossbars; same parameters (the class of a deep copy's layer is swapped)."""

        def forward(self, x):
            return _conv_forward(self, x)

    class CrossbarLinear(nn.Linear):
        """nn.Linear computing as the crossbars; same parameters."""

        def forward(self, x):
            return _linear_forward(self, x)

    class FoldedBatchNorm(nn.Module):
        """A batch norm folded into the conv/linear before it: identity (its parameters train through the fold)."""

        def forward(self, x):
            return x

    class HwAware(nn.Module):
        """A network whose conv/linear layers emulate ``spec``'s crossbars: train it as usual, then :meth:`plain`."""

        def __init__(self, net: nn.Module, spec: IMCSpec):
            super().__init__()
            self.net, self.spec = net, spec

        def forward(self, *args, **kwargs):
            token = _CHIP_ADC.set((_draw_thresholds(self.spec), self.spec))  # one chip per forward pass
            try:
                return self.net(*args, **kwargs)
            finally:
                _CHIP_ADC.reset(token)

        def plain(self) -> nn.Module:
            """A deep copy of the network with its ordinary layer classes back, in eval mode (to simulate)."""
            from mapping.trace import copy_module

            net = copy_module(self.net)
            for mod in net.modules():
                if "_hw_class" in mod.__dict__:
                    mod.__class__ = mod.__dict__.pop("_hw_class")
                    for k in ("_hw_spec", "_hw_bn", "_hw_per_sample"):
                        mod.__dict__.pop(k, None)
            return net.eval()

    return {"swap": {nn.Conv2d: CrossbarConv2d, nn.Linear: CrossbarLinear}, "bn": FoldedBatchNorm,
            "HwAware": HwAware}


def __getattr__(name: str) -> Any:  # ``HwAware`` is built on first use
    if name == "HwAware":
        return _classes()["HwAware"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pairs(model, input_shape: Sequence[int] | None) -> tuple[dict[str, str | None], bool]:
    """``{conv/linear module name: name of the batch norm the simulator folds into it, or None}`` for every
    conv/linear node of the traced, BN-folded graph (refusing nodes the emulation cannot reach), and whether inputs
    are quantized per sample (not when the graph's batch axis holds parts of one sample: per tensor)."""
    from hwsim.api import as_graph
    from mapping.graph import Op
    from mapping.passes.fold_bn import fold_bn

    graph = fold_bn(as_graph(model, input_shape))
    mods = dict(model.named_modules())
    swap = _classes()["swap"]
    found: dict[str, set] = {}
    for node in graph.nodes:
        if node.op not in (Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR):
            continue
        if type(mods.get(node.module)) not in swap:
            raise UnsupportedOpError(f"hw_aware: node {node.name!r} ({node.op}) is not an nn.Conv2d / nn.Linear "
                                     f"module (module {node.module!r}); the emulation cannot reach it")
        found.setdefault(node.module, set()).add(node.meta.get("folded_bn"))
    for name, bns in found.items():
        if len(bns) > 1:
            raise UnsupportedOpError(f"hw_aware: module {name!r} is followed by different batch norms at different "
                                     f"executions ({sorted(map(str, bns))}); fold them first")
    return {k: next(iter(v)) for k, v in found.items()}, not graph.batch_fixed


def hw_aware(model, spec, input_shape: Sequence[int] | None = None):
    """A :class:`HwAware` deep copy of ``model`` whose conv/linear layers compute as ``spec``'s crossbars.

    spec: an ``IMCSpec`` or an IMC preset name. input_shape: to trace which layers run on the crossbars and which
    batch norms the simulator folds (default: the model's ``hwsim_input_shape`` or zoo shape). Spec fields the
    emulation does not reproduce raise one warning each (:func:`check_spec`). Train the result as usual (the folded
    batch norms keep their running statistics), then simulate ``result.plain()``.
    """
    import torch

    from hwsim.api import as_spec
    from mapping.trace import copy_module

    if not isinstance(model, torch.nn.Module):
        raise HwsimError(f"hw_aware: model must be a torch nn.Module, got {type(model).__name__}")
    spec = as_spec(spec)
    if not isinstance(spec, IMCSpec):
        raise HwsimError(f"hw_aware emulates IMC crossbars; got a {type(spec).__name__}")
    for f in check_spec(spec):
        warnings.warn(f"hw_aware: IMCSpec.{f}={getattr(spec, f)!r} is not emulated (training ignores it; the "
                      "bit-level simulator does not)", stacklevel=2)
    net = copy_module(model).eval()
    cls = _classes()
    mods = dict(net.named_modules())
    if input_shape is None and getattr(model, "hwsim_input_shape", None) is None:
        raise ShapeError("hw_aware: pass input_shape=(1, C, H, W) (e.g. x_test[:1].shape) for a torch module that "
                         "does not come from the zoo: the layers the crossbars run are found by tracing it")
    pairs, per_sample = _pairs(net, input_shape)
    for name, bn_name in pairs.items():
        layer, bn = mods[name], (mods[bn_name] if bn_name else None)
        layer.__dict__.update(_hw_class=type(layer), _hw_spec=spec, _hw_bn=bn, _hw_per_sample=per_sample)
        layer.__class__ = cls["swap"][type(layer)]
        if bn is not None and "_hw_class" not in bn.__dict__:
            bn.__dict__["_hw_class"] = type(bn)
            bn.__class__ = cls["bn"]
    return cls["HwAware"](net, spec)
