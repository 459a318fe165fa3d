"""daBNN as a CPU runtime (``runtime="dabnn"``): JDAI-CV/dabnn's own kernels for every layer, one thread.

Source: JDAI-CV/dabnn @ 6916de52f199d9c5587622967a5e7182560dad75 (:data:`DABNN_COMMIT`), the commit whose README
published "Bi-Real Net 18 ... 61.3ms/image on Google Pixel 1 (single thread)"; the kernels it names
(``dabnn/bconv.h``, ``dabnn/bgemm.h``, ``dabnn/fconv.h``, ``dabnn/im2col.h``) are unchanged at the README's latest
commit d93aa95. Every rule below cites the file it follows (paths at that commit).

**Layers.** onnx2bnn turns the model into daBNN layers (``tools/onnx2bnn/OnnxConverter.cpp``): a binary conv is
a ``Binarize`` layer (``pack_mat``, ``dabnn/bitpack.h``) then ``BinConv`` (``dabnn/layers/BinConv.cpp``), whose
output is the popcount of the xor; the +-1 dot product ``K - 2 popcount`` only exists through the BatchNormalization
that follows, whose ``Affine`` (``x = a x + b`` per channel, ``dabnn/layers/Affine.cpp``, never fused) absorbs it
(``CalculateCoeff``) — at d93aa95 onnx2bnn refuses a binary conv without one. A float conv is ``FloatConv``
(``dabnn/fconv.h``: im2col with one ``memcpy`` per tap and output pixel, ``dabnn/im2col.h``, then an Eigen 3.3.5
GEMM, vendored in ``Eigen/``); a fully connected layer is costed as the 1x1 ``FloatConv`` that onnx2bnn @ d93aa95
makes of it (``dabnn_convert_gemm_with_reshape_or_flatten_to_conv_and_reshape``; at 6916de5 ``Net::prepare`` had no
FC layer); ``Add``, ``Relu``, ``MaxPool``, ``AvePool``, ``Concat`` are their own layers. There is no threading
anywhere in ``dabnn/``: one thread.

**Binary conv paths** (``BinConv::forward_impl``, :func:`bconv_method`): a 3x3 conv with equal strides on 64, 128,
256, 512 or 1024 input channels is ``pad`` + ``bconv_3x3`` (``dabnn/bconv.h``): 64 channels ->
``bconv_3x3_64_opt4`` (im2col of the packed input, then 2 pixels x 2 output channels per inner step); 128 -> 128
channels -> ``bconv_3x3_128_internal_s1`` (two output pixels share the weight registers; stride 1 and an even output
width) or ``..._fallback``; wider -> ``pack_weight_3x3`` / ``pack_input_3x3`` into NC1HWC2 blocks of 128 channels,
the same internal kernels per (input block, output block), ``unpack_output``. Anything else with an even count of
64-bit words per output (``gemm_compatible``) is im2col + ``bgemm`` (8 x 6 micro-kernel, ``dabnn/bgemm.h``); the rest
is daBNN's scalar ``baseline_bconv``, which hwsim refuses (not modelled).

**Cost** of a layer: ``t = max(t_c, t_m)``; ``t_c = (issue_cycles(ops) + copy_calls * COPY_CALL_CYCLES + bytes /
16) / f``: the NEON instructions of the kernel's inner loop (counted from the asm, issued as
:func:`hwsim.cpu.binary.issue_cycles` issues them: the core's Q-form ASIMD rate, two slots for Q-form cnt / fadd /
fmul / scvtf on A57 / A72), the ``memcpy`` calls of im2col / pad, the bytes copied or streamed at one 16-byte load
per cycle (:data:`hwsim.cpu.binary.COPY_BYTES_PER_CYCLE`); ``t_m`` = the float bytes in and out over the DRAM
bandwidth when they exceed the last-level cache (as :mod:`hwsim.cpu.binary`); plus a fixed cost per daBNN layer
(:func:`layer_fixed_cycles`, borrowed from hwsim's ncnn fit on the same core). One parameter is fitted here, on data
other than the nets validated: :data:`COPY_CALL_CYCLES`, on daBNN's published single-layer ``dabnn_3x3_64``
benchmark.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from hwsim.cpu.binary import ASIMD_INT_Q_PER_CYCLE, COPY_BYTES_PER_CYCLE, _add, _scaled, is_binary_layer, issue_cycles
from hwsim.cpu.cost_ops import KernelKind
from hwsim.errors import SpecError
from mapping.graph import Graph, Node, Op

__all__ = ["DABNN_COMMIT", "bconv_method", "bconv_kernel_cycles", "layer_work", "layer_cost", "check_graph",
           "dabnn_layers", "layer_fixed_cycles"]

DABNN_COMMIT = "JDAI-CV/dabnn@6916de52f199d9c5587622967a5e7182560dad75"
# --- binary direct conv, dabnn/bconv.h (instructions of the asm inner loops, per output value)
# bconv_3x3_64_opt4: 9 taps x 64 bits = 4.5 Q words; per step 2 pixels x 2 channels, per output value 5 eor, 5 cnt,
# 4 add (.16b), 1 uaddlv, 1 ucvtf (scalar s-register), 1 str.
DIRECT_64_OPS = {"eor": 5, "cnt": 5, "add": 4, "uaddlv": 1, "ucvtf.s": 1}
# bconv_3x3_128_internal_s1 / _fallback: per output value and 128-channel input block: 9 eor, 9 cnt, 8 add, 1 uaddlv,
# 1 ucvtf, 1 fadd (scalar: accumulates into the output over input blocks), 1 ldr s, 1 str s.
DIRECT_128_OPS = {"eor": 9, "cnt": 9, "add": 8, "uaddlv": 1, "ucvtf.s": 1, "fadd.s": 1}
# --- dabnn/bgemm.h micro_kernel (aarch64: P = 8 rows of A = output channels, R = 6 columns = pixels), per 128-bit step
# of the depth: 48 eor, 48 cnt, 48 addv, 36 ins (gathering the 48 byte sums into 12 vectors), 12 add .4s; per block
# and depth chunk (kc = 32 words) 12 ucvtf .4s (counted as "scvtf": GCC types both neon_int_to_fp_s_q, a two-slot
# Q-form op on A57 / A72) + the scalar unpack_c (48 float adds). Rows / columns beyond whole 8 x 6 blocks run the
# scalar loop: per 64-bit word one eor, cnt, addv, umov, add (5 instructions, one slot each).
# Slots (hwsim.cpu.binary.issue_cycles): the across-vector sums addv / uaddlv are GCC's neon_reduc_add(_long), which
# cortex-a57.md groups with add as "neon_arith_basic": one slot, as eor / add / ins; scalar ucvtf / fadd one slot.
BGEMM_P, BGEMM_R, BGEMM_KC_WORDS = 8, 6, 32
BGEMM_STEP_OPS = {"eor": 48, "cnt": 48, "addv": 48, "ins": 36, "add": 12}
BGEMM_CHUNK_OPS = {"scvtf": 12, "fadd.s": 48}
BGEMM_SCALAR_OPS_PER_WORD = 5
# --- Eigen 3.3.5 GEBP (Eigen/src/Core/products/GeneralBlockPanelKernel.h, gebp_traits<float,float>: nr = 4,
# mr = 3 packets of 4 with EIGEN_HAS_SINGLE_INSTRUCTION_MADD, set for NEON in arch/NEON/PacketMath.h; micro-kernels
# 3pX4, 2pX4, 1pX4 and pX1 for the last columns). Per depth step of a p-packet x 4 block: 4p fmla (vfmaq_f32) and 4
# pset1 broadcasts of the rhs (vdupq_n_f32 of a loaded float: ld1r, counted as one load + one ASIMD slot — an
# assumption, the SWOG rows could not be reopened); per p x 1 block: p fmla, 1 broadcast. FMLA issue:
# the core record's fp32_fma_per_cycle (hwsim.cpu.arm). Rows beyond whole packets (m % 4) run scalar: one fmadd per
# MAC at one per cycle.
GEBP_MR_PACKETS = 3
GEBP_NR = 4
# --- bitpacking, dabnn/bitpack.h pack_mat at 6916de5: channels % 128 == 0 -> pack_128_opt (per 128 floats: 8 ld1 of
# 4 Q registers, 31 sri, 1 not, 1 st1: load-bound, 512 bytes at 16 B per cycle); else pack_mat_64 ->
# common/common_bitpack.h pack_64_bitfield: one compare and one bit-field insert per float, scalar; hwsim counts
# PACK64_CYCLES_PER_FLOAT = 1 (the FP compare issues on one pipe; assumed, no measurement of it published).
PACK64_CYCLES_PER_FLOAT = 1.0
# im2col / pad call memcpy / memset once per (output pixel, tap) / per row, with a size known only at run time: a
# library call. Fitted (the one fitted figure): cycles of one such call beyond its bytes, from daBNN's published
# single-layer benchmark dabnn_3x3_64 (docs/benchmark_and_comparison.md @ d93aa95: 1.306391 ms on the Pixel 1,
# 56x56x64 -> 56x56x64 on a pre-padded packed input, whose im2col makes 3136 x 9 = 28224 calls): (1.306391e-3 s x
# 2.15e9 Hz - the kernel's other cycles on cortex-a72) / 28224 = 23.85; refitted and printed by
# benchmarks/bench_lce.py (kernel table), checked in tests/test_cpu_dabnn.py.
COPY_CALL_CYCLES = 23.85
# AvePool 2x2/2 (dabnn/layers/AvePool.cpp, ave_pool_2x2_s2): per 4 outputs 4 ld1, 3 fadd .4s, 1 fdiv .4s. FDIV Q-form
# single precision is not pipelined: FDIV_Q_CYCLES per instruction (assumed 10, of the order of the A57/A72 SWOG's
# FP divide rows; the guides could not be reopened when this was written).
FDIV_Q_CYCLES = 10.0

_BINARY_DIRECT_CHANNELS = (64, 128, 256, 512, 1024)  # BinConv::direct_conv_compatible
_SUPPORTED = frozenset({Op.CONV2D, Op.LINEAR, Op.BATCHNORM, Op.RELU, Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL,
                        Op.ADD, Op.CONCAT, Op.SIGN, Op.RESHAPE, Op.PRELU})


def _refuse(node: Node, why: str) -> SpecError:
    return SpecError(f"runtime='dabnn': layer {node.name!r} ({node.op}): {why}")


def bconv_method(graph: Graph, node: Node) -> str:
    """The kernel daBNN (``BinConv::forward_impl`` at :data:`DABNN_COMMIT`) runs a binary conv / linear with:
    ``"direct-64"``, ``"direct-128"``, ``"direct-packed"`` or ``"bgemm"``; a one-line :class:`SpecError` where daBNN
    would assert (input channels not a multiple of 64: ``pack_mat``; the direct kernels' shape asserts) or would run
    its scalar ``baseline_bconv`` (not modelled), or has no such layer (groups, dilation)."""
    a = node.attrs
    if node.op == Op.LINEAR:
        cin, cout, kh, kw, sh, sw = a.in_features, a.out_features, 1, 1, 1, 1
    else:
        if a.groups != 1:
            raise _refuse(node, f"groups={a.groups}: onnx2bnn refuses grouped convs (OnnxConverter.cpp: "
                                "'group != 1 is not supported')")
        if tuple(a.dilation) != (1, 1):
            raise _refuse(node, f"dilation={tuple(a.dilation)}: daBNN's BinConv runs dilation 1 only")
        cin, cout, (kh, kw), (sh, sw) = a.in_channels, a.out_channels, a.kernel, a.stride
    if cin % 64:
        raise _refuse(node, f"{cin} input channels: daBNN bit-packs channels in 64-bit words (pack_mat asserts "
                            "channels % 64 == 0)")
    if (kh, kw) == (3, 3) and sh == sw and cin in _BINARY_DIRECT_CHANNELS:
        oh, ow = node.shape[2], node.shape[3]
        if cin == 64:
            if (oh * ow) % 2 or cout % 2:
                raise _refuse(node, f"bconv_3x3_64 asserts an even output pixel count and channel count, got "
                                    f"{oh}x{ow} pixels, {cout} channels")
            return "direct-64"
        if cin == 128 and cout == 128:
            return "direct-128"
        if cout % 128:
            raise _refuse(node, f"{cout} output channels: bconv_3x3 asserts a multiple of 128 above 128 input "
                                "channels")
        return "direct-packed"
    if (kh * kw * cin // 64) % 2:
        raise _refuse(node, f"{kh}x{kw}x{cin} bits per output: an odd count of 64-bit words runs daBNN's scalar "
                            "baseline_bconv, which hwsim does not model")
    return "bgemm"


def _pad_work(node: Node) -> tuple[float, float]:
    """(memcpy calls, bytes) of ``pad`` before ``bconv_3x3`` (dabnn/pad.h: fill the padded bit map, one memcpy per
    input row)."""
    a = node.attrs
    n, ih, iw = node.shape[0], node.shape[2] * a.stride[0] + 2, node.shape[3] * a.stride[1] + 2  # padded input
    return float(n * ih), 2.0 * n * ih * iw * (a.in_channels // 64) * 8


def _direct_work(node: Node, method: str) -> tuple[dict, float, float]:
    """(ops, memcpy calls, bytes copied) of ``bconv_3x3`` on the padded packed input (what daBNN's single-layer
    benchmarks time)."""
    a = node.attrs
    n, cout, oh, ow = node.shape
    words = a.in_channels // 64
    outs = float(n * oh * ow * cout)
    if method == "direct-64":  # im2col of the packed input: one 8-byte memcpy per pixel and tap (dabnn/im2col.h)
        return _scaled(DIRECT_64_OPS, outs), float(n * oh * ow * 9), n * oh * ow * 9 * 8.0 * 2
    ops = _scaled(DIRECT_128_OPS, outs * (a.in_channels // 128))
    copied = 4.0 * outs  # top_blob.fill / the packed output's memset
    if method == "direct-packed":  # pack_weight_3x3, pack_input_3x3 (8-byte copies), unpack_output (4-byte floats)
        ih, iw = oh * a.stride[0] + 2, ow * a.stride[1] + 2
        copied += 2 * 8.0 * (cout * 9 * words + n * ih * iw * words) + 2 * 4.0 * outs
    return ops, 0.0, copied


def _bgemm_work(node: Node, im2col: bool = True) -> tuple[dict, float, float]:
    """(ops, memcpy calls, bytes copied) of im2col (``im2col=False``: without it) + ``bgemm`` (dabnn/bgemm.h)."""
    if node.op == Op.LINEAR:
        m_pix, taps, cin, cout = int(np.prod(node.shape[:-1])), 1, node.attrs.in_features, node.attrs.out_features
    else:
        a = node.attrs
        m_pix, taps, cin, cout = node.shape[0] * node.shape[2] * node.shape[3], a.kernel[0] * a.kernel[1], \
            a.in_channels, a.out_channels
    k = taps * cin // 64  # 64-bit words per output
    rows, cols = cout // BGEMM_P * BGEMM_P, m_pix // BGEMM_R * BGEMM_R
    blocks = (rows // BGEMM_P) * (cols // BGEMM_R)
    chunks = -(-k // BGEMM_KC_WORDS)
    ops = _add(_scaled(BGEMM_STEP_OPS, blocks * k / 2), _scaled(BGEMM_CHUNK_OPS, blocks * chunks))
    ops = _add(ops, {"scalar": float(cout * m_pix - rows * cols) * k * BGEMM_SCALAR_OPS_PER_WORD})
    copied = 8.0 * 2 * (m_pix * k + cout * k) + 4.0 * cout * m_pix  # pack_a / pack_b (read + write), output fill
    if not im2col:
        return ops, 0.0, copied
    return ops, float(m_pix * taps), copied + 8.0 * 2 * m_pix * k  # one memcpy per pixel and tap


def bconv_kernel_cycles(graph: Graph, node: Node, spec, *, pad: bool = True, im2col: bool = True) -> float:
    """Core cycles of a binary conv's kernel on ``spec.core`` (:func:`bconv_method` picks it): instructions, memcpy
    calls and copied bytes; ``pad=False`` leaves out ``pad`` (the direct paths) and ``im2col=False`` the im2col of
    the BGEMM path, as daBNN's single-layer benchmarks time them (benchmark/benchmark.cpp)."""
    method = bconv_method(graph, node)
    ops, calls, copied = _bgemm_work(node, im2col) if method == "bgemm" else _direct_work(node, method)
    if pad and method != "bgemm":
        pc, pb = _pad_work(node)
        calls, copied = calls + pc, copied + pb
    ops = dict(ops)
    scalar = ops.pop("scalar", 0.0)
    return issue_cycles(ops, spec.core) + scalar + calls * COPY_CALL_CYCLES + copied / COPY_BYTES_PER_CYCLE


def _gebp_cycles(m: int, n: int, k: int, fma_per_cycle: float, asimd_rate: float) -> float:
    """Cycles of Eigen's GEBP for an (m x k) x (k x n) float product (module constants)."""
    packets = m // 4
    big = packets // GEBP_MR_PACKETS * GEBP_MR_PACKETS
    rest = packets - big  # one 2pX4 or 1pX4 panel
    # (4-column groups and the pX1 columns beyond them cost the same per column: nr = 4 only sets the panels)
    panels = big // GEBP_MR_PACKETS + (1 if rest else 0)
    fmla = packets * n  # Q-form FMLAs per depth step: one per packet and column
    bcast = panels * n  # one broadcast per panel and column (4 per 4-column group, 1 per pX1 column)
    scalar_macs = (m % 4) * n * k
    return k * (fmla * 4 / fma_per_cycle + bcast / asimd_rate) + scalar_macs


def _fconv_work(graph: Graph, node: Node, spec) -> tuple[float, float, float]:
    """(cycles of the GEMM, memcpy calls, bytes copied) of a ``FloatConv`` (im2col + Eigen)."""
    from hwsim.cpu.arm import core

    c = core(spec.core)
    if node.op == Op.LINEAR:  # a 1x1 conv on a 1x1 map: im2col of one pixel; Eigen's GEMV, costed as n = 1
        m_pix, taps, cin, cout = int(np.prod(node.shape[:-1])), 1, node.attrs.in_features, node.attrs.out_features
    else:
        a = node.attrs
        m_pix, taps, cin, cout = node.shape[0] * node.shape[2] * node.shape[3], a.kernel[0] * a.kernel[1], \
            a.in_channels, a.out_channels
    k = taps * cin
    cycles = _gebp_cycles(cout, m_pix, k, c.fp32_fma_per_cycle, ASIMD_INT_Q_PER_CYCLE[spec.core])
    # im2col writes the K x N matrix; Eigen packs it (gemm_pack_rhs) and the weights (gemm_pack_lhs) before GEBP
    copied = 4.0 * (2 * k * m_pix + cout * k)
    if "bias" in node.params:
        copied += 4.0 * cout * m_pix
    return cycles, float(m_pix * taps), copied


def _elems(graph: Graph, name: str) -> int:
    return int(math.prod(graph.shape_of(name)))


def check_graph(graph: Graph) -> None:
    """Refuse, before any costing, a graph with a layer daBNN has no kernel for (one line naming it)."""
    readers = graph.consumers()
    for node in graph.nodes:
        if node.op not in _SUPPORTED:
            raise _refuse(node, "daBNN has no such layer (its layers: dabnn/layers/*.cpp: BinConv, FloatConv, "
                                "Affine, Add, Relu, PRelu, MaxPool, AvePool, Concat, Split, Shuffle, Binarize)")
        if is_binary_layer(graph, node):
            bconv_method(graph, node)
            if not node.meta.get("folded_bn") and not any(r.op == Op.BATCHNORM for r in readers.get(node.name, ())):
                raise _refuse(node, "no batch norm after this binary layer: daBNN's BinConv outputs popcounts that "
                                    "only the following BatchNorm turns into dot products (onnx2bnn @ d93aa95: "
                                    "'Binary convolutions should precede BatchNorm')")
        elif node.op == Op.SIGN and not all(is_binary_layer(graph, r) for r in readers.get(node.name, ())):
            raise _refuse(node, "a sign read by anything but binary convs: daBNN binarizes only into a BinConv's "
                                "packed input (its Binarize layer, dabnn/bitpack.h pack_mat)")
        elif node.op == Op.CONCAT and (len(node.inputs) != 2 or node.attrs.dim % len(node.shape) != 1):
            raise _refuse(node, "daBNN's Concat joins two inputs along the channels only (dabnn/net.cpp asserts "
                                "axis == 3 of NHWC; Concat.cpp reads two inputs)")
        elif node.op == Op.CONV2D and node.attrs.groups != 1:
            raise _refuse(node, f"groups={node.attrs.groups}: onnx2bnn refuses grouped convs (OnnxConverter.cpp: "
                                "'group != 1 is not supported')")
        elif node.op == Op.CONV2D and tuple(node.attrs.dilation) != (1, 1):
            raise _refuse(node, f"dilation={tuple(node.attrs.dilation)}: daBNN builds FloatConv with dilation 1 "
                                "(dabnn/net.cpp)")


def layer_work(graph: Graph, node: Node, spec) -> tuple[str, float, float, float]:
    """(kernel, compute cycles, float bytes in + out, binary MACs) of one layer on daBNN (module docstring)."""
    if node.op not in _SUPPORTED:
        raise _refuse(node, "daBNN has no such layer")
    out = float(math.prod(node.shape))
    ins = float(sum(_elems(graph, i) for i in node.inputs))
    fbytes = 4.0 * (ins + out)
    affine = 0.75 * out if node.meta.get("folded_bn") else 0.0  # the unfused Affine: 3 loads / 4 B per element
    if node.op in (Op.CONV2D, Op.LINEAR) and is_binary_layer(graph, node):
        method = bconv_method(graph, node)
        cyc = bconv_kernel_cycles(graph, node, spec)
        macs = float(np.prod(graph.param(node, "weight").shape[1:])) * out
        return f"binary-{method}", cyc + affine, fbytes, macs
    if node.op in (Op.CONV2D, Op.LINEAR):
        cyc, calls, copied = _fconv_work(graph, node, spec)
        return "fconv-im2col-eigen", cyc + calls * COPY_CALL_CYCLES + copied / COPY_BYTES_PER_CYCLE + affine, fbytes, 0.0
    if node.op == Op.SIGN:  # the Binarize layer (pack_mat)
        c = graph.shape_of(node.inputs[0])[1]
        cyc = ins * 4 / COPY_BYTES_PER_CYCLE if c % 128 == 0 else ins * PACK64_CYCLES_PER_FLOAT
        return "bitpack", cyc, 4.0 * ins, 0.0
    if node.op == Op.BATCHNORM:
        return "affine", 0.75 * out, fbytes, 0.0
    if node.op == Op.ADD:  # add_inplace: 2 loads per element
        return "add", 0.5 * out, fbytes, 0.0
    if node.op == Op.RELU:  # dabnn/layers/Relu.cpp: ld1, fmax, st1 per 4 floats (load-bound, as the streams above)
        return "relu", 0.25 * out, fbytes, 0.0
    if node.op == Op.PRELU:  # dabnn/layers/PRelu.cpp (added after 6916de5, at d93aa95): a scalar compare-and-multiply
        return "prelu", out, fbytes, 0.0  # per element, one per cycle
    if node.op == Op.CONCAT:  # dabnn/layers/Concat.cpp: per pixel one memcpy of each input's channels
        pixels = out / node.shape[1]
        return "concat", 2 * pixels * COPY_CALL_CYCLES + 2.0 * 4.0 * out / COPY_BYTES_PER_CYCLE, fbytes, 0.0
    if node.op == Op.RESHAPE:
        return "free", 0.0, 0.0, 0.0
    return _pool_work(graph, node, ins, out, fbytes)


def _pool_work(graph: Graph, node: Node, ins: float, out: float, fbytes: float) -> tuple[str, float, float, float]:
    """MaxPool / AvePool (dabnn/layers/MaxPool.cpp, AvePool.cpp)."""
    if node.op == Op.ADAPTIVE_AVGPOOL:  # global: ave_pool_fallback, a scalar add per input element
        return "avepool-global", ins, fbytes, 0.0
    a = node.attrs
    kk = a.kernel[0] * a.kernel[1]
    c = graph.shape_of(node.inputs[0])[1]
    n, _, ih, iw = graph.shape_of(node.inputs[0])
    pad_copy = 2.0 * 4.0 * n * c * (ih + 2 * a.padding[0]) * (iw + 2 * a.padding[1]) / COPY_BYTES_PER_CYCLE
    if node.op == Op.MAXPOOL and tuple(a.kernel) in ((3, 3), (2, 2)):  # pad, then one ld1 per tap per 4 outputs
        return "maxpool", pad_copy + ih * COPY_CALL_CYCLES + out / 4 * kk, fbytes, 0.0
    if node.op == Op.AVGPOOL and tuple(a.kernel) == (2, 2) and tuple(a.stride) == (2, 2) and c % 4 == 0:
        return "avepool-2x2", pad_copy + ih * COPY_CALL_CYCLES + out / 4 * (kk + FDIV_Q_CYCLES), fbytes, 0.0
    return f"{node.op.value}-fallback", out * kk, fbytes, 0.0  # the scalar fallback: one load and one op per tap


def dabnn_layers(graph: Graph, node: Node) -> int:
    """How many daBNN layers ``node`` becomes (onnx2bnn, OnnxConverter.cpp): none for a reshape (it only marks the
    next Gemm), two for a conv with a batch norm folded into it here (BinConv / FloatConv + the Affine daBNN runs
    apart: it never fuses a BatchNormalization), else one."""
    if node.op == Op.RESHAPE:
        return 0
    return 2 if node.op in (Op.CONV2D, Op.LINEAR) and node.meta.get("folded_bn") else 1


@functools.lru_cache(maxsize=64)  # one per spec: every layer of a report asks
def layer_fixed_cycles(spec) -> float:
    """Fixed core cycles per daBNN layer: **borrowed**, not fitted here — the ``layer_cycles`` that
    ``benchmarks/bench_arm_boards.py`` fitted for ncnn fp32 on the spec's core (:mod:`hwsim.cpu.runtime.fitted`:
    dispatch, set-up and the cold caches a layer inside a net meets; boards without binary nets, none of them a
    Pixel 1). daBNN is built the same way — ncnn's ``Mat`` and pool allocator (dabnn/mat.h, dabnn/allocator.cpp),
    one ``forward()`` per layer in ``Net::run`` (dabnn/net.cpp)."""
    from dataclasses import replace

    from hwsim.cpu.runtime import runtime_params

    try:
        return runtime_params(replace(spec, runtime="ncnn")).layer_cycles
    except SpecError as e:
        raise SpecError(f"runtime='dabnn' borrows ncnn's fitted per-layer cost, which is missing: {e}") from None


def layer_cost(graph: Graph, node: Node, spec, place):
    """:class:`hwsim.cpu.cost.LayerCost` of ``node`` on daBNN, one thread (module docstring); the graph has passed
    :func:`check_graph` (as :func:`hwsim.cpu.simulate` does before costing any layer)."""
    from hwsim.cpu.cost import LayerCost

    kernel, cycles, fbytes, macs = layer_work(graph, node, spec)
    t_c = cycles / spec.clock_hz
    llc = spec.l3_bytes or spec.l2_bytes
    main = fbytes if fbytes > llc else 0.0
    t_m = main / spec.dram_bw_bytes_s
    overhead = dabnn_layers(graph, node) * layer_fixed_cycles(spec) / spec.clock_hz
    latency = max(t_c, t_m) + overhead
    e = {"static": latency * spec.idle_power_w, "cores": latency * spec.active_power_w_per_core,
         "memory": main * spec.mem_energy_j_per_byte}
    binary = kernel.startswith("binary-")
    in_b = int(sum(_elems(graph, i) for i in node.inputs)) * 4
    sizes = {role: graph.params[key].size for role, key in node.params.items()}
    w_b = int(sum(v * (0.125 if binary and role == "weight" else 4) for role, v in sizes.items()))  # bits packed
    kind = KernelKind.BINARY_GEMM if binary else (KernelKind.BITPACK if kernel == "bitpack" else kernel)
    bound = "overhead" if overhead > max(t_c, t_m) else ("compute" if t_c >= t_m else "memory")
    flops = 2.0 * macs if binary else 2.0 * _float_macs(graph, node)
    return LayerCost(kind, flops, t_c, t_m, overhead, latency, bound, "dram" if main else "", main, w_b, in_b,
                     int(math.prod(node.shape)) * 4, 1, place.weight_home if w_b else "", sum(e.values()), e)


def _float_macs(graph: Graph, node: Node) -> float:
    if node.op not in (Op.CONV2D, Op.LINEAR) or "weight" not in node.params:
        return 0.0
    return float(np.prod(graph.param(node, "weight").shape[1:])) * float(math.prod(node.shape))
