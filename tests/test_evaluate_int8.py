"""hwsim.evaluate on an int8 CPU spec: one quantized model for the whole data set, as deployed."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import hwsim
from hwsim.evaluate import data_metrics, evaluate


@pytest.fixture(scope="module")
def digits_small():
    """A small DigitsCNN trained on digits 0-4 and 120 held-out images."""
    from hwsim.codesign.digits import load_split, pretrained_cnn

    model = pretrained_cnn(width=8, epochs=5, seed=0)
    _, _, xte, yte = load_split((0, 1, 2, 3, 4), seed=0)
    return model, xte.numpy()[:120], yte.numpy()[:120]


def _torch(model, x):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _int8_outputs(graph, x, calib, size):
    outs = [hwsim.simulate(graph, "cpu/cortex-m4", x[i:i + size], calib=calib).outputs for i in range(0, len(x), size)]
    return np.concatenate(outs)


def test_int8_calibrates_once_on_the_first_samples_whatever_the_batch_size(digits_small, monkeypatch):
    model, x, y = digits_small
    monkeypatch.setattr(importlib.import_module("hwsim.evaluate"), "CALIB_SAMPLES", 80)
    ev = evaluate(model, "cpu/cortex-m4", x, y, batch_size=50)
    graph = hwsim.as_graph(model, (1,) + x.shape[1:])
    ref = _torch(model, x)  # evaluate's reference for a torch module
    fixed = _int8_outputs(graph, x, x[:80], 50)  # every batch quantized with the first 80 samples' ranges
    assert ev.table.iloc[0].to_dict() == {"seed": 0, **data_metrics(fixed, ref, y)}
    other = evaluate(model, "cpu/cortex-m4", x, y, batch_size=7).table.iloc[0]  # not the batch size's calibration
    assert other["accuracy"] == ev.table.iloc[0]["accuracy"]  # (the float reference moves with torch's batching)
    assert other["rel_rms_error"] == pytest.approx(ev.table.iloc[0]["rel_rms_error"], rel=1e-4)
    per_batch = np.concatenate([hwsim.simulate(graph, "cpu/cortex-m4", x[i:i + 50]).outputs for i in (0, 50, 100)])
    assert not np.array_equal(per_batch, fixed)  # what calibrating each batch on itself would have given
    assert any("calibrated once, on the first 80 samples" in n for n in ev.report.notes)


def test_a_calibration_set_of_the_callers_is_used_for_every_batch(digits_small):
    model, x, y = digits_small
    calib = x[::-1][:40].copy()
    ev = evaluate(model, "cpu/cortex-m4", x, y, batch_size=60, options={"calib": calib})
    graph = hwsim.as_graph(model, (1,) + x.shape[1:])
    ref = _torch(model, x)
    assert ev.rel_rms_error_mean == data_metrics(_int8_outputs(graph, x, calib, 60), ref, y)["rel_rms_error"]
    assert not any("calibrated once" in n for n in ev.report.notes)


def test_a_calibration_set_of_the_wrong_shape_is_refused_before_the_reference_runs(digits_small, monkeypatch):
    import hwsim.evaluate as ev_mod
    from hwsim.errors import ShapeError

    model, x, y = digits_small

    def no_reference(*a, **k):
        raise AssertionError("reference outputs computed before the calibration set was checked")

    monkeypatch.setattr(ev_mod, "reference_outputs", no_reference)
    with pytest.raises(ShapeError, match=r"\(4, 1, 4, 4\)"):
        evaluate(model, "cpu/cortex-m4", x, y, batch_size=60, options={"calib": np.zeros((4, 1, 4, 4), np.float32)})



def test_sweep_accuracy_calibrates_once_as_evaluate_does(digits_small, monkeypatch):
    """A sweep's accuracy columns on an int8 spec come from the same single calibration as hwsim.evaluate (each
    data batch was calibrated on itself: the same data gave other int8 figures in a sweep than in evaluate)."""
    sweep_eval = importlib.import_module("hwsim.codesign.sweep_eval")
    model, x, y = digits_small
    monkeypatch.setattr(importlib.import_module("hwsim.evaluate"), "CALIB_SAMPLES", 80)
    monkeypatch.setattr(sweep_eval, "DATA_BATCH", 50)  # three data batches, none of them the calibration set
    ev = evaluate(model, "cpu/cortex-m4", x, y, batch_size=50).table.iloc[0]
    df = hwsim.sweep(model, "cpu/cortex-m4", data=(x, y), metrics=["accuracy", "rel_rms_error"], workers=1)
    assert df["accuracy"].iloc[0] == ev["accuracy"]
    assert df["rel_rms_error"].iloc[0] == pytest.approx(ev["rel_rms_error"], rel=1e-4)
    graph = hwsim.as_graph(model, (1,) + x.shape[1:])
    per_batch = np.concatenate([hwsim.simulate(graph, "cpu/cortex-m4", x[i:i + 50]).outputs for i in (0, 50, 100)])
    assert data_metrics(per_batch, _torch(model, x), y)["rel_rms_error"] != pytest.approx(ev["rel_rms_error"], rel=1e-4)


def test_search_accuracy_calibrates_once_as_evaluate_does(monkeypatch):
    import nets
    from hwsim.codesign.search import search

    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 12)
    monkeypatch.setattr(importlib.import_module("hwsim.evaluate"), "CALIB_SAMPLES", 4)
    monkeypatch.setattr(importlib.import_module("hwsim.codesign.sweep"), "DATA_BATCH", 4)
    r = search({"resnet20": {"base_width": [4]}}, "cpu/cortex-m4", storage=":memory:", n_trials=1,
                      objectives=["latency_s", "rel_rms_error"], data=(x, y))
    trial = r.trials[r.trials.state == "COMPLETE"].iloc[0]
    ev = evaluate(nets.get("resnet20", base_width=4), "cpu/cortex-m4", x, y, batch_size=4)
    assert trial["top1_agreement"] == ev.top1_agreement_mean
    assert trial["rel_rms_error"] == pytest.approx(ev.rel_rms_error_mean, rel=1e-4)
