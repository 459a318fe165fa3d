"""Every structured pass on the four architecture families, end to end: a smaller network that runs,
whose simulated CPU latency drops and whose MACs are those the dependency analysis predicts."""
from __future__ import annotations

import pytest
import torch

import hwsim
from mapping import trace
from mapping.analysis import totals
from nets.compress import (
    SparseConnectivity,
    binarize,
    prune_bn_stats,
    prune_complexity,
    prune_filters,
    prune_similar,
    quantize_ptq,
    remove_dead_filters,
    slim,
)
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)

_CACHE: dict = {}


def _net(key):
    if key not in _CACHE:
        model, shape = small_net(key)
        base = hwsim.simulate(model, "cpu/cortex-a72", input_shape=shape).report
        _CACHE[key] = (model, shape, base)
    return _CACHE[key]


def _scl(model, shape, x=None):
    import copy

    m = copy.deepcopy(model)
    scl = SparseConnectivity(m, granularity="filter", init=0.1)
    with torch.no_grad():  # as if training had switched off every other filter of every layer
        for mk in scl.masks.values():
            mk.scores[1::2] = -1.0
    scl.finalize()
    return remove_dead_filters(m, shape)


METHODS = {
    "magnitude": lambda m, s, x: prune_filters(m, s, 0.5),
    "slimming": lambda m, s, x: slim(m, s, 0.5),
    "bn-statistics": lambda m, s, x: prune_bn_stats(m, s, 0.5),
    "complexity": lambda m, s, x: prune_complexity(m, s, 0.5, mode="flops", coverage=0.6),
    "similarity": lambda m, s, x: prune_similar(m, s, x, 0.5),
    "sparse-connectivity": _scl,
}


# The quick run: every pass on the cheap resnet20 and densenet-bc, and on a few each of the dearer mobilenetv2 and
# ghostnet (0.3-1.7 s a pass); --slow: every pass on every family.
_QUICK_PASSES = {"mobilenetv2": {"bn-statistics", "complexity", "slimming"}, "ghostnet": {"magnitude", "sparse-connectivity"}}


@pytest.mark.parametrize("key,method", [
    pytest.param(key, method, marks=() if method in _QUICK_PASSES.get(key, METHODS) else pytest.mark.slow)
    for key in ["resnet20", "mobilenetv2", "ghostnet", "densenet-bc"] for method in sorted(METHODS)])
def test_structured_pass_shrinks_the_network(key, method):
    model, shape, base = _net(key)
    x = torch.randn(4, *shape[1:])
    pruned = METHODS[method](model, shape, x)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
    rep = hwsim.simulate(pruned, "cpu/cortex-a72", input_shape=shape).report
    assert rep.macs == totals(trace(pruned, shape)).macs < base.macs
    assert rep.latency_s < base.latency_s


@pytest.mark.parametrize("key", ["resnet20", "mobilenetv2", pytest.param("ghostnet", marks=pytest.mark.slow),
                                 "densenet-bc"])
def test_quantization_passes_run(key):
    model, shape, _ = _net(key)
    x = torch.randn(2, *shape[1:])
    res = quantize_ptq(model, x, shape, 6, 6)
    assert all("quant" in n.meta for n in res.graph().nodes if n.op.value in ("conv2d", "linear"))
    bnet = binarize(model, shape)
    with torch.no_grad():
        assert bnet(x).shape == model(x).shape
