"""Validation-page sections on imports, zoo counts, the Numba kernels' speed and the CPU model against this host."""
from __future__ import annotations

from _sections_common import (
    ROOT,
    _cpu,
    _csv,
    _f,
    _host_machine,
    _json,
    _load,
    _missing,
    _table,
    _versions,
)


def ncnn_param_sum(row: dict) -> bool:
    """A zoo_counts.csv row whose "published" MACs are a sum over ncnn's own .param file (the ``layout="ncnn"``
    builds): the same layout counted twice, so +0.00 % by construction and no check against a publication."""
    src = row.get("counts_source") or ""
    return ".param" in src and "summed" in src


def zoo() -> str:
    rows = _csv("zoo_counts.csv")
    if rows is None:
        return _missing("zoo_counts.csv", "zoo_counts.py")
    t = []
    for r in rows:
        pp, pm = r.get("published_params"), r.get("published_macs")
        mark = " †" if ncnn_param_sum(r) else ""
        t.append([r["name"] + (f" ({r['config']})" if r.get("config") else "") + mark, r["input_shape"],
                  _f(r["params"], ".3f", 1e-6), _f(pp, ".3f", 1e-6) if pp else "–",
                  (r.get("params_diff_pct") or "–"),
                  _f(r["macs"], ".1f", 1e-6), _f(pm, ".1f", 1e-6) if pm else "–", (r.get("macs_diff_pct") or "–"),
                  (r.get("counts_source") or "")[:90]])
    notes = [f"- **{r['name']}**: {r['notes']}" for r in rows if r.get("notes")]
    return ("Parameters and MACs (conv + linear multiply-accumulates per image) counted on the traced IR, "
            "next to the published figures (`benchmarks/results/zoo_counts.csv`, `python benchmarks/zoo_counts.py`):\n\n"
            + _table(["net", "input", "params (M)", "published (M)", "Δ %", "MACs (M)", "published (M)", "Δ %",
                      "published in"], t)
            + ("\n† The `layout=\"ncnn\"` builds (the topologies of ncnn's benchmark models) are compared with MACs "
               "summed over ncnn's own `.param` files: a check that the layout is ncnn's, not a comparison with a "
               "publication, so they are left out of the medians quoted in the README.\n"
               if any(ncnn_param_sum(r) for r in rows) else "")
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
    layers = d.get("layers", []) + d.get("extra_depthwise_layers", [])

    def row(L: dict) -> list:
        dw = " dw" if L.get("groups", 1) > 1 else ""
        return [L["name"], f"{L['cin']}→{L['cout']} {L['k']}×{L['k']}/{L['stride']} @{L['hw']}{dw}",
                _f(L["gflop"] / (L["torch_ms_min"] * 1e-3) if "torch_ms_min" in L else L.get("torch_gflops"), ".0f"),
                _f(L["gflop"] / (L["hwsim_ms_min"] * 1e-3) if "hwsim_ms_min" in L else L.get("hwsim_gflops"), ".0f"),
                _f(L.get("ratio_min"), ".2f"), _f(L.get("ratio"), ".2f"),
                _f(L.get("hwsim_fraction_of_fma_roofline"), ".0f", 100), _f(L.get("torch_fraction_of_fma_roofline"), ".0f", 100)]
    h = d.get("host") or {}
    roof = f" Its fp32 FMA roofline, one thread: {h['fp32_roofline_gflops']:.0f} GFLOP/s." if h.get("fp32_roofline_gflops") else ""
    text = (f"Numba fp32 conv vs torch `F.conv2d` (oneDNN), one thread each, every ResNet-18 layer at 224×224 and "
            f"the depthwise layers of MobileNetV2, measured on {_cpu(d)} with {_versions(d)}{_load(d)}; "
            f"{d.get('repeats', '?')} calls each, {d.get('statistic', '')}.{roof} "
            f"ResNet-18 geometric-mean ratio (torch time / hwsim time) **{d['geomean_ratio_of_min_times']:.2f}×** on the "
            f"minimum times (lowest {d['min_ratio_of_min_times']:.2f}×), {d['geomean_ratio']:.2f}× on the medians "
            f"(lowest {d['min_ratio']:.2f}×, {d['min_ratio_layer']})")
    if "extra_depthwise_geomean_ratio" in d:
        text += f"; MobileNetV2 depthwise {d['extra_depthwise_geomean_ratio']:.2f}× on the medians"
    text += (". The minimum times approximate an undisturbed run on this shared host; the medians carry its load. "
             "Both kernels are measured against the same roofline (how it is measured: "
             "[kernel speed on the host](targets/kernels.md)). (`benchmarks/results/conv_vs_torch.json`)\n\n")
    return text + _table(["layer", "shape", "torch GFLOP/s (min)", "hwsim GFLOP/s (min)", "ratio (min times)",
                          "ratio (medians)", "hwsim % FMA roofline", "torch % FMA roofline"], [row(L) for L in layers])


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


def cpu_functional_speed() -> str:
    d = _json("cpu_functional_speed.json")
    if d is None:
        return _missing("cpu_functional_speed.json", "bench_cpu_functional.py")
    tgt = d.get("target_ratio")
    rows = [[r["net"], r["batch"], _f(r["hwsim_s"], ".1f", 1e3), _f(r["torch_s"], ".1f", 1e3),
             _f(r["ratio_hwsim_over_torch"], ".2f"), ("yes" if r.get("within_target") else "**no**") if tgt else "–",
             _f(r.get("max_rel_error"), ".1e")] for r in d["results"]]
    slow = sorted(d["results"], key=lambda r: -r["ratio_hwsim_over_torch"])[:3]
    where = "\n".join(f"- {r['net']} batch {r['batch']} ({r['ratio_hwsim_over_torch']:.2f}×): " + ", ".join(
        f"{k} {v * 1e3:.1f}" for k, v in sorted(r.get("hwsim_seconds_by_kind", {}).items(), key=lambda kv: -kv[1])
        if v >= 5e-5)
        for r in slow)
    return (f"Whole nets on the functional CPU target (fp32, BatchNorm folded; hwsim's Numba kernels) against torch's "
            f"eval-mode forward, one thread each, measured on {_cpu(d)} with {_versions(d)}{_load(d)}; "
            f"{d.get('statistic', '')}. Time ratio hwsim / torch"
            + (f", target ≤ {tgt:g}×" if tgt else "") + "; nothing fitted "
            "(`benchmarks/results/cpu_functional_speed.json`, `python benchmarks/bench_cpu_functional.py`):\n\n"
            + _table(["net", "batch", "hwsim ms", "torch ms", "hwsim / torch", f"within {tgt:g}×" if tgt else "target",
                      "max rel. error vs torch"], rows)
            + ("\nWhere hwsim's time goes on the three slowest (ms per layer kind):\n\n" + where + "\n" if where else ""))


def _glibc_note(rows: list[dict]) -> str:
    """One-thread timings with glibc's default allocator settings against the main run's."""
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
    return glibc_note


def _stability_note() -> str:
    """How far the host itself moves between fresh processes (host_stability.json)."""
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
    return stab_note


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
    glibc_note = _glibc_note(rows)
    stab_note = _stability_note()
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


