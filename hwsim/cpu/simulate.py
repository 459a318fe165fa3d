"""Simulate a network on an embedded CPU: fp32 outputs from the Numba kernels plus a per-layer cost report.

The pipeline, in order:
1. ``fold_bn`` (a deployed runtime fuses batch norm into the preceding conv/linear) — optional;
2. liveness: peak live activations (``mapping.analysis.peak_live_elements``) and the steady-state home
   of the weights (:func:`hwsim.cpu.cost.placement`);
3. one :func:`hwsim.cpu.cost.layer_cost` per node, nodes run one after another;
4. the memory verdict: weights against flash (or RAM), activations (+ weights) against RAM;
5. when ``x`` is given, the functional model (``hwsim.functional.run``, fp32 kernels) computes the outputs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.cpu.cost import LayerCost, layer_cost, placement
from hwsim.cpu.spec import BYTES_PER_ELEMENT, CPUSpec
from hwsim.errors import SpecError
from hwsim.report import ExitReport, LayerReport, Report, Result
from mapping.analysis import node_macs, peak_live_elements
from mapping.graph import Graph
from mapping.passes.fold_bn import fold_bn_cached as fold_bn_pass

__all__ = ["simulate", "cost_report", "memory_verdict"]


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"


def memory_verdict(spec: CPUSpec, weight_bytes: int, activation_bytes: int) -> tuple[bool, str, int]:
    """(fits, reason, capacity for the weights in bytes): weights in flash (or RAM) and peak activations in RAM."""
    if spec.weights_in_flash:
        problems = []
        if weight_bytes > spec.flash_bytes:
            problems.append(f"weights {_mib(weight_bytes)} > flash {_mib(spec.flash_bytes)}")
        if activation_bytes > spec.ram_bytes:
            problems.append(f"peak activations {_mib(activation_bytes)} > RAM {_mib(spec.ram_bytes)}")
        reason = ("does not fit: " + "; ".join(problems)) if problems else (
            f"fits: weights {_mib(weight_bytes)} in flash {_mib(spec.flash_bytes)}, peak activations "
            f"{_mib(activation_bytes)} in RAM {_mib(spec.ram_bytes)}")
        return not problems, reason, spec.flash_bytes
    need = weight_bytes + activation_bytes
    ok = need <= spec.ram_bytes
    reason = (f"{'fits' if ok else 'does not fit'}: weights {_mib(weight_bytes)} + peak activations "
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
    """Validate the spec and ``threads``; the cores the run uses (threads capped at ``spec.cores``)."""
    if not isinstance(spec, CPUSpec):
        raise SpecError(f"the cpu target needs a CPUSpec, got {type(spec).__name__}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise SpecError(f"threads must be a positive integer, got {threads!r}")
    return spec.cores if threads is None else min(threads, spec.cores)


def _report(network: str, g: Graph, spec: CPUSpec, n: int, folded: bool) -> Report:
    """The cost report of the graph ``g`` as it will run (batch norm already folded when ``folded``)."""
    act_bytes = peak_live_elements(g) * g.batch * BYTES_PER_ELEMENT
    place = placement(g, spec, act_bytes, n)
    layers, cum_t, cum_e, at = [], 0.0, 0.0, {}
    for node in g.nodes:
        c = layer_cost(g, node, spec, place, n)
        layers.append(_layer_report(g, node, c, spec))
        cum_t += c.latency_s
        cum_e += c.energy_j
        at[node.name] = (cum_t, cum_e)
    exits = tuple(ExitReport(name=o, latency_s=at[o][0], energy_j=at[o][1]) for o in g.outputs)
    fits, reason, capacity = memory_verdict(spec, place.total_weight_bytes, act_bytes)
    notes = [f"{n} of {spec.cores} cores; fp32 weights in {place.weight_home}"
             + ("; batch norm folded" if folded else "")]
    return Report(
        target="cpu", network=network, spec_name=spec.name, batch=g.batch, layers=tuple(layers),
        latency_s=cum_t, energy_j=cum_e, onchip_weight_bytes=place.total_weight_bytes,
        onchip_capacity_bytes=capacity, fits_on_chip=fits, fit_reason=reason, peak_activation_bytes=act_bytes,
        exits=exits, notes=tuple(notes),
    )


def simulate(graph: Graph, spec: CPUSpec, x: np.ndarray | None = None, *, seed: int = 0,
             threads: int | None = None, fold_bn: bool = True) -> Result:
    """Run ``graph`` on the CPU ``spec``.

    ``x``: input batch (N×C×H×W numpy) or None for the cost model only. ``threads``: cores to use
    (default: all of ``spec.cores``). ``fold_bn``: fold batch norm into conv/linear first (what a deployed
    runtime does; outputs equal the unfolded net up to fp32 rounding). ``seed`` is accepted for the
    common signature; the CPU model has no random parts. Returns ``Result(outputs, report)``: outputs is
    an array (a list for a multi-output net) or None.
    """
    del seed  # deterministic target
    g = fold_bn_pass(graph) if fold_bn else graph  # folded once, for the cost and the outputs
    report = _report(graph.name, g, spec, _cores_used(spec, threads), fold_bn)
    outputs: Sequence[np.ndarray] | np.ndarray | None = None
    if x is not None:
        from hwsim.functional import run

        outs = run(g, x)
        outputs = outs[0] if len(outs) == 1 else list(outs)
    return Result(outputs=outputs, report=report)
