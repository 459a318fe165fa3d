"""hwsim.evaluate: accuracy, top-1 agreement and output error over device seeds, checked against torch."""
from __future__ import annotations

import dataclasses
import importlib
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import hwsim
from hwsim.evaluate import Evaluation, EvaluationError, LabelError, as_dataset, data_metrics, evaluate


@pytest.fixture(scope="module")
def digits(digits_cnn):
    """A DigitsCNN trained on digits 0-4 and its held-out test split (270 images): conftest's digits_cnn."""
    return digits_cnn


def _torch_accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_cpu_host_accuracy_is_torchs(digits):
    model, x, y = digits
    ev = evaluate(model, "cpu/host", x, y, batch_size=100)
    assert isinstance(ev, Evaluation) and list(ev.table.columns) == ["seed", "accuracy", "top1_agreement",
                                                                       "rel_rms_error"]
    assert ev.samples == 270 and len(ev.table) == 1
    assert ev.accuracy_mean == _torch_accuracy(model, x, y) == ev.reference_accuracy
    assert ev.top1_agreement_mean == 1.0
    assert ev.rel_rms_error_mean < 1e-5  # fp32 kernels with BN folded: rounding only
    assert ev.report.target == "cpu" and ev.report.batch == 1 and ev.report.latency_s > 0
    assert np.isnan(ev.accuracy_std)  # one seed: no spread
    assert "accuracy" in ev.summary() and "270 samples" in ev.summary()


def test_imc_exact_adc_agrees_with_float_and_3_bit_adc_loses_accuracy(digits):
    model, x, y = digits
    exact = evaluate(model, "imc/isaac", x, y)
    assert exact.top1_agreement_mean == 1.0  # 8-bit ADC covers every partial sum: only 8-bit quantization remains
    assert 0 < exact.rel_rms_error_mean < 0.05
    spec3 = dataclasses.replace(hwsim.load_preset("imc/isaac"), adc_bits=3)
    low = evaluate(model, spec3, x, y)
    assert low.accuracy_mean < exact.accuracy_mean - 0.2
    assert low.top1_agreement_mean < 0.8 and low.rel_rms_error_mean > 10 * exact.rel_rms_error_mean
    assert low.report.energy_j < exact.report.energy_j  # the cost report is of the spec evaluated


def test_imc_accuracy_does_not_depend_on_the_batch_size(digits):
    """Inputs are quantized per sample on an ideal chip: the same figures whatever batch_size groups them."""
    model, x, y = digits
    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), adc_bits=4)
    a = evaluate(model, spec, x[:60], y[:60], batch_size=60).table
    b = evaluate(model, spec, x[:60], y[:60], batch_size=7).table
    assert a["accuracy"].iloc[0] == b["accuracy"].iloc[0] and a["top1_agreement"].iloc[0] == b["top1_agreement"].iloc[0]
    assert a["rel_rms_error"].iloc[0] == pytest.approx(b["rel_rms_error"].iloc[0], rel=1e-5)  # (torch's batching)


@pytest.mark.slow  # 3 to 6 s: 9 noisy bit-level evaluations
def test_seeds_differ_only_with_noise(digits):
    model, x, y = digits
    x, y = x[:40], y[:40]
    ideal = evaluate(model, "imc/isaac", x, y, seeds=range(3), batch_size=32)
    assert ideal.table["seed"].tolist() == [0, 1, 2]
    assert ideal.table.drop(columns="seed").nunique().max() == 1  # no noise: every seed the same
    assert ideal.accuracy_std == 0.0
    noisy_spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), conductance_sigma=0.2)
    noisy = evaluate(model, noisy_spec, x, y, seeds=range(3), batch_size=32)
    assert noisy.table["rel_rms_error"].nunique() == 3 and noisy.rel_rms_error_mean > ideal.rel_rms_error_mean
    again = evaluate(model, noisy_spec, x, y, seeds=[2, 0], batch_size=32)  # reproducible per seed, any order
    by_seed = noisy.table.set_index("seed")
    for _, r in again.table.iterrows():
        assert r["rel_rms_error"] == by_seed.loc[r["seed"], "rel_rms_error"]


@pytest.mark.slow  # 4 to 7 s: 8 noisy bit-level evaluations
def test_dataloader_graph_and_executor_give_the_same_table(digits):
    model, x, y = digits
    x, y = x[:40], y[:40]
    noisy = dataclasses.replace(hwsim.load_preset("imc/isaac"), conductance_sigma=0.1)
    base = evaluate(model, noisy, x, y, seeds=(0, 1), batch_size=16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=15)
    from_loader = evaluate(model, noisy, loader, seeds=(0, 1), batch_size=16)
    graph = hwsim.as_graph(model, (1, 1, 8, 8))
    from_graph = evaluate(graph, noisy, torch.from_numpy(x), torch.from_numpy(y), seeds=(0, 1), batch_size=16)
    with ThreadPoolExecutor(2) as ex:
        on_pool = evaluate(model, noisy, x, y, seeds=(0, 1), batch_size=16, executor=ex)
    for other in (from_loader, on_pool):
        assert other.table.equals(base.table)
    # the graph's float reference is the IR's fp32 run, not torch: the same up to rounding
    assert np.allclose(from_graph.table.to_numpy(), base.table.to_numpy(), rtol=1e-4, atol=1e-6)


def test_read_noise_is_reproducible_whatever_runs_the_batches(digits):
    """Read noise is drawn per inference: batch k of the data reads the k-th draw, in any process and order."""
    model, x, y = digits
    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), read_sigma=0.05)
    a = evaluate(model, spec, x[:40], y[:40], seeds=(0, 1), batch_size=10)
    b = evaluate(model, spec, x[:40], y[:40], seeds=(0, 1), batch_size=10)
    with ThreadPoolExecutor(2) as ex:
        c = evaluate(model, spec, x[:40], y[:40], seeds=(0, 1), batch_size=10, executor=ex)
    assert a.table.equals(b.table) and a.table.equals(c.table)
    assert (a.table["rel_rms_error"] > 0).all() and a.table["rel_rms_error"].nunique() == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_local_process_pool_gives_the_same_table(digits):
    from hwsim.codesign.sweep import _default_executor

    model, x, y = digits
    noisy = dataclasses.replace(hwsim.load_preset("imc/isaac"), conductance_sigma=0.1)
    serial = evaluate(model, noisy, x, y, seeds=(0, 1, 2), batch_size=90)
    ex = _default_executor(100, 2)
    try:
        pooled = evaluate(model, noisy, x, y, seeds=(0, 1, 2), batch_size=90, executor=ex)
    finally:
        ex.shutdown()
    assert pooled.table.equals(serial.table)


@pytest.mark.slow
def test_dask_executor_gives_the_same_table(digits):
    distributed = pytest.importorskip("distributed")
    model, x, y = digits
    noisy = dataclasses.replace(hwsim.load_preset("imc/isaac"), conductance_sigma=0.1)
    serial = evaluate(model, noisy, x[:60], y[:60], seeds=(0, 1), batch_size=30)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        on_dask = evaluate(model, noisy, x[:60], y[:60], seeds=(0, 1), batch_size=30, executor=client.get_executor())
    assert on_dask.table.equals(serial.table)


def test_unlabelled_data_and_zoo_names():
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ev = evaluate("resnet20", "cpu/cortex-a72", x)
    assert list(ev.table.columns) == ["seed", "top1_agreement", "rel_rms_error"]
    assert ev.top1_agreement_mean == 1.0 and ev.rel_rms_error_mean < 1e-5 and ev.reference_accuracy is None
    with pytest.raises(LabelError, match="without labels"):
        _ = ev.accuracy_mean


def test_hwsim_evaluate_is_callable_whatever_was_imported(digits):
    import hwsim.evaluate as mod

    model, x, y = digits
    assert callable(sys.modules["hwsim.evaluate"]) and mod.Evaluation is Evaluation
    ev = hwsim.evaluate(model, "cpu/host", x[:10], y[:10])
    assert isinstance(ev, Evaluation)
    assert hwsim.Evaluation is Evaluation


def test_data_metrics_formulas():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = np.array([[1.0, 0.5], [1.0, 0.0]])
    m = data_metrics(out, ref, np.array([0, 0]))
    assert m == {"accuracy": 1.0, "top1_agreement": 0.5, "rel_rms_error": pytest.approx(np.sqrt(5.25 / 5.0))}
    assert data_metrics(ref, ref, None) == {"top1_agreement": 1.0, "rel_rms_error": 0.0}


@pytest.mark.parametrize("args,kwargs,exc,words", [
    ((np.zeros((4, 1, 8, 8)), np.zeros(3, np.int64)), {}, LabelError, "3 labels for 4 samples"),
    ((np.zeros((4, 1, 8, 8)), np.zeros(4, np.float32)), {}, LabelError, "dtype float32"),
    ((np.zeros((4, 1, 8, 8)), np.zeros((4, 1), np.int64)), {}, LabelError, "shape"),
    ((np.zeros((4, 1, 8, 8)), np.array([0, 1, 2, 7])), {}, LabelError, "label 7"),
    ((np.zeros((4, 1, 8, 8)), np.array([0, -1, 2, 3])), {}, LabelError, ">= 0"),
    ((np.zeros((4, 1, 8, 8)),), {"seeds": ()}, EvaluationError, "seeds=()"),
    ((np.zeros((4, 1, 8, 8)),), {"seeds": [0, 0.5]}, EvaluationError, "integers"),
    ((np.zeros((4, 1, 8, 8)),), {"batch_size": 0}, EvaluationError, "batch_size"),
    ((np.zeros((4, 3, 8, 8)),), {}, hwsim.ShapeError, "cannot take"),
    ((np.zeros((0, 1, 8, 8)),), {}, EvaluationError, "no samples"),
    ((np.full((2, 1, 8, 8), np.nan),), {}, hwsim.ShapeError, "NaN"),
])
def test_bad_inputs_before_any_work(args, kwargs, exc, words, monkeypatch):
    from hwsim.codesign.digits import DigitsCNN

    monkeypatch.setattr(importlib.import_module("hwsim.evaluate"), "hardware_outputs", None)  # any inference would fail with a TypeError
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        evaluate(DigitsCNN(4, 5), "imc/isaac", *args, **kwargs)
    assert "\n" not in str(e.value)


def test_as_dataset_loads_digits_and_npz(tmp_path):
    d = as_dataset("digits")
    assert d.x.shape == (1797, 1, 8, 8) and d.y.dtype == np.int64 and set(d.y.tolist()) == set(range(10))
    assert 0.0 <= d.x.min() and d.x.max() <= 1.0
    np.savez(tmp_path / "d.npz", x=d.x[:5], y=d.y[:5])
    e = as_dataset(tmp_path / "d.npz")
    assert np.array_equal(e.x, d.x[:5]) and np.array_equal(e.y, d.y[:5]) and e.name == "d"
    assert e.digest != as_dataset(d.x[:5], d.y[:5] + 1).digest
    np.savez(tmp_path / "bad.npz", images=d.x[:5])
    with pytest.raises(EvaluationError, match="no array 'x'"):
        as_dataset(tmp_path / "bad.npz")


def test_a_multi_exit_module_is_compared_on_its_last_exit():
    """A torch module with several outputs (ItNet's exits): the reference is its last output, as hwsim's."""
    import nets

    model = nets.get("itnet")
    x = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    ev = evaluate(model, "cpu/cortex-a72", x)
    assert ev.table["top1_agreement"].iloc[0] == 1.0
    assert ev.table["rel_rms_error"].iloc[0] < 1e-4


def test_a_model_that_runs_one_sample_at_a_time_is_evaluated_one_sample_at_a_time():
    class OneAtATime(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            if x.shape[0] != 1:
                raise RuntimeError("batch 1 only")
            return self.fc(x)

    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = np.arange(6) % 3
    torch.manual_seed(0)
    model = OneAtATime().eval()
    assert hwsim.as_graph(model, (1, 4)).batch_fixed  # found at import: it cannot run a batch of 2
    three, one = (evaluate(model, "cpu/host", x, y, batch_size=b).table for b in (3, 1))
    assert three.equals(one)  # run one sample at a time, whatever batch_size says


def test_outputs_of_different_shapes_are_refused_and_a_dict_is_scored():
    """A net returning (logits, features) would be scored on its features (the last output): refused in one line
    naming the shapes; a net returning {"logits": ...} is scored on the logits, as torch's argmax says."""
    from torch import nn

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.f, self.h = nn.Linear(12, 16), nn.Linear(16, 3)

        def forward(self, x):
            z = torch.relu(self.f(x))
            return self.h(z), z

    class Dict(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return {"logits": self.m(x)[0]}

    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((20, 12)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 20)
    two = TwoHeads().eval()
    with pytest.raises(EvaluationError, match=r"2 outputs of different shapes \[\(3,\), \(16,\)\]"):
        hwsim.evaluate(two, "cpu/host", x, y)
    ev = hwsim.evaluate(Dict(two).eval(), "cpu/host", x, y, progress=False)
    with torch.no_grad():
        want = float((two(torch.from_numpy(x))[0].argmax(1).numpy() == y).mean())
    assert ev.table["accuracy"].iloc[0] == pytest.approx(want) and ev.reference_accuracy == pytest.approx(want)


def test_a_forking_process_pool_is_refused_before_work_and_a_broken_pool_names_the_main_guard():
    """Linux's default ProcessPoolExecutor forks this process after torch started its threads (it hung or died):
    evaluate and sweep refuse it up front; a forkserver pool is taken. A worker pool that broke says the likely
    cause (a script without the __main__ guard, imported again by each worker)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from hwsim.codesign.sweep import check_executor, worker_failure

    x = np.zeros((2, 12), np.float32)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as fork:
        with pytest.raises(EvaluationError, match="forks"):
            hwsim.evaluate("tiny-autoencoder", "cpu/host", x, executor=fork)
        with pytest.raises(hwsim.HwsimError, match="sweep: a ProcessPoolExecutor that forks"):
            hwsim.sweep(["tiny-autoencoder"], ["cpu/host"], executor=fork)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as ok:
        check_executor(ok, "sweep")
    assert '__name__ == "__main__"' in worker_failure("sweep", BrokenProcessPool("gone"))
    assert "__main__" not in worker_failure("sweep", ValueError("x"))
