"""Hardware-aware fine-tuning: accuracy on noisy low-resolution-ADC chips before and after, on the bit-level simulator.

Two tasks: scikit-learn's digits (8x8, 10 classes, :class:`~hwsim.codesign.digits.DigitsCNN`) and a CIFAR-size
synthetic task generated here (32x32x3, 10 classes: each class an oriented colour grating of its own frequency,
random phase and position, plus Gaussian pixel noise; a small stride-2 CNN). Each net is trained in float, then
evaluated on two chips with clipping 4-5-bit ADCs and device variation, with ``hwsim.evaluate`` — the bit-level
simulator, not the emulation — over device seeds; then fine-tuned for a few epochs on ``hwsim.codesign.hw_aware``'s
emulation of each chip (noise drawn afresh per batch) and evaluated again on the same seeds and test set.

Usage::

    python benchmarks/bench_hw_aware.py [--out benchmarks/results/hw_aware.json] [--quick]

Writes the JSON and a Markdown table beside it (same name, ``.md``). Wall times on a shared machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import hwsim
from hwsim.codesign import hw_aware
from hwsim.codesign.digits import DigitsCNN, fit_loop, load_split

SEEDS = (0, 1, 2)


def chips() -> dict:
    """The chips: ISAAC's geometry at 8 bits with a 5-bit ADC (its column-flip range 192 clips at 31) and 5 %
    programming variation; NeuroSim's 22 nm RRAM (1-bit cells) with a 4-bit ADC and 20 % variation."""
    isaac = hwsim.load_preset("imc/isaac")
    ns = hwsim.load_preset("imc/neurosim-rram-22nm")
    return {
        "isaac 8b, 5-bit ADC, sigma 5%": dataclasses.replace(isaac, weight_bits=8, input_bits=8, adc_bits=5,
                                                             conductance_sigma=0.05),
        "neurosim-rram, 4-bit ADC, sigma 20%": dataclasses.replace(ns, adc_bits=4, conductance_sigma=0.2),
    }


# ----------------------------------------------------------------------------- the CIFAR-size synthetic task
def synthetic(n: int, seed: int, classes: int = 10, noise: float = 0.4):
    """(x [n, 3, 32, 32] float32 pixels in [0, 1], y [n] int64): class c is a grating of orientation pi·c/classes,
    frequency 2 + c % 3 cycles per image and a colour of its own (fixed), at a random phase, amplitude 0.6-1.2 and
    inside a random 20x20-32x32 window, plus N(0, noise^2) pixel noise, on a grey 0.5 background, clipped to
    [0, 1] (the intensities of an 8-bit image, so the first layer's inputs are unsigned, as a camera's are)."""
    fixed = np.random.default_rng(1234)
    colours = fixed.uniform(0.2, 1.0, (classes, 3))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    theta = np.pi * y / classes
    freq = 2.0 + y % 3
    phase = rng.uniform(0, 2 * np.pi, n)
    arg = 2 * np.pi * freq[:, None, None] * (xx * np.cos(theta)[:, None, None] + yy * np.sin(theta)[:, None, None])
    pattern = np.sin(arg + phase[:, None, None]) * rng.uniform(0.6, 1.2, n)[:, None, None]
    size = rng.integers(20, 33, n)
    r0, c0 = rng.integers(0, 33 - size), rng.integers(0, 33 - size)
    iy, ix = np.arange(32)[None, :, None], np.arange(32)[None, None, :]
    win = ((iy >= r0[:, None, None]) & (iy < (r0 + size)[:, None, None]) & (ix >= c0[:, None, None])
           & (ix < (c0 + size)[:, None, None]))
    x = colours[y][:, :, None, None] * (pattern * win)[:, None] + noise * rng.standard_normal((n, 3, 32, 32))
    x = np.clip(0.5 + 0.5 * x, 0.0, 1.0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


class SynthCNN(nn.Module):
    """Three stride-2 3x3 conv-BN-ReLU (3 -> w -> 2w -> 4w, 32 -> 4 pixels), global pool, linear."""

    def __init__(self, width: int = 8, num_classes: int = 10):
        super().__init__()
        w = width

        def cbr(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(cbr(3, w), cbr(w, 2 * w), cbr(2 * w, 4 * w))
        self.fc = nn.Linear(4 * w, num_classes)
        self.hwsim_input_shape = (1, 3, 32, 32)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# ----------------------------------------------------------------------------- training and evaluation
def train(model: nn.Module, x, y, epochs: int, lr: float, seed: int, batch: int = 64) -> tuple[float, float]:
    """Adam on cross-entropy; returns the wall and CPU times, s."""
    t0, c0 = time.perf_counter(), time.process_time()
    fit_loop(model, x, y, epochs, lr, seed, batch)
    return time.perf_counter() - t0, time.process_time() - c0


def float_accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def on_chip(model: nn.Module, spec, x, y) -> dict:
    """Accuracy per seed on the bit-level simulator (``hwsim.evaluate``)."""
    ev = hwsim.evaluate(model, spec, x.numpy(), y.numpy(), seeds=SEEDS, batch_size=256, workers=1, progress=False)
    t = ev.table
    return {"accuracy": [round(float(a), 4) for a in t["accuracy"]], "accuracy_mean": round(ev.accuracy_mean, 4),
            "accuracy_std": round(ev.accuracy_std, 4),
            "rel_rms_error_mean": round(float(t["rel_rms_error"].mean()), 4)}


def tasks(quick: bool) -> dict:
    """The tasks, each with its chips (names of :func:`chips`) and epochs."""
    xtr, ytr, xte, yte = load_split(tuple(range(10)))
    n = (600, 300) if quick else (1200, 400)
    sx_tr, sy_tr = synthetic(n[0], 0)
    sx_te, sy_te = synthetic(n[1], 1)
    every = list(chips())
    return {
        "digits (sklearn, 8x8)": dict(make=lambda: DigitsCNN(width=8, num_classes=10), data=(xtr, ytr, xte, yte),
                                      float_epochs=15, ft_epochs=1 if quick else 2, chips=every),
        "synthetic CIFAR-size (32x32x3)": dict(make=lambda: SynthCNN(8), data=(sx_tr, sy_tr, sx_te, sy_te),
                                               float_epochs=12, ft_epochs=1, chips=every[:1]),
    }


def run_task(name: str, task: dict, specs: dict) -> dict:
    xtr, ytr, xte, yte = task["data"]
    torch.manual_seed(0)
    model = task["make"]()
    t_float, _ = train(model, xtr, ytr, task["float_epochs"], 3e-3, 0)
    row = {"train_samples": len(ytr), "test_samples": len(yte), "float_accuracy": round(float_accuracy(model, xte, yte), 4),
           "float_train_s": round(t_float, 1), "chips": {}}
    for chip in task["chips"]:
        spec = specs[chip]
        before = on_chip(model, spec, xte, yte)
        hw = hw_aware(model, spec)
        torch.manual_seed(1)
        t_ft, c_ft = train(hw, xtr, ytr, task["ft_epochs"], 1e-3, 1)
        after = on_chip(hw.plain(), spec, xte, yte)
        row["chips"][chip] = {"before": before, "after": after, "fine_tune_epochs": task["ft_epochs"],
                              "fine_tune_s": round(t_ft, 1), "fine_tune_cpu_s": round(c_ft, 1)}
        print(f"{name} | {chip}: float {row['float_accuracy']:.3f}, before {before['accuracy_mean']:.3f} ± "
              f"{before['accuracy_std']:.3f}, after {after['accuracy_mean']:.3f} ± {after['accuracy_std']:.3f} "
              f"({t_ft:.0f} s fine-tuning)", flush=True)
    return row


def markdown(out: dict) -> str:
    lines = ["| task | chip | float | on chip before | after fine-tuning | fine-tuning (wall, CPU) |",
             "|---|---|---|---|---|---|"]
    for task, row in out["tasks"].items():
        for chip, r in row["chips"].items():
            b, a = r["before"], r["after"]
            lines.append(f"| {task} | {chip} | {row['float_accuracy']:.3f} | {b['accuracy_mean']:.3f} ± "
                         f"{b['accuracy_std']:.3f} | {a['accuracy_mean']:.3f} ± {a['accuracy_std']:.3f} | "
                         f"{r['fine_tune_epochs']} epoch{'s' if r['fine_tune_epochs'] > 1 else ''}, "
                         f"{r['fine_tune_s']:.0f} s, {r['fine_tune_cpu_s']:.0f} s |")
    return ("Accuracy (fraction of the test set) on the bit-level simulator (`hwsim.evaluate`), mean ± std over "
            f"device seeds {list(SEEDS)}; fine-tuned with `hwsim.codesign.hw_aware` (Adam, lr 1e-3, batch 64). "
            f"Whole run: {out['wall_s']:.0f} s wall, {out['cpu_s']:.0f} s CPU (torch on one thread, the simulator's "
            f"Numba kernels on all cores; 1-minute load average {out['loadavg_1min_at_start']:.1f} at the start). Written by `benchmarks/bench_hw_aware.py`.\n\n"
            + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "hw_aware.json"))
    ap.add_argument("--quick", action="store_true", help="fewer samples and epochs (a smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small tensors on a shared machine
    t0, c0 = time.perf_counter(), time.process_time()
    specs = chips()
    out = {"seeds": list(SEEDS), "loadavg_1min_at_start": os.getloadavg()[0],
           "chips": {k: {f: getattr(s, f) for f in ("weight_bits", "input_bits", "cell_bits", "dac_bits", "adc_bits",
                                                    "rows", "column_flip", "conductance_sigma")} | {"base": s.name}
                     for k, s in specs.items()},
           "tasks": {name: run_task(name, t, specs) for name, t in tasks(args.quick).items()}}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["cpu_s"] = round(time.process_time() - c0, 1)
    Path(args.out).write_text(json.dumps(out, indent=2))
    Path(args.out).with_suffix(".md").write_text(markdown(out))
    print(f"wrote {args.out} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
