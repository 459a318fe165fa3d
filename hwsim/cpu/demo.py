"""CPU part of ``hwsim demo``: ResNet-20 on a Raspberry Pi 4 (Cortex-A72) and an STM32H743 (Cortex-M7).

Runs real inference with the Numba kernels as each board deploys it (the Cortex-A72 preset: ncnn, fp32; the
Cortex-M7 preset: CMSIS-NN, int8 as TFLite quantizes it), checks the outputs against torch, and prints latency,
energy, the memory verdict, and why ResNet-18 does not fit a Cortex-M.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["demo"]


def _si(v: float, unit: str) -> str:
    for scale, p in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def demo(out_dir: str | Path) -> str:
    """Run the demo, write the per-layer table of ResNet-20 on the Cortex-M7 to ``out_dir``; return the text."""
    import torch

    import hwsim
    import nets

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = nets.get("resnet20")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    lines = ["ResNet-20 (CIFAR, 41 M MACs), batch norm folded; outputs from the Numba kernels "
             "(int8 activations calibrated on this input):"]
    for preset in ("cpu/cortex-a72", "cpu/cortex-m7"):
        spec = hwsim.load_preset(preset)
        res = hwsim.simulate(model, spec, x=x)
        r = res.report
        err = float(np.max(np.abs(res.outputs - ref)) / np.max(np.abs(ref)))
        bound = r.to_pandas().groupby("bound")["latency_s"].sum()
        lines.append(f"  {preset:15s} {spec.runtime} {spec.precision}: latency {_si(r.latency_s, 's'):>9s}, energy {_si(r.energy_j, 'J'):>9s} "
                     f"(compute-bound {100 * bound.get('compute', 0) / r.latency_s:.0f} % of the time), "
                     f"max|out - torch|/max|torch| = {err:.1e}; {r.fit_reason}")
        if preset == "cpu/cortex-m7":
            path = out_dir / "cpu_resnet20_cortex-m7_layers.csv"
            r.to_pandas().to_csv(path, index=False)
    r18 = hwsim.simulate("resnet18", "cpu/cortex-m7").report
    lines.append(f"ResNet-18 on cpu/cortex-m7: {r18.fit_reason}")
    lines.append(f"ResNet-18 on cpu/cortex-a72: latency {_si(hwsim.simulate('resnet18', 'cpu/cortex-a72').report.latency_s, 's')}"
                 f" on 4 cores (model, not a measurement)")
    lines.append(f"per-layer table: {out_dir / 'cpu_resnet20_cortex-m7_layers.csv'}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(demo(Path("hwsim-demo")))
