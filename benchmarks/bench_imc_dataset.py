"""Dataset-scale speed of the functional IMC path -> benchmarks/results/imc_dataset.json (+ .md).

1. ResNet-20 (``nets.get("resnet20")``) on a batch of 64 CIFAR-size inputs (synthetic N(0, 1)), single thread
   (numba, torch and BLAS limited to one thread), vs torch fp32 on the same batch. Timed: a whole
   ``hwsim.simulate(graph, spec, x=batch, seed=0, mode="layer")`` call (outputs and cost), as
   ``hwsim.evaluate`` makes it batch after batch, after a first call that compiles the kernels and programs
   the crossbars. Configurations: ``imc/isaac`` as shipped (16-bit weights and inputs; its 8-bit ADC with the
   column-flip encoding cannot clip: the exact path), the same with 8-bit weights and inputs, a clipping 6-bit
   ADC with differential 8-bit weights (the bit-level path) and that plus 2 % conductance variation.
   The machine is shared: every time is the minimum of ``--repeats`` runs, and the load average is recorded.
2. Peak memory of VGG-16 (224 x 224, batch 1) functional on ``imc/isaac``, in a fresh process: the resident set
   before the run (graph built, torch model freed) and the peak during the run (``VmHWM`` after resetting it
   through ``/proc/self/clear_refs``).

Run: ``python benchmarks/bench_imc_dataset.py [--quick]``.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # single thread, set before numpy/numba/torch load

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

OUT = Path(__file__).parent / "results" / "imc_dataset.json"
TARGETS = {"exact": 5.0, "clip_adc_with_variation": 10.0}  # issue 18: x torch fp32, single thread
# The previous implementation (packed popcount / gathered-row kernels, int32 16-bit exact path), same script
# settings, measured once on this machine at a load average of 0.2 (2026-12-07 06:31 UTC): x torch fp32 wall time.
BEFORE = {"isaac (16-bit, exact ADC)": 28.0, "isaac 8-bit (exact ADC)": 3.8,
          "6-bit clipping ADC, differential, 8-bit": 71.0,
          "6-bit clipping ADC, differential, 8-bit, 2 % conductance variation": 234.0,
          "vgg16_224_isaac_functional": {"seconds": 46.6, "peak_rss_bytes": 4.08e9}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _min_time(fn, repeats: int) -> tuple[float, float]:
    """Minimum wall time and minimum CPU time of the process (single thread: the compute itself, less sensitive
    to the other jobs on a shared machine) over ``repeats`` calls, s."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def configs():
    import hwsim

    isaac = hwsim.load_preset("imc/isaac")
    i8 = dataclasses.replace(isaac, weight_bits=8, input_bits=8)
    clip = dataclasses.replace(i8, adc_bits=6, column_flip=False, signed_weights="differential")
    return [("isaac (16-bit, exact ADC)", "exact", isaac), ("isaac 8-bit (exact ADC)", "exact", i8),
            ("6-bit clipping ADC, differential, 8-bit", "clip_adc", clip),
            ("6-bit clipping ADC, differential, 8-bit, 2 % conductance variation", "clip_adc_with_variation",
             dataclasses.replace(clip, conductance_sigma=0.02))]


def resnet20_speed(batch: int, repeats: int) -> dict:
    import numba
    import torch

    import hwsim
    import nets

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    model = nets.get("resnet20").eval()
    x = np.random.default_rng(0).normal(size=(batch, 3, 32, 32)).astype(np.float32)
    graph = hwsim.as_graph(model, x.shape)
    def torch_time() -> tuple[float, float]:
        with torch.no_grad():
            return _min_time(lambda: model(torch.from_numpy(x)), max(repeats, 5))

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    load0 = os.getloadavg()
    tw, tc = torch_time()
    rows = []
    for label, kind, spec in configs():
        hwsim.simulate(graph, spec, x=x, seed=0, mode="layer")  # compile, program the crossbars
        out = None

        def call(spec=spec):
            nonlocal out
            out = hwsim.simulate(graph, spec, x=x, seed=0, mode="layer").outputs

        w, c = _min_time(call, repeats)
        rel = float(np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref**2)))
        rows.append({"config": label, "kind": kind, "spec": spec.name, "weight_bits": spec.weight_bits,
                     "input_bits": spec.input_bits, "adc_bits": spec.adc_bits, "signed_weights":
                     str(getattr(spec.signed_weights, "value", spec.signed_weights)),
                     "column_flip": spec.column_flip, "conductance_sigma": spec.conductance_sigma,
                     "seconds": w, "cpu_seconds": c, "target_x_torch": TARGETS.get(kind),
                     "rel_rms_error_vs_fp32": rel})
        if kind == "clip_adc_with_variation":
            rows[-1]["cpu_seconds_row_kernel_only"] = row_kernel_only(call, repeats)
        tw2, tc2 = torch_time()  # torch again between configurations: the minimum over the whole session
        tw, tc = min(tw, tw2), min(tc, tc2)
    for r in rows:
        r["x_torch"], r["x_torch_cpu"] = r["seconds"] / tw, r["cpu_seconds"] / tc
        spec = next(c[2] for c in configs() if c[0] == r["config"])
        if r["kind"] != "exact":
            r["work"] = work_counts(graph, spec, x)
            r["passes"] = spec.input_steps * spec.dac_bits * spec.columns_per_weight
    bound = {"macs": network_macs(graph), "rates_mac_per_s": gemm_rates(), "row_add_ps": row_add_rates()}
    return {"network": "resnet20", "input": list(x.shape), "torch_fp32_s": tw, "torch_fp32_cpu_s": tc, "bound": bound,
            "rows": rows, "load_average_before": list(load0), "load_average_after": list(os.getloadavg()),
            "before_this_change": BEFORE}


def row_kernel_only(call, repeats: int) -> float:
    """CPU seconds of ``call`` with the chunked analog kernel (:mod:`hwsim.imc._gather`) switched off, so every
    analog split takes the row kernel: the previous implementation, timed in the same session."""
    from hwsim.imc import _gather as ga

    fits = ga.fits
    ga.fits = lambda rows, q: False
    try:
        return _min_time(call, repeats)[1]
    finally:
        ga.fits = fits


def _count_kernel():
    from numba import njit

    @njit(cache=True)
    def count(xp, base, off, m0, m1, k0, rows, jn, d, skip, gb):
        """(pixel-steps converted, active rows, non-empty groups of gb rows) of one row split's ADC path."""
        n_pix = base.shape[0]
        steps, act, groups = 0, 0, 0
        for m in range(m0, m1):
            img, b0 = m // n_pix, base[m % n_pix]
            for j in range(jn):
                s = 0
                a = 0
                g = 0
                seen = -1
                for r in range(rows):
                    v = (np.int64(xp[img, b0 + off[k0 + r]]) >> (j * d)) & ((1 << d) - 1)
                    s += v
                    a += v != 0
                    if v != 0 and r // gb != seen:
                        seen = r // gb
                        g += 1
                if s > skip:
                    steps += 1
                    act += a
                    groups += g
        return steps, act, groups

    return count


def work_counts(graph, spec, x) -> dict:
    """The work of one functional run's ADC paths, counted by wrapping the two kernels: conversions (pixel x step
    x pair), popcount words (integer cells), row additions (analog cells: active rows x pairs, and the subset-sum
    additions the kernel does: non-empty row groups x pairs) and the dense pass-MACs (pixel x row x step x pair)."""
    import hwsim
    from hwsim.imc import numerics as nm

    count = _count_kernel()
    tot = {"conversions": 0, "popcount_words": 0, "row_adds": 0, "group_adds": 0, "dense_pass_macs": 0,
           "adc_kernel_cpu_s": 0.0}
    bits, rows_k = nm.bp.split_adc_bits, nm.an.split_adc_rows

    def seen(xp, base, off, m0, m1, k0, rows, jn, d, q, skip, words, gb):
        steps, act, groups = count(xp, base, off, m0, m1, k0, rows, jn, d, skip, gb)
        tot["conversions"] += steps * q
        tot["dense_pass_macs"] += (m1 - m0) * rows * jn * q
        if words:
            tot["popcount_words"] += steps * words * q
        else:
            tot["row_adds"] += act * q
            tot["group_adds"] += (groups if d == 1 else act) * q

    def timed(fn, *args):
        c0 = time.process_time()
        fn(*args)
        tot["adc_kernel_cpu_s"] += time.process_time() - c0

    def bits_w(xp, base, off, m0, m1, k0, rows, planes, jn, d, *rest):
        seen(xp, base, off, m0, m1, k0, rows, jn, d, planes.shape[2], rest[6], planes.shape[0] * planes.shape[1] * d, 1)
        timed(bits, xp, base, off, m0, m1, k0, rows, planes, jn, d, *rest)

    def rows_w(xp, base, off, m0, m1, k0, rows, cells, jn, d, *rest):
        seen(xp, base, off, m0, m1, k0, rows, jn, d, cells.shape[1], rest[7], 0, rest[11])
        timed(rows_k, xp, base, off, m0, m1, k0, rows, cells, jn, d, *rest)

    nm.bp.split_adc_bits, nm.an.split_adc_rows = bits_w, rows_w
    try:
        hwsim.simulate(graph, spec, x=x, seed=0, mode="layer")
    finally:
        nm.bp.split_adc_bits, nm.an.split_adc_rows = bits, rows_k
    return tot


def network_macs(graph) -> int:
    """Multiply-accumulates of the conv and linear nodes (the graph's shapes include the batch)."""
    from mapping.graph import Op

    macs = 0
    for n in graph.nodes:
        if n.op == Op.CONV2D:
            a = n.attrs
            macs += n.shape[0] * n.shape[2] * n.shape[3] * a.out_channels * a.rows
        elif n.op == Op.LINEAR:
            w = graph.param(n, "weight")
            macs += int(np.prod(n.shape[:-1])) * w.shape[0] * w.shape[1]
    return macs


def gemm_rates() -> dict:
    """Single-thread GEMM rates on this machine, MAC/s: float32 (BLAS via torch) and int8 (torch._int_mm, oneDNN
    with AVX-512 VNNI where the CPU has it), [4096 x 576] x [576 x 512], the best of 5."""
    import torch

    a8 = torch.randint(-128, 127, (4096, 576), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (576, 512), dtype=torch.int8)
    af, bf = a8.float(), b8.float()
    out = {}
    for name, f in (("fp32", lambda: af @ bf), ("int8", lambda: torch._int_mm(a8, b8))):
        try:
            f()
        except (RuntimeError, AttributeError):  # no int8 GEMM on this build
            continue
        out[name] = 4096 * 576 * 512 / _min_time(f, 5)[0]
    return out


def row_add_rates(q: int = 384, adds: int = 16) -> dict:
    """Picoseconds per float32 addition of the analog row kernel's gathered-row loop
    (:func:`hwsim.imc._analog._row_sum1`: eight table rows per pass over the q pairs), timed alone on tables of
    random rows of ``q`` pairs (ResNet-20's widest split) held in L1 (32 KB), L2 (1 MB) or beyond (4 MB), each call
    summing ``adds`` random rows (a pixel-step with 16 non-empty groups); the best of 5."""
    from numba import njit

    from hwsim.imc._analog import _row_sum1

    @njit(cache=True)
    def loop(table, idx, p, reps):
        s = 0.0
        for r in range(reps):
            _row_sum1(table, idx[r % idx.shape[0]], idx.shape[1], p)
            s += p[0]
        return s

    rng = np.random.default_rng(0)
    out, reps = {}, 20000
    for kb in (32, 1024, 4096):
        table = rng.random((kb * 1024 // (4 * q), q), dtype=np.float32)
        idx = rng.integers(0, table.shape[0], (64, adds)).astype(np.int64)
        p = np.zeros(q, np.float32)
        loop(table, idx, p, 10)
        out[f"{kb}KB"] = 1e12 * _min_time(lambda t=table, i=idx, v=p: loop(t, i, v, reps), 5)[1] / (reps * adds * q)
    return out


_VGG_CHILD = r"""
import gc, json, os, sys
import numpy as np
import hwsim, nets
hw, which = int(sys.argv[1]), sys.argv[2]
x = np.random.default_rng(0).normal(size=(1, 3, hw, hw)).astype(np.float32)
model = nets.get("vgg16")
graph = hwsim.as_graph(model, x.shape)
del model
gc.collect()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set (VmHWM) to the current one
import time
t0 = time.perf_counter()
import dataclasses
spec = hwsim.load_preset("imc/isaac")
if which != "isaac":  # the bit-level path: 8-bit, 6-bit clipping ADC, differential, 2 % conductance variation
    spec = dataclasses.replace(spec, weight_bits=8, input_bits=8, adc_bits=6, column_flip=False,
                               signed_weights="differential", conductance_sigma=0.02)
r = hwsim.simulate(graph, spec, x=x, mode="layer")
dt = time.perf_counter() - t0
print(json.dumps({"rss_before_run_bytes": before, "peak_rss_during_run_bytes": status("VmHWM"),
                  "seconds": dt, "output_shape": list(np.asarray(r.outputs).shape)}))
"""


def vgg16_memory(hw: int, which: str = "isaac") -> dict:
    out = subprocess.run([sys.executable, "-c", _VGG_CHILD, str(hw), which], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update({"network": "vgg16", "input": [1, 3, hw, hw], "threads": 1, "limit_bytes": 2 * 1024**3,
                "spec": "imc/isaac" if which == "isaac" else
                "imc/isaac 8-bit, 6-bit clipping ADC, differential, 2 % conductance variation"})
    return res


def bound_markdown(s: dict) -> list[str]:
    """The lower-bound section: the work the bit-level arithmetic requires and what it costs at measured rates."""
    b = s.get("bound")
    rows = [r for r in s["rows"] if "work" in r]
    if not b or not rows:
        return []
    macs, tc = b["macs"], s["torch_fp32_cpu_s"]
    r8, r32 = b["rates_mac_per_s"].get("int8"), b["rates_mac_per_s"].get("fp32")
    exact = min((r["x_torch_cpu"] for r in s["rows"] if r["kind"] == "exact" and r["weight_bits"] == 8), default=0)
    out = ["", "## Lower bound of the work", "",
           f"ResNet-20 at this batch is {macs / 1e9:.2f} G multiply-accumulates (torch fp32: "
           f"{macs / tc / 1e9:.0f} G MAC/s). Single-thread GEMM rates measured in the same run ([4096 x 576] x "
           f"[576 x 512]): fp32 {(r32 or 0) / 1e9:.0f} G MAC/s, int8 (torch._int_mm, AVX-512 VNNI) "
           f"{(r8 or 0) / 1e9:.0f} G MAC/s. A bit-level pass multiplies one input bit by one weight slice of one "
           "sign: passes = input bits x slices x signs, and a dense GEMM per pass does passes x MACs.", "",
           "| configuration | passes | dense bound, int8 GEMM per pass | dense bound, fp32 GEMM per pass at torch's rate | "
           "conversions (pixel x step x pair) | row work done | ADC kernels (CPU s) | total (x torch) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, p = r["work"], r["passes"]
        dense = p * macs
        b8 = f"{dense / r8:.2f} s = {dense / r8 / tc:.0f}x" if r8 else "-"
        b32 = f"{p * tc:.2f} s = {p}x"  # one torch-rate GEMM per pass
        if w["popcount_words"]:
            done = (f"{w['popcount_words'] / 1e9:.2f} G popcount words of 64 rows "
                    f"({100 * 64 * w['popcount_words'] / max(1, 2 * w['dense_pass_macs']):.0f} % of the dense bit work)")
        else:
            done = (f"{w['row_adds'] / 1e9:.1f} G active row x pair terms ({100 * w['row_adds'] / max(1, w['dense_pass_macs']):.0f}"
                    f" % of dense), summed as {w['group_adds'] / 1e9:.1f} G float32 subset-sum additions = "
                    f"{w['group_adds'] / macs:.1f}x the net's MACs")
        out.append(f"| {r['config']} | {p} | {b8} | {b32} | {w['conversions'] / 1e9:.2f} G | {done} | "
                   f"{w['adc_kernel_cpu_s']:.2f} | {r['x_torch_cpu']:.1f} |")
    ana = [r for r in rows if r["work"]["row_adds"]]
    if ana:
        r = ana[0]
        w = r["work"]
        per_add = w["adc_kernel_cpu_s"] / max(1, w["group_adds"])
        out += ["", f"With conductance variation ({r['x_torch_cpu']:.0f}x here, target 10x) every partial sum of every "
                "active input bit is a float32 sum of analog conductances on the 2^-F grid and must be formed exactly "
                "before its ADC rounding (a tie or a clip decides the code; at 2 % variation the deviations from the "
                "integer levels over ~30 active rows exceed half an LSB, so the integer part alone does not settle "
                "it). The values need 16-bit-plus integers (int8 VNNI does not hold them) and a dense fp32 GEMM per "
                f"pass costs {r['passes']}x torch. Skipping zero input bits leaves {w['row_adds'] / 1e9:.1f} G row x "
                f"pair terms; adding precomputed sums of 4-8-row subsets cuts them to {w['group_adds'] / 1e9:.1f} G "
                f"additions ({w['group_adds'] / macs:.1f}x the net's MACs), plus {w['conversions'] / 1e9:.2f} G ADC "
                f"conversions and the exact path's quantize/convolve/dequantize work ({exact:.1f}x). At torch's fp32 "
                f"rate ({1e12 * tc / macs:.0f} ps per MAC) the additions would cost {w['group_adds'] / macs:.1f}x "
                f"torch; the kernels run at {1e12 * per_add:.0f} ps per addition of one pair (gathered table rows: "
                f"memory-bound, where a GEMM reuses registers), {w['adc_kernel_cpu_s']:.2f} s in all. The bound that "
                "arithmetic allows, (additions + conversions) at torch's MAC time plus the exact path, is "
                f"{(w['group_adds'] + w['conversions']) / macs + exact:.1f}x: under 10x, but only for a kernel adding "
                "at GEMM speed; this one does not (the gap is the gathered-row addition rate, not the work). "
                "Integer cells (no variation) need no additions: their partial sums are popcounts of input-bit and "
                "cell-bit planes (64 rows per word, 8 words per instruction), below the dense int8 bound."]
        ra = b.get("row_add_ps")
        if ra:
            budget = 10 * tc - (r["cpu_seconds"] - w["adc_kernel_cpu_s"])  # the kernel's share of 10x torch
            out += ["", "Measured floor of the additions: the row kernel's gathered-row loop timed alone (rows of 384 "
                    "pairs, 16 rows per sum) adds one pair in " + ", ".join(f"{v:.0f} ps ({k} table)" for k, v in
                                                                  ra.items())
                    + f". The {w['group_adds'] / 1e9:.1f} G additions alone take "
                    + ", ".join(f"{w['group_adds'] * v * 1e-12:.2f} s at the {k} rate" for k, v in ra.items())
                    + f". For 10x the ADC kernel may take {budget:.2f} s (10x torch less the rest of this run): "
                    f"{1e12 * budget / max(1, w['group_adds']):.0f} ps per pair addition with nothing else done, "
                    "an L1 rate, while 8-row subset sums of 16 pairs fill 256 KB per 128 rows (L2)."]
        if "cpu_seconds_row_kernel_only" in r:
            out += ["", "The chunked kernel (hwsim/imc/_gather.py: 16-pair chunks, four 8-row groups a pass over the "
                    "partial sums, 16-float vectors; splits of at most 4 MB of table) against the row kernel alone "
                    f"in the same session: {r['cpu_seconds']:.3f} s vs {r['cpu_seconds_row_kernel_only']:.3f} s CPU "
                    f"for the whole run ({r['cpu_seconds_row_kernel_only'] / tc:.1f}x torch with the row kernel "
                    "alone)."]
    return out


def markdown(res: dict) -> str:
    s = res["resnet20"]
    lines = ["# Functional IMC path at dataset scale", "",
             f"CPU: {res['cpu']}; single thread; load average (1/5/15 min) before "
             f"{', '.join(f'{v:.1f}' for v in s['load_average_before'])}, after "
             f"{', '.join(f'{v:.1f}' for v in s['load_average_after'])} (a shared machine: minimum of "
             f"{res['repeats']} runs).", "",
             f"ResNet-20, batch {s['input'][0]} of {s['input'][2]}x{s['input'][3]}; torch fp32: "
             f"{1e3 * s['torch_fp32_s']:.1f} ms wall, {1e3 * s['torch_fp32_cpu_s']:.1f} ms CPU.", "",
             "| configuration | wall (s) | x torch (wall) | CPU (s) | x torch (CPU) | target | before | "
             "rel. RMS error vs fp32 |", "|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        tgt = f"<= {r['target_x_torch']:.0f}x" if r["target_x_torch"] else "-"
        before = s.get("before_this_change", {}).get(r["config"])
        lines.append(f"| {r['config']} | {r['seconds']:.3f} | {r['x_torch']:.1f} | {r['cpu_seconds']:.3f} | "
                     f"{r['x_torch_cpu']:.1f} | {tgt} | {f'{before:.0f}x' if before else '-'} | "
                     f"{r['rel_rms_error_vs_fp32']:.3g} |")
    lines += ["", "before: x torch fp32 (wall) of the previous implementation, measured on this machine at load 0.2."]
    lines += bound_markdown(s)
    for key in ("vgg16_memory", "vgg16_memory_bitlevel"):
        v = res.get(key, {})
        if "peak_rss_during_run_bytes" in v:
            lines += ["", f"VGG-16 {v['input'][2]}x{v['input'][3]} functional on {v['spec']}: resident set "
                          f"{v['rss_before_run_bytes'] / 1024**3:.2f} GB before the run (graph built), peak "
                          f"{v['peak_rss_during_run_bytes'] / 1024**3:.2f} GB during it (limit 2 GB); "
                          f"{v['seconds']:.1f} s."]
        elif v:
            lines += ["", f"VGG-16 memory run failed: {v.get('error')}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, one repeat, VGG-16 at 112x112")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-vgg", action="store_true", help="skip the VGG-16 memory runs (keep the previous ones)")
    a = ap.parse_args()
    repeats = 1 if a.quick else a.repeats
    res = {"cpu": cpu_model(), "python": platform.python_version(), "repeats": repeats,
           "resnet20": resnet20_speed(8 if a.quick else 64, repeats)}
    out = OUT if not a.quick else OUT.with_name("imc_dataset_quick.json")
    if not a.no_vgg:
        res["vgg16_memory"] = vgg16_memory(112 if a.quick else 224)
        res["vgg16_memory_bitlevel"] = vgg16_memory(112 if a.quick else 224, "variation")
    elif out.exists():  # keep the previous memory measurements
        old = json.loads(out.read_text())
        res.update({k: v for k, v in old.items() if k.startswith("vgg16_memory")})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
