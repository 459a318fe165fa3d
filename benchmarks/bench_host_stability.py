"""How steady is this machine? Repeated fresh-process timings of one small net and one small conv.

The host validation (``bench_cpu_vs_host.py``) compares the cost model with medians of real runs; on a shared
virtual machine those medians move with what the host does meanwhile. This benchmark measures that directly:
``--processes`` fresh Python processes, started ``--gap-s`` apart, each time ResNet-20 (CIFAR, batch 1; as the
validation times a net) and the calibration's machine-state probe layer (a 12 -> 20 channel 3x3 im2col conv on
36x36, ``hwsim.cpu.calibrate.probe_time``) at one thread and at all threads, with the allocator keeping freed
memory as in the validation, between two core-to-core round trips (``hwsim.cpu.cores.round_trip_s``: where the
hypervisor had placed the threads).

Writes ``benchmarks/results/host_stability.json``: per process the medians; per case the lowest, highest and
highest/lowest ratio over the processes.

    python benchmarks/bench_host_stability.py [--processes 8] [--gap-s 5]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(threads: list[int]) -> dict[str, float]:
    import numpy as np
    import torch
    from bench_cpu_vs_host import measure
    from torch.fx.experimental.optimization import fuse

    import nets
    from hwsim.cpu.calibrate import probe_time
    from hwsim.cpu.cores import round_trip_s

    net = fuse(nets.get("resnet20").eval())
    x = torch.randn(1, 3, 32, 32)
    out = {"round_trip_before_s": round_trip_s()}  # where the hypervisor placed the two threads (hwsim.cpu.cores)
    for t in threads:
        out[f"resnet20_t{t}"] = float(np.median(measure(net, x, t, budget_s=0.3)["wall"]))
        out[f"conv12x20_36x36_t{t}"] = probe_time(t)  # the calibration's machine-state probe layer
    out["round_trip_after_s"] = round_trip_s()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--gap-s", type=float, default=5.0)
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child([int(t) for t in args.child.split(",")])))
        return 0
    from hwsim.cpu.calibrate import KEEP_FREED_MEMORY
    from hwsim.cpu.cores import SPLIT_FACTOR, threads_close

    threads = sorted({1, len(os.sched_getaffinity(0))})
    runs = []
    for i in range(args.processes):
        if i:
            time.sleep(args.gap_s)
        out = subprocess.run([sys.executable, __file__, "--child", ",".join(map(str, threads))], capture_output=True,
                             text=True, check=True, env={**KEEP_FREED_MEMORY, **os.environ})
        runs.append({"started_s": round(i * args.gap_s, 1), **json.loads(out.stdout.strip().splitlines()[-1])})
        print(runs[-1], flush=True)
    # whether each process's threads ran close together (hwsim.cpu.cores.threads_close on its two round trips)
    for run, close in zip(runs, threads_close([[r["round_trip_before_s"], r["round_trip_after_s"]] for r in runs])):
        run["threads_close"] = close
    cases = {}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        if key in ("started_s", "threads_close") or None in vals:
            continue
        cases[key] = {"min_s": min(vals), "max_s": max(vals), "max_over_min": max(vals) / min(vals)}
    res = {"date_utc": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}", "niceness": os.nice(0),
           "threads": threads, "processes": args.processes, "gap_s": args.gap_s, "split_factor": SPLIT_FACTOR,
           "cases": cases, "runs": runs,
           "method": "fresh process per run; ResNet-20: median of up to 50 runs after 3 warm-up runs (bench_cpu_vs_host.measure); probe layer: median of 41 runs after 3 warm-up runs (hwsim.cpu.calibrate.probe_time)"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "host_stability.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(cases, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
