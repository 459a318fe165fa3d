"""Runtime-aware compute cost of a layer on an Arm core: ncnn, XNNPACK, CMSIS-NN and X-CUBE-AI.

The hardware is the core record (:mod:`hwsim.cpu.arm`) and the board's clock and memories (the
:class:`~hwsim.cpu.spec.CPUSpec`); the runtime decides the algorithm of each layer and the work it does
(:mod:`hwsim.cpu.runtime.algorithms`); a few free parameters per core × runtime × precision, fitted on published
board measurements (:mod:`hwsim.cpu.runtime.fitted`, written by ``benchmarks/bench_arm_boards.py``), say how much of
the core's peak each kind of kernel reaches. For one execution of a layer on ``n`` threads:

``t_compute = (macs / (f · R_mac · eff) · s_gemm(n)``
``             + (dw_macs / (f · R_dw) + vec_ops / (f · lanes)) / eff_dw · s_vec(n)) · (1 + (n − 1) · contention)``

(``s_gemm(n)`` and ``s_vec(n)``: the share of the layer's GEMM and of its other work on the busiest of the ``n``
threads, from how the runtime splits the layer (:mod:`hwsim.cpu.runtime.threads`: ncnn's ``omp parallel for`` over
blocks of ``TILE_M`` output channels, channel blocks, or one thread for a channel concatenation); ``contention`` the
fractional slow-down of each busy thread per other busy thread, from the L2, interconnect and DRAM the cluster's
cores share, fitted per core × runtime × precision on the boards' 2- and 4-thread rows. On one thread both shares
are 1 and the factor is 1.)

(``eff = eff_wino`` for the Winograd-domain GEMM of a Winograd conv: 36 or 64 small batched GEMMs, one per
transformed tile position, with their own efficiency; ``eff_gemm`` for every other GEMM-like loop)

with ``f`` the clock (Hz), ``R_mac`` the core's MACs per cycle at the precision (``fp32_fma_per_cycle``, or
``int8_mac_per_cycle``; ncnn's int8 Winograd multiplies int16 in the transformed domain: 2 × the fp32 rate),
``R_dw`` the depthwise MAC rate (fp32: ``fp32_fma_per_cycle``; int8 on Cortex-A: widening int16 multiplies,
2 × the fp32 rate; int8 on Cortex-M: ``int8_mac_per_cycle``) and ``lanes`` the fp32 lanes of the vector unit
(1 on a core without one). ncnn runs "fp32" models in fp16 on the Armv8.2 cores with FP16 vector arithmetic
(A55, A76, A78): benchncnn sets ``use_fp16_storage`` and ``use_fp16_arithmetic`` (benchmark/benchncnn.cpp), and the
Arm layers take their ``*_fp16s`` paths (e.g. src/layer/arm/convolution_arm_asimdhp.cpp) when the CPU reports
asimdhp: there ``R_mac = R_dw = fp16_fma_per_cycle``. The layer also pays ``layer_cycles / f + (n − 1) · thread_s``
(``layer_cycles``: dispatch, pipeline set-up, the cold caches a layer inside a net meets: work of the core, so
counted in its cycles; ``thread_s``: the OpenMP fork/join and barrier of each extra thread of ncnn's
``#pragma omp parallel for`` loops); the memory time and the roofline are :mod:`hwsim.cpu.cost`'s, with 1 byte per
int8 element.

``runtime="dabnn"`` (JDAI-CV/dabnn, a binary-network engine) is modelled apart, layer by layer from its own kernels
(:mod:`hwsim.cpu.runtime.dabnn`, reached through :func:`hwsim.cpu.simulate`); it borrows only the
ncnn fit's per-layer cycles from this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hwsim.cache import identity_cache
from hwsim.cpu.arm import ArmCore, core
from hwsim.cpu.runtime.algorithms import FUSABLE_ACTIVATIONS, Work, readers, work
from hwsim.cpu.runtime.threads import EVEN, Split, layer_split
from hwsim.errors import SpecError, UnsupportedOpError
from mapping.analysis import conv_transpose_in_hw, layer_share, node_macs
from mapping.graph import ACTIVATIONS, Graph, Node, Op

__all__ = ["RuntimeParams", "runtime_params", "Terms", "runtime_terms", "deconv_work", "compute_s", "fixed_s", "overhead_s", "fused_activations",
           "runs_in_place",
           "Work"]


@dataclass(frozen=True, slots=True)
class RuntimeParams:
    """Free parameters of one core × runtime × precision (fractions of peak, cycles, seconds, a slow-down)."""

    eff_gemm: float  # fraction of R_mac a packed GEMM / Winograd GEMM / GEMV inner loop reaches
    eff_dw: float  # fraction of R_dw a depthwise kernel (and of the lanes an elementwise kernel) reaches
    layer_cycles: float  # fixed core cycles per executed layer (dispatch, set-up), cycles
    contention: float  # slow-down of a busy thread per other busy thread (shared L2 / DRAM; module docstring)
    fitted_on: str  # the boards (or "assumed: ...") the figures come from
    thread_s: float = 0.0  # fixed time per executed layer and extra thread (fork/join, barrier), s
    eff_wino: float = 0.0  # fraction of R_mac the Winograd-domain batched GEMM reaches; 0 = eff_gemm


def runtime_params(spec) -> RuntimeParams:
    """The fitted :class:`RuntimeParams` of ``spec``'s (core, runtime, precision), or a one-line error."""
    from hwsim.cpu.runtime.fitted import FITTED

    key = (spec.core, spec.runtime, spec.precision)
    if not spec.core:
        raise SpecError(f"CPUSpec.core must name an Arm core for runtime={spec.runtime!r} (the runtime models use "
                        "the core's issue rates); set core, or runtime='pytorch'")
    if key not in FITTED:
        have = sorted(f"{c}/{r}/{p}" for c, r, p in FITTED if r == spec.runtime)
        raise SpecError(f"CPUSpec: no fitted {spec.runtime} {spec.precision} parameters for core={spec.core!r}; "
                        f"fitted: {', '.join(have) or 'none'}")
    return RuntimeParams(**FITTED[key])


class Terms(NamedTuple):
    """Compute side of one layer for the whole batch on one thread at efficiency 1: the algorithm, the seconds of
    its GEMM, depthwise and vector streams, its MAC-equivalent work, and how the runtime splits it over threads
    (:class:`hwsim.cpu.runtime.threads.Split`; the default: evenly)."""

    algo: str
    gemm_s: float
    dw_s: float
    vec_s: float
    ops: float
    split: Split = EVEN
    clock_hz: float = 1e9  # the core's clock (the fixed per-layer cycles' rate), Hz
    share: float = 1.0  # the node's part of its runtime layer's fixed cost (mapping.analysis.layer_share)


# runtimes built on TFLite's graph (its ADD carries a fused activation: TFLite's converter folds a following
# ReLU / ReLU6 into it, and XNNPACK, CMSIS-NN's arm_elementwise_add_s8 and X-CUBE-AI's generated code apply it as
# the output clamp), as :func:`hwsim.cpu.int8.fused_activations` computes the int8 graph; ncnn runs its ReLU layer
# after a BinaryOp as a layer of its own (no fused activation on ncnn's BinaryOp)
FUSE_INTO_ADD = frozenset({"xnnpack", "cmsis-nn", "x-cube-ai"})


def fused_activations(graph: Graph, runtime: str = "ncnn") -> frozenset[str]:
    """Names of activation nodes a runtime fuses into the layer that feeds them (their only input is that layer's
    output and that output has no other reader): a conv or fully connected layer, and for the TFLite runtimes
    (:data:`FUSE_INTO_ADD`) also an add; none for the pytorch runtime."""
    from mapping.analysis import activation_fusions

    if runtime == "pytorch":  # eager dispatch: every op writes its own tensor, nothing is fused
        return frozenset()

    producers = {Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR} | ({Op.ADD} if runtime in FUSE_INTO_ADD else set())
    return frozenset(a.name for a in activation_fusions(graph, producers, lambda n: n.op in FUSABLE_ACTIVATIONS).values())


@identity_cache(maxsize=16)
def _sole_reader_activations(graph: Graph) -> frozenset[str]:
    """Activation nodes whose input no other node reads."""
    r = readers(graph)
    return frozenset(n.name for n in graph.nodes if n.op in ACTIVATIONS and len(r.get(n.inputs[0], ())) == 1)


def runs_in_place(graph: Graph, node: Node, runtime: str) -> bool:
    """Does ``runtime`` overwrite ``node``'s input with its output (no fresh output buffer)? PyTorch: as the model
    says (``meta["inplace"]``, ``nn.ReLU(inplace=True)``). ncnn: an activation layer (``support_inplace = true``,
    src/layer/relu.cpp and the others) runs in place in lightmode, benchncnn's default, after cloning its input
    when another layer still reads it (src/net.cpp, ``NetPrivate::do_forward_layer``, a4d2ea1): in place when it
    is its input's only reader, whatever the torch flag (which an ONNX export drops). The TFLite runtimes write
    every op's output to a tensor of its own."""
    if runtime == "pytorch":
        return bool(node.meta.get("inplace", False))
    return runtime == "ncnn" and node.name in _sole_reader_activations(graph)


def ncnn_fp16(c: ArmCore, spec) -> bool:
    """ncnn's "fp32" runs in fp16 on a core with fp16 FMA (benchncnn turns fp16 storage and arithmetic on)."""
    return spec.precision == "fp32" and spec.runtime == "ncnn" and c.fp16_fma_per_cycle > 0


def _rates(c: ArmCore, spec, w: Work) -> tuple[float, float, float]:
    """(MAC/s of the GEMM stream, MAC/s of the depthwise stream, ops/s of the vector stream) of one core at peak."""
    f = spec.clock_hz
    int8 = spec.precision == "int8"
    lanes = c.simd_bits / 32  # fp32 lanes: 4 for NEON / Helium, 1 for the scalar Cortex-M registers
    if ncnn_fp16(c, spec):
        r_mac = r_dw = c.fp16_fma_per_cycle  # ncnn's fp16 arithmetic (module docstring)
    elif not int8:
        r_mac = r_dw = c.fp32_fma_per_cycle
    elif w.algo.startswith("winograd"):
        r_mac, r_dw = 2.0 * c.fp32_fma_per_cycle, 2.0 * c.fp32_fma_per_cycle
    else:
        r_mac = c.int8_mac_per_cycle
        r_dw = 2.0 * c.fp32_fma_per_cycle if c.profile == "A" else c.int8_mac_per_cycle
    return f * r_mac, f * r_dw, f * lanes


def deconv_work(node: Node, runtime: str, precision: str) -> Work:
    """The :class:`Work` of a CONV_TRANSPOSE2D node for one sample on ncnn (Tencent/ncnn a4d2ea1; other runtimes and
    int8: a one-line refusal). A depthwise one (groups = Cin = Cout) is DeconvolutionDepthWise's direct kernel
    (src/layer/arm/deconvolutiondepthwise_arm.cpp: each output pixel of the bordered map gathers its taps), whose
    multiply-adds are every input pixel times every tap (``node_macs``) at the depthwise rate. Any other runs one
    Deconvolution per group (DeconvolutionDepthWise's group_ops), each with ``use_sgemm_convolution`` (on by default,
    src/option.cpp): src/layer/arm/deconvolution_arm.cpp's Gemm of M = kh·kw·Cout/g, N = H·W, K = Cin/g (the GEMM
    stream: ``node_macs``), then its col2im, which fills the bordered output of ``((H−1)·s + d·(k−1) + 1 + op)``
    rows and columns with the bias and adds every element of the product into it (vector ops: Cout·OHb·OWb +
    Cout·kh·kw·H·W). With padding, both cut the output out of the bordered map (cut_padding: a copy of Cout·OH·OW)."""
    if runtime != "ncnn" or precision != "fp32":
        raise UnsupportedOpError(f"conv_transpose2d {node.name!r} ({node.module or 'no module'}): hwsim models "
                                 f"transposed convolutions on runtime='ncnn' (fp32) and 'pytorch' only, not "
                                 f"{runtime!r} {precision}")
    a = node.attrs
    (h, w), k = conv_transpose_in_hw(node), a.kernel[0] * a.kernel[1]
    border = [(v - 1) * a.stride[i] + a.dilation[i] * (a.kernel[i] - 1) + 1 + a.output_padding[i]
              for i, v in enumerate((h, w))]
    crop = float(a.out_channels * node.shape[2] * node.shape[3]) if any(a.padding) else 0.0
    macs = float(node_macs(node))
    if a.depthwise:
        return Work("deconv-depthwise", 0.0, macs, crop)
    return Work("deconv-gemm", macs, 0.0, a.out_channels * (border[0] * border[1] + k * h * w) + crop)


def runtime_terms(graph: Graph, node: Node, spec, fused: bool) -> Terms:
    """The :class:`Terms` of ``node`` on ``spec``'s core, runtime and precision (``fused``: folded into its
    producer; a transposed conv: :func:`deconv_work`)."""
    c = core(spec.core)
    if node.op == Op.CONV_TRANSPOSE2D:
        w = deconv_work(node, spec.runtime, spec.precision)
    else:
        w = work(graph, node, spec.runtime, spec.precision, fused)
    batch = node.shape[0]
    r_mac, r_dw, r_vec = _rates(c, spec, w)
    fp16 = ncnn_fp16(c, spec)
    return Terms(w.algo, w.macs * batch / r_mac, w.dw_macs * batch / r_dw, w.vec_ops * batch / r_vec,
                 (w.macs + w.dw_macs + w.vec_ops) * batch,
                 layer_split(node, w.algo, spec.runtime, wide=fp16 or spec.precision == "int8", fp16=fp16),
                 spec.clock_hz, layer_share(graph, node))


def compute_s(t: Terms, p: RuntimeParams, n: int) -> float:
    """Compute seconds of a layer with terms ``t`` on ``n`` threads (module docstring); its fixed cost apart."""
    eff = (p.eff_wino or p.eff_gemm) if t.algo.startswith("winograd") else p.eff_gemm
    s_gemm, s_vec = t.split.shares(n)
    return (t.gemm_s / eff * s_gemm + (t.dw_s + t.vec_s) / p.eff_dw * s_vec) * (1.0 + (n - 1) * p.contention)


def fixed_s(p: RuntimeParams, clock_hz: float, n: int) -> float:
    """A layer's fixed seconds on ``n`` threads: ``layer_cycles / f + (n − 1) · thread_s``."""
    return p.layer_cycles / clock_hz + (n - 1) * p.thread_s


def overhead_s(t: Terms, p: RuntimeParams, n: int) -> float:
    """:func:`fixed_s` of a layer, none for an activation fused into its producer; a node of an unrolled recurrent
    layer pays its share (the runtime's fused LSTM / GRU / RNN layer pays one fixed cost)."""
    return 0.0 if t.algo == "fused" else fixed_s(p, t.clock_hz, n) * t.share
