"""Regenerate the validation page and the README's headline results from the files in ``benchmarks/results/``.

    python benchmarks/make_readme.py          # rewrites docs/validation.md between the results markers
                                              # and README.md between the headline markers

Every number in those sections comes from a results file written by a benchmark script; this script
only formats them. A missing file is reported as "not measured" with the command that makes it.
The plot of the compression results is copied into ``docs/assets/`` so the docs site can show it.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
VALIDATION = DOCS / "validation.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"  # docs/validation.md: the generated tables
HEAD_BEGIN, HEAD_END = "<!-- headline:begin -->", "<!-- headline:end -->"  # README.md: the headline bullets
HOST_PRESET = ROOT / "hwsim" / "presets" / "cpu" / "host.yaml"


def _json(name: str):
    p = RES / name
    return json.loads(p.read_text()) if p.is_file() else None


def _csv(name: str) -> list[dict] | None:
    p = RES / name
    if not p.is_file():
        return None
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def _missing(name: str, script: str) -> str:
    return f"_Not measured yet: run `python benchmarks/{script}` (writes `benchmarks/results/{name}`)._\n"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _f(v, fmt=".3g", scale=1.0):
    try:
        x = float(v) * scale
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else format(x, fmt)


def _cpus(d: dict | None) -> int | None:
    """The CPU count a results file records (``cpus``, ``cpu_count``, ``machine.cpus``, ``load_avg_1min.cpus``)."""
    if not d:
        return None
    for v in (d.get("cpus"), d.get("cpu_count"), (d.get("machine") or {}).get("cpus") if isinstance(d.get("machine"), dict)
              else None, (d.get("load_avg_1min") or {}).get("cpus") if isinstance(d.get("load_avg_1min"), dict) else None):
        if v is not None:
            return int(v)
    return None


def _load(d: dict | None, key: str = "load_avg_1min") -> str:
    if not d:
        return ""
    cpus = _cpus(d)
    on = f" on {cpus} cores" if cpus else ""
    for k in (key, "loadavg_1min_at_start", "load_average_1min", "loadavg_before"):
        v = d.get(k)
        if isinstance(v, dict):
            v = v.get("before", v.get("value", v.get("1min")))
        if isinstance(v, (list, tuple)):
            v = v[0]
        if v is not None:
            return f" (1-min load average during the run: {float(v):.1f}{on})"
    return ""


def _machine(d: dict | None) -> str:
    """``measured on <the machine the results file names>``: processor, CPU count, Python and torch as recorded."""
    if not d:
        return ""
    m = d.get("machine")
    info = dict(m) if isinstance(m, dict) else ({"processor": m} if isinstance(m, str) else {})
    for k in ("python", "torch", "numba"):
        if k in d and isinstance(d[k], str):
            info.setdefault(k, d[k])
    proc = info.get("processor") or ("x86_64" if "x86_64" in str(info.get("platform", "")) else "")
    cpus = _cpus(d)
    parts = []
    if proc or cpus:
        what = " ".join(x for x in (f"{cpus}-CPU" if cpus else "", proc, "machine") if x)
        parts.append(("an " if what[0] in "aeiouxAEIOUX" else "a ") + what)
    names = {"python": "Python", "torch": "torch", "numba": "Numba"}
    parts += [f"{names[k]} {info[k]}" for k in names if info.get(k)]
    return f"measured on {', '.join(parts)}" if parts else ""


def _host_machine() -> str:
    """The machine the calibrated ``cpu/host`` preset names in its header (its ``# machine:`` line)."""
    if not HOST_PRESET.is_file():
        return "the machine hwsim/presets/cpu/host.yaml was calibrated on"
    for ln in HOST_PRESET.read_text().splitlines():
        if ln.startswith("# machine:"):
            text = ln.split(":", 1)[1].split(", torch")[0].replace(" (/proc/cpuinfo)", "").strip()
            return f"{text} (the machine `hwsim/presets/cpu/host.yaml` names)"
    return "the machine hwsim/presets/cpu/host.yaml was calibrated on"


def _slug(title: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs (Python-Markdown's toc) make it for an ASCII title."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


# ----------------------------------------------------------------------------- sections
def zoo() -> str:
    rows = _csv("zoo_counts.csv")
    if rows is None:
        return _missing("zoo_counts.csv", "zoo_counts.py")
    t = []
    for r in rows:
        pp, pm = r.get("published_params"), r.get("published_macs")
        t.append([r["name"] + (f" ({r['config']})" if r.get("config") else ""), r["input_shape"],
                  _f(r["params"], ".3f", 1e-6), _f(pp, ".3f", 1e-6) if pp else "–",
                  (r.get("params_diff_pct") or "–"),
                  _f(r["macs"], ".1f", 1e-6), _f(pm, ".1f", 1e-6) if pm else "–", (r.get("macs_diff_pct") or "–"),
                  (r.get("counts_source") or "")[:90]])
    notes = [f"- **{r['name']}**: {r['notes']}" for r in rows if r.get("notes")]
    return ("Parameters and MACs (conv + linear multiply-accumulates per image) counted on the traced IR, "
            "next to the published figures (`benchmarks/results/zoo_counts.csv`, `python benchmarks/zoo_counts.py`):\n\n"
            + _table(["net", "input", "params (M)", "published (M)", "Δ %", "MACs (M)", "published (M)", "Δ %",
                      "published in"], t)
            + ("\n<details markdown=\"1\"><summary>Notes on differences and conventions</summary>\n\n" + "\n".join(notes)
               + "\n\n</details>\n" if notes else ""))


def import_coverage() -> str:
    d = _json("import_coverage.json")
    if d is None:
        return _missing("import_coverage.json", "bench_import_coverage.py")
    m, sm, rows = d["meta"], d["summary"], d["rows"]
    text = (f"Every classification builder of torchvision {m['torchvision']} and {sum(r['source'] == 'timm' for r in rows)} "
            f"timm {m['timm']} models (efficient CNNs and small ViTs), random weights, default input size, batch 1 "
            f"(`benchmarks/results/import_coverage.json`, `python benchmarks/bench_import_coverage.py`): "
            f"**{sm['torch_imports_exactly']} of {sm['models']}** import from torch with outputs on `cpu/cortex-a72` "
            f"within {m['rel_tolerance']:g} relative of torch's (torchvision {sm['torchvision_imports_exactly']}, "
            f"timm {sm['timm_imports_exactly']})")
    if "onnx_imports_exactly" in sm:
        text += f", {sm['onnx_imports_exactly']} of {sm['models']} through ONNX (`torch.onnx.export`, dynamo=False)"
    worst = max((r.get("rel_error", 0.0) for r in rows), default=0.0)
    text += f"; **{sm['wrong_answers']} ran with a wrong answer**; largest relative error of an import {worst:.1e}."
    refused = [[r["source"], r["model"], r.get("reason", "")[:160].replace("|", "/")] for r in rows
               if r["torch"] != "imports"]
    onnx_refused = [[r["source"], r["model"], r.get("onnx_reason", "")[:160].replace("|", "/")] for r in rows
                    if r.get("onnx") not in (None, "imports")]
    out = text + ((" The others are refused with the op and module that hwsim cannot map:\n\n"
                   + _table(["source", "model", "torch import refused because"], refused)) if refused else "\n")
    if onnx_refused:
        out += ("\n<details markdown=\"1\"><summary>ONNX imports refused</summary>\n\n"
                + _table(["source", "model", "ONNX import refused because"], onnx_refused) + "\n</details>\n")
    return out + "\nThe full table, with each model's front end (torch.fx or torch.export) and error: " \
        "`benchmarks/results/import_coverage.md`.\n"


def conv_speed() -> str:
    d = _json("conv_vs_torch.json")
    if d is None:
        return _missing("conv_vs_torch.json", "bench_conv.py")
    rows = [[L["name"], f"{L['cin']}→{L['cout']} k{L['k']} s{L['stride']} @{L['hw']}", _f(L["torch_gflops"], ".0f"),
             _f(L["hwsim_gflops"], ".0f"), _f(L["ratio"], ".2f")] for L in d["layers"]]
    return (f"Numba fp32 conv vs torch `F.conv2d` (oneDNN), single thread, every ResNet-18 layer at 224×224 "
            f"({d['statistic']}; {_machine(d)}){_load(d)}: geometric-mean ratio **{d['geomean_ratio']:.2f}×** torch's throughput, "
            f"lowest {d['min_ratio']:.2f}× ({d['min_ratio_layer']}); on the minimum times "
            f"{d['geomean_ratio_of_min_times']:.2f}× (lowest {d['min_ratio_of_min_times']:.2f}×). "
            f"Depthwise layers of MobileNetV2: geomean {d.get('extra_depthwise_geomean_ratio', float('nan')):.2f}×. "
            "(`benchmarks/results/conv_vs_torch.json`)\n\n"
            + _table(["layer", "shape", "torch GFLOP/s", "hwsim GFLOP/s", "ratio"], rows))


def _placement_note(runs: list[dict], hi: int, split_factor: float | None) -> str:
    """What the core-to-core round trips of the stability processes say (each run's ``threads_close``, set by the
    benchmark with hwsim.cpu.cores.threads_close: no round trip above ``split_factor`` x the shortest)."""
    if not runs or split_factor is None or any("threads_close" not in r for r in runs):
        return ""
    groups = {True: [], False: []}
    for r in runs:
        groups[r["threads_close"]].append(r)

    def rng(rs: list[dict], key: str, scale: float, unit: str) -> str:
        keys = ("round_trip_before_s", "round_trip_after_s") if key == "round_trip" else (key,)
        vals = [r[k] * scale for r in rs for k in keys]
        return f"{min(vals):.3g}-{max(vals):.3g} {unit}"

    close, apart = groups[True], groups[False]
    note = (f" Where the hypervisor had put the two virtual CPUs, by a core-to-core cache-line round trip "
            f"(`hwsim.cpu.cores`, timed before and after each process): {rng(close, 'round_trip', 1e9, 'ns')} "
            f"in {len(close)} processes")
    if apart:
        note += (f", {rng(apart, 'round_trip', 1e9, 'ns')} (threads on different chiplets) in {len(apart)}; "
                 f"ResNet-20 at {hi} threads ran {rng(close, f'resnet20_t{hi}', 1e3, 'ms')} in the first, "
                 f"{rng(apart, f'resnet20_t{hi}', 1e3, 'ms')} in the second, and the probe conv "
                 f"{rng(close, f'conv12x20_36x36_t{hi}', 1e6, 'µs')} vs {rng(apart, f'conv12x20_36x36_t{hi}', 1e6, 'µs')}"
                 ": a parallel region's hand-offs cross the chiplets. Calibration sets aside all-thread processes "
                 "whose threads ran apart; the validation reports both (the threads-close columns).")
    else:
        note += f" (none with its threads apart: round trips above {split_factor:g}× the shortest)."
    return note


def cpu_vs_host() -> str:
    d = _json("cpu_model_vs_host.json")
    rows = _csv("cpu_model_vs_host.csv")
    if d is None or rows is None:
        return _missing("cpu_model_vs_host.json", "bench_cpu_vs_host.py")
    summ = []
    for k, v in d.get("summary", {}).items():
        summ.append([k.replace("threads_", ""), v["nets"], _f(100 * v["median_abs_error"], ".1f"),
                     _f(100 * v["max_abs_error"], ".0f"), v.get("worst_net", "–"), v.get("within_10pct", "–"),
                     v.get("over_25pct", "–"), _f(100 * v.get("median_abs_error_vs_quietest_pass", float("nan")), ".1f"),
                     _f(100 * v.get("max_abs_error_vs_quietest_pass", float("nan")), ".0f"),
                     _f(100 * v.get("median_pass_spread", float("nan")), ".1f"),
                     _f(100 * v.get("max_pass_spread", float("nan")), ".0f"),
                     _f(100 * v["median_abs_error_threads_close"], ".1f") if "median_abs_error_threads_close" in v else "–",
                     _f(100 * v["max_abs_error_threads_close"], ".0f") if "max_abs_error_threads_close" in v else "–",
                     v.get("over_25pct_threads_close", "–")])
    one = sorted((r for r in rows if r["threads"] == "1"), key=lambda r: float(r["error"]))[:4]
    under = ", ".join(f"{r['net']} ({100 * float(r['error']):+.0f} %)" for r in one)
    by_net: dict[str, dict] = {}
    for r in rows:
        by_net.setdefault(r["net"], {"input": r["input_shape"]})[r["threads"]] = r
    t = []
    for net, v in by_net.items():
        cells = [net, v["input"]]
        for th in ("1", "2"):
            r = v.get(th)
            cells += ([_f(r["measured_s"], ".3g", 1e3), _f(r["predicted_s"], ".3g", 1e3),
                       _f(100 * float(r["error"]), "+.0f")] if r else ["–"] * 3)
        cells.append(_f(v["2"].get("error_threads_close"), "+.0f", 100) if "2" in v else "–")
        t.append(cells)
    glibc = _json("cpu_model_vs_host_glibc_defaults.json")
    glibc_rows = _csv("cpu_model_vs_host_glibc_defaults.csv") or []
    main_1t = {r["net"]: float(r["measured_s"]) for r in rows if r["threads"] == "1"}
    glibc_note = ""
    if glibc is not None and glibc_rows:
        pairs = [f"{r['net']} {float(r['measured_s']) * 1e3:.1f} ms ({100 * (float(r['measured_s']) / main_1t[r['net']] - 1):+.0f} %)"
                 for r in glibc_rows if r["threads"] == "1" and r["net"] in main_1t]
        glibc_note = (" With glibc's defaults instead (`--glibc-defaults`, "
                      "`benchmarks/results/cpu_model_vs_host_glibc_defaults.csv`), one thread: " + ", ".join(pairs)
                      + " against the figures below: nets whose feature maps are large pay the page faults of "
                        "buffers freed back to the OS and touched again on the next inference, which the model does not count.")
    stab = _json("host_stability.json")
    stab_note = ""
    if stab is not None:
        c = stab["cases"]
        hi = max(stab["threads"])

        def span(key: str, scale: float = 1e3, unit: str = "ms") -> str:
            v = c[key]
            return f"{v['min_s'] * scale:.3g}-{v['max_s'] * scale:.3g} {unit}"

        runs = stab.get("runs", [])
        slower = sum(r[f"resnet20_t{hi}"] > r["resnet20_t1"] for r in runs)
        stab_note = (f" How far the machine itself moves (`benchmarks/bench_host_stability.py`, "
                     f"{stab['processes']} fresh processes {stab['gap_s']:g} s apart): ResNet-20 at one thread "
                     f"{span('resnet20_t1')}, at {hi} threads {span(f'resnet20_t{hi}')}; a 12→20-channel im2col conv "
                     f"on 36×36 at one thread {span('conv12x20_36x36_t1', 1e6, 'µs')}, at {hi} threads "
                     f"{span(f'conv12x20_36x36_t{hi}', 1e6, 'µs')}"
                     + (f" (ResNet-20 ran slower on {hi} threads than on one in {slower} of the {len(runs)} processes)"
                        if slower else "") + "." + _placement_note(runs, hi, stab.get("split_factor")))
    apart_note = ""
    many = {k: v for k, v in d.get("summary", {}).items() if "passes" in v and "passes_threads_apart" in v}
    if many and d.get("round_trip_ns"):
        rt = d["round_trip_ns"]
        apart_note = (" In this validation " + "; ".join(
            f"{v['passes_threads_apart']} of the {v['passes']} {k.replace('threads_', '')}-thread runs (net × pass)"
            for k, v in many.items())
            + f" ran with the threads apart (a round trip above {rt['apart_above']:.0f} ns, {rt['split_factor']:g}× the "
            f"shortest; {rt['min']:.0f}-{rt['max']:.0f} ns over the run): the threads-close columns leave them out.")
    probe_note = ""
    if d.get("probe"):
        header = [ln for ln in (ROOT / "hwsim/presets/cpu/host.yaml").read_text().splitlines()
                  if ln.startswith("# machine-state probe")]
        during = ", ".join(f"{t} thread{'s' if t != '1' else ''} {v['median_s'] * 1e6:.0f} µs "
                           f"({v['min_s'] * 1e6:.0f}-{v['max_s'] * 1e6:.0f})" for t, v in d["probe"].items())
        probe_note = (" The same probe layer timed beside every net during this validation (median, range over "
                      f"the nets' processes): {during}; at calibration (preset header): "
                      + (header[0].split(":", 1)[1].strip() if header else "not recorded") + ".")
    return ("The `cpu/host` preset (fitted by `hwsim calibrate` on synthetic layers only) predicting torch's "
            f"latency of every fp32 zoo net, measured on {_host_machine()} "
            f"on {d.get('date_utc', 'an unrecorded date')} UTC with torch {d.get('torch', '?')} "
            "(`benchmarks/results/cpu_model_vs_host.csv`)"
            f"{_load(d)}. Each net runs in a fresh Python process holding it alone, as a deployed net does (timed "
            "inside one process beside every other net and graph, nets of many small layers ran 10-20 % slower: "
            "Python's cyclic collector, triggered by each inference's allocations, walks every live object); "
            "figure = median of the repeats after warm-up, pooled over three passes through the zoo. The model "
            "assumes the steady state of an allocator that keeps freed buffers (jemalloc / tcmalloc, as PyTorch's CPU "
            "performance guide recommends, or glibc with `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` raised, "
            f"which calibration and the benchmark set).{glibc_note} Error = predicted/measured − 1. That machine is a shared virtual machine "
            "whose cores have slow spells seconds long: the spread columns give how much a net's median moved between "
            "the three passes, and the quietest-pass columns the error against the median of each net's least "
            f"disturbed pass; the 2-thread figures move most, with where the hypervisor puts the two virtual CPUs.{stab_note}"
            f"{apart_note}{probe_note} "
            f"Most under-predicted at one thread: {under}.\n\n"
            + _table(["threads", "nets", "median abs error %", "max abs error %", "worst net", "within 10 %",
                      "over 25 %", "quietest pass: median abs error %", "max %", "median pass-to-pass spread %",
                      "max spread %", "threads close: median abs error %", "max %", "over 25 %"], summ)
            + "\n<details markdown=\"1\"><summary>Per-net table</summary>\n\n"
            + _table(["net", "input", "1 thread: measured ms", "predicted ms", "error %", "2 threads: measured ms",
                      "predicted ms", "error %", "2 threads, threads close: error %"], t) + "\n</details>\n")


def imc() -> str:
    d = _json("imc_bench.json")
    z = _json("imc_zigzag.json")
    out = []
    if d is None:
        out.append(_missing("imc_bench.json", "bench_imc.py"))
    else:
        iv = d.get("isaac_validation", {})
        comps = iv.get("components", {})
        if comps:
            rows = [[k, _f(v.get("model_mw"), ".3g"), _f(v.get("paper_mw"), ".3g"), _f(v.get("gap_pct"), "+.1f")]
                    for k, v in comps.items()]
            rows.append(["**tile**", _f(iv.get("tile_power_mw"), ".1f"), _f(iv.get("paper_tile_power_mw"), ".0f"),
                         _f(iv.get("tile_power_gap_pct"), "+.1f")])
            out.append("ISAAC tile power from the `imc/isaac` preset's per-component constants vs the paper's "
                       "Table (ISCA'16) (`benchmarks/results/imc_bench.json`):\n\n"
                       + _table(["component", "model mW", "ISAAC mW", "gap %"], rows))
        c = d.get("cost", {})
        f = d.get("functional", {})
        lines = []
        for mode, v in c.items():
            if isinstance(v, dict) and "configs_per_s" in v:
                lines.append(f"- cost-only ResNet-18 evaluation, `mode={mode!r}`: **{v['configs_per_s']:.0f} "
                             f"configurations/s** ({c.get('points')} points)")
        for k, v in f.items():
            if isinstance(v, dict) and "x_torch" in v:
                lines.append(f"- functional ResNet-18 224×224, {k.replace('_', ' ')}: {v['seconds']:.2f} s = "
                             f"**{v['x_torch']:.1f}× torch fp32** time, relative RMS error vs fp32 "
                             f"{v.get('rel_rms_error_vs_fp32', float('nan')):.3g}")
        mach = _machine(d)
        out.append("IMC simulator speed, single thread" + (f" ({mach})" if mach else "") + _load(d) + ":\n\n"
                   + "\n".join(lines) + "\n")
    if z is None:
        out.append(_missing("imc_zigzag.json", "bench_imc_zigzag.py"))
    else:
        cfgs = z["configs"]
        names = list(cfgs)
        figures = list(cfgs[names[0]]["figures"])
        rows = []
        for fig in figures:
            row = [fig]
            for n in names:
                v = cfgs[n]["figures"][fig]
                row += [_f(v["zigzag"], ".3g"), _f(v["hwsim"], ".3g"), _f(v["gap_pct"], "+.0f")]
            rows.append(row)
        head = ["figure (s or J)"] + [h for n in names for h in (f"{n}: ZigZag", "hwsim", "gap %")]
        speed = ", ".join(f"{cfgs[n]['speedup_vs_zigzag']:.3g}× ({n})" for n in names)
        out.append(f"{z['network']} vs ZigZag's IMC cost model on the closest equivalent configurations "
                   f"(`benchmarks/results/imc_zigzag.json`): ZigZag's AIMC example as shipped (`stock`: "
                   f"{cfgs[names[0]]['activation_buffer_bytes'] // 1024} KiB of SRAM for activations, so feature "
                   "maps go through DRAM) and with every activation on chip (`onchip-activations`). "
                   f"hwsim evaluates faster by {speed} ({z.get('note', '')}).\n\n"
                   + _table(head, rows)
                   + "\nAssumptions that differ:\n" + "\n".join(f"- {a}" for a in z.get("assumptions", [])) + "\n")
    return "\n".join(out)


def xnor() -> str:
    v = _json("xnor_validation.json")
    g = _json("xnor_gemm_speed.json")
    out = []
    if v is None:
        out.append(_missing("xnor_validation.json", "bench_xnor.py"))
    else:
        rows = []
        for c in v["cases"]:
            pub = c.get("published", {})
            rows.append([c["design"], c["net"], c["preset"], c["bottleneck_cycles"], pub.get("bottleneck_cycles", "–"),
                         _f(c["fps"], ".4g"), _f(pub.get("fps"), ".4g"),
                         _f(c.get("latency_finn_sum_s"), ".3g", 1e6), _f(pub.get("latency_s"), ".3g", 1e6),
                         "yes" if c.get("match") else "**no**"])
        out.append("FINN-style dataflow model vs published foldings (`benchmarks/results/xnor_validation.json`):\n\n"
                   + _table(["design", "net", "preset", "bottleneck cycles", "published", "FPS", "published",
                             "latency µs (FINN sum)", "published", "match"], rows))
        extra = {k: val for k, val in v.items() if k != "cases"}
        if extra:
            out.append("Resource estimates vs BNN-PYNQ builds: see `benchmarks/results/xnor_validation.json` "
                       f"({', '.join(extra)}).\n")
    if g is None:
        out.append(_missing("xnor_gemm_speed.json", "bench_xnor_gemm.py"))
    else:
        rows = [[f"{r['M']}×{r['N']}×{r['K']}", _f(r["xnor_gops"], ".0f"), _f(r["torch_fp32_gflops"], ".0f"),
                 _f(r["speedup_vs_fp32"], ".1f"), _f(r.get("torch_int8_gops"), ".0f"), _f(r.get("speedup_vs_int8"), ".1f")]
                for r in g["results"]]
        out.append("xnor-popcount GEMM (Numba, `llvm.ctpop` → `vpopcntq`) vs torch fp32 GEMM and torch int8 "
                   f"`_int_mm` of the same logical shape, single thread ({_machine(g)}){_load(g)} "
                   "(`benchmarks/results/xnor_gemm_speed.json`):\n\n"
                   + _table(["M×N×K", "xnor GOP/s", "torch fp32 GFLOP/s", "× fp32", "torch int8 GOP/s", "× int8"],
                            rows))
    return "\n".join(out)


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


SECTIONS = [
    ("Import coverage: torchvision and timm models", import_coverage),
    ("Zoo: counts against the publications", zoo),
    ("Numba kernels: speed against torch", conv_speed),
    ("Embedded-CPU model against a measured host", cpu_vs_host),
    ("IMC accelerator: validation and speed", imc),
    ("FPGA XNOR engine: validation and speed", xnor),
    ("Co-design loops", sweeps),
    ("Compression", compress),
]


def render() -> str:
    parts = []
    for title, fn in SECTIONS:
        parts.append(f"## {title}\n\n{fn().rstrip()}\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- README headline results
def _link(title: str) -> str:
    return f"[details](docs/validation.md#{_slug(title)})"


def _title(fn) -> str:
    return next(t for t, f in SECTIONS if f is fn)


def _not_yet(name: str, script: str) -> str:
    return f"not measured yet (`python benchmarks/{script}` writes `benchmarks/results/{name}`)"


def headline() -> str:
    """4-6 bullets for the README, every number read from a results file; each links to its validation section."""
    out = []
    d = _json("import_coverage.json")
    if d is None:
        text = _not_yet("import_coverage.json", "bench_import_coverage.py")
    else:
        m, sm = d["meta"], d["summary"]
        text = (f"**{sm['torch_imports_exactly']} of {sm['models']}** torchvision {m['torchvision']} / timm {m['timm']} "
                f"classifiers import from torch with outputs within {m['rel_tolerance']:g} relative of torch's; "
                f"**{sm['wrong_answers']} wrong answers**")
    out.append(f"- **Import coverage**: {text}. {_link(_title(import_coverage))}")

    rows = _csv("zoo_counts.csv")
    if rows is None:
        text = _not_yet("zoo_counts.csv", "zoo_counts.py")
    else:
        pp = sorted(abs(float(r["params_diff_pct"])) for r in rows if r.get("params_diff_pct"))
        pm = sorted(abs(float(r["macs_diff_pct"])) for r in rows if r.get("macs_diff_pct"))
        text = (f"parameters of the {len(pp)} zoo nets and variants with a published count within {pp[-1]:.1f} % of it "
                f"(median {pp[len(pp) // 2]:.2f} %), MACs of {len(pm)} within {pm[-1]:.1f} % (median "
                f"{pm[len(pm) // 2]:.2f} %; the larger differences are explained net by net)")
    out.append(f"- **Counts against the publications**: {text}. {_link(_title(zoo))}")

    d = _json("cpu_model_vs_host.json")
    if d is None or not d.get("summary"):
        text = _not_yet("cpu_model_vs_host.json", "bench_cpu_vs_host.py")
    else:
        parts = [f"{v['median_abs_error'] * 100:.1f} % median absolute error at {k.replace('threads_', '')} "
                 f"thread{'s' if k != 'threads_1' else ''} (max {v['max_abs_error'] * 100:.0f} %)"
                 for k, v in d["summary"].items()]
        nets = max(v["nets"] for v in d["summary"].values())
        text = (f"the calibrated `cpu/host` preset predicts torch's latency of {nets} fp32 zoo nets it was not fitted "
                f"on with {', '.join(parts)}")
    out.append(f"- **Embedded-CPU model against a measured host**: {text}. {_link(_title(cpu_vs_host))}")

    d, z = _json("imc_bench.json"), _json("imc_zigzag.json")
    bits = []
    if d is not None and d.get("isaac_validation", {}).get("tile_power_mw") is not None:
        iv = d["isaac_validation"]
        bits.append(f"ISAAC's tile power from the preset's constants {iv['tile_power_mw']:.1f} mW vs the paper's "
                    f"{iv['paper_tile_power_mw']:.0f} mW ({iv['tile_power_gap_pct']:+.1f} %)")
    if z is not None:
        cfgs = z["configs"]
        gaps = "; ".join(f"{n}: latency {v['figures']['latency']['gap_pct']:+.0f} %, energy "
                         f"{v['figures']['energy']['gap_pct']:+.0f} %" for n, v in cfgs.items()
                         if "latency" in v["figures"] and "energy" in v["figures"])
        fastest = min(v["speedup_vs_zigzag"] for v in cfgs.values())
        bits.append(f"ResNet-18 against ZigZag's IMC cost model ({gaps}), evaluated at least {fastest:.3g}× faster")
    text = "; ".join(bits) if bits else _not_yet("imc_bench.json", "bench_imc.py")
    out.append(f"- **IMC accelerator**: {text}. {_link(_title(imc))}")

    v, g = _json("xnor_validation.json"), _json("xnor_gemm_speed.json")
    bits = []
    if v is not None:
        bits.append(f"{sum(bool(c.get('match')) for c in v['cases'])} of {len(v['cases'])} published FINN / BNN-PYNQ "
                    "foldings matched (bottleneck cycles, and frames/s and latency where published)")
    if g is not None:
        f32 = [r["speedup_vs_fp32"] for r in g["results"]]
        i8 = [r["speedup_vs_int8"] for r in g["results"] if r.get("speedup_vs_int8") is not None]
        bits.append(f"the bit-exact xnor-popcount GEMM runs {min(f32):.1f}-{max(f32):.1f}× torch's fp32 GEMM"
                    + (f" and {min(i8):.1f}-{max(i8):.1f}× its int8 GEMM" if i8 else ""))
    text = "; ".join(bits) if bits else _not_yet("xnor_validation.json", "bench_xnor.py")
    out.append(f"- **FPGA XNOR engine**: {text}. {_link(_title(xnor))}")

    c, s = _json("conv_vs_torch.json"), _json("imc_bench.json")
    bits = []
    if c is not None:
        bits.append(f"hwsim's Numba fp32 conv at {c['geomean_ratio']:.2f}× torch's throughput (geometric mean over "
                    "ResNet-18's layers, one thread)")
    cost = (s or {}).get("cost", {})
    rates = {k: v["configs_per_s"] for k, v in cost.items() if isinstance(v, dict) and "configs_per_s" in v}
    if rates:
        bits.append(f"cost-only ResNet-18 evaluations on the IMC model at {max(rates.values()):.0f} configurations/s")
    text = "; ".join(bits) if bits else _not_yet("conv_vs_torch.json", "bench_conv.py")
    out.append(f"- **Simulator speed**: {text}. {_link(_title(conv_speed))}")
    return "\n".join(out) + "\n"


def _splice(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path.relative_to(ROOT)} lacks the markers {begin} / {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + begin + "\n" + body + end + tail)


def main() -> None:
    _splice(VALIDATION, BEGIN, END, render())
    print("docs/validation.md results section regenerated")
    _splice(ROOT / "README.md", HEAD_BEGIN, HEAD_END, headline())
    print("README.md headline results regenerated")


if __name__ == "__main__":
    main()
