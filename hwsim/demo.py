"""``hwsim demo``: the three headline uses on built-in presets, in well under a minute.

1. IMC: does an iterative (weight-shared) ItNet fit a small crossbar chip, and its unshared twin?
2. FPGA XNOR engine: a binary net trained on scikit-learn's digits, run bit-exactly, with FPS/BRAM.
3. A small IMC hardware sweep (ADC bits × crossbar rows) of a CNN trained on scikit-learn's digits, every design
   with its accuracy on held-out images; the Pareto front in energy, accuracy and latency, designs below an
   accuracy floor greyed out.
Plus the embedded-CPU model on two boards. Each part lives beside its simulator
(``hwsim/<target>/demo.py``); this module only strings them together.
"""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run_demo", "sweep_demo"]


SWEEP_GRID = {"duplication": ["balance"], "adc_bits": [4, 5, 6, 8], "rows": [64, 128, 256], "tiles": [8]}
SWEEP_GRID_QUICK = {"duplication": ["balance"], "adc_bits": [4, 6, 8], "rows": [128, 256], "tiles": [8]}
ACCURACY_DROP = 0.01  # the floor: designs more than 1 point of accuracy below the float model are greyed out
DIGITS_CLASSES = (0, 1, 2, 3, 4)  # hwsim.codesign.digits' source task: a DigitsCNN trained on these, tested on 30 %


def sweep_demo(out_dir: Path, quick: bool = False, progress: bool | None = None) -> str:
    """A small IMC sweep with accuracy: a CNN trained on scikit-learn's digits (0-4, about 2 s) on ISAAC-like chips,
    ADC bits x crossbar rows, each design run on the 270 held-out test images (bit-level crossbar arithmetic) for
    its accuracy beside its latency, energy and area. Designs more than :data:`ACCURACY_DROP` below the float
    model's accuracy are greyed out; the Pareto front is in (energy, accuracy, latency) over the others; plotted
    (``sweep_pareto.png``: accuracy vs energy) and listed."""
    import hwsim
    from hwsim.codesign import pareto_front
    from hwsim.codesign.digits import load_split, pretrained_cnn
    from hwsim.plot import pareto

    model = pretrained_cnn(width=8, epochs=10, seed=0)
    model.hwsim_name = "digits-cnn"
    _, _, x, y = load_split(DIGITS_CLASSES, seed=0)
    grid = SWEEP_GRID_QUICK if quick else SWEEP_GRID
    df = hwsim.sweep(model, ("imc/isaac", grid), data=(x.numpy(), y.numpy()), workers=1, progress=progress)
    ok = df[df["error"].fillna("").astype(str) == ""]
    floor = model.source_accuracy - ACCURACY_DROP
    png = out_dir / "sweep_pareto.png"
    pareto(ok, "energy_j", "accuracy", directions=("min", "max"), hue="adc_bits", floor={"accuracy": floor},
           also={"latency_s": "min"}, save=png,
           title=f"digits CNN on ISAAC-like chips ({len(y)} test images)")
    good = ok[ok["accuracy"] >= floor]
    front = pareto_front(good, {"energy_j": "min", "accuracy": "max", "latency_s": "min"}).sort_values("energy_j")
    varying = " x ".join(k for k, v in grid.items() if len(v) > 1)
    lines = [f"{len(df)} designs of a digits CNN (float accuracy {model.source_accuracy:.3f} on {len(y)} test "
             f"images) on imc/isaac ({varying}), {len(df) - len(ok)} failed; {len(ok) - len(good)} below the "
             f"accuracy floor {floor:.3f} (greyed out); Pareto-optimal in (energy, accuracy, latency):"]
    for _, r in front.iterrows():
        lines.append(f"  adc_bits={int(r['adc_bits'])} rows={int(r['rows']):<4d}: accuracy {r['accuracy']:.3f}, "
                     f"energy {r['energy_j'] * 1e9:7.1f} nJ, latency {r['latency_s'] * 1e6:7.3f} us, "
                     f"area {r['area_mm2']:5.2f} mm^2")
    cost_only = pareto_front(ok, {"energy_j": "min", "latency_s": "min"})
    broken = cost_only[cost_only["accuracy"] < floor].sort_values("accuracy")
    if len(broken):  # what a co-design loop blind to accuracy would have recommended
        b = broken.iloc[0]
        lines.append(f"  without accuracy, {len(broken)} of the {len(cost_only)} designs Pareto-optimal in (energy, "
                     f"latency) alone are below the floor, e.g. adc_bits={int(b['adc_bits'])} rows={int(b['rows'])}: "
                     f"accuracy {b['accuracy']:.3f}")
    lines.append(f"plot: {png}")
    return "\n".join(lines)


def run_demo(out_dir: str | Path, quick: bool = False, progress: bool | None = None) -> None:
    """Run the four parts, writing their files into ``out_dir`` (created if missing; a path that cannot be a
    writable folder is refused with one line before any part runs). ``progress``: bars on stderr for the parts
    that take seconds (None: when stderr is a terminal, see :func:`hwsim.functional.show_progress`)."""
    from hwsim.specs import check_output_path

    out_dir = check_output_path(out_dir, "demo folder", folder=True)
    from hwsim.cpu.demo import demo as cpu_demo
    from hwsim.fpga.demo import demo as fpga_demo
    from hwsim.functional import progress_default
    from hwsim.imc.demo import demo as imc_demo

    parts = [
        ("1. Does an iterative net fit on chip? (IMC crossbars)", imc_demo),
        ("2. Bit-exact binary inference (FPGA XNOR/popcount engine)", fpga_demo),
        ("3. A small IMC sweep with accuracy: ADC bits x crossbar rows", lambda d: sweep_demo(d, quick)),
        ("4. Embedded CPUs", cpu_demo),
    ]
    for title, fn in parts:
        t0 = time.perf_counter()
        print(f"\n== {title}", flush=True)
        with progress_default(progress):
            text = fn(out_dir)
        print(text)
        print(f"({time.perf_counter() - t0:.1f} s)")
    print(f"\nfiles written to {out_dir.resolve()}")
