"""hwsim.plot: figures are built without a GUI, saved, and show the data they are given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim import plot
from hwsim.codesign import pareto_front
from hwsim.errors import HwsimError


@pytest.fixture(scope="module")
def cpu_report():
    return hwsim.simulate("resnet20", "cpu/cortex-a72").report


def test_pareto_plot_draws_one_front_per_net(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"latency_s": rng.uniform(1e-3, 1e-2, 40), "energy_j": rng.uniform(1e-3, 1e-2, 40),
                       "net": ["a", "b"] * 20, "error": [""] * 39 + ["boom"]})
    fig = plot.pareto(df, hue="net", save=tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    ax = fig.axes[0]
    steps = [ln for ln in ax.get_lines() if ln.get_label().startswith("Pareto front")]
    assert len(steps) == 2  # one front per net, never one across both
    for net in ("a", "b"):
        rows = df[(df["net"] == net) & (df["error"] == "")]
        front = pareto_front(rows, ["latency_s", "energy_j"]).sort_values("latency_s")
        step = next(ln for ln in steps if ln.get_label().startswith(f"Pareto front: {net}:"))
        np.testing.assert_allclose(step.get_xdata(), front["latency_s"])  # data in s, ticks labelled in ms
    assert sum(len(c.get_offsets()) for c in ax.collections[:2]) == 39  # error row not drawn
    with pytest.raises(HwsimError, match="edp"):
        plot.pareto(df, "latency_s", "edp")


def test_layer_bars_and_roofline(cpu_report, tmp_path):
    fig = plot.layer_bars(cpu_report, save=tmp_path / "bars.png")
    a1, a2 = fig.axes[:2]
    heights = sorted(p.get_height() for p in a1.patches)
    np.testing.assert_allclose(heights, sorted(cpu_report.to_pandas()["latency_s"] * 1e3))
    total = sum(p.get_height() for p in a2.patches) / 1e3
    assert total == pytest.approx(sum(cpu_report.energy_breakdown.values()), rel=1e-9)
    spec = hwsim.load_preset("cpu/cortex-a72")
    fig = plot.roofline(cpu_report, spec, save=tmp_path / "roof.png")
    ax = fig.axes[0]
    pts = np.concatenate([c.get_offsets() for c in ax.collections])
    assert np.all(pts[:, 1] <= spec.peak_flops * (1 + 1e-9))  # no layer above the compute roof
    assert (tmp_path / "roof.png").exists() and (tmp_path / "bars.png").exists()
    with pytest.raises(HwsimError, match="CPU spec"):
        plot.roofline(cpu_report, object())


def test_heatmap_shows_the_pivot(tmp_path):
    df = pd.DataFrame({"rows": [64, 64, 128, 128], "cols": [64, 128, 64, 128], "util": [0.1, 0.2, 0.3, 0.4]})
    fig = plot.heatmap(df, "cols", "rows", "util", save=tmp_path / "h.png")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0.1, 0.2], [0.3, 0.4]])
