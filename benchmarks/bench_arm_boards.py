"""Fit hwsim's runtime models (ncnn on Cortex-A, CMSIS-NN / X-CUBE-AI on Cortex-M) on published board measurements
and validate them on the boards left out.

Data (benchmarks/data, with sources in each row):
* ``ncnn_arm_boards.csv``: ncnn benchncnn (Tencent/ncnn benchmark/README.md), average ms per inference, 1-12
  threads, fp32 and ``*_int8`` models. Rows used: one core type per row (big.LITTLE mixes left out), a core
  hwsim models, a model whose zoo net exists (NCNN_NETS), threads <= the cores of that type.
* ``mlperf_tiny_cortex_m.csv``: MLPerf Tiny closed division, latency and energy per inference.

Comparability rules (DATA_DATE, KERNELS_SINCE, UNSTEADY_MAX_OVER_MIN in _arm_board_data.py; fixed from the data's own columns and
ncnn's history): Cortex-A rows measured before the ncnn kernels hwsim's rules follow are "older ncnn" (never fitted,
reported apart); unsteady runs (max > 1.5 x min) are excluded and listed.

Method, per core × runtime × precision: the free parameters of :class:`hwsim.cpu.runtime.RuntimeParams` minimise
the squared log error over the current-ncnn rows of the fitting boards (scipy least_squares, soft-L1). Validation is
leave one board out (LOBO): each board is predicted by the parameters fitted on the *other* boards of its core; a
core's only int8 board from its fp32 fit times the int8/fp32 efficiency ratio of the cores with both; another core
with a single board from the parameters fitted on every other physical board of its precision (all cores pooled); a
core whose rows have one thread count takes its thread scaling from that pooled fit. The final
parameters (all boards) go to ``hwsim/cpu/runtime/fitted.py`` (``--write``) with the boards they were fitted on.
Never fitted: the Raspberry Pi boards (not in the file; their rows in ncnn's benchmark/README.md, PI_BOARDS, check
the presets' predictions) and every Cortex-M7 board (none in the data).

Files: this one (entry point, Cortex-A and the Raspberry Pi check), _arm_model.py (per-layer terms, the model's
formula, the fit), _arm_board_data.py (transcribed data, comparability rules), _arm_mcu.py (Cortex-M), _arm_report.py
(error summaries, markdown).

Usage::

    python benchmarks/bench_arm_boards.py [--write] [--nets resnet18,mobilenetv2] [--out benchmarks/results/arm_boards]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from _arm_board_data import (
    CORE_OF,
    KERNELS_SINCE,
    NCNN_NETS,
    NEAREST,
    PI_BOARDS,
    ROOT,
    UNSTEADY_MAX_OVER_MIN,
    Row,
    caches,
    data_date,  # noqa: F401  (re-exported: tests/test_cpu_arm.py)
    ncnn_rows,
    physical,
)
from _arm_mcu import cortex_m, mlperf_rows
from _arm_model import (
    _GRAPHS,  # noqa: F401  (re-exported: tests/test_cpu_arm.py writes into it)
    fit,
    predict,
    terms,
    theta_dict,
)
from _arm_report import board_table, markdown, offset_split, same_soc_floor, summary

from hwsim.cpu.arm import core as arm_core
from hwsim.cpu.spec import CPUSpec

FITTED_PY = ROOT / "hwsim" / "cpu" / "runtime" / "fitted.py"


def board_spec(row: Row, runtime: str = "ncnn") -> CPUSpec:
    """A CPUSpec of the row's board: its core, clock, thread count, the core's caches and the SoC's memory."""
    c = arm_core(row.core)
    l1, l2, per_core, l3 = caches(row.soc, row.core)
    return CPUSpec(name=row.board[:60], clock_hz=row.clock_hz, cores=row.threads, board_cores=row.board_cores,
                   simd_bits=c.simd_bits, fma_per_cycle=c.fp32_fma_per_cycle / (c.simd_bits // 32), l1d_bytes=l1,
                   l2_bytes=l2, l2_per_core=per_core, l3_bytes=l3, dram_bw_bytes_s=row.dram_bw,
                   runtime=runtime, precision=row.precision, core=row.core)


# ----------------------------------------------------------------------------- Cortex-A: ncnn
def cortex_a(rows: list[Row]) -> tuple[dict, list[dict]]:
    """Fit every (core, precision) of ncnn on its current-ncnn boards (the shipped parameters) and predict every
    such board leave-one-board-out; a core's only int8 board is predicted from the core's fp32 fit on its other
    boards (:func:`int8_from_fp32`), any other core × precision with no other board from the parameters fitted on
    every other physical board of that precision (all cores pooled: efficiencies are fractions of each core's own
    peak). Shipped parameters of a core × precision with no current-ncnn board come the same way, marked so.
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
        return fit(xy(pairs), contention=pool[3], thread_s=pool[4])

    final = {(c, p): fit_core(v, pooled[p]) for (c, p), v in samples.items()}
    fitted = {(c, "ncnn", p): theta_dict(final[(c, p)], list({r.board for r, _ in v})) for (c, p), v in samples.items()}
    for c in sorted(set(CORE_OF.values())):
        for p in pooled:
            if (c, "ncnn", p) in fitted:
                continue
            via = int8_from_fp32(samples, c, pooled[p]) if p == "int8" else None
            if via is not None:
                fitted[(c, "ncnn", p)] = {**theta_dict(via[0], []), "fitted_on": f"no current-ncnn {c} int8 board: {via[1]}"}
            else:
                fitted[(c, "ncnn", p)] = {**theta_dict(pooled[p], []), "fitted_on": (
                    f"pooled over cores (no current-ncnn {c} {p} board): "
                    + ", ".join(sorted({r.board for r, _ in pooled_all[p]})))}
    records = []
    for (c, p), v in samples.items():
        boards = sorted({r.board for r, _ in v})
        for b in boards:
            train = [(r, tm) for r, tm in v if r.board != b]
            pool = fit(xy([(r, tm) for r, tm in pooled_all[p] if physical(r.board) != physical(b)]))
            via = None if train or p != "int8" else int8_from_fp32(samples, c, pool, exclude=physical(b))
            if train:
                theta, how = fit_core(train, pool), f"LOBO: fitted on the other {len(boards) - 1} {c} boards"
            elif via is not None:
                theta, how = via[0], f"only {c} int8 board: {via[1]}"
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


EFFICIENCIES = [0, 1, 5]  # eff_gemm, eff_dw, eff_wino in the parameter vector (_arm_model.LO)


def int8_from_fp32(samples: dict, core: str, pool: np.ndarray, exclude: str = "") -> tuple[np.ndarray, str] | None:
    """int8 parameters of a core with no int8 board of its own (none but ``exclude``): the core's fp32 efficiencies
    (fitted on its fp32 boards but ``exclude``) times the median int8 / fp32 efficiency ratio of the cores that have
    both (their boards but ``exclude``); fixed costs and thread scaling from ``pool`` (int8, all cores). None when the
    core has no fp32 board or no core has both. Efficiencies are fractions of each core's own peak (fp32 FMLA, int8
    SDOT / SMLAL rate), so the ratio says how much of its int8 peak a runtime keeps for the fp32 share it keeps."""
    def rows(c, p):
        return [(tm, r.threads, r.ms / 1e3) for r, tm in samples.get((c, p), []) if physical(r.board) != exclude]

    fp = rows(core, "fp32")
    both = [c for (c, p) in samples if p == "int8" and c != core and rows(c, "int8") and rows(c, "fp32")]
    if not fp or not both:
        return None
    ratio = np.median([fit(rows(c, "int8"), pool[3], pool[4])[EFFICIENCIES]
                       / fit(rows(c, "fp32"), pool[3], pool[4])[EFFICIENCIES] for c in both], axis=0)
    theta = pool.copy()
    theta[EFFICIENCIES] = np.clip(fit(fp, pool[3], pool[4])[EFFICIENCIES] * ratio, 0.02, 1.0)
    boards = sorted({r.board for r, _ in samples[(core, "fp32")] if physical(r.board) != exclude})
    return theta, (f"its fp32 fit ({', '.join(boards)}) x the median int8/fp32 efficiency ratio of "
                   f"{', '.join(sorted(both))}; fixed costs and thread scaling pooled over the int8 boards")


# ----------------------------------------------------------------------------- outputs
def write_fitted(fitted: dict) -> None:
    """Rewrite hwsim/cpu/runtime/fitted.py with the all-board fits (each entry names its boards)."""
    lines = ['"""Fitted runtime parameters per (core, runtime, precision), written by',
             "``python benchmarks/bench_arm_boards.py --write`` (do not edit by hand). Each entry was fitted on the",
             "boards in its ``fitted_on`` (ncnn benchncnn rows of benchmarks/data/ncnn_arm_boards.csv, MLPerf Tiny rows of",
             "benchmarks/data/mlperf_tiny_cortex_m.csv); the errors on boards left out are in",
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
            theta = np.array([v["eff_gemm"], v["eff_dw"], v["layer_cycles"], v["contention"], v["thread_s"],
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
