"""Validation-page sections on Arm CPUs: the runtime models (ncnn / XNNPACK on Cortex-A, CMSIS-NN / X-CUBE-AI on
Cortex-M) against published board measurements, and binary nets against Larq Compute Engine's latencies."""
from __future__ import annotations

import statistics
from collections import defaultdict

from _sections_common import _details, _err_pct, _f, _json, _missing, _table, _verdict

ARM_TARGET_MEDIAN, ARM_TARGET_MAX, ARM_TARGET_ENERGY = 15.0, 40.0, 30.0  # bench_arm_boards.py's stated targets, %


def _kind(set_name: str) -> str:
    """Whether a summary set of arm_boards.json is fitted (in-sample) or predicted (left out / never fitted)."""
    if "fitted (in-sample)" in set_name:
        return "fitted (in-sample)"
    never = ("never fitted", "raspberry pi", "older-ncnn")
    return "never fitted (predicted)" if any(w in set_name for w in never) else "predicted (board left out)"


def _board_rows(rows: list[dict]) -> list[list]:
    """Per (board, precision, threads): rows, median and max |error| of predicted_ms (the Raspberry Pi rows)."""
    g = defaultdict(list)
    for r in rows:
        g[(r["board"], r["precision"], r["threads"], r.get("era", ""))].append(_err_pct(r["measured_ms"], r["predicted_ms"]))
    return [[b, p, t, e, len(v), _f(statistics.median(abs(x) for x in v), ".1f"), _f(max(abs(x) for x in v), ".1f")]
            for (b, p, t, e), v in sorted(g.items())]


def _targets(s: dict) -> str:
    """The bench's targets against the sets they apply to, met or missed."""
    out = []
    a = s.get("cortex-a ncnn, predicted (LOBO)")
    if a:
        over = a.get("over_40_pct", 0)
        out.append(f"Cortex-A boards left out: median {_verdict(a['median_abs_err_pct'], ARM_TARGET_MEDIAN)}; "
                   f"{over} of {a['rows']} rows over {ARM_TARGET_MAX:g} % (target none: {'met' if not over else '**missed**'})")
    pi = s.get("raspberry pi (never fitted), current ncnn, predicted")
    if pi:
        out.append(f"Raspberry Pi boards (never fitted): median {_verdict(pi['median_abs_err_pct'], ARM_TARGET_MEDIAN)}, "
                   f"{pi.get('over_40_pct', '?')} of {pi['rows']} rows over {ARM_TARGET_MAX:g} %")
    m = s.get("cortex-m latency, predicted (LOBO)")
    if m:
        out.append(f"Cortex-M latency, boards left out: median {_verdict(m['median_abs_err_pct'], ARM_TARGET_MEDIAN)}")
    e = s.get("cortex-m energy (ic/kws/vww), predicted")
    if e:
        ok = e["max_abs_err_pct"] <= ARM_TARGET_ENERGY
        out.append(f"Cortex-M energy: median {e['median_abs_err_pct']:.1f} %, largest {e['max_abs_err_pct']:.1f} % "
                   f"(target: every row within {ARM_TARGET_ENERGY:g} %: {'met' if ok else '**missed**'})")
    return "".join(f"- {x}\n" for x in out)


def arm_boards() -> str:
    d = _json("arm_boards.json")
    if d is None:
        return _missing("arm_boards.json", "bench_arm_boards.py")
    s = d.get("summary", {})
    text = ("hwsim's runtime models on published measurements of Arm boards (the boards named in each table; the "
            "timings are theirs, not this machine's): ncnn's `benchncnn` (Tencent/ncnn benchmark/README.md at a4d2ea1; "
            "its benchmark topologies, `layout=\"ncnn\"` where the zoo default differs) on Cortex-A boards, fp32 and "
            "int8, 1-12 threads; MLPerf Tiny (closed division) latency and energy on Cortex-M boards (CMSIS-NN, "
            "X-CUBE-AI). Per core × runtime × precision six parameters (GEMM / depthwise / Winograd efficiency, "
            "per-layer and per-thread overheads, per-thread contention; the split of each layer over threads follows ncnn's parallel loops, not fitted) are **fitted** by least squares on the boards "
            "of that core (pooled over the other cores where a core has no board measured with current kernels; the "
            "last table names the boards of each fit). *Fitted (in-sample)*: the shipped parameters on their own training rows. *Predicted*: each "
            "board from parameters fitted without it (leave one board out; a core's only board from its nearest "
            "core's parameters). The Raspberry Pi boards are never fitted: their presets predict them. Rows measured "
            "with ncnn kernels older than the ones hwsim models, and unsteady runs (benchncnn max > 1.5 × min), are "
            "kept out of the fits (`benchmarks/results/arm_boards.json`, full tables in `arm_boards.md`, "
            "`python benchmarks/bench_arm_boards.py`; the model: [embedded CPUs](targets/cpu.md)). Error = predicted / "
            "measured − 1.\n\n" + _targets(s) + "\n")
    text += _table(["set", "fitted or predicted", "rows", "median abs error %", "max abs error %", "within 15 % (% of rows)",
                    "over 40 % (rows)"],
                   [[k, _kind(k), v.get("rows", "–"), _f(v.get("median_abs_err_pct"), ".1f"), _f(v.get("max_abs_err_pct"), ".1f"),
                     _f(v.get("within_15_pct"), ".1f"), v.get("over_40_pct", "–")] for k, v in s.items()])
    split = d.get("cortex_a_error_split", {})
    if split:
        text += ("\nWhere the Cortex-A error sits: per (board, precision, threads) the median predicted / measured ratio "
                 "(the board's level) and the nets' spread around it:\n\n"
                 + _table(["set", "groups", "median board-level error %", "max board-level error %",
                           "median within-board error %"],
                          [[k, v.get("groups"), _f(v.get("median_board_level_err_pct"), ".1f"),
                            _f(v.get("max_board_level_err_pct"), ".1f"), _f(v.get("median_within_board_err_pct"), ".1f")]
                           for k, v in split.items()]))
    floor = d.get("same_soc_floor", {})
    if floor:
        text += ("\nThe floor: two boards with the same SoC, core and clock on the same net, precision and threads "
                 "disagree by this much, and a model that sees only SoC, core and clock errs at best by the floor:\n\n"
                 + _table(["rows", "pairs", "median disagreement %", "max disagreement %", "median floor error %"],
                          [[k, v.get("pairs"), _f(v.get("median_disagreement_pct"), ".1f"),
                            _f(v.get("max_disagreement_pct"), ".1f"), _f(v.get("median_floor_err_pct"), ".1f")]
                           for k, v in floor.items()]))
    pi = d.get("raspberry_pi", [])
    if pi:
        text += ("\nRaspberry Pi boards, predicted by the `cpu/cortex-a*` presets and never fitted (ncnn's README at "
                 "a4d2ea1; *era*: whether the row ran the ncnn kernels hwsim models):\n\n"
                 + _table(["board (preset)", "precision", "threads", "era", "nets", "median abs error %",
                           "max abs error %"], _board_rows(pi)))
    return text + _arm_details(d)


def _arm_details(d: dict) -> str:
    a, out = d.get("cortex_a", {}), ""
    fitted = {(r["board"], r["precision"], r["threads"]): r for r in a.get("fitted_boards", [])}
    rows = []
    for r in a.get("predicted_boards", []):
        f = fitted.get((r["board"], r["precision"], r["threads"]), {})
        rows.append([r["board"], r["core"], r["precision"], r["threads"], r["rows"], _f(r["median_abs_err_pct"], ".1f"),
                     _f(r["max_abs_err_pct"], ".1f"), _f(f.get("median_abs_err_pct"), ".1f"), _f(f.get("max_abs_err_pct"), ".1f")])
    if rows:
        out += _details("Cortex-A boards: predicted (left out) and fitted (in-sample)", _table(
            ["board", "core", "precision", "threads", "nets", "predicted: median abs error %", "max %",
             "fitted: median abs error %", "max %"], rows))
    old = a.get("older_boards", [])
    if old:
        out += _details("Cortex-A boards measured with older ncnn kernels (never fitted; shipped parameters)", _table(
            ["board", "core", "precision", "threads", "nets", "median abs error %", "max abs error %"],
            [[r["board"], r["core"], r["precision"], r["threads"], r["rows"], _f(r["median_abs_err_pct"], ".1f"),
              _f(r["max_abs_err_pct"], ".1f")] for r in old]))
    m = d.get("cortex_m", {}).get("rows", [])
    if m:
        out += _details("Cortex-M boards: MLPerf Tiny latency and energy (energy = predicted latency × the submission's "
                        "average power on its autoencoder row, fitted on that row)", _table(
            ["board", "core", "runtime", "net", "measured ms", "predicted ms", "error %", "fitted ms", "measured µJ",
             "predicted µJ", "how predicted"],
            [[r["board"], r["core"], r["runtime"], r["net"], _f(r["measured_ms"], ".3g"), _f(r["predicted_ms"], ".3g"),
              _f(_err_pct(r["measured_ms"], r["predicted_ms"]), "+.0f"), _f(r.get("fitted_ms"), ".3g"),
              _f(r.get("measured_energy_uj"), ".4g"), _f(r.get("predicted_energy_uj"), ".4g"), r.get("predicted_how", "")]
             for r in m]))
    ex = d.get("excluded", [])
    if ex:
        out += _details(f"Runs left out as unsteady ({len(ex)})", _table(
            ["board", "net", "precision", "threads", "reason"],
            [[r["board"], r["net"], r["precision"], r["threads"], r["reason"]] for r in ex]))
    fit = d.get("fitted", {})
    if fit:
        out += _details("The shipped parameter sets and the boards each was fitted on", _table(
            ["core/runtime/precision", "GEMM eff.", "depthwise eff.", "Winograd eff.", "contention", "fitted on"],
            [[k, _f(v.get("eff_gemm"), ".3g"), _f(v.get("eff_dw"), ".3g"), _f(v.get("eff_wino"), ".3g"),
              _f(v.get("contention"), ".3g"), str(v.get("fitted_on", "")).replace("|", "/")[:160]]
             for k, v in fit.items()]))
    return out


def lce() -> str:
    d = _json("lce.json")
    if d is None:
        return _missing("lce.json", "bench_lce.py")
    rows = [[r["net"], r["device"], r["threads"], r["engine"], _f(r["published_ms"], ".3g"), _f(r["predicted_ms"], ".3g"),
             _f(r.get("binary_ms"), ".3g"), _f(r.get("float_ms"), ".3g"), _f(r["error_pct"], "+.1f")] for r in d["rows"]]
    summ = [[k, v.get("rows"), v.get("within_25pct"), _f(v.get("median_abs_error_pct"), ".1f")]
            for k, v in d.get("summary", {}).items()]
    sources = sorted({r["source"] for r in d["rows"] if r.get("source")})
    note = f" {d['note']}" if d.get("note") else ""
    return ("Binary nets (QuickNet, Bi-Real Net 18) on Arm CPUs: hwsim's predicted latency against the latencies "
            "Larq Compute Engine (and daBNN) publish, measured on the devices named (`rpi4`: Raspberry Pi 4, Cortex-A72; "
            "`pixel1`: Google Pixel 1, Kryo, which hwsim approximates by its Cortex-A72 record). Fitted: "
            f"{d.get('fitted', 'not recorded')}; no published latency below was used to fit anything.{note} "
            "(`benchmarks/results/lce.json`, `python benchmarks/bench_lce.py`; the model: "
            "[binary nets on embedded CPUs](targets/cpu-binary.md))\n\n"
            + _table(["net", "device", "threads", "engine", "published ms", "predicted ms", "binary layers ms",
                      "float layers ms", "error %"], rows)
            + "\n" + _table(["group", "rows", "within 25 %", "median abs error %"], summ)
            + ("\nSources: " + "; ".join(sources) + ".\n" if sources else ""))
