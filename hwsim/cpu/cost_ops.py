"""CPU costs of the transformer and imported-model ops (the part of :mod:`hwsim.cpu.cost` written for them).

Elementwise ops (activations, elementwise math, SUB/DIV, normalisations, softmax, reductions, the QONNX quantizers)
count :func:`ops_per_element` vector instructions per element of ``mapping.analysis.elementwise_ops`` (table
:data:`NEW_ELEMENTWISE_OPS`, merged into ``hwsim.cpu.cost.ELEMENTWISE_OPS``; the function-evaluated ops' counts come
from ``mapping.analysis.FUNCTION_OPS``) and run as the existing elementwise ops do. Products of activations run as
GEMM calls (:func:`product_gemms`, :func:`product_compute_s`):

MATMUL ``(…, M, K) @ (…, K, P)``
    one GEMM of M×K by K×P per leading element (the batch included): ``2·M·K·P`` FLOPs each at
    ``peak_core · eff_im2col · util · speedup(n, FLOPs)``, with the GEMM-call utilisation of the spec (a conv run as
    a GEMM: ``util = P / (P + gemm_n_half) · M / (M + gemm_m_half)`` when ``gemm_n_half`` is set, else the lane
    utilisation over P; ``× K / (K + gemm_k_half)``). ``eff_im2col`` is the spec's efficiency of a plain GEMM call on
    activations (``eff_linear`` describes batch-1 fully connected layers, GEMVs bound by their weights).
ATTENTION of q ``(…, L, E)``, k ``(…, S, E)``, v ``(…, S, Ev)``
    PyTorch's unfused ("math") scaled-dot-product attention: the GEMM ``q k^T`` (L×E by E×S), a softmax over the
    ``L·S`` scores (``ops_per_element(ATTENTION)`` per score at the elementwise rate) and the GEMM of the weights by v
    (L×S by S×Ev). Memory: besides q, k, v and the output, the score matrix is written by the first GEMM, read and
    written by the softmax and read by the second GEMM: :func:`score_bytes` = ``4 · L·S · 4`` bytes per head.
Overheads (:func:`product_overhead_s`)
    each GEMM call adds ``overhead_gemm_s`` and ``overhead_per_group_s`` per leading element beyond the first (a
    batched matmul is a loop of GEMM calls); attention runs three kernels, so it pays ``layer_overhead_s`` (and
    ``parallel_overhead_s`` on several cores) twice more than one layer.

CONV_TRANSPOSE2D (kind ``deconv``) as PyTorch's CPU kernel computes it (aten/src/ATen/native/NaiveConvolutionTranspose2d.cpp,
``slow_conv_transpose2d_out_cpu_template``: per sample one GEMM of the input ``{Cin, H·W}`` by the weights
``{Cin, Cout·kh·kw}`` into a column matrix, the output filled with the bias, then ``col2im`` adds the columns into it)
    per sample and group one GEMM call, M = H·W, N = Cout/g·kh·kw, K = Cin/g (:func:`product_gemms`; FLOPs
    ``2·node_macs``), at ``eff_im2col`` as a MATMUL; the bias fill (Cout·OH·OW) and the col2im adds (Cout·kh·kw·H·W)
    at the elementwise rate (:func:`col2im_ops`); the column matrix written and read once adds ``2·Cout·kh·kw·H·W``
    elements of traffic (:func:`score_bytes`); the GEMM packs its weights as a conv does (``PACKING_KINDS``). The
    node reaches this rule through ``hwsim.cpu.cost.PRODUCT_OP_KINDS``; until that table routes it, the pytorch
    model refuses it (:func:`ops_per_element`) rather than costing it as an elementwise op. ncnn's rule is
    :func:`hwsim.cpu.runtime.deconv_work`.

Data movement: PERMUTE and PAD copy their input into a new buffer (kind ``move``); CONSTANT is a broadcast view of its
parameter (kind ``view``: torch's ``expand``, a runtime's constant tensor): its dispatch plus the read of its parameter
bytes from their home.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from hwsim.errors import UnsupportedOpError
from hwsim.report import StrEnum
from mapping.analysis import FUNCTION_OPS, conv_transpose_in_hw, elementwise_ops, function_ops
from mapping.graph import Graph, Node, Op

__all__ = ["KernelKind", "DIRECT_CONV_KINDS", "GEMM_CONV_KINDS", "WEIGHT_KINDS", "PACKING_KINDS", "PRODUCT_KINDS",
           "STREAMING", "SMALL_OPS", "RUNTIME_ALGORITHM_KIND", "NEW_ELEMENTWISE_OPS", "ops_per_element", "Gemm", "product_gemms", "product_compute_s", "score_bytes", "col2im_ops",
           "product_overhead_s", "speedup", "lane_util", "valid_taps", "valid_tap_fraction", "unfold_s"]



class KernelKind(StrEnum):
    """Which kernel runs a layer on the CPU (:func:`hwsim.cpu.cost.kernel_kind`; the report's ``kernel`` column).
    String-valued: a member equals, hashes and prints as its value."""

    CONV = "conv"  # a direct conv kernel (oneDNN's), dense k×k
    IM2COL = "im2col"  # a small dense conv unfolded (im2col), then one GEMM
    GROUPED = "grouped"  # a direct conv with groups > 1, not depthwise
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"  # a 1×1 conv as a GEMM per group
    LINEAR = "linear"
    MATMUL = "matmul"  # a GEMM of two activations
    ATTENTION = "attention"  # scaled dot-product attention: two GEMMs of activations and a softmax
    DECONV = "deconv"  # a transposed conv: one GEMM (input by weights) per sample and group, then col2im
    POOL = "pool"
    RESAMPLE = "resample"  # upsampling
    ELEMENTWISE = "elementwise"  # activations, math, arithmetic, normalisations, softmax, reductions, quantizers
    MOVE = "move"  # concat, channel shuffle, permute, pad: data movement only
    VIEW = "view"  # dispatch overhead only (a constant also reads its parameter)
    FREE = "free"  # nothing: a reshape
    # Larq Compute Engine's binary layers (hwsim.cpu.binary)
    BINARY_GEMM = "binary-gemm"  # a binary conv / linear: an indirect binary GEMM
    BITPACK = "bitpack"  # a sign feeding only binary layers: LCE's bitpacking
    FUSED = "fused"  # a ReLU / batch norm folded into a binary layer's output transform: no cost


# Groups of kinds (hwsim.cpu.cost). Runtime kernels that compute a conv directly (oneDNN's): their loops skip the
# kernel taps that fall in the zero padding, so they do only the valid multiply-accumulates; the GEMM paths
# (pointwise, im2col: an unfold and a GEMM call) multiply the zeros.
DIRECT_CONV_KINDS = frozenset({KernelKind.CONV, KernelKind.GROUPED, KernelKind.DEPTHWISE})
GEMM_CONV_KINDS = frozenset({KernelKind.IM2COL, KernelKind.POINTWISE})
WEIGHT_KINDS = DIRECT_CONV_KINDS | GEMM_CONV_KINDS | {KernelKind.LINEAR}  # weights × activations
# they pack (reorder) their weights first
PACKING_KINDS = (WEIGHT_KINDS - {KernelKind.DEPTHWISE, KernelKind.LINEAR}) | {KernelKind.DECONV}
# GEMM calls costed here (product_compute_s, product_overhead_s): of two activations, and a transposed conv's
PRODUCT_KINDS = frozenset({KernelKind.MATMUL, KernelKind.ATTENTION, KernelKind.DECONV})
# memory time not overlapped with compute (each activation touched once: too little work per byte to hide misses)
STREAMING = frozenset({KernelKind.DEPTHWISE, KernelKind.ELEMENTWISE, KernelKind.POOL, KernelKind.RESAMPLE,
                       KernelKind.MOVE})
# on one thread below the runtime's grain size
SMALL_OPS = frozenset({KernelKind.ELEMENTWISE, KernelKind.POOL, KernelKind.RESAMPLE, KernelKind.MOVE, KernelKind.VIEW})
# the kind (for the memory model and the roofline) of each runtime algorithm (hwsim.cpu.runtime.algorithms); the
# Winograd convs (absent) count as CONV
RUNTIME_ALGORITHM_KIND = {"depthwise": KernelKind.DEPTHWISE, "im2col-gemm": KernelKind.IM2COL,
                          "gemm": KernelKind.POINTWISE, "gemv": KernelKind.LINEAR, "pool": KernelKind.POOL,
                          "copy": KernelKind.MOVE, "elementwise": KernelKind.ELEMENTWISE, "view": KernelKind.VIEW,
                          "deconv-gemm": KernelKind.DECONV, "deconv-depthwise": KernelKind.DEPTHWISE}


# Vector instructions per element (per op counted by mapping.analysis.elementwise_ops) of the new ops: the ops
# evaluated as functions (exp, log, erf, division, square roots, normalisations, softmax) take their arithmetic ops
# from mapping.analysis.FUNCTION_OPS (one vector instruction per op; sources and reasoning there); the rest:
NEW_ELEMENTWISE_OPS = {
    **FUNCTION_OPS,
    Op.LEAKY_RELU: 2,  # multiply by the slope + select on the sign (XNNPACK f32-vlrelu: mul + blend)
    Op.PRELU: 2,  # the same with a per-channel slope
    Op.CLAMP: 2,  # max + min (as RELU6)
    Op.ABS: 1,  # clear the sign bit
    Op.NEG: 1,  # flip the sign bit
    Op.SUB: 1,
    # a streaming reduction, one op per input element (elementwise_ops counts the inputs): add or max
    Op.REDUCE_MEAN: 1, Op.REDUCE_SUM: 1, Op.REDUCE_MAX: 1,
    # QONNX Trunc: q = x/scale + zp (FMA), shift (mul), floor/round, back (mul), (q - zp)·scale (FMA) = 5 (QUANTIZE: 4)
    Op.TRUNC: 5,
    # MultiThreshold: per (element, threshold) a compare and the add of its mask into the count (elementwise_ops
    # counts numel · T)
    Op.MULTITHRESHOLD: 2,
}


def ops_per_element(node: Node, table: dict) -> float:
    """Vector instructions per counted op of ``node``: ``table[node.op]`` (1 if absent; POW by its exponent,
    :func:`mapping.analysis.function_ops`)."""
    if node.op == Op.POW:
        return function_ops(node)
    if node.op == Op.CONV_TRANSPOSE2D:  # a GEMM + col2im, never an elementwise op (module docstring)
        raise UnsupportedOpError(f"conv_transpose2d {node.name!r} ({node.module or 'no module'}): the pytorch CPU "
                                 "model needs hwsim.cpu.cost.PRODUCT_OP_KINDS to route it to its GEMM + col2im rule")
    return table.get(node.op, 1)


def speedup(spec, n: int, work: float | None = None) -> float:
    """``1 + (n - 1) · parallel_eff · work / (work + parallel_flops_half)``: small convs gain little from more cores;
    ``work=None``: work split evenly over the cores with no such ramp (``1 + (n - 1) · parallel_eff``)."""
    if n <= 1:
        return 1.0
    ramp = work / (work + spec.parallel_flops_half) if work is not None and spec.parallel_flops_half > 0 else 1.0
    return 1.0 + (n - 1) * spec.parallel_eff * ramp


def lane_util(c: int, lanes: int) -> float:
    """Fraction of the vector lanes a dimension of ``c`` elements fills: ``c / (⌈c / lanes⌉ · lanes)``."""
    return c / (math.ceil(c / lanes) * lanes)


class Gemm(NamedTuple):
    """``groups`` independent GEMMs of an M×K matrix A by a K×N matrix B, A of ``a_words`` elements in all."""

    groups: int
    m: int
    n: int
    k: int
    a_words: int


def product_gemms(graph: Graph, node: Node) -> list[Gemm]:
    """The GEMMs of a MATMUL (one), an ATTENTION (q k^T, then scores × v) or a CONV_TRANSPOSE2D (one per sample and
    group: the input's H·W × Cin/g by the weights' Cin/g × Cout/g·kh·kw), the whole batch."""
    if node.op == Op.CONV_TRANSPOSE2D:
        a, (h, w) = node.attrs, conv_transpose_in_hw(node)
        calls = node.shape[0] * a.groups
        return [Gemm(calls, h * w, a.out_channels // a.groups * a.kernel[0] * a.kernel[1], a.in_channels // a.groups,
                     int(math.prod(graph.shape_of(node.inputs[0]))))]
    groups = int(math.prod(node.shape[:-2]))  # batch × leading (broadcast) dims
    a = graph.shape_of(node.inputs[0])
    if node.op == Op.MATMUL:
        return [Gemm(groups, node.shape[-2], node.shape[-1], a[-1], int(math.prod(a)))]
    L, ev, s, e = node.shape[-2], node.shape[-1], graph.shape_of(node.inputs[1])[-2], a[-1]
    return [Gemm(groups, L, s, e, int(math.prod(a))), Gemm(groups, L, ev, s, groups * L * s)]


def _gemm_s(spec, g: Gemm, n: int) -> tuple[float, float]:
    """(FLOPs, seconds) of ``g`` as GEMM calls at ``eff_im2col`` with the spec's GEMM-call utilisation."""
    flops = 2.0 * g.groups * g.m * g.n * g.k
    if spec.gemm_n_half > 0:  # a GEMM call packs its panels: utilisation ramps with N and M
        util = g.n / (g.n + spec.gemm_n_half) * g.m / (g.m + spec.gemm_m_half)
    else:
        util = lane_util(g.n, spec.lanes)
    if spec.gemm_k_half > 0:
        util *= g.k / (g.k + spec.gemm_k_half)
    return flops, flops / (spec.peak_flops_per_core * spec.eff_im2col * util * speedup(spec, n, flops))


def product_compute_s(graph: Graph, node: Node, spec, n: int, table: dict) -> tuple[float, float]:
    """(FLOPs + softmax / col2im ops, compute seconds) of a MATMUL / ATTENTION / CONV_TRANSPOSE2D for the whole batch on
    ``n`` cores."""
    flops, t = 0.0, 0.0
    for g in product_gemms(graph, node):
        f, s = _gemm_s(spec, g, n)
        flops, t = flops + f, t + s
    if node.op in (Op.ATTENTION, Op.CONV_TRANSPOSE2D):  # the softmax / col2im, at the elementwise rate
        ops = (float(col2im_ops(node)) if node.op == Op.CONV_TRANSPOSE2D
               else float(elementwise_ops(graph, node)) * node.shape[0] * ops_per_element(node, table))
        flops += ops
        t += ops / (spec.clock_hz * spec.lanes * spec.fma_per_cycle * speedup(spec, n) * spec.eff_elementwise)
    return flops, t


def col2im_ops(node: Node) -> int:
    """Vector ops of a CONV_TRANSPOSE2D's col2im for the whole batch (PyTorch's): the bias fill of the output
    (Cout·OH·OW) and one add per element of the column matrix (Cout·kh·kw·H·W)."""
    a, (h, w) = node.attrs, conv_transpose_in_hw(node)
    return node.shape[0] * a.out_channels * (node.shape[2] * node.shape[3] + a.kernel[0] * a.kernel[1] * h * w)


def score_bytes(graph: Graph, node: Node, bytes_per_element: int) -> int:
    """Bytes of attention's score traffic: the (…, L, S) scores written, read and written, read (4 passes); of a
    CONV_TRANSPOSE2D's column matrix (Cout·kh·kw·H·W per sample): written by the GEMM, read by col2im."""
    if node.op == Op.CONV_TRANSPOSE2D:
        a, (h, w) = node.attrs, conv_transpose_in_hw(node)
        return 2 * node.shape[0] * a.out_channels * a.kernel[0] * a.kernel[1] * h * w * bytes_per_element
    if node.op != Op.ATTENTION:
        return 0
    return 4 * int(math.prod(node.shape[:-1])) * graph.shape_of(node.inputs[1])[-2] * bytes_per_element


def product_overhead_s(node: Node, spec, n: int) -> float:
    """Fixed time of a MATMUL / ATTENTION / CONV_TRANSPOSE2D beyond ``layer_overhead_s`` (see the module docstring)."""
    calls = 2 if node.op == Op.ATTENTION else 1
    groups = node.shape[0] * node.attrs.groups if node.op == Op.CONV_TRANSPOSE2D else int(math.prod(node.shape[:-2]))
    t = calls * (spec.overhead_gemm_s + (groups - 1) * spec.overhead_per_group_s)
    if node.op == Op.ATTENTION:  # the softmax and the second GEMM are kernels of their own
        t += 2 * (spec.layer_overhead_s + (spec.parallel_overhead_s if n > 1 else 0.0))
    return t


def valid_taps(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Σ over the k kernel taps of one dimension of the outputs whose input index lies inside [0, size)."""
    total = 0
    for i in range(k):
        off = i * dil - pad  # input index of output o: o * stride + off
        lo = 0 if off >= 0 else (-off + stride - 1) // stride  # first o with o * stride + off >= 0
        hi = min(out - 1, (size - 1 - off) // stride)  # last o with o * stride + off <= size - 1
        total += max(0, hi - lo + 1)
    return total


def valid_tap_fraction(graph: Graph, node: Node) -> float:
    """Fraction of a conv's nominal multiply-accumulates whose input tap lies inside the image (the rest multiply
    the zero padding): Π over the two dimensions of Σ_taps valid outputs / (k · out)."""
    a = node.attrs
    h, w = graph.shape_of(node.inputs[0])[2:4]
    oh, ow = node.shape[2], node.shape[3]
    fh = valid_taps(h, oh, a.kernel[0], a.stride[0], a.padding[0], a.dilation[0]) / (a.kernel[0] * oh)
    fw = valid_taps(w, ow, a.kernel[1], a.stride[1], a.padding[1], a.dilation[1]) / (a.kernel[1] * ow)
    return fh * fw


def unfold_s(node: Node, kind: KernelKind, spec, n: int) -> float:
    """Time of the unfold (im2col copy) before the GEMM of an ``im2col`` conv or a strided ``pointwise`` conv:
    ``calls · unfold_row_s + elements · unfold_element_s`` for K·OH·OW copied elements (K = Cin·kh·kw) and one copy
    call per output row (K·OH calls) at stride 1 or per element when strided, split over the ``n`` threads by
    input plane."""
    if kind not in GEMM_CONV_KINDS:
        return 0.0
    a = node.attrs
    strided = max(a.stride) > 1
    if kind == KernelKind.POINTWISE and not strided:
        return 0.0  # a 1x1 stride-1 conv multiplies its input in place
    k = a.in_channels * a.kernel[0] * a.kernel[1]
    oh, ow = node.shape[2], node.shape[3]
    elements = node.shape[0] * k * oh * ow
    calls = elements if strided else node.shape[0] * k * oh
    return (calls * spec.unfold_row_s + elements * spec.unfold_element_s) / min(n, k)
