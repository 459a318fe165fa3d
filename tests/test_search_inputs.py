"""search(): a stored study is resumed only by the same search (fingerprint), the default storage is in memory, and
bad input (arguments, space, objectives, score_fn) is a one-line HwsimError before the first trial."""
from __future__ import annotations

import math

import pytest

optuna = pytest.importorskip("optuna")

from hwsim.codesign import search  # noqa: E402
from hwsim.codesign.search import ScoreFnError  # noqa: E402
from hwsim.errors import HwsimError, SpecError  # noqa: E402

NETS = {"resnet20": {"base_width": [4, 8]}}
M7 = {"clock_hz": [1e8, 2e8]}


def _n_trials(db, name="hwsim-search") -> int:
    return len(optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials())


def test_resume_by_another_search_is_refused_before_any_trial(tmp_path):
    db = tmp_path / "s.db"
    a = search(NETS, "cpu/cortex-m7", M7, n_trials=3, storage=db, seed=0)
    assert len(a.trials) == 3 and a.storage == f"sqlite:///{db}"
    others = [  # (arguments of another search, what the refusal names)
        (dict(base_spec="cpu/cortex-a72", hw={"clock_hz": [1e9, 2e9]}), "different base spec, hardware space"),
        (dict(hw={"clock_hz": [1e8, 3e8]}), r"different hardware space\)"),
        (dict(hw={"clock_hz": (1e8, 2e8)}), r"different hardware space\)"),  # a range is not the choice of its ends
        (dict(nets={"resnet20": {"base_width": [4, 16]}}), r"different nets\)"),
        (dict(objectives={"latency_s": "max", "energy_j": "min"}), r"different objectives\)"),
        (dict(objectives=["latency_s", "energy_j", "params"]), r"different objectives\)"),
        (dict(score_fn=lambda n, kw, g, r: {"w": 1.0}), r"different score_fn\)"),
        (dict(input_shape=(1, 3, 16, 16)), r"different nets\)"),
    ]
    for kw, match in others:
        args = dict(nets=NETS, base_spec="cpu/cortex-m7", hw=M7) | kw
        with pytest.raises(HwsimError, match=match) as e:
            search(args.pop("nets"), args.pop("base_spec"), args.pop("hw"), n_trials=5, storage=db, seed=0, **args)
        msg = str(e.value)
        assert "\n" not in msg and str(db) in msg and "'hwsim-search'" in msg and "another study_name" in msg
        assert _n_trials(db) == 3  # nothing ran
    # the same search resumes (another seed only changes which points are tried) ...
    b = search(NETS, "cpu/cortex-m7", M7, n_trials=5, storage=db, seed=7)
    assert len(b.trials) == 5 and b.trials.iloc[:3].equals(a.trials)
    # ... and another one runs under another study name in the same file
    c = search(NETS, "cpu/cortex-a72", {"clock_hz": [1e9, 2e9]}, n_trials=2, storage=db, study_name="a72")
    assert set(c.trials["hw.clock_hz"]) <= {1e9, 2e9} and _n_trials(db) == 5


def test_study_stored_without_a_fingerprint_is_refused(tmp_path):
    db = tmp_path / "old.db"
    old = optuna.create_study(storage=f"sqlite:///{db}", study_name="hwsim-search", directions=["minimize"] * 2)
    old.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)
    with pytest.raises(HwsimError, match="stored without a fingerprint .* pass another study_name"):
        search(NETS, "cpu/cortex-m7", M7, n_trials=2, storage=db)


def test_default_storage_is_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = search({"resnet20": {"base_width": [4]}}, "cpu/cortex-m7", {"clock_hz": [1e8]}, n_trials=2)
    b = search({"tiny-resnet8": {}}, "imc/edge-small", {"rows": [64, 128]}, n_trials=2)
    assert a.storage is None and b.storage is None and list(tmp_path.iterdir()) == []
    assert set(a.trials["net"]) == {"resnet20"} and set(b.trials["net"]) == {"tiny-resnet8"}


BAD = [
    (dict(hw={"clock_hz": (3e8, 1e8)}), SpecError, "range .* needs finite lo <= hi"),
    (dict(hw={"clock_hz": (1e8, math.inf)}), SpecError, "needs finite lo <= hi"),
    (dict(hw={"cores": ["many"]}), SpecError, "hardware field 'cores': CPUSpec.cores must be int, got 'many'"),
    (dict(hw={"clock_hz": [math.nan]}), SpecError, "not a finite number"),
    (dict(hw=[("clock_hz", [1e8])]), SpecError, "hw must be"),
    (dict(nets={"resnet20": {"base_width": (8, 4)}}), HwsimError, "resnet20.base_width range"),
    (dict(nets=["resnet20"]), HwsimError, "nets must be a non-empty"),
    (dict(population_size=1), HwsimError, "population_size must be an integer >= 2"),
    (dict(n_jobs=0), HwsimError, "n_jobs must be an integer >= 1"),
    (dict(n_trials=-1), HwsimError, "n_trials must be an integer >= 0"),
    (dict(n_trials=2.5), HwsimError, "n_trials must be an integer >= 0"),
    (dict(n_trials=True), HwsimError, "n_trials must be an integer >= 0"),
    (dict(seed=-1), HwsimError, "seed must be an integer"),
    (dict(study_name=""), HwsimError, "study_name must be a non-empty string"),
    (dict(objectives=["latncy_s"]), HwsimError, r"objective\(s\) \['latncy_s'\] are not report figures"),
    (dict(objectives=["latency_s", "fit_reason"]), HwsimError, "objective 'fit_reason' is not a number"),
    (dict(objectives=None), HwsimError, "objectives must be"),
    (dict(score_fn=3), ScoreFnError, "score_fn must be callable"),
    (dict(score_fn=lambda n, kw, g, r: 1 / 0), ScoreFnError, "score_fn <lambda> raised ZeroDivisionError"),
    (dict(score_fn=lambda n, kw, g, r: [1.0]), ScoreFnError, "must return {name: number}, got list"),
    (dict(score_fn=lambda n, kw, g, r: {"acc": math.nan}, objectives=["latency_s", "acc"]), ScoreFnError,
     "score_fn <lambda> returned nan for objective 'acc'"),
    (dict(score_fn=lambda n, kw, g, r: {"acc": "high"}, objectives=["latency_s", "acc"]), ScoreFnError,
     "returned 'high' for objective 'acc'"),
    (dict(target_options={"no_such_option": 1}), HwsimError, "no net simulates on the base spec"),
    (dict(storage="/no/such/folder/s.db"), HwsimError, "must be a file in an existing folder"),
]


@pytest.mark.parametrize("kw, err, match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_before_any_trial(tmp_path, kw, err, match):
    args = dict(nets=NETS, hw=M7, storage=tmp_path / "s.db") | kw
    with pytest.raises(err, match=match) as e:
        search(args.pop("nets"), "cpu/cortex-m7", args.pop("hw"), **({"n_trials": 2} | args))
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # refused before the storage was opened: no study, no trial


def test_objective_typo_does_not_poison_the_study(tmp_path):
    db = tmp_path / "s.db"
    with pytest.raises(HwsimError, match="latncy_s"):
        search(NETS, "cpu/cortex-m7", M7, objectives=["latncy_s"], n_trials=2, storage=db)
    assert len(search(NETS, "cpu/cortex-m7", M7, objectives=["latency_s"], n_trials=2, storage=db).trials) == 2


def test_nan_objective_in_a_trial_is_an_error_row_and_counts():
    def score(net, kw, graph, rep):  # finite at the probe (base_width 4), NaN for the wider net
        return {"acc": 0.5 if kw["base_width"] == 4 else math.nan}

    r = search({"resnet20": {"base_width": [4, 8]}}, "cpu/cortex-m7", M7, objectives=["latency_s", "acc"],
               score_fn=score, n_trials=8, storage=":memory:", seed=0)
    wide = r.trials[r.trials["resnet20.base_width"] == 8]
    assert len(r.trials) == 8 and len(wide) > 0 and (wide["state"] == "PRUNED").all()
    assert wide["error"].str.contains("acc=nan").all() and set(r.front["resnet20.base_width"]) == {4}


def test_fail_trials_do_not_count_toward_n_trials(tmp_path):
    calls, db = [0], tmp_path / "s.db"

    def score(net, kw, graph, rep):  # the probe is call 1, trial 0 call 2, trial 1 (call 3) raises
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("flaky")
        return {"w": float(kw["base_width"])}

    with pytest.raises(ScoreFnError, match="score_fn .*score raised RuntimeError: flaky"):
        search(NETS, "cpu/cortex-m7", M7, score_fn=score, n_trials=3, storage=db)
    r = search(NETS, "cpu/cortex-m7", M7, score_fn=score, n_trials=3, storage=db)  # same search: resumes
    assert list(r.trials["state"]) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
