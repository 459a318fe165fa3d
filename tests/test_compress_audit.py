"""Compression-pass audit fixes: binarize never feeds a sign a never-negative value, the IMC target honours a PTQ
weight grid (per tensor and per channel), and mapping.passes.quantize refuses a 1-bit signed input range."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwsim
from hwsim.errors import HwsimError
from mapping.passes.quantize import quantize
from nets.compress import CompressError, binarize, quantize_ptq, quantize_xnor
from nets.compress.testing import one_torch_thread  # noqa: F401 (autouse fixture)


def _pm1(t: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (the XNOR engine's), written independently of nets.layers."""
    return torch.where(t >= 0, 1.0, -1.0)


def _out(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        return m(x)


# ----------------------------------------------------------------------------- binarize: constant signs refused
class _AvgMid(nn.Module):  # conv -> ReLU -> avg pool -> conv (binarized) -> ReLU -> conv
    def __init__(self):
        super().__init__()
        self.c1, self.r1, self.p = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)
        self.c2, self.r2, self.c3 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.c3(self.r2(self.c2(self.p(self.r1(self.c1(x))))))


class _GapTail(nn.Module):  # conv -> ReLU -> conv -> ReLU -> global avg pool -> flatten -> fc
    def __init__(self):
        super().__init__()
        self.c1, self.r1, self.c2, self.r2 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU()
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.r2(self.c2(self.r1(self.c1(x)))))))


class _Functional(nn.Module):  # conv -> F.relu -> dropout -> F.avg_pool2d -> view -> linear
    def __init__(self):
        super().__init__()
        self.c1, self.drop, self.fc1, self.fc2 = nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.2), nn.Linear(64, 8), \
            nn.Linear(8, 3)
        self.c1b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        h = F.avg_pool2d(self.drop(F.relu(self.c1b(F.relu(self.c1(x))))), 2)
        return self.fc2(torch.relu(self.fc1(h.view(h.shape[0], -1))))


class _ResidualAvg(nn.Module):  # relu(a) + relu(b) -> identity -> avg pool -> conv
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.id, self.c3, self.c4 = nn.Identity(), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        return self.c4(torch.relu(self.c3(F.avg_pool2d(self.id(a + b), 2))))


class _SigmoidIn(nn.Module):  # a sigmoid (> 0 everywhere) straight into a binarized conv
    def __init__(self):
        super().__init__()
        self.c1, self.s, self.c2, self.c3 = nn.Conv2d(1, 4, 3, padding=1), nn.Sigmoid(), nn.Conv2d(4, 4, 3), \
            nn.Conv2d(4, 2, 1)
        self.c4 = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.c4(self.c3(self.c2(self.s(self.c1(x)))))


class _AvgMidBinary(_AvgMid):  # _AvgMid with a conv between c1 and the pool: c1b is binarized, c2 is not
    def __init__(self):
        super().__init__()
        self.c1b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.c3(self.r2(self.c2(self.p(torch.relu(self.c1b(self.r1(self.c1(x))))))))


@pytest.mark.parametrize("make, kw, layer, source", [
    (_AvgMidBinary, {}, "c2", "relu"),
    (_GapTail, {"keep_last": False}, "fc", "r2"),
    (_Functional, {}, "fc1", "relu"),
    (_ResidualAvg, {}, "c3", "relu"),
    (_SigmoidIn, {}, "c2", "s"),
])
def test_binarize_keeps_a_never_negative_input_float(make, kw, layer, source):
    """The layer whose sign input would be +1 for every image stays float (named in a one-line warning); the
    binarized net equals a torch forward pass with that layer's float module."""
    torch.manual_seed(0)
    m = make().eval()
    with pytest.warns(UserWarning, match=rf"binarize kept 1 layer\(s\) in float.*: {layer} \({source}") as rec:
        b = binarize(m, (1, 1, 8, 8), **kw)
    assert all("\n" not in str(w.message) for w in rec)
    assert type(b.get_submodule(layer)) is type(m.get_submodule(layer))
    assert any(type(mod).__name__.startswith("Binary") for mod in b.modules())
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        seen = {}
        b.get_submodule(layer).register_forward_pre_hook(lambda mod, a: seen.setdefault("x", a[0]))
        _out(b, x)
        assert float(seen["x"].std(0).max()) > 0  # the float layer reads information, not a constant


def test_the_kept_layers_really_read_a_never_negative_value():
    """The reference the rule rests on: in torch, that input is >= 0 for every image, so its sign is constant."""
    torch.manual_seed(0)
    m, x = _AvgMid().eval(), torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        seen = m.p(m.r1(m.c1(x)))
    assert bool((_pm1(seen) == 1).all())
    with pytest.raises(CompressError, match=r"all kept in float: \['c2'\]; never-negative inputs: c2 \(r1 through p\)"), pytest.warns(UserWarning, match="c2"):
        binarize(m, (1, 1, 8, 8))  # its only binarizable layer


def test_binarize_tiny_tail_matches_a_torch_reference():
    """ReLU -> global avg pool -> fc, keep_last=False: c2 is binary (sign of its pre-ReLU input), fc stays float."""
    torch.manual_seed(0)
    m, x = _GapTail().eval(), torch.randn(5, 1, 8, 8)
    with pytest.warns(UserWarning, match="fc"):
        b = binarize(m, (1, 1, 8, 8), keep_last=False)
    with torch.no_grad():
        s = _pm1(m.c1(x))
        ref = m.fc(torch.relu(F.conv2d(s, _pm1(m.c2.weight), m.c2.bias)).mean((2, 3)))
    torch.testing.assert_close(_out(b, x), ref, rtol=0, atol=1e-5)


def test_binarize_through_a_concatenation_of_relus_matches_a_torch_reference():
    """cat(relu(a), relu(b))[:, :6] -> conv (a GhostNet module's output): each ReLU's input gets the sign."""
    class Ghost(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
            self.c2, self.c3 = nn.Conv2d(6, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            h = torch.relu(self.a(self.c0(x)))
            y = torch.cat([h, torch.relu(self.b(h))], dim=1)[:, :6]
            return self.c3(self.c2(y) + y[:, :4])  # y also read in float by the add

    torch.manual_seed(0)
    m, x = Ghost().eval(), torch.randn(4, 1, 8, 8)
    b = binarize(m, (1, 1, 8, 8))  # a, b, c2 binary
    with torch.no_grad():
        h0 = m.c0(x)
        ha = F.conv2d(_pm1(h0), _pm1(m.a.weight), m.a.bias)
        h = torch.relu(ha)
        hb = F.conv2d(_pm1(ha), _pm1(m.b.weight), m.b.bias, padding=1)
        y = torch.cat([h, torch.relu(hb)], 1)[:, :6]
        s = torch.cat([_pm1(ha), _pm1(hb)], 1)[:, :6]
        ref = m.c3(F.conv2d(s, _pm1(m.c2.weight), m.c2.bias, padding=1) + y[:, :4])
    torch.testing.assert_close(_out(b, x), ref, rtol=0, atol=1e-5)


def test_quantize_xnor_keeps_the_avg_pool_fed_layer_float():
    torch.manual_seed(0)
    gm, kept = quantize_xnor(_AvgMid().eval(), (1, 1, 8, 8), bits=2, keep_last=False)
    assert kept == ["c2"] and type(gm.c2) is nn.Conv2d and type(gm.c3).__name__ == "QuantConv2d"


def test_binarize_through_dropout_and_identity_matches_a_torch_reference():
    """ReLU -> dropout -> binary linear and ReLU -> identity -> max pool -> binary conv: the sign moves before the
    ReLU (not constant), and the outputs equal a hand-written torch forward pass."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 8), nn.ReLU(),
                        nn.Linear(8, 3)).eval()
    x = torch.randn(10, 16)
    b = binarize(mlp, (1, 16))
    with torch.no_grad():
        s = _pm1(mlp[0](x))
        assert 0 < float((s > 0).float().mean()) < 1  # the binary layer sees both signs
        ref = mlp[5](torch.relu(s @ _pm1(mlp[3].weight).T + mlp[3].bias))
    torch.testing.assert_close(_out(b, x), ref, rtol=0, atol=1e-5)

    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Identity(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.randn(5, 1, 8, 8)
    b = binarize(cnn, (1, 1, 8, 8))
    with torch.no_grad():
        s = _pm1(F.max_pool2d(cnn[0](x), 2))
        assert 0 < float((s > 0).float().mean()) < 1
        ref = cnn[7](torch.relu(F.conv2d(s, _pm1(cnn[4].weight), cnn[4].bias, padding=1)).flatten(1))
    torch.testing.assert_close(_out(b, x), ref, rtol=0, atol=1e-5)


def test_binarize_accepts_a_shifted_relu():
    """``relu(x) - 0.5`` can be negative: a sign of it carries information and is not refused."""
    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.c3(self.c2(F.avg_pool2d(torch.relu(self.c1(x)), 2) - 0.5))

    torch.manual_seed(0)
    m = Shifted().eval()
    x = torch.randn(4, 1, 8, 8)
    b = binarize(m, (1, 1, 8, 8))
    with torch.no_grad():
        s = _pm1(F.avg_pool2d(torch.relu(m.c1(x)), 2) - 0.5)
        ref = m.c3(F.conv2d(s, _pm1(m.c2.weight), m.c2.bias))
    torch.testing.assert_close(_out(b, x), ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- PTQ on the IMC target
class _Tiny(nn.Module):
    def __init__(self, bn: bool = True):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.c1, self.b1, self.r1 = nn.Conv2d(1, 8, 3, padding=1), norm(8), nn.ReLU()
        self.c2, self.b2, self.r2 = nn.Conv2d(8, 8, 3, padding=1), norm(8), nn.ReLU()
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.r2(self.b2(self.c2(self.r1(self.b1(self.c1(x)))))))))


def _randomized(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.randn(n, generator=g))
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return m.eval()


def _digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits
    return (load_digits().images[:n] / 16.0).astype(np.float32)[:, None]


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bn, ptq_bits, chip_bits", [(True, 4, 4), (False, 4, 4), (True, 4, 8), (True, 8, 8)])
def test_imc_runs_the_ptq_model_in_both_weight_modes(per_channel, bn, ptq_bits, chip_bits):
    torch.manual_seed(0)
    x = _digits(24)
    res = quantize_ptq(_randomized(_Tiny(bn)), x[:12], (1, 1, 8, 8), weight_bits=ptq_bits, act_bits=8,
                       per_channel=per_channel)
    g = res.graph()
    c1 = next(n for n in g.nodes if n.name == "c1")
    assert len(c1.meta["weight_scale"]) == (8 if per_channel else 1)
    chip = dataclasses.replace(hwsim.load_preset("imc/isaac"), weight_bits=chip_bits, input_bits=8)
    out = hwsim.simulate(g, chip, x=x[12:]).outputs
    ref = _out(res.model, torch.from_numpy(x[12:])).numpy()
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max()


# ----------------------------------------------------------------------------- quantize: 1-bit signed inputs
def test_quantize_refuses_one_bit_signed_ranges_in_one_line():
    g = hwsim.as_graph(_Tiny().eval(), (1, 1, 8, 8))
    with pytest.raises(HwsimError, match=r"input_bits=1 leaves the signed inputs of c1") as e:
        quantize(g, input_bits=1, input_ranges={"c1": (-1.0, 1.0)})
    assert "\n" not in str(e.value)
    q = quantize(g, input_bits=1, input_ranges={"c1": (0.0, 1.0)})  # unsigned 1-bit: one level, scale = max
    assert next(n for n in q.nodes if n.name == "c1").meta["quant"].input_scale == 1.0
    for kw in ({"weight_bits": 1}, {"input_bits": True}, {"input_bits": 0}):
        with pytest.raises(HwsimError, match=next(iter(kw))):
            quantize(g, **kw)
