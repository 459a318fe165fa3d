"""``hwsim demo``: the three headline uses on built-in presets, in well under a minute.

1. IMC: does an iterative (weight-shared) ItNet fit a small crossbar chip, and its unshared twin?
2. FPGA XNOR engine: a binary net trained on scikit-learn's digits, run bit-exactly, with FPS/BRAM.
3. A small hardware sweep of two nets (IMC tiles × crossbar rows × ADC bits) with one Pareto front per net.
Plus the embedded-CPU model on two boards. Each part lives beside its simulator
(``hwsim/<target>/demo.py``); this module only strings them together.
"""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run_demo", "sweep_demo"]


SWEEP_NETS = ("resnet20", "itnet")
SWEEP_GRID = {"duplication": ["balance"], "adc_bits": [6, 8], "rows": [64, 128, 256], "tiles": [2, 4, 8, 16]}
SWEEP_GRID_QUICK = {"duplication": ["balance"], "adc_bits": [6, 8], "rows": [128, 256], "tiles": [2, 8]}


def sweep_demo(out_dir: Path, quick: bool = False, progress: bool | None = None) -> str:
    """A small IMC sweep of two nets (ResNet-20, ItNet) on ISAAC-like chips: tiles x crossbar rows x ADC bits, spare
    crossbars duplicating the slowest layers -> latency, chip area, energy; one latency/area Pareto front per net,
    plotted (``sweep_pareto.png``) and listed."""
    import hwsim
    from hwsim.codesign import pareto_front
    from hwsim.plot import pareto

    grid = SWEEP_GRID_QUICK if quick else SWEEP_GRID
    df = hwsim.sweep(list(SWEEP_NETS), ("imc/isaac", grid), workers=1, progress=progress)
    ok = df[df["error"].fillna("").astype(str) == ""]
    png = out_dir / "sweep_pareto.png"
    pareto(ok, "latency_s", "area_mm2", hue="adc_bits",
           title="ISAAC-like IMC chips: tiles x crossbar rows x ADC bits (weights duplicated on spare crossbars)",
           save=png)
    varying = " x ".join(k for k, v in grid.items() if len(v) > 1)
    lines = [f"{len(df)} design points of {' and '.join(SWEEP_NETS)} on imc/isaac ({varying}), "
             f"{len(df) - len(ok)} failed; Pareto-optimal in (latency, chip area), per net:"]
    for net, g in ok.groupby("net", sort=False):
        front = pareto_front(g, {"latency_s": "min", "area_mm2": "min"}).sort_values("latency_s")
        lines.append(f"  {net} ({len(front)} of {len(g)} points):")
        for _, r in front.iterrows():
            lines.append(f"    tiles={int(r['tiles']):<3d} rows={int(r['rows']):<4d} adc_bits={int(r['adc_bits'])}: "
                         f"latency {r['latency_s'] * 1e6:7.1f} us, area {r['area_mm2']:5.2f} mm^2, "
                         f"energy {r['energy_j'] * 1e6:6.1f} uJ{'' if r['fits_on_chip'] else ' (does not fit)'}")
    lines.append(f"plot: {png}")
    return "\n".join(lines)


def run_demo(out_dir: str | Path, quick: bool = False, progress: bool | None = None) -> None:
    """Run the four parts, writing their files into ``out_dir`` (created if missing; a path that cannot be a
    writable folder is refused with one line before any part runs). ``progress``: bars on stderr for the parts
    that take seconds (None: when stderr is a terminal, see :func:`hwsim.functional.show_progress`)."""
    from hwsim.specs import check_output_path

    out_dir = check_output_path(out_dir, "demo folder", folder=True)
    from hwsim.cpu.demo import demo as cpu_demo
    from hwsim.functional import progress_default
    from hwsim.imc.demo import demo as imc_demo
    from hwsim.xnor.demo import demo as xnor_demo

    parts = [
        ("1. Does an iterative net fit on chip? (IMC crossbars)", imc_demo),
        ("2. Bit-exact binary inference (FPGA XNOR/popcount engine)", xnor_demo),
        ("3. A small hardware sweep with one Pareto front per net", lambda d: sweep_demo(d, quick)),
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
