"""Validation-page sections on the accelerators: the IMC crossbar model (power, ZigZag, functional speed at dataset
scale, hardware-aware fine-tuning) and the FPGA XNOR engine (published foldings, measured FINN designs, the
xnor-popcount GEMM's speed)."""
from __future__ import annotations

from _sections_common import _cpu, _details, _f, _json, _load, _machine, _missing, _table, _verdict, _versions


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




def imc_dataset() -> str:
    d = _json("imc_dataset.json")
    if d is None:
        return _missing("imc_dataset.json", "bench_imc_dataset.py")
    out = []
    r20 = d.get("resnet20")
    if r20:
        rows = [[r["config"], _f(r["cpu_seconds"], ".3f"), _f(r["x_torch_cpu"], ".1f"), _f(r["x_torch"], ".1f"),
                 f"≤ {r['target_x_torch']:g}× ({'met' if r['x_torch_cpu'] <= r['target_x_torch'] else '**missed**'})"
                 if r.get("target_x_torch") else "–", _f(r.get("rel_rms_error_vs_fp32"), ".3g")] for r in r20["rows"]]
        shape = "×".join(str(s) for s in r20.get("input", []))
        out.append(f"The functional (bit-level) IMC path at dataset scale, one thread, measured on {_cpu(d)} "
                   f"(Python {d.get('python', '?')}; minimum of {d.get('repeats', '?')} runs on a shared machine, "
                   f"load average before the run {_f((r20.get('load_average_before') or [None])[0], '.1f')}): "
                   f"{r20['network']} on a batch of {shape} against torch fp32's "
                   f"{_f(r20.get('torch_fp32_cpu_s'), '.1f', 1e3)} ms of CPU time; nothing fitted. Single-threaded runs are "
                   "compared by CPU time (on a shared machine the wall clock also counts time spent waiting for a core; "
                   "shown for reference) "
                   "(`benchmarks/results/imc_dataset.json`, `python benchmarks/bench_imc_dataset.py`):\n\n"
                   + _table(["configuration", "CPU time s", "× torch fp32 (CPU time)", "× torch (wall)", "target",
                             "rel. RMS error vs fp32"], rows))
    mem = [v for k, v in d.items() if k.startswith("vgg16_memory") and isinstance(v, dict)]
    lines = [f"- {v['network']} {'×'.join(str(s) for s in v.get('input', []))} on {v['spec']}: resident set "
             f"{v['rss_before_run_bytes'] / 2**30:.2f} GiB with the graph built, peak {v['peak_rss_during_run_bytes'] / 2**30:.2f} GiB "
             f"during the run (limit {v['limit_bytes'] / 2**30:.0f} GiB: "
             f"{'met' if v['peak_rss_during_run_bytes'] <= v['limit_bytes'] else '**missed**'}), {v['seconds']:.1f} s"
             for v in mem]
    if lines:
        out.append("Peak memory of a large net through the functional path, batch 1:\n\n" + "\n".join(lines) + "\n")
    return "\n".join(out)


def _acc(v: dict) -> str:
    return f"{v['accuracy_mean']:.3f} ± {v['accuracy_std']:.3f}"


def hw_aware() -> str:
    d = _json("hw_aware.json")
    if d is None:
        return _missing("hw_aware.json", "bench_hw_aware.py")
    chips = [[name, c.get("base", "–"), f"{c['weight_bits']}/{c['input_bits']}", c.get("cell_bits", "–"),
              c.get("adc_bits", "–"), c.get("rows", "–"), _f(c.get("conductance_sigma"), ".0f", 100)]
             for name, c in d.get("chips", {}).items()]
    rows = []
    for task, t in d.get("tasks", {}).items():
        for chip, c in t.get("chips", {}).items():
            rows.append([task, f"{t.get('train_samples', '?')} / {t.get('test_samples', '?')}", chip,
                         _f(t.get("float_accuracy"), ".3f"), _acc(c["before"]), _acc(c["after"]),
                         _f(c["before"].get("rel_rms_error_mean"), ".2f"), _f(c["after"].get("rel_rms_error_mean"), ".2f"),
                         f"{c.get('fine_tune_epochs', '?')} ep., {_f(c.get('fine_tune_s'), '.0f')} s wall, "
                         f"{_f(c.get('fine_tune_cpu_s'), '.0f')} s CPU"])
    seeds = ", ".join(str(s) for s in d.get("seeds", []))
    mach = _machine(d)
    return ("Accuracy on a noisy, low-resolution-ADC chip simulated bit by bit (`hwsim.evaluate`), before and after "
            "hardware-aware fine-tuning (`hwsim.codesign.hw_aware`; [accuracy on chip](accuracy.md)): the net is fine-tuned on the training split "
            "through the chip model and scored on the held-out test split; nothing in the chip model is fitted. "
            f"Mean ± std over device seeds {seeds}. Whole run {_f(d.get('wall_s'), '.0f')} s wall, "
            f"{_f(d.get('cpu_s'), '.0f')} s CPU, " + (mach or "on a machine the results file does not name") + _load(d)
            + " (`benchmarks/results/hw_aware.json`, `python benchmarks/bench_hw_aware.py`).\n\n"
            + _table(["chip", "preset", "weight/input bits", "bits per cell", "ADC bits", "rows", "conductance σ %"], chips)
            + "\n" + _table(["task", "train / test", "chip", "float", "on chip before", "after fine-tuning",
                             "rel. RMS error before", "after", "fine-tuning"], rows))


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
    out.append(_missing("xnor_gemm_speed.json", "bench_xnor_gemm.py") if g is None else xnor_gemm(g))
    return "\n".join(out)


def _rooflines(h: dict) -> str:
    parts = [f"popcount {h['binary_roofline_gops']:.0f} GOP/s" if h.get("binary_roofline_gops") else "",
             f"xor+popcount+add op-mix bound {h['binary_opmix_bound_gops']:.0f} GOP/s" if h.get("binary_opmix_bound_gops") else "",
             f"fp32 FMA {h['fp32_roofline_gflops']:.0f} GFLOP/s" if h.get("fp32_roofline_gflops") else "",
             f"int8 VNNI {h['int8_vnni_roofline_gops']:.0f} GOP/s" if h.get("int8_vnni_roofline_gops") else ""]
    return ", ".join(p for p in parts if p)


def xnor_gemm(g: dict) -> str:
    h = g.get("host") or {}
    rows = [[f"{r['M']}×{r['K']} @ {r['K']}×{r['N']}", _f(r["xnor_gops"], ".0f"),
             _f(r.get("xnor_fraction_of_popcount_roofline"), ".0f", 100), _f(r.get("xnor_fraction_of_opmix_bound"), ".0f", 100),
             f"{_f(r.get('xnor_prepacked_gops'), '.0f')} ({_f(r.get('xnor_prepacked_fraction_of_popcount_roofline'), '.0f', 100)})",
             _f(r["torch_fp32_gflops"], ".0f"), _f(r.get("torch_fp32_fraction_of_fma_roofline"), ".0f", 100),
             _f(r["speedup_vs_fp32"], ".1f"), _f(r.get("torch_int8_gops"), ".0f"),
             _f(r.get("torch_int8_fraction_of_int8_roofline"), ".0f", 100), _f(r.get("speedup_vs_int8"), ".1f")]
            for r in g["results"]]
    text = ("Bit-exact xnor-popcount GEMM (Numba + an LLVM micro-kernel, `vpopcntq`) vs torch fp32 GEMM and torch int8 "
            f"`_int_mm` of the same logical shape, one thread, measured on {_cpu(g)} with {_versions(g)}{_load(g)}; "
            f"{g.get('statistic', '')}. Rooflines of one thread on that CPU: {_rooflines(h)}; "
            "the op-mix bound caps any xor-popcount-add kernel at about 67 % of the popcount roofline "
            "([kernel speed on the host](targets/kernels.md)). (`benchmarks/results/xnor_gemm_speed.json`)\n\n"
            + _table(["M×K @ K×N", "xnor GOP/s", "% popcount roofline", "% op-mix bound", "prepacked GOP/s (% roofline)",
                      "torch fp32 GFLOP/s", "% FMA roofline", "× fp32", "torch int8 GOP/s", "% int8 roofline", "× int8"],
                     rows))
    f32 = [100 * r["torch_fp32_fraction_of_fma_roofline"] for r in g["results"] if r.get("torch_fp32_fraction_of_fma_roofline")]
    i8 = [100 * r["torch_int8_fraction_of_int8_roofline"] for r in g["results"] if r.get("torch_int8_fraction_of_int8_roofline")]
    if f32 and i8:
        text += (f"\ntorch's fp32 GEMM ran at {min(f32):.0f}-{max(f32):.0f} % of its FMA roofline in this run (a shared, "
                 "loaded host), which inflates the × fp32 column; its int8 GEMM, the fairer baseline, at "
                 f"{min(i8):.0f}-{max(i8):.0f} % of the VNNI roofline.\n")
    conv = g.get("binary_conv") or []
    if conv:
        text += ("\nBinary ResNet-18-shaped convolutions, batch 1 (implicit GEMM: the core; `binary_conv2d` end to end "
                 "also packs uint8/int64 NCHW inputs and weights):\n\n"
                 + _table(["layer", "GEMM GOP/s", "conv core GOP/s", "core / GEMM", "core % popcount roofline",
                           "end to end GOP/s"],
                          [[c["layer"], _f(c["gemm_gops"], ".0f"), _f(c["conv_core_gops"], ".0f"),
                            _f(c["conv_core_over_gemm"], ".2f"), _f(c.get("conv_core_fraction_of_popcount_roofline"), ".0f", 100),
                            _f(c.get("conv_full_gops"), ".0f")] for c in conv]))
    return text


def finn_measured() -> str:
    d = _json("finn_measured.json")
    if d is None:
        return _missing("finn_measured.json", "bench_finn_measured.py")
    s = d.get("summary", {})
    by_src = ", ".join(f"{k} {v:.1f} %" for k, v in (s.get("median_abs_error_pct_by_source") or {}).items())
    fps = [[r["design"], r.get("board", "–")[:40], _f(r.get("clock_mhz"), ".4g"), _f(r.get("batch"), ".0f"),
            _f(r["measured_fps"], ".4g"), _f(r["predicted_fps"], ".4g"), _f(r["error_pct"], "+.1f"), r.get("ii_cycles", "–")]
           for r in d.get("fps", [])]
    text = ("hwsim's dataflow model vs throughput **measured** on FINN / BNN-PYNQ / finn-examples builds (the boards "
            "named per row; the published notebooks and PRs each row cites), predicted from each design's published "
            "folding and clock; nothing fitted (`benchmarks/results/finn_measured.json`, "
            "`python benchmarks/bench_finn_measured.py`; the model: [FPGA XNOR engine](targets/fpga.md)). Median |error| of the frames/s over "
            f"{s.get('designs_rows', len(fps))} rows: {_verdict(s.get('median_abs_error_pct', float('nan')), s.get('target_median_pct', 10))}, "
            f"{s.get('within_10pct', '?')} within 10 %; by source: {by_src}.\n\n"
            + _table(["design", "board", "clock MHz", "batch", "measured FPS", "predicted FPS", "error %", "II cycles"], fps))
    lat = [[r["design"], r.get("board", "–"), _f(r["measured_latency_us"], ".4g"), _f(r["predicted_latency_us"], ".4g"),
            _f(r["error_pct"], "+.1f")] for r in d.get("latency_batch1", [])]
    if lat:
        text += ("\nSingle-image latency (the measurement includes the host driver's call overhead):\n\n"
                 + _table(["design", "board", "measured µs", "predicted pipeline µs", "error %"], lat))
    res = d.get("resources", [])
    if res:
        def cell(r: dict, k: str) -> str:
            return f"{_f(r['measured'].get(k), '.0f')} / {_f(r['predicted'].get(k), '.0f')} ({_f(r['gap_pct'].get(k), '+.0f')})"
        text += ("\nResources vs the Vivado utilization reports, measured / predicted (gap %); scope: "
                 f"{res[0].get('scope', '')}:\n\n"
                 + _table(["design", "LUT", "BRAM18", "DSP"], [[r["design"], cell(r, "luts"), cell(r, "bram18"),
                                                               cell(r, "dsps")] for r in res]))
    part = d.get("resnet50_partial")
    if part:
        text += _details(f"{part['design']}: partial comparison, not in the median", _table(
            ["clock MHz", "measured FPS", "predicted without the stem", "error %", "with the stem as an MVAU"],
            [[_f(r["clock_mhz"], ".4g"), _f(r["measured_fps"], ".4g"), _f(r["predicted_fps_without_stem"], ".4g"),
              _f(r["error_pct_without_stem"], "+.1f"), _f(r["predicted_fps_with_stem_as_mvau"], ".4g")]
             for r in part.get("rows", [])]))
    skipped = [f"{r['row']} ({r.get('board', '')}): {r['reason']}" for r in d.get("skipped", [])]
    notes = d.get("not_validated", []) + [f"skipped: {x}" for x in skipped]
    if notes:
        text += "\nNot validated: " + "; ".join(notes) + ".\n"
    return text
