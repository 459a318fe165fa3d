"""The Cortex-M part of ``bench_arm_boards.py``: MLPerf Tiny rows (CMSIS-NN, X-CUBE-AI), a microcontroller's
CPUSpec, and the per (core, runtime) fit with leave-one-board-out prediction of latency and energy."""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass

from _arm_board_data import DATA, M_CORE, NEAREST, TINY_NETS
from _arm_model import fit, predict, terms, theta_dict

from hwsim.cpu.spec import CPUSpec


def m_runtime(framework: str) -> str | None:
    """hwsim's runtime for an MLPerf Tiny submission's software stack (None: not modelled: Plumerai, HALE, plain
    microTVM, ST's internal STEdge AI; submissions with an accelerator are dropped before)."""
    f = framework.lower()
    if "x-cube-ai" in f:
        return "x-cube-ai"
    if "cmsis" in f:  # microTVM + CMSIS-NN, ONNC + CMSIS_5 (CMSIS-NN kernels), TFLite Micro + CMSIS-NN
        return "cmsis-nn"
    return None


@dataclass(frozen=True)
class MRow:
    board: str
    core: str
    clock_hz: float
    runtime: str
    version: str
    net: str
    ms: float
    energy_uj: float  # 0 = not measured
    submission: str  # round, submitter, system and its notes (supply voltage, SMPS): one power configuration


def mlperf_rows(nets_available: set[str]) -> list[MRow]:
    """Usable MLPerf Tiny rows; X-CUBE-AI: only its newest version per board (ST's releases differ by up to 25 %)."""
    rows = []
    for r in csv.DictReader(open(DATA / "mlperf_tiny_cortex_m.csv")):
        rt, net = m_runtime(r["runtime_framework"]), TINY_NETS.get(r["task"])
        if rt is None or r["accelerator"] or r["core"] not in M_CORE or net not in nets_available:
            continue
        rows.append(MRow(r["board"].removesuffix("-P"), M_CORE[r["core"]], float(r["clock_mhz"]) * 1e6, rt,
                         r["runtime_framework"], net, float(r["latency_ms"]), float(r["energy_uj"] or 0),
                         " / ".join((r["version"], r["submitter"], r["system"], r["hardware_notes"]))))
    def release(v: str) -> tuple[int, ...]:  # "X-CUBE-AI v10.2" -> (10, 2)
        return tuple(int(x) for x in v.split("v")[-1].split("."))
    newest: dict[str, str] = {}
    for r in rows:
        if r.runtime == "x-cube-ai" and (r.board not in newest or release(r.version) > release(newest[r.board])):
            newest[r.board] = r.version
    return [r for r in rows if r.runtime != "x-cube-ai" or r.version == newest[r.board]]


def mcu_spec(r: MRow) -> CPUSpec:
    """A microcontroller board: its core and clock, on-chip SRAM and flash read at 4 bytes per cycle (the 32-bit
    AHB/TCM port; ART/cache hits on flash), no data cache; sizes large enough for the MLPerf Tiny models."""
    bw = 4.0 * r.clock_hz
    return CPUSpec(name=r.board, clock_hz=r.clock_hz, cores=1, simd_bits=32, fma_per_cycle=1.0, l1d_bytes=0,
                   dram_bw_bytes_s=bw, ram_bytes=2**20, flash_bytes=2**21, flash_bw_bytes_s=bw, runtime=r.runtime,
                   precision="int8", core=r.core)


def stack(r: MRow) -> str:
    """The deployment stack over the kernels ("microTVM", "ONNC", "X-CUBE-AI v10.2", ...)."""
    return r.version.split("|")[0].strip()


def cortex_m(rows: list[MRow]) -> tuple[dict, list[dict]]:
    """As :func:`cortex_a` for each (core, runtime) of the MLPerf Tiny rows (single core: contention fixed at 0);
    energy = predicted latency x the board's measured power on its ``ad`` (autoencoder) row, the other tasks'
    energies are the check.

    The shipped parameters of a (core, runtime) are fitted on all its rows. A board left out is predicted from the
    other boards' rows of the stack that ran it, if any: the same CMSIS-NN kernels run 1.3-1.75x slower under
    microTVM than under ONNC on the same NUCLEO-L4R5ZI (MLPerf Tiny v1.0 / v1.1 rows), more than the gap between
    an M4 and an M33 (the same SMLAD-based DSP loops): first the other boards of its core and stack, then the
    nearest core's boards of its stack, then the other boards of its core, then the nearest core's parameters."""
    samples: dict[tuple[str, str], list] = defaultdict(list)
    for r in rows:
        samples[(r.core, r.runtime)].append((r, terms(mcu_spec(r), r.net)))
    final = {k: fit([(tm, 1, r.ms / 1e3) for r, tm in v], contention=0.0) for k, v in samples.items()}
    fitted = {(c, rt, "int8"): theta_dict(final[(c, rt)], list({r.board for r, _ in v}))
              for (c, rt), v in samples.items()}
    power = {r.submission: r.energy_uj / r.ms for r in rows
             if r.net == TINY_NETS["ad"] and r.energy_uj}  # mW
    records = []
    for (c, rt), v in samples.items():
        near = samples.get((NEAREST[c], rt), [])
        for b in sorted({r.board for r, _ in v}):
            for st in sorted({stack(r) for r, _ in v if r.board == b}):
                theta, how = _lobo(b, st, c, rt, v, near, final)
                if theta is None:
                    continue
                for r, tm in v:
                    if r.board != b or stack(r) != st:
                        continue
                    pred = 1e3 * predict(tm, theta, 1)
                    p_mw = power.get(r.submission)
                    records.append(dict(board=b, core=c, runtime=rt, version=r.version, net=r.net, threads=1,
                                        precision="int8", measured_ms=r.ms,
                                        fitted_ms=1e3 * predict(tm, final[(c, rt)], 1), predicted_ms=pred,
                                        predicted_how=how, measured_energy_uj=r.energy_uj or None,
                                        predicted_energy_uj=pred * p_mw if (p_mw and r.energy_uj) else None,
                                        power_mw_fitted_on_ad=round(p_mw, 2) if p_mw else None))
    return fitted, records


def _lobo(board: str, st: str, c: str, rt: str, own: list, near: list, final: dict):
    """(parameters, how) predicting ``board``'s rows of stack ``st`` without any of its rows (:func:`cortex_m`)."""
    def train(pairs, same_stack):
        return [(tm, 1, r.ms / 1e3) for r, tm in pairs if r.board != board and (stack(r) == st or not same_stack)]

    for pairs, same, how in ((own, True, f"LOBO: fitted on the other {c} {rt} boards of stack {st}"),
                             (near, True, f"LOBO: fitted on {NEAREST[c]} {rt} boards of stack {st}"),
                             (own, False, f"LOBO: fitted on the other {c} {rt} boards (other stacks)")):
        rows = train(pairs, same)
        if rows:
            return fit(rows, contention=0.0), how
    if (NEAREST[c], rt) in final:
        return final[(NEAREST[c], rt)], f"only {c} {rt} board: parameters of {NEAREST[c]}"
    return None, ""
