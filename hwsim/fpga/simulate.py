"""``simulate(graph, spec, x)`` for the FPGA XNOR/popcount engine, and its report.

The path: ``mapping.fpga.map_xnor`` fuses the graph into MVAUs with integer thresholds; the
folding (by hand or automatic) fixes PE/SIMD per MVAU; ``hwsim.fpga.cost`` gives cycles,
BRAM18, LUTs and the SimPy latency; ``hwsim.fpga.functional`` computes the outputs bit-exactly when
``x`` is given.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwsim.errors import MappingError, SpecError
from hwsim.fpga.cost import (
    auto_folding,
    build_design,
    check_folding,
    padding_notes,
    pipeline_frame_cycles,
)
from hwsim.fpga.functional import run_program
from hwsim.fpga.schedule import latency_cycles
from hwsim.fpga.spec import FPGASpec
from hwsim.functional import check_input
from hwsim.report import LayerReport, Report, Result
from mapping.fpga import XnorProgram, map_xnor
from mapping.graph import Graph

__all__ = ["FPGAReport", "simulate"]


@dataclass(frozen=True, kw_only=True)
class FPGAReport(Report):
    """Report of the XNOR engine: ``Report`` plus the dataflow figures.

    fps: frames per second in the steady state (clock / initiation interval).
    ii_cycles: initiation interval: cycles of the slowest layer, or the SimPy frame interval when
        FIFOs of ``fifo_depth`` elements stall the pipeline.
    latency_sum_s: FINN's latency estimate (sum of layer cycles / clock), an upper bound.
    bram18 / luts / dsps: resources used; luts_available / bram18_available: the device's.
    folding: (PE, SIMD) per MVAU / VVAU in layer order.
    energy_per_frame_j: energy of one frame in the steady state.
    fifo_depths: ("producer->consumer", elements) per inter-layer FIFO: the largest occupancy in a SimPy run with
        unbounded FIFOs (FINN's FIFO sizing); FIFOs this deep never stall.
    """

    fps: float = 0.0
    ii_cycles: int = 0
    latency_sum_s: float = 0.0
    bram18: int = 0
    luts: int = 0
    dsps: int = 0
    luts_available: int = 0
    bram18_available: int = 0
    folding: tuple[tuple[int, int], ...] = ()
    energy_per_frame_j: float = 0.0
    fifo_depths: tuple[tuple[str, int], ...] = ()

    def summary(self) -> str:
        return (super().summary() + f"\n{self.fps:.4g} fps (II {self.ii_cycles} cycles), "
                f"{self.luts} / {self.luts_available} LUTs, {self.bram18} / {self.bram18_available} BRAM18, "
                f"folding (PE, SIMD) {list(self.folding)}")


def simulate(graph: Graph, spec: FPGASpec, x: np.ndarray | None = None, *, seed: int = 0,
             folding: Sequence[tuple[int, int]] | str = "auto", target_fps: float | None = None,
             kbit: str = "decomposed", fifo_depth: int | None = None) -> Result:
    """Map ``graph`` onto the FPGA ``spec`` and simulate it.

    folding: ``[(PE, SIMD), ...]`` per MVAU in layer order, or ``"auto"`` (cheapest folding meeting
        ``target_fps``; without a target, the fastest folding that fits the device).
    kbit: ``"decomposed"`` (k-bit layers as k_w·k_a binary branches run one after another) or
        ``"native"`` (k-bit MVAU arithmetic). Outputs are identical; cycles and LUTs differ.
    fifo_depth: elements each inter-layer FIFO holds; None = deep enough never to stall (as FINN's
        FIFO sizing aims for). With a depth, the SimPy run covers three frames and ``fps`` is the
        measured steady-state rate (back-pressure can make it lower than clock / II).
    seed: unused (the engine is deterministic); accepted for the common signature.
    """
    if fifo_depth is not None and (isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int) or fifo_depth < 1):
        raise MappingError(f"fifo_depth must be a positive int or None, got {fifo_depth!r}")
    if not isinstance(spec, FPGASpec):
        raise SpecError(f"the fpga target needs an FPGASpec, got {type(spec).__name__}")
    if kbit not in ("decomposed", "native"):
        raise MappingError(f"kbit must be 'decomposed' or 'native', got {kbit!r}")
    decomposed = kbit == "decomposed"
    program = map_xnor(graph)
    notes: list[str] = []
    if isinstance(folding, str):
        if folding != "auto":
            raise MappingError(f"folding must be 'auto' or a list of (PE, SIMD) pairs, got {folding!r}")
        fold, note = auto_folding(program, spec, target_fps, decomposed)
        if note:
            notes.append(note)
    else:
        if target_fps is not None:
            raise MappingError("target_fps applies to folding='auto' only")
        fold = check_folding(program, folding)
        notes += padding_notes(program, fold)
    outputs = None
    if x is not None:
        x = check_input(graph, x)
        outputs = run_program(program, x, decomposed)
    report = _report(graph, program, spec, fold, decomposed, notes, fifo_depth)
    return Result(outputs, report)


def _report(graph: Graph, program: XnorProgram, spec: FPGASpec, fold, decomposed: bool, notes: list[str],
            fifo_depth: int | None = None):
    design = build_design(program, fold, decomposed)
    clock = spec.clock_hz
    ii = design.ii_cycles
    batch = graph.batch
    notes = list(notes)
    lat_cycles, depths = latency_cycles(list(design.stages), int(np.prod(program.input_shape)))
    if fifo_depth is not None:
        times = pipeline_frame_cycles(design, int(np.prod(program.input_shape)), 3, fifo_depth)
        lat_cycles = int(np.ceil(times[0]))
        interval = times[-1] - times[-2]
        if interval > ii + 1e-9:
            notes.append(f"FIFOs of {fifo_depth} elements stall the pipeline: frame interval {interval:.0f} cycles "
                         f"> II {ii} cycles")
            ii = int(np.ceil(interval))
    frame_s = ii / clock
    total_luts = max(design.luts, 1)
    rows = []
    for hw in design.layers:
        dyn_lut = hw.cycles * hw.luts * spec.lut_energy_pj * 1e-12
        dyn_bram = hw.cycles * hw.bram18 * spec.bram18_energy_pj * 1e-12
        static = spec.static_power_w * frame_s * hw.luts / total_luts
        breakdown = {"lut": dyn_lut * batch, "bram": dyn_bram * batch, "static": static * batch}
        extra = dict(hw.extra) if hw.extra else {"pe": hw.pe, "simd": hw.simd}
        extra.update(luts=hw.luts, bram18=hw.bram18, kind=hw.kind)
        rows.append(LayerReport(
            name=hw.name, op=hw.kind, module=hw.module, macs=hw.macs * batch, cycles=float(hw.cycles),
            latency_s=hw.cycles / clock, energy_j=sum(breakdown.values()), energy_breakdown=breakdown,
            weight_bytes=(hw.weight_bits + 7) // 8, activation_bytes=0, placement="onchip",
            bound="ii" if hw.cycles == ii else "", extra=extra))
    weight_bytes = sum(r.weight_bytes for r in rows)
    fits = design.luts <= spec.luts and design.bram18 <= spec.bram18
    reasons = []
    if design.luts > spec.luts:
        reasons.append(f"needs {design.luts} LUTs, the {spec.device or spec.name} has {spec.luts}")
    if design.bram18 > spec.bram18:
        reasons.append(f"needs {design.bram18} BRAM18, the {spec.device or spec.name} has {spec.bram18}")
    energy_frame = sum(r.energy_j for r in rows) / batch
    peak_act = max((int(np.prod(m.out_shape)) * (m.out_enc.bits if m.out_enc else 32) + 7) // 8
                   for m in program.mvaus)
    notes.append(f"FIFO depths (elements, sized by SimPy): {sum(d for _, d in depths)} in all over {len(depths)} "
                 f"FIFOs, deepest {max((d for _, d in depths), default=0)}")
    notes.append(f"latency: SimPy pipeline {lat_cycles} cycles; FINN estimate (sum of layer cycles) "
                 f"{design.sum_cycles} cycles")
    return FPGAReport(
        target="fpga", network=graph.name, spec_name=spec.name, batch=batch, layers=tuple(rows),
        latency_s=(lat_cycles + (batch - 1) * ii) / clock, energy_j=energy_frame * batch,
        onchip_weight_bytes=weight_bytes, onchip_capacity_bytes=spec.bram_bytes, fits_on_chip=fits,
        fit_reason="; ".join(reasons), peak_activation_bytes=peak_act, notes=tuple(notes),
        fps=clock / ii, ii_cycles=ii, latency_sum_s=design.sum_cycles / clock, bram18=design.bram18,
        luts=design.luts, dsps=0, luts_available=spec.luts, bram18_available=spec.bram18,
        folding=tuple(fold), energy_per_frame_j=energy_frame, fifo_depths=depths)
