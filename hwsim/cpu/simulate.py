"""Simulate a network on an embedded CPU: fp32 outputs from the Numba kernels plus a per-layer cost report.

The pipeline, in order:
1. ``fold_bn`` (a deployed runtime fuses batch norm into the preceding conv/linear) — optional;
2. liveness: peak live activations (``mapping.analysis.peak_live_elements``) and the steady-state home
   of the weights (:func:`hwsim.cpu.cost.placement`);
3. one :func:`hwsim.cpu.cost.layer_cost` per node, nodes run one after another;
4. the memory verdict: weights against flash (or RAM), activations (+ weights) against RAM;
5. when ``x`` is given, the functional model (``hwsim.functional.run``, fp32 kernels) computes the outputs.

With ``spec.precision == "int8"`` the network runs as TFLite's post-training-quantized integer program
(:mod:`hwsim.cpu.int8`, bit-exact TFLite arithmetic) when ``x`` is given — an op it cannot run is then refused before
any work (the cost model alone runs on any graph); the activations are one arena planned as TFLite Micro's greedy
planner does and the weights are int8 + int32 biases (:mod:`hwsim.cpu.arena`); the report's ``arena_bytes`` / ``flash_bytes`` carry them and the memory verdict compares
the arena with RAM and the weights with flash. ``calib`` (default: ``x`` itself) calibrates the activations.

Binary layers (both operands ±1, :func:`hwsim.cpu.binary.is_binary_layer`) of an fp32 spec are costed by the Arm NEON
binary-GEMM model of :mod:`hwsim.cpu.binary` (Larq Compute Engine's kernel structure) and computed by the
xnor-popcount kernels; the outputs are then those of the graph with batch norm left unfolded, bit for bit equal to
the fp32 reference ``hwsim.functional.run(graph, x)`` (the cost still fuses the batch norm into the binary layer,
as LCE does).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from hwsim.cache import IdentityCache
from hwsim.cpu.arena import flash_bytes, plan_int8_arena
from hwsim.cpu.arm import core as arm_core
from hwsim.cpu.binary import binary_layer_cost, binary_layers
from hwsim.cpu.cost import KernelKind, LayerCost, layer_cost, placement
from hwsim.cpu.int8 import check_int8
from hwsim.cpu.runtime import fused_activations, ncnn_fp16
from hwsim.cpu.spec import BYTES_PER_ELEMENT, CPUSpec
from hwsim.errors import SpecError
from hwsim.report import ExitReport, LayerReport, Report, Result
from mapping.analysis import node_macs, peak_live_elements
from mapping.graph import Graph
from mapping.passes.fold_bn import fold_bn_cached as fold_bn_pass

__all__ = ["simulate", "cost_report", "memory_verdict", "precision"]


def _mib(b: float) -> str:
    if b >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"


def precision(spec: CPUSpec) -> str:
    """The spec's arithmetic: "fp32" or "int8" (specs without a ``precision`` field are fp32)."""
    return getattr(spec, "precision", "fp32")


def memory_verdict(spec: CPUSpec, weight_bytes: int, activation_bytes: int,
                   activation_label: str = "peak activations") -> tuple[bool, str, int]:
    """(fits, reason, capacity for the weights in bytes): weights in flash (or RAM) and peak activations (the int8
    arena: ``activation_label="arena"``) in RAM."""
    if spec.weights_in_flash:
        problems = []
        if weight_bytes > spec.flash_bytes:
            problems.append(f"weights {_mib(weight_bytes)} > flash {_mib(spec.flash_bytes)}")
        if activation_bytes > spec.ram_bytes:
            problems.append(f"{activation_label} {_mib(activation_bytes)} > RAM {_mib(spec.ram_bytes)}")
        reason = ("does not fit: " + "; ".join(problems)) if problems else (
            f"fits: weights {_mib(weight_bytes)} in flash {_mib(spec.flash_bytes)}, {activation_label} "
            f"{_mib(activation_bytes)} in RAM {_mib(spec.ram_bytes)}")
        return not problems, reason, spec.flash_bytes
    need = weight_bytes + activation_bytes
    ok = need <= spec.ram_bytes
    reason = (f"{'fits' if ok else 'does not fit'}: weights {_mib(weight_bytes)} + {activation_label} "
              f"{_mib(activation_bytes)} {'<=' if ok else '>'} RAM {_mib(spec.ram_bytes)}")
    return ok, reason, spec.ram_bytes


def _layer_report(graph: Graph, node, c: LayerCost, spec: CPUSpec) -> LayerReport:
    return LayerReport(
        name=node.name, op=node.op.value, module=node.module, macs=int(node_macs(node, graph) * node.shape[0]),
        cycles=c.latency_s * spec.clock_hz, latency_s=c.latency_s, energy_j=c.energy_j,
        energy_breakdown=c.energy_breakdown, weight_bytes=c.weight_bytes, activation_bytes=c.out_bytes,
        placement=c.weight_home, bound=c.bound,
        extra={"kernel": c.kind, "flops": c.flops, "compute_s": c.compute_s, "memory_s": c.memory_s,
               "overhead_s": c.overhead_s, "memory_level": c.memory_level,
               "main_memory_bytes": c.main_memory_bytes, "cores_used": c.cores},
    )


def cost_report(graph: Graph, spec: CPUSpec, *, threads: int | None = None, fold_bn: bool = True) -> Report:
    """The cost :class:`Report` of ``graph`` on ``spec`` (no functional run)."""
    n = _cores_used(spec, threads)
    return _report(graph.name, fold_bn_pass(graph) if fold_bn else graph, spec, n, fold_bn)


def _cores_used(spec: CPUSpec, threads: int | None) -> int:
    """Validate the spec and ``threads`` (at most ``spec.cores``); the cores the run uses."""
    if not isinstance(spec, CPUSpec):
        raise SpecError(f"the cpu target needs a CPUSpec, got {type(spec).__name__}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise SpecError(f"threads must be a positive integer, got {threads!r}")
    if threads is not None and threads > spec.cores:
        raise SpecError(f"threads={threads} exceeds the spec's cores={spec.cores} ({spec.name}); raise cores (up to "
                        "board_cores) or ask for fewer threads")
    return spec.cores if threads is None else int(threads)


def fp32_peak_activation_bytes(g: Graph, runtime: str) -> int:
    """Peak bytes of live fp32 activations (whole batch): an activation the runtime fuses into its producer (every
    runtime but pytorch's eager dispatch) writes into its producer's buffer, no buffer of its own."""
    return peak_live_elements(g, fused_activations(g, runtime)) * g.batch * BYTES_PER_ELEMENT


def _report(network: str, g: Graph, spec: CPUSpec, n: int, folded: bool) -> Report:
    """The cost report of the graph ``g`` as it will run (batch norm already folded when ``folded``)."""
    int8 = precision(spec) == "int8"
    arena = plan_int8_arena(g, runtime=spec.runtime).arena_bytes if int8 else 0
    flash = flash_bytes(g) if int8 else 0
    act_bytes = arena if int8 else fp32_peak_activation_bytes(g, spec.runtime)
    place = placement(g, spec, act_bytes, n)
    layers, cum_t, cum_e, at = [], 0.0, 0.0, {}
    dabnn = spec.runtime == "dabnn"  # daBNN runs every layer, float or binary, with its own kernels
    if dabnn:
        from hwsim.cpu.runtime import dabnn as D

        D.check_graph(g)  # a graph daBNN cannot convert, refused before any layer is costed
    for node in g.nodes:
        c = D.layer_cost(g, node, spec, place) if dabnn else (binary_layer_cost(g, node, spec, place, n)
                                                            or layer_cost(g, node, spec, place, n))
        layers.append(_layer_report(g, node, c, spec))
        cum_t += c.latency_s
        cum_e += c.energy_j
        at[node.name] = (cum_t, cum_e)
    exits = tuple(ExitReport(name=o, latency_s=at[o][0], energy_j=at[o][1]) for o in g.outputs)
    weight_bytes = flash if int8 else place.total_weight_bytes
    fits, reason, capacity = memory_verdict(spec, weight_bytes, act_bytes, "arena" if int8 else "peak activations")
    nbin = 0 if int8 else sum(1 for lr in layers if lr.extra["kernel"] == KernelKind.BINARY_GEMM)
    notes = [f"{n} of {spec.cores} cores; {precision(spec)} weights{' (1 bit in binary layers)' if nbin else ''} in "
             f"{place.weight_home}" + ("; batch norm folded" if folded else "")]
    if nbin and spec.runtime == "dabnn":
        notes.append(f"{nbin} binary layers on the xnor-popcount kernels; every layer costed with daBNN's own "
                     "kernels (direct 3x3 bconv or im2col + bgemm, hwsim.cpu.runtime.dabnn)")
    elif nbin:
        notes.append(f"{nbin} binary layers on the xnor-popcount kernels, costed as an Arm NEON binary GEMM "
                     "(Larq Compute Engine's bgemm: eor, cnt, addp per 128-bit word)")
    if spec.core and ncnn_fp16(arm_core(spec.core), spec):
        notes.append("timed as ncnn runs fp32 models on this core, in fp16 storage and arithmetic (benchncnn's "
                     "default); the outputs are computed in fp32 (fp16 rounding and overflow above 65504 not emulated)")
    if int8:
        notes.append("int8 as TFLite's post-training quantization computes it; activation arena planned as TFLite "
                     "Micro's GreedyMemoryPlanner")
    if any("recurrent" in nd.meta for nd in g.nodes):
        notes.append("recurrent layers unrolled over their steps (weights stored once): " + (
            "every unrolled op pays torch's dispatch, an upper bound (aten::lstm loops in C++)" if
            spec.runtime == "pytorch" else f"one fixed {spec.runtime} layer cost per recurrent layer (its fused op)"))
    return Report(
        target="cpu", network=network, spec_name=spec.name, batch=g.batch, layers=tuple(layers),
        latency_s=cum_t, energy_j=cum_e, onchip_weight_bytes=weight_bytes, arena_bytes=arena, flash_bytes=flash,
        onchip_capacity_bytes=capacity, fits_on_chip=fits, fit_reason=reason, peak_activation_bytes=act_bytes,
        exits=exits, notes=tuple(notes),
    )


def simulate(graph: Graph, spec: CPUSpec, x: np.ndarray | None = None, *, seed: int = 0,
             threads: int | None = None, fold_bn: bool = True, calib: np.ndarray | None = None) -> Result:
    """Run ``graph`` on the CPU ``spec``.

    ``x``: input batch (N×C×H×W numpy) or None for the cost model only. ``threads``: cores to use, at most
    ``spec.cores`` (default: all of them). ``fold_bn``: fold batch norm into conv/linear first (what a deployed
    runtime does; outputs equal the unfolded net up to fp32 rounding). ``seed`` is accepted for the
    common signature; the CPU model has no random parts. ``calib``: int8 specs only, the batch (N x input dims)
    that calibrates the activation ranges (default: ``x``; calibrating on the evaluated batch is the optimistic
    case; unused without ``x``). Returns ``Result(outputs, report)``: outputs is an array (a list for a multi-output net) or None.
    """
    del seed  # deterministic target
    int8 = precision(spec) == "int8"
    if calib is not None and not int8:
        raise SpecError("calib= calibrates int8 activations; this spec's precision is fp32")
    g = fold_bn_pass(graph) if fold_bn else graph  # folded once, for the cost and the outputs
    if int8 and x is not None:
        check_int8(g)  # an op the int8 functional path cannot run is refused before any work
    if x is not None or calib is not None:  # a calibration batch is checked even when no input runs (evaluate's
        from hwsim.functional import check_input  # cost report comes first)

        x = None if x is None else check_input(g, x)
        calib = None if calib is None else check_input(g, calib, "calib")
    report = _report(graph.name, g, spec, _cores_used(spec, threads), fold_bn)
    outputs: Sequence[np.ndarray] | np.ndarray | None = None
    if x is not None:
        binary = not int8 and bool(binary_layers(graph))
        outs = _run_int8(g, x, calib) if int8 else (_run_binary(graph, x) if binary else _run_fp32(g, x))
        outputs = outs[0] if len(outs) == 1 else list(outs)
        if int8:
            on = (f"a calibration batch of {len(calib)}" if calib is not None
                  else "the evaluated batch itself (optimistic: pass calib= to calibrate apart)")
            report = dataclasses.replace(report, notes=report.notes + (f"int8 activation ranges calibrated on {on}",))
    return Result(outputs=outputs, report=report)


def _run_fp32(g: Graph, x: np.ndarray) -> list[np.ndarray]:
    from hwsim.functional import run

    return run(g, x)


def _run_binary(graph: Graph, x: np.ndarray) -> list[np.ndarray]:
    """The unfolded ``graph`` with its binary layers on the xnor-popcount kernels (:mod:`hwsim.cpu.binary`)."""
    from hwsim.cpu.binary import run_binary as run

    return run(graph, x)


_INT8_PROGRAMS = IdentityCache("cpu int8 programs", maxsize=8)


def _run_int8(g: Graph, x: np.ndarray, calib: np.ndarray | None) -> list[np.ndarray]:
    """``x`` through the int8 program of ``g`` calibrated on ``calib`` (on ``x`` itself when None). A program
    calibrated on a given batch is remembered per graph and the batch's content (shape, dtype, a BLAKE2 digest of
    its bytes), so a data set evaluated batch by batch against one calibration set is quantized once."""
    from hwsim.cpu.functional import run_int8
    from hwsim.cpu.int8 import quantize_int8

    if calib is None:
        return run_int8(quantize_int8(g, x, fold_bn=False), x)
    data = np.ascontiguousarray(calib)
    key = (data.shape, data.dtype.str, hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=16).digest())
    prog = _INT8_PROGRAMS.get(g, key, compute=lambda: quantize_int8(g, data, fold_bn=False))
    return run_int8(prog, x)
