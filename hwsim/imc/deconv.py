"""Transposed convolution (``Op.CONV_TRANSPOSE2D``) on the IMC target: a crossbar GEMM, then a digital col2im.

Mapping (the "GEMM + col2im" decomposition of :mod:`hwsim.kernels._deconv`; on crossbars, the pixel-wise mapping of
RED, Fan et al., "RED: A ReRAM-based Deconvolution Accelerator", DATE 2019, arXiv:1907.02987): the weight
``w[Cin, Cout/g, kh, kw]`` of group g is a crossbar matrix of ``Cin/g`` rows by ``(Cout/g)·kh·kw`` columns (column
``(co, ky, kx)``, the order of :mod:`hwsim.kernels._deconv`'s column matrix), exactly a 1x1 conv with
``Cout·kh·kw`` output channels. Every *input* pixel is one MVM: its ``Cin/g`` values drive the rows and the columns
give all its ``(Cout/g)·kh·kw`` contributions at once. The digital units then scatter-add (col2im) the
contribution of column ``(co, ky, kx)`` of input pixel ``(iy, ix)`` into output pixel
``(iy·sh − ph + ky·dh, ix·sw − pw + kx·dw)`` of channel ``co`` (:mod:`mapping._conv_transpose`), then dequantize
and add the bias. No zero is ever fed to the crossbars: the naive mapping (insert ``s − 1`` zeros between input
pixels, pad by ``d·(k − 1) − p``, run a stride-1 conv of the flipped kernel) would spend ``(s² − 1)/s²`` of its
MVMs (and the rows they drive) on inserted zeros, the redundancy RED removes.

Numerics: the weights are quantized per *output channel* ``co`` (the scale shared by its ``Cin/g·kh·kw`` weights,
the layout of a conv's weight), so every column of channel ``co`` carries the same scale and col2im adds integer
accumulators: ``y = col2im(acc) · s_x · s_w[co] + bias``. The crossbar GEMM is the linear layer's
(:func:`hwsim.imc.numerics.crossbar_matmul` on a programmed matrix per group, or the exact integer GEMM when no ADC
can clip), with the same device physics, seeds and per-sample input scales as a conv; the col2im sums integers in
float64 (exact below 2^53). Costs: :mod:`hwsim.imc.cost` (``_weight_node``: the MVMs, plus the col2im's adds).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.cache import IdentityCache
from hwsim.imc import functional as fn
from hwsim.imc import numerics as nm
from hwsim.imc import physics as ph
from hwsim.imc.spec import IMCSpec
from hwsim.kernels._deconv import col2im as _col2im
from mapping.graph import Graph, Node
from mapping.passes.quantize import QuantParams, dequantize, quantize_weights

__all__ = ["weights_q", "deconv_acc", "col2im", "make_kernel"]

_WEIGHTS: IdentityCache[tuple[np.ndarray, np.ndarray]] = IdentityCache("imc transposed-conv weights", maxsize=128)


def weights_q(w: np.ndarray, groups: int, bits: int, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """The crossbar matrices of a transposed conv's weight ``w`` [Cin, Cout/g, kh, kw]: integers [g, Cin/g,
    (Cout/g)·kh·kw] (column ``(co, ky, kx)``) and the scales, one per output channel (or one), cached per array."""
    def compute() -> tuple[np.ndarray, np.ndarray]:
        cin, cout_g, kh, kw = w.shape
        cin_g = cin // groups
        conv_layout = w.reshape(groups, cin_g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)  # [g, Cout/g, Cin/g, kh, kw]
        q, s = quantize_weights(conv_layout.reshape(groups * cout_g, cin_g, kh, kw), bits, per_channel)
        q = q.reshape(groups, cout_g, cin_g, kh * kw).transpose(0, 2, 1, 3).reshape(groups, cin_g, -1)
        return np.ascontiguousarray(q.astype(nm.int_dtype(bits, True))), s
    return _WEIGHTS.get(w, groups, bits, per_channel, compute=compute)


def col2im(cols: np.ndarray, attrs, out_hw: tuple[int, int]) -> np.ndarray:
    """:func:`hwsim.kernels._deconv.col2im` with the strides, paddings and dilations of ``attrs``
    (:class:`mapping._conv_transpose.ConvTranspose2d`), in ``cols``' dtype (exact integer-valued float64 sums)."""
    return _col2im(cols, attrs.stride, attrs.padding, attrs.dilation, out_hw)


def _group_gemm(node: Node, xr: np.ndarray, signed: bool, qm: np.ndarray, gi: int, spec: IMCSpec, seed: int,
                input_bits: int, noise, read_index: int | None) -> np.ndarray:
    """[M, (Cout/g)·kh·kw] float64 accumulators of group ``gi`` on integer inputs ``xr`` [M, Cin/g] through the
    crossbars (as a linear layer: programmed once per weight array, group, spec and seed; streamed one row split at
    a time when its program exceeds :data:`hwsim.imc.functional.STREAM_BYTES`)."""
    key = node.params.get("weight", node.name)
    wg = qm[gi]
    if nm.program_bytes(wg.shape[0], wg.shape[1], spec) > fn.STREAM_BYTES:
        ox = 2 ** (input_bits - 1) if signed else 0
        read = (nm.rng_for(seed, "read", str(read_index), node.name, str(gi))
                if read_index is not None and ph.per_read(spec) else None)
        return nm.apply_streaming(wg, xr.astype(np.int64) + ox, spec, fn._split_rng(spec, seed, key, gi),
                                  nm.rng_for(seed, "adc-transfer"), noise, ox, read)
    prog = fn._read(fn._programmed(qm, gi, wg, spec, seed, key), spec, seed, read_index, node, gi)
    return nm.crossbar_matmul(xr, wg, signed, spec, None, noise, prog=prog)


def deconv_acc(node: Node, xq: np.ndarray, signed: bool, qm: np.ndarray, spec: IMCSpec, seed: int,
               input_bits: int, force_bitlevel: bool = False, read_index: int | None = None) -> np.ndarray:
    """Integer-valued accumulators [N, Cout, OH, OW] (float64) of a transposed conv node on integer inputs ``xq``
    [N, Cin, H, W] and crossbar matrices ``qm`` (:func:`weights_q`): per group, one MVM per input pixel, then
    :func:`col2im`."""
    a = node.attrs
    n, c, h, w = xq.shape
    g, cin_g, ncols = qm.shape
    kh, kw = a.kernel
    rows = xq.reshape(n, g, cin_g, h * w).transpose(1, 0, 3, 2)  # [g, N, H·W, Cin/g]: one MVM per input pixel
    cols = np.empty((n, g, ncols, h * w), np.float64)
    exact = not force_bitlevel and nm.exact_matmul_needed(spec, cin_g)
    noise = ph.adc_noise_rng(spec, seed, read_index, node.name)
    for gi in range(g):
        xr = np.ascontiguousarray(rows[gi]).reshape(n * h * w, cin_g)
        acc = (nm.exact_linear(xr, qm[gi].T) if exact
               else _group_gemm(node, xr, signed, qm, gi, spec, seed, input_bits, noise, read_index))
        cols[:, gi] = acc.reshape(n, h * w, ncols).transpose(0, 2, 1)
    return col2im(cols.reshape(n, g * ncols // (kh * kw), kh, kw, h, w), a, tuple(node.shape[2:]))


def make_kernel(spec: IMCSpec, seed: int, force_bitlevel: bool, read_index: int | None):
    """The ``Op.CONV_TRANSPOSE2D`` kernel of :func:`hwsim.imc.functional.make_kernels`. A node without
    ``meta["quant"]`` (a graph annotated by :func:`mapping.passes.quantize.quantize`, which leaves transposed convs
    in float) takes the spec's bit widths, per-channel weight scales and dynamic input scales."""
    def deconv(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        qp = n.meta.get("quant") or QuantParams(spec.weight_bits, (), spec.input_bits)
        qm, sw = weights_q(g.param(n, "weight"), n.attrs.groups, qp.weight_bits, len(qp.weight_scale) != 1)
        b = g.param(n, "bias") if "bias" in n.params else None
        y = np.empty((len(xs[0]),) + tuple(n.shape[1:]), np.float32)
        for idx, xq, sx, signed in fn._x_groups(qp, xs[0], not g.batch_fixed):
            acc = deconv_acc(n, xq, signed, qm, spec, seed, qp.input_bits, force_bitlevel, read_index)
            y[idx] = dequantize(acc, sx, sw, b, channel_axis=1)
        return y
    return deconv
