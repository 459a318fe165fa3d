"""Whole-network time of the functional CPU target (fp32) against torch eval, single thread.

What is timed: ``hwsim.simulate(graph, cpu/host, x=...)`` runs ``hwsim.functional.run`` on the graph with
batch norm folded (``hwsim/cpu/simulate.py``); the fold is done once, outside the timing, as the simulator
caches it. torch runs ``model.eval()`` under ``torch.inference_mode()`` on the same input. Both one thread
(``torch.set_num_threads(1)``, ``numba.set_num_threads(1)``). Every net's output is checked against torch's
(max abs error relative to the output's scale, < 1e-3) before its time is kept.

Statistic: the host's 2 cores are shared with other jobs, so each net runs ``REPEATS`` rounds, hwsim and torch
alternating, and the minimum of each is kept (the least disturbed run); the 1-minute load average and the CPU
(``benchmarks/_host.py``, clock measured) are recorded. Per-layer-kind breakdown: two extra hwsim runs with every
kernel wrapped by a timer, summed per kind, the minimum per kind kept (convs split into kxk stride 1 / strided / depthwise / 1x1
/ other).

Writes ``benchmarks/results/cpu_functional_speed.json`` and ``.md``.
Run: ``python benchmarks/bench_cpu_functional.py [--nets resnet18,vgg16] [--batches 1,8] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS (linear): one thread
    os.environ[_var] = "1"

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _host  # noqa: E402

from hwsim.functional import FP32_KERNELS, run  # noqa: E402
from mapping.graph import Op  # noqa: E402
from mapping.passes.fold_bn import fold_bn_cached  # noqa: E402
from mapping.trace import trace  # noqa: E402
from nets import registry  # noqa: E402

OUT = Path(__file__).parent / "results" / "cpu_functional_speed"
NETS = ["resnet18", "resnet50", "mobilenetv2", "shufflenetv2", "efficientnet-b0", "mobilenetv3-large", "vgg16"]
BATCHES = [1, 8]
REPEATS = 3
TARGET = 1.3  # issue 21: hwsim time within 1.3x of torch's


def layer_kind(node) -> str:
    """The kind a node's time is booked under (convs by shape, everything else by op)."""
    if node.op != Op.CONV2D:
        return node.op.value
    a = node.attrs
    if a.groups > 1:
        return "conv dw" if a.depthwise else "conv grouped"
    if tuple(a.kernel) == (1, 1):
        return "conv 1x1"
    return "conv strided" if max(a.stride) > 1 else "conv kxk s1"


def kind_breakdown(g, x: np.ndarray, runs: int = 2) -> dict[str, float]:
    """Seconds per layer kind of a run of ``g`` on ``x`` (each kernel call timed), the minimum per kind
    over ``runs`` runs (a shared host)."""
    best: dict[str, float] = {}
    for _ in range(runs):
        acc: dict[str, float] = defaultdict(float)

        def timed(fn, acc=acc):
            def call(graph, node, xs):
                t = time.perf_counter()
                y = fn(graph, node, xs)
                acc[layer_kind(node)] += time.perf_counter() - t
                return y
            return call

        run(g, x, kernels={op: timed(fn) for op, fn in FP32_KERNELS.items()}, progress=False)
        best = {k: min(v, best.get(k, float("inf"))) for k, v in acc.items()}
    return dict(sorted(best.items(), key=lambda kv: -kv[1]))


def net_row(name: str, batch: int, repeats: int) -> dict:
    """Time one net at one batch size (outputs checked against torch first)."""
    model = registry.get(name).eval()
    info = registry.info(name)
    shape = (batch,) + tuple(info.input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    g = fold_bn_cached(trace(model, shape, name, verify=False))
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        ref = model(xt).numpy()
    got = run(g, x, progress=False)[0]
    err = float(np.abs(got - ref).max() / max(1e-6, float(np.abs(ref).max())))
    if err > 1e-3:
        raise AssertionError(f"{name} batch {batch}: hwsim output differs from torch (relative error {err:.2e})")
    best_h = best_t = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run(g, x, progress=False)
        best_h = min(best_h, time.perf_counter() - t)
        with torch.inference_mode():
            t = time.perf_counter()
            model(xt)
            best_t = min(best_t, time.perf_counter() - t)
    return {"net": name, "batch": batch, "input": list(shape), "hwsim_s": best_h, "torch_s": best_t,
            "ratio_hwsim_over_torch": best_h / best_t, "within_target": best_h / best_t <= TARGET,
            "max_rel_error": err, "hwsim_seconds_by_kind": kind_breakdown(g, x)}


def markdown(res: dict) -> str:
    """The results as a Markdown table (and the breakdown of the slowest nets)."""
    h = res["host"]
    lines = [f"Functional CPU target (fp32, BN folded) vs torch eval, one thread, {h['model']} ({h['uarch']}, "
             f"{h['clock_ghz']:.2f} GHz), load {res['load_average_1min']['before']:.1f} on "
             f"{res['load_average_1min']['cpus']} CPUs; {res['statistic']}.", "",
             "| net | batch | hwsim (ms) | torch (ms) | hwsim / torch | within 1.3x |", "|---|---|---|---|---|---|"]
    for r in res["results"]:
        lines.append(f"| {r['net']} | {r['batch']} | {1e3 * r['hwsim_s']:.1f} | {1e3 * r['torch_s']:.1f} | "
                     f"{r['ratio_hwsim_over_torch']:.2f} | {'yes' if r['within_target'] else 'no'} |")
    worst = sorted(res["results"], key=lambda r: -r["ratio_hwsim_over_torch"])[:3]
    lines += ["", "Where hwsim's time goes on the three slowest (ms per layer kind):", ""]
    for r in worst:
        parts = ", ".join(f"{k} {1e3 * v:.1f}" for k, v in r["hwsim_seconds_by_kind"].items() if v > 2e-4)
        lines.append(f"- {r['net']} batch {r['batch']} ({r['ratio_hwsim_over_torch']:.2f}x): {parts}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    numba.set_num_threads(1)  # first: before hwsim.kernels started Numba's OpenMP layer, that reset torch's count
    torch.set_num_threads(1)
    host = _host.detect()
    load_before = os.getloadavg()[0]
    rows = []
    for name in a.nets.split(","):
        for b in (int(v) for v in a.batches.split(",")):
            rows.append(net_row(name, b, a.repeats))
            r = rows[-1]
            print(f"{name} b{b}: hwsim {1e3 * r['hwsim_s']:.1f} ms, torch {1e3 * r['torch_s']:.1f} ms, "
                  f"{r['ratio_hwsim_over_torch']:.2f}x", flush=True)
    res = {"threads": 1, "host": host.as_dict(),
           "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
           "torch_threads": torch.get_num_threads(),
           "statistic": f"minimum of {a.repeats} alternating runs each (shared host)", "target_ratio": TARGET,
           "torch": torch.__version__, "numba": numba.__version__, "results": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(f"wrote {out}.json/.md")


if __name__ == "__main__":
    main()
