"""Validation of the XNOR dataflow model against published FINN / BNN-PYNQ foldings.

Writes ``benchmarks/results/xnor_validation.json``: for each published design, the folding, the
per-layer cycles hwsim computes, the bottleneck (initiation interval), FPS and latency, next to the
published figure. Run: ``python benchmarks/bench_xnor.py``.

Sources of the published numbers:
* BNN-PYNQ ``bnn/src/network/lfc-pynq/hw/config.h`` (lfcW1A1): (SIMD, PE) = (64,32), (32,64),
  (64,32), (8,16) -> the slowest layer takes 512 cycles (1024x1024 with SIMD 32, PE 64); weight
  memory depths WMEM = 416, 512, 512. Its README's Vivado utilization (whole overlay) is compared
  with hwsim's LUT/BRAM18 estimate (MVAUs and window generators only) as a relative error.
* finn-examples (bnn-pynq folding configuration of tfc-w1a1): (PE, SIMD) = (16,49), (8,8), (8,8),
  (10,8) at 200 MHz: 64 cycles -> 3.125 M FPS.
* BNN-PYNQ ``bnn/src/network/cnvW1A1/hw/config.h``: (SIMD, PE) per layer and its "Ext Latency"
  cycles per MVAU (32400, 28224, 20736, 28800, 20736, 18432, 32768, 32768, 8192; the classifier's
  10 outputs are padded to 64 there, hwsim pads to PE only: 1536); its README's Vivado utilization.
* Umuroglu et al., FINN, FPGA'17, LFC-max on ZC706 at 200 MHz: (SIMD, PE) = (64,128) x 3, (8,16):
  1.5625 M FPS and 2.44 us latency (FINN's latency = sum of the layer cycles).
"""
from __future__ import annotations

import json
from pathlib import Path

import hwsim

OUT = Path(__file__).parent / "results" / "xnor_validation.json"

CASES = [
    dict(name="BNN-PYNQ lfcW1A1", net="lfc-w1a1", preset="fpga/pynq-z1",
         folding=[(32, 64), (64, 32), (32, 64), (16, 8)], published={"bottleneck_cycles": 512},
         # lfc-pynq/hw/config.h: L0..L2 WMEM = 416, 512, 512; lfc-pynq/README.md (Vivado 2016.1 utilization of
         # the whole overlay, incl. DMA/FIFOs): 30,249 LUTs, 212 RAMB18 + 6 RAMB36 = 224 BRAM18
         published_wmem=[416, 512, 512], published_resources={"luts": 30249, "bram18": 224}),
    dict(name="finn-examples tfc-w1a1 (200 MHz)", net="tfc-w1a1", preset="fpga/zc706",
         folding=[(16, 49), (8, 8), (8, 8), (10, 8)], published={"bottleneck_cycles": 64, "fps": 3.125e6}),
    dict(name="BNN-PYNQ cnvW1A1 (PYNQ-Z1, 100 MHz)", net="cnv-w1a1", preset="fpga/pynq-z1",
         folding=[(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)],
         # cnvW1A1/hw/config.h "Ext Latency" per MVAU (the last layer's MH is padded 10 -> 64 there: 8192)
         published={"bottleneck_cycles": 32768},
         published_mvau_cycles=[32400, 28224, 20736, 28800, 20736, 18432, 32768, 32768, 8192],
         # cnvW1A1/README.md (Vivado 2018.2, whole overlay): 26,072 LUTs, 76 RAMB36 + 96 RAMB18 = 248 BRAM18
         published_resources={"luts": 26072, "bram18": 248}),
    dict(name="FINN'17 LFC-max (ZC706, 200 MHz)", net="lfc-w1a1", preset="fpga/zc706",
         folding=[(128, 64)] * 3 + [(16, 8)], published={"fps": 1.5625e6, "latency_s": 2.44e-6}),
]


def run() -> list[dict]:
    rows = []
    for c in CASES:
        r = hwsim.simulate(c["net"], c["preset"], folding=c["folding"]).report
        rows.append({
            "design": c["name"], "net": c["net"], "preset": c["preset"], "folding_pe_simd": c["folding"],
            "layer_cycles": [int(lr.cycles) for lr in r.layers], "bottleneck_cycles": r.ii_cycles, "fps": r.fps,
            "latency_finn_sum_s": r.latency_sum_s, "latency_simpy_s": r.latency_s, "luts": r.luts,
            "bram18": r.bram18, "fits_on_chip": r.fits_on_chip, "published": c["published"],
            "wmem_depth": [lr.extra.get("wmem_depth") for lr in r.layers if lr.op == "mvau"],
            "mvau_cycles": [int(lr.cycles) for lr in r.layers if lr.op == "mvau"],
            "published_mvau_cycles": c.get("published_mvau_cycles"),
            "published_wmem": c.get("published_wmem"),
            "published_resources": c.get("published_resources"),
            "resource_rel_error": ({k: (getattr(r, k) - v) / v for k, v in c["published_resources"].items()}
                                   if "published_resources" in c else None),
            "match": all(abs({"bottleneck_cycles": r.ii_cycles, "fps": r.fps, "latency_s": r.latency_sum_s}[k] / v - 1)
                         < 5e-3 for k, v in c["published"].items()),
        })
    return rows


if __name__ == "__main__":
    rows = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": rows}, indent=2))
    for r in rows:
        print(f"{r['design']:<36} cycles {r['layer_cycles']} II {r['bottleneck_cycles']} fps {r['fps']:.4g} "
              f"latency sum {r['latency_finn_sum_s'] * 1e6:.3g} us / SimPy {r['latency_simpy_s'] * 1e6:.3g} us "
              f"published {r['published']} match={r['match']}")
        if r["published_mvau_cycles"]:
            print(f"{'':<36} MVAU cycles {r['mvau_cycles']} (published {r['published_mvau_cycles']})")
        if r["published_resources"]:
            print(f"{'':<36} WMEM {r['wmem_depth']} (published {r['published_wmem']}); LUTs {r['luts']} BRAM18 "
                  f"{r['bram18']} vs Vivado {r['published_resources']} -> relative error {r['resource_rel_error']}")
    print(f"wrote {OUT}")
