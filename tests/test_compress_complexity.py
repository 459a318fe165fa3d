"""Complexity-driven layer-selective pruning and feature-map similarity pruning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nets.compress import (
    CalibrationError,
    CompressError,
    analyze,
    class_costs,
    greedy_order,
    group_shares,
    mask_channels,
    prune_complexity,
    prune_similar,
    remove_channels,
    select_channels,
    select_layers,
    similarity_scores,
)
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.b(torch.relu(self.bn(self.a(x))))), 1)


def test_class_costs_by_hand():
    deps = analyze(_Two(), (1, 3, 6, 6))
    (g,) = deps.groups  # only a's 8 channels are prunable (b feeds the output)
    c = g.classes[0]
    # params: a's filter 3*3*3, BN gamma+beta, b's column 4*1*1
    assert class_costs(deps, "params")[c] == 27 + 2 + 4
    # MACs: a's row at 36 pixels (27 each) + b's column at 36 pixels (4 each)
    assert class_costs(deps, "flops")[c] == 36 * 27 + 36 * 4
    # memory: the channel's 6x6 map in a's output, bn, relu
    assert class_costs(deps, "memory")[c] == 3 * 36
    assert group_shares(deps, "params") == {g.name: 1.0}


def test_modes_pick_different_layers_of_resnet20():
    """Late layers hold the weights, early layers the feature maps: the modes must disagree."""
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    for mode in ("params", "flops", "memory"):
        assert sum(group_shares(deps, mode).values()) == pytest.approx(1.0)
    top_params = select_layers(deps, "params", 0.01)
    top_memory = select_layers(deps, "memory", 0.01)
    assert len(top_params) == len(top_memory) == 1
    assert top_params[0].startswith("layer3") and top_memory[0].startswith("conv1+layer1")


def test_only_the_selected_layers_lose_channels():
    model, shape = small_net("mobilenetv2")
    deps = analyze(model, shape)
    chosen = set(select_layers(deps, "flops", 0.4))
    shares = group_shares(deps, "flops")
    covered = sum(shares[n] for n in chosen)
    assert covered >= 0.4 and covered - min(shares[n] for n in chosen) < 0.4  # minimal prefix
    pruned = prune_complexity(model, shape, 0.5, mode="flops", coverage=0.4)
    for g in deps.groups:
        mod = pruned.get_submodule(g.producers[0])
        expect = g.size - min(round(0.5 * g.size), g.size - 1) if g.name in chosen else g.size
        assert mod.out_channels == expect, g.name


def test_bad_mode_and_coverage():
    model, shape = small_net("resnet20", random_bn=False)
    with pytest.raises(CompressError, match="mode"):
        prune_complexity(model, shape, 0.5, mode="latency")
    with pytest.raises(CompressError, match="coverage"):
        prune_complexity(model, shape, 0.5, coverage=0)


def test_greedy_order_drops_the_weaker_duplicate_first():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 50))
    f[2] = 0.5 * f[0]  # same direction, less energy
    order, sims = greedy_order(f)
    assert order[0] == 2 and sims[0] == pytest.approx(1.0)
    assert len(order) == 3 and sims[1] < 0.9


def test_duplicate_filters_are_found_and_removed():
    model, shape = small_net("resnet20")
    conv, bn = model.layer1[1].conv1, model.layer1[1].bn1
    with torch.no_grad():  # channel 5 repeats channel 2 exactly (filter and BN)
        conv.weight[5] = conv.weight[2]
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t[5] = t[2]
    deps = analyze(model, shape)
    g = deps.group_of("layer1.1.conv1")
    x = torch.randn(4, *shape[1:])
    scores = similarity_scores(model, deps, x)
    assert min(scores[c] for c in g.classes) == pytest.approx(0.0, abs=1e-9)
    assert min(g.classes, key=lambda c: scores[c]) in (g.classes[2], g.classes[5])
    remove = select_channels(deps, scores, 1 / g.size, "layer", groups=(g.name,))
    assert len(remove) == 1


@pytest.mark.parametrize("key", ["resnet20", pytest.param("mobilenetv2", marks=pytest.mark.slow),
                                 pytest.param("ghostnet", marks=pytest.mark.slow), "densenet-bc"])
def test_similarity_and_complexity_run_on_the_zoo(key):
    model, shape = small_net(key)
    deps = analyze(model, shape)
    x = torch.randn(4, *shape[1:])
    remove = select_channels(deps, similarity_scores(model, deps, x), 0.3, "layer")
    with torch.no_grad():
        torch.testing.assert_close(remove_channels(model, deps, remove)(x), mask_channels(model, deps, remove)(x),
                                   rtol=1e-4, atol=1e-5)
    for mode in ("params", "memory"):
        assert prune_complexity(model, shape, 0.5, mode=mode, coverage=0.5) is not None


def test_calibration_data_of_the_wrong_shape():
    model, shape = small_net("resnet20", random_bn=False)
    with pytest.raises(CalibrationError, match=r"\(4, 3, 16, 16\).*\(N, 3, 32, 32\)"):
        prune_similar(model, shape, torch.randn(4, 3, 16, 16), 0.3)
    with pytest.raises(CalibrationError, match="not an array"):
        prune_similar(model, shape, [torch.randn(2, 3, 32, 32), "x"], 0.3)
    with pytest.raises(CalibrationError, match="no calibration batch"):
        prune_similar(model, shape, [], 0.3)


def _greedy_brute_force(feats):
    """Reference: rescan every alive pair at every step."""
    n = feats.shape[0]
    energy = (feats * feats).sum(1)
    unit = feats / np.sqrt(energy)[:, None]
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    alive, order, sims = np.ones(n, bool), [], []
    for _ in range(n - 1):
        sub = np.where(alive[:, None] & alive[None, :], sim, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        drop = i if (energy[i], -i) < (energy[j], -j) else j
        order.append(int(drop))
        sims.append(float(sub[i, j]))
        alive[drop] = False
    return order, sims


@pytest.mark.parametrize("seed", range(8))
def test_greedy_order_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(int(rng.integers(2, 30)), 12))
    if f.shape[0] > 3:
        f[3] = 2.0 * f[1]
    order, sims = greedy_order(f)
    ref_order, ref_sims = _greedy_brute_force(f)
    assert order == ref_order
    np.testing.assert_allclose(sims, ref_sims, rtol=1e-12)


def test_compensation_makes_removing_a_duplicate_lossless():
    """Channel 5 = 0.5 x channel 2 after the ReLU: folding it into channel 2 (W[:, 2] += 0.5 W[:, 5])
    keeps the network's function exactly; without compensation the output changes."""
    from nets.compress import compensate, feature_maps

    model, shape = small_net("resnet20")
    conv, bn = model.layer1[1].conv1, model.layer1[1].bn1
    with torch.no_grad():  # BN output of 5 = 0.5 * BN output of 2 (same input stats, half the affine)
        conv.weight[5] = conv.weight[2]
        bn.running_mean[5], bn.running_var[5] = bn.running_mean[2], bn.running_var[2]
        bn.weight[5], bn.bias[5] = 0.5 * bn.weight[2], 0.5 * bn.bias[2]
    deps = analyze(model, shape)
    g = deps.group_of("layer1.1.conv1")
    x = torch.randn(4, *shape[1:])
    maps = feature_maps(model, deps, x)
    remove = [g.classes[5]]
    fixed = remove_channels(compensate(model, deps, maps, remove), deps, remove)
    plain = remove_channels(model, deps, remove)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(fixed(x), ref, rtol=1e-4, atol=1e-5)
        assert float((plain(x) - ref).abs().max()) > 1e-3


def test_weighted_sampling_prefers_large_shares():
    """Over many seeds, a group is sampled first with a frequency close to its share."""
    model, shape = small_net("resnet20", random_bn=False)
    deps = analyze(model, shape)
    shares = group_shares(deps, "flops")
    firsts = [select_layers(deps, "flops", 1e-6, seed=s)[0] for s in range(400)]
    top = max(shares, key=shares.get)
    assert abs(firsts.count(top) / 400 - shares[top]) < 0.08
    assert select_layers(deps, "flops", 0.5, seed=3) == select_layers(deps, "flops", 0.5, seed=3)
    covered = sum(shares[n] for n in select_layers(deps, "flops", 0.5, seed=3))
    assert covered >= 0.5
