"""Error summaries and the markdown report of ``bench_arm_boards.py`` (benchmarks/results/arm_boards.md)."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict

from _arm_board_data import KERNELS_SINCE, UNSTEADY_MAX_OVER_MIN, Row, physical


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


BEFORE = {  # (rows, median, max, over 40 %) of the earlier runs of this bench, for the record
    "d9ecb79: torchvision/megvii topologies, all rows": (971, 18.0, 152.1, 213),
    "ncnn topologies (layout='ncnn'), all rows": (971, 17.4, 148.4, 213),
    "one Amdahl parallel fraction per core x precision, layer_s in seconds; current-ncnn rows": (256, 19.0, 243.9, 50),
    "threads split as ncnn's loops + contention, layer_cycles; current-ncnn rows": (256, 18.9, 268.4, 45),
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
          "parameters fitted without it (leave one board out; a core's only int8 board from its fp32 fit times the",
          "int8/fp32 efficiency ratio of the cores with both, another core's only board from the parameters fitted on",
          "every other physical board of its precision, all cores pooled). Raspberry Pi boards: predicted from their presets",
          "with the shipped parameters, never fitted. Targets: median |error| <= 15 %, none over 40 % on predicted",
          "boards; Cortex-M energy within 30 %.", "",
          "## Summary", ""]
    md += table([dict(set=k, **v) for k, v in res["summary"].items()],
                ["set", "rows", "median_abs_err_pct", "max_abs_err_pct", "within_15_pct", "over_40_pct"])
    md += ["## Before / after (Cortex-A ncnn, boards left out)", "",
           "| run | rows | median_abs_err_pct | max_abs_err_pct | over_40_pct |", "|---|---|---|---|---|"]
    md += [f"| {k} | {' | '.join(str(x) for x in v)} |" for k, v in BEFORE.items()]
    cur = res["summary"]["cortex-a ncnn, predicted (LOBO)"]
    md += [f"| this run: + SoC caches from device trees, a core's only int8 board from its fp32 fit | {cur['rows']} | "
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
