"""Optuna NSGA-II search over zoo nets × CPU fields: figures equal a direct simulate, the front is
non-dominated, a study in SQLite resumes, invalid points are recorded, bad input is refused."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("optuna")

import hwsim  # noqa: E402
import nets  # noqa: E402
from hwsim.codesign import pareto_front, search  # noqa: E402
from hwsim.errors import HwsimError, SpecError  # noqa: E402
from hwsim.evaluate import LabelError  # noqa: E402

NETS = {"resnet20": {"base_width": [4, 8]}, "itnet": {"iterations": [1, 2], "channels": [8, 16]}}
HW = {"cores": [0, 1, 2, 4], "clock_hz": [1e9, 2e9]}  # cores=0 is an invalid point


def test_search_resumes_and_front_is_non_dominated(tmp_path):
    db = tmp_path / "study.db"
    r1 = search(NETS, "cpu/cortex-a72", HW, n_trials=10, storage=db, seed=1)
    assert len(r1.trials) == 10 and db.exists()
    pruned = r1.trials[r1.trials["state"] == "PRUNED"]
    assert (pruned["hw.cores"] == 0).all() and pruned["error"].str.contains("cores").all()
    done = r1.trials[r1.trials["state"] == "COMPLETE"]
    assert len(done) > 0 and set(r1.front["trial"]) <= set(done["trial"])
    assert set(r1.front["trial"]) == set(pareto_front(done, ["latency_s", "energy_j"])["trial"])

    # a trial's figures are those of a direct simulation of the same point
    t = done.iloc[0]
    kw = {k.split(".", 1)[1]: t[k] for k in done.columns if k.startswith(t["net"] + ".") and t[k] == t[k]}
    kw = {k: int(v) for k, v in kw.items()}
    spec = dataclasses.replace(hwsim.load_preset("cpu/cortex-a72"), cores=int(t["hw.cores"]),
                               clock_hz=float(t["hw.clock_hz"]))
    rep = hwsim.simulate(nets.get(t["net"], **kw), spec, input_shape=nets.info(t["net"]).input_shape).report
    assert t["latency_s"] == pytest.approx(rep.latency_s, rel=1e-12)
    assert t["energy_j"] == pytest.approx(rep.energy_j, rel=1e-12)

    r2 = search(NETS, "cpu/cortex-a72", HW, n_trials=14, storage=db, seed=1)  # resumes: 4 more
    assert len(r2.trials) == 14 and list(r2.trials["trial"][:10]) == list(r1.trials["trial"])


def test_score_fn_objective_maximised():
    r = search({"resnet20": {"base_width": [4, 8, 16]}}, "cpu/cortex-a72", {}, storage=":memory:", n_trials=6,
               objectives={"latency_s": "min", "params": "max"})
    done = r.trials[r.trials.state == "COMPLETE"]
    # wider nets are slower but have more parameters: every width tried is a trade-off on the front
    assert set(r.front["resnet20.base_width"]) == set(done["resnet20.base_width"])
    f = r.front.drop_duplicates("resnet20.base_width").sort_values("params")
    assert f["latency_s"].is_monotonic_increasing and f["params"].is_unique


def test_bad_search_input():
    with pytest.raises(SpecError, match="coress"):
        search(NETS, "cpu/cortex-a72", {"coress": [1]}, storage=":memory:", n_trials=1)
    with pytest.raises(HwsimError, match="widht"):
        search({"resnet20": {"widht": [1]}}, "cpu/cortex-a72", storage=":memory:", n_trials=1)
    with pytest.raises(HwsimError, match="not report figures"):
        search({"resnet20": {}}, "cpu/cortex-a72", storage=":memory:", n_trials=1, objectives=["accurcy"])
    with pytest.raises(HwsimError, match="'accuracy' needs a data set"):
        search({"resnet20": {}}, "cpu/cortex-a72", storage=":memory:", n_trials=1, objectives=["accuracy"])
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(hwsim.ShapeError, match="resnet20 takes samples of shape"):
        search({"resnet20": {}}, "imc/isaac", storage=":memory:", n_trials=1, data=(x, None))
    with pytest.raises(LabelError, match="needs labels"):
        search({"resnet20": {}}, "imc/isaac", storage=":memory:", n_trials=1, data=(x, None),
               objectives=["energy_j", "accuracy"])


def test_accuracy_objective_on_data_is_that_of_evaluate():
    """Each trial's accuracy / top-1 agreement on the data equal hwsim.evaluate's for the same net and hardware;
    accuracy, named in a list, is maximised on the front."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    r = search({"resnet20": {"base_width": [4]}}, "imc/isaac", {"adc_bits": [3, 8]}, storage=":memory:",
               n_trials=3, objectives=["energy_j", "accuracy"], data=(x, y))
    assert r.objectives == {"energy_j": "min", "accuracy": "max"}
    done = r.trials[r.trials.state == "COMPLETE"]
    for bits, g in done.groupby("hw.adc_bits"):
        spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), adc_bits=int(bits))
        ev = hwsim.evaluate(nets.get("resnet20", base_width=4), spec, x, y)
        assert (g["accuracy"] == ev.accuracy_mean).all() and (g["top1_agreement"] == ev.top1_agreement_mean).all()
    assert set(r.front["trial"]) == set(pareto_front(done, {"energy_j": "min", "accuracy": "max"})["trial"])
