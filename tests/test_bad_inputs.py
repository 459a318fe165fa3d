"""The catalogue of bad inputs (issue 20): every one is answered with one line naming the culprit, never a
traceback, never a silently wrong result, and never after the work.

CLI cases run the in-process ``main(argv)`` (exit status 2, one stderr line ``hwsim...: error: ...``); API cases
assert the exception type and message. A few run the console script in a subprocess to check what a user sees.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
from hwsim.cli import main
from hwsim.errors import HwsimError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError

GOOD_GRID = "base: cpu/cortex-m7\ngrid: {cores: [1]}\n"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A scratch working directory with a plain file ``afile`` (for "a folder under a file") and sweep files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "junk.onnx").write_text("not a protobuf\n")
    (tmp_path / "adir").mkdir()
    files = {
        "sigma_nan.yaml": "base: imc/isaac\nconductance_sigma: .nan\n",
        "clock_nan.yaml": "target: cpu\nclock_hz: nan\n",
        "clock_inf.yaml": "base: fpga/pynq-z1\nclock_hz: .inf\n",
        "clock_word.yaml": "base: cpu/cortex-a72\nclock_hz: fast\n",
        "unknown_field.yaml": "base: cpu/cortex-a72\nclocks: 3\n",
        "malformed.yaml": "target: cpu\nclock_hz: [1\n",
        "dup.yaml": "base: cpu/cortex-a72\ncores: 2\ncores: 4\n",
        "s_shape.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "input_shape: abc\n",
        "s_netshape.yaml": "nets: [{name: tfc-w1a1, input_shape: [1, x]}]\n" + GOOD_GRID,
        "s_gridtype.yaml": "nets: [tfc-w1a1]\nbase: cpu/cortex-m7\ngrid: {cores: [abc]}\n",
        "s_gridnan.yaml": "nets: [tfc-w1a1]\nbase: cpu/cortex-m7\ngrid: {clock_hz: [1e8, .nan]}\n",
        "s_enum.yaml": "nets: [tfc-w1a1]\nbase: imc/isaac\ngrid: {adc_mode: [clamp]}\n",
        "s_field.yaml": "nets: [tfc-w1a1]\nbase: cpu/cortex-m7\ngrid: {clockhz: [1e8]}\n",
        "s_seed.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "seed: abc\n",
        "s_seed_neg.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "seed: -1\nfunctional: true\n",
        "s_dask.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "dask: notanaddress\ndask_timeout_s: 1\n",
        "s_proc.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "out: /proc/hwsim-results.csv\n",
        "s_workers.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "workers: 0\n",
        "s_functional.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "functional: maybe\n",
        "s_options.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "options: [mode, layer]\n",
        "s_nets.yaml": "nets: 5\n" + GOOD_GRID,
        "s_net.yaml": "nets: [resnet-99]\n" + GOOD_GRID,
        "s_key.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "gird: 1\n",
        "s_outfile.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "out: afile/r.csv\n",
        "s_outtxt.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "out: r.txt\n",
        "s_plot.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "plot: p.xyz\n",
        "s_metrics.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "metrics: [macs]\nplot: p.png\n",
        "s_ok.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID,
        "s_data_type.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "data: d.txt\n",
        "s_data_missing.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "data: missing.npz\n",
        "s_data_shape.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "data: digits\n",
        "s_acc_nodata.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "metrics: [latency_s, accuracy]\n",
        "s_acc_nolabels.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "data: nolabels.npz\nmetrics: [accuracy]\n",
        "s_data_labels.yaml": "nets: [tfc-w1a1]\n" + GOOD_GRID + "data: badlabels.npz\n",
    }
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 1, 28, 28), np.float32))
    np.savez(tmp_path / "badlabels.npz", x=np.zeros((3, 1, 28, 28), np.float32), y=np.zeros(3, np.float32))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def cli(argv, capsys):
    """(exit status, stdout, stderr) of the in-process CLI; argparse's own exits count as a status too."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# (argv, words the one-line message must contain): each names the culprit
CLI_CASES = [
    (["presets", "gpu"], "unknown target 'gpu'"),
    (["run", "--net", "resnet81", "--hw", "cpu/cortex-a72"], "resnet81"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a27"], "cpu/cortex-a27"),
    (["run", "--net", "tfc-w1a1", "--hw", "nowhere/file.yaml"], "no such preset file"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--input-shape", "1,3,a"], "--input-shape"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--input-shape", "0,1,28,28"], "--input-shape"),
    (["run", "--net", "itnet", "--hw", "imc/edge-small", "--net-option", "iterations"], "--net-option"),
    (["run", "--net", "itnet", "--hw", "imc/edge-small", "--net-option", "iteration=4"], "iteration"),
    (["run", "--net", "itnet", "--hw", "imc/edge-small", "--net-option", "iterations=abc"], "iterations"),
    (["run", "--net", "itnet", "--hw", "imc/edge-small", "--net-option", "iterations=2",
      "--net-option", "iterations=3"], "given twice"),
    (["run", "--model", "junk.onnx", "--hw", "cpu/cortex-a72", "--net-option", "a=1"], "--net-option"),
    (["run", "--model", "missing.onnx", "--hw", "cpu/cortex-a72"], "missing.onnx"),
    (["run", "--model", "adir", "--hw", "cpu/cortex-a72"], "adir"),
    (["run", "--model", "junk.onnx", "--hw", "cpu/cortex-a72"], "junk.onnx"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--option", "warp=9"], "warp"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--option", "threads=0"], "threads"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--option", "mode"], "--option"),
    (["run", "--net", "tfc-w1a1", "--hw", "imc/isaac", "--option", "mode=fast"], "mode"),
    (["fit", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72"], "IMC"),
    (["run", "--net", "tfc-w1a1", "--hw", "sigma_nan.yaml"], "conductance_sigma"),
    (["run", "--net", "tfc-w1a1", "--hw", "clock_nan.yaml"], "clock_hz"),
    (["run", "--net", "tfc-w1a1", "--hw", "clock_inf.yaml"], "clock_hz"),
    (["run", "--net", "tfc-w1a1", "--hw", "clock_word.yaml"], "clock_hz"),
    (["run", "--net", "tfc-w1a1", "--hw", "unknown_field.yaml"], "clocks"),
    (["run", "--net", "tfc-w1a1", "--hw", "malformed.yaml"], "malformed YAML"),
    (["run", "--net", "tfc-w1a1", "--hw", "dup.yaml"], "duplicate key 'cores'"),
    (["sweep", "missing.yaml"], "missing.yaml"),
    (["sweep", "s_shape.yaml"], "input_shape"),
    (["sweep", "s_netshape.yaml"], "input_shape"),
    (["sweep", "s_gridtype.yaml"], "cores"),
    (["sweep", "s_gridnan.yaml"], "clock_hz"),
    (["sweep", "s_enum.yaml"], "adc_mode"),
    (["sweep", "s_field.yaml"], "clockhz"),
    (["sweep", "s_seed.yaml"], "seed"),
    (["sweep", "s_seed_neg.yaml"], "a non-negative integer"),
    (["sweep", "s_dask.yaml"], "not a Dask scheduler address: 'notanaddress'"),
    (["sweep", "s_proc.yaml"], "/proc/hwsim-results.csv"),  # not writable whoever runs it (root passes os.access)
    (["sweep", "s_workers.yaml"], "workers"),
    (["sweep", "s_functional.yaml"], "functional"),
    (["sweep", "s_options.yaml"], "options"),
    (["sweep", "s_nets.yaml"], "nets"),
    (["sweep", "s_net.yaml"], "resnet-99"),
    (["sweep", "s_key.yaml"], "gird"),
    (["sweep", "s_outfile.yaml"], "afile is a file"),
    (["sweep", "s_outtxt.yaml"], "r.txt"),
    (["sweep", "s_plot.yaml"], ".xyz"),
    (["sweep", "s_metrics.yaml"], "latency_s"),
    (["sweep", "s_data_type.yaml"], "'data:' must be digits or the path of a .npz file"),
    (["sweep", "s_data_missing.yaml"], "missing.npz does not exist"),
    (["sweep", "s_data_shape.yaml"], "tfc-w1a1 takes samples of shape (1, 28, 28)"),
    (["sweep", "s_acc_nodata.yaml"], "'accuracy' needs a data set"),
    (["sweep", "s_acc_nolabels.yaml"], "'accuracy' needs labels"),
    (["sweep", "s_data_labels.yaml"], "labels must be integer class indices, got dtype float32"),
    (["sweep", "s_ok.yaml", "--plot", "s.xyz"], ".xyz"),
    (["sweep", "s_ok.yaml", "--plot", "afile/s.png"], "afile is a file"),
    (["sweep", "s_ok.yaml", "--plot", "adir"], "adir"),
    (["sweep", "s_ok.yaml", "--max-rows", "0"], "--max-rows"),
    (["demo", "--out", "/dev/null/x"], "/dev/null"),
    (["demo", "--out", "afile"], "afile is a file"),
    (["calibrate", "--quick", "--out", "afile/h.yaml"], "afile is a file"),
    (["calibrate", "--quick", "--out", "h.txt"], ".txt"),
    (["calibrate", "--quick", "--out", "h.yaml", "--rounds", "0"], "--rounds"),
    (["run", "--net", "tfc-w1a1"], "--hw"),  # argparse's own errors are one line too
    (["simulate", "--net", "tfc-w1a1"], "simulate"),
    (["run", "--net", "tfc-w1a1", "--hw", "cpu/cortex-a72", "--seed", "abc"], "--seed"),
    (["run", "--net", "tfc-w1a1", "--hw", "imc/isaac", "--seed", "-1", "--functional"], "--seed must be a non-negative"),
]


@pytest.mark.parametrize("argv,words", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_bad_input_is_one_line_exit_2(place, capsys, argv, words):
    rc, out, err = cli(argv, capsys)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwsim") and ": error: " in lines[0], err
    assert words in lines[0], err
    assert "Traceback" not in err + out
    # validated before any work: nothing was written where the bad path pointed
    assert not (place / "r.txt").exists() and not (place / "s.xyz").exists() and not (place / "h.txt").exists()


@pytest.mark.subprocess
def test_console_script_bad_inputs_print_no_traceback(place):
    """What a user sees from the installed command: one line, exit 2 (one process, several commands)."""
    code = ("import sys\nfrom hwsim.cli import main\n"
            "for argv in ([\"presets\", \"gpu\"], [\"sweep\", \"s_shape.yaml\"], [\"demo\", \"--out\", \"afile\"]):\n"
            "    print('rc', main(argv), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=place)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines[1::2] == ["rc 2"] * 3 and all(ln.startswith("hwsim: error:") for ln in lines[0::2])


# ----------------------------------------------------------------------------- API: numbers
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


TARGET_CASES = [("cpu/cortex-m7", None), ("imc/isaac", None), ("fpga/pynq-z1", "tfc-w1a1")]


def _net_and_x(net):
    if net is None:
        return _mlp(), np.ones((2, 1, 4, 4), np.float32)
    import nets

    return nets.get(net), np.ones(nets.info(net).input_shape, np.float32)


@pytest.mark.parametrize("hw,net", TARGET_CASES)
@pytest.mark.parametrize("bad,words", [(np.nan, "NaN/inf at index (0, 0, 1, 2): NaN"),
                                       (np.inf, "NaN/inf at index (0, 0, 1, 2): inf"),
                                       (-np.inf, "NaN/inf at index (0, 0, 1, 2): inf")])
def test_nan_or_inf_input_is_refused_on_every_target(hw, net, bad, words):
    """The rule (docstring of hwsim.simulate, README): NaN/inf inputs are refused, on every target."""
    model, x = _net_and_x(net)
    x[0, 0, 1, 2] = bad
    with pytest.raises(ShapeError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        hwsim.simulate(model, hw, x=x)
    assert str(e.value).startswith("x contains NaN/inf") and "\n" not in str(e.value)


@pytest.mark.parametrize("hw,net", TARGET_CASES)
def test_targets_refuse_nan_themselves(hw, net):
    """Each target's own entry point (a traced graph, bypassing hwsim.simulate) refuses it too."""
    import importlib

    model, x = _net_and_x(net)
    graph = hwsim.as_graph(model, x.shape)
    spec = hwsim.load_preset(hw)
    x[-1, 0, 3, 3] = np.nan
    target = importlib.import_module(f"hwsim.{hwsim.specs.spec_target(spec)}")
    with pytest.raises(ShapeError, match=r"NaN/inf at index \(%d, 0, 3, 3\)" % (x.shape[0] - 1)):
        target.simulate(graph, spec, x)


@pytest.mark.parametrize("x,exc,words", [
    (np.ones((1, 1, 4, 4), np.complex64), ShapeError, "complex"),
    (np.full((1, 1, 4, 4), "a"), ShapeError, "dtype <U1"),
    (np.ones((1, 1, 4, 4), bool), ShapeError, "dtype bool"),
    (np.array([[[[1.0, 2.0]]]], dtype=object), ShapeError, "dtype object"),
    (np.full((1, 1, 4, 4), 1e300), ShapeError, "too large for float32"),
    (np.float32(1.0), ShapeError, "batch dimension"),
    (np.ones((1, 1, 4, 5), np.float32), ShapeError, "does not match"),
])
def test_bad_input_arrays(x, exc, words):
    graph = hwsim.as_graph(_mlp(), (1, 1, 4, 4))
    with pytest.raises(exc, match=words):
        hwsim.simulate(graph, "cpu/cortex-m7", x=x)


@pytest.mark.parametrize("kwargs,exc,words", [
    ({"input_shape": "abc"}, ShapeError, "input_shape"),
    ({"input_shape": (1, 1, 0, 4)}, ShapeError, "input_shape"),
    ({"input_shape": (1, 1, 4.5, 4)}, ShapeError, "input_shape"),
    ({"input_shape": (1, 1, 4, 4), "seed": "a"}, HwsimError, "seed"),
    ({"input_shape": (1, 1, 4, 4), "warp": 9}, SpecError, "warp"),
])
def test_bad_simulate_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        hwsim.simulate(_mlp(), "cpu/cortex-m7", **kwargs)


@pytest.mark.parametrize("model", [None, 42, np.zeros(3)])
def test_a_model_of_no_known_kind_is_named(model):
    with pytest.raises(HwsimError, match=f"a model given as {type(model).__name__}: pass a zoo name"):
        hwsim.simulate(model, "cpu/cortex-m7", input_shape=(1, 1, 4, 4))
    with pytest.raises(HwsimError, match=f"a model given as {type(model).__name__}"):
        hwsim.evaluate(model, "cpu/cortex-m7", np.zeros((2, 1, 4, 4), np.float32))


def test_fit_checks_its_input_shape():
    with pytest.raises(ShapeError, match="input_shape"):
        hwsim.fit(_mlp(), "imc/isaac", input_shape=[1, "x"])


# ----------------------------------------------------------------------------- API: spec fields
def _float_fields(cls):
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] is float]


@pytest.mark.parametrize("preset", ["cpu/cortex-a72", "imc/isaac", "fpga/pynq-z1"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_every_float_spec_field_rejects_nan_and_inf_by_name(preset, value):
    spec = hwsim.load_preset(preset)
    fields = _float_fields(type(spec))
    assert len(fields) >= 4
    for f in fields:
        with pytest.raises(SpecError, match=rf"\.{f} must be a finite number"):
            dataclasses.replace(spec, **{f: value})


@pytest.mark.parametrize("data,words", [
    ({"base": "imc/isaac", "conductance_sigma": "nan"}, "conductance_sigma"),
    ({"target": "cpu", "clock_hz": float("nan")}, "clock_hz"),
    ({"target": "fpga", "luts": 1.5}, "luts"),
    ({"target": "imc", "sample_hold": "yes"}, "sample_hold"),
])
def test_spec_data_errors_name_the_field(data, words):
    with pytest.raises(SpecError, match=words):
        hwsim.spec_from_dict(data)


def test_unknown_target_of_preset_names():
    with pytest.raises(UnknownNameError, match="unknown target 'gpu'"):
        hwsim.preset_names("gpu")
    assert hwsim.preset_names("fpga") == ["fpga/pynq-z1", "fpga/ultra96", "fpga/zc706"]


def test_the_fpga_targets_old_name_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'xnor' is now named 'fpga'"):
        assert hwsim.preset_names("xnor") == hwsim.preset_names("fpga")
    with pytest.warns(DeprecationWarning, match="'xnor' is now named 'fpga'"):
        spec = hwsim.spec_from_dict({"target": "xnor", "name": "mine"})
    assert spec.target == "fpga" and spec.name == "mine"


# ----------------------------------------------------------------------------- API: layers, sweeps, paths
class _Rnn(nn.Module):
    def __init__(self, cls, **kw):
        super().__init__()
        self.rnn = cls(8, 8, **({"batch_first": True} | kw))

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize("model,words", [
    (_Rnn(nn.LSTM, proj_size=4), ("LSTM", "rnn", "proj_size")), (_Rnn(nn.GRU, batch_first=False), ("GRU", "rnn")),
    (nn.LSTM(8, 8, batch_first=True, proj_size=4), ("lstm",)),
], ids=["LSTM-in-a-module", "GRU-in-a-module", "bare-LSTM"])
def test_unsupported_layers_are_named(model, words):
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(model, "cpu/cortex-m7", input_shape=(1, 3, 8))
    msg = str(e.value)
    assert "\n" not in msg and all(w.lower() in msg.lower() for w in words), msg


@pytest.mark.parametrize("kwargs,exc,words", [
    ({"input_shape": "abc"}, ShapeError, "input_shape"),
    ({"workers": 0}, HwsimError, "workers"),
    ({"seed": 1.5}, HwsimError, "seed"),
    ({"functional": "yes"}, HwsimError, "functional"),
    ({"target_options": ["mode"]}, HwsimError, "options"),
    ({"out": "adir"}, HwsimError, ".csv or .parquet"),
    ({"out": "adir.csv/r.csv", "_mkfile": "adir.csv"}, HwsimError, "is a file"),
])
def test_bad_sweep_arguments_refused_before_any_point(place, kwargs, exc, words):
    kwargs = dict(kwargs)
    if "_mkfile" in kwargs:
        (place / kwargs.pop("_mkfile")).write_text("")
    kwargs.setdefault("input_shape", (1, 1, 4, 4))
    with pytest.raises(exc, match=words):
        hwsim.sweep(_mlp(), ("cpu/cortex-m7", {"cores": [1, 2]}), **kwargs)


@pytest.mark.parametrize("grid,words", [
    ({"cores": ["two"]}, "cores"), ({"clock_hz": [float("inf")]}, "clock_hz"), ({"clock_hz": ["fast"]}, "clock_hz"),
])
def test_bad_grid_values_refused_before_any_point(grid, words):
    with pytest.raises(SpecError, match=words):
        hwsim.sweep(_mlp(), ("cpu/cortex-m7", grid), input_shape=(1, 1, 4, 4))


def _evaluate_cases():
    from hwsim.evaluate import EvaluationError, LabelError

    x = np.zeros((4, 1, 4, 4), np.float32)
    return [
        ((x, np.zeros(3, np.int64)), {}, LabelError, "3 labels for 4 samples"),
        ((x, np.zeros(4, np.float64)), {}, LabelError, "integer class indices, got dtype float64"),
        ((x, np.zeros(4, bool)), {}, LabelError, "dtype bool"),
        ((x, np.array([0, 1, 2, 4])), {}, LabelError, "label 4 is not a class"),
        ((x,), {"seeds": ()}, EvaluationError, "seeds=()"),
        ((x,), {"seeds": 5}, EvaluationError, "seeds=5 is one number: give the seeds, seeds=(5,) for seed 5 or seeds=range(5)"),
        ((x,), {"seeds": ["a"]}, EvaluationError, "seeds must be non-negative integers"),
        ((x,), {"seeds": [0, -1]}, EvaluationError, "seeds must be non-negative integers, got -1"),
        ((x,), {"batch_size": -1}, EvaluationError, "batch_size"),
        ((x,), {"options": {"warp": 1}}, SpecError, "warp"),
        ((np.zeros((4, 1, 5, 4), np.float32),), {}, ShapeError, "could not be imported for samples of shape (1, 5, 4)"),
        ((np.zeros((4, 2, 4, 4), np.float32),), {}, ShapeError, "could not be imported for samples of shape (2, 4, 4)"),
        ((np.zeros((0, 1, 4, 4), np.float32),), {}, EvaluationError, "no samples"),
        ((np.full((2, 1, 4, 4), np.inf, np.float32),), {}, ShapeError, "NaN/inf"),
        (([(x, np.zeros(4, np.int64)), (x, None)],), {}, LabelError, "some batches have labels"),
        ((x, np.zeros(4, np.int64), ), {"executor": "pool"}, EvaluationError, "executor"),
    ]


@pytest.mark.parametrize("case", range(16))
def test_bad_evaluate_input_is_one_line_before_any_work(case, monkeypatch):
    args, kwargs, exc, words = _evaluate_cases()[case]
    monkeypatch.setattr(importlib.import_module("hwsim.evaluate"), "hardware_outputs", None)  # any inference would fail with a TypeError
    with pytest.raises(exc) as e:
        hwsim.evaluate(_mlp(), "imc/isaac", *args, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_accuracy_of_an_unlabelled_evaluation_is_refused():
    from hwsim.evaluate import LabelError

    ev = hwsim.evaluate(_mlp(), "cpu/cortex-m7", np.ones((2, 1, 4, 4), np.float32))
    with pytest.raises(LabelError, match="without labels"):
        _ = ev.accuracy_mean


def test_output_path_rules(place):
    from hwsim.specs import check_output_path

    assert check_output_path("new/deeper/p.png", "plot", (".png",)) == place.joinpath("new/deeper/p.png").relative_to(place)
    assert (place / "new" / "deeper").is_dir()  # a missing folder is created
    for path, words in [("afile/x.png", "afile is a file"), ("afile/a/b.png", "afile is a file"),
                        ("p.PNG5", "unsupported file type"), ("adir", "is a folder")]:
        with pytest.raises(HwsimError, match=words):
            check_output_path(path, "plot", (".png",))
    with pytest.raises(HwsimError, match="afile is a file, not a folder"):
        check_output_path("afile", "demo folder", folder=True)


# ----------------------------------------------------------------------------- names and keys (items 4 and 7)
def test_spec_from_a_file_is_named_after_it(tmp_path):
    (tmp_path / "my_chip.yaml").write_text("base: imc/isaac\nadc_bits: 6\n")
    (tmp_path / "other.yaml").write_text("base: imc/isaac\nname: chip-b\n")
    (tmp_path / "plain.yaml").write_text("target: cpu\ncores: 2\n")
    assert hwsim.load_preset(tmp_path / "my_chip.yaml").name == "my_chip"
    assert hwsim.load_preset(str(tmp_path / "other.yaml")).name == "chip-b"
    assert hwsim.load_preset(tmp_path / "plain.yaml").name == "plain"
    assert hwsim.load_preset("imc/isaac").name == "imc/isaac"
    rep = hwsim.simulate(_mlp(), str(tmp_path / "my_chip.yaml"), input_shape=(1, 1, 4, 4)).report
    assert rep.spec_name == "my_chip"


def test_sweep_keys_include_the_version(monkeypatch):
    import hwsim.codesign.points as points
    from hwsim.codesign.points import ZooNet, point_key

    data = hwsim.spec_to_dict(hwsim.load_preset("cpu/cortex-m7"))
    now = point_key(ZooNet("resnet20"), data, {})
    assert hwsim.__version__ == "0.2.0"
    monkeypatch.setattr(hwsim, "__version__", "0.1.0")
    assert point_key(ZooNet("resnet20"), data, {}) != now  # rows of an older hwsim are never reused
    monkeypatch.setattr(hwsim, "__version__", "0.2.0")
    assert point_key(ZooNet("resnet20"), data, {}) == now
    monkeypatch.setattr(points, "cost_model_version", lambda target: "edited")
    assert point_key(ZooNet("resnet20"), data, {}) != now  # nor rows of an older cost model of the target


def test_version_and_help_texts(capsys):
    rc, out, _ = cli(["--version"], capsys)
    assert rc == 0 and out.strip() == f"hwsim {hwsim.__version__}"
    import inspect

    from hwsim.codesign.sweep import _YAML_KEYS

    rc, out, _ = cli(["run", "--help"], capsys)
    assert rc == 0 and "--net-option" in out
    for target in ("cpu", "imc", "fpga"):  # every option of every target's simulate() is listed
        params = inspect.signature(__import__(f"hwsim.{target}", fromlist=["simulate"]).simulate).parameters
        for p in params.values():
            if p.kind == p.KEYWORD_ONLY and p.name != "seed":
                assert f"{p.name}=" in out, (target, p.name)
    rc, out, _ = cli(["sweep", "--help"], capsys)
    assert rc == 0 and "example:" in out
    for key in _YAML_KEYS:
        assert f"{key}:" in out, key
    import yaml

    example = yaml.safe_load("\n".join(ln[2:] for ln in out.split("example:\n", 1)[1].splitlines()))
    assert {"nets", "base", "grid"} <= set(example) <= _YAML_KEYS
    rc, out, _ = cli(["fit", "--help"], capsys)
    assert rc == 0 and "--net-option" in out and "iterations=4" in out


def test_net_option_builds_the_net_with_it(capsys):
    rc, out, err = cli(["fit", "--net", "itnet", "--hw", "imc/edge-small", "--net-option", "iterations=2",
                        "--net-option", "shared=false", "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    rc, out2, _ = cli(["fit", "--net", "itnet", "--hw", "imc/edge-small", "--json"], capsys)
    assert json.loads(out2)["crossbars_needed"] != d["crossbars_needed"]


def test_the_old_fpga_module_name_resolves_with_a_warning():
    import hwsim.fpga
    import hwsim.xnor

    with pytest.warns(DeprecationWarning, match="hwsim.xnor.XnorSpec is now hwsim.fpga.FPGASpec"):
        assert hwsim.xnor.XnorSpec is hwsim.fpga.FPGASpec
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hwsim.xnor.nothing  # noqa: B018


@pytest.mark.parametrize("metrics,words", [(["latncy_s"], "metric 'latncy_s' is not a figure of any report"),
                                           ([], "metrics is empty"),
                                           ({"lat": "latncy_s"}, "'latncy_s'")])
def test_bad_sweep_metrics_refused_before_any_point(metrics, words, monkeypatch):
    monkeypatch.setattr(importlib.import_module("hwsim.codesign.sweep"), "_run",
                        lambda *a, **k: pytest.fail("a point ran"))
    with pytest.raises(HwsimError, match=words):
        hwsim.sweep("tfc-w1a1", "cpu/cortex-a72", metrics=metrics)
