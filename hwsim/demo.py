"""``hwsim demo``: the three headline uses on built-in presets, in well under a minute.

1. IMC: does an iterative (weight-shared) ItNet fit a small crossbar chip, and its unshared twin?
2. FPGA XNOR engine: a binary net trained on scikit-learn's digits, run bit-exactly, with FPS/BRAM.
3. A small hardware sweep (IMC ADC bits × crossbar size) with a Pareto plot.
Plus the embedded-CPU model on two boards. Each part lives beside its simulator
(``hwsim/<target>/demo.py``); this module only strings them together.
"""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run_demo", "sweep_demo"]


def sweep_demo(out_dir: Path, quick: bool = False) -> str:
    """A small IMC sweep on ResNet-20: ADC bits × crossbar rows → latency, energy; Pareto plot."""
    import hwsim
    from hwsim.codesign import pareto_front
    from hwsim.plot import pareto

    grid = {"adc_bits": [5, 6, 7, 8], "rows": [64, 128, 256]}
    if quick:
        grid = {"adc_bits": [6, 8], "rows": [128, 256]}
    df = hwsim.sweep(["resnet20"], ("imc/isaac", grid), workers=1, progress=False)
    ok = df[df["error"].fillna("").astype(str) == ""]
    front = pareto_front(ok, {"latency_s": "min", "energy_j": "min"})
    png = out_dir / "sweep_pareto.png"
    pareto(ok, "latency_s", "energy_j", hue="adc_bits", title="ResNet-20 on imc/isaac: ADC bits x crossbar rows",
           save=png)
    lines = [f"{len(df)} design points of ResNet-20 on imc/isaac (adc_bits x rows), "
             f"{len(df) - len(ok)} failed, {len(front)} Pareto-optimal (latency, energy):"]
    for _, r in front.sort_values("latency_s").iterrows():
        lines.append(f"  adc_bits={int(r['adc_bits'])} rows={int(r['rows'])}: latency {r['latency_s'] * 1e6:.1f} us, "
                     f"energy {r['energy_j'] * 1e6:.2f} uJ")
    lines.append(f"plot: {png}")
    return "\n".join(lines)


def run_demo(out_dir: str | Path, quick: bool = False) -> None:
    """Run the four parts, writing their files into ``out_dir`` (created if missing; a path that cannot be a
    writable folder is refused with one line before any part runs)."""
    from hwsim.specs import check_output_path

    out_dir = check_output_path(out_dir, "demo folder", folder=True)
    from hwsim.cpu.demo import demo as cpu_demo
    from hwsim.imc.demo import demo as imc_demo
    from hwsim.xnor.demo import demo as xnor_demo

    parts = [
        ("1. Does an iterative net fit on chip? (IMC crossbars)", imc_demo),
        ("2. Bit-exact binary inference (FPGA XNOR/popcount engine)", xnor_demo),
        ("3. A small hardware sweep with a plot", lambda d: sweep_demo(d, quick)),
        ("4. Embedded CPUs", cpu_demo),
    ]
    for title, fn in parts:
        t0 = time.perf_counter()
        print(f"\n== {title}")
        print(fn(out_dir))
        print(f"({time.perf_counter() - t0:.1f} s)")
    print(f"\nfiles written to {out_dir.resolve()}")
