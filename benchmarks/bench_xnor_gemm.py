"""Speed of the xnor-popcount GEMM against torch's fp32 GEMM and int8 ``torch._int_mm``, single thread.

For each logical shape (M x K) @ (K x N) the binary kernel works on bit-packed operands (packing
excluded from the timing, as weights are packed once and activations are produced packed by the
previous layer's thresholding). Ops = 2·M·N·K for every kernel. The kernels are timed interleaved
(xnor, fp32, int8, xnor, ...) ``REPEATS`` times after a warm-up and the best time of each is kept,
so a noisy neighbour slows all of them alike; the load average is recorded with the results.
Writes ``benchmarks/results/xnor_gemm_speed.json``.
Run: ``python benchmarks/bench_xnor_gemm.py``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np
import torch

from hwsim.kernels import binary as B

OUT = Path(__file__).parent / "results" / "xnor_gemm_speed.json"
SHAPES = [(256, 256, 4096), (1024, 1024, 1024), (900, 128, 576), (64, 1024, 1024), (1, 1024, 1024)]
REPEATS = 11


def best_times(fns: list, repeats: int = REPEATS) -> list[float]:
    """Best wall time of each function, timed round-robin after one warm-up call each."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def run() -> list[dict]:
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in SHAPES:
        a_bits = rng.integers(0, 2, (m, k))
        w_bits = rng.integers(0, 2, (n, k))
        pa, pw = B.pack_bits(a_bits), B.pack_bits(w_bits)
        assert np.array_equal(B.xnor_gemm(pa, pw, k), (2 * a_bits - 1) @ (2 * w_bits - 1).T)
        af = torch.from_numpy((2 * a_bits - 1).astype(np.float32))
        wf = torch.from_numpy((2 * w_bits - 1).astype(np.float32).T.copy())
        fns = [lambda pa=pa, pw=pw, k=k: B.xnor_gemm(pa, pw, k), lambda af=af, wf=wf: torch.mm(af, wf)]
        has_int8 = m > 16 and k % 8 == 0 and n % 8 == 0
        if has_int8:
            ai, wi = af.to(torch.int8), wf.to(torch.int8)
            fns.append(lambda ai=ai, wi=wi: torch._int_mm(ai, wi))
        times = best_times(fns)
        t_xnor, t_fp32 = times[0], times[1]
        row = {"M": m, "N": n, "K": k, "ops": 2 * m * n * k, "xnor_s": t_xnor, "torch_fp32_s": t_fp32,
               "xnor_gops": 2 * m * n * k / t_xnor / 1e9, "torch_fp32_gflops": 2 * m * n * k / t_fp32 / 1e9,
               "speedup_vs_fp32": t_fp32 / t_xnor}
        if has_int8:
            t_int8 = times[2]
            row.update(torch_int8_s=t_int8, torch_int8_gops=2 * m * n * k / t_int8 / 1e9,
                       speedup_vs_int8=t_int8 / t_xnor)
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"threads": 1, "machine": platform.processor() or platform.machine(),
                               "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
                               "torch": torch.__version__, "numba": numba.__version__, "results": rows}, indent=2))
    for r in rows:
        extra = f", int8 {r['torch_int8_gops']:.0f} GOP/s -> {r['speedup_vs_int8']:.1f}x" if "torch_int8_s" in r else ""
        print(f"{r['M']}x{r['K']} @ {r['K']}x{r['N']}: xnor {r['xnor_gops']:.0f} GOP/s, fp32 "
              f"{r['torch_fp32_gflops']:.0f} GFLOP/s -> {r['speedup_vs_fp32']:.1f}x{extra}")
    print(f"wrote {OUT}")
