"""Magnitude pruning: unstructured masks and structured filters (nets/compress/magnitude.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
from nets.compress import (
    SPARSITY_SUPPORT,
    RatioError,
    analyze,
    filter_scores,
    make_permanent,
    mask_channels,
    predicted_counts,
    prune_filters,
    prune_unstructured,
    remove_channels,
    select_channels,
    weight_sparsity,
)
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)


def _weights(model):
    return {n: m.weight.detach().numpy().copy() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_global_unstructured_zeroes_the_smallest_weights():
    model, _ = small_net("resnet20")
    before = _weights(model)
    pruned = prune_unstructured(model, 0.6, scope="global")
    after = _weights(pruned)
    flat_b = np.concatenate([w.ravel() for w in before.values()])
    flat_a = np.concatenate([after[k].ravel() for k in before])
    zero = flat_a == 0
    assert zero.sum() == round(0.6 * flat_b.size)
    assert np.abs(flat_b[zero]).max() <= np.abs(flat_b[~zero]).min()  # one threshold for all layers
    np.testing.assert_array_equal(flat_a[~zero], flat_b[~zero])
    assert model.conv1.weight.count_nonzero() == model.conv1.weight.numel()  # the original is untouched


def test_layer_unstructured_prunes_every_layer_equally():
    model, _ = small_net("mobilenetv2")
    pruned = prune_unstructured(model, 0.5, scope="layer")
    for name, frac in weight_sparsity(pruned).items():
        n = pruned.get_submodule(name).weight.numel()
        assert frac == pytest.approx(round(0.5 * n) / n), name


def test_masks_survive_fine_tuning_and_can_be_made_permanent():
    model, shape = small_net("resnet20")
    pruned = prune_unstructured(model, 0.5).train()
    zero = {n: m.weight.detach() == 0 for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)}
    opt = torch.optim.SGD(pruned.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        pruned(torch.randn(2, *shape[1:])).square().mean().backward()
        opt.step()
    pruned(torch.randn(1, *shape[1:]))  # the pre-hook recomputes weight = weight_orig * mask
    for n, z in zero.items():
        assert (pruned.get_submodule(n).weight.detach()[z] == 0).all()
    make_permanent(pruned)
    assert not any(hasattr(m, "weight_orig") for m in pruned.modules())
    assert weight_sparsity(pruned)["layer1.0.conv1"] > 0.2


def test_unstructured_sparsity_is_ignored_by_the_cpu_model():
    """SPARSITY_SUPPORT['cpu'] says dense cost: the simulated latency of a 70 %-sparse net is unchanged."""
    model, shape = small_net("resnet20")
    dense = hwsim.simulate(model, "cpu/cortex-a72", input_shape=shape).report
    sparse = hwsim.simulate(prune_unstructured(model, 0.7), "cpu/cortex-a72", input_shape=shape).report
    assert sparse.latency_s == dense.latency_s and sparse.onchip_weight_bytes == dense.onchip_weight_bytes
    assert set(SPARSITY_SUPPORT) == {"cpu", "imc", "fpga"}


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 3, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.b(torch.relu(self.bn(self.a(x))))), 1)


def test_filters_with_smallest_mean_magnitude_go_first():
    net = _Chain().eval()
    with torch.no_grad():
        for o, scale in enumerate([3.0, 0.5, 2.0, 0.1]):
            net.a.weight[o] = scale * torch.sign(torch.randn(2, 3, 3))
    pruned = prune_filters(net, (1, 2, 6, 6), 0.5, scope="layer")
    kept = pruned.a.weight.detach().abs().mean(dim=(1, 2, 3))
    np.testing.assert_allclose(sorted(kept.tolist()), [2.0, 3.0])
    assert pruned.b.in_channels == 2 and pruned.bn.num_features == 2


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_structured_pruning_shrinks_the_simulated_cpu_latency(scope):
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    remove = select_channels(deps, filter_scores(model, deps), 0.5, scope)
    pruned = remove_channels(model, deps, remove)
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        diff = (pruned(x) - mask_channels(model, deps, remove)(x)).abs().max()
    assert float(diff) < 1e-4
    before = hwsim.simulate(model, "cpu/cortex-a72", input_shape=shape).report
    after = hwsim.simulate(pruned, "cpu/cortex-a72", input_shape=shape).report
    assert after.latency_s < before.latency_s
    assert after.macs == predicted_counts(deps, remove)[1] < before.macs


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.2, 1.5, float("nan"), True, "0.5", None])
def test_impossible_ratios_are_refused(bad):
    model, shape = small_net("resnet20", random_bn=False)
    with pytest.raises(RatioError, match="between 0 and 1"):
        prune_unstructured(model, bad)
    with pytest.raises(RatioError, match="between 0 and 1"):
        prune_filters(model, shape, bad)


def test_unstructured_sparsity_is_ignored_by_the_imc_mapping():
    """SPARSITY_SUPPORT['imc']: zero weights still occupy crossbar cells (same crossbar count)."""
    model, shape = small_net("resnet20")
    dense = hwsim.fit(model, "imc/edge-small", input_shape=shape)
    sparse = hwsim.fit(prune_unstructured(model, 0.7), "imc/edge-small", input_shape=shape)
    assert sparse.crossbars_needed == dense.crossbars_needed
    pruned = prune_filters(model, shape, 0.5)
    assert hwsim.fit(pruned, "imc/edge-small", input_shape=shape).crossbars_needed < dense.crossbars_needed
