"""hwsim's binary-layer CPU model (hwsim.cpu.binary) against Larq Compute Engine's and daBNN's published latencies.

Published numbers (ms per 224x224 inference, batch 1):

* Larq Compute Engine README, larq/compute-engine @ e6860fcfda03a21eef157a181cc2351cef7a22bc (README.md, tables
  "single-threaded" / "multi-threaded"; benchmarked 2021-06-11 on the Pixel 1 and 2022-04-20 on the RPi 4B with
  LCE's TFLite benchmark tool, XNNPack enabled): Raspberry Pi 4B at 1.5 GHz (4x Cortex-A72), 1 / 4 threads:
  QuickNetSmall 27.7 / 12.1, QuickNet 45.0 / 20.8, QuickNetLarge 77.0 / 31.7; Pixel 1, 1 thread: 16.8, 25.5, 44.2;
  "LCE achieves an inference time of 41.6 ms for Bi-RealNet on the same device" (Pixel 1).
* daBNN README, JDAI-CV/dabnn @ d93aa950788319d92ade545eb7fe7ac6f1589fd1: "Bi-Real Net 18 ... 61.3ms/image on
  Google Pixel 1 (single thread)" (first published at 6916de5, 2019-06-17). Predicted with ``runtime="dabnn"``
  (hwsim.cpu.runtime.dabnn: daBNN's own kernels for every layer, one thread), not with LCE's.
* daBNN's single-layer benchmarks, same device, one thread (docs/benchmark_and_comparison.md @ d93aa95): the
  binary conv kernels alone on a pre-padded packed input (``bconv_3x3``) or the BGEMM alone (5x5). ``dabnn_3x3_64``
  fits hwsim's one daBNN parameter (``COPY_CALL_CYCLES``, the cycles of one im2col memcpy call); the other five
  rows validate the kernel model.

The Pixel 1 (Qualcomm Snapdragon 821) has Qualcomm Kryo cores (custom Armv8-A; 2 at 2.15 GHz + 2 at 1.6 GHz), not an
Arm design: hwsim has no Kryo record, so the phone is approximated by the nearest record, ``cortex-a72`` (out of
order, two 128-bit ASIMD pipes), at 2.15 GHz, with the Pi 4 preset's memory system — a rough stand-in, reported
apart from the Pi 4 rows. Its 4-thread rows are left out (two clusters at different clocks).

Method (LCE rows): ``hwsim.simulate(graph, spec, threads=t)`` of the zoo's ``quicknet-small`` / ``quicknet`` /
``quicknet-large`` / ``birealnet18`` (nets/larq.py) on ``cpu/cortex-a72`` with ``runtime="xnnpack"`` (LCE runs its float layers through
TFLite + XNNPack): binary layers by hwsim.cpu.binary (the kernel path LCE's benchmark tool runs by default — im2col,
ruy packing, the 8x4 BGEMM kernel — its instruction counts, the SWOG issue rates and GCC's Cortex-A57/A72 pipeline
model for which Q-form instructions take both ASIMD pipes; the per-layer fixed cost and the thread contention of
the runtime, as for every op of the interpreter graph), everything else by hwsim's CPU runtime model (xnnpack on
Cortex-A72, fitted by benchmarks/bench_arm_boards.py on ncnn boards, none of them a Pi 4 and none with binary nets).
**Nothing here is fitted to these tables.** The float layers' share therefore moves with the runtime parameters
(``hwsim/cpu/runtime/``): rerun this after they are refitted.

Method (daBNN row): the same graph and phone on ``runtime="dabnn"``, ``cores=1``: every layer by daBNN's kernels
(binary direct conv / BGEMM instruction counts, Eigen's GEBP for the float convs, im2col memcpy calls, the
unfused Affine of every batch norm), the memcpy-call cycles fitted on the ``dabnn_3x3_64`` single-layer row, and a
fixed cost per daBNN layer borrowed from hwsim's ncnn Cortex-A72 fit (``layer_fixed_cycles``); the row without
that borrowed cost is reported in the note.

Sensitivity (not the prediction): the Pi 4 rows again with the preset's DRAM bandwidth (12.8 GB/s, the LPDDR4-3200
x 32-bit peak) replaced by the Pi 4's measured STREAM bandwidth, 5.5 GB/s (best of Copy / Scale, one thread, gcc -O3,
headless 4 GB Pi 4; sci-pi.org.uk/bench/stream.html).

Usage::

    python benchmarks/bench_lce.py [--out benchmarks/results/lce]
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import hwsim
import mapping
import nets
from hwsim.specs import load_preset
from mapping.graph import Op

ROOT = Path(__file__).resolve().parents[1]
LCE_COMMIT = "larq/compute-engine@e6860fcfda03a21eef157a181cc2351cef7a22bc README.md"
DABNN_README = "JDAI-CV/dabnn@d93aa950788319d92ade545eb7fe7ac6f1589fd1 README.md"
# (zoo net, device, threads, published ms, engine, source)
PUBLISHED = [
    ("quicknet-small", "rpi4", 1, 27.7, "LCE", LCE_COMMIT), ("quicknet", "rpi4", 1, 45.0, "LCE", LCE_COMMIT),
    ("quicknet-large", "rpi4", 1, 77.0, "LCE", LCE_COMMIT), ("quicknet-small", "rpi4", 4, 12.1, "LCE", LCE_COMMIT),
    ("quicknet", "rpi4", 4, 20.8, "LCE", LCE_COMMIT), ("quicknet-large", "rpi4", 4, 31.7, "LCE", LCE_COMMIT),
    ("quicknet-small", "pixel1", 1, 16.8, "LCE", LCE_COMMIT), ("quicknet", "pixel1", 1, 25.5, "LCE", LCE_COMMIT),
    ("quicknet-large", "pixel1", 1, 44.2, "LCE", LCE_COMMIT), ("birealnet18", "pixel1", 1, 41.6, "LCE", LCE_COMMIT),
    ("birealnet18", "pixel1", 1, 61.3, "daBNN", DABNN_README),
]
DABNN_BENCH = "JDAI-CV/dabnn@d93aa950788319d92ade545eb7fe7ac6f1589fd1 docs/benchmark_and_comparison.md"
# (benchmark, published ms, input channels, output channels, kernel, stride, output height = width)
DABNN_KERNELS = [("dabnn_3x3_64", 1.306391, 64, 64, 3, 1, 56), ("dabnn_3x3_128", 0.958388, 128, 128, 3, 1, 28),
                 ("dabnn_3x3_256", 0.975123, 256, 256, 3, 1, 14), ("dabnn_3x3_256_s2", 0.268310, 256, 256, 3, 2, 7),
                 ("dabnn_3x3_512", 1.281832, 512, 512, 3, 1, 7), ("dabnn_5x5_256", 3.661928, 256, 256, 5, 1, 14)]
FIT_KERNEL = "dabnn_3x3_64"
PIXEL1_CLOCK_HZ = 2.15e9  # Snapdragon 821 in the Pixel 1: 2x Kryo at 2.15 GHz (Google Pixel spec sheet, 2016)
RPI4_STREAM_BW = 5.5e9  # B/s: Pi 4 STREAM Copy 5527 / Scale 5562 MB/s, one thread (sci-pi.org.uk/bench/stream.html)
FITTED = ("nothing to these tables (binary layers: LCE's default BGEMM path, its instruction counts, SWOG issue rates "
          "and GCC's Cortex-A57/A72 pipeline model, with the per-layer fixed cost and thread contention of the "
          "runtime; float layers: hwsim's xnnpack Cortex-A72 runtime parameters; the runtime's figures are fitted on "
          "ncnn boards without binary nets; daBNN row: daBNN's kernels, one memcpy-call cost fitted on daBNN's "
          "single-layer dabnn_3x3_64 benchmark, the per-layer fixed cost borrowed from the ncnn Cortex-A72 fit)")


def specs() -> dict:
    a72 = replace(load_preset("cpu/cortex-a72"), runtime="xnnpack")
    pixel1 = replace(a72, name="pixel1 (Kryo as cortex-a72 @ 2.15 GHz)", clock_hz=PIXEL1_CLOCK_HZ)
    return {"rpi4": a72, "pixel1": pixel1,
            "pixel1-dabnn": replace(pixel1, name="pixel1 (Kryo as cortex-a72 @ 2.15 GHz), daBNN", runtime="dabnn",
                                    cores=1)}


def predict(graph, spec, threads: int) -> dict:
    rep = hwsim.simulate(graph, spec, threads=threads).report
    parts: dict[str, float] = defaultdict(float)
    for lr in rep.layers:
        k = lr.extra["kernel"]
        parts["binary" if k in ("binary-gemm", "bitpack", "fused") else "float"] += lr.latency_s * 1e3
        parts["overhead"] += lr.extra["overhead_s"] * 1e3
    return {"ms": rep.latency_s * 1e3, "binary_ms": parts["binary"], "float_ms": parts["float"],
            "overhead_ms": parts["overhead"]}


def _kernel_graph(cin: int, cout: int, k: int, stride: int, out_hw: int):
    import torch.nn as nn

    from nets.layers import BinaryConv2d, BinarySign

    g = mapping.trace(nn.Sequential(BinarySign(), BinaryConv2d(cin, cout, k, stride=stride, padding=k // 2)),
                      (1, cin, out_hw * stride, out_hw * stride))
    return g, next(n for n in g.nodes if n.op == Op.CONV2D)


def dabnn_kernels(spec) -> dict:
    """daBNN's single-layer benchmarks against hwsim's kernel model (``bconv_kernel_cycles`` without pad / im2col, as
    benchmark/benchmark.cpp times them), and the refit of ``COPY_CALL_CYCLES`` on ``FIT_KERNEL``."""
    from hwsim.cpu.runtime import dabnn

    rows, refit = [], None
    for name, ms, cin, cout, k, stride, hw in DABNN_KERNELS:
        g, node = _kernel_graph(cin, cout, k, stride, hw)
        cyc = dabnn.bconv_kernel_cycles(g, node, spec, pad=False, im2col=False)
        pred = cyc / spec.clock_hz * 1e3
        if name == FIT_KERNEL:  # its im2col: one call per output pixel and tap (hw^2 x 9)
            calls = hw * hw * k * k
            refit = (ms * 1e-3 * spec.clock_hz - (cyc - calls * dabnn.COPY_CALL_CYCLES)) / calls
        rows.append({"benchmark": name, "path": dabnn.bconv_method(g, node), "published_ms": ms,
                     "predicted_ms": round(pred, 3), "error_pct": round(100 * (pred - ms) / ms, 1),
                     "role": "fit" if name == FIT_KERNEL else "validation"})
    val = [abs(r["error_pct"]) for r in rows if r["role"] == "validation"]
    return {"rows": rows, "copy_call_cycles": dabnn.COPY_CALL_CYCLES, "copy_call_cycles_refit": round(refit, 2),
            "validation_median_abs_error_pct": statistics.median(val), "source": DABNN_BENCH}


def run() -> dict:
    sp = specs()
    stream = replace(sp["rpi4"], dram_bw_bytes_s=RPI4_STREAM_BW)
    graphs = {n: mapping.trace(nets.get(n), (1, 3, 224, 224)) for n in sorted({r[0] for r in PUBLISHED})}
    rows, no_fixed = [], None
    for net, dev, th, ms, engine, src in PUBLISHED:
        p = predict(graphs[net], sp[dev + ("-dabnn" if engine == "daBNN" else "")], th)
        if engine == "daBNN":
            no_fixed = (p["ms"] - p["overhead_ms"], ms)
        row = {"net": net, "device": dev, "threads": th, "engine": engine, "published_ms": ms,
               "predicted_ms": round(p["ms"], 2), "binary_ms": round(p["binary_ms"], 2),
               "float_ms": round(p["float_ms"], 2), "error_pct": round(100 * (p["ms"] - ms) / ms, 1), "source": src}
        if dev == "rpi4":
            q = predict(graphs[net], stream, th)["ms"]
            row |= {"stream_bw_ms": round(q, 2), "stream_bw_error_pct": round(100 * (q - ms) / ms, 1)}
        rows.append(row)
    groups = {"rpi4 (LCE)": [r for r in rows if r["device"] == "rpi4"],
              "pixel1 (LCE)": [r for r in rows if r["device"] == "pixel1" and r["engine"] == "LCE"],
              "pixel1 (daBNN)": [r for r in rows if r["engine"] == "daBNN"]}
    summary = {k: {"median_abs_error_pct": statistics.median(abs(r["error_pct"]) for r in v),
                   "within_25pct": sum(abs(r["error_pct"]) <= 25 for r in v), "rows": len(v)}
               for k, v in groups.items()}
    summary["rpi4 (LCE)"]["median_abs_error_pct_at_stream_bw"] = statistics.median(
        abs(r["stream_bw_error_pct"]) for r in groups["rpi4 (LCE)"])
    at_stream = summary["rpi4 (LCE)"]["median_abs_error_pct_at_stream_bw"]
    note = (f"Sensitivity, not the prediction: with the Pi 4's measured STREAM bandwidth ({RPI4_STREAM_BW / 1e9:g} "
            "GB/s, sci-pi.org.uk/bench/stream.html) in place of the preset's LPDDR4 peak (12.8 GB/s), the rpi4 rows' "
            f"median abs error is {at_stream:.1f} % (per row: lce.json, stream_bw_error_pct).")
    dk = dabnn_kernels(sp["pixel1-dabnn"])
    dk |= {"net_without_fixed_ms": round(no_fixed[0], 2),
           "net_without_fixed_error_pct": round(100 * (no_fixed[0] - no_fixed[1]) / no_fixed[1], 1)}
    note += (f" daBNN row without the per-layer fixed cost borrowed from ncnn: {dk['net_without_fixed_ms']:.1f} ms "
             f"({dk['net_without_fixed_error_pct']:+.1f} %).")
    return {"rows": rows, "summary": summary, "fitted": FITTED, "note": note, "dabnn_kernels": dk}


def markdown(res: dict) -> str:
    out = ["# Binary nets on Arm CPUs: hwsim vs Larq Compute Engine / daBNN", "",
           "Generated by `benchmarks/bench_lce.py`. Fitted: " + res["fitted"] + ".", "",
           "| net | device | threads | engine | published ms | predicted ms | binary ms | float ms | error % "
           "| at STREAM bw: ms | error % |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        sb = (f"{r['stream_bw_ms']} | {r['stream_bw_error_pct']:+.1f}" if "stream_bw_ms" in r else "- | -")
        out.append(f"| {r['net']} | {r['device']} | {r['threads']} | {r['engine']} | {r['published_ms']} | "
                   f"{r['predicted_ms']} | {r['binary_ms']} | {r['float_ms']} | {r['error_pct']:+.1f} | {sb} |")
    out += ["", "| group | rows | within 25 % | median abs error % |", "|---|---|---|---|"]
    for k, s in res["summary"].items():
        out.append(f"| {k} | {s['rows']} | {s['within_25pct']} | {s['median_abs_error_pct']:.1f} |")
    dk = res["dabnn_kernels"]
    out += ["", "daBNN's single-layer binary-conv benchmarks (Pixel 1, one thread; " + dk["source"] + ") against "
            "hwsim's daBNN kernel model (`runtime=\"dabnn\"`, kernel alone as daBNN's benchmark times it):", "",
            "| benchmark | path | published ms | predicted ms | error % | role |", "|---|---|---|---|---|---|"]
    out += [f"| {r['benchmark']} | {r['path']} | {r['published_ms']} | {r['predicted_ms']} | {r['error_pct']:+.1f} | "
            f"{r['role']} |" for r in dk["rows"]]
    out += ["", f"Fitted on the 'fit' row: one im2col memcpy call = {dk['copy_call_cycles']} cycles (refit here: "
            f"{dk['copy_call_cycles_refit']}); validation rows' median abs error "
            f"{dk['validation_median_abs_error_pct']:.1f} %. The Bi-Real Net-18 daBNN row without the per-layer "
            f"fixed cost borrowed from ncnn: {dk['net_without_fixed_ms']} ms ({dk['net_without_fixed_error_pct']:+.1f} %)."]
    out += ["", "'at STREAM bw': a sensitivity, not the prediction — the Pi 4 rows with the preset's DRAM bandwidth "
            f"(LPDDR4 peak) replaced by the Pi 4's measured STREAM bandwidth, {RPI4_STREAM_BW / 1e9:g} GB/s "
            "(sci-pi.org.uk/bench/stream.html); median abs error then "
            f"{res['summary']['rpi4 (LCE)']['median_abs_error_pct_at_stream_bw']:.1f} %.", "",
            "Sources: " + LCE_COMMIT + "; " + DABNN_README + "; " + DABNN_BENCH + ". pixel1 = Kryo approximated by the cortex-a72 "
            "record at 2.15 GHz (no Kryo record in hwsim; its double-slot Q-form instructions are the A72's, and "
            "the phone's memory is the Pi 4 preset's)."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lce"))
    args = ap.parse_args()
    res = run()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
