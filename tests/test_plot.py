"""hwsim.plot: figures are built without a GUI, saved, and show the data they are given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _figures import (
    assert_readable,
    colorbar_range_problems,
    figure_text_boxes,
    labels_on_lines,
    outside_figure,
    overlapping,
    reference_lines,
)

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


# ----------------------------------------------------------------------------- layout defects (issue 20 item 6)
LONG_TITLE = "Pareto fronts of a long sweep over ADC resolution and crossbar rows of every net on the IMC chip " * 2


def _sweep(nets):
    """A sweep-like table (design columns between target and spec_name): 12 designs per net."""
    rng = np.random.default_rng(3)
    rows = [{"net": net, "target": "imc", "adc_bits": adc, "rows": r, "spec_name": "",
             "latency_s": 1e-3 * (1 + k) * r / 64 * (1 + 0.1 * rng.random()),
             "energy_j": 1e-4 * adc * (1 + k) * 512 / r * (1 + 0.1 * rng.random()),
             "accuracy": 0.8 + 0.02 * adc - 0.01 * k, "error": ""}
            for k, net in enumerate(nets) for adc in (4, 6, 8) for r in (64, 128, 256, 512)]
    return pd.DataFrame(rows)


_LEGEND_NETS = [["resnet20"], ["resnet20", "tfc-w1a1"], ["a", "b", "c", "d"]]
_LEGEND_KW = [{}, {"floor": {"accuracy": 0.9}}, {"also": {"accuracy": "max"}}, {"hue": "adc_bits", "floor": {"accuracy": 0.9}}]
_LEGEND_QUICK = {(0, 0), (1, 1), (2, 2), (3, 2)}  # every option and every number of nets once; --slow: all 12


@pytest.mark.parametrize("kw,nets", [
    pytest.param(kw, nets, id=f"kw{i}-nets{j}", marks=() if (i, j) in _LEGEND_QUICK else pytest.mark.slow)
    for i, kw in enumerate(_LEGEND_KW) for j, nets in enumerate(_LEGEND_NETS)])
def test_pareto_legends_never_cover_a_long_title(nets, kw):
    fig = plot.pareto(_sweep(nets), title=LONG_TITLE, **kw)
    assert_readable(fig, unit_labels=2)  # legends, titles and suptitle apart and inside the figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not overlapping(figure_text_boxes(fig, renderer)) and not outside_figure(fig, renderer)
    title = fig._suptitle if len(nets) > 1 and "hue" in kw else fig.axes[0].title
    assert " ".join(title.get_text().split()) == " ".join(LONG_TITLE.split())  # wrapped, not cut
    fronts = next(lg for lg in fig.legends if lg.get_title().get_text().startswith("Pareto front"))
    assert len([t for t in fronts.get_texts() if "point" in t.get_text()]) == len(nets)
    if len(nets) == 4 and "hue" in kw:  # panels b and c have no panel below (2 x 3 grid): they name the x axis
        assert [bool(ax.get_xlabel()) for ax in fig.axes[:4]] == [False, True, True, True]


def test_constant_heatmap_shows_one_value_not_a_range(tmp_path):
    df = pd.DataFrame({"rows": [64, 64, 128, 128], "cols": [64, 128, 64, 128], "energy_j": [4.7e-4] * 4})
    fig = plot.heatmap(df, "cols", "rows", "energy_j", save=tmp_path / "h.png")
    assert_readable(fig, unit_labels=1)
    assert not colorbar_range_problems(fig)
    cb = fig.axes[1]
    assert [t.get_text() for t in cb.get_yticklabels() if t.get_text()] == ["470"]
    assert cb.get_ylabel() == "energy [µJ]"
    assert [t.get_text() for t in fig.axes[0].texts] == ["470"] * 4
    df["energy_j"] = 0.0  # zero everywhere: one value too
    assert not colorbar_range_problems(plot.heatmap(df, "cols", "rows", "energy_j"))


def _floor_table():
    """An energy/accuracy sweep whose front points crowd just above a 90 % accuracy floor: the second label of the
    crowd, moved below its point, would sit on the floor line."""
    return pd.DataFrame({"net": "resnet20", "target": "imc", "adc_bits": [3, 3, 4, 4, 5, 5, 6, 8],
                         "rows": [64, 128] * 4, "spec_name": "",
                         "energy_j": [1.0e-4, 1.1e-4, 1.2e-4, 1.21e-4, 1.22e-4, 1.23e-4, 3e-4, 6e-4],
                         "accuracy": [0.8, 0.85, 0.903, 0.9032, 0.9034, 0.9036, 0.95, 0.97], "error": ""})


def test_front_labels_keep_off_the_floor_line():
    fig = plot.pareto(_floor_table(), "energy_j", "accuracy", directions=("min", "max"), floor={"accuracy": 0.9})
    assert_readable(fig, unit_labels=2)
    ax = fig.axes[0]
    assert len(reference_lines(ax)) == 1  # the floor
    assert not labels_on_lines(ax, fig.canvas.get_renderer())
    shown = [t.get_text() for t in ax.texts if t.get_visible()]
    assert len(shown) == 6 and "adc_bits=4, rows=128" in shown  # every front point named, none dropped


def test_figure_checks_catch_the_defects(monkeypatch):
    """Each check fails on a figure with its defect: a legend on a long title, a colour bar from 90 % to 110 % of a
    constant, a label on the floor line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import hwsim.plot_labels

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([1, 2], [1, 2], label="front")
    ax.set_title(LONG_TITLE)
    fig.legend(title="Pareto front", loc="outside right upper")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert overlapping(figure_text_boxes(fig, renderer)) and outside_figure(fig, renderer)
    fig = Figure()
    ax = fig.subplots()
    fig.colorbar(ax.imshow(np.full((2, 2), 4.7e-4)), ax=ax)
    FigureCanvasAgg(fig).draw()
    assert colorbar_range_problems(fig)  # matplotlib's default: ticks around the value
    monkeypatch.setattr(hwsim.plot_labels, "reference_boxes", lambda ax, renderer: [])  # the old placement
    fig = plot.pareto(_floor_table(), "energy_j", "accuracy", directions=("min", "max"), floor={"accuracy": 0.9})
    fig.canvas.draw()
    assert labels_on_lines(fig.axes[0], fig.canvas.get_renderer())
