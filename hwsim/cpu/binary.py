"""Binary (±1 x ±1) conv / linear layers on the CPU target: xnor-popcount outputs and an Arm NEON binary-GEMM cost.

**Which layers.** A conv2d / linear node is *binary* when both operands are ±1 (:func:`is_binary_layer`): its
weights are ±1 (``meta["weight_bits"] == 1`` from ``nets.layers`` / ``mapping.binary``, kept by ``fold_bn`` when a
batch norm is folded into it, or weights whose every value is ±1) and its input is ±1 by construction — produced
by a ``SIGN`` (``BinarySign``, QONNX's ``BipolarQuant`` with scale 1), possibly through ops that keep ±1 values
(reshape, slice, permute, channel shuffle, concat of ±1 tensors, max pool, a pad with ±1). FINN's CNV first layer
(±1 weights on 8-bit image codes) is not binary: it runs in fp32.

**Functional.** A binary layer runs through ``hwsim.kernels.binary`` (``binary_conv2d`` / ``binary_linear``, the
kernels of the FPGA XNOR engine): the int32 ±1 dot products, exact, converted to float32 (exact: |acc| <= K <
2^24), the bias (if any) added afterwards as the fp32 kernels add it. Since a sum of ±1 products is an integer
computed exactly in any order, the outputs equal the fp32 reference run (``hwsim.functional.run`` of the same
graph) bit for bit. The binary kernels need the weights to be exactly ±1, so the run uses the graph with batch
norm *not* folded into the binary layers (:func:`run_binary`); the cost still fuses it (Larq Compute Engine's
bconv applies the folded batch norm as a per-channel multiply-add on the int32 accumulators).

**Cost** — see :func:`binary_layer_time` for the formulas.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwsim.cache import identity_cache
from hwsim.cpu.cost_ops import KernelKind
from hwsim.errors import HwsimError
from hwsim.kernels import binary as BK
from mapping.graph import Graph, Node, Op

__all__ = ["is_binary_layer", "binary_layers", "binary_kernels", "run_binary", "BinaryLayerTime",
           "binary_gemm_work", "issue_cycles", "binary_layer_time", "binary_layer_cost"]

# ops whose output is ±1 wherever their (data) inputs are ±1
_PASS_THROUGH = (Op.RESHAPE, Op.SLICE, Op.PERMUTE, Op.CHANNEL_SHUFFLE, Op.MAXPOOL)


def _pm1_values(graph: Graph) -> frozenset[str]:
    """Names of the values that are ±1 by construction: a SIGN, and what ±1-preserving ops make of ±1 inputs."""
    out: set[str] = set()
    for n in graph.nodes:  # topological order: producers first
        if n.op == Op.SIGN or (n.op in _PASS_THROUGH and n.inputs[0] in out) or (
                n.op == Op.CONCAT and all(i in out for i in n.inputs)) or (
                n.op == Op.PAD and n.inputs[0] in out and (  # reflect / replicate / circular copy the ±1 values
                    n.attrs.mode != "constant" or abs(float(n.attrs.value)) == 1.0)):
            out.add(n.name)
    return frozenset(out)


def _weights_pm1(graph: Graph, node: Node) -> bool:
    return bool(np.all(np.abs(graph.param(node, "weight")) == 1.0))


def _is_binary(graph: Graph, node: Node, pm1: frozenset[str]) -> bool:
    if node.op not in (Op.CONV2D, Op.LINEAR) or "weight" not in node.params or len(node.inputs) != 1:
        return False
    if node.inputs[0] not in pm1:
        return False
    return node.meta.get("weight_bits") == 1 or _weights_pm1(graph, node)


@identity_cache(maxsize=16)
def _analysis(graph: Graph) -> tuple[frozenset[str], dict[str, list[Node]]]:
    """(names of the binary layers, the nodes reading each value) of a graph, remembered per graph object (graphs
    are not modified after tracing; a report asks once per node)."""
    pm1 = _pm1_values(graph)
    return frozenset(n.name for n in graph.nodes if _is_binary(graph, n, pm1)), graph.consumers()


def is_binary_layer(graph: Graph, node: Node) -> bool:
    """A conv2d / linear node whose weights and input are both ±1 (module docstring)."""
    return node.name in _analysis(graph)[0]


def weight_bytes(graph: Graph, spec) -> int:
    """Bytes of the parameters the nodes use at the spec's precision, one bit each for the weights of a binary
    layer the binary kernels run (an fp32 spec on an Arm core with a NEON record: Larq Compute Engine's or
    daBNN's bit-packed operands), as the layer's own cost counts them."""
    used = {k for n in graph.nodes for k in n.params.values()}
    packed: set[str] = set()
    if getattr(spec, "core", "") in ASIMD_INT_Q_PER_CYCLE and spec.precision == "fp32":
        names = _analysis(graph)[0]
        packed = {n.params["weight"] for n in graph.nodes if n.name in names}
    return int(sum(graph.params[k].size * spec.bytes_per_element if k not in packed
                   else -(-graph.params[k].size // 8) for k in used))


def binary_layers(graph: Graph) -> tuple[str, ...]:
    """Names of the binary layers of ``graph``, in order."""
    names = _analysis(graph)[0]
    return tuple(n.name for n in graph.nodes if n.name in names)


def _bits_of(x: np.ndarray, node: Node) -> np.ndarray:
    """The 0/1 bits (bit 1 = +1) of a ±1 activation; any other value is a broken promise of ``is_binary_layer``."""
    if not np.all(np.abs(x) == 1.0):
        raise HwsimError(f"binary layer {node.name!r}: its input was expected to be ±1 (it comes from a sign) but "
                         "holds other values")
    return (x > 0).astype(np.uint8)


def _add_bias(acc: np.ndarray, graph: Graph, node: Node, axis_shape: tuple[int, ...]) -> np.ndarray:
    y = acc.astype(np.float32)  # exact: |acc| <= K < 2^24
    if "bias" in node.params:
        y += graph.param(node, "bias").astype(np.float32).reshape(axis_shape)
    return np.ascontiguousarray(y)


def _conv_kernel(fallback):
    packed: dict[str, object] = {}  # node -> its packed ±1 weights (None: not a binary layer), once per run

    def run(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        key = n.name
        if key not in packed:
            w = g.param(n, "weight")
            binary = is_binary_layer(g, n) and np.all(np.abs(w) == 1.0)
            packed[key] = BK.pack_conv_weights(w.astype(np.float32), n.attrs.groups) if binary else None
        if packed[key] is None:
            return fallback(g, n, xs)  # not binary, or ±1 weights folded with a scale: the fp32 kernel
        a = n.attrs
        acc = BK.binary_conv2d(_bits_of(xs[0], n), packed[key], a.stride, a.padding, a.dilation, a.groups,
                               float(n.meta.get("pad_value", 0.0)))
        return _add_bias(acc, g, n, (1, -1, 1, 1))

    return run


def _linear_kernel(fallback):
    def run(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        w = g.param(n, "weight")
        x = xs[0]
        if x.ndim != 2 or not (is_binary_layer(g, n) and np.all(np.abs(w) == 1.0)):
            return fallback(g, n, xs)
        acc = BK.binary_linear(_bits_of(x, n), w.astype(np.float32))
        return _add_bias(acc, g, n, (1, -1))

    return run


def binary_kernels() -> dict:
    """``hwsim.functional.run`` kernels: conv2d / linear through xnor-popcount where binary, fp32 elsewhere."""
    from hwsim.functional import FP32_KERNELS

    return {Op.CONV2D: _conv_kernel(FP32_KERNELS[Op.CONV2D]), Op.LINEAR: _linear_kernel(FP32_KERNELS[Op.LINEAR])}


def run_binary(graph: Graph, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of ``graph`` (batch norm not folded) with its binary layers on the xnor-popcount kernels: equal bit
    for bit to ``hwsim.functional.run(graph, x)``."""
    from hwsim.functional import run

    return run(graph, x, kernels=binary_kernels())


# ----------------------------------------------------------------------------- cost: Arm NEON binary GEMM
# Which kernel runs. LCE's benchmark tool registers LceBconv2d with Register_BCONV_2D() unless run with
# --use_indirect_bgemm=true (larq/compute-engine @ e6860fc, tflite/benchmark/lce_benchmark_main.cc: default false;
# tflite/kernels/lce_ops_register.h), and Register_BCONV_2D() is the ruy BGEMM path under TFLITE_WITH_RUY
# (tflite/kernels/bconv2d.cc): im2col of the bitpacked input (core/bconv2d/optimized_bgemm.h: none for a 1x1 stride-1
# conv), ruy's packing of that matrix into 4-column blocks (core/bgemm/ruy_pack.h: 16-byte memcpys), then the
# 8x4 kernel with 16-bit accumulators (core/bgemm/kernels_aarch64.h, BinaryKernelNeon8x4; chosen whenever
# taps * channels + 512 < 2^16, i.e. always here). That BGEMM refuses grouped convs, which LCE runs only with the
# indirect kernels (core/indirect_bgemm/kernel_8x4x{4,2,1}_aarch64.h): hwsim costs groups > 1 with those.
#
# Vector instructions per 8 output channels x 4 output pixels x one 128-bit depth step (4 packed words) of the BGEMM
# kernel (macros LCE_XOR, LCE_CNT_ACCUM*: per output pixel 8 eor, 8 cnt, 7 addp, 1 uadalp); the depth is the
# packed im2col row, taps * ceil(C / 32) words, padded to a multiple of 4 words by ruy's 4x4 kernel layout.
BGEMM_STEP_OPS = {"eor": 32, "cnt": 32, "addp": 28, "uadalp": 4}
BGEMM_ROWS, BGEMM_COLS, BGEMM_DEPTH_WORDS = 8, 4, 4  # output channels, output pixels, 32-bit words per step
# Indirect kernels (groups > 1), per 8 output channels x 4 output pixels x one chunk of a tap's packed input
# channels, by chunk width in bits (kernel_8x4x{4,2,1}_aarch64.h, XOR_POPCOUNT_ACCUM_LOAD_BLOCK_*); LCE's
# select_kernel.h takes the widest chunk dividing the channels per group.
INDIRECT_CHUNK_OPS = {128: {"eor": 32, "cnt": 32, "addp": 28, "uadalp": 4},
                      64: {"eor": 16, "cnt": 16, "addp": 12}, 32: {"eor": 8, "cnt": 8, "addp": 4}}
# Float output transform of one 8x4 block (kernels_aarch64.h, IF_FLOAT_OR_INT8_OUTPUT: widen with the
# back-transform shift, clamp = the fused ReLU, convert, per-channel multiply and add = the fused batch norm).
OUTPUT_BLOCK_OPS = {"ushll": 8, "smax": 8, "smin": 8, "scvtf": 8, "fmul": 8, "fadd": 8}
# Q-form ASIMD instructions one core issues per cycle when each takes one pipe slot: the pipes that execute "ASIMD
# logical", "ASIMD arith, basic" (addp) and "ASIMD count" (cnt) in each core's Software Optimization Guide, ASIMD
# integer instruction table. A57 / A72: F0 and F1 (UAN 0015B, UAN 0016A section 3.14); A73: two NEON pipes
# (Cortex-A73 TRM DDI 0557, 2); A76 / A78: V0 and V1 (PJDOC-466751330-7215, section 3.16); A53: 64-bit NEON
# datapath, a Q-form op occupies it 2 cycles (Cortex-A53 TRM DDI 0500: 0.5, as arm.py's FMLA rate); A55: one 128-bit
# ASIMD integer pipe for these ops (A55 SWOG, ARM-EPM-128372: 1). The arm.py records lack these rates; the SWOG PDFs
# could not be reopened when this table was written: re-check the rows before relying on them.
ASIMD_INT_Q_PER_CYCLE = {"cortex-a53": 0.5, "cortex-a55": 1.0, "cortex-a57": 2.0, "cortex-a72": 2.0,
                         "cortex-a73": 2.0, "cortex-a76": 2.0, "cortex-a78": 2.0}
# Q-form instructions that take both ASIMD pipes (two slots) on a core. A57 / A72 — GCC's Cortex-A57 pipeline
# description (gcc/config/arm/cortex-a57.md; GCC schedules -mtune=cortex-a72 with it, aarch64-cores.def) reserves
# ca57_cx1 + ca57_cx2 for neon_cnt_q ("neon_bitops_q"), neon_int_to_fp_s_q (scvtf), neon_fp_mul_s_q and
# neon_fp_addsub_s_q; LLVM's AArch64SchedA57.td agrees for the Q-form FP ops (A57Write_5cyc_2V) but keeps CNT on one
# V pipe: hwsim follows GCC, whose grouping (cnt_q with bsl_q, rev_q, rbit_q) matches the SWOG's Q-form rows. Other
# cores: none known (their rates above already count a Q-form op once).
DOUBLE_SLOT = {"cortex-a57": frozenset({"cnt", "scvtf", "fmul", "fadd"}),
               "cortex-a72": frozenset({"cnt", "scvtf", "fmul", "fadd"})}
# im2col and ruy's packing copy the packed matrix in 16-byte pieces: one Q load and one Q store each, and the
# cores above have one load and one store pipe (A57 / A72: L and S, SWOG section 2.1), so 16 bytes per cycle.
COPY_BYTES_PER_CYCLE = 16.0
# Bitpacking (LCE bitpacking/bitpack_aarch64.h): 128 floats -> 4 words with 16 ld2 + 8 uzp2 + 4 uzp2 + 2 uzp2 +
# ushr/shrn + store, about 32 instructions: 0.25 per float element; the source notes it is memory-bound.
PACK_OPS_PER_ELEMENT = 0.25


def _chunk_bits(cin_per_group: int) -> int:
    words = -(-cin_per_group // 32)  # 32-bit words of packed input channels
    return 128 if words % 4 == 0 else (64 if words % 2 == 0 else 32)


def _gemm_shape(graph: Graph, node: Node) -> tuple[int, int, int, int, int]:
    """(pixels M over the batch, output channels per group N, taps, input channels per group, groups)."""
    if node.op == Op.LINEAR:
        shape = graph.shape_of(node.inputs[0])
        return int(np.prod(shape[:-1])), node.attrs.out_features, 1, node.attrs.in_features, 1
    a = node.attrs
    m = int(np.prod(node.shape)) // a.out_channels
    return m, a.out_channels // a.groups, a.kernel[0] * a.kernel[1], a.in_channels // a.groups, a.groups


def _scaled(ops: dict, times: float) -> dict:
    return {k: v * times for k, v in ops.items()}


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a.keys() | b.keys()}


def binary_gemm_work(graph: Graph, node: Node) -> tuple[dict, float]:
    """(vector instructions by mnemonic, bytes copied by im2col and packing) of a binary conv / linear, all groups.

    Ungrouped (LCE's BGEMM): ``K = T * ceil(C/32)`` packed words per output pixel, ``steps = ceil(K/4)``,
    ``blocks = ceil(N/8) * ceil(M/4)``; instructions ``blocks * (steps * BGEMM_STEP_OPS + OUTPUT_BLOCK_OPS)``;
    copies ``4 M K`` bytes of im2col (not for a 1x1 stride-1 conv or a linear) + ``4 * (4 ceil(M/4)) * (4 steps)``
    bytes of packing (32-bit words x padded columns x padded depth). Grouped (the indirect kernels), per group:
    ``blocks * T * ceil(C/b) * INDIRECT_CHUNK_OPS[b] + blocks * OUTPUT_BLOCK_OPS``, no copies. A dilated conv is
    costed as its undilated im2col (LCE's DilatedIm2col copies the same bytes)."""
    m, nn, taps, cin, groups = _gemm_shape(graph, node)
    blocks = -(-nn // BGEMM_ROWS) * -(-m // BGEMM_COLS)
    if groups == 1:
        k = taps * -(-cin // 32)
        steps = -(-k // BGEMM_DEPTH_WORDS)
        ops = _add(_scaled(BGEMM_STEP_OPS, blocks * steps), _scaled(OUTPUT_BLOCK_OPS, blocks))
        im2col = node.op == Op.CONV2D and not (taps == 1 and tuple(node.attrs.stride) == (1, 1))
        copied = 4.0 * ((m * k if im2col else 0) + BGEMM_COLS * -(-m // BGEMM_COLS) * BGEMM_DEPTH_WORDS * steps)
        return ops, copied
    b = _chunk_bits(cin)
    per_group = _add(_scaled(INDIRECT_CHUNK_OPS[b], blocks * taps * -(-cin // b)), _scaled(OUTPUT_BLOCK_OPS, blocks))
    return _scaled(per_group, groups), 0.0


def issue_cycles(ops: dict, core: str) -> float:
    """Cycles one ``core`` needs to issue ``ops`` (instructions by mnemonic): the pipe slots they take (2 for a
    :data:`DOUBLE_SLOT` instruction, else 1) over :data:`ASIMD_INT_Q_PER_CYCLE`."""
    double = DOUBLE_SLOT.get(core, frozenset())
    return sum(v * (2 if k in double else 1) for k, v in ops.items()) / ASIMD_INT_Q_PER_CYCLE[core]


@dataclass(frozen=True, slots=True)
class BinaryLayerTime:
    """One execution of a binary layer (or of the sign that bitpacks its input) on ``cores`` cores."""

    kind: KernelKind  # BINARY_GEMM | BITPACK | FUSED (a ReLU / batch norm in the binary layer's output transform)
    binary_macs: float  # ±1 multiply-accumulates (0 for a bitpack)
    vector_ops: float  # ASIMD instructions of the kernel, all cores together
    compute_s: float  # seconds of the vector instructions and of the im2col / packing copies
    memory_s: float  # seconds of the bytes beyond the cache that holds them
    overhead_s: float  # per-layer dispatch of the spec's runtime (:func:`_fixed_and_speedup`)
    latency_s: float
    main_memory_bytes: float  # bytes to / from DRAM
    energy_j: float  # idle + active core power over the latency + DRAM bytes (0 when the spec has no powers)
    energy_breakdown: dict


def _feeds_binary_only(graph: Graph, node: Node) -> bool:
    users = _analysis(graph)[1].get(node.name, [])
    return bool(users) and all(is_binary_layer(graph, u) for u in users)


_CLAMPS = (Op.RELU, Op.RELU6, Op.CLAMP)


def fused_into_binary(graph: Graph, node: Node) -> bool:
    """Whether ``node`` is part of a binary layer's output transform (LCE ``bconv2d/output_transform.h``: the int32
    accumulator is clamped — a fused ReLU — then multiplied and offset per channel — a fused batch norm): a
    ReLU / ReLU6 / clamp read from a binary layer, or a batch norm read from a binary layer or from such a clamp,
    each link the sole reader of its producer (and no graph output)."""
    if node.op not in _CLAMPS + (Op.BATCHNORM,) or len(node.inputs) != 1:
        return False
    prod = graph[node.inputs[0]] if node.inputs[0] in graph else None  # None: a graph input
    if prod is None or len(_analysis(graph)[1].get(prod.name, [])) != 1 or prod.name in graph.outputs:
        return False
    if node.op == Op.BATCHNORM and prod.op in _CLAMPS:
        return fused_into_binary(graph, prod)
    return is_binary_layer(graph, prod)


def _fixed_and_speedup(spec, n: int) -> tuple[float, float]:
    """(fixed seconds per layer, speed-up on ``n`` threads) of the runtime the spec names. LCE runs its binary ops in
    the same interpreter graph as the float ops, so they pay the same dispatch and share the same L2 / DRAM: for a
    runtime other than PyTorch, its fitted figures (:func:`hwsim.cpu.runtime.runtime_params`: ``layer_cycles / f +
    (n - 1) * thread_s`` and a work split evenly over the threads (ruy's block map), slowed by ``contention`` per
    other busy thread: speed-up ``n / (1 + (n - 1) * contention)``); for ``runtime="pytorch"`` the spec's own
    ``layer_overhead_s`` (+ ``parallel_overhead_s``) and ``1 + (n - 1) * parallel_eff``."""
    if spec.runtime == "pytorch":
        from hwsim.cpu.cost_ops import speedup

        return spec.layer_overhead_s + (spec.parallel_overhead_s if n > 1 else 0.0), speedup(spec, n)
    from hwsim.cpu.runtime import fixed_s, runtime_params

    p = runtime_params(spec)
    return fixed_s(p, spec.clock_hz, n), n / (1 + (n - 1) * p.contention)


def binary_layer_time(graph: Graph, node: Node, spec, cores: int) -> BinaryLayerTime | None:
    """Time (and energy) of ``node`` as Larq Compute Engine runs it on the spec's Arm core, or None when the model
    does not apply (not a binary layer, a fused ReLU / batch norm or a sign feeding only binary layers; a core
    without a NEON record — the host, Cortex-M; an int8 spec).

    Binary conv / linear: the instructions and copied bytes of :func:`binary_gemm_work` (LCE's BGEMM; the indirect
    kernels for a grouped conv), on ``n`` cores::

        t_c = (issue_cycles(ops, core) + copied / COPY_BYTES_PER_CYCLE) / (clock * speedup(n))

    with ``speedup(n)`` and the fixed per-layer time of the spec's runtime (:func:`_fixed_and_speedup`).

    A ReLU / batch norm fused into the binary layer's output transform (:func:`fused_into_binary`) costs nothing
    (kind "fused"; its work is in ``OUTPUT_BLOCK_OPS``). A sign feeding only binary layers is LCE's bitpacking
    (``LceQuantize``): ``elements * PACK_OPS_PER_ELEMENT`` one-slot instructions. Memory: the float bytes of the
    layer (output of a bconv, input of a bitpack; packed operands are 1/32 of that) cross to DRAM when input + output
    exceed the last-level cache, ``t_m = bytes / dram_bw``. ``t = max(t_c, t_m) + overhead`` (a bitpack:
    ``t_c + t_m``, it streams). Nothing is fitted: the instruction counts are LCE's kernels, the issue rates the
    SWOGs' and GCC's pipeline model, the thread scaling and the fixed costs the runtime's (fitted on float nets).
    """
    if getattr(spec, "runtime", "") == "dabnn":
        raise HwsimError("binary_layer_time models Larq Compute Engine's kernels; runtime='dabnn' is costed by "
                         "hwsim.cpu.runtime.dabnn.layer_cost")
    core = getattr(spec, "core", "")
    if core not in ASIMD_INT_Q_PER_CYCLE or getattr(spec, "precision", "fp32") != "fp32":
        return None  # no NEON record, or an int8 spec (TFLite's int8 program, costed by the runtime model)
    n = max(1, min(int(cores), spec.cores))
    if fused_into_binary(graph, node):
        return BinaryLayerTime(KernelKind.FUSED, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, {})
    if node.op == Op.SIGN:
        if not _feeds_binary_only(graph, node):
            return None
        elems = float(np.prod(node.shape))
        ops, copied, kind, float_bytes, macs = {"pack": elems * PACK_OPS_PER_ELEMENT}, 0.0, KernelKind.BITPACK, \
            4.0 * elems, 0.0
    elif is_binary_layer(graph, node):
        m, nn, taps, cin, groups = _gemm_shape(graph, node)
        ops, copied = binary_gemm_work(graph, node)
        kind, float_bytes = KernelKind.BINARY_GEMM, 4.0 * float(np.prod(node.shape))
        macs = float(groups) * m * nn * taps * cin
    else:
        return None
    overhead, speedup = _fixed_and_speedup(spec, n)
    t_c = (issue_cycles(ops, core) + copied / COPY_BYTES_PER_CYCLE) / (spec.clock_hz * speedup)
    llc = spec.l3_bytes or spec.l2_bytes
    act = float_bytes * (1 + 1 / 32)  # the float side and the packed side
    main = act if act > llc else 0.0
    t_m = main / spec.dram_bw_bytes_s
    latency = (t_c + t_m if kind == KernelKind.BITPACK else max(t_c, t_m)) + overhead
    e = {"static": latency * spec.idle_power_w, "cores": latency * n * spec.active_power_w_per_core,
         "memory": main * spec.mem_energy_j_per_byte}
    return BinaryLayerTime(kind, macs, float(sum(ops.values())), t_c, t_m, overhead, latency, main, sum(e.values()),
                           e)


def binary_layer_cost(graph: Graph, node: Node, spec, place, cores: int):
    """:func:`binary_layer_time` as a :class:`hwsim.cpu.cost.LayerCost` (None where it does not apply): the one
    call :func:`hwsim.cpu.cost.layer_cost` (or a report) makes before its own model. (``runtime="dabnn"`` costs
    every layer with :func:`hwsim.cpu.runtime.dabnn.layer_cost` instead: :func:`hwsim.cpu.simulate` routes it.)"""
    t = binary_layer_time(graph, node, spec, cores)
    if t is None:
        return None
    from hwsim.cpu.cost import LayerCost

    n = max(1, min(int(cores), spec.cores))
    in_b = int(sum(np.prod(graph.shape_of(i)) for i in node.inputs)) * 4
    out_b = int(np.prod(node.shape)) * 4
    w_b = int(sum(graph.params[k].size for k in node.params.values()) // 8)  # 1-bit weights (+ the fused BN)
    bound = "overhead" if t.kind == KernelKind.FUSED or t.overhead_s > max(t.compute_s, t.memory_s) else (
        "compute" if t.compute_s >= t.memory_s else "memory")
    return LayerCost(t.kind, 2.0 * t.binary_macs, t.compute_s, t.memory_s, t.overhead_s, t.latency_s, bound,
                     "dram" if t.main_memory_bytes else "", t.main_memory_bytes, w_b, in_b, out_b, n,
                     place.weight_home if w_b else "", t.energy_j, t.energy_breakdown)
