"""Regenerate the validation page and the README's headline results from the files in ``benchmarks/results/``.

    python benchmarks/make_readme.py          # rewrites docs/validation.md between the results markers
                                              # and README.md between the headline markers

Every number in those sections comes from a results file written by a benchmark script; this script
only formats them (the sections live in ``benchmarks/_sections_*.py``). A missing file is reported as
"not measured" with the command that makes it. The plot of the compression results is copied into
``docs/assets/`` so the docs site can show it.
"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _sections_accel import finn_measured, hw_aware, imc, imc_dataset, xnor  # noqa: E402
from _sections_arm import ARM_TARGET_ENERGY, ARM_TARGET_MEDIAN, arm_boards, lce  # noqa: E402
from _sections_codesign import compress, sweeps  # noqa: E402
from _sections_common import ROOT, _csv, _json  # noqa: E402
from _sections_host import (  # noqa: E402
    conv_speed,
    cpu_functional_speed,
    cpu_vs_host,
    import_coverage,
    ncnn_param_sum,
    zoo,
)

VALIDATION = ROOT / "docs" / "validation.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"  # docs/validation.md: the generated tables
HEAD_BEGIN, HEAD_END = "<!-- headline:begin -->", "<!-- headline:end -->"  # README.md: the headline bullets
XNOR_ROOFLINE_TARGET = 0.70  # issue 21's target for the binary GEMM, fraction of the popcount roofline (docs/targets/kernels.md)

SECTIONS = [
    ("Import coverage: torchvision and timm models", import_coverage),
    ("Zoo: counts against the publications", zoo),
    ("Numba kernels: speed against torch", conv_speed),
    ("Functional CPU target: whole nets against torch", cpu_functional_speed),
    ("Embedded-CPU model against a measured host", cpu_vs_host),
    ("Arm boards: runtime models fitted and predicted", arm_boards),
    ("Binary nets on Arm CPUs against Larq Compute Engine", lce),
    ("IMC accelerator: validation and speed", imc),
    ("IMC functional path at dataset scale", imc_dataset),
    ("Hardware-aware fine-tuning on a noisy IMC chip", hw_aware),
    ("FPGA XNOR engine: validation and speed", xnor),
    ("FPGA dataflow model against measured FINN designs", finn_measured),
    ("Co-design loops", sweeps),
    ("Compression", compress),
]


def _run(what: str, fn) -> str:
    """fn(), or a one-line exit naming the section whose results file lacks a key or holds a malformed value."""
    try:
        return fn()
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise SystemExit(f"make_readme: {what}: a results file lacks or malforms {type(e).__name__} {e}") from e


def render() -> str:
    return "\n".join(f"## {title}\n\n{_run(title, fn).rstrip()}\n" for title, fn in SECTIONS)


# ----------------------------------------------------------------------------- README headline results
def _slug(title: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs (Python-Markdown's toc) make it for an ASCII title."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


def _link(*fns, words: tuple[str, ...] = ("details",)) -> str:
    titles = [next(t for t, f in SECTIONS if f is fn) for fn in fns]
    return ", ".join(f"[{w}](docs/validation.md#{_slug(t)})" for w, t in zip(words, titles))


def _not_yet(name: str, script: str) -> str:
    return f"not measured yet (`python benchmarks/{script}` writes `benchmarks/results/{name}`)"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _imports_and_counts() -> str:
    bits = []
    d = _json("import_coverage.json")
    if d is not None:
        m, sm = d["meta"], d["summary"]
        bits.append(f"**{sm['torch_imports_exactly']} of {sm['models']}** torchvision {m['torchvision']} / timm "
                    f"{m['timm']} classifiers import from torch with outputs within {m['rel_tolerance']:g} relative of "
                    f"torch's, **{sm['wrong_answers']} wrong answers**")
    rows = _csv("zoo_counts.csv")
    if rows is not None:
        pub = [r for r in rows if not ncnn_param_sum(r)]
        pp = [abs(float(r["params_diff_pct"])) for r in pub if r.get("params_diff_pct")]
        pm = sorted((abs(float(r["macs_diff_pct"])), r["name"]) for r in pub if r.get("macs_diff_pct"))
        bits.append(f"parameters of the {len(pp)} zoo nets and variants with a published count within {max(pp):.1f} % "
                    f"of it (median {_med(pp):.2f} %), MACs of {len(pm)} with a median difference of "
                    f"{_med([x for x, _ in pm]):.2f} %, the largest {pm[-1][0]:.1f} % ({pm[-1][1]}; the larger "
                    "differences are explained net by net)")
    text = "; ".join(bits) if bits else _not_yet("import_coverage.json", "bench_import_coverage.py")
    return f"- **Imports and counts**: {text}. {_link(import_coverage, zoo, words=('imports', 'counts'))}"


def _arm() -> str:
    d = _json("arm_boards.json")
    if d is None:
        return f"- **Arm boards**: {_not_yet('arm_boards.json', 'bench_arm_boards.py')}."
    s = d.get("summary", {})
    bits = []
    a, af = s.get("cortex-a ncnn, predicted (LOBO)"), s.get("cortex-a ncnn, fitted (in-sample)")
    if a:
        miss = "missed" if a["median_abs_err_pct"] > ARM_TARGET_MEDIAN else "met"
        bits.append(f"ncnn latency of {a['rows']} published Cortex-A runs predicted with each board left out of the fit: "
                    f"median error **{a['median_abs_err_pct']:.1f} %** (target {ARM_TARGET_MEDIAN:g} %: {miss}), "
                    f"max {a['max_abs_err_pct']:.0f} %, {a['over_40_pct']} runs over 40 %"
                    + (f" ({af['median_abs_err_pct']:.1f} % in-sample)" if af else ""))
    pi = s.get("raspberry pi (never fitted), current ncnn, predicted")
    if pi:
        bits.append(f"Raspberry Pi boards, never fitted: median {pi['median_abs_err_pct']:.1f} %")
    m, mf, e = (s.get("cortex-m latency, predicted (LOBO)"), s.get("cortex-m latency, fitted (in-sample)"),
                s.get("cortex-m energy (ic/kws/vww), predicted"))
    if m:
        bits.append(f"MLPerf Tiny on Cortex-M boards left out: latency median {m['median_abs_err_pct']:.1f} %"
                    + (f" ({mf['median_abs_err_pct']:.1f} % in-sample)" if mf else "")
                    + (f", energy median {e['median_abs_err_pct']:.1f} %, max {e['max_abs_err_pct']:.0f} % (target "
                       f"{ARM_TARGET_ENERGY:g} %: {'missed' if e['max_abs_err_pct'] > ARM_TARGET_ENERGY else 'met'})" if e else ""))
    text = "; ".join(bits) if bits else "no summary sets in `benchmarks/results/arm_boards.json`"
    return f"- **Arm boards**: {text}. {_link(arm_boards)}"


def _host_and_binary() -> str:
    bits = []
    d = _json("cpu_model_vs_host.json")
    if d is not None and d.get("summary"):
        parts = [f"{v['median_abs_error'] * 100:.1f} % median error at {k.replace('threads_', '')} "
                 f"thread{'s' if k != 'threads_1' else ''} (max {v['max_abs_error'] * 100:.0f} %)"
                 for k, v in d["summary"].items()]
        nets = max(v["nets"] for v in d["summary"].values())
        bits.append(f"the calibrated `cpu/host` preset predicts torch's latency of {nets} fp32 zoo nets it was not "
                    f"fitted on with {', '.join(parts)}")
    lc = _json("lce.json")
    if lc is not None:
        groups = ", ".join(f"{v['median_abs_error_pct']:.1f} % {k}" for k, v in lc.get("summary", {}).items())
        under = all(r["error_pct"] < 0 for r in lc["rows"])
        bits.append(f"binary nets (QuickNet, Bi-Real Net) against the latencies Larq Compute Engine and daBNN publish "
                    f"for a Raspberry Pi 4 and a Pixel 1, median error {groups}"
                    + ("; every prediction is below the published latency" if under else ""))
    text = "; ".join(bits) if bits else _not_yet("cpu_model_vs_host.json", "bench_cpu_vs_host.py")
    return f"- **CPU model on this host and binary nets**: {text}. " + _link(cpu_vs_host, lce, words=("host", "binary nets"))


def _fpga() -> str:
    v, f = _json("xnor_validation.json"), _json("finn_measured.json")
    bits = []
    if v is not None:
        bits.append(f"{sum(bool(c.get('match')) for c in v['cases'])} of {len(v['cases'])} published FINN / BNN-PYNQ "
                    "foldings matched (bottleneck cycles, and frames/s and latency where published)")
    if f is not None:
        s = f.get("summary", {})
        by = s.get("median_abs_error_pct_by_source") or {}
        worst = max(by.items(), key=lambda kv: kv[1]) if by else None
        tgt = s.get("target_median_pct", 10)
        bits.append(f"frames/s of {s.get('designs_rows')} measured builds predicted from their foldings with median "
                    f"error **{s['median_abs_error_pct']:.1f} %** (target {tgt:g} %: "
                    f"{'met' if s['median_abs_error_pct'] <= tgt else 'missed'}), {s.get('within_10pct')} within 10 %"
                    + (f", but {worst[1]:.0f} % median on the {worst[0]} rows" if worst and worst[1] > tgt else ""))
        bram = [r["gap_pct"]["bram18"] for r in f.get("resources", []) if r.get("gap_pct", {}).get("bram18") is not None]
        if bram:
            bits.append(f"BRAM under-estimated by {-max(bram):.0f}-{-min(bram):.0f} % against Vivado's whole-overlay reports")
    text = "; ".join(bits) if bits else _not_yet("xnor_validation.json", "bench_xnor.py")
    return f"- **FPGA XNOR engine**: {text}. " + _link(xnor, finn_measured, words=("foldings", "measured designs"))


def _imc() -> str:
    d, z, h, ds = _json("imc_bench.json"), _json("imc_zigzag.json"), _json("hw_aware.json"), _json("imc_dataset.json")
    bits = []
    if d is not None and d.get("isaac_validation", {}).get("tile_power_mw") is not None:
        iv = d["isaac_validation"]
        bits.append(f"ISAAC's tile power {iv['tile_power_mw']:.1f} mW vs the paper's {iv['paper_tile_power_mw']:.0f} mW "
                    f"({iv['tile_power_gap_pct']:+.1f} %)")
    if z is not None:
        gaps = "; ".join(f"{n}: latency {v['figures']['latency']['gap_pct']:+.0f} %, energy "
                         f"{v['figures']['energy']['gap_pct']:+.0f} %" for n, v in z["configs"].items()
                         if "latency" in v["figures"] and "energy" in v["figures"])
        bits.append(f"ResNet-18 against ZigZag's IMC cost model ({gaps})")
    if h is not None and h.get("tasks"):
        task, t = next(iter(h["tasks"].items()))
        per_chip = []
        for chip, c in t.get("chips", {}).items():
            cfg = h.get("chips", {}).get(chip, {})
            what = (f"{cfg['adc_bits']}-bit ADC, {100 * cfg['conductance_sigma']:.0f} % conductance variation"
                    if "adc_bits" in cfg else chip)
            per_chip.append(f"{c['before']['accuracy_mean']:.2f} → {c['after']['accuracy_mean']:.2f} ({what})")
        if per_chip:
            bits.append(f"{task.split(' (')[0]} accuracy on noisy chips {' and '.join(per_chip)} after hardware-aware "
                        f"fine-tuning (float {t['float_accuracy']:.2f})")
    if ds is not None and ds.get("resnet20"):
        rows = [r for r in ds["resnet20"]["rows"] if r.get("target_x_torch")]
        if rows:
            fast, slow = rows[0], rows[-1]
            bits.append(f"bit-level ResNet-20 on a batch of 64 at {fast['x_torch_cpu']:.1f}× torch fp32's CPU time "
                        f"(target {fast['target_x_torch']:g}×: "
                        f"{'met' if fast['x_torch_cpu'] <= fast['target_x_torch'] else 'missed'}), "
                        f"{slow['x_torch_cpu']:.0f}× with a clipping ADC and conductance variation (target "
                        f"{slow['target_x_torch']:g}×: "
                        f"{'met' if slow['x_torch_cpu'] <= slow['target_x_torch'] else 'missed'})")
    text = "; ".join(bits) if bits else _not_yet("imc_bench.json", "bench_imc.py")
    return f"- **IMC accelerator**: {text}. " + _link(imc, hw_aware, imc_dataset, words=("power", "fine-tuning", "speed"))


def _kernels() -> str:
    g, c = _json("xnor_gemm_speed.json"), _json("conv_vs_torch.json")
    bits, cpu = [], ""
    if g is not None:
        h = g.get("host") or {}
        cpu = f"{h.get('model', 'an unrecorded CPU')}" + (f", µarch {h['uarch']}" if h.get("uarch") else "")
        big = [r for r in g["results"] if r["M"] >= 128 and r["N"] >= 128 and r["K"] >= 576
               and r.get("xnor_fraction_of_popcount_roofline") is not None]
        i8 = [r["speedup_vs_int8"] for r in g["results"] if r.get("speedup_vs_int8") is not None]
        if big:
            fr = [100 * r["xnor_fraction_of_popcount_roofline"] for r in big]
            miss = "missed" if max(fr) < 100 * XNOR_ROOFLINE_TARGET else "met"
            bits.append(f"the bit-exact xnor-popcount GEMM at {min(fr):.0f}-{max(fr):.0f} % of the popcount roofline on "
                        f"GEMMs with M, N ≥ 128 and K ≥ 576 (target {100 * XNOR_ROOFLINE_TARGET:.0f} %: {miss}; the "
                        "xor-popcount-add op mix caps any such kernel near 67 %)"
                        + (f", {min(i8):.1f}-{max(i8):.1f}× torch's int8 GEMM" if i8 else ""))
    if c is not None:
        fr = [100 * L["hwsim_fraction_of_fma_roofline"] for L in c["layers"] if "hwsim_fraction_of_fma_roofline" in L]
        bits.append(f"the Numba fp32 conv at {c['geomean_ratio_of_min_times']:.2f}× torch's speed (geometric mean over "
                    "ResNet-18's layers, minimum times)" + (f", {min(fr):.0f}-{max(fr):.0f} % of the FMA roofline" if fr else ""))
        cpu = cpu or (c.get("host") or {}).get("model", "")
    fs = _json("cpu_functional_speed.json")
    if fs is not None and fs.get("results"):
        ratios = [r["ratio_hwsim_over_torch"] for r in fs["results"]]
        tgt = fs.get("target_ratio")
        ok = sum(bool(r.get("within_target")) for r in fs["results"])
        bits.append(f"whole fp32 nets on the functional CPU target take {min(ratios):.2f}-{max(ratios):.2f}× torch's time"
                    + (f" ({ok} of {len(ratios)} runs within the {tgt:g}× target)" if tgt else ""))
    s = _json("imc_bench.json")
    rates = [v["configs_per_s"] for v in (s or {}).get("cost", {}).values() if isinstance(v, dict) and "configs_per_s" in v]
    if rates:
        bits.append(f"cost-only ResNet-18 evaluations on the IMC model at {max(rates):.0f} configurations/s")
    text = "; ".join(bits) if bits else _not_yet("xnor_gemm_speed.json", "bench_xnor_gemm.py")
    on = f" (one thread of an {cpu})" if cpu else ""
    return f"- **Simulator speed**{on}: {text}. " + _link(conv_speed, cpu_functional_speed, xnor, words=("conv", "whole nets", "GEMM"))


def headline() -> str:
    """Six bullets for the README, every number read from a results file; each links to its validation sections."""
    bullets = (_imports_and_counts, _arm, _host_and_binary, _fpga, _imc, _kernels)
    return "\n".join(_run(f"headline {fn.__name__}", fn) for fn in bullets) + "\n"


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
