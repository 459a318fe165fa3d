"""Fit hwsim's runtime models (ncnn on Cortex-A, CMSIS-NN / X-CUBE-AI on Cortex-M) on published board measurements
and validate them on the boards left out.

Data (../shared/data, with sources in each row):
* ``ncnn_arm_boards.csv``: ncnn benchncnn (Tencent/ncnn benchmark/README.md), average ms per inference, 1-12
  threads, fp32 and ``*_int8`` models. Rows used: one core type per row (big.LITTLE mixes left out), a core
  hwsim models, a model whose zoo net exists (NCNN_NETS), threads <= the cores of that type.
* ``mlperf_tiny_cortex_m.csv``: MLPerf Tiny closed division, latency and energy per inference.

Method, per core × runtime × precision: the four free parameters of :class:`hwsim.cpu.runtime.RuntimeParams`
minimise the squared log error over the rows of the fitting boards (scipy least_squares). Validation is leave one
board out (LOBO): each board is predicted by the parameters fitted on the *other* boards of its core; a core with a
single board is predicted from the parameters of its nearest core (NEAREST). The final parameters (all boards) go
to ``hwsim/cpu/runtime/fitted.py`` (``--write``) with the boards they were fitted on. Boards that are never fitted:
the Raspberry Pi boards (none are in the file: their presets are predictions from core, clock and memory) and every
Cortex-M7 board (none in the file either).

Usage::

    python benchmarks/bench_arm_boards.py [--write] [--nets resnet18,mobilenetv2] [--out benchmarks/results/arm_boards]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from hwsim.cpu.arm import core as arm_core
from hwsim.cpu.cost import placement, runtime_layer_terms
from hwsim.cpu.spec import CPUSpec
from mapping.analysis import peak_live_elements

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FITTED_PY = ROOT / "hwsim" / "cpu" / "runtime" / "fitted.py"

# ncnn benchmark model -> zoo net (the topologies of ncnn's benchmark/*.param: shufflenet = ShuffleNet v1 g=3 with
# an ungrouped first 1x1, as the zoo's default; mobilenet = MobileNet v1 1.0; all at 224x224 except where noted)
NCNN_NETS = {"mobilenet": "mobilenetv1", "mobilenet_v2": "mobilenetv2", "shufflenet": "shufflenetv1",
             "shufflenet_v2": "shufflenetv2", "resnet18": "resnet18", "resnet50": "resnet50", "vgg16": "vgg16",
             "squeezenet": "squeezenet1.1", "mobilenet_v3": "mobilenetv3-large", "mnasnet": "mnasnet1.0",
             "proxylessnasnet": "proxylessnas-mobile", "efficientnet_b0": "efficientnet-b0",
             "regnety_400m": "regnety-400mf", "googlenet": "googlenet", "alexnet": "alexnet"}
CORE_OF = {"A53": "cortex-a53", "A55": "cortex-a55", "A57": "cortex-a57", "A72": "cortex-a72", "A73": "cortex-a73",
           "A76": "cortex-a76", "A78": "cortex-a78", "A78AE": "cortex-a78"}
NEAREST = {"cortex-a53": "cortex-a55", "cortex-a55": "cortex-a53", "cortex-a57": "cortex-a72",
           "cortex-a72": "cortex-a73", "cortex-a73": "cortex-a72", "cortex-a76": "cortex-a78",
           "cortex-a78": "cortex-a76", "cortex-m4": "cortex-m33", "cortex-m33": "cortex-m4", "cortex-m7": "cortex-m4",
           "cortex-m55": "cortex-m85", "cortex-m85": "cortex-m55", "cortex-m0plus": "cortex-m4"}
# Main-memory peak bandwidth (B/s) by SoC: bus width x transfer rate of the memory type in the SoC's product brief
# (the same convention as the shipped presets: peak, not sustained). Unknown SoC: DEFAULT_DRAM_BW.
SOC_DRAM_BW = {
    "Rockchip RK3399": 12.8e9,  # 2 x 32-bit LPDDR4-1600 (RK3399 brief)
    "Rockchip RK3588": 34.1e9, "Rockchip RK3588S": 34.1e9,  # 4 x 16-bit LPDDR4x-4266 (RK3588 brief)
    "Rockchip RK3568": 12.5e9, "Rockchip RK3566": 12.5e9,  # 32-bit LPDDR4-3120 (RK3568/RK3566 brief)
    "Rockchip RK3328": 8.5e9, "Rockchip RK3228H": 8.5e9,  # 32-bit DDR4-2133
    "Allwinner H616": 8.5e9, "Allwinner T527": 12.8e9, "Amlogic A311D": 10.6e9,  # 32-bit DDR4 / LPDDR4
    "HiSilicon Kirin 970": 29.8e9, "Qualcomm MSM8994 Snapdragon 810": 25.6e9,  # 64-bit LPDDR4X / LPDDR4
    "Qualcomm MSM8916 Snapdragon 410": 4.3e9, "NVIDIA Orin": 204.8e9,  # 32-bit LPDDR3-1066; 256-bit LPDDR5
    "Renesas RZ/G2L (header \"RZG2L\")": 3.2e9,  # 16-bit DDR4-1600
}
DEFAULT_DRAM_BW = 8.5e9  # a 32-bit DDR4-2133 interface, the most common in the file
# Cache configuration by core (the usual configuration of the SoCs in the file, Arm TRMs: L1D per core, L2 shared by
# the cluster (A53, A57, A72, A73) or per core (A55, A76, A78), plus a DSU L3 on the DynamIQ parts)
CACHES = {"cortex-a53": (32768, 524288, False, 0), "cortex-a55": (32768, 131072, True, 1048576),
          "cortex-a57": (32768, 2097152, False, 0), "cortex-a72": (32768, 1048576, False, 0),
          "cortex-a73": (65536, 1048576, False, 0), "cortex-a76": (65536, 524288, True, 3145728),
          "cortex-a78": (65536, 262144, True, 2097152)}


@dataclass(frozen=True)
class Row:
    board: str  # board / core (a big.LITTLE board's clusters are separate boards here)
    core: str
    clock_hz: float
    board_cores: int
    dram_bw: float
    net: str
    precision: str
    threads: int
    ms: float


def ncnn_rows(nets_available: set[str]) -> list[Row]:
    """The usable rows of ncnn_arm_boards.csv (module docstring), one per (board, core, net, precision, threads)."""
    out, seen = [], set()
    for r in csv.DictReader(open(DATA / "ncnn_arm_boards.csv")):
        ct, model = r["core_type"], r["model"].replace("-int8", "_int8")
        if ct not in CORE_OF or "+" in r["cpu_cores_used"] or not r["clock_ghz"] or "/" in r["clock_ghz"]:
            continue
        precision = "int8" if model.endswith("_int8") else "fp32"
        net = NCNN_NETS.get(model.removesuffix("_int8"))
        count = int(r["cpu_cores_used"].split("x")[0])
        threads = int(r["threads"])
        key = (r["board"], ct, net, precision, threads)
        if net not in nets_available or threads > count or key in seen:
            continue
        seen.add(key)
        out.append(Row(f"{r['board']} [{ct}]", CORE_OF[ct], float(r["clock_ghz"]) * 1e9, count,
                       SOC_DRAM_BW.get(r["soc"], DEFAULT_DRAM_BW), net, precision, threads, float(r["avg_ms"])))
    return out


def board_spec(row: Row, runtime: str = "ncnn") -> CPUSpec:
    """A CPUSpec of the row's board: its core, clock, thread count, the core's caches and the SoC's memory."""
    c = arm_core(row.core)
    l1, l2, per_core, l3 = CACHES[row.core]
    return CPUSpec(name=row.board[:60], clock_hz=row.clock_hz, cores=row.threads, board_cores=row.board_cores,
                   simd_bits=c.simd_bits, fma_per_cycle=c.fp32_fma_per_cycle / (c.simd_bits // 32), l1d_bytes=l1,
                   l2_bytes=l2, l2_per_core=per_core, l3_bytes=l3, dram_bw_bytes_s=row.dram_bw,
                   runtime=runtime, precision=row.precision, core=row.core)


# ----------------------------------------------------------------------------- graphs and per-layer terms
_GRAPHS: dict[str, object] = {}


def graph(net: str):
    """The traced, batch-norm-folded graph of a zoo net (traced once per run)."""
    if net not in _GRAPHS:
        import mapping
        import nets
        from mapping.passes.fold_bn import fold_bn

        _GRAPHS[net] = fold_bn(mapping.trace(nets.get(net), nets.info(net).input_shape))
    return _GRAPHS[net]


def terms(spec: CPUSpec, net: str) -> np.ndarray:
    """Per layer of ``net`` on ``spec`` (n = spec.cores threads): rows (gemm_s, dw+vec_s, t_m, streaming, counted,
    winograd gemm_s)
    of :func:`hwsim.cpu.cost.runtime_layer_terms` (the parts that do not depend on the fitted parameters)."""
    g = graph(net)
    act = peak_live_elements(g) * g.batch * spec.bytes_per_element
    place = placement(g, spec, act, spec.cores)
    rows = []
    for node in g.nodes:
        if node.op.name == "RESHAPE":
            continue
        bpe = spec.bytes_per_element
        sizes = (sum(math.prod(g.shape_of(i)) for i in node.inputs) * bpe, math.prod(node.shape) * bpe,
                 sum(g.params[k].size for k in node.params.values()) * bpe)
        t, t_m, streaming, _ = runtime_layer_terms(g, node, spec, place, spec.cores, sizes)
        wino = t.algo.startswith("winograd")
        rows.append((0.0 if wino else t.gemm_s, t.dw_s + t.vec_s, t_m, float(streaming), float(t.algo != "fused"),
                     t.gemm_s if wino else 0.0))
    return np.asarray(rows)


def predict(tm: np.ndarray, theta: np.ndarray, n: int) -> float:
    """Latency in s from per-layer terms and parameters (eff_gemm, eff_dw, layer_s, parallel_eff, thread_s,
    eff_wino) on n threads: the formula of hwsim.cpu.cost._runtime_layer_cost."""
    eg, ed, ls, pe, ts, ew = theta
    t_c = (tm[:, 0] / eg + tm[:, 5] / (ew or eg) + tm[:, 1] / ed) / (1.0 + (n - 1) * pe)
    body = np.where(tm[:, 3] > 0, t_c + tm[:, 2], np.maximum(t_c, tm[:, 2]))
    return float(body.sum() + (ls + (n - 1) * ts) * tm[:, 4].sum())


# ----------------------------------------------------------------------------- fitting
# parameter order: eff_gemm, eff_dw, layer_s, parallel_eff, thread_s, eff_wino (Cortex-A only: the M runtimes run
# no Winograd conv, eff_wino stays 0 = eff_gemm there)
LO, HI = np.array([0.02, 0.02, 0.0, 0.0, 0.0, 0.02]), np.array([1.0, 1.0, 2e-3, 1.0, 2e-4, 1.0])
THETA0 = np.array([0.5, 0.3, 2e-5, 0.8, 2e-6, 0.5])
SCALE = np.array([0.1, 0.1, 1e-5, 0.1, 1e-6, 0.1])


def fit(samples: list[tuple[np.ndarray, int, float]], parallel: float = THETA0[3]) -> np.ndarray:
    """Parameters minimising Σ log(pred / measured)^2 over (terms, threads, measured s) samples. With no
    multi-thread sample, parallel_eff and thread_s are not identifiable: ``parallel`` and 0."""
    multi = any(n > 1 for _, n, _ in samples)
    wino = any(tm[:, 5].any() for tm, _, _ in samples)
    free = [0, 1, 2] + ([3, 4] if multi else []) + ([5] if wino else [])

    def full(x):
        th = np.array([x[0], x[1], x[2], parallel, 0.0, 0.0])
        th[free] = x
        return th

    def resid(x):
        return [math.log(predict(tm, full(x), n) / s) for tm, n, s in samples]

    res = least_squares(resid, THETA0[free], bounds=(LO[free], HI[free]), x_scale=SCALE[free], loss="soft_l1",
                        f_scale=0.2)
    return full(res.x)


def theta_dict(theta: np.ndarray, boards: list[str]) -> dict:
    return dict(eff_gemm=round(float(theta[0]), 4), eff_dw=round(float(theta[1]), 4),
                layer_s=float(f"{theta[2]:.4g}"), parallel_eff=round(float(theta[3]), 4),
                thread_s=float(f"{theta[4]:.4g}"), eff_wino=round(float(theta[5]), 4),
                fitted_on=", ".join(sorted(boards)))


# ----------------------------------------------------------------------------- Cortex-A: ncnn
def cortex_a(rows: list[Row]) -> tuple[dict, list[dict]]:
    """Fit every (core, precision) of ncnn on all its boards (the shipped parameters) and predict every board
    leave-one-board-out. Returns ({(core, "ncnn", precision): params}, per-sample records)."""
    samples: dict[tuple[str, str], list] = defaultdict(list)  # (core, precision) -> [(row, terms)]
    for r in rows:
        samples[(r.core, r.precision)].append((r, terms(board_spec(r), r.net)))
    final = {k: fit([(tm, r.threads, r.ms / 1e3) for r, tm in v]) for k, v in samples.items()}
    fitted = {(c, "ncnn", p): theta_dict(final[(c, p)], list({r.board for r, _ in v})) for (c, p), v in samples.items()}
    records = []
    for (c, p), v in samples.items():
        boards = sorted({r.board for r, _ in v})
        for b in boards:
            train = [(tm, r.threads, r.ms / 1e3) for r, tm in v if r.board != b]
            if train:
                theta, how = fit(train), f"LOBO: fitted on the other {len(boards) - 1} {c} boards"
            elif (NEAREST[c], p) in final:
                theta, how = final[(NEAREST[c], p)], f"only {c} board: parameters of {NEAREST[c]}"
            else:
                continue
            for r, tm in v:
                if r.board == b:
                    records.append(dict(board=b, core=c, precision=p, net=r.net, threads=r.threads, measured_ms=r.ms,
                                        fitted_ms=1e3 * predict(tm, final[(c, p)], r.threads),
                                        predicted_ms=1e3 * predict(tm, theta, r.threads), predicted_how=how))
    return fitted, records


def board_table(records: list[dict], key: str) -> list[dict]:
    """Per board, core, precision and thread count: median and max |error| % of ``key`` vs measured."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["board"], r["core"], r["precision"], r["threads"])].append(abs(100.0 * (r[key] / r["measured_ms"] - 1)))
    return [dict(board=b, core=c, precision=p, threads=n, rows=len(e), median_abs_err_pct=round(statistics.median(e), 1),
                 max_abs_err_pct=round(max(e), 1)) for (b, c, p, n), e in sorted(groups.items())]


def summary(records: list[dict], key: str) -> dict:
    e = [abs(100.0 * (r[key] / r["measured_ms"] - 1.0)) for r in records]
    return {} if not e else dict(
        rows=len(e), median_abs_err_pct=round(statistics.median(e), 1), max_abs_err_pct=round(max(e), 1),
        within_15_pct=round(100.0 * sum(x <= 15 for x in e) / len(e), 1), over_40_pct=sum(x > 40 for x in e))


def offset_split(records: list[dict], key: str) -> dict:
    """Split the errors of ``key`` into a per-(board, precision, threads) level (the median ratio of the group: a
    board's software, OS and thermal state shift every net alike) and the spread of the nets around it (what the
    per-layer model gets right or wrong about the nets' relative costs)."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["board"], r["precision"], r["threads"])].append(math.log(r[key] / r["measured_ms"]))
    level = [100 * abs(math.exp(statistics.median(v)) - 1) for v in groups.values()]
    spread = [100 * abs(math.exp(e - statistics.median(v)) - 1) for v in groups.values() for e in v]
    return dict(groups=len(level), median_board_level_err_pct=round(statistics.median(level), 1),
                max_board_level_err_pct=round(max(level), 1),
                median_within_board_err_pct=round(statistics.median(spread), 1))


# ----------------------------------------------------------------------------- Cortex-M: CMSIS-NN, X-CUBE-AI
TINY_NETS = {"ic": "tiny-resnet8", "kws": "tiny-dscnn", "vww": "tiny-mobilenet-vww", "ad": "tiny-autoencoder"}
M_CORE = {"M0+": "cortex-m0plus", "M4": "cortex-m4", "M33": "cortex-m33", "M7": "cortex-m7", "M55": "cortex-m55",
          "M85": "cortex-m85"}


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


# ----------------------------------------------------------------------------- outputs
def write_fitted(fitted: dict) -> None:
    """Rewrite hwsim/cpu/runtime/fitted.py with the all-board fits (each entry names its boards)."""
    lines = ['"""Fitted runtime parameters per (core, runtime, precision), written by',
             "``python benchmarks/bench_arm_boards.py --write`` (do not edit by hand). Each entry was fitted on the",
             "boards in its ``fitted_on`` (ncnn benchncnn rows of ../shared/data/ncnn_arm_boards.csv, MLPerf Tiny rows of",
             "../shared/data/mlperf_tiny_cortex_m.csv); the errors on boards left out are in",
             "benchmarks/results/arm_boards.md. Entries for cores without a board of their own (``transferred from``)",
             "reuse the nearest core's parameters: predictions, never fitted on that core.", '"""', "FITTED = {"]
    lines += [f"    {key!r}: {fitted[key]!r}," for key in sorted(fitted)] + ["}"]
    FITTED_PY.write_text("\n".join(lines) + "\n")


def transfer(fitted: dict) -> dict:
    """Entries for the cores with no board in the data (M7, M55, A57/A78 int8 when absent, ...): the nearest core's
    parameters, marked as transferred. Raspberry Pi cores (A53, A72, A76) have fitted entries of their own."""
    out = dict(fitted)
    for c, near in NEAREST.items():
        for rt, prec in {(rt, p) for (_, rt, p) in fitted}:
            src = fitted.get((near, rt, prec))
            if (c, rt, prec) not in out and src and arm_core(c).profile == arm_core(near).profile:
                out[(c, rt, prec)] = {**src, "fitted_on": f"transferred from {near} (fitted on {src['fitted_on']})"}
    for (c, rt, prec), v in list(out.items()):  # XNNPACK: no measurements in the data: ncnn's, marked assumed
        if rt == "ncnn" and (c, "xnnpack", prec) not in out:
            out[(c, "xnnpack", prec)] = {**v, "fitted_on": f"assumed equal to ncnn's (fitted on {v['fitted_on']})"}
        if rt == "x-cube-ai" and prec == "int8":  # X-CUBE-AI fp32 (its float kernels): no measurement either
            out[(c, rt, "fp32")] = {**v, "fitted_on": "assumed: X-CUBE-AI's int8 efficiencies at the FPU's fp32 rate "
                                                      f"(int8 fitted on {v['fitted_on']})"}
    return out


def markdown(res: dict) -> str:
    def table(rows: list[dict], cols: list[str]) -> list[str]:
        head = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return head + ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows] + [""]

    cols = ["board", "core", "precision", "threads", "rows", "median_abs_err_pct", "max_abs_err_pct"]
    md = ["# Runtime models on Arm boards: fitted vs predicted", "",
          "Written by `benchmarks/bench_arm_boards.py`. *Fitted*: the shipped parameters (fitted on all boards of",
          "the core) on their own training rows. *Predicted*: each board from parameters fitted without it (leave",
          "one board out; a core's only board from its nearest core's parameters). Targets: median |error| <= 15 %,",
          "none over 40 % on predicted boards; Cortex-M energy within 30 %.", "",
          "## Summary", ""]
    md += table([dict(set=k, **v) for k, v in res["summary"].items()],
                ["set", "rows", "median_abs_err_pct", "max_abs_err_pct", "within_15_pct", "over_40_pct"])
    md += ["## Cortex-A: a board's level vs the nets around it", "",
           "Per (board, precision, threads): the median ratio predicted / measured (the board's level) and the",
           "nets' spread around it.", ""]
    md += table([dict(set=k, **v) for k, v in res["cortex_a_error_split"].items()],
                ["set", "groups", "median_board_level_err_pct", "max_board_level_err_pct", "median_within_board_err_pct"])
    md += ["## Cortex-A, ncnn: predicted boards (leave one board out)", ""]
    md += table(res["cortex_a"]["predicted_boards"], cols)
    md += ["## Cortex-A, ncnn: fitted boards (in-sample)", ""]
    md += table(res["cortex_a"]["fitted_boards"], cols)
    mcols = ["board", "core", "runtime", "net", "measured_ms", "predicted_ms", "fitted_ms", "measured_energy_uj",
             "predicted_energy_uj", "predicted_how"]
    mrows = [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in res["cortex_m"]["rows"]]
    md += ["## Cortex-M: latency and energy vs MLPerf Tiny", "",
           "Energy = predicted latency x the submission's average power on its `ad` (autoencoder) row (fitted on",
           "that row; the other tasks are the check).", ""]
    md += table(mrows, mcols)
    md += ["## Raspberry Pi boards (not in the data: predictions only)", ""]
    md += table(res["raspberry_pi"], ["preset", "runtime", "precision", "threads", "net", "predicted_ms"])
    return "\n".join(md)


PI_BOARDS = {  # preset, changes: the Raspberry Pi boards, predicted from core, clock and memory only
    "Raspberry Pi 3B+ (cpu/cortex-a53)": ("cpu/cortex-a53", {}),
    "Raspberry Pi Zero 2 W (cpu/cortex-a53 at 1.0 GHz)": ("cpu/cortex-a53", {"clock_hz": 1.0e9}),  # RP3A0 brief
    "Raspberry Pi 4 (cpu/cortex-a72)": ("cpu/cortex-a72", {}),
    "Raspberry Pi 5 (cpu/cortex-a76)": ("cpu/cortex-a76", {}),
}


def raspberry_pi(fitted: dict, nets_: list[str]) -> list[dict]:
    from hwsim.specs import load_preset

    out = []
    for label, (preset, changes) in PI_BOARDS.items():
        for prec in ("fp32", "int8"):
            for n in (1, 4):
                spec = replace(load_preset(preset), runtime="ncnn", precision=prec, cores=n, **changes)
                v = fitted[(spec.core, "ncnn", prec)]
                theta = np.array([v["eff_gemm"], v["eff_dw"], v["layer_s"], v["parallel_eff"], v["thread_s"],
                                  v["eff_wino"]])
                for net in nets_:
                    out.append(dict(preset=label, runtime="ncnn", precision=prec, threads=n, net=net,
                                    predicted_ms=round(1e3 * predict(terms(spec, net), theta, n), 2)))
    return out


def main() -> None:
    import nets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite hwsim/cpu/runtime/fitted.py with the fits")
    ap.add_argument("--nets", default="", help="comma-separated zoo nets to restrict to (default: all available)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "arm_boards"))
    args = ap.parse_args()
    available = set(nets.names())
    if args.nets:
        available &= set(args.nets.split(","))
    a_fit, a_rec = cortex_a(ncnn_rows(available))
    m_fit, m_rec = cortex_m(mlperf_rows(available))
    fitted = transfer({**a_fit, **m_fit})
    energy = [dict(measured_ms=r["measured_energy_uj"], predicted_ms=r["predicted_energy_uj"]) for r in m_rec
              if r["predicted_energy_uj"] and "autoencoder" not in r["net"]]
    res = {
        "summary": {
            "cortex-a ncnn, predicted (LOBO)": summary(a_rec, "predicted_ms"),
            "cortex-a ncnn, fitted (in-sample)": summary(a_rec, "fitted_ms"),
            "cortex-a ncnn fp32, predicted": summary([r for r in a_rec if r["precision"] == "fp32"], "predicted_ms"),
            "cortex-a ncnn int8, predicted": summary([r for r in a_rec if r["precision"] == "int8"], "predicted_ms"),
            "cortex-m latency, predicted (LOBO)": summary(m_rec, "predicted_ms"),
            "cortex-m latency, fitted (in-sample)": summary(m_rec, "fitted_ms"),
            "cortex-m energy (ic/kws/vww), predicted": summary(energy, "predicted_ms"),
        },
        "cortex_a_error_split": {"predicted (LOBO)": offset_split(a_rec, "predicted_ms"),
                                 "fitted (in-sample)": offset_split(a_rec, "fitted_ms")},
        "cortex_a": {"predicted_boards": board_table(a_rec, "predicted_ms"),
                     "fitted_boards": board_table(a_rec, "fitted_ms"), "rows": a_rec},
        "cortex_m": {"rows": m_rec},
        "fitted": {"/".join(k): v for k, v in sorted(fitted.items())},
        "raspberry_pi": raspberry_pi(fitted, [n for n in ("resnet18", "mobilenetv2", "vgg16") if n in available]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    if args.write:
        write_fitted(fitted)
    for k, v in res["summary"].items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
