"""Learned sparse connectivity: STE masks and the connection-count regulariser (connectivity.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nets.compress import (
    CompressError,
    SparseConnectivity,
    analyze,
    mask_channels,
    remove_dead_filters,
    weight_sparsity,
)
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)


def test_mask_forward_and_straight_through_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    w0 = lin.weight.detach().clone()
    scl = SparseConnectivity(nn.Sequential(lin), granularity="weight", init=0.1)
    with torch.no_grad():
        scl.masks["0"].scores[0, 1] = -0.3  # one connection off
    x = torch.randn(4, 5)
    y = lin(x)
    w_eff = w0.clone()
    w_eff[0, 1] = 0
    torch.testing.assert_close(y, x @ w_eff.T + lin.bias)
    y.sum().backward()
    # STE: dL/ds = dL/dw_eff * w (also for the masked-off entry), dL/dw_eff[o, i] = sum_n x[n, i]
    g_eff = x.sum(0).expand(3, 5)
    torch.testing.assert_close(scl.masks["0"].scores.grad, g_eff * w0)


def test_connection_count_and_penalty_gradient():
    model, _ = small_net("resnet20", random_bn=False)
    scl = SparseConnectivity(model, granularity="filter")
    n_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert scl.total == n_weights and scl.density() == 1.0
    scl.penalty(2.0).backward()
    mk = scl.masks["layer1.0.conv1"]
    fan_in = 8 * 3 * 3
    torch.testing.assert_close(mk.scores.grad, torch.full_like(mk.scores, 2.0 * fan_in / n_weights))


def test_regulariser_prices_connections_and_dead_filters_are_removed():
    """Penalty only, one SGD step: a filter's score drops by lr·λ·fan_in/total, so exactly the filters
    with fan-in above 200 cross zero when lr = 0.1·total/(λ·200)."""
    model, shape = small_net("resnet20")
    scl = SparseConnectivity(model, granularity="filter", init=0.1)
    lam = 1.0
    opt = torch.optim.SGD(scl.scores(), lr=0.1 * scl.total / (lam * 200))
    opt.zero_grad()
    scl.penalty(lam).backward()
    opt.step()
    for name, mk in scl.masks.items():
        w = model.get_submodule(name).parametrizations.weight.original
        fan_in = w[0].numel()
        assert bool((mk.scores > 0).all()) == (fan_in < 200), (name, fan_in)
    assert 0.0 < scl.density() < 1.0
    scl.finalize()
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    assert weight_sparsity(model)["layer3.1.conv1"] == 1.0 and weight_sparsity(model)["conv1"] == 0.0
    pruned = remove_dead_filters(model, shape)
    n_before = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    n_after = sum(m.weight.numel() for m in pruned.modules() if isinstance(m, nn.Conv2d))
    assert n_after < 0.6 * n_before
    # equivalence: the physical removal equals zeroing the columns that read the dead channels
    deps = analyze(model, shape)
    mods = dict(model.named_modules())
    dead = [c for c in deps.prunable if all(bool((mods[m].weight[r] == 0).all()) for m, r in deps.producers[c])]
    keep = {g.classes[0] for g in deps.groups if all(c in dead for c in g.classes)}
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), mask_channels(model, deps, [c for c in dead if c not in keep])(x),
                                   rtol=1e-4, atol=1e-5)


def test_task_loss_keeps_useful_connections():
    """With the task loss only (λ = 0) the scores of a trained layer move by dL/dw_eff·w: training to
    match a target made with one input channel switched off switches that channel's mask off."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
    net = nn.Sequential(lin)
    scl = SparseConnectivity(net, granularity="weight", init=0.05)
    x = torch.randn(256, 4)
    target = x[:, [0, 2, 3]] @ torch.tensor([1.0, 0.5, 3.0])  # the teacher has no connection from input 1
    opt = torch.optim.SGD(scl.scores(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        ((net(x)[:, 0] - target) ** 2).mean().backward()
        opt.step()
    on = (scl.masks["0"].scores > 0)[0].tolist()
    assert on == [True, False, True, True]


def test_bad_arguments():
    model, _ = small_net("resnet20", random_bn=False)
    with pytest.raises(CompressError, match="granularity"):
        SparseConnectivity(model, granularity="block")
    with pytest.raises(CompressError, match="not conv2d/linear"):
        SparseConnectivity(model, layers=["bn1"])
    SparseConnectivity(model, layers=["conv1"])
    with pytest.raises(CompressError, match="already carries"):
        SparseConnectivity(model, layers=["conv1"])
