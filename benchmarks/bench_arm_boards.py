"""Fit hwsim's runtime models (ncnn on Cortex-A, CMSIS-NN / X-CUBE-AI on Cortex-M) on published board measurements
and validate them on the boards left out.

Data (../shared/data, with sources in each row):
* ``ncnn_arm_boards.csv``: ncnn benchncnn (Tencent/ncnn benchmark/README.md), average ms per inference, 1-12
  threads, fp32 and ``*_int8`` models. Rows used: one core type per row (big.LITTLE mixes left out), a core
  hwsim models, a model whose zoo net exists (NCNN_NETS), threads <= the cores of that type.
* ``mlperf_tiny_cortex_m.csv``: MLPerf Tiny closed division, latency and energy per inference.

Comparability rules (DATA_DATE, KERNELS_SINCE, UNSTEADY_MAX_OVER_MIN below; fixed from the data's own columns and
ncnn's history): Cortex-A rows measured before the ncnn kernels hwsim's rules follow are "older ncnn" (never fitted,
reported apart); unsteady runs (max > 1.5 x min) are excluded and listed.

Method, per core × runtime × precision: the free parameters of :class:`hwsim.cpu.runtime.RuntimeParams` minimise
the squared log error over the current-ncnn rows of the fitting boards (scipy least_squares, soft-L1). Validation is
leave one board out (LOBO): each board is predicted by the parameters fitted on the *other* boards of its core; a
core with a single board is predicted from the parameters fitted on every other physical board of its precision (all
cores pooled); a core whose rows have one thread count takes its thread scaling from that pooled fit. The final
parameters (all boards) go to ``hwsim/cpu/runtime/fitted.py`` (``--write``) with the boards they were fitted on.
Never fitted: the Raspberry Pi boards (not in the file; their rows in ncnn's benchmark/README.md, PI_BOARDS, check
the presets' predictions) and every Cortex-M7 board (none in the data).

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

# ncnn benchmark model -> (zoo net, build keywords): the topologies of ncnn's benchmark/*.param (commit a4d2ea1).
# resnet18 / resnet50 / mobilenet_v2 / shufflenet: the zoo's ``layout="ncnn"`` builds (Caffe ResNets with a 1x1
# projection on every stage's first block and ResNet-50 v1's stride on the first 1x1; MobileNetV2 with ReLU and an
# expand conv in the first bottleneck; ShuffleNet v1 g=3 as in ncnn's shufflenet.param); mobilenet = MobileNet v1
# 1.0; the others' zoo defaults are ncnn's layouts (nets/*.py docstrings); all at 224x224.
NCNN = {"layout": "ncnn"}
NCNN_NETS = {"mobilenet": ("mobilenetv1", {}), "mobilenet_v2": ("mobilenetv2", NCNN),
             "shufflenet": ("shufflenetv1", NCNN), "shufflenet_v2": ("shufflenetv2", {}),
             "resnet18": ("resnet18", NCNN), "resnet50": ("resnet50", NCNN), "vgg16": ("vgg16", {}),
             "squeezenet": ("squeezenet1.1", {}), "mobilenet_v3": ("mobilenetv3-large", {}),
             "mnasnet": ("mnasnet1.0", {}), "proxylessnasnet": ("proxylessnas-mobile", {}),
             "efficientnet_b0": ("efficientnet-b0", {}), "regnety_400m": ("regnety-400mf", {}),
             "googlenet": ("googlenet", {}), "alexnet": ("alexnet", {})}
NET_KW = dict(NCNN_NETS.values())  # zoo net -> its build keywords (one build per zoo net here)
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


# Comparability rules, fixed from the data's own columns and ncnn's history before any error was looked at:
# 1. ncnn version. Every row comes from benchmark/README.md at a4d2ea1, written there by many contributors over
#    six years. DATA_DATE: the commit date of each section's CPU result lines (``git blame benchmark/README.md`` at
#    a4d2ea1). A row committed before the kernels hwsim's ncnn rules follow were merged was measured with other
#    kernels: fp32 before 2023-03-20 (ncnn dabc4c065 "arm convolution winograd unified elempack", 2023-03-09, and
#    c777bf09d "arm convolution sgemm unified elempack", 2023-03-20: convolution_3x3_winograd.h with the
#    test_prefer_winograd* choice and convolution_im2col_gemm.h), int8 before 2023-10-22 (c8662cce5 "int8 gemm
#    unified elempack", 2023-09-18, and 80b3b9c6f "int8 winograd unified elempack", 2023-10-22). Those rows are
#    "older ncnn": never fitted, reported apart, predicted with the current-kernel parameters.
# 2. Unsteady runs: benchncnn prints min / max / avg over loop_count runs; max > 1.5 x min says the runs were not
#    in one steady state (DVFS, throttling, another load), so avg is no steady-state latency. Excluded.
# (Already in ncnn_rows: a big.LITTLE mix of core types, threads above the cores of the row's type, unknown clock.)
KERNELS_SINCE = {"fp32": "2023-03-20", "int8": "2023-10-22"}
UNSTEADY_MAX_OVER_MIN = 1.5
DATA_DATE = {  # section header (prefix after "### ") -> commit date of its CPU result lines
    "NVIDIA Jetson AGX Orin": "2022-04-25", "Kirin 970": "2020-06-12",
    "Qualcomm MSM8994 Snapdragon 810": "2022-06-30", "Qualcomm MSM8916 Snapdragon 410": "2022-01-03",
    "Qualcomm Snapdragon 888": "2024-07-01", "Radxa Zero 3W": "2024-01-30", "Avaota Aim T527": "2023-09-19",
    "Khadas VIM3": "2022-01-03", "Rockchip RK3588 (Cortex-A76": "2022-05-19", "Station-M3/ROC-RK3588S-PC": "2023-08-25",
    "Station P2": "2021-08-06", "Rock3A": "2022-01-03", "Station-M2/ROC-RK3566-PC": "2023-08-25",
    "Rockchip RK3399": "2022-01-03", "MYIR RemiPi": "2024-01-29", "OrangePi Zero 2": "2024-01-12",
    "OrangePi4 LTS": "2023-05-04", "OrangePicm4": "2024-07-02", "OrangePi5,": "2023-05-04", "OrangePi5 Plus": "2024-07-01",
    "RDK X3 Module": "2023-08-01", "NanoPi R2S": "2021-08-11", "EAIDK 310": "2022-01-17",
    "NVIDIA Jetson TX2 NX": "2023-12-11", "Rockchip RK3588 (Quad Core": "2022-10-17", "AXERA AX630C": "2024-07-08",
    "Arduino UNO Q": "2025-12-15",
}


def data_date(section_header: str) -> str:
    """DATA_DATE of a row's section (a one-line error for a section the table does not date)."""
    head = section_header.removeprefix("### ")
    dates = [d for k, d in DATA_DATE.items() if head.startswith(k)]
    if len(dates) != 1:
        raise SystemExit(f"bench_arm_boards: no single DATA_DATE entry for section {head[:60]!r}")
    return dates[0]


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
    era: str = "current"  # "current" | "older ncnn" (comparability rule 1)
    data_date: str = ""
    soc: str = ""


def ncnn_rows(nets_available: set[str]) -> tuple[list[Row], list[dict]]:
    """The usable rows of ncnn_arm_boards.csv (module docstring), one per (board, core, net, precision, threads),
    and the rows excluded as unsteady (comparability rule 2) with the reason."""
    out, seen, excluded = [], set(), []
    for r in csv.DictReader(open(DATA / "ncnn_arm_boards.csv")):
        ct, model = r["core_type"], r["model"].replace("-int8", "_int8")
        if ct not in CORE_OF or "+" in r["cpu_cores_used"] or not r["clock_ghz"] or "/" in r["clock_ghz"]:
            continue
        precision = "int8" if model.endswith("_int8") else "fp32"
        net = NCNN_NETS.get(model.removesuffix("_int8"), (None, {}))[0]
        count = int(r["cpu_cores_used"].split("x")[0])
        threads = int(r["threads"])
        key = (r["board"], ct, net, precision, threads)
        if net not in nets_available or threads > count or key in seen:
            continue
        seen.add(key)
        date = data_date(r["section_header"])
        ratio = float(r["max_ms"]) / float(r["min_ms"])
        if ratio > UNSTEADY_MAX_OVER_MIN:
            excluded.append(dict(board=f"{r['board']} [{ct}]", net=net, precision=precision, threads=threads,
                                 reason=f"unsteady: max/min = {ratio:.2f} > {UNSTEADY_MAX_OVER_MIN}"))
            continue
        era = "current" if date >= KERNELS_SINCE[precision] else "older ncnn"
        out.append(Row(f"{r['board']} [{ct}]", CORE_OF[ct], float(r["clock_ghz"]) * 1e9, count,
                       SOC_DRAM_BW.get(r["soc"], DEFAULT_DRAM_BW), net, precision, threads, float(r["avg_ms"]),
                       era, date, r["soc"]))
    return out, excluded


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

        _GRAPHS[net] = fold_bn(mapping.trace(nets.get(net, **NET_KW.get(net, {})), nets.info(net).input_shape))
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
    t_c = (tm[:, 0] / eg + tm[:, 5] / (ew or eg) + tm[:, 1] / ed) * (1.0 + (n - 1) * (1.0 - pe)) / n
    body = np.where(tm[:, 3] > 0, t_c + tm[:, 2], np.maximum(t_c, tm[:, 2]))
    return float(body.sum() + (ls + (n - 1) * ts) * tm[:, 4].sum())


# ----------------------------------------------------------------------------- fitting
# parameter order: eff_gemm, eff_dw, layer_s, parallel_eff, thread_s, eff_wino (Cortex-A only: the M runtimes run
# no Winograd conv, eff_wino stays 0 = eff_gemm there)
LO, HI = np.array([0.02, 0.02, 0.0, 0.0, 0.0, 0.02]), np.array([1.0, 1.0, 2e-3, 1.0, 2e-4, 1.0])
THETA0 = np.array([0.5, 0.3, 2e-5, 0.8, 2e-6, 0.5])
SCALE = np.array([0.1, 0.1, 1e-5, 0.1, 1e-6, 0.1])


def fit(samples: list[tuple[np.ndarray, int, float]], parallel: float = THETA0[3], thread_s: float = 0.0) -> np.ndarray:
    """Parameters minimising Σ log(pred / measured)^2 over (terms, threads, measured s) samples. With fewer than two
    thread counts, parallel_eff and thread_s are not identifiable (a 4-thread-only board's level trades against its
    scaling): they are fixed to ``parallel`` and ``thread_s``."""
    multi = len({n for _, n, _ in samples}) > 1
    wino = any(tm[:, 5].any() for tm, _, _ in samples)
    free = [0, 1, 2] + ([3, 4] if multi else []) + ([5] if wino else [])
    def full(x):
        th = np.array([x[0], x[1], x[2], parallel, thread_s, 0.0])
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
def physical(board: str) -> str:
    """The physical board of a per-cluster board name ("OrangePi 5 [A76]" -> "OrangePi 5")."""
    return board.rsplit(" [", 1)[0]


def cortex_a(rows: list[Row]) -> tuple[dict, list[dict]]:
    """Fit every (core, precision) of ncnn on its current-ncnn boards (the shipped parameters) and predict every
    such board leave-one-board-out; a core × precision with no other board is predicted from the parameters fitted
    on every other physical board of that precision (all cores pooled: efficiencies are fractions of each core's own
    peak). Shipped parameters of a core × precision with no current-ncnn board are that pooled fit, marked so.
    Older-ncnn rows are predicted by the shipped parameters, never fitted. Returns (params, per-sample records)."""
    samples: dict[tuple[str, str], list] = defaultdict(list)  # (core, precision) -> [(row, terms)] of current rows
    older = []
    for r in rows:
        (samples[(r.core, r.precision)] if r.era == "current" else older).append((r, terms(board_spec(r), r.net)))

    def xy(pairs):
        return [(tm, r.threads, r.ms / 1e3) for r, tm in pairs]

    pooled_all = {p: [(r, tm) for (_, q), v in samples.items() if q == p for r, tm in v] for p in ("fp32", "int8")}
    pooled = {p: fit(xy(v)) for p, v in pooled_all.items() if v}

    def fit_core(pairs, pool):  # a core's fit; its thread scaling from ``pool`` when its rows cannot tell (fit)
        return fit(xy(pairs), parallel=pool[3], thread_s=pool[4])

    final = {(c, p): fit_core(v, pooled[p]) for (c, p), v in samples.items()}
    fitted = {(c, "ncnn", p): theta_dict(final[(c, p)], list({r.board for r, _ in v})) for (c, p), v in samples.items()}
    for c in sorted(set(CORE_OF.values())):
        for p in pooled:
            if (c, "ncnn", p) not in fitted:
                fitted[(c, "ncnn", p)] = {**theta_dict(pooled[p], []), "fitted_on": (
                    f"pooled over cores (no current-ncnn {c} {p} board): "
                    + ", ".join(sorted({r.board for r, _ in pooled_all[p]})))}
    records = []
    for (c, p), v in samples.items():
        boards = sorted({r.board for r, _ in v})
        for b in boards:
            train = [(r, tm) for r, tm in v if r.board != b]
            pool = fit(xy([(r, tm) for r, tm in pooled_all[p] if physical(r.board) != physical(b)]))
            if train:
                theta, how = fit_core(train, pool), f"LOBO: fitted on the other {len(boards) - 1} {c} boards"
            else:
                theta, how = pool, f"only {c} board: pooled fit on the other boards' {p} rows"
            records += [dict(board=b, core=c, precision=p, net=r.net, threads=r.threads, measured_ms=r.ms,
                             fitted_ms=1e3 * predict(tm, final[(c, p)], r.threads), era=r.era, data_date=r.data_date,
                             predicted_ms=1e3 * predict(tm, theta, r.threads), predicted_how=how)
                        for r, tm in v if r.board == b]
    for r, tm in older:
        theta = final.get((r.core, r.precision), pooled[r.precision])
        ms = 1e3 * predict(tm, theta, r.threads)
        records.append(dict(board=r.board, core=r.core, precision=r.precision, net=r.net, threads=r.threads,
                            measured_ms=r.ms, fitted_ms=ms, predicted_ms=ms, era=r.era, data_date=r.data_date,
                            predicted_how="older ncnn: shipped (current-kernel) parameters, never fitted on it"))
    return fitted, records


def board_table(records: list[dict], key: str) -> list[dict]:
    """Per board, core, precision and thread count: median and max |error| % of ``key`` vs measured."""
    groups = defaultdict(list)
    for r in records:
        k = (r["board"], r["core"], r["precision"], r["threads"], r.get("era", ""))
        groups[k].append(abs(100.0 * (r[key] / r["measured_ms"] - 1)))
    return [dict(board=b, core=c, precision=p, threads=n, rows=len(e), median_abs_err_pct=round(statistics.median(e), 1),
                 max_abs_err_pct=round(max(e), 1), era=era) for (b, c, p, n, era), e in sorted(groups.items())]


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


def same_soc_floor(rows: list[Row], era: str | None = None) -> dict:
    """How far boards with the same SoC, core type and stated clock disagree on the same (net, precision, threads):
    per pair of physical boards, |log(a / b)|. A model that sees only SoC, core and clock predicts one latency for
    both, so at best the geometric mean: an error of exp(|log(a / b)| / 2) − 1 on each: a floor on any such model."""
    groups = defaultdict(dict)
    for r in rows:
        if era is None or r.era == era:
            soc = r.soc.removesuffix("S")  # RK3588S: the RK3588's CPU clusters, caches and memory interface, fewer I/O
            groups[(soc, r.core, r.clock_hz, r.net, r.precision, r.threads)][physical(r.board)] = r.ms
    d = [abs(math.log(a / b)) for g in groups.values() for i, a in enumerate(g.values()) for b in list(g.values())[i + 1:]]
    pairs = sorted({(k[0], k[1]) for k, g in groups.items() if len(g) > 1})
    return {} if not d else dict(
        pairs=len(d), socs=", ".join(f"{s} {c}" for s, c in pairs),
        median_disagreement_pct=round(100 * (math.exp(statistics.median(d)) - 1), 1),
        max_disagreement_pct=round(100 * (math.exp(max(d)) - 1), 1),
        median_floor_err_pct=round(100 * (math.exp(statistics.median(d) / 2) - 1), 1))


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


BEFORE = {  # (rows, median, max, over 40 %) of the earlier runs of this bench, for the record
    "d9ecb79: torchvision/megvii topologies, all rows": (971, 18.0, 152.1, 213),
    "ncnn topologies (layout='ncnn'), all rows": (971, 17.4, 148.4, 213),
}


def markdown(res: dict) -> str:
    def table(rows: list[dict], cols: list[str]) -> list[str]:
        head = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return head + ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows] + [""]

    cols = ["board", "core", "precision", "threads", "rows", "median_abs_err_pct", "max_abs_err_pct"]
    md = ["# Runtime models on Arm boards: fitted vs predicted", "",
          "Written by `benchmarks/bench_arm_boards.py`. Cortex-A rows: ncnn benchncnn, current-ncnn rows only",
          "(comparability rules below; older-ncnn rows are reported apart and never fitted). *Fitted*: the shipped",
          "parameters (fitted on all current boards of the core) on their own rows. *Predicted*: each board from",
          "parameters fitted without it (leave one board out; a core's only board from the parameters fitted on every",
          "other physical board of its precision, all cores pooled). Raspberry Pi boards: predicted from their presets",
          "with the shipped parameters, never fitted. Targets: median |error| <= 15 %, none over 40 % on predicted",
          "boards; Cortex-M energy within 30 %.", "",
          "## Summary", ""]
    md += table([dict(set=k, **v) for k, v in res["summary"].items()],
                ["set", "rows", "median_abs_err_pct", "max_abs_err_pct", "within_15_pct", "over_40_pct"])
    md += ["## Before / after (Cortex-A ncnn, boards left out)", "",
           "| run | rows | median_abs_err_pct | max_abs_err_pct | over_40_pct |", "|---|---|---|---|---|"]
    md += [f"| {k} | {' | '.join(str(x) for x in v)} |" for k, v in BEFORE.items()]
    cur = res["summary"]["cortex-a ncnn, predicted (LOBO)"]
    md += [f"| this run: current-ncnn rows only (rule 1), unsteady rows out (rule 2) | {cur['rows']} | "
           f"{cur['median_abs_err_pct']} | {cur['max_abs_err_pct']} | {cur['over_40_pct']} |", ""]
    md += ["## Comparability rules (fixed before fitting; see the bench's docstring and DATA_DATE)", "",
           f"1. ncnn version: fp32 rows whose README lines were committed before {KERNELS_SINCE['fp32']}, int8 rows",
           f"   before {KERNELS_SINCE['int8']}, ran kernels older than the ones hwsim's ncnn rules follow: never fitted,",
           "   reported apart (\"older ncnn\").",
           f"2. Unsteady runs (benchncnn max > {UNSTEADY_MAX_OVER_MIN} x min): excluded, listed below.", ""]
    md += table(res["excluded"], ["board", "net", "precision", "threads", "reason"])
    md += ["## Floor: boards with the same SoC, core and clock", "",
           "Median disagreement between two boards with the same SoC, core type and stated clock on the same net,",
           "precision and thread count, and the error a model that only sees SoC, core and clock makes at best",
           "(the geometric mean of the two).", ""]
    md += table([dict(set=k, **v) for k, v in res["same_soc_floor"].items()],
                ["set", "pairs", "median_disagreement_pct", "max_disagreement_pct", "median_floor_err_pct", "socs"])
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
    md += ["## Raspberry Pi boards: predicted from their presets, never fitted", "",
           "Measured: ncnn's benchmark/README.md (a4d2ea1), see PI_BOARDS in the bench.", ""]
    md += table(board_table(res["raspberry_pi"], "predicted_ms"), cols + ["era"])
    md += ["## Older-ncnn boards (rule 1: never fitted; shipped parameters)", ""]
    md += table(res["cortex_a"]["older_boards"], cols)
    return "\n".join(md)


# The Raspberry Pi boards: not in ncnn_arm_boards.csv, so never fitted. Their benchncnn results in ncnn's
# benchmark/README.md at a4d2ea1 (sections "Raspberry Pi 3 Model B+", "Raspberry Pi 4 Model B", "Raspberry Pi 5 ...
# Cortex-A76", "Raspberry Pi Zero 2 W"; CPU runs, gpu_device = -1, powersave = 0; the date is the ``git blame`` date of
# the result lines, for comparability rule 1) are the check of the presets' predictions: label -> (preset, changes
# (the clock of the section header: the Pi 4's 1.8 GHz firmware clock, the Zero 2 W's 1.0 GHz), date,
# "model/threads/min/max/avg ..." in ms).
PI_BOARDS = {
    "Raspberry Pi 3B+ (cpu/cortex-a53)": ("cpu/cortex-a53", {}, "2023-06-23", (
        "squeezenet/4/84.74/85.60/85.22 squeezenet_int8/4/74.48/74.80/74.68 mobilenet/4/107.84/110.13/108.66 "
        "mobilenet_int8/4/66.91/67.12/67.03 mobilenet_v2/4/110.64/112.73/111.68 mobilenet_v3/4/85.78/86.74/86.44 "
        "shufflenet/4/58.38/60.32/59.33 shufflenet_v2/4/46.76/47.53/47.19 mnasnet/4/95.53/95.88/95.78 "
        "proxylessnasnet/4/102.24/105.58/103.38 efficientnet_b0/4/134.87/136.98/135.86 "
        "regnety_400m/4/118.60/119.51/119.03 googlenet/4/223.78/224.85/224.22 "
        "googlenet_int8/4/188.23/190.15/189.21 resnet18/4/270.86/272.66/271.93 "
        "resnet18_int8/4/159.57/160.39/160.07 alexnet/4/157.79/160.77/159.09 resnet50/4/583.57/591.41/587.42 "
        "resnet50_int8/4/383.96/401.37/391.87 squeezenet/1/125.34/125.81/125.58 "
        "squeezenet_int8/1/135.56/136.34/135.98 mobilenet/1/204.62/207.06/205.65 "
        "mobilenet_int8/1/181.34/182.46/181.91 mobilenet_v2/1/158.69/158.94/158.80 "
        "mobilenet_v3/1/127.13/127.31/127.23 shufflenet/1/84.64/85.29/84.89 shufflenet_v2/1/74.28/74.64/74.44 "
        "mnasnet/1/148.12/148.65/148.42 proxylessnasnet/1/199.56/201.99/200.42 "
        "efficientnet_b0/1/240.94/241.75/241.27 regnety_400m/1/186.89/187.08/187.01 "
        "googlenet/1/450.64/450.96/450.79 googlenet_int8/1/424.66/426.83/425.78 resnet18/1/379.21/380.01/379.57 "
        "resnet18_int8/1/312.23/313.21/312.68 alexnet/1/270.13/270.88/270.55 resnet50/1/977.51/981.89/979.75 "
        "resnet50_int8/1/890.77/896.89/893.83")),
    "Raspberry Pi 4 (cpu/cortex-a72 at 1.8 GHz)": ("cpu/cortex-a72", {"clock_hz": 1.8e9}, "2023-06-15", (
        "squeezenet/4/46.28/46.91/46.65 squeezenet_int8/4/42.18/44.98/42.59 mobilenet/4/60.74/61.79/61.17 "
        "mobilenet_int8/4/34.19/34.55/34.37 mobilenet_v2/4/61.63/62.02/61.88 mobilenet_v3/4/47.08/48.40/47.53 "
        "shufflenet/4/32.91/33.30/33.09 shufflenet_v2/4/24.37/24.73/24.56 mnasnet/4/51.80/52.14/51.98 "
        "proxylessnasnet/4/53.02/53.58/53.32 efficientnet_b0/4/73.92/74.44/74.19 regnety_400m/4/65.27/66.12/65.70 "
        "googlenet/4/113.74/115.14/114.35 googlenet_int8/4/100.87/101.71/101.25 resnet18/4/122.27/125.39/123.12 "
        "resnet18_int8/4/82.19/94.12/83.92 alexnet/4/75.75/78.08/76.40 vgg16/4/541.66/552.56/547.09 "
        "vgg16_int8/4/391.44/395.73/394.23 resnet50/4/261.90/263.91/262.83 resnet50_int8/4/195.60/198.08/196.65 "
        "squeezenet/1/73.35/75.10/73.96 squeezenet_int8/1/69.17/69.66/69.42 mobilenet/1/123.76/125.35/124.32 "
        "mobilenet_int8/1/84.66/85.24/84.82 mobilenet_v2/1/92.98/94.05/93.48 mobilenet_v3/1/72.48/73.14/72.81 "
        "shufflenet/1/47.17/47.83/47.51 shufflenet_v2/1/41.62/42.60/42.12 mnasnet/1/83.60/84.35/83.98 "
        "proxylessnasnet/1/98.48/99.33/98.78 efficientnet_b0/1/129.45/130.02/129.73 "
        "regnety_400m/1/105.39/106.03/105.70 googlenet/1/235.38/236.34/235.94 "
        "googlenet_int8/1/209.63/210.39/210.00 resnet18/1/190.80/191.43/191.10 "
        "resnet18_int8/1/157.92/158.97/158.50 alexnet/1/139.34/139.44/139.40 vgg16/1/1066.58/1079.30/1071.85 "
        "vgg16_int8/1/866.15/873.75/869.84 resnet50/1/533.15/535.12/534.11 resnet50_int8/1/423.72/424.24/423.96")),
    "Raspberry Pi 5 (cpu/cortex-a76)": ("cpu/cortex-a76", {}, "2023-12-12", (
        "squeezenet/4/6.74/8.16/7.38 squeezenet_int8/4/6.97/7.67/7.21 mobilenet/4/9.00/72.98/33.88 "
        "mobilenet_int8/4/8.68/8.80/8.74 mobilenet_v2/4/10.46/10.63/10.52 mobilenet_v3/4/7.30/7.44/7.35 "
        "shufflenet/4/4.14/4.18/4.16 shufflenet_v2/4/3.37/3.41/3.39 mnasnet/4/6.83/8.55/7.10 "
        "proxylessnasnet/4/7.85/7.97/7.88 efficientnet_b0/4/12.28/12.37/12.33 regnety_400m/4/10.93/11.07/10.99 "
        "googlenet/4/25.13/25.47/25.35 googlenet_int8/4/24.00/24.23/24.12 resnet18/4/19.84/20.19/19.96 "
        "resnet18_int8/4/16.68/16.83/16.74 alexnet/4/21.21/21.54/21.36 vgg16/4/127.75/134.00/129.24 "
        "vgg16_int8/4/106.39/110.66/107.01 resnet50/4/45.94/46.54/46.21 resnet50_int8/4/40.16/42.58/40.75 "
        "squeezenet/1/11.77/12.18/11.87 squeezenet_int8/1/11.67/11.98/11.82 mobilenet/1/20.24/20.59/20.30 "
        "mobilenet_int8/1/14.38/14.51/14.44 mobilenet_v2/1/16.21/16.49/16.38 mobilenet_v3/1/11.64/12.12/11.80 "
        "shufflenet/1/7.17/7.24/7.20 shufflenet_v2/1/7.07/7.21/7.14 mnasnet/1/12.93/13.03/12.99 "
        "proxylessnasnet/1/15.72/15.80/15.74 efficientnet_b0/1/24.12/24.53/24.20 regnety_400m/1/16.41/16.66/16.49 "
        "googlenet/1/48.62/48.87/48.71 googlenet_int8/1/49.07/49.26/49.15 resnet18/1/29.54/30.17/29.68 "
        "resnet18_int8/1/36.30/36.55/36.42 alexnet/1/35.24/35.86/35.62 vgg16/1/188.84/190.87/189.63 "
        "vgg16_int8/1/272.27/274.15/273.10 resnet50/1/89.04/89.87/89.43 resnet50_int8/1/80.00/80.50/80.16")),
    "Raspberry Pi Zero 2 W (cpu/cortex-a53 at 1.0 GHz)": ("cpu/cortex-a53", {"clock_hz": 1.0e9}, "2022-01-17", (
        "squeezenet/4/119.52/120.29/119.93 squeezenet_int8/4/96.32/96.96/96.55 mobilenet/4/162.60/165.49/163.19 "
        "mobilenet_int8/4/90.78/91.39/91.03 mobilenet_v2/4/145.71/148.83/147.39 "
        "mobilenet_v3/4/113.89/151.95/119.04 shufflenet/4/72.72/73.27/72.96 shufflenet_v2/4/63.64/64.50/64.13 "
        "mnasnet/4/126.07/126.93/126.53 proxylessnasnet/4/139.90/140.84/140.35 "
        "efficientnet_b0/4/201.88/202.55/202.14 regnety_400m/4/156.49/157.47/156.96 "
        "googlenet/4/323.74/324.90/324.45 googlenet_int8/4/250.86/252.82/251.63 resnet18/4/351.37/355.67/353.45 "
        "resnet18_int8/4/194.83/196.68/195.51 alexnet/4/271.18/273.53/272.18 resnet50/4/777.44/797.47/782.63 "
        "resnet50_int8/4/496.78/498.86/497.57 squeezenet/1/240.53/241.07/240.77 "
        "squeezenet_int8/1/212.63/213.23/212.94 mobilenet/1/393.79/394.04/393.94 "
        "mobilenet_int8/1/286.58/286.95/286.75 mobilenet_v2/1/273.97/274.51/274.23 "
        "mobilenet_v3/1/233.77/234.59/234.20 shufflenet/1/133.05/133.36/133.23 "
        "shufflenet_v2/1/128.86/129.47/129.18 mnasnet/1/265.70/266.17/265.93 "
        "proxylessnasnet/1/329.78/330.54/330.13 efficientnet_b0/1/518.42/519.38/519.00 "
        "regnety_400m/1/329.53/330.44/329.87 googlenet/1/780.05/780.63/780.39 "
        "googlenet_int8/1/663.83/664.43/664.15 resnet18/1/653.62/657.59/654.69 "
        "resnet18_int8/1/479.03/479.72/479.40 alexnet/1/687.99/690.34/689.15 resnet50/1/1800.97/1806.11/1802.79 "
        "resnet50_int8/1/1311.68/1314.56/1313.15")),
}


def raspberry_pi(fitted: dict) -> list[dict]:
    """Each Raspberry Pi measurement against the prediction of its preset with the shipped (fitted) parameters;
    the comparability rules apply as to the fitted boards (``era``, unsteady rows left out)."""
    from hwsim.specs import load_preset

    out = []
    for label, (preset, changes, date, text) in PI_BOARDS.items():
        for item in text.split():
            model, n, lo, hi, avg = item.split("/")
            prec = "int8" if model.endswith("_int8") else "fp32"
            net, n = NCNN_NETS[model.removesuffix("_int8")][0], int(n)
            if float(hi) > UNSTEADY_MAX_OVER_MIN * float(lo):
                continue
            spec = replace(load_preset(preset), runtime="ncnn", precision=prec, cores=n, **changes)
            v = fitted[(spec.core, "ncnn", prec)]
            theta = np.array([v["eff_gemm"], v["eff_dw"], v["layer_s"], v["parallel_eff"], v["thread_s"],
                              v["eff_wino"]])
            ms = 1e3 * predict(terms(spec, net), theta, n)
            out.append(dict(board=label, core=spec.core, precision=prec, threads=n, net=net, measured_ms=float(avg),
                            predicted_ms=ms, fitted_ms=ms, data_date=date,
                            era="current" if date >= KERNELS_SINCE[prec] else "older ncnn"))
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
    a_rows, a_excluded = ncnn_rows(available)
    a_fit, a_all = cortex_a(a_rows)
    a_rec = [r for r in a_all if r["era"] == "current"]
    a_old = [r for r in a_all if r["era"] != "current"]
    m_fit, m_rec = cortex_m(mlperf_rows(available))
    fitted = transfer({**a_fit, **m_fit})

    def energy(recs):
        return [dict(measured_ms=r["measured_energy_uj"], predicted_ms=r["predicted_energy_uj"]) for r in recs
                if r["predicted_energy_uj"] and "autoencoder" not in r["net"]]

    def stack(r):  # the deployment stack over the kernels: "microTVM", "ONNC", "X-CUBE-AI v10.2", ...
        return r["version"].split("|")[0].strip()

    def sel(recs, **kw):
        return [r for r in recs if all(r[k] == v for k, v in kw.items())]

    pi_rows = raspberry_pi(fitted)
    pi_cur = [r for r in pi_rows if r["era"] == "current"]
    res = {
        "summary": {
            "raspberry pi (never fitted), current ncnn, predicted": summary(pi_cur, "predicted_ms"),
            **{f"raspberry pi {p}, {n} thread(s), predicted": summary(sel(pi_cur, precision=p, threads=n),
                                                                      "predicted_ms")
               for p in ("fp32", "int8") for n in (1, 4)},
            "raspberry pi older-ncnn rows, predicted": summary([r for r in pi_rows if r["era"] != "current"],
                                                               "predicted_ms"),
            "cortex-a ncnn, predicted (LOBO)": summary(a_rec, "predicted_ms"),
            "cortex-a ncnn, fitted (in-sample)": summary(a_rec, "fitted_ms"),
            **{f"cortex-a ncnn {p}, {n} thread(s), predicted": summary(sel(a_rec, precision=p, threads=n),
                                                                        "predicted_ms")
               for p in ("fp32", "int8") for n in (1, 4)},
            "cortex-a ncnn fp32, predicted": summary(sel(a_rec, precision="fp32"), "predicted_ms"),
            "cortex-a ncnn int8, predicted": summary(sel(a_rec, precision="int8"), "predicted_ms"),
            "cortex-a older-ncnn rows (never fitted), predicted": summary(a_old, "predicted_ms"),
            "cortex-m latency, predicted (LOBO)": summary(m_rec, "predicted_ms"),
            "cortex-m latency, fitted (in-sample)": summary(m_rec, "fitted_ms"),
            "cortex-m energy (ic/kws/vww), predicted": summary(energy(m_rec), "predicted_ms"),
            **{f"cortex-m {rt} latency, predicted": summary(sel(m_rec, runtime=rt), "predicted_ms")
               for rt in sorted({r["runtime"] for r in m_rec})},
            **{f"cortex-m {rt} energy, predicted": summary(energy(sel(m_rec, runtime=rt)), "predicted_ms")
               for rt in sorted({r["runtime"] for r in m_rec})},
            **{f"cortex-m stack {st}: latency, predicted": summary([r for r in m_rec if stack(r) == st], "predicted_ms")
               for st in sorted({stack(r) for r in m_rec})},
        },
        "same_soc_floor": {"all usable rows": same_soc_floor(a_rows), "current-ncnn rows": same_soc_floor(a_rows, "current"),
                           "older-ncnn rows": same_soc_floor(a_rows, "older ncnn")},
        "excluded": a_excluded,
        "cortex_a_error_split": {"predicted (LOBO)": offset_split(a_rec, "predicted_ms"),
                                 "fitted (in-sample)": offset_split(a_rec, "fitted_ms")},
        "cortex_a": {"predicted_boards": board_table(a_rec, "predicted_ms"),
                     "fitted_boards": board_table(a_rec, "fitted_ms"), "older_boards": board_table(a_old, "predicted_ms"),
                     "rows": a_all},
        "cortex_m": {"rows": m_rec},
        "fitted": {"/".join(k): v for k, v in sorted(fitted.items())},
        "raspberry_pi": pi_rows,
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
