"""NetCut: TRN enumeration, cost-model estimates, deadline filtering, fine-tuning only proposals,
ranking, the empty-table message, and the digits demo across CPU presets."""
from __future__ import annotations

import copy

import pytest
import torch

import hwsim
import nets
from hwsim.codesign import netcut
from hwsim.codesign.netcut import build_trn, default_head, trn_blocks
from hwsim.errors import HwsimError

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def resnet20():
    return nets.get("resnet20", base_width=4)


def test_blocks_and_full_depth_trn_has_the_original_macs(resnet20):
    blocks = trn_blocks(resnet20)
    names = [n for n, _ in blocks]
    assert names == ["conv1", "bn1", "relu"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    full = build_trn(blocks, len(blocks) - 1, default_head(16, 10))
    macs_trn = hwsim.simulate(full, "cpu/cortex-a72", input_shape=SHAPE).report.macs
    macs_orig = hwsim.simulate(resnet20, "cpu/cortex-a72", input_shape=SHAPE).report.macs
    assert macs_trn == macs_orig  # same body, same pool + linear head


def test_estimates_filter_and_rank(resnet20):
    r = netcut(resnet20, "cpu/cortex-m7", 1.0, input_shape=SHAPE)
    c = r.candidates
    assert list(c["cut"]) == ["relu"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]  # no cut before BN/ReLU
    assert c["est_latency_s"].is_monotonic_increasing and c["macs"].is_monotonic_increasing
    # the estimate is the simulator's figure for that TRN
    k = 4
    trn = build_trn(trn_blocks(resnet20), k + 2, default_head(int(c["channels"][k]), 10))
    ref = hwsim.simulate(trn, "cpu/cortex-m7", input_shape=SHAPE).report.latency_s
    assert c["est_latency_s"][k] == pytest.approx(ref, rel=1e-12)
    deadline = float(c["est_latency_s"][5])
    r = netcut(resnet20, "cpu/cortex-m7", deadline, input_shape=SHAPE)
    assert list(r.candidates["meets_deadline"]) == [True] * 6 + [False] * 4
    assert list(r.table["cut"]) == list(c["cut"][:6][::-1])  # untrained: deepest first
    assert r.best["cut"] == "layer2.1" and "6 of 10" in r.message


def test_only_proposals_are_fine_tuned_and_ranked_by_accuracy(resnet20):
    seen = []

    def train_fn(m):
        seen.append(m)
        return 1.0 / sum(p.numel() for p in m.parameters())  # smaller nets "more accurate": a ranking check

    c = netcut(resnet20, "cpu/cortex-m7", 1.0, input_shape=SHAPE).candidates
    deadline = float(c["est_latency_s"][3])
    r = netcut(resnet20, "cpu/cortex-m7", deadline, input_shape=SHAPE, train_fn=train_fn)
    assert len(seen) == 4 and r.train_all_s is None
    assert list(r.table["cut"]) == list(c["cut"][:4])  # ranked by accuracy, here the smallest first
    assert r.exploration_s == pytest.approx(r.estimate_s + r.train_s)
    seen.clear()
    r = netcut(resnet20, "cpu/cortex-m7", deadline, input_shape=SHAPE, train_fn=train_fn, train_all=True)
    assert len(seen) == 10 and r.train_all_s >= r.train_s and len(r.table) == 4


def test_deadline_no_candidate_meets_gives_empty_table_and_message(resnet20):
    r = netcut(resnet20, "cpu/cortex-m4", 1e-9, input_shape=SHAPE)
    assert len(r.table) == 0 and r.best is None
    assert "no trimmed network meets the deadline" in r.message and "'relu'" in r.message


def test_host_preset_is_also_measured(resnet20):
    r = netcut(resnet20, "cpu/host", 1.0, input_shape=SHAPE, cut_points=[2, 11])
    c = r.candidates
    assert (c["measured_min_s"] > 0).all() and (c["measured_latency_s"] >= c["measured_min_s"]).all()
    assert "measured_latency_s" not in netcut(resnet20, "cpu/cortex-a72", 1.0, input_shape=SHAPE,
                                              cut_points=[2]).candidates


def test_bad_input(resnet20):
    with pytest.raises(HwsimError, match="deadline_s"):
        netcut(resnet20, "cpu/cortex-m4", -1.0, input_shape=SHAPE)
    with pytest.raises(HwsimError, match="layer9"):
        netcut(resnet20, "cpu/cortex-m4", 1.0, input_shape=SHAPE, cut_points=["layer9"])
    plain = copy.deepcopy(resnet20)
    del plain.hwsim_input_shape  # a module that did not come from the zoo has no default shape
    with pytest.raises(HwsimError, match="input_shape"):
        netcut(plain, "cpu/cortex-m4", 1.0)
    with pytest.raises(HwsimError, match="blocks="):
        netcut(nets.get("itnet", channels=8, iterations=2), "cpu/cortex-m4", 1.0, input_shape=SHAPE)



def _small():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def test_numpy_scalars_are_numbers_and_bools_are_not():
    import numpy as np

    m, shp = _small(), (1, 1, 8, 8)
    ref = netcut(m, "cpu/cortex-m7", 1.0, input_shape=shp, cut_points=[1, 3])
    r = netcut(m, "cpu/cortex-m7", np.float32(1.0), input_shape=shp, cut_points=[np.int64(1), np.int32(3)])
    assert list(r.candidates["cut"]) == list(ref.candidates["cut"]) == ["1", "3"]
    assert list(r.candidates["est_latency_s"]) == list(ref.candidates["est_latency_s"])
    assert r.deadline_s == 1.0 and type(r.deadline_s) is float
    for bad in (True, np.bool_(True), "1"):
        with pytest.raises(HwsimError, match="deadline_s must be a positive number"):
            netcut(m, "cpu/cortex-m7", bad, input_shape=shp)
    with pytest.raises(HwsimError, match="must be a block index"):
        netcut(m, "cpu/cortex-m7", 1.0, input_shape=shp, cut_points=[True])
    with pytest.raises(HwsimError, match="non-empty list"):
        netcut(m, "cpu/cortex-m7", 1.0, input_shape=shp, cut_points=[])


def test_train_fn_must_return_an_accuracy_in_0_1():
    m, shp = _small(), (1, 1, 8, 8)

    def returning(value):
        def finetune(model):
            return value
        return finetune

    for out in (float("nan"), 2.0, 93.0, -0.1, "high", None, True, {"acc": 1.0}, {"accuracy": float("nan")}):
        with pytest.raises(HwsimError, match=r"train_fn .*finetune returned .* accuracy in \[0, 1\]") as e:
            netcut(m, "cpu/cortex-m7", 1.0, input_shape=shp, train_fn=returning(out))
        assert "\n" not in str(e.value)
    for out in (0.0, 1, 0.75, {"accuracy": 0.5}):
        r = netcut(m, "cpu/cortex-m7", 1.0, input_shape=shp, train_fn=returning(out))
        acc = out["accuracy"] if isinstance(out, dict) else out
        assert (r.table["accuracy"] == float(acc)).all()

def test_digits_transfer_across_cpu_presets():
    pytest.importorskip("sklearn")
    from hwsim.codesign.digits import make_train_fn, pretrained_cnn

    model = pretrained_cnn(epochs=6)
    assert model.source_accuracy > 0.9
    train_fn = make_train_fn(epochs=4)
    full = {p: float(netcut(model, p, 1.0).candidates["est_latency_s"].iloc[-1])
            for p in ("cpu/cortex-m4", "cpu/cortex-a72")}
    assert full["cpu/cortex-m4"] > 5 * full["cpu/cortex-a72"]  # a microcontroller is much slower
    # a deadline every cut point but the deepest meets (from the candidates' own latencies: no fitted constant in it)
    lat = sorted(netcut(model, "cpu/cortex-m4", 1.0).candidates["est_latency_s"])
    r = netcut(model, "cpu/cortex-m4", (lat[-2] + lat[-1]) / 2, train_fn=train_fn)
    assert 0 < len(r.table) < len(r.candidates) and r.table["accuracy"].between(0, 1).all()
    assert r.best["accuracy"] == r.table["accuracy"].max() > 0.5  # well above chance (0.2) on digits 5-9
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 5)  # the pretrained model is untouched
