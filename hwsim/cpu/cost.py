"""Per-layer cost of a node on a :class:`~hwsim.cpu.spec.CPUSpec`: a roofline over the cores and the caches.

Below: the ``runtime="pytorch"`` model. Other runtimes (ncnn, XNNPACK, CMSIS-NN, X-CUBE-AI) take their compute time
and fixed costs from :mod:`hwsim.cpu.runtime` (:func:`_runtime_layer_cost`) and share the memory model below, at
the spec's bytes per element.

For one execution of a node on ``n`` cores (formulas used below, in this order):

compute (s)
    ``t_c = FLOPs / (peak_core · eff_kind · lane_util · speedup(n))`` (a conv run by a direct kernel, kinds
    conv / grouped / depthwise, counts only the FLOPs of taps inside the image, ``× valid-tap fraction``
    (:func:`_valid_tap_fraction`): oneDNN's loops skip the zero padding, while a GEMM path multiplies it) with
    ``peak_core = clock_hz · lanes · fma_per_cycle · 2`` (an FMA is 2 FLOPs),
    ``speedup(n) = 1 + (n − 1) · parallel_eff · W / (W + parallel_flops_half)`` for a conv / linear node of W
    FLOPs (elementwise and pooling ops above the grain size: ``1 + (n − 1) · parallel_eff``),
    ``lane_util = C / (⌈C / lanes⌉ · lanes)`` for the vectorised channel dimension C (output channels per
    group of a conv, outputs of a linear, channels of a depthwise conv): a partly filled vector wastes lanes (a conv
    run as a GEMM call when the spec sets ``gemm_n_half``: ``lane_util = N / (N + gemm_n_half) · M / (M + gemm_m_half)``
    with N = Cout/groups, M = batch·OH·OW, the per-call packing of its panels amortised; a direct dense or grouped
    conv: ``× M / (M + conv_m_half)``, its output blocks short on a small map); a conv / linear with
    a short reduction K also pays its accumulator loads/stores: × K / (K + gemm_k_half). ``eff_kind`` is the
    spec's efficiency of the kernel that runs the node (:func:`kernel_kind`: a small dense conv may run as
    im2col + GEMM at ``eff_im2col``, its unfolded matrix adding 2·K·M·4 bytes of traffic and the copies that
    build it to t_c: ``calls · unfold_row_s + elements · unfold_element_s`` with K·OH·OW elements and one call per
    output row (K·OH) at stride 1, per element when strided, a strided 1×1 conv run as a GEMM included, over n
    threads (:func:`_unfold_s`); a grouped k×k conv
    that is not depthwise runs at ``eff_grouped``, or ``eff_conv`` when the spec sets 0).
    Elementwise ops count ``ops_per_element`` vector instructions per element (table ``ELEMENTWISE_OPS``)
    and run at ``clock · lanes · fma_per_cycle · speedup(n) · eff_elementwise`` elements/s; pooling counts one
    op per window tap (max pool 2: ``POOL_TAP_OPS``) plus ``pool_output_ops`` per output (the kernel's per-output loop: window bounds, the stored
    result and, for max pool, its index) at ``eff_pool`` (an adaptive average pool to more than 1×1 runs the same
    kind of kernel; to 1×1 it is a mean, an elementwise reduction), upsampling one per source tap (``RESAMPLE_TAPS``: bilinear 4, nearest 1)
    plus ``resample_output_ops`` per output (its source index and weights) at ``eff_resample`` (``eff_elementwise``
    when the spec sets 0).
    Products of activations (MATMUL, ATTENTION: kinds matmul / attention) are GEMM calls at ``eff_im2col``,
    attention adding its softmax over the L·S scores at the elementwise rate; their formulas, and the instruction
    counts of the transformer / imported-model elementwise ops, are in :mod:`hwsim.cpu.cost_ops`.
memory (s)
    Each operand (input, weights, output) has a *home*: the smallest cache that holds it in the steady
    state of back-to-back inferences (activations: when this layer's input + output fit, the input alone for an
    in-place activation (``meta["inplace"]``), which writes no new buffer; weights: when
    all the network's weights plus its peak live activations fit), else main memory (weights: flash
    when the spec has flash). When the weights live in DRAM, a layer's output is written into a buffer
    last touched one inference ago, long evicted: its bytes cross every cache level from DRAM. For each cache level c, the bytes crossing the boundary below c are
    ``T_c = (compulsory bytes of the operands whose home is beyond c) + (re-reads forced by blocking
    against c)``. Re-reads use the classic blocking estimate for the conv as an implicit GEMM
    (M = N·OH·OW, N = Cout/g, K = Cin/g·kh·kw, per group; a MATMUL / ATTENTION: each of its GEMMs, attention's
    score matrix, 4 passes of L·S, adding to its activation bytes as an im2col's unfolded matrix does): if the
    weights or the input fit in half the
    cache they are read once, else with square tiles b = √(S/3) words the input is streamed ⌈N/b⌉ times
    and the weights ⌈M/b⌉ times (Hong & Kung, STOC'81; Lam, Rothberg & Wolf, ASPLOS'91). The time of a
    boundary is ``T_c / bandwidth of the level that serves it`` (per-core L2 bandwidth scales with n;
    L3 and DRAM are shared); main memory splits weights read from flash (``flash_bw``) and the rest
    (``dram_bw``). ``t_m = max over boundaries`` (levels prefetch in parallel).
latency (s)
    ``t = max(t_c + t_w, t_m)`` with ``t_w`` = the weight bytes over their home's bandwidth when a conv's weights
    live in L3 or DRAM (the kernel packs its weights before computing on them), 0 otherwise (a direct conv, kinds
    conv / grouped / depthwise, when the spec sets ``weight_reorder_bw_bytes_s``: at least the runtime's per-call
    copy of its weights into the kernel's layout, ``w_b / (weight_reorder_bw_bytes_s · (1 + (n − 1)·parallel_eff))``,
    wherever the weights live); ``t_c + t_m (+ t_w)`` for the
    streaming kinds (:data:`STREAMING`: depthwise, elementwise, pool, move, which touch each activation once and
    have too little work per byte to hide their misses)
    ``+ t_reorder`` for a direct conv (kinds conv / grouped / depthwise) when the spec sets ``reorder_activations``:
    the runtime copies the NCHW input into its channel-blocked layout and the output back on every call, each
    copy one read and one write of the tensor at the bandwidth of the level that holds source and copy
    (:func:`_reorder_s`; no input copy when Cin < lanes: oneDNN's first-layer kernels read the plain input)
    ``+ layer_overhead_s (+ overhead_conv_s for the conv kernel, a grouped conv adding
    overhead_grouped_s; + overhead_gemm_s for a conv run as a GEMM (pointwise, im2col), a grouped 1×1 conv
    adding overhead_per_group_s per extra group (a MATMUL / ATTENTION: per GEMM call and leading element, attention
    also two more kernel dispatches: :func:`hwsim.cpu.cost_ops.product_overhead_s`); + overhead_depthwise_s for a
    depthwise conv; + overhead_batchnorm_s
    for a batch norm left unfused (the runtime derives per-channel scale and shift from the statistics per call);
    a view (channel slice) pays ``overhead_view_s`` instead of ``layer_overhead_s`` when the spec sets it)
    (+ parallel_overhead_s when n > 1)``; ``bound`` says which
    term won ("compute", "memory" or "overhead"). An elementwise, pooling or data-movement op with fewer
    output elements than ``parallel_grain_elements`` runs with n = 1.
energy (J)
    ``E = t · (idle_power_w + n · active_power_w_per_core) + main-memory bytes · mem_energy_j_per_byte``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.cpu.cost_ops import (
    DIRECT_CONV_KINDS,
    GEMM_CONV_KINDS,
    NEW_ELEMENTWISE_OPS,
    PACKING_KINDS,
    PRODUCT_KINDS,
    RUNTIME_ALGORITHM_KIND,
    SMALL_OPS,
    STREAMING,
    WEIGHT_KINDS,
    Gemm,
    KernelKind,
    ops_per_element,
    product_compute_s,
    product_gemms,
    product_overhead_s,
    score_bytes,
)
from hwsim.cpu.cost_ops import lane_util as _lane_util
from hwsim.cpu.cost_ops import speedup as _speedup
from hwsim.cpu.cost_ops import unfold_s as _unfold_s
from hwsim.cpu.cost_ops import valid_tap_fraction as _valid_tap_fraction
from hwsim.cpu.runtime import Terms, fused_activations, runs_in_place, runtime_params, runtime_terms
from hwsim.cpu.runtime import compute_s as runtime_compute_s
from hwsim.cpu.runtime import overhead_s as runtime_overhead_s
from hwsim.cpu.spec import CPUSpec
from mapping.analysis import elementwise_ops, node_macs
from mapping.graph import Graph, Node, Op

__all__ = ["KernelKind", "LayerCost", "Placement", "kernel_kind", "layer_cost", "placement", "runtime_layer_terms",
           "ELEMENTWISE_OPS", "POOL_TAP_OPS"]

# Cortex-M4/M7 FPU: 32 single-precision registers S0-S31 = 128 bytes (ARM Cortex-M4 TRM r0p1, §7.1 "FPU
# register file"). Without a data cache, the kernel blocks its operands in these registers.
REGISTER_FILE_BYTES = 128

# Vector instructions per element of an elementwise op (instruction counts of a vectorised
# implementation: relu = 1 max, relu6 = max + min, hardswish = add, min/max, mul, mul; exp-based ops use
# a ~10-instruction polynomial exp as in XNNPACK's sigmoid/silu micro-kernels). A global average pool (a mean)
# counts one op per input element (mapping.analysis.elementwise_ops counts the inputs).
# The transformer / imported-model ops' counts are documented in hwsim.cpu.cost_ops.NEW_ELEMENTWISE_OPS.
ELEMENTWISE_OPS = {
    Op.RELU: 1, Op.RELU6: 2, Op.HARDSWISH: 5, Op.HARDSIGMOID: 3, Op.SIGMOID: 12, Op.SILU: 13, Op.TANH: 12,
    Op.ADD: 1, Op.MUL: 1, Op.BATCHNORM: 1, Op.ADAPTIVE_AVGPOOL: 1, Op.SIGN: 1, Op.QUANTIZE: 4,
    **NEW_ELEMENTWISE_OPS,
}
# Ops per window tap of a pooling kernel (the "pool" kind; elementwise_ops counts the taps): an average pool loads
# and adds (1), a max pool loads, compares and, when the tap wins, updates both the maximum and its index (2; ATen's
# cpu_max_pool keeps the index of every output); single-thread timings behind the counts: docs/targets/cpu-calibration.md.
POOL_TAP_OPS = {Op.MAXPOOL: 2, Op.AVGPOOL: 1, Op.ADAPTIVE_AVGPOOL: 1}
# Resampling (Op.UPSAMPLE) reads taps source pixels per output: bilinear 4 (2x2 neighbourhood), nearest 1. The
# runtime's kernel computes source indices and weights per output and gathers (no straight vector stream): its
# own efficiency, eff_resample.
RESAMPLE_TAPS = {"bilinear": 4, "nearest": 1}
MOVE_OPS = frozenset({Op.CONCAT, Op.CHANNEL_SHUFFLE, Op.PERMUTE, Op.PAD})  # data movement only
# a channel slice of an NCHW tensor is a view: dispatch overhead, no data moved; a CONSTANT is a broadcast view of its
# parameter (torch's expand): dispatch plus the read of its parameter bytes (counted as weights, from their home)
VIEW_OPS = frozenset({Op.SLICE, Op.CONSTANT})
PRODUCT_OP_KINDS = {Op.MATMUL: KernelKind.MATMUL, Op.ATTENTION: KernelKind.ATTENTION, Op.CONV_TRANSPOSE2D: KernelKind.DECONV}
FREE_OPS = frozenset({Op.RESHAPE})  # a view: no data moved, no kernel launched


def kernel_kind(node: Node, spec: CPUSpec | None = None, cores: int = 1) -> KernelKind:
    """Which kernel (:class:`KernelKind`) runs the node on ``cores`` threads (matmul / attention: GEMMs of
    activations, :mod:`hwsim.cpu.cost_ops`).

    ``pointwise``: a 1×1 conv run as a GEMM (one per group). When ``spec.pointwise_gemm_max_threads`` is set, a
    1×1 conv that is strided or runs on more threads than that, and is grouped or has an input above
    ``spec.gemm_conv_max_input_elements``, runs the generic conv kernel instead (``conv``, or ``grouped``).
    ``grouped``: a k×k conv (not 1×1) with groups > 1 that is not depthwise.
    ``im2col``: a dense conv (groups = 1, kernel <= 3×3, not 1×1) whose input has at most
    ``spec.gemm_conv_max_input_elements`` elements per sample (the runtime unfolds it and calls a GEMM).
    """
    if node.op == Op.CONV2D:
        a = node.attrs
        if a.groups > 1 and a.groups == a.in_channels and a.out_channels % a.in_channels == 0:
            return KernelKind.DEPTHWISE
        if tuple(a.kernel) == (1, 1):
            if (spec is not None and spec.pointwise_gemm_max_threads > 0
                    and (max(a.stride) > 1 or cores > spec.pointwise_gemm_max_threads)
                    and (a.groups > 1 or a.in_channels * _in_hw(node) > spec.gemm_conv_max_input_elements)):
                return KernelKind.GROUPED if a.groups > 1 else KernelKind.CONV
            return KernelKind.POINTWISE
        if a.groups > 1:
            return KernelKind.GROUPED
        if (spec is not None and a.groups == 1 and max(a.kernel) <= 3
                and a.in_channels * _in_hw(node) <= spec.gemm_conv_max_input_elements):
            return KernelKind.IM2COL
        return KernelKind.CONV
    if node.op in (Op.MAXPOOL, Op.AVGPOOL):
        return KernelKind.POOL
    if node.op == Op.ADAPTIVE_AVGPOOL and tuple(node.shape[2:]) != (1, 1):
        return KernelKind.POOL  # ATen's adaptive average pool kernel; to 1x1 it computes input.mean((-2, -1)) instead
    if node.op == Op.UPSAMPLE:
        return KernelKind.RESAMPLE
    if node.op == Op.LINEAR:
        return KernelKind.LINEAR
    if node.op in PRODUCT_OP_KINDS:
        return PRODUCT_OP_KINDS[node.op]
    if node.op in MOVE_OPS:
        return KernelKind.MOVE
    if node.op in FREE_OPS:
        return KernelKind.FREE
    if node.op in VIEW_OPS:
        return KernelKind.VIEW
    return KernelKind.ELEMENTWISE


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the network's data lives in the steady state (decided once per graph)."""

    weight_home: str  # "L1" | "L2" | "L3" | "dram" | "flash"
    total_weight_bytes: int
    peak_activation_bytes: int
    fused: frozenset = frozenset()  # activations the runtime fuses into their producer (runtimes other than pytorch)


@dataclass(frozen=True, slots=True)
class LayerCost:
    kind: KernelKind | str  # the kernel; on a runtime other than PyTorch, its algorithm name (runtime.algorithms)
    flops: float
    compute_s: float
    memory_s: float
    overhead_s: float
    latency_s: float
    bound: str
    memory_level: str  # the boundary that set memory_s: level serving the misses ("L2", "L3", "dram")
    main_memory_bytes: float  # bytes to/from DRAM (and flash)
    weight_bytes: int
    in_bytes: int
    out_bytes: int
    cores: int
    weight_home: str
    energy_j: float
    energy_breakdown: dict


def _caches(spec: CPUSpec, n: int) -> list[tuple[str, float, str, float]]:
    """Cache levels as (name, capacity bytes, serving level, serving bandwidth B/s; inf = not modelled)."""
    levels: list[tuple[str, float]] = []
    if spec.l1d_bytes > 0:
        levels.append(("L1", spec.l1d_bytes))
    else:
        levels.append(("reg", REGISTER_FILE_BYTES))
    if spec.l2_bytes > 0:
        levels.append(("L2", spec.l2_bytes * (n if spec.l2_per_core else 1)))
    if spec.l3_bytes > 0:
        levels.append(("L3", spec.l3_bytes))
    bw = _level_bw(spec, n)
    out = []
    for i, (name, cap) in enumerate(levels):
        nxt = levels[i + 1][0] if i + 1 < len(levels) else "dram"
        b = bw.get(nxt, 0.0)
        out.append((name, float(cap), nxt, b if b > 0 else math.inf))
    return out


def _level_bw(spec: CPUSpec, n: int) -> dict[str, float]:
    """Bandwidth in B/s of each level serving data on ``n`` cores (a private L2 scales with the cores; 0 = not
    measured)."""
    return {"L2": spec.l2_bw_bytes_s * (n if spec.l2_per_core else 1), "L3": spec.l3_bw_bytes_s,
            "dram": spec.dram_bw_bytes_s}


def placement(graph: Graph, spec: CPUSpec, peak_activation_bytes: int, cores: int) -> Placement:
    """Decide the steady-state home of the weights (smallest cache holding all weights + peak activations; the
    weights' bytes: :func:`hwsim.cpu.binary.weight_bytes`)."""
    from hwsim.cpu.binary import weight_bytes

    wbytes = weight_bytes(graph, spec)
    home = "flash" if spec.weights_in_flash else "dram"
    if not spec.weights_in_flash:
        for name, cap, _, _ in _caches(spec, cores):
            if name != "reg" and wbytes + peak_activation_bytes <= cap:
                home = name
                break
    return Placement(home, wbytes, peak_activation_bytes, fused_activations(graph, spec.runtime))


def _in_hw(node: Node) -> int:
    """Input pixels per channel of a conv (from its output shape and attributes)."""
    a = node.attrs
    oh, ow = node.shape[2], node.shape[3]
    ih = (oh - 1) * a.stride[0] - 2 * a.padding[0] + a.dilation[0] * (a.kernel[0] - 1) + 1
    iw = (ow - 1) * a.stride[1] - 2 * a.padding[1] + a.dilation[1] * (a.kernel[1] - 1) + 1
    return ih * iw


def _gemms(graph: Graph, node: Node, in_words: int) -> list[Gemm]:
    """The GEMMs of a node for the whole batch: a conv / linear as one implicit GEMM (groups, M, N, K, its input of
    ``in_words``), a MATMUL / ATTENTION as its GEMMs of activations (:func:`hwsim.cpu.cost_ops.product_gemms`)."""
    if node.op == Op.CONV2D:
        a = node.attrs
        m = node.shape[0] * node.shape[2] * node.shape[3]
        return [Gemm(a.groups, m, a.out_channels // a.groups, a.rows, in_words)]
    if node.op == Op.LINEAR:
        a = node.attrs
        m = int(math.prod(node.shape[:-1]))
        return [Gemm(1, m, a.out_features, a.in_features, in_words)]
    if node.op in PRODUCT_OP_KINDS:
        return product_gemms(graph, node)
    return []


def _blocked_words(groups: int, m: int, n: int, k: int, in_words: int, s_words: float) -> float:
    """Words moved across a cache of ``s_words`` words by a blocked GEMM (classic blocking estimate)."""
    in_g, w_g, out_g = in_words / groups, n * k, m * n
    if in_g + w_g + out_g <= s_words or w_g <= s_words / 2 or in_g <= s_words / 2:
        return groups * (in_g + w_g + out_g)  # one operand stays resident: compulsory traffic only
    b = max(1.0, math.sqrt(s_words / 3))
    return groups * (in_g * math.ceil(n / min(n, b)) + w_g * math.ceil(m / min(m, b)) + out_g)


def _compute_s(graph: Graph, node: Node, kind: KernelKind, spec: CPUSpec, n: int) -> tuple[float, float]:
    """(FLOPs, compute seconds) of one execution of ``node`` for the whole batch."""
    batch = node.shape[0]
    if kind in PRODUCT_KINDS:
        return product_compute_s(graph, node, spec, n, ELEMENTWISE_OPS)
    if kind in WEIGHT_KINDS:
        flops = 2.0 * node_macs(node) * batch
        if kind in DIRECT_CONV_KINDS:  # the direct kernels skip the taps that fall in the zero padding
            flops *= _valid_tap_fraction(graph, node)
        eff = {"conv": spec.eff_conv, "depthwise": spec.eff_depthwise, "pointwise": spec.eff_pointwise,
               KernelKind.IM2COL: spec.eff_im2col, KernelKind.LINEAR: spec.eff_linear,
               KernelKind.GROUPED: spec.eff_grouped or spec.eff_conv}[kind]
        if node.op == Op.LINEAR:
            chan = node.attrs.out_features
        elif kind == KernelKind.DEPTHWISE:
            chan = node.attrs.out_channels
        else:  # a grouped conv is one GEMM per group: its vectors span Cout / groups channels
            chan = node.attrs.out_channels // node.attrs.groups
        m = batch * node.shape[2] * node.shape[3] if node.op == Op.CONV2D else batch  # output pixels
        if kind in GEMM_CONV_KINDS and spec.gemm_n_half > 0:  # a GEMM call: packing amortised over N, M
            util = chan / (chan + spec.gemm_n_half) * m / (m + spec.gemm_m_half)
        else:
            util = _lane_util(chan, spec.lanes)
        if kind in (KernelKind.CONV, KernelKind.GROUPED) and spec.conv_m_half > 0:  # a direct kernel's short output blocks
            util *= m / (m + spec.conv_m_half)
        if kind != KernelKind.DEPTHWISE and spec.gemm_k_half > 0:
            k = node.attrs.in_features if node.op == Op.LINEAR else node.attrs.rows
            util *= k / (k + spec.gemm_k_half)
        return flops, flops / (spec.peak_flops_per_core * eff * util * _speedup(spec, n, flops))
    if kind in (KernelKind.ELEMENTWISE, KernelKind.POOL, KernelKind.RESAMPLE):
        if kind == KernelKind.RESAMPLE:
            ops = float(elementwise_ops(graph, node)) * batch * (RESAMPLE_TAPS.get(node.attrs.mode, 4)
                                                                 + spec.resample_output_ops)
        elif kind == KernelKind.POOL:  # one op per window tap + the per-output loop's work
            ops = float(elementwise_ops(graph, node) * POOL_TAP_OPS[node.op]
                        + spec.pool_output_ops * math.prod(node.shape[1:])) * batch
        else:
            ops = float(elementwise_ops(graph, node)) * batch * ops_per_element(node, ELEMENTWISE_OPS)
        eff = {KernelKind.POOL: spec.eff_pool,
               KernelKind.RESAMPLE: spec.eff_resample or spec.eff_elementwise}.get(kind, spec.eff_elementwise)
        # above the grain size these split evenly over the cores (the work ramp is the conv kernels')
        rate = spec.clock_hz * spec.lanes * spec.fma_per_cycle * _speedup(spec, n) * eff
        return ops, ops / rate
    return 0.0, 0.0


def _reorder_s(spec: CPUSpec, n: int, nbytes: int) -> tuple[float, float]:
    """(seconds, main-memory bytes) of one layout copy of a tensor of ``nbytes``: it reads the tensor and writes
    the copy (2·nbytes moved), at the L2 copy bandwidth when both fit the L2 (per core when private: the copy
    splits over the ``n`` threads), else at the L3's bandwidth when they fit the L3, else at main memory's."""
    moved = 2.0 * nbytes
    bw = _level_bw(spec, n)
    for name, cap, _, _ in _caches(spec, n):
        if name in bw and bw[name] > 0 and moved <= cap:
            return moved / bw[name], 0.0
    return moved / bw["dram"], moved


def layer_cost(graph: Graph, node: Node, spec: CPUSpec, place: Placement, cores: int) -> LayerCost:
    """Latency, bound and energy of one execution of ``node`` on ``cores`` cores (see module docstring)."""
    n = max(1, min(int(cores), spec.cores))
    kind = kernel_kind(node, spec, n)
    if kind in SMALL_OPS and math.prod(node.shape) < spec.parallel_grain_elements:
        n = 1  # below the runtime's grain size the op runs on the calling thread alone
    # a CONSTANT's input only gives the batch size: it reads its parameter (w_b), not the input
    in_elems = 0 if node.op == Op.CONSTANT else sum(math.prod(graph.shape_of(i)) for i in node.inputs)
    bpe = spec.bytes_per_element
    in_b = int(in_elems) * bpe
    out_b = int(math.prod(node.shape)) * bpe
    w_b = int(sum(graph.params[k].size for k in node.params.values())) * bpe
    if kind == KernelKind.FREE:
        return LayerCost(kind, 0.0, 0.0, 0.0, 0.0, 0.0, "overhead", "", 0.0, w_b, in_b, out_b, n,
                         place.weight_home if w_b else "", 0.0, {})
    if spec.runtime != "pytorch":
        return _runtime_layer_cost(graph, node, spec, place, n, (in_b, out_b, w_b))
    flops, t_c = _compute_s(graph, node, kind, spec, n)
    t_c += _unfold_s(node, kind, spec, n)

    t_m, level, main_bytes, flash_bytes, w_home = _memory_s(graph, node, kind, spec, n, place, (in_b, out_b, w_b))
    base = spec.overhead_view_s if (kind == KernelKind.VIEW and spec.overhead_view_s > 0) else spec.layer_overhead_s
    overhead = base + (spec.parallel_overhead_s if n > 1 else 0.0)
    if kind in (KernelKind.CONV, KernelKind.GROUPED):
        overhead += spec.overhead_conv_s + (spec.overhead_grouped_s if kind == KernelKind.GROUPED else 0.0)
    elif kind in GEMM_CONV_KINDS:
        overhead += spec.overhead_gemm_s
        if kind == KernelKind.POINTWISE:
            overhead += (node.attrs.groups - 1) * spec.overhead_per_group_s
    elif kind == KernelKind.DEPTHWISE:
        overhead += spec.overhead_depthwise_s
    elif kind in PRODUCT_KINDS:
        overhead += product_overhead_s(node, spec, n)
    elif node.op == Op.BATCHNORM:
        overhead += spec.overhead_batchnorm_s
    # kernels that stream each activation once (depthwise, elementwise, pooling, copies) have too little
    # work per byte to hide their misses: their memory time adds to their compute time. A conv kernel
    # first packs (reorders) its weights; weights living beyond L2 arrive at their home level's bandwidth
    # before the compute on them can start (a linear layer of one row streams its weights once, already
    # in t_m; weights read in place from flash overlap instead).
    t_wcold = 0.0
    if w_b and w_home in ("L3", "dram") and kind in PACKING_KINDS:
        t_wcold = w_b / (spec.l3_bw_bytes_s if w_home == "L3" and spec.l3_bw_bytes_s > 0 else spec.dram_bw_bytes_s)
    if w_b and kind in DIRECT_CONV_KINDS and spec.weight_reorder_bw_bytes_s > 0:
        # the per-call copy of the weights into the kernel's blocked layout: shuffle-bound, split over the cores
        t_wcold = max(t_wcold, w_b / (spec.weight_reorder_bw_bytes_s * _speedup(spec, n)))
    body = t_c + t_m + t_wcold if kind in STREAMING else max(t_c + t_wcold, t_m)
    t_reorder = 0.0
    if spec.reorder_activations and kind in DIRECT_CONV_KINDS:
        plain_input = node.attrs.groups == 1 and node.attrs.in_channels < spec.lanes  # first-layer kernel
        for nbytes in ((out_b,) if plain_input else (in_b, out_b)):
            t, dram = _reorder_s(spec, n, nbytes)
            t_reorder += t
            main_bytes += dram
    body += t_reorder
    t_m += t_reorder
    latency = body + overhead
    bound = "overhead" if overhead > body else ("compute" if t_c >= t_m else "memory")
    e_static = latency * spec.idle_power_w
    e_core = latency * n * spec.active_power_w_per_core
    e_mem = (main_bytes + flash_bytes) * spec.mem_energy_j_per_byte
    breakdown = {"static": e_static, "cores": e_core, "memory": e_mem}
    return LayerCost(kind, flops, t_c, t_m, overhead, latency, bound, level, main_bytes + flash_bytes, w_b,
                     in_b, out_b, n, w_home if w_b else "", e_static + e_core + e_mem, breakdown)


def _memory_s(graph: Graph, node: Node, kind: KernelKind, spec: CPUSpec, n: int, place: Placement,
              sizes: tuple[int, int, int]) -> tuple[float, str, float, float, str]:
    """(memory seconds, level that set them, main-memory bytes, flash bytes, the weights' home) of one execution
    (module docstring, "memory"); ``sizes`` = (input, output, weight) bytes at the spec's precision."""
    in_b, out_b, w_b = sizes
    bpe = spec.bytes_per_element
    caches = _caches(spec, n)
    names = [c[0] for c in caches] + ["dram", "flash"]
    order = {nm: i for i, nm in enumerate(names)}
    gemms = _gemms(graph, node, in_b // bpe)
    # im2col: the unfolded K×M matrix is written once and read once by the GEMM; attention: its score matrix
    unfold_b = 2 * gemms[0].m * gemms[0].k * bpe if kind == KernelKind.IM2COL else 0
    unfold_b += score_bytes(graph, node, bpe)
    # an activation the runtime runs in place (runs_in_place) overwrites its input: one buffer, no fresh output
    inplace = kind == KernelKind.ELEMENTWISE and runs_in_place(graph, node, spec.runtime)
    act_b = 0 if kind == KernelKind.VIEW else (in_b if inplace else in_b + out_b + unfold_b)
    act_home = next((nm for nm, cap, _, _ in caches if nm != "reg" and act_b <= cap), "dram")
    w_home = place.weight_home if w_b else act_home
    compulsory = act_b + w_b
    t_m, level, main_bytes, flash_bytes = 0.0, "", 0.0, 0.0
    # in back-to-back inferences an output buffer was last touched one inference ago: when the network does
    # not fit the caches (its weights live in DRAM), that buffer has been evicted and is written from DRAM
    cold_out = out_b if (place.weight_home == "dram" and kind not in (KernelKind.VIEW, KernelKind.FREE)
                          and not inplace) else 0
    for name, cap, serving, bw in caches:
        beyond_w = w_b if order[w_home] > order[name] else 0
        beyond_a = act_b if order[act_home] > order[name] else cold_out
        reread = 0.0
        if gemms:
            words = sum(_blocked_words(g.groups, g.m, g.n, g.k, g.a_words, cap / bpe) for g in gemms)
            reread = max(0.0, words * bpe - compulsory)
        crossing = beyond_w + beyond_a + reread
        if serving == "dram":  # main memory: weights may come from flash, the rest from RAM
            fl = beyond_w if w_home == "flash" else 0
            flash_bytes, main_bytes = fl, crossing - fl
            t = main_bytes / spec.dram_bw_bytes_s + (fl / spec.flash_bw_bytes_s if fl else 0.0)
        else:
            t = crossing / bw if math.isfinite(bw) else 0.0
        if t > t_m:
            t_m, level = t, ("flash" if flash_bytes and serving == "dram" and flash_bytes >= main_bytes else serving)
    return t_m, level, main_bytes, flash_bytes, w_home



def runtime_layer_terms(graph: Graph, node: Node, spec: CPUSpec, place: Placement, n: int,
                        sizes: tuple[int, int, int]) -> tuple[Terms, float, bool, tuple]:
    """(compute terms, memory seconds, streaming?, (level, main bytes, flash bytes, weight home)) of a layer on a
    runtime other than PyTorch: the parts of :func:`_runtime_layer_cost` that do not depend on the fitted
    parameters (``benchmarks/bench_arm_boards.py`` fits those on them)."""
    terms = runtime_terms(graph, node, spec, node.name in place.fused)
    if terms.algo == "fused":
        return terms, 0.0, False, ("", 0.0, 0.0, "")
    kind = RUNTIME_ALGORITHM_KIND.get(terms.algo, KernelKind.CONV)  # the Winograd convs: a conv kernel's traffic
    t_m, level, main_bytes, flash_bytes, w_home = _memory_s(graph, node, kind, spec, n, place, sizes)
    return terms, t_m, kind in STREAMING, (level, main_bytes, flash_bytes, w_home)


def _runtime_layer_cost(graph: Graph, node: Node, spec: CPUSpec, place: Placement, n: int,
                        sizes: tuple[int, int, int]) -> LayerCost:
    """A layer on a runtime other than PyTorch: compute from :mod:`hwsim.cpu.runtime` (its algorithm, the core's
    rates, the fitted efficiencies), memory from :func:`_memory_s` at the spec's precision, ``t = max(t_c, t_m)``
    (``t_c + t_m`` for the streaming kinds) ``+ layer_cycles / f + (n − 1) · thread_s`` (the runtime's fixed cost per
    layer, :func:`hwsim.cpu.runtime.overhead_s`); an activation fused into its producer costs nothing."""
    in_b, out_b, w_b = sizes
    terms, t_m, streaming, (level, main_bytes, flash_bytes, w_home) = runtime_layer_terms(graph, node, spec, place,
                                                                                          n, sizes)
    p = runtime_params(spec)
    t_c, t_o = runtime_compute_s(terms, p, n), runtime_overhead_s(terms, p, n)
    body = t_c + t_m if streaming else max(t_c, t_m)
    latency = body + t_o
    bound = "overhead" if t_o > body else ("compute" if t_c >= t_m else "memory")
    e_static = latency * spec.idle_power_w
    e_core = latency * n * spec.active_power_w_per_core
    e_mem = (main_bytes + flash_bytes) * spec.mem_energy_j_per_byte
    breakdown = {"static": e_static, "cores": e_core, "memory": e_mem}
    return LayerCost(terms.algo, terms.ops, t_c, t_m, t_o, latency, bound, level, main_bytes + flash_bytes, w_b,
                     in_b, out_b, n, w_home if w_b else "", e_static + e_core + e_mem, breakdown)
