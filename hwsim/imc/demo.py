"""IMC demo: an ItNet with shared weights fits a small crossbar chip, its unshared twin does not.

Prints the fit verdicts on ``imc/edge-small``, the latency and energy to each exit (anytime
prediction) of both, the crossbar outputs against torch on one input, and writes a plot of
latency/energy per exit to ``out_dir/imc_itnet_exits.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["demo"]


def demo(out_dir: str | Path) -> str:
    import hwsim
    import nets

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = hwsim.load_preset("imc/edge-small")
    shape = (1, 3, 32, 32)
    lines = [f"ItNet (4 iterations, 64 channels) on {spec.name}: {spec.tiles} tiles x {spec.crossbars_per_tile} "
             f"crossbars of {spec.rows}x{spec.cols}, {spec.weight_bits}-bit weights on {spec.cell_bits}-bit cells, "
             f"{spec.adc_bits}-bit ADCs"]
    reports, verdicts = {}, {}
    for shared in (True, False):
        model = nets.get("itnet", iterations=4, shared=shared)
        graph = hwsim.as_graph(model, shape)
        fr = hwsim.fit(graph, spec)
        rep = hwsim.simulate(graph, spec).report
        reports["shared" if shared else "unshared"] = rep
        verdicts["shared" if shared else "unshared"] = fr.fits
        lines.append(f"- {'shared  ' if shared else 'unshared'} weights: {'FITS' if fr.fits else 'does NOT fit'} "
                     f"({fr.crossbars_needed} crossbars needed of {fr.crossbars_available})")
        lines.append("    exits: " + ", ".join(f"#{i + 1} {e.latency_s * 1e3:.2f} ms / {e.energy_j * 1e6:.1f} µJ"
                                               for i, e in enumerate(rep.exits)))
        if not fr.fits:
            lines.append(f"    {len(fr.spilled_layers)} weight matrices reloaded from DRAM: "
                         f"{rep.dram_bytes / 1024:.0f} KiB per inference, "
                         f"{rep.energy_breakdown.get('dram', 0) * 1e6:.1f} µJ of DRAM energy")
    # functional check: what the crossbars compute vs torch float, one input
    import torch

    model = nets.get("itnet", iterations=4, shared=True)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = hwsim.simulate(model, spec, x=x, input_shape=shape).outputs
    ref = [o.detach().numpy() for o in model(torch.from_numpy(x))]
    err = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(out, ref))
    lines.append(f"crossbar outputs vs torch fp32 (8-bit weights/inputs, {spec.adc_bits}-bit ADC): "
                 f"max relative error {err:.3f}")
    png = out_dir / "imc_itnet_exits.png"
    from hwsim.plot import exits

    exits({f"{name} ({'fits' if verdicts[name] else 'does not fit'})": rep for name, rep in reports.items()},
          legend_title="ItNet weights", title=f"ItNet (4 iterations) on {spec.name}: cost to each exit", save=png)
    lines.append(f"plot: {png}")
    return "\n".join(lines)
