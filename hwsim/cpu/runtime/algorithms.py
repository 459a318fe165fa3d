"""Which algorithm a deployed runtime runs each layer as, and the work that algorithm does.

Every rule names the runtime source file it follows (read in the public repositories Tencent/ncnn,
ARM-software/CMSIS-NN and google/XNNPACK). The work of a layer is split into three streams that run at different
rates (:mod:`hwsim.cpu.runtime` turns them into seconds):

``macs``
    multiply-accumulates of the runtime's GEMM-like inner loop (packed sgemm / int8 gemm, the Winograd-domain
    batched GEMM, a fully connected layer's GEMV), at the core's MAC rate for the precision;
``dw_macs``
    multiply-accumulates of a depthwise kernel (one input channel per output channel: no reuse across output
    channels, bound by its loads), at the depthwise rate;
``vec_ops``
    elementwise vector work: Winograd input/output transforms, im2col copies, requantization, pooling taps, adds,
    concatenations, at one op per fp32 lane per cycle.

An activation that directly follows a conv or a fully connected layer is fused into it (ncnn's ``activation_type``
of Convolution: ``src/layer/arm/convolution_arm.cpp`` applies it in the kernel's store; CMSIS-NN applies the
clamp of ``activation_min/max`` inside ``arm_nn_requantize``; XNNPACK fuses min/max into its microkernels'
``params``) and costs nothing; batch norm is folded beforehand (hwsim's ``fold_bn``, as the converters do). On the
TFLite runtimes a zero pad read only by a conv is folded into that conv too (:func:`pad_folds_into_conv`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from hwsim.cache import identity_cache
from mapping.analysis import elementwise_ops, node_macs
from mapping.graph import Graph, Node, Op

__all__ = ["Work", "algorithm", "work", "FUSABLE_ACTIVATIONS", "winograd_tile", "PAD_FOLDING_RUNTIMES",
           "pad_folds_into_conv", "zero_pad_problem", "readers"]

FUSABLE_ACTIVATIONS = frozenset({Op.RELU, Op.RELU6, Op.HARDSWISH, Op.SIGMOID, Op.HARDSIGMOID, Op.CLAMP,
                                 Op.LEAKY_RELU})
MOVE_OPS = frozenset({Op.CONCAT, Op.CHANNEL_SHUFFLE, Op.PERMUTE, Op.PAD})
FREE_OPS = frozenset({Op.RESHAPE, Op.SLICE, Op.CONSTANT})  # views: no data moved (a per-layer fixed cost only)
POOL_OPS = frozenset({Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL})
# Runtimes that run a zero pad feeding a conv inside the conv. Keras' Conv2D(padding='same') becomes one TFLite
# CONV_2D / DEPTHWISE_CONV_2D with padding SAME, whose kernel computes the (possibly asymmetric: the extra row or
# column after) padding itself (tensorflow/lite/kernels/padding.h, ComputePaddingHeightWidth; CMSIS-NN's
# arm_convolve_s8 / arm_depthwise_conv_s8 take pad_x / pad_y and the output size and skip out-of-bounds taps);
# X-CUBE-AI generates its C code from that TFLite / Keras graph; XNNPACK folds a zero-valued spatial constant pad
# into the next [depthwise] convolution's input_padding (src/subgraph.c, xnn_subgraph_fusion, the static constant
# pad case). ncnn is left out: pnnx's fuse_padding_convolution pass (tools/pnnx/src/pass_ncnn/, 2025) folds a
# constant Padding into the next Convolution, but a model converted otherwise runs Padding as its own layer, and the
# ncnn fits were made on benchncnn's models as shipped.
PAD_FOLDING_RUNTIMES = frozenset({"xnnpack", "cmsis-nn", "x-cube-ai"})


class Work(NamedTuple):
    """The work of one layer execution for one sample (see the module docstring)."""

    algo: str
    macs: float
    dw_macs: float
    vec_ops: float


# ncnn's Winograd choice for a 3x3 stride-1 fp32 conv (src/layer/arm/convolution_arm.cpp, create_pipeline:
# test_prefer_winograd63 / test_prefer_winograd23, "profiled on i7-7700 single thread"): F(4,3) is the default;
# F(2,3) and F(6,3) only when both channel counts are below 64. F(2,3) thresholds on min(w, h) of the padded input
# (test_prefer_winograd23), by (Cin >=, Cout >=) -> min side >=:
_F23_MIN_SIDE = {(32, 32): 36, (32, 16): 28, (32, 8): 20, (16, 32): 24, (16, 16): 16, (16, 8): 12, (8, 32): 16,
                 (8, 16): 8}
# F(6,3) side ranges (test_prefer_winograd63), by (Cin >=, Cout >=):
_F63_SIDES = {
    (32, 32): ((11, 14), (19, 20), (23, 44), (47, 56), (63, 130)),
    (32, 16): ((13, 14), (19, 20), (23, 38), (43, 44), (47, 140)),
    (32, 8): ((11, 14), (19, 20), (31, 38), (43, 44), (55, 162)),
    (16, 32): ((11, 14), (19, 20), (23, 44), (47, 92), (95, 188)),
    (16, 16): ((11, 14), (27, 38), (43, 44), (47, 74), (81, 110), (117, 170), (177, 182)),
    (16, 8): ((19, 20), (33, 38), (43, 44), (47, 128), (155, 210)),
    (8, 32): ((7, 14), (17, 20), (23, 26), (31, 38), (43, 162)),
    (8, 16): ((31, 32), (39, 44), (47, 212)),
}


def _bucket(c: int) -> int:
    return 32 if c >= 32 else 16 if c >= 16 else 8 if c >= 8 else 0


def winograd_tile(cin: int, cout: int, side: int) -> int:
    """Output tile m of ncnn's fp32 Winograd F(m, 3) for a 3x3 stride-1 conv with ``cin`` / ``cout`` channels on a
    padded input of smaller side ``side`` (the rules of ncnn's convolution_arm.cpp quoted above)."""
    if cin >= 64 or cout >= 64:
        return 4
    key = (_bucket(cin), _bucket(cout))
    if any(lo <= side <= hi for lo, hi in _F63_SIDES.get(key, ())):
        return 6
    if key in _F23_MIN_SIDE and side >= _F23_MIN_SIDE[key]:
        return 2
    return 4


def _winograd_work(node: Node, m: int) -> Work:
    """F(m, 3): per output tile of m x m and (input, output) channel pair, (m+2)^2 multiplies in the transformed
    domain (the batched GEMM); the input transform B^T d B costs ~(m+2)^3 vector ops per tile and input channel
    (two (m+2)-point transforms of each row and column, half of the matrix entries zero or +-1), the output
    transform A^T M A ~(m(m+2)^2 + m^2(m+2))/2 per tile and output channel (Lavin & Gray, CVPR'16, eq. 8)."""
    a = node.attrs
    oh, ow = node.shape[2], node.shape[3]
    tiles = math.ceil(oh / m) * math.ceil(ow / m)
    t = m + 2
    macs = tiles * t * t * a.in_channels * a.out_channels
    vec = tiles * (a.in_channels * t ** 3 + a.out_channels * (m * t * t + m * m * t) / 2)
    return Work(f"winograd{m}3", float(macs), 0.0, float(vec))


def zero_pad_problem(node: Node) -> str | None:
    """Why the PAD ``node`` is no plain zero pad of the non-batch dims (a reflect / replicate / circular pad, a non-zero
    value, the batch padded, a negative pad: a crop), or None: the one rule of the int8 program's PAD and of
    :func:`pad_folds_into_conv` (another mode stays its own data-movement layer, costed as a constant PAD)."""
    a = node.attrs
    if a.mode != "constant":  # the int8 PAD step (hwsim.cpu.functional._pad) fills with the zero point only
        return f"{a.mode} pad (only a constant zero pad: TFLite's PAD; a {a.mode} pad is not run on int8 here)"
    if float(a.value) != 0.0:
        return f"constant pad with value {a.value!r} (only a zero pad: 0.0 is the input's zero point, exact in int8)"
    if a.pads and tuple(a.pads[0]) != (0, 0):
        return f"pad of the batch dimension {tuple(a.pads[0])}"
    if any(p < 0 for pair in a.pads for p in pair):
        return f"negative pad (a crop) {tuple(map(tuple, a.pads))}: TFLite's PAD takes pads >= 0"
    return None


@identity_cache(maxsize=16)
def readers(graph: Graph) -> dict[str, list[Node]]:
    """``graph.consumers()``, remembered per graph object (graphs are not modified after they are built)."""
    return graph.consumers()


def pad_folds_into_conv(graph: Graph, node: Node, runtime: str) -> bool:
    """Whether ``runtime`` folds the PAD ``node`` into the conv that reads it (:data:`PAD_FOLDING_RUNTIMES`): a
    constant pad of value 0 (:func:`zero_pad_problem`) of the spatial dims (H, W) of an N x C x H x W tensor only,
    not a graph output, whose only reader is a conv taking it as its input. The conv then reads the unpadded tensor
    and pads inside; its MACs and output are those of the padded input, so its own work is unchanged."""
    if node.op != Op.PAD or runtime not in PAD_FOLDING_RUNTIMES or node.name in graph.outputs:
        return False
    if zero_pad_problem(node) is not None or len(node.attrs.pads) != 4 or tuple(node.attrs.pads[1]) != (0, 0):
        return False
    r = readers(graph).get(node.name, [])
    return len(r) == 1 and r[0].op == Op.CONV2D and tuple(r[0].inputs[:1]) == (node.name,)


def algorithm(graph: Graph, node: Node, runtime: str, precision: str, fused: bool) -> str:
    """The algorithm name of :func:`work` (for reports)."""
    return work(graph, node, runtime, precision, fused).algo


def work(graph: Graph, node: Node, runtime: str, precision: str, fused: bool) -> Work:
    """The :class:`Work` of ``node`` on ``runtime`` (``fused``: an activation folded into its producer; a zero pad
    the runtime folds into its conv, :func:`pad_folds_into_conv`, is "fused" too)."""
    if fused or pad_folds_into_conv(graph, node, runtime):
        return Work("fused", 0.0, 0.0, 0.0)
    if node.op in FREE_OPS:
        return Work("view", 0.0, 0.0, 0.0)
    if node.op == Op.CONV2D:
        return _conv_work(graph, node, runtime, precision)
    if node.op == Op.LINEAR:  # ncnn InnerProduct / CMSIS-NN arm_fully_connected_s8 / XNNPACK f32-gemm: a GEMV
        return Work("gemv", float(node_macs(node)), 0.0, 0.0)
    if node.op in (Op.MATMUL, Op.ATTENTION):  # GEMMs of activations (a softmax beside attention's)
        return Work("gemm", float(node_macs(node, graph)), 0.0, float(elementwise_ops(graph, node)))
    if node.op in MOVE_OPS:  # a copy: one read and one write per element
        return Work("copy", 0.0, 0.0, float(math.prod(node.shape[1:])))
    ops = float(elementwise_ops(graph, node))
    if node.op in POOL_OPS:
        return Work("pool", 0.0, 0.0, ops)
    return Work("elementwise", 0.0, 0.0, ops * (2.0 if node.op in FUSABLE_ACTIVATIONS else 1.0))


def _conv_work(graph: Graph, node: Node, runtime: str, precision: str) -> Work:
    a = node.attrs
    macs = float(node_macs(node))
    out_px = node.shape[2] * node.shape[3]
    in_elems = float(math.prod(graph.shape_of(node.inputs[0])[1:]))
    requant = in_elems if precision == "int8" and runtime == "ncnn" else 0.0  # ncnn int8: quantize fp32 input
    if a.groups > 1 and a.groups == a.in_channels and a.out_channels % a.in_channels == 0:
        # ncnn ConvolutionDepthWise (src/layer/arm/convolutiondepthwise_arm.cpp: direct 3x3/5x5 pack4 kernels);
        # CMSIS-NN arm_depthwise_conv_s8_opt / arm_depthwise_conv_3x3_s8 (Source/ConvolutionFunctions);
        # XNNPACK dwconv microkernels (src/f32-dwconv, src/qs8-dwconv)
        return Work("depthwise", 0.0, macs, requant)
    k = a.kernel[0] * a.kernel[1]
    if (runtime == "ncnn" and k == 9 and a.groups == 1 and max(a.stride) == 1 and max(a.dilation) == 1
            and (a.in_channels >= 8 or a.out_channels >= 8)):
        # ncnn 3x3 stride-1: Winograd (convolution_arm.cpp; int8: convolution_3x3_winograd_int8.h, F(4,3) with int16
        # products: the Winograd-domain GEMM does not use sdot, counted at the fp32 rate x 2 by the caller)
        side = min(graph.shape_of(node.inputs[0])[2:4]) + 2 * a.padding[0]
        m = winograd_tile(a.in_channels, a.out_channels, side) if precision == "fp32" else 4
        w = _winograd_work(node, m)
        return w._replace(vec_ops=w.vec_ops + requant)
    if k == 1 and max(a.stride) == 1:
        # 1x1 stride 1: a GEMM on the input in place (ncnn convolution_im2col_gemm.h with maxk = 1; CMSIS-NN
        # arm_convolve_1x1_s8_fast; XNNPACK f32-gemm / qs8-gemm)
        return Work("gemm", macs, 0.0, requant)
    # im2col + packed GEMM (ncnn convolution_im2col_gemm.h / convolution_im2col_gemm_int8.h; CMSIS-NN
    # arm_convolve_s8: im2col of two output columns into q15 then arm_nn_mat_mult_kernel_s8_s16; XNNPACK igemm
    # with an indirection buffer, no copy): the unfolded K x OH*OW matrix is written once
    unfold = 0.0 if runtime == "xnnpack" else float(a.in_channels * k * out_px)
    return Work("im2col-gemm", macs, 0.0, unfold + requant)
