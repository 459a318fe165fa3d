"""Speed of the xnor-popcount GEMM and binary convolution against torch fp32 and int8, single thread,
with the fraction of the host's rooflines reached (``benchmarks/_host.py``).

GEMM: for each logical shape (M x K) @ (K x N) the binary kernel works on bit-packed operands
(bit packing excluded from the timing, as weights are packed once and activations are produced packed
by the previous layer's thresholding). ``xnor`` includes the weight *panel* packing that
``xnor_gemm`` does on every call given raw packed rows; ``xnor_prepacked`` passes the panels of
``pack_gemm_weights`` (built once, as a network would).
torch runs ``torch.mm`` (fp32) and ``torch._int_mm`` (int8, oneDNN: VNNI or AMX). Ops = 2·M·N·K for
every kernel.

Binary conv: ResNet-18's 3x3 layers binarised (batch 1, zero padding). ``conv_core`` is the implicit
GEMM on channel-packed activations and packed weights (``_binary_conv.conv_group``: offsets and
weight panels built per call, the zero-padding correction excluded); ``conv_full`` is the public
``binary_conv2d`` on a 0/1 uint8 input and int64 ±1 weights (bit packing of both and the padding
correction included); ``conv_end_to_end`` is ``binary_conv2d`` on the same uint8 input with
weights from ``pack_conv_weights`` (packed once, as a network does: the activation packing pass, the
implicit GEMM, the padding correction and the NCHW output included); all compared with the GEMM of the
same logical shape (M = OH·OW, N = Cout, K = Cin·9, prepacked weight panels).

Timing: after a warm-up, ``REPEATS`` rounds, each running every kernel ``BURST`` times in a row
(round-robin over the kernels, so all see the same machine load), the minimum of each kept: the
host's 2 cores are shared with other jobs, so the minimum is the least disturbed run; the
1-minute load average is recorded. Interleaving single calls instead (torch's 8 MB operands
between two binary calls) cost the binary kernel up to 30 % on this host (cold caches, page
faults of fresh buffers). Writes ``benchmarks/results/xnor_gemm_speed.json``.
Run: ``python benchmarks/bench_xnor_gemm.py``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _host  # noqa: E402

from hwsim.kernels import _binary_conv as BC  # noqa: E402
from hwsim.kernels import _binary_gemm as G  # noqa: E402
from hwsim.kernels import binary as B  # noqa: E402

OUT = Path(__file__).parent / "results" / "xnor_gemm_speed.json"
SHAPES = [(256, 256, 4096), (1024, 1024, 1024), (900, 128, 576), (256, 256, 256), (512, 512, 1000),
          (64, 1024, 1024), (1, 1024, 1024)]
CONVS = [("layer1 64->64 3x3 @56", 64, 64, 56, 1), ("layer2.0.conv1 64->128 3x3/2 @56", 64, 128, 56, 2),
         ("layer2 128->128 3x3 @28", 128, 128, 28, 1), ("layer3 256->256 3x3 @14", 256, 256, 14, 1),
         ("layer4 512->512 3x3 @7", 512, 512, 7, 1)]
REPEATS = 15
BURST = 4


def best_times(fns: list, repeats: int = REPEATS, burst: int = BURST) -> list[float]:
    """Best wall time of each function: after one warm-up call each, ``repeats`` rounds that run
    every function ``burst`` times in a row (caches and allocator warm for it, as inside a network
    layer loop), round-robin over the functions so that all see the same machine load."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            for _ in range(burst):
                t = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t)
    return best


def gemm_row(m: int, n: int, k: int, host: _host.Host, rng: np.random.Generator) -> dict:
    """Time xnor / torch fp32 / torch int8 on one shape (bit-exactness checked first)."""
    a_bits, w_bits = rng.integers(0, 2, (m, k)), rng.integers(0, 2, (n, k))
    pa, pw = B.pack_bits(a_bits), B.pack_bits(w_bits)
    ref = (2 * a_bits - 1) @ (2 * w_bits - 1).T
    panels = B.pack_gemm_weights(pw)
    if not (np.array_equal(B.xnor_gemm(pa, pw, k), ref) and np.array_equal(B.xnor_gemm(pa, panels, k), ref)):
        raise AssertionError(f"xnor_gemm is not bit-exact on {m}x{n}x{k}")
    af = torch.from_numpy((2 * a_bits - 1).astype(np.float32))
    wf = torch.from_numpy((2 * w_bits - 1).astype(np.float32).T.copy())
    fns = [lambda: B.xnor_gemm(pa, pw, k), lambda: torch.mm(af, wf), lambda: B.xnor_gemm(pa, panels, k)]
    has_int8 = m > 16 and k % 8 == 0 and n % 8 == 0  # torch._int_mm's shape constraints
    if has_int8:
        ai, wi = af.to(torch.int8), wf.to(torch.int8)
        fns.append(lambda: torch._int_mm(ai, wi))
    times = best_times(fns)
    t_pre = times.pop(2)
    ops = 2 * m * n * k
    gops = [ops / t / 1e9 for t in times]
    row = {"M": m, "N": n, "K": k, "ops": ops, "xnor_s": times[0], "xnor_gops": gops[0],
           "xnor_fraction_of_popcount_roofline": gops[0] / host.binary_roofline_gops,
           "xnor_fraction_of_opmix_bound": gops[0] / host.binary_opmix_bound_gops,
           "xnor_prepacked_s": t_pre, "xnor_prepacked_gops": ops / t_pre / 1e9,
           "xnor_prepacked_fraction_of_popcount_roofline": ops / t_pre / 1e9 / host.binary_roofline_gops,
           "torch_fp32_s": times[1], "torch_fp32_gflops": gops[1],
           "torch_fp32_fraction_of_fma_roofline": gops[1] / host.fp32_roofline_gflops,
           "speedup_vs_fp32": times[1] / times[0]}
    if has_int8:
        int8_peak = host.int8_amx_roofline_gops or host.int8_vnni_roofline_gops
        row.update(torch_int8_s=times[2], torch_int8_gops=gops[2],
                   torch_int8_fraction_of_int8_roofline=gops[2] / int8_peak if int8_peak else None,
                   speedup_vs_int8=times[2] / times[0])
    return row


def conv_row(name: str, cin: int, cout: int, hw: int, s: int, host: _host.Host, rng: np.random.Generator) -> dict:
    """Time the binary conv (core and full) against the GEMM of the same logical shape."""
    x = rng.integers(0, 2, (1, cin, hw, hw)).astype(np.uint8)
    w = rng.choice([-1, 1], (cout, cin, 3, 3))
    oh = (hw + 2 - 3) // s + 1
    m, k = oh * oh, cin * 9
    xp, wq = BC.pack_channels(x, (1, 1), 0), BC.pack_weights(w)
    ref = torch.nn.functional.conv2d(torch.from_numpy(2.0 * x - 1), torch.from_numpy(w.astype(np.float64)),
                                     None, s, 1).numpy()
    if not np.array_equal(B.binary_conv2d(x, w, (s, s), (1, 1)), ref):
        raise AssertionError(f"binary_conv2d is not exact on {name}")
    pa, pw = B.pack_bits(rng.integers(0, 2, (m, k))), B.pack_bits(rng.integers(0, 2, (cout, k)))
    pk = B.pack_conv_weights(w)
    if not np.array_equal(B.binary_conv2d(x, pk, (s, s), (1, 1)), ref):
        raise AssertionError(f"binary_conv2d with packed weights is not exact on {name}")
    panels = B.pack_gemm_weights(pw)
    times = best_times([lambda: B.xnor_gemm(pa, panels, k),
                        lambda: BC.conv_group(xp, wq, k, (oh, oh), (3, 3), (s, s), (1, 1)),
                        lambda: B.binary_conv2d(x, w, (s, s), (1, 1)),
                        lambda: B.binary_conv2d(x, pk, (s, s), (1, 1))])
    ops = 2 * m * cout * k
    gops = [ops / t / 1e9 for t in times]
    return {"layer": name, "cin": cin, "cout": cout, "hw": hw, "stride": s, "M": m, "N": cout, "K": k,
            "gemm_gops": gops[0], "conv_core_gops": gops[1], "conv_full_gops": gops[2],
            "conv_end_to_end_gops": gops[3], "conv_core_over_gemm": gops[1] / gops[0],
            "conv_full_over_gemm": gops[2] / gops[0], "conv_end_to_end_over_gemm": gops[3] / gops[0],
            "conv_core_fraction_of_popcount_roofline": gops[1] / host.binary_roofline_gops}


def run() -> dict:
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    host = _host.detect()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    gemm = [gemm_row(m, n, k, host, rng) for m, n, k in SHAPES]
    conv = [conv_row(*c, host, rng) for c in CONVS]
    return {"threads": 1, "host": host.as_dict(), "xnor_tile": {"rows": G.MR, "vectors": G.NV},
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
            "statistic": f"minimum of {REPEATS} rounds x {BURST} calls, kernels round-robin (shared host)",
            "torch": torch.__version__, "numba": numba.__version__, "results": gemm, "binary_conv": conv}


def main() -> None:
    res = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    h = res["host"]
    print(f"{h['model']} ({h['uarch']}, {h['clock_ghz']:.2f} GHz): popcount roofline "
          f"{h['binary_roofline_gops']:.0f} GOP/s, op-mix bound {h['binary_opmix_bound_gops']:.0f}")
    for r in res["results"]:
        extra = f", int8 {r['torch_int8_gops']:.0f} GOP/s -> {r['speedup_vs_int8']:.1f}x" if "torch_int8_s" in r else ""
        print(f"{r['M']}x{r['K']} @ {r['K']}x{r['N']}: xnor {r['xnor_gops']:.0f} GOP/s "
              f"({100 * r['xnor_fraction_of_popcount_roofline']:.0f} % of roofline; prepacked "
              f"{r['xnor_prepacked_gops']:.0f}), fp32 "
              f"{r['torch_fp32_gflops']:.0f} GFLOP/s -> {r['speedup_vs_fp32']:.1f}x{extra}")
    for c in res["binary_conv"]:
        print(f"{c['layer']}: gemm {c['gemm_gops']:.0f}, conv core {c['conv_core_gops']:.0f} "
              f"({c['conv_core_over_gemm']:.2f}x), end to end {c['conv_end_to_end_gops']:.0f} "
              f"({c['conv_end_to_end_over_gemm']:.2f}x), raw weights {c['conv_full_gops']:.0f} GOP/s")
    print(f"load {res['load_average_1min']['before']:.1f}; wrote {OUT}")


if __name__ == "__main__":
    main()
