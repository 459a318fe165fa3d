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

__all__ = ["is_binary_layer", "binary_layers", "binary_kernels", "run_binary", "binary_input", "BinaryLayerTime",
           "binary_layer_time", "binary_layer_cost"]

# ops whose output is ±1 wherever their (data) inputs are ±1
_PASS_THROUGH = (Op.RESHAPE, Op.SLICE, Op.PERMUTE, Op.CHANNEL_SHUFFLE, Op.MAXPOOL)


def _pm1_values(graph: Graph) -> frozenset[str]:
    """Names of the values that are ±1 by construction: a SIGN, and what ±1-preserving ops make of ±1 inputs."""
    out: set[str] = set()
    for n in graph.nodes:  # topological order: producers first
        if n.op == Op.SIGN or (n.op in _PASS_THROUGH and n.inputs[0] in out) or (
                n.op == Op.CONCAT and all(i in out for i in n.inputs)) or (
                n.op == Op.PAD and abs(float(n.attrs.value)) == 1.0 and n.inputs[0] in out):
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
def _analysis(graph: Graph) -> tuple[frozenset[str], dict[str, int]]:
    """(names of the binary layers, readers per value) of a graph, remembered per graph object (graphs are not
    modified after tracing; a report asks once per node)."""
    pm1 = _pm1_values(graph)
    readers: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    return frozenset(n.name for n in graph.nodes if _is_binary(graph, n, pm1)), readers


def binary_input(graph: Graph, name: str) -> bool:
    """Whether the value ``name`` is ±1 by construction (a SIGN, through ±1-preserving ops)."""
    return name in _pm1_values(graph)


def is_binary_layer(graph: Graph, node: Node) -> bool:
    """A conv2d / linear node whose weights and input are both ±1 (module docstring)."""
    return node.name in _analysis(graph)[0]


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
# Vector instructions of one Larq Compute Engine aarch64 indirect-bgemm block — 4 output pixels x 8 output channels
# x one chunk of the packed input channels — by chunk width in bits (larq/compute-engine @ e6860fc,
# larq_compute_engine/core/indirect_bgemm/kernel_8x4x{4,2,1}_aarch64.h, macro XOR_POPCOUNT_ACCUM_LOAD_BLOCK_*):
#   128-bit chunk (kernel 8x4x4): 32 eor + 32 cnt + 28 addp + 4 uadalp = 96 for 4*8*128 = 4096 binary MACs
#    64-bit chunk (kernel 8x4x2): 16 eor + 16 cnt + 12 addp            = 44 for 2048 binary MACs
#    32-bit chunk (kernel 8x4x1):  8 eor +  8 cnt +  4 addp            = 20 for 1024 binary MACs
# LCE's select_kernel.h picks the widest chunk dividing the input channels per group (packed in 32-bit words).
BLOCK_VECTOR_OPS = {128: 96, 64: 44, 32: 20}
BLOCK_PIXELS, BLOCK_CHANNELS = 4, 8
# Q-form ASIMD integer instructions (eor, cnt, addp) one core issues per cycle: the pipes that execute "ASIMD
# logical", "ASIMD arith, basic" (addp) and "ASIMD count" (cnt) in each core's Software Optimization Guide, ASIMD
# integer instruction table. A57 / A72: F0 and F1, throughput 2 (UAN 0015B, UAN 0016A section 3.14); A73: two NEON
# pipes (Cortex-A73 TRM DDI 0557, 2); A76 / A78: V0 and V1, throughput 2 (PJDOC-466751330-7215, section 3.16);
# A53: 64-bit NEON datapath, a Q-form op occupies it 2 cycles (Cortex-A53 TRM DDI 0500: 0.5, as arm.py's FMLA rate);
# A55: one 128-bit ASIMD integer pipe for these ops (A55 SWOG, ARM-EPM-128372: 1). uadalp (F1 / V1 only on A72 /
# A76, 4 of 96 ops) is not a bottleneck and is counted with the others. The arm.py records lack these rates; the
# SWOG PDFs could not be reopened when this table was written: re-check the rows before relying on them.
ASIMD_INT_Q_PER_CYCLE = {"cortex-a53": 0.5, "cortex-a55": 1.0, "cortex-a57": 2.0, "cortex-a72": 2.0,
                         "cortex-a73": 2.0, "cortex-a76": 2.0, "cortex-a78": 2.0}
# Output transform of a bconv with float output (LCE bconv2d/output_transform.h): per 4 outputs (one Q register)
# widen the int16 accumulators (uxtl), convert (scvtf), the fused batch-norm multiply-add (fmla), clamp (fmax, fmin)
# and store: 6 vector instructions — our count of that code path, not a measured figure.
OUTPUT_OPS_PER_4 = 6.0
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


@dataclass(frozen=True, slots=True)
class BinaryLayerTime:
    """One execution of a binary layer (or of the sign that bitpacks its input) on ``cores`` cores."""

    kind: KernelKind  # BINARY_GEMM | BITPACK | FUSED (a ReLU / batch norm in the binary layer's output transform)
    binary_macs: float  # ±1 multiply-accumulates (0 for a bitpack)
    vector_ops: float  # ASIMD instructions of the kernel, all cores together
    compute_s: float  # seconds of the vector instructions
    memory_s: float  # seconds of the bytes beyond the cache that holds them
    overhead_s: float  # per-layer dispatch (spec.layer_overhead_s, + parallel_overhead_s on several cores)
    latency_s: float
    main_memory_bytes: float  # bytes to / from DRAM
    energy_j: float  # idle + active core power over the latency + DRAM bytes (0 when the spec has no powers)
    energy_breakdown: dict


def _feeds_binary_only(graph: Graph, node: Node) -> bool:
    users = [n for n in graph.nodes if node.name in n.inputs]
    return bool(users) and all(is_binary_layer(graph, u) for u in users)


_CLAMPS = (Op.RELU, Op.RELU6, Op.CLAMP)


def fused_into_binary(graph: Graph, node: Node) -> bool:
    """Whether ``node`` is part of a binary layer's output transform (LCE ``bconv2d/output_transform.h``: the int32
    accumulator is clamped — a fused ReLU — then multiplied and offset per channel — a fused batch norm): a
    ReLU / ReLU6 / clamp read from a binary layer, or a batch norm read from a binary layer or from such a clamp,
    each link the sole reader of its producer (and no graph output)."""
    if node.op not in _CLAMPS + (Op.BATCHNORM,) or len(node.inputs) != 1:
        return False
    prod = next((n for n in graph.nodes if n.name == node.inputs[0]), None)
    if prod is None or _analysis(graph)[1].get(prod.name, 0) != 1 or prod.name in graph.outputs:
        return False
    if node.op == Op.BATCHNORM and prod.op in _CLAMPS:
        return fused_into_binary(graph, prod)
    return is_binary_layer(graph, prod)


def binary_layer_time(graph: Graph, node: Node, spec, cores: int) -> BinaryLayerTime | None:
    """Time (and energy) of ``node`` as Larq Compute Engine runs it on the spec's Arm core, or None when the model
    does not apply (not a binary layer, a fused ReLU / batch norm or a sign feeding only binary layers; a core
    without a NEON record — the host, Cortex-M; an int8 spec).

    Binary conv / linear (an indirect binary GEMM, no im2col), per group: ``M`` output pixels, ``N`` output
    channels, ``T`` taps, ``C`` input channels, chunk width ``b`` (:func:`_chunk_bits`)::

        ops = ceil(M/4) * ceil(N/8) * T * ceil(C/b) * BLOCK_VECTOR_OPS[b]  +  M * N * OUTPUT_OPS_PER_4 / 4
        t_c = ops / (ASIMD_INT_Q_PER_CYCLE[core] * clock * speedup(n)),  speedup(n) = 1 + (n - 1) * parallel_eff

    A ReLU / batch norm fused into the binary layer's output transform (:func:`fused_into_binary`) costs nothing
    (kind "fused"; its work is in the ``OUTPUT_OPS_PER_4`` term). A sign feeding only binary layers is LCE's
    bitpacking (``LceQuantize``): ``ops = elements *
    PACK_OPS_PER_ELEMENT``. Memory: the float bytes of the layer (output of a bconv, input of a bitpack; packed
    operands are 1/32 of that) cross to DRAM when input + output exceed the last-level cache,
    ``t_m = bytes / dram_bw``. ``t = max(t_c, t_m) + overhead`` (a bitpack: ``t_c + t_m``, it streams).
    Nothing is fitted: the instruction counts are LCE's kernels, the rates the SWOGs', ``parallel_eff`` and the
    overheads the spec's.
    """
    rate = ASIMD_INT_Q_PER_CYCLE.get(getattr(spec, "core", ""))
    if rate is None or getattr(spec, "precision", "fp32") != "fp32":
        return None  # no NEON record, or an int8 spec (TFLite's int8 program, costed by the runtime model)
    n = max(1, min(int(cores), spec.cores))
    if fused_into_binary(graph, node):
        return BinaryLayerTime(KernelKind.FUSED, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, {})
    if node.op == Op.SIGN:
        if not _feeds_binary_only(graph, node):
            return None
        elems = float(np.prod(node.shape))
        ops, kind, float_bytes, macs = elems * PACK_OPS_PER_ELEMENT, KernelKind.BITPACK, 4.0 * elems, 0.0
    elif is_binary_layer(graph, node):
        m, nn, taps, cin, groups = _gemm_shape(graph, node)
        b = _chunk_bits(cin)
        blocks = -(-m // BLOCK_PIXELS) * -(-nn // BLOCK_CHANNELS) * taps * -(-cin // b)
        ops = groups * (blocks * BLOCK_VECTOR_OPS[b] + m * nn * OUTPUT_OPS_PER_4 / 4)
        kind, float_bytes = KernelKind.BINARY_GEMM, 4.0 * float(np.prod(node.shape))
        macs = float(groups) * m * nn * taps * cin
    else:
        return None
    speedup = 1 + (n - 1) * spec.parallel_eff
    t_c = ops / (rate * spec.clock_hz * speedup)
    llc = spec.l3_bytes or spec.l2_bytes
    act = float_bytes * (1 + 1 / 32)  # the float side and the packed side
    main = act if act > llc else 0.0
    t_m = main / spec.dram_bw_bytes_s
    overhead = spec.layer_overhead_s + (spec.parallel_overhead_s if n > 1 else 0.0)
    latency = (t_c + t_m if kind == KernelKind.BITPACK else max(t_c, t_m)) + overhead
    e = {"static": latency * spec.idle_power_w, "cores": latency * n * spec.active_power_w_per_core,
         "memory": main * spec.mem_energy_j_per_byte}
    return BinaryLayerTime(kind, macs, ops, t_c, t_m, overhead, latency, main, sum(e.values()), e)


def binary_layer_cost(graph: Graph, node: Node, spec, place, cores: int):
    """:func:`binary_layer_time` as a :class:`hwsim.cpu.cost.LayerCost` (None where it does not apply): the one
    call :func:`hwsim.cpu.cost.layer_cost` (or a report) makes before its own model."""
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
