"""Time ``mapping.trace`` and the cost-only simulation of every zoo net at its default input shape.

Cost-only: ``hwsim.simulate(graph, preset)`` without an input (median of ``--repeats`` after one
warm-up) on a CPU and an IMC preset; the XNOR engine for binary nets.

For each net: build it once (``nets.get``, timed), trace once to warm up, then trace ``--repeats``
times and report the median and minimum wall time, with the graph's node count and the IR's
parameter/MAC totals. Single process; torch intra-op threads left at their default (tracing runs
one real forward pass through ``torch.fx.Interpreter`` for shapes, so large nets cost mostly that
forward pass). The machine's load averages at start and end are recorded: timings taken while other
processes compete for the cores are inflated accordingly.

Usage::

    python benchmarks/bench_zoo_trace.py [--repeats 3] [--out benchmarks/results/zoo_trace.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import hwsim
import nets
from mapping import trace
from mapping.analysis import totals


def bench(name: str, repeats: int) -> dict:
    """Build time, trace times (s), nodes and IR totals for net ``name``."""
    shape = nets.info(name).input_shape
    t0 = time.perf_counter()
    model = nets.get(name)
    build_s = time.perf_counter() - t0
    graph = trace(model, shape)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = trace(model, shape)
        times.append(time.perf_counter() - t0)
    t = totals(graph)
    presets = ["cpu/cortex-a72", "imc/isaac"] + (["fpga/zc706"] if "binary" in nets.info(name).tags else [])
    cost = {}
    for hw in presets:
        hwsim.simulate(graph, hw)  # warm-up (preset load, first-call compilation)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            hwsim.simulate(graph, hw)
            ts.append(time.perf_counter() - t0)
        cost[hw] = round(statistics.median(ts), 4)
    return {"name": name, "cost_only_median_s": cost, "input_shape": list(shape), "build_s": round(build_s, 4),
            "trace_median_s": round(statistics.median(times), 4), "trace_min_s": round(min(times), 4),
            "repeats": repeats, "nodes": len(graph.nodes), "params": t.params, "macs": t.macs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zoo_trace.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    rows = []
    for name in nets.names():
        rows.append(bench(name, args.repeats))
        r = rows[-1]
        print(f"{name:<14} nodes {r['nodes']:>4}  build {r['build_s']:7.3f} s  trace median {r['trace_median_s']:7.3f} s"
              f"  cost-only {r['cost_only_median_s']}")
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                          "cpus": os.cpu_count(),
                          # other processes share this machine: 1/5/15-min load averages at start and end
                          "loadavg_start": [round(v, 2) for v in load_before],
                          "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
              "nets": rows,
              "total_trace_median_s": round(sum(r["trace_median_s"] for r in rows), 3),
              "max_trace_plus_cost_s": round(max(r["trace_median_s"] + max(r["cost_only_median_s"].values())
                                                 for r in rows), 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(rows)} nets -> {args.out}; total median trace time {result['total_trace_median_s']} s; "
          f"slowest trace + cost-only simulation {result['max_trace_plus_cost_s']} s")


if __name__ == "__main__":
    main()
