"""Channel-dependency analysis and physical channel removal (nets/compress/deps.py, surgery.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwsim.errors import HwsimError
from mapping import trace
from mapping.analysis import totals
from nets.compress import UnprunableError, analyze, mask_channels, predicted_counts, remove_channels, select_channels
from nets.compress.testing import SMALL_NETS, one_torch_thread, small_net  # noqa: F401 (autouse fixture)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = max(1.0, float(b.abs().max()))
    assert float((a - b).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("key", sorted(SMALL_NETS))
def test_pruned_equals_masked_original(key):
    """Removing a random half of every group == zeroing the weight columns that read those channels."""
    model, shape = small_net(key)
    deps = analyze(model, shape)
    rng = np.random.default_rng(1)
    remove = {int(c) for g in deps.groups for c in rng.permutation(g.classes)[: g.size // 2]}
    pruned = remove_channels(model, deps, remove)
    masked = mask_channels(model, deps, remove)
    x = torch.randn(3, *shape[1:], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b, full = pruned(x), masked(x), model(x)
    _close(a, b)
    assert float((full - b).abs().max()) > 1e-3  # the mask really changed the function
    # counts drop exactly as predicted from the traced shapes, and the pruned net is smaller
    t_new, t_old = totals(trace(pruned, shape)), totals(deps.graph)
    assert (t_new.params, t_new.macs) == predicted_counts(deps, remove)
    assert t_new.params < 0.75 * t_old.params and t_new.macs < 0.75 * t_old.macs


def test_resnet_residual_stage_is_one_group():
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    stage1 = deps.group_of("layer1.0.conv2")
    assert set(stage1.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}
    assert stage1 is deps.group_of("conv1") and stage1.size == 8
    assert deps.group_of("layer1.0.conv1").producers == ("layer1.0.conv1",)
    assert "layer2.0.downsample.0" in deps.group_of("layer2.1.conv2").producers
    with pytest.raises(UnprunableError, match="fc"):
        deps.group_of("fc")  # logits feed the network output


def test_hand_counted_resnet_block():
    """Removing 3 of the 8 channels of layer1.0.conv1 (base width 8): the counts by hand."""
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    g = deps.group_of("layer1.0.conv1")
    pruned = remove_channels(model, deps, g.classes[:3])
    # conv1: 8 -> 5 filters of 8*3*3; bn1: 2*3 affine params; conv2: input 8 -> 5 columns of 8 filters*3*3
    saved = 3 * 8 * 9 + 3 * 2 + 8 * 3 * 9
    assert totals(trace(pruned, shape)).params == totals(deps.graph).params - saved
    assert pruned.get_submodule("layer1.0.conv1").weight.shape == (5, 8, 3, 3)
    assert pruned.get_submodule("layer1.0.conv2").weight.shape == (8, 5, 3, 3)
    assert pruned.get_submodule("layer1.0.bn1").running_mean.shape == (5,)


def test_densenet_concat_channels_are_removed_everywhere():
    model, shape = small_net("densenet-bc")
    deps = analyze(model, shape)
    first = deps.group_of("features.1.conv2")  # first dense layer's growth channels, read by all later ones
    consumers = {m for c in first.classes for m, _ in deps.consumers[c]}
    assert len(consumers) >= 3
    pruned = remove_channels(model, deps, first.classes[:2])
    with torch.no_grad():
        x = torch.randn(2, *shape[1:])
        _close(pruned(x), mask_channels(model, deps, first.classes[:2])(x))


def test_depthwise_pairs_follow_their_producer():
    model, shape = small_net("mobilenetv2")
    deps = analyze(model, shape)
    g = deps.group_of("features.2.conv.0.0")  # expand 1x1 -> 3x3 depthwise -> project
    pruned = remove_channels(model, deps, g.classes[:5])
    dw = pruned.get_submodule("features.2.conv.1.0")
    assert dw.groups == dw.in_channels == dw.out_channels == g.size - 5


def test_ghost_module_primary_and_cheap_maps_go_together():
    model, shape = small_net("ghostnet")
    deps = analyze(model, shape)
    g = deps.group_of("blocks.2.0.ghost1.primary_conv.0")
    assert g.size == model.get_submodule("blocks.2.0.ghost1.primary_conv.0").out_channels
    pruned = remove_channels(model, deps, g.classes[:2])
    cheap = pruned.get_submodule("blocks.2.0.ghost1.cheap_operation.0")
    assert cheap.groups == g.size - 2


def test_gradients_flow_in_pruned_network():
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    pruned = remove_channels(model, deps, select_channels(deps, {c: float(c) for c in deps.prunable}, 0.3))
    pruned.train()
    loss = pruned(torch.randn(4, *shape[1:])).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in pruned.parameters())


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.b(self.a(x))), 1))


def test_unfollowable_structure_names_the_layer():
    deps = analyze(_Grouped(), (1, 3, 8, 8))
    with pytest.raises(UnprunableError, match=r"'b'.*groups=2"):
        deps.group_of("a")
    with pytest.raises(UnprunableError, match="cannot be removed"):
        remove_channels(_Grouped(), deps, [0])


def test_removing_a_whole_group_is_refused():
    model, shape = small_net("resnet20")
    deps = analyze(model, shape)
    g = deps.group_of("layer2.0.conv1")
    with pytest.raises(HwsimError, match="layer2.0.conv1"):
        remove_channels(model, deps, g.classes)


def test_shared_block_is_pruned_once():
    import nets

    model = nets.get("itnet", iterations=3, shared=True)
    shape = (1, 3, 32, 32)
    deps = analyze(model, shape)
    remove = [c for g in deps.groups for c in g.classes[: g.size // 4]]
    pruned = remove_channels(model, deps, remove)
    with torch.no_grad():
        x = torch.randn(2, *shape[1:])
        for a, b in zip(pruned(x), mask_channels(model, deps, remove)(x)):
            _close(a, b)


_DEPS: dict = {}


def _cached(key):
    if key not in _DEPS:
        model, shape = small_net(key)
        _DEPS[key] = (model, shape, analyze(model, shape))
    return _DEPS[key]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.slow  # 20 random removal sets, 2-4 s; the quick run keeps test_pruned_equals_masked_original
@settings(max_examples=20, deadline=None)
@given(key=st.sampled_from(["resnet20", "ghostnet", "densenet-bc"]), seed=st.integers(0, 2**31 - 1),
       frac=st.floats(0.05, 0.9))
def test_any_removal_set_equals_its_mask(key, seed, frac):
    """Property: for any subset of prunable classes that leaves every group non-empty, the
    physically pruned network equals the masked original and its counts are the predicted ones."""
    model, shape, deps = _cached(key)
    rng = np.random.default_rng(seed)
    remove = set()
    for g in deps.groups:
        k = min(int(rng.binomial(g.size, frac)), g.size - 1)
        remove.update(int(c) for c in rng.choice(g.classes, size=k, replace=False))
    pruned = remove_channels(model, deps, remove)
    x = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(seed % 1000))
    with torch.no_grad():
        _close(pruned(x), mask_channels(model, deps, remove)(x))
    t = totals(trace(pruned, shape))
    assert (t.params, t.macs) == predicted_counts(deps, remove)


class _Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.cumsum(self.a(x), dim=3)


class _Mixer(nn.Module):
    """A reshape that moves channels into the spatial axes: channel identity is lost."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y.reshape(y.shape[0], 4, 2 * y.shape[2], y.shape[3]))


def test_untraceable_and_channel_mixing_structures_are_named():
    with pytest.raises(HwsimError, match="cumsum"):
        analyze(_Cumsum(), (1, 3, 8, 8))
    deps = analyze(_Mixer(), (1, 3, 8, 8))
    assert deps.groups == ()
    with pytest.raises(UnprunableError, match=r"layer 'a'.*reshape .*mixes channels"):
        deps.group_of("a")


def test_ghost_trim_slice_bounds_are_rewritten():
    """GhostModule with an odd width: concat(primary 4, cheap 4)[:, :7]; the slice must shrink too."""
    from nets.compress.testing import randomize_bn
    from nets.ghostnet import GhostModule

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), GhostModule(8, 7), nn.Conv2d(7, 5, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    randomize_bn(net.eval())
    shape = (1, 3, 8, 8)
    deps = analyze(net, shape)
    g = deps.group_of("1.primary_conv.0")
    assert g.size == 4
    remove = [g.classes[1], g.classes[3]]  # class 3 is the one whose ghost copy was trimmed away
    pruned = remove_channels(net, deps, remove)
    assert pruned.get_submodule("2").in_channels == 7 - 2 - 1  # 2 primary maps + 1 surviving ghost map
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        _close(pruned(x), mask_channels(net, deps, remove)(x))


@pytest.mark.parametrize("key", ["resnet20", "ghostnet"])
def test_iterative_pruning_of_a_pruned_network(key):
    """A pruned GraphModule can be analysed and pruned again (prune / fine-tune / prune loops)."""
    from nets.compress import filter_scores, prune_filters

    model, shape = small_net(key)
    once = prune_filters(model, shape, 0.3)
    deps = analyze(once, shape)
    remove = select_channels(deps, filter_scores(once, deps), 0.3)
    twice = remove_channels(once, deps, remove)
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        _close(twice(x), mask_channels(once, deps, remove)(x))
    n = [sum(p.numel() for p in m.parameters()) for m in (model, once, twice)]
    assert n[0] > n[1] > n[2]


class _Between(nn.Module):
    """Two convs around one functional op: a flip (several IR ops) or a softmin (an ATen softmax after a neg, which
    mapping.trace imports through torch.export)."""

    def __init__(self, fn):
        super().__init__()
        self.a, self.b, self.fn = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1), fn

    def forward(self, x):
        return self.b(self.fn(self.a(x)))


def test_refusals_name_a_composite_op_apart_from_a_torch_export_import():
    with pytest.raises(UnprunableError) as e:
        analyze(_Between(lambda y: torch.flip(y, [3])), (1, 3, 8, 8))
    msg = str(e.value)
    assert "'flip' (a flip) is imported as several IR ops" in msg and "torch.export" not in msg, msg
    with pytest.raises(UnprunableError, match="imported through torch.export"):
        analyze(_Between(lambda y: torch.nn.functional.softmin(y, 1)), (1, 3, 8, 8))
