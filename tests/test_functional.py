"""The functional executor: every zoo net run by the fp32 Numba kernels equals torch fp32.

Bound: max|err| <= 1e-4 * max|ref| per output. ImageNet-size nets run at a reduced resolution
(the kernels and the graph do not depend on it) to keep the suite fast on 2 cores.
"""
import numpy as np
import pytest
import torch

import mapping
import nets
from hwsim.errors import ShapeError
from hwsim.functional import run
from mapping.passes import fold_bn

SMALL = {224: 64, 360: 48, 480: 64}  # spatial size -> reduced size for the test


def small_shape(name):
    shape = nets.info(name).input_shape
    if len(shape) != 4:
        return shape
    h, w = shape[2], shape[3]
    return (2, shape[1], SMALL.get(h, h), SMALL.get(w, w))


def float_nets():
    return [n for n in nets.names() if not set(nets.info(n).tags) & {"binary", "quantized"}]


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


def check(outs, ref):
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        r = r.numpy()
        assert o.shape == r.shape
        err = np.max(np.abs(o - r))
        assert err <= 1e-4 * np.max(np.abs(r)), f"max|err| {err:.3g} vs max|ref| {np.max(np.abs(r)):.3g}"


# the quick run (plain pytest) keeps a cheap member of most families; --slow (the README's command) runs the whole zoo
QUICK = {"resnet20", "itnet", "itnet-seg", "mobilenetv2", "ghostnet", "hardnet39ds", "mgic"}  # --slow: resnet18 (2 s), ...


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in QUICK else pytest.mark.slow) for n in float_nets()])
def test_zoo_net_matches_torch(name):
    model = randomize_bn(nets.get(name))
    shape = small_shape(name)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    g = mapping.trace(model, shape)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    check(run(g, x), ref)
    if name in ("resnet20", "mobilenetv2", "ghostnet", "itnet"):
        check(run(fold_bn(g), x), ref)  # folding is exact up to fp32 rounding


def test_batch_size_may_differ_from_the_traced_one():
    model = nets.get("resnet20")
    g = mapping.trace(model, (1, 3, 32, 32))
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    check(run(g, x), ref)


def test_wrong_input_shape_is_a_shape_error():
    g = mapping.trace(nets.get("resnet20"), (1, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"does not match the network's input \(N, 3, 32, 32\)"):
        run(g, np.zeros((1, 3, 28, 28), np.float32))


@pytest.mark.parametrize("pad_value", [-1.0, 1.0])
def test_binary_conv_pad_value_is_honoured_by_the_fp32_executor(pad_value):
    from nets.layers import BinaryConv2d

    torch.manual_seed(0)
    m = torch.nn.Sequential(BinaryConv2d(3, 4, 3, padding=1, pad_value=pad_value)).eval()
    x = np.sign(np.random.default_rng(3).standard_normal((1, 3, 6, 6))).astype(np.float32)
    g = mapping.trace(m, x.shape)
    with torch.no_grad():
        ref = m(torch.from_numpy(x))
    check(run(g, x), ref)
