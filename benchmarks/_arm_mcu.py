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


def cortex_m(rows: list[MRow]) -> tuple[dict, list[dict]]:
    """As :func:`cortex_a` for each (core, runtime) of the MLPerf Tiny rows (single core: parallel_eff fixed at 1);
    energy = predicted latency x the board's measured power on its ``ad`` (autoencoder) row, the other tasks'
    energies are the check."""
    samples: dict[tuple[str, str], list] = defaultdict(list)
    for r in rows:
        samples[(r.core, r.runtime)].append((r, terms(mcu_spec(r), r.net)))
    final = {k: fit([(tm, 1, r.ms / 1e3) for r, tm in v], parallel=1.0) for k, v in samples.items()}
    fitted = {(c, rt, "int8"): theta_dict(final[(c, rt)], list({r.board for r, _ in v}))
              for (c, rt), v in samples.items()}
    power = {r.submission: r.energy_uj / r.ms for r in rows
             if r.net == TINY_NETS["ad"] and r.energy_uj}  # mW
    records = []
    for (c, rt), v in samples.items():
        boards = sorted({r.board for r, _ in v})
        for b in boards:
            train = [(tm, 1, r.ms / 1e3) for r, tm in v if r.board != b]
            if train:
                theta, how = fit(train, parallel=1.0), f"LOBO: fitted on the other {c} {rt} boards"
            elif (NEAREST[c], rt) in final:
                theta, how = final[(NEAREST[c], rt)], f"only {c} {rt} board: parameters of {NEAREST[c]}"
            else:
                continue
            for r, tm in v:
                if r.board != b:
                    continue
                pred = 1e3 * predict(tm, theta, 1)
                p_mw = power.get(r.submission)
                records.append(dict(board=b, core=c, runtime=rt, version=r.version, net=r.net, threads=1,
                                    precision="int8", measured_ms=r.ms, fitted_ms=1e3 * predict(tm, final[(c, rt)], 1),
                                    predicted_ms=pred, predicted_how=how, measured_energy_uj=r.energy_uj or None,
                                    predicted_energy_uj=pred * p_mw if (p_mw and r.energy_uj) else None,
                                    power_mw_fitted_on_ad=round(p_mw, 2) if p_mw else None))
    return fitted, records
