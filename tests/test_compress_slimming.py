"""Network slimming and data-free BN-statistics importance (slimming.py, bn_importance.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mapping.graph import Op
from nets.compress import (
    CompressError,
    analyze,
    bn_l1_penalty,
    bn_stat_scores,
    expected_activation,
    gamma_scores,
    mask_channels,
    prune_bn_stats,
    remove_channels,
    select_channels,
    slim,
    slimming_hook,
)
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)


def test_hook_adds_the_l1_subgradient_to_gamma():
    model, shape = small_net("resnet20")
    model.train()
    x = torch.randn(2, *shape[1:])

    def grads():
        model.zero_grad()
        model(x).square().mean().backward()
        return {n: m.weight.grad.clone() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}

    plain = grads()
    with slimming_hook(model, lam=1e-2):
        hooked = grads()
    after = grads()  # removed on exit
    for n, g in plain.items():
        gamma = model.get_submodule(n).weight.detach()
        torch.testing.assert_close(hooked[n], g + 1e-2 * torch.sign(gamma), rtol=0, atol=1e-6)
        torch.testing.assert_close(after[n], g, rtol=0, atol=1e-6)


def test_penalty_is_lambda_times_sum_abs_gamma():
    model, _ = small_net("densenet-bc")
    ref = sum(np.abs(m.weight.detach().numpy()).sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert float(bn_l1_penalty(model, 0.5).detach()) == pytest.approx(0.5 * ref, rel=1e-6)
    with pytest.raises(CompressError, match="lambda"):
        bn_l1_penalty(model, -1.0)


def test_slimming_removes_the_channels_with_small_gamma():
    model, shape = small_net("resnet20")
    with torch.no_grad():
        model.layer2[1].bn1.weight[[1, 4, 6]] = 1e-4  # three near-dead channels in one internal group
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d) and bn is not model.layer2[1].bn1:
                bn.weight.abs_().add_(0.5)
    deps = analyze(model, shape)
    g = deps.group_of("layer2.1.conv1")
    n_prunable = len(deps.prunable)
    remove = select_channels(deps, gamma_scores(model, deps), 3 / n_prunable, "global")
    assert remove == {g.classes[1], g.classes[4], g.classes[6]}
    pruned = slim(model, shape, 3 / n_prunable)
    assert pruned.get_submodule("layer2.1.conv1").out_channels == g.size - 3


def test_slimming_needs_batchnorm():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(CompressError, match="BatchNorm"):
        slim(net, (1, 3, 8, 8), 0.5)


@pytest.mark.parametrize("beta,gamma", [(0.3, 1.2), (-1.0, 0.5), (2.0, 0.1), (0.0, 2.0), (7.0, 1.5)])
def test_expected_activation_matches_monte_carlo(beta, gamma):
    y = np.random.default_rng(0).normal(beta, abs(gamma), 400_000)
    for act, ref in [(Op.RELU, np.maximum(y, 0)), (Op.RELU6, np.clip(y, 0, 6)), (None, np.abs(y))]:
        assert expected_activation(beta, gamma, act) == pytest.approx(ref.mean(), rel=1e-2, abs=1e-3), act


@pytest.mark.parametrize("key,layer,bn", [("resnet20", "layer2.1.conv1", "layer2.1.bn1"),
                                          ("mobilenetv2", "features.2.conv.0.0", "features.2.conv.0.1")])
def test_bn_statistics_prune_the_channels_a_relu_kills(key, layer, bn):
    model, shape = small_net(key)
    bn = model.get_submodule(bn)  # followed by ReLU / ReLU6
    with torch.no_grad():
        bn.bias[[0, 5, 9]] = -20.0  # y ~ N(-20, γ²): always cut by the ReLU
        bn.weight[[0, 5, 9]] = 0.5
    deps = analyze(model, shape)
    g = deps.group_of(layer)
    scores = bn_stat_scores(model, deps)
    assert all(scores[g.classes[i]] < 1e-12 for i in (0, 5, 9))
    remove = select_channels(deps, scores, 3 / g.size, "layer", groups=(g.name,))
    assert remove == {g.classes[0], g.classes[5], g.classes[9]}
    if key == "resnet20":  # conv1 -> bn1 -> relu -> conv2: a dead channel contributes exactly nothing
        x = torch.randn(2, *shape[1:])
        with torch.no_grad():
            torch.testing.assert_close(remove_channels(model, deps, remove)(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", ["resnet20", "mobilenetv2", pytest.param("ghostnet", marks=pytest.mark.slow),  # 1 s
                                 "densenet-bc"])
def test_gamma_and_bn_stat_pruning_run_on_the_zoo(key):
    model, shape = small_net(key)
    deps = analyze(model, shape)
    x = torch.randn(2, *shape[1:])
    for scores in (gamma_scores(model, deps), bn_stat_scores(model, deps)):
        remove = select_channels(deps, scores, 0.4, "global")
        assert all(math.isfinite(scores[c]) for c in remove)
        assert len(remove) == round(0.4 * len(deps.prunable))
        with torch.no_grad():
            torch.testing.assert_close(remove_channels(model, deps, remove)(x),
                                       mask_channels(model, deps, remove)(x), rtol=1e-4, atol=1e-5)
    assert prune_bn_stats(model, shape, 0.3, scope="layer") is not None
