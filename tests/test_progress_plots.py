"""Long jobs show progress on a terminal only (never in tests, pipes or CI; off with --quiet), and every plot hwsim
draws is readable: axes named with units, legends with titles, tick labels and front labels that do not overlap,
one Pareto front per net with its design points named."""
from __future__ import annotations

import contextlib
import io
import re
import sys

import numpy as np
import pandas as pd
import pytest
from _figures import assert_readable

import hwsim
from hwsim import plot
from hwsim.functional import progress_default, show_progress


# ----------------------------------------------------------------------------- progress
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture(autouse=True)
def _no_tqdm_env(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # (a CI that sets it would hide the bars these tests look at)


def test_progress_is_drawn_on_a_terminal_only(monkeypatch):
    assert show_progress(None, _Stream(True)) is True
    assert show_progress(None, _Stream(False)) is False
    assert show_progress(True, _Stream(False)) is True  # asked for: drawn anyway
    assert show_progress(False, _Stream(True)) is False
    assert show_progress(None, object()) is False  # no isatty at all
    closed = _Stream(True)
    closed.close()
    assert show_progress(None, closed) is False or closed.isatty()  # a closed stream is never an error
    assert show_progress(None) is False  # this test run's stderr is not a terminal: no bar in tests or CI
    with progress_default(False):  # the CLI's --quiet
        assert show_progress(None, _Stream(True)) is False
        assert show_progress(True, _Stream(True)) is True
        with progress_default(None):  # None changes nothing
            assert show_progress(None, _Stream(True)) is False
    with progress_default(True):
        assert show_progress(None, _Stream(False)) is True
    assert show_progress(None, _Stream(True)) is True
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert show_progress(None, _Stream(True)) is False
    assert show_progress(True, _Stream(True)) is True


@contextlib.contextmanager
def on_terminal():
    """stderr replaced by a stream that says it is a terminal (what a bar would print lands in it). (Set inside the
    test: pytest puts its own capture back on sys.stderr between a fixture's setup and the test.)"""
    stream, before = _Stream(True), sys.stderr
    sys.stderr = stream
    try:
        yield stream
    finally:
        sys.stderr = before


def test_sweep_bar_from_its_first_point_and_not_nested():
    with on_terminal() as terminal:
        _sweeps(terminal)


def _sweeps(terminal):
    df = hwsim.sweep(["resnet20"], ("imc/isaac", {"adc_bits": [6, 8]}), functional=True, workers=1)
    assert len(df) == 2 and (df["error"] == "").all()
    text = terminal.getvalue()
    assert "hwsim sweep" in text and "2/2" in text  # two points are enough for a bar
    assert "layer" not in text  # the functional runs inside the sweep draw no bar of their own
    n = len(text)
    with progress_default(False):
        hwsim.sweep(["resnet20"], ("imc/isaac", {"adc_bits": [5]}), workers=1)
    hwsim.sweep(["resnet20"], ("imc/isaac", {"adc_bits": [4]}), workers=1, progress=False)
    assert len(terminal.getvalue()) == n


def test_functional_run_bar_over_the_layers():
    from hwsim.functional import run

    graph = hwsim.as_graph("resnet20")
    x = np.random.default_rng(0).standard_normal(graph.input_shape).astype(np.float32)
    with on_terminal() as terminal:
        quiet = run(graph, x)  # auto: a run shorter than a second draws nothing
        assert terminal.getvalue() == ""
        loud = run(graph, x, progress=True)
    text = terminal.getvalue()
    assert f"/{len(graph.nodes)}" in text and "layer/s" in text
    np.testing.assert_array_equal(quiet[0], loud[0])


def test_cli_quiet_turns_every_bar_off(capsys):
    from hwsim.cli import build_parser, main

    parser = build_parser()
    for argv in (["zoo", "--counts"], ["run", "--net", "x", "--hw", "y"], ["fit", "--net", "x", "--hw", "y"],
                 ["sweep", "s.yaml"], ["calibrate"], ["demo"]):
        assert parser.parse_args(argv + ["--quiet"]).quiet is True
        assert parser.parse_args(argv + ["-q"]).quiet is True
    with on_terminal() as terminal:
        assert main(["run", "--net", "resnet20", "--hw", "cpu/cortex-a72", "--functional", "--quiet"]) == 0
        assert "hwsim run" not in terminal.getvalue()
        assert "functional check vs torch fp32" in terminal.getvalue()  # what the command says is still said
        assert main(["run", "--net", "resnet20", "--hw", "cpu/cortex-a72", "--functional"]) == 0
    text = terminal.getvalue()
    assert "hwsim run resnet20" in text and "tracing and verifying resnet20" in text
    assert text.rstrip().endswith("max relative error " + text.rstrip().split("max relative error ")[-1])
    assert "resnet20 on cpu/cortex-a72" in capsys.readouterr().out


def test_calibration_phases():
    import importlib

    cal = importlib.import_module("hwsim.cpu.calibrate")
    with on_terminal() as stream:
        phase = cal._Phases(3, None)
        for name in ("round 1/1: peak FLOP/s", "fitting eff_conv", "writing the preset"):
            phase(name)
        phase.close()
    text = stream.getvalue()
    assert "hwsim calibrate" in text and "3/3" in text and "fitting eff_conv" in text
    assert cal._round_phases(True) == 4 + sum(1 for _ in cal._synthetic(True))
    import inspect

    assert inspect.signature(cal.calibrate).parameters["progress"].default is None


# ----------------------------------------------------------------------------- plots
@pytest.fixture
def figures(monkeypatch):
    """Every figure hwsim.plot saves (the demo's plots are saved, not returned)."""
    seen = []
    save = plot._save

    def keep(fig, path):
        seen.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return seen


@pytest.mark.slow  # trains the digits CNN and runs 6 designs on 270 images (~10 s)
def test_demo_plots_are_readable_and_every_imc_design_has_its_accuracy(tmp_path, figures):
    from hwsim.demo import SWEEP_GRID_QUICK, sweep_demo
    from hwsim.imc.demo import demo as imc_demo

    text = sweep_demo(tmp_path, quick=True)
    imc_demo(tmp_path)
    assert (tmp_path / "sweep_pareto.png").stat().st_size > 10_000
    assert (tmp_path / "imc_itnet_exits.png").stat().st_size > 10_000
    sweep_fig, exits_fig = figures
    legends = assert_readable(sweep_fig, unit_labels=2)
    assert {lg.get_title().get_text() for lg in legends} >= {"ADC resolution [bit]",
                                                             "Pareto front in energy, accuracy, latency"}
    ax = sweep_fig.axes[0]
    assert ax.get_ylabel() == "accuracy [%]" and ax.get_yscale() == "linear" and "energy [" in ax.get_xlabel()
    # the designs below the floor: grey crosses, counted in the text and the legend, never on the front
    n_designs = len(SWEEP_GRID_QUICK["adc_bits"]) * len(SWEEP_GRID_QUICK["rows"])
    n_below = int(re.search(r"(\d+) below the accuracy floor", text).group(1))
    floor = float(re.search(r"accuracy floor ([0-9.]+)", text).group(1))
    assert 0 < n_below < n_designs  # the 4-bit ADC clips: those designs lose accuracy
    crosses = [c for c in ax.collections if c.get_gid() == "hwsim-below-floor"]
    assert sum(c.get_offsets().shape[0] for c in crosses) == n_below
    assert any(f"below the floor (accuracy < {round(100 * floor)} %): {n_below} designs" in t.get_text()
               for lg in legends for t in lg.get_texts())
    listed = re.findall(r"^  adc_bits=(\d+) rows=(\d+) *: accuracy ([0-9.]+)", text, re.MULTILINE)
    assert listed and all(float(acc) >= floor for _, _, acc in listed)
    labels = [t.get_text() for t in ax.texts if t.get_visible()]
    assert len(labels) == len(listed) and all("rows=" in t and "adc_bits=" in t for t in labels)
    assert "without accuracy" in text  # what an accuracy-blind front would have recommended
    assert_readable(exits_fig, unit_labels=2)
    assert [lg.get_title().get_text() for lg in exits_fig.legends] == ["ItNet weights"]


def test_plot_functions_are_readable(tmp_path):
    rep = hwsim.simulate("resnet20", "cpu/cortex-a72").report
    fig = plot.layer_bars(rep)
    assert [a.get_ylabel() for a in fig.axes[:2]] == ["latency [ms]", "energy [mJ]"]
    assert_readable(fig, unit_labels=2)
    fpga = hwsim.simulate("tfc-w1a1", "fpga/pynq-z1").report  # 0.4 µs: labelled in ns, not 0.0004 ms
    assert plot.layer_bars(fpga).axes[0].get_ylabel() == "latency [ns]"
    fig = plot.roofline(rep, hwsim.load_preset("cpu/cortex-a72"))
    assert fig.axes[0].get_ylabel() == "achieved [GFLOP/s]"
    assert_readable(fig, unit_labels=2)
    grid = pd.DataFrame({"net": "resnet20", "target": "imc", "adc_bits": [4, 4, 8, 8], "rows": [64, 128, 64, 128],
                         "spec_name": "", "latency_s": [4.8e-3, 4.81e-3, 4.8e-3, 4.802e-3],
                         "energy_j": [4.7e-4, 4.5e-4, 6.2e-4, 5.5e-4], "error": ""})
    fig = plot.heatmap(grid, "rows", "adc_bits", "energy_j")
    assert fig.axes[1].get_ylabel() == "energy [µJ]"  # the colour bar
    assert [t.get_text() for t in fig.axes[0].texts] == ["470", "450", "620", "550"]
    assert_readable(fig, unit_labels=2)
    # a sweep whose latencies differ in the 4th digit (the demo's old plot): ticks still distinct and apart
    fig = plot.pareto(grid, hue="adc_bits")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(set(ticks)) == len(ticks) >= 2
    assert_readable(fig, unit_labels=2)
    fig = plot.pareto(grid, "latency_s", "energy_j", labels=None)
    assert not fig.axes[0].texts


@pytest.mark.parametrize("lo, hi", [(4.8e-3, 4.81e-3), (1e-5, 2e-5), (1e-6, 1e-1), (2e-4, 9e-4), (0.5, 6.0)])
def test_log_axes_label_few_round_ticks(lo, hi):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"latency_s": np.geomspace(lo, hi, 25), "energy_j": rng.uniform(1e-4, 1e-2, 25)})
    fig = plot.pareto(df)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    locs = [v for v in ax.xaxis.get_majorticklocs() if ax.get_xlim()[0] <= v <= ax.get_xlim()[1]]
    assert 2 <= len(locs) <= plot.MAX_TICKS + 1 and len(set(labels)) == len(labels)
    assert all("e" not in t and "10^" not in t for t in labels)  # plain numbers in the axis unit
    assert_readable(fig, unit_labels=2)


def test_quantity_names_and_units():
    assert plot.quantity("latency_s", [2e-5, 8e-5]) == ("latency [µs]", 1e-6)
    assert plot.quantity("energy_j", [3e-3]) == ("energy [mJ]", 1e-3)
    assert plot.quantity("area_mm2", [62.5]) == ("chip area [mm²]", 1.0)
    assert plot.quantity("peak_activation_bytes", [3 * 2**20])[0] == "peak activations [MiB]"
    assert plot.quantity("fps", [9.1e5])[0] == "throughput [k frames/s]"
    assert plot.quantity("cell_utilization") == ("cell utilization", 1.0)
