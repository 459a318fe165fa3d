"""hwsim's FPGA dataflow model against measured FINN / BNN-PYNQ designs.

For every design of ``../shared/data/finn_measured.csv`` whose folding (PE, SIMD per MVAU / VVAU) is published
(``../shared/data/finn_foldings.md``) and whose clock is known, hwsim predicts the throughput (clock / II) and the
pipeline latency from that folding and clock alone, and compares them with the measured figures; where the CSV
holds a Vivado utilization report of the design, the LUT / BRAM18 / DSP estimates are compared with it.
Nothing is fitted: every constant is FINN's (``hwsim/xnor/dataflow.py``), so every row is out of sample.

Writes ``benchmarks/results/finn_measured.json`` and ``.md``. Run: ``python benchmarks/bench_finn_measured.py``.
``benchmarks/bench_xnor.py`` checks the cycle counts per layer against the published BNN-PYNQ figures; this
benchmark adds the measured rates.

Conventions:
* k-bit layers run natively (``kbit="native"``): FINN's and BNN-PYNQ's MVAUs multiply k-bit operands in one pass.
* A measured rate with a large batch (>= 100 images) is compared with the steady-state rate clock / II; a
  single-image call (batch 1) is compared as a latency, which includes the host driver's call overhead.
* Rows without a clock, without a published folding (ResNet-50: the historical folding lists its MVAUs in an order
  that does not follow the network's; UNSW-NB15: folding chosen by FINN at build time, not published; LogicNets:
  no PE/SIMD) or with a folding that does not match the board are skipped, each with its reason in the output.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hwsim  # noqa: E402
import mapping  # noqa: E402
from nets.finn import finn_cnv, finn_fc  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT_JSON = ROOT / "benchmarks" / "results" / "finn_measured.json"
OUT_MD = OUT_JSON.with_suffix(".md")

# (PE, SIMD) per MVAU in network order, from finn_foldings.md (BNN-PYNQ config.h lists (SIMD, PE): swapped here)
FOLD = {
    "bnnpynq-cnvW1A1": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)],
    "bnnpynq-cnvW2A2": [(8, 3), (16, 16), (8, 16), (8, 16), (4, 8), (1, 8), (1, 2), (2, 2), (4, 1)],
    "bnnpynq-lfc": [(32, 64), (64, 32), (32, 64), (16, 8)],
    "fe-tfc": [(16, 49), (8, 8), (8, 8), (10, 8)],
    "fe-cnv-w1a1": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (5, 1)],
    "fe-gtsrb": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)],
    "fe-kws": [(32, 10), (32, 8), (32, 8), (1, 8)],
    "aup-tfc-w1a1": [(32, 784), (32, 64), (32, 64), (5, 64)],
    "aup-tfc-w1a2": [(8, 784), (8, 64), (8, 64), (2, 64)],
    "aup-tfc-w2a2": [(16, 392), (8, 64), (8, 64), (2, 64)],
    "aup-cnv-w1a1": [(16, 27), (16, 576), (4, 576), (8, 576), (1, 576), (1, 128), (1, 32), (1, 64), (1, 2)],
    "aup-cnv-w1a2": [(2, 27), (2, 576), (1, 576), (1, 576), (1, 96), (1, 18), (1, 4), (1, 8), (1, 1)],
    "aup-cnv-w2a2": [(2, 27), (4, 288), (1, 576), (1, 576), (1, 96), (1, 18), (1, 4), (1, 8), (1, 1)],
    "aup-kws": [(32, 1), (32, 8), (32, 8), (1, 8)],
}


def _mobilenet_zcu104() -> list[tuple[int, int]]:
    """finn-examples build/mobilenet-v1 ZCU104 folding: stem MVAU, then (VVAU PE, SIMD 1) and pointwise MVAU per
    block, then the classifier."""
    vvau = [16, 8, 16, 4, 8, 2, 4, 4, 4, 4, 4, 1, 2]
    pw = [(8, 8), (16, 8), (32, 8), (16, 8), (32, 8), (16, 8), (32, 8), (32, 8), (32, 8), (32, 8), (32, 8),
          (16, 8), (32, 8)]
    fold = [(16, 3)]
    for pe, p in zip(vvau, pw):
        fold += [(pe, 1), p]
    return fold + [(1, 16)]


FOLD["fe-mobilenet-zcu104"] = _mobilenet_zcu104()

# finn-examples build/resnet50 U250 folding in effect 2021-01 .. 2024-03 (finn_foldings.md): the stem
# (ConvDoublePacked_Batch_0) then MatrixVectorActivation_k in the file's order; per block FINN lists the shortcut
# conv first, the network (and hwsim's trace) lists it after the branch's three convs
_RN50_STEM = (64, 3)
_RN50_LIST = [(32, 32), (8, 32), (32, 64), (32, 32)] + [(32, 32), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 64)] + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 3 + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 5 + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 2 + [(1, 64)]


def _resnet50_folding() -> list[tuple[int, int]]:
    """The historical folding in hwsim's MVAU order (per downsampling block: conv1, conv2, conv3, shortcut)."""
    fold, i = [_RN50_STEM], 0
    for blocks in (3, 4, 6, 3):
        for b in range(blocks):
            if b == 0:
                sc, c1, c2, c3 = _RN50_LIST[i:i + 4]
                fold += [c1, c2, c3, sc]
                i += 4
            else:
                fold += _RN50_LIST[i:i + 3]
                i += 3
    return fold + _RN50_LIST[i:]

# net builders (zoo names, or topologies the zoo does not register)
NETS = {
    "lfc-w1a2": lambda: mapping.trace(finn_fc(1024, 3, 10, wbits=1, abits=2, in_bits=1), (1, 1, 28, 28)),
    "cnv-w1a1-gtsrb": lambda: mapping.trace(finn_cnv(1, 43), (1, 3, 32, 32)),
}

# design -> (net, folding key, CSV row selector: model name prefix, board substring)
DESIGNS = [
    ("BNN-PYNQ cnvW1A1", "cnv-w1a1", "bnnpynq-cnvW1A1", "CNV-W1A1 (BNN-PYNQ cnvW1A1)", ""),
    ("BNN-PYNQ cnvW1A2", "cnv-w1a2", "bnnpynq-cnvW1A1", "CNV-W1A2 (BNN-PYNQ cnvW1A2)", ""),
    ("BNN-PYNQ cnvW2A2", "cnv-w2a2", "bnnpynq-cnvW2A2", "CNV-W2A2 (BNN-PYNQ cnvW2A2)", ""),
    ("BNN-PYNQ lfcW1A1", "lfc-w1a1", "bnnpynq-lfc", "LFC-W1A1 (BNN-PYNQ lfcW1A1", ""),
    ("BNN-PYNQ lfcW1A2", "lfc-w1a2", "bnnpynq-lfc", "LFC-W1A2 (BNN-PYNQ lfcW1A2)", ""),
    ("finn-examples tfc-w1a1", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (3-layer FC, BNN-PYNQ topology)", ""),
    ("FINN end-to-end tfc-w1a1", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (FINN end-to-end example)", ""),
    ("finn-examples cnv-w1a1", "cnv-w1a1", "fe-cnv-w1a1", "CNV-w1a1 (VGG-11-like)", ""),
    ("finn-examples cnv-w1a1 GTSRB", "cnv-w1a1-gtsrb", "fe-gtsrb", "CNV-w1a1 GTSRB", ""),
    ("finn-examples kws-mlp-w3a3", "kws-mlp-w3a3", "fe-kws", "KWS MLP w3a3 (3-layer FC)", ""),
    ("finn-examples mobilenet-v1-w4a4 (ZCU104 folding)", "mobilenet-v1-w4a4", "fe-mobilenet-zcu104",
     "MobileNet-v1 w4a4", "187.4981"),
    ("FINN PR #1499 tfc-w1a1 (AUP-ZU3)", "tfc-w1a1", "aup-tfc-w1a1", "bnn-pynq tfc-w1a1", "AUP-ZU3"),
    ("FINN PR #1499 tfc-w1a2 (AUP-ZU3)", "tfc-w1a2", "aup-tfc-w1a2", "bnn-pynq tfc-w1a2", "AUP-ZU3"),
    ("FINN PR #1499 tfc-w2a2 (AUP-ZU3)", "tfc-w2a2", "aup-tfc-w2a2", "bnn-pynq tfc-w2a2", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w1a1 (AUP-ZU3)", "cnv-w1a1", "aup-cnv-w1a1", "bnn-pynq cnv-w1a1", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w1a2 (AUP-ZU3)", "cnv-w1a2", "aup-cnv-w1a2", "bnn-pynq cnv-w1a2", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w2a2 (AUP-ZU3)", "cnv-w2a2", "aup-cnv-w2a2", "bnn-pynq cnv-w2a2", "AUP-ZU3"),
    ("FINN PR #1499 kws-mlp-w3a3 (AUP-ZU3)", "kws-mlp-w3a3", "aup-kws", "kws kwsmlp-w3a3", "AUP-ZU3"),
]
# clock of rows whose CSV clock is empty: PR #1499's test scripts build bnn-pynq / kws at synth_clk_period_ns=10
# (finn_foldings.md section 2)
DEFAULT_CLOCK_MHZ = {"AUP-ZU3": 100.0}
# BNN-PYNQ README utilization (Vivado 2018.2, PYNQ-Z1, whole overlay incl. DMA and interconnect)
UTILIZATION = {"cnv-w1a1": "BNN-PYNQ cnvW1A1: CNV", "cnv-w1a2": "BNN-PYNQ cnvW1A2: CNV",
               "cnv-w2a2": "BNN-PYNQ cnvW2A2: CNV", "lfc-w1a1": "BNN-PYNQ lfcW1A1: LFC",
               "lfc-w1a2": "BNN-PYNQ lfcW1A2: LFC"}
UTIL_FOLD = {"cnv-w1a1": "bnnpynq-cnvW1A1", "cnv-w1a2": "bnnpynq-cnvW1A1", "cnv-w2a2": "bnnpynq-cnvW2A2",
             "lfc-w1a1": "bnnpynq-lfc", "lfc-w1a2": "bnnpynq-lfc"}


NOTES = (
    "BNN-PYNQ lfcW1A1/W1A2 take the same 841 cycles per image at 100 and 300 MHz (a 512-cycle II predicted):",
    "a clock-proportional limit on the fabric outside the modelled layers (data movers, width converters), not",
    "host overhead. finn-examples / FINN TFC rates vary by 2x between notebook runs of one folding (0.68-1.34 M",
    "FPS): driver-bound. The AUP-ZU3 rows (FINN PR #1499) have no clock in the data (100 MHz assumed from the",
    "test scripts) and disagree with their folding files by factors of 4-46 either way.",
)


def _rows() -> list[dict]:
    with open(DATA / "finn_measured.csv", newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _graph(net: str, cache: dict):
    if net not in cache:
        cache[net] = NETS[net]() if net in NETS else hwsim.as_graph(net)
    return cache[net]


def _predict(net: str, fold_key: str, clock_mhz: float, cache: dict):
    spec = dataclasses.replace(hwsim.load_preset("fpga/zc706"), clock_hz=clock_mhz * 1e6)
    return hwsim.simulate(_graph(net, cache), spec, folding=FOLD[fold_key], kbit="native").report


def _err(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def run() -> dict:
    rows, cache, out, skipped, latency = _rows(), {}, [], [], []
    for design, net, fold_key, model, board in DESIGNS:
        for r in rows:
            if not r["model"].startswith(model) or (board and board not in r["board"] + r["clock_mhz"]):
                continue
            clock = _num(r["clock_mhz"]) or next((v for k, v in DEFAULT_CLOCK_MHZ.items() if k in r["board"]), None)
            fps, batch = _num(r["fps"]), _num(r["batch_size"])
            if clock is None or fps is None:
                skipped.append({"row": r["model"], "board": r["board"], "reason": "no clock or no rate"})
                continue
            rep = _predict(net, fold_key, clock, cache)
            base = {"design": design, "net": net, "board": r["board"], "clock_mhz": clock, "batch": batch,
                    "folding": FOLD[fold_key], "source": f"{r['source_repo']}/{r['source_path']}"}
            if batch == 1:  # a single-image call: a latency including the host driver's overhead
                meas = _num(r["latency_us"])
                latency.append({**base, "measured_latency_us": meas, "predicted_latency_us": rep.latency_s * 1e6,
                                "error_pct": _err(rep.latency_s * 1e6, meas)})
                continue
            out.append({**base, "measured_fps": fps, "predicted_fps": rep.fps, "error_pct": _err(rep.fps, fps),
                        "ii_cycles": rep.ii_cycles, "predicted_latency_us": rep.latency_s * 1e6,
                        "measured_us_per_image": _num(r["latency_us"])})
    errs = [abs(x["error_pct"]) for x in out]
    groups = {}
    for x in out:
        groups.setdefault(x["design"].split(" ")[0] + (" AUP-ZU3" if "AUP" in x["design"] else ""), []).append(
            abs(x["error_pct"]))
    return {
        "fps": out, "latency_batch1": latency, "resources": _resources(rows, cache), "skipped": skipped,
        "resnet50_partial": _resnet50(rows, cache),
        "summary": {"designs_rows": len(out), "median_abs_error_pct": statistics.median(errs),
                    "within_10pct": sum(e <= 10 for e in errs), "target_median_pct": 10.0,
                    "median_abs_error_pct_by_source": {k: statistics.median(v) for k, v in groups.items()}},
        "not_validated": ["ResNet-50 w1a2 (U250): its stem (ConvDoublePacked) is not modelled; see the partial "
                          "comparison", "UNSW-NB15 MLP: no published folding",
                          "LogicNets: no PE/SIMD folding (LUT-mapped netlists)",
                          "MobileNet-v1 rows at 100 MHz / 'not recorded' boards: the board and folding file are "
                          "not identified", "FINN'17 paper-abstract rows: no folding in the data"],
    }


def _resnet50(rows: list[dict], cache: dict) -> dict:
    """ResNet-50 W1A2 on the U250 with its historical folding: the bottleneck MVAUs are modelled, the stem
    (ConvDoublePacked, a DSP-packed 8-bit layer whose cycle count FINN does not document) is not; reported, not
    counted in the median."""
    from hwsim.xnor.dataflow import build_design
    from mapping.xnor import map_xnor

    design = build_design(map_xnor(_graph("resnet50-w1a2", cache)), _resnet50_folding(), decomposed=False)
    stem = next(r for r in design.layers if r.kind == "mvau")
    stem_rows = {stem.name, stem.name + ":swg", stem.name + ":pad"}
    # the streaming blocks (adds, thresholding, duplication) took their PE to meet the stem's II; FINN's list gives
    # them PE 32, which keeps them below the bottleneck MVAUs: the II is that of the MVAUs, windows and pools
    rest = max(r.cycles for r in design.layers if r.name not in stem_rows
               and r.kind in ("mvau", "vvau", "swg", "fmpad", "pool"))
    meas = [(float(r["clock_mhz"]), float(r["fps"])) for r in rows if r["model"].startswith("ResNet-50 w1a2")]
    return {"design": "finn-examples resnet50-w1a2 (U250, folding of 2021-01..2024-03)",
            "stem_cycles_mvau_formula": stem.cycles, "ii_without_stem_cycles": rest,
            "rows": [{"clock_mhz": c, "measured_fps": f, "predicted_fps_without_stem": c * 1e6 / rest,
                      "error_pct_without_stem": _err(c * 1e6 / rest, f),
                      "predicted_fps_with_stem_as_mvau": c * 1e6 / max(rest, stem.cycles)} for c, f in meas]}


def _resources(rows: list[dict], cache: dict) -> list[dict]:
    res = []
    for net, model in UTILIZATION.items():
        r = next(x for x in rows if x["model"].startswith(model))
        rep = _predict(net, UTIL_FOLD[net], 100.0, cache)
        bram = (_num(r["bram18"]) or 0) + 2 * (_num(r["bram36"]) or 0)
        meas = {"luts": _num(r["luts"]), "bram18": bram, "dsps": _num(r["dsps"])}
        pred = {"luts": rep.luts, "bram18": rep.bram18, "dsps": rep.dsps}
        res.append({"design": model, "net": net, "measured": meas, "predicted": pred,
                    "gap_pct": {k: _err(pred[k], meas[k]) if meas[k] else None for k in meas},
                    "scope": "Vivado: whole overlay (DMA, interconnect, FIFOs); hwsim: MVAUs, window generators, "
                             "pools (no DSPs modelled)"})
    return res


def _md(d: dict) -> str:
    s = d["summary"]
    lines = ["# hwsim's FPGA dataflow model vs measured FINN / BNN-PYNQ designs", "",
             "Predicted from each design's published folding and clock (`kbit=\"native\"`); nothing fitted. "
             "Generated by `benchmarks/bench_finn_measured.py` from `shared/data/finn_measured.csv`.", "",
             f"Median |error| of the throughput over {s['designs_rows']} measured rows: "
             f"**{s['median_abs_error_pct']:.1f} %** (target {s['target_median_pct']:.0f} %); "
             f"{s['within_10pct']} rows within 10 %.", "",
             "| design | board | clock MHz | batch | measured FPS | predicted FPS | error % | II cycles |",
             "|---|---|---|---|---|---|---|---|"]
    for x in d["fps"]:
        lines.append(f"| {x['design']} | {x['board'][:28]} | {x['clock_mhz']:g} | {x['batch'] or '-'} | "
                     f"{x['measured_fps']:.4g} | {x['predicted_fps']:.4g} | {x['error_pct']:+.1f} | {x['ii_cycles']} |")
    lines += ["", "Median |error| by source: " + ", ".join(f"{k} {v:.1f} %" for k, v in
                                                            s["median_abs_error_pct_by_source"].items()), "",
              "## Single-image latency (includes the host driver's call overhead)", "",
              "| design | board | measured us | predicted pipeline us | error % |", "|---|---|---|---|---|"]
    for x in d["latency_batch1"]:
        lines.append(f"| {x['design']} | {x['board'][:28]} | {x['measured_latency_us']:.4g} | "
                     f"{x['predicted_latency_us']:.4g} | {x['error_pct']:+.1f} |")
    lines += ["", "## Resources vs the Vivado utilization reports (PYNQ-Z1)", "",
              "| design | LUT meas / pred (gap %) | BRAM18 meas / pred (gap %) | DSP meas / pred |", "|---|---|---|---|"]
    for x in d["resources"]:
        m, p, g = x["measured"], x["predicted"], x["gap_pct"]
        lines.append(f"| {x['design']} | {m['luts']:.0f} / {p['luts']} ({g['luts']:+.0f}) | {m['bram18']:.0f} / "
                     f"{p['bram18']} ({g['bram18']:+.0f}) | {m['dsps']:.0f} / {p['dsps']} |")
    rn = d["resnet50_partial"]
    lines += ["", f"## {rn['design']} (partial, not in the median)", "",
              f"Bottleneck MVAUs, window generators and pools: II {rn['ii_without_stem_cycles']} cycles; the stem by the "
              f"MVAU formula would take {rn['stem_cycles_mvau_formula']} cycles (its DSP packing is not modelled).",
              "", "| clock MHz | measured FPS | predicted without stem | error % | with stem as an MVAU |",
              "|---|---|---|---|---|"]
    for r in rn["rows"]:
        lines.append(f"| {r['clock_mhz']:g} | {r['measured_fps']:.4g} | {r['predicted_fps_without_stem']:.4g} | "
                     f"{r['error_pct_without_stem']:+.1f} | {r['predicted_fps_with_stem_as_mvau']:.4g} |")
    lines += ["", "Scope of the resource comparison: " + d["resources"][0]["scope"] + ".", "",
              "Not validated: " + "; ".join(d["not_validated"]) + ".", "", "Notes: " + " ".join(NOTES)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    result = run()
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(result, indent=2))
    OUT_MD.write_text(_md(result))
    print(_md(result))
    print(f"wrote {OUT_JSON} and {OUT_MD}")
