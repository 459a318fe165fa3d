"""Accuracy in sweeps: ``data=`` adds accuracy / top1_agreement / rel_rms_error columns equal to hwsim.evaluate's;
nets as zoo names, torch modules or ONNX paths; YAML ``data:``; cost-model versions in the keys."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import hwsim
from hwsim.codesign import sweep_from_yaml
from hwsim.errors import HwsimError, ShapeError
from hwsim.evaluate import EvaluationError, LabelError, load_data


@pytest.fixture(scope="module")
def digits(digits_cnn):
    """conftest's trained DigitsCNN and the first 120 images of its test split."""
    model, x, y = digits_cnn
    return model, x[:120], y[:120]


def test_accuracy_columns_equal_evaluate_and_drop_with_a_small_adc(digits):
    model, x, y = digits
    df = hwsim.sweep(model, ("imc/isaac", {"adc_bits": [3, 8]}), data=(x, y),
                     metrics=["latency_s", "energy_j", "accuracy", "top1_agreement", "rel_rms_error"])
    assert (df["error"] == "").all()
    assert list(df.columns[-6:]) == ["accuracy", "top1_agreement", "rel_rms_error", "eval_s", "error", "key"]
    for _, r in df.iterrows():
        spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), adc_bits=int(r["adc_bits"]))
        ev = hwsim.evaluate(model, spec, x, y)
        assert r["accuracy"] == ev.accuracy_mean and r["top1_agreement"] == ev.top1_agreement_mean
        assert r["rel_rms_error"] == pytest.approx(ev.rel_rms_error_mean, rel=1e-3)  # IR fp32 vs torch reference
        assert r["energy_j"] == ev.report.energy_j
    by_bits = df.set_index("adc_bits")
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert by_bits.loc[8, "accuracy"] == torch_acc and by_bits.loc[8, "top1_agreement"] == 1.0
    assert by_bits.loc[3, "accuracy"] < torch_acc - 0.2


def test_default_metrics_with_data_add_the_data_columns_and_the_key_names_the_data(digits):
    model, x, y = digits
    a = hwsim.sweep(model, "cpu/cortex-a72", data=(x[:40], y[:40]))
    b = hwsim.sweep(model, "cpu/cortex-a72", data=(x[:40], None))
    c = hwsim.sweep(model, "cpu/cortex-a72", data=(x[:41], y[:41]))
    assert {"accuracy", "top1_agreement", "rel_rms_error", "latency_s"} <= set(a.columns)
    assert "accuracy" not in b.columns and b["top1_agreement"].iloc[0] == a["top1_agreement"].iloc[0]
    assert len({a["key"].iloc[0], b["key"].iloc[0], c["key"].iloc[0]}) == 3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript-based exporter
def test_zoo_names_and_onnx_paths_take_data(tmp_path, digits):
    model, x, y = digits
    path = tmp_path / "digits_cnn.onnx"
    torch.onnx.export(model.eval(), (torch.from_numpy(x[:1]),), str(path), dynamo=False)
    df = hwsim.sweep([str(path)], "cpu/cortex-a72", data=(x, y), metrics=["accuracy", "top1_agreement"])
    assert df["net"].tolist() == ["digits_cnn"] and df["top1_agreement"].iloc[0] == 1.0
    assert df["accuracy"].iloc[0] == hwsim.evaluate(model, "cpu/cortex-a72", x, y).accuracy_mean
    dyn = tmp_path / "digits_dynamic.onnx"  # a dynamic batch: imported at the data's sample shape, as a module is
    torch.onnx.export(model.eval(), (torch.from_numpy(x[:1]),), str(dyn), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    d = hwsim.sweep([str(dyn)], "cpu/cortex-a72", data=(x, y), metrics=["accuracy"])
    assert d["error"].iloc[0] == "" and d["accuracy"].iloc[0] == df["accuracy"].iloc[0]
    xr = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    z = hwsim.sweep("resnet20", "cpu/cortex-a72", data=xr, metrics=["top1_agreement", "rel_rms_error"])
    assert z["top1_agreement"].iloc[0] == 1.0 and z["rel_rms_error"].iloc[0] < 1e-5


def test_bad_data_refused_before_any_point(digits, monkeypatch):
    import sys

    sw = sys.modules["hwsim.codesign.sweep"]
    model, x, y = digits
    monkeypatch.setattr(sw, "evaluate_chunk", None)  # any point run would fail with a TypeError
    grid = ("imc/isaac", {"adc_bits": [4, 8]})
    cases = [
        (dict(metrics=["accuracy"]), HwsimError, "'accuracy' needs a data set"),
        (dict(data=(x, None), metrics=["accuracy"]), LabelError, "needs labels"),
        (dict(data=(x, y[:5])), LabelError, "5 labels for 120 samples"),
        (dict(data=(x, y.astype(np.float32))), LabelError, "dtype float32"),
        (dict(data=(x[:, :, :4], y)), ShapeError, "takes samples of shape (1, 8, 8)"),
        (dict(data="nowhere.npz"), EvaluationError, "does not exist"),
        (dict(data=(x, np.where(y == 0, 12, y))), LabelError, "sweep: label 12 is not a class of"),
    ]
    for kwargs, exc, words in cases:
        with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
            hwsim.sweep(model, grid, **kwargs)
    with pytest.raises(LabelError, match="sweep: label 12 is not a class of resnet20, whose output has 10"):
        hwsim.sweep(["resnet20"], grid, data=(np.zeros((2, 3, 32, 32), np.float32), np.array([1, 12])))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_yaml_data_digits_and_npz(tmp_path, monkeypatch):
    from hwsim.codesign.digits import DigitsCNN

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    net = DigitsCNN(4, 10).eval()
    torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(tmp_path / "d10.onnx"), dynamo=False)
    (tmp_path / "s.yaml").write_text("nets: [d10.onnx]\nbase: cpu/cortex-a72\ngrid: {cores: [1]}\ndata: digits\n"
                                     "metrics: [energy_j, accuracy, top1_agreement]\nout: r.csv\n")
    df = sweep_from_yaml(tmp_path / "s.yaml")
    assert (df["error"] == "").all() and 0 <= df["accuracy"].iloc[0] <= 1
    d = load_data("digits")
    ev = hwsim.evaluate(net, "cpu/cortex-a72", d.x, d.y)
    assert df["accuracy"].iloc[0] == ev.accuracy_mean and df["top1_agreement"].iloc[0] == 1.0
    again = sweep_from_yaml(tmp_path / "s.yaml")
    assert again.attrs["reused"] == 1 and again.attrs["computed"] == 0
    np.savez(tmp_path / "few.npz", x=d.x[:30], y=d.y[:30])
    (tmp_path / "n.yaml").write_text("nets: [d10.onnx]\nbase: imc/isaac\ngrid: {adc_bits: [8]}\ndata: few.npz\n")
    few = sweep_from_yaml(tmp_path / "n.yaml")
    assert few["accuracy"].iloc[0] == hwsim.evaluate(net, "imc/isaac", d.x[:30], d.y[:30]).accuracy_mean
    for text, words in [("data: [1, 2]\n", "'data:' must be digits or"), ("data: d.txt\n", "'data:' must be"),
                        ("data: missing.npz\n", "does not exist")]:
        (tmp_path / "b.yaml").write_text("nets: [d10.onnx]\nbase: imc/isaac\ngrid: {adc_bits: [8]}\n" + text)
        with pytest.raises(HwsimError, match=words):
            sweep_from_yaml(tmp_path / "b.yaml")


def test_a_new_cost_model_version_recomputes_stale_rows(tmp_path, monkeypatch):
    import hwsim.codesign.points as points

    out = tmp_path / "r.csv"
    grid = ("cpu/cortex-a72", {"cores": [1, 2]})
    first = hwsim.sweep("tfc-w1a1", grid, out=out)
    assert first.attrs["computed"] == 2
    assert hwsim.sweep("tfc-w1a1", grid, out=out).attrs["reused"] == 2
    real = points.cost_model_version
    monkeypatch.setattr(points, "cost_model_version", lambda t: real(t) + ("-edited" if t == "cpu" else ""))
    again = hwsim.sweep("tfc-w1a1", grid, out=out)
    assert (again.attrs["reused"], again.attrs["computed"], again.attrs["ignored"]) == (0, 2, 2)
    assert set(again["key"]).isdisjoint(first["key"])
    assert again["latency_s"].tolist() == first["latency_s"].tolist()


def test_cost_model_version_follows_the_targets_source(tmp_path, monkeypatch):
    import hwsim.codesign.points as points
    import hwsim.target as target

    versions = {t: points.cost_model_version(t) for t in ("cpu", "imc", "fpga")}
    assert len(set(versions.values())) == 3 and all(len(v) == 12 for v in versions.values())
    root = tmp_path / "repo"
    for part in ("hwsim/imc", "hwsim/cpu", "hwsim/kernels", "mapping"):
        (root / part).mkdir(parents=True)
        (root / part / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(target, "_root", lambda: root)
    points.source_digest.cache_clear()
    try:
        before = (points.cost_model_version("imc"), points.cost_model_version("cpu"))
        (root / "hwsim/imc/a.py").write_text("x = 2\n")
        points.source_digest.cache_clear()
        assert points.cost_model_version("imc") != before[0] and points.cost_model_version("cpu") == before[1]
        (root / "hwsim/kernels/a.py").write_text("x = 3\n")  # shared by every target
        points.source_digest.cache_clear()
        assert points.cost_model_version("cpu") != before[1]
        mid = points.cost_model_version("cpu")
        (root / "hwsim/evaluate.py").write_text("ACCURACY = 1\n")  # the accuracy columns are computed there
        points.source_digest.cache_clear()
        assert points.cost_model_version("cpu") != mid
    finally:
        points.source_digest.cache_clear()


def test_sweep_has_its_real_signature():
    import inspect

    params = inspect.signature(hwsim.sweep).parameters
    assert hwsim.sweep is hwsim.codesign.sweep
    for name in ("nets", "specs_or_grid", "metrics", "functional", "executor", "out", "progress", "workers",
                 "input_shape", "seed", "target_options", "chunksize", "data"):
        assert name in params, name


def test_a_module_without_an_input_shape_takes_the_datas():
    """A user's torch module with no hwsim_input_shape sweeps over its data as it simulates on it (the docs'
    ``hwsim.sweep(my_model, ..., data=(x_test, y_test))``); without data the shape is still asked for."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 36, 4)).eval()
    x = np.random.default_rng(0).standard_normal((12, 1, 8, 8)).astype(np.float32)
    y = np.arange(12) % 4
    df = hwsim.sweep(model, "cpu/cortex-a72", data=(x, y), metrics=["latency_s", "accuracy"])
    assert (df["error"] == "").all()
    assert df["accuracy"].iloc[0] == hwsim.evaluate(model, "cpu/cortex-a72", x, y).accuracy_mean
    with pytest.raises(ShapeError, match="input_shape"):
        hwsim.sweep(model, "cpu/cortex-a72")
