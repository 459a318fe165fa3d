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

``--isa avx2`` times the AVX2 fallback (``vpshufb`` popcount) on an *emulated AVX2 target*: a child process
compiles every Numba kernel for ``haswell`` (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``, a fresh
``NUMBA_CACHE_DIR`` so that no cached AVX-512 code is reused; the child checks the driver's assembly for
``vpshufb`` and the absence of ``zmm`` / ``vpopcntq``) and caps torch at AVX2 as well (``ATEN_CPU_CAPABILITY``,
``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``), so both sides run as on an AVX2-only host of the same
core. It writes the ``avx2_emulated`` section of the results file (the rest is kept; a plain run keeps an
existing ``avx2_emulated`` section), with the fraction of the AVX2 op-mix roofline (``_host``) and the ratio to
the native (AVX-512) torch times of the main section.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
HASWELL = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,+movbe,+pclmul,"
           "+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt")  # LLVM's haswell
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL, "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


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


def gemm_row(m: int, n: int, k: int, host: _host.Host, rng: np.random.Generator, isa: str = "native") -> dict:
    """Time xnor / torch fp32 / torch int8 on one shape (bit-exactness checked first). ``isa="avx2"``
    (the emulated AVX2 child) reports fractions of the AVX2 op-mix roofline instead of the AVX-512 ones."""
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
    pre = ops / t_pre / 1e9
    row = {"M": m, "N": n, "K": k, "ops": ops, "xnor_s": times[0], "xnor_gops": gops[0]}
    if isa == "avx2":
        row.update(xnor_fraction_of_avx2_roofline=gops[0] / host.binary_avx2_roofline_gops, xnor_prepacked_s=t_pre,
                   xnor_prepacked_gops=pre, xnor_prepacked_fraction_of_avx2_roofline=pre / host.binary_avx2_roofline_gops,
                   torch_fp32_s=times[1], torch_fp32_gflops=gops[1])
    else:
        row.update(xnor_fraction_of_popcount_roofline=gops[0] / host.binary_roofline_gops,
                   xnor_fraction_of_opmix_bound=gops[0] / host.binary_opmix_bound_gops,
                   xnor_prepacked_s=t_pre, xnor_prepacked_gops=pre,
                   xnor_prepacked_fraction_of_popcount_roofline=pre / host.binary_roofline_gops,
                   torch_fp32_s=times[1], torch_fp32_gflops=gops[1],
                   torch_fp32_fraction_of_fma_roofline=gops[1] / host.fp32_roofline_gflops)
    row["speedup_vs_fp32"] = times[1] / times[0]
    if has_int8:
        int8_peak = 0.0 if isa == "avx2" else host.int8_amx_roofline_gops or host.int8_vnni_roofline_gops
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
    numba.set_num_threads(1)  # first: before hwsim.kernels started Numba's OpenMP layer, that reset torch's count
    torch.set_num_threads(1)
    host = _host.detect()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    gemm = [gemm_row(m, n, k, host, rng) for m, n, k in SHAPES]
    conv = [conv_row(*c, host, rng) for c in CONVS]
    return {"threads": 1, "torch_threads": torch.get_num_threads(), "host": host.as_dict(), "xnor_tile": {"rows": G.MR, "vectors": G.NV},
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
            "statistic": f"minimum of {REPEATS} rounds x {BURST} calls, kernels round-robin (shared host)",
            "torch": torch.__version__, "numba": numba.__version__, "results": gemm, "binary_conv": conv}


def _check_avx2_build() -> None:
    """Refuse to time anything but the AVX2 build: tile, K loop and the driver's assembly."""
    if not G.has_avx2_only() or (G.MR, G.NV) != (4, 1):
        raise SystemExit(f"the AVX2 child compiled for {G.target_features()[:60]}..., tile {G.MR}x{G.NV}")
    asm = "\n".join(G.drive.inspect_asm().values())
    if "vpshufb" not in asm or "zmm" in asm or "vpopcnt" in asm:
        raise SystemExit("the AVX2 child's xnor driver is not vpshufb-only ymm code")


def run_avx2_child(host_json: str, out: str) -> None:
    """Inside the emulated AVX2 process: the GEMM rows on the AVX2 build, written to ``out``."""
    numba.set_num_threads(1)  # first: before hwsim.kernels started Numba's OpenMP layer, that reset torch's count
    torch.set_num_threads(1)
    d = json.loads(Path(host_json).read_text())
    host = _host.Host(**{**d, "flags": tuple(d["flags"])})
    rng = np.random.default_rng(0)
    B.xnor_gemm(B.pack_bits(np.ones((8, 64))), B.pack_bits(np.ones((8, 64))), 64)  # compile, then inspect
    _check_avx2_build()
    load_before = os.getloadavg()[0]
    rows = [gemm_row(m, n, k, host, rng, isa="avx2") for m, n, k in SHAPES]
    Path(out).write_text(json.dumps({
        "target": "emulated AVX2 target on a Zen 5 host" if host.uarch == "zen5" else
                  f"emulated AVX2 target on a {host.uarch} host ({host.model})",
        "environment": AVX2_ENV, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "xnor_tile": {"rows": G.MR, "vectors": G.NV, "k_loop": "byte accumulators, vpsadbw every 31 words"},
        "asm_checked": "driver has vpshufb, no zmm, no vpopcntq",
        "avx2_roofline_gops": host.binary_avx2_roofline_gops,
        "avx2_roofline": f"{host.rates.get('alu256', 0):g} vector ALU ops/cycle / {_host.AVX2_OPS_PER_WORD} ops per "
                         f"256-bit word x 256 x 2 x {host.clock_ghz:.2f} GHz (benchmarks/_host.py)",
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
        "statistic": f"minimum of {REPEATS} rounds x {BURST} calls, kernels round-robin (shared host)",
        "results": rows}, indent=2))


def run_avx2(native: dict | None) -> dict:
    """The ``avx2_emulated`` section: host detected here, timings in a child compiled for ``haswell``."""
    host = _host.detect()
    if "avx2" not in host.flags:
        raise SystemExit(f"--isa avx2: this CPU ({host.model}) has no AVX2 to run the emulated target on")
    with tempfile.TemporaryDirectory() as tmp:
        hj, out = Path(tmp, "host.json"), Path(tmp, "avx2.json")
        hj.write_text(json.dumps(host.as_dict()))
        env = dict(os.environ, **AVX2_ENV, NUMBA_CACHE_DIR=str(Path(tmp, "numba_cache")))
        subprocess.run([sys.executable, __file__, "--avx2-child", str(hj), str(out)], env=env, check=True)
        sec = json.loads(out.read_text())
    sec["host"] = host.as_dict()
    base = {(r["M"], r["N"], r["K"]): r for r in (native or {}).get("results", [])}
    for r in sec["results"]:
        b = base.get((r["M"], r["N"], r["K"]))
        if b:  # the main section's torch, not capped at AVX2 (oneDNN VNNI int8, AVX-512 fp32)
            r["speedup_vs_native_torch_fp32"] = b["torch_fp32_s"] / r["xnor_s"]
            if "torch_int8_s" in b:
                r["speedup_vs_native_torch_int8"] = b["torch_int8_s"] / r["xnor_s"]
    return sec


def print_avx2(sec: dict) -> None:
    print(f"{sec['target']}: AVX2 op-mix roofline {sec['avx2_roofline_gops']:.0f} GOP/s ({sec['avx2_roofline']})")
    for r in sec["results"]:
        i8 = f", torch int8 (AVX2) {r['torch_int8_gops']:.0f} -> {r['speedup_vs_int8']:.1f}x" if "torch_int8_s" in r else ""
        nat = (f", native torch int8 -> {r['speedup_vs_native_torch_int8']:.1f}x"
               if "speedup_vs_native_torch_int8" in r else "")
        print(f"{r['M']}x{r['K']} @ {r['K']}x{r['N']}: xnor {r['xnor_gops']:.0f} GOP/s "
              f"({100 * r['xnor_fraction_of_avx2_roofline']:.0f} % of AVX2 roofline), torch fp32 (AVX2) "
              f"{r['torch_fp32_gflops']:.0f} -> {r['speedup_vs_fp32']:.1f}x{i8}{nat}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isa", choices=("native", "avx2"), default="native",
                    help="native: the host's build (default); avx2: only the emulated AVX2 section")
    ap.add_argument("--avx2-child", nargs=2, metavar=("HOST_JSON", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.avx2_child:
        run_avx2_child(*args.avx2_child)
        return
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if args.isa == "avx2":
        old["avx2_emulated"] = run_avx2(old)
        OUT.write_text(json.dumps(old, indent=2) + "\n")
        print_avx2(old["avx2_emulated"])
        print(f"wrote the avx2_emulated section of {OUT}")
        return
    res = run()
    if "avx2_emulated" in old:
        res["avx2_emulated"] = old["avx2_emulated"]
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
