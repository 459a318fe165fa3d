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
        tw2, tc2 = torch_time()  # torch again between configurations: the minimum over the whole session
        tw, tc = min(tw, tw2), min(tc, tc2)
    for r in rows:
        r["x_torch"], r["x_torch_cpu"] = r["seconds"] / tw, r["cpu_seconds"] / tc
    return {"network": "resnet20", "input": list(x.shape), "torch_fp32_s": tw, "torch_fp32_cpu_s": tc,
            "rows": rows, "load_average_before": list(load0), "load_average_after": list(os.getloadavg()),
            "before_this_change": BEFORE}


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
