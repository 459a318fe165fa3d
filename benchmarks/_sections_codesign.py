"""Validation-page sections on the co-design loops (sweep speed, NetCut) and the compression passes."""
from __future__ import annotations

import shutil

from _sections_common import DOCS, RES, _csv, _f, _json, _load, _machine, _missing, _table


def sweeps() -> str:
    s = _json("sweep_speed.json")
    n = _json("sweep_netcut.json")
    out = []
    if s is None:
        out.append(_missing("sweep_speed.json", "bench_sweep.py"))
    else:
        lines = [f"- {k.replace('_', ' ')}: {v['configs_per_s']:.0f} configurations/s"
                 + (f" (workers {v['workers']})" if "workers" in v else "")
                 + (f"; warm cluster {v['configs_per_s_warm']:.0f}/s, cluster start {v['cluster_start_s']:.1f} s"
                    if "configs_per_s_warm" in v else "")
                 + (f" — {v['note']}" if v.get("note") else "")
                 for k, v in s.items() if isinstance(v, dict) and "configs_per_s" in v]
        mach = _machine(s)
        out.append(f"Cost-only sweep of {s['net']} over {s['points']} `{s['base']}` configurations"
                   f"{f' ({mach})' if mach else ''}{_load(s)} (`benchmarks/results/sweep_speed.json`):\n\n" + "\n".join(lines) + "\n")
    if n is None:
        out.append(_missing("sweep_netcut.json", "bench_sweep_netcut.py"))
    else:
        rows = [[p, _f(v["deadline_s"], ".3g", 1e3), f"{v['trns_meeting_deadline']}/{v['trns']}", v["netcut_pick"],
                 _f(v["netcut_pick_accuracy"], ".3f"), _f(v["netcut_exploration_s"], ".2f"), _f(v["train_all_s"], ".2f"),
                 _f(v["speedup_vs_train_all"], ".1f")] for p, v in n["presets"].items()]
        out.append(f"NetCut on {n['task']} (`benchmarks/results/sweep_netcut.json`):\n\n"
                   + _table(["preset", "deadline ms", "TRNs meeting", "pick", "accuracy", "exploration s",
                             "fine-tune all s", "speed-up"], rows))
    return "\n".join(out)


def compress() -> str:
    rows = _csv("compress_digits.csv")
    zoo_rows = _csv("compress_zoo.csv")
    out = []
    if rows is None:
        out.append(_missing("compress_digits.csv", "compress_digits.py"))
    else:
        t = [[r["method"], r["setting"], r["params"], r["macs"], _f(r["acc_compressed"], ".3f"),
              _f(r["acc_finetuned"], ".3f"), _f(r["cpu_m7_latency_us"], ".0f"), _f(r["imc_energy_uj"], ".3f"),
              _f(r["xnor_latency_us"], ".3g")] for r in rows]
        plot = ""
        if (RES / "compress_digits.png").is_file():  # the docs site shows its own copy of the plot
            (DOCS / "assets").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(RES / "compress_digits.png", DOCS / "assets" / "compress_digits.png")
            plot = "\n![accuracy vs MACs vs latency](assets/compress_digits.png)\n"
        out.append("Compression passes on scikit-learn's digits (`benchmarks/results/compress_digits.csv`, plot "
                   "`benchmarks/results/compress_digits.png`):\n\n"
                   + _table(["method", "setting", "params", "MACs", "acc. compressed", "acc. fine-tuned",
                             "Cortex-M7 µs", "IMC µJ", "XNOR µs"], t) + plot)
    if zoo_rows is not None:
        t = [[r["net"], f"{int(r['params']):,} → {int(r['params_pruned']):,}",
              f"{_f(r['macs'], '.1f', 1e-6)} → {_f(r['macs_pruned'], '.1f', 1e-6)} M",
              f"{_f(r['a72_latency_us'], '.0f')} → {_f(r['a72_latency_pruned_us'], '.0f')}",
              _f(r["max_rel_err_vs_mask"], ".1e")] for r in zoo_rows]
        out.append("Structured (filter) pruning at ratio 0.5 on zoo nets at 32×32: physically smaller, outputs equal to "
                   "the masked original (`benchmarks/results/compress_zoo.csv`):\n\n"
                   + _table(["net", "params", "MACs", "Cortex-A72 µs", "max rel. error vs mask"], t))
    return "\n".join(out)
