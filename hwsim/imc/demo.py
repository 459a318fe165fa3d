"""IMC demo: an ItNet with shared weights fits a small crossbar chip, its unshared twin does not.

Prints the fit verdicts on ``imc/edge-small``, the latency and energy to each exit (anytime
prediction) of both, and beside each design what its crossbars compute: the ItNet is untrained (seeded random
weights) and the demo has no labelled data for 3x32x32 inputs, so each design carries its **top-1 agreement** with
the fp32 model (the IR's float run, checked against torch at tracing) and the relative RMS error of its logits,
from :func:`hwsim.evaluate` (bit-level crossbar arithmetic) on :data:`SAMPLES` seeded random inputs. Writes a plot of latency/energy per exit, each
design's legend entry naming its agreement, to ``out_dir/imc_itnet_exits.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["demo", "design_quality", "SAMPLES", "SHAPE"]

SAMPLES = 16  # inputs per design: ~0.1 s each on the bit-level path (keeps the part within a few seconds)
SHAPE = (1, 3, 32, 32)  # CIFAR-size input of the zoo's ItNet


def design_quality(graph, spec, samples: int = SAMPLES, seed: int = 0):
    """:class:`hwsim.evaluate.Evaluation` of ``graph`` on ``spec`` over ``samples`` seeded N(0, 1) inputs (no
    labels: top-1 agreement with the IR's fp32 outputs and the relative RMS error of the last exit's logits)."""
    import hwsim

    x = np.random.default_rng(seed).normal(size=(samples, *graph.input_shape[1:])).astype(np.float32)
    return hwsim.evaluate(graph, spec, x, batch_size=samples, workers=1, progress=False)


def demo(out_dir: str | Path) -> str:
    import torch

    import hwsim
    import nets

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = hwsim.load_preset("imc/edge-small")
    lines = [f"ItNet (4 iterations, 64 channels, untrained, seed 0) on {spec.name}: {spec.tiles} tiles x "
             f"{spec.crossbars_per_tile} crossbars of {spec.rows}x{spec.cols}, {spec.weight_bits}-bit weights on "
             f"{spec.cell_bits}-bit cells, {spec.adc_bits}-bit ADCs; each design's top-1 agreement with the fp32 model "
             f"on {SAMPLES} random inputs (no labels: the net is untrained)"]
    legend = {}
    for shared in (True, False):
        name = "shared" if shared else "unshared"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            graph = hwsim.as_graph(nets.get("itnet", iterations=4, shared=shared), SHAPE)
        fr = hwsim.fit(graph, spec)
        rep = hwsim.simulate(graph, spec).report
        ev = design_quality(graph, spec)
        agree, err = ev.top1_agreement_mean, ev.rel_rms_error_mean
        legend[f"{name} ({'fits' if fr.fits else 'does not fit'})\ntop-1 agreement {100 * agree:.0f} %"] = rep
        lines.append(f"- {name:<8s} weights: {'FITS' if fr.fits else 'does NOT fit'} "
                     f"({fr.crossbars_needed} crossbars needed of {fr.crossbars_available}); "
                     f"top-1 agreement {agree:.3f}, relative RMS error {err:.3f}")
        lines.append("    exits: " + ", ".join(f"#{i + 1} {e.latency_s * 1e3:.2f} ms / {e.energy_j * 1e6:.1f} µJ"
                                               for i, e in enumerate(rep.exits)))
        if not fr.fits:
            lines.append(f"    {len(fr.spilled_layers)} weight matrices reloaded from DRAM: "
                         f"{rep.dram_bytes / 1024:.0f} KiB per inference, "
                         f"{rep.energy_breakdown.get('dram', 0) * 1e6:.1f} µJ of DRAM energy")
    png = out_dir / "imc_itnet_exits.png"
    from hwsim.plot import exits

    exits(legend, legend_title="ItNet weights",
          title=f"ItNet (4 iterations) on {spec.name}: cost to each exit", save=png)
    lines.append(f"plot: {png}")
    return "\n".join(lines)
