"""nets.layers: binary / k-bit torch layers and their IR conversion."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mapping
import nets
from mapping.graph import Op
from nets.layers import (
    BinaryConv2d,
    BinaryLinear,
    BinarySign,
    QuantAct,
    QuantConv2d,
    QuantLinear,
    binary_sign,
    quantize_weight_odd,
)


def test_sign_of_zero_is_plus_one_and_ste_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = BinarySign()(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]  # straight-through, clipped at |x| <= 1


def test_binary_conv_uses_pm1_weights_and_trains():
    torch.manual_seed(0)
    m = BinaryConv2d(3, 4, 3, stride=2, padding=1, groups=1)
    x = torch.randn(2, 3, 7, 7)
    ref = F.conv2d(x, torch.where(m.weight >= 0, 1.0, -1.0), None, 2, 1)
    assert torch.equal(m(x), ref)
    assert set(m.binary_weight.unique().tolist()) <= {-1.0, 1.0}
    m(x).sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pad_value", [1.0, -1.0])
def test_binary_conv_pad_value(pad_value):
    torch.manual_seed(1)
    m = BinaryConv2d(2, 3, 3, padding=1, pad_value=pad_value)
    x = binary_sign(torch.randn(1, 2, 5, 5))
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), value=pad_value), m.binary_weight)
    assert torch.equal(m(x), ref)
    with pytest.raises(ValueError):
        BinaryConv2d(2, 3, 3, pad_value=0.5)


def test_binary_linear():
    torch.manual_seed(2)
    m = BinaryLinear(5, 3)
    x = torch.randn(4, 5)
    assert torch.equal(m(x), x @ m.binary_weight.T)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_quant_weights_are_odd_levels_with_power_of_two_scale(bits):
    torch.manual_seed(bits)
    w = torch.randn(8, 4, 3, 3)
    wq, s = quantize_weight_odd(w, bits)
    assert np.log2(s) == int(np.log2(s))
    w_int = (wq / s).detach().numpy()
    assert np.array_equal(w_int, np.rint(w_int))
    assert np.all(np.abs(w_int) <= 2**bits - 1) and np.all(np.mod(w_int, 2) == 1)
    assert float(w.abs().max()) <= (2**bits - 1) * s  # the range covers the largest weight


def test_quant_conv_and_linear_forward():
    torch.manual_seed(3)
    c = QuantConv2d(3, 4, 3, padding=1, bits=3)
    x = torch.rand(1, 3, 6, 6)
    assert torch.equal(c(x), F.conv2d(x, c.quant_weight, None, 1, 1))
    lin = QuantLinear(6, 2, bits=2)
    z = torch.rand(3, 6)
    assert torch.equal(lin(z), z @ lin.quant_weight.T)


def test_quant_act_codes_and_gradient():
    a = QuantAct(3)  # scale 1/8
    x = torch.tensor([-0.3, 0.0, 0.06, 0.0625, 0.19, 0.5, 0.87, 2.0], requires_grad=True)
    y = a(x)
    codes = (y * 8).detach()
    assert torch.equal(codes, torch.clamp(torch.round(x.detach() * 8), 0, 7))
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError):
        QuantAct(0)


def test_trace_annotations():
    m = torch.nn.Sequential(QuantAct(8), BinaryConv2d(3, 4, 3, padding=1, pad_value=-1), torch.nn.BatchNorm2d(4),
                            BinarySign(), torch.nn.Flatten(), QuantLinear(4 * 5 * 5, 3, bits=2))
    g = mapping.trace(m, (1, 3, 5, 5))
    ops = [n.op for n in g]
    assert ops == [Op.QUANTIZE, Op.CONV2D, Op.BATCHNORM, Op.SIGN, Op.RESHAPE, Op.LINEAR]
    conv, lin = g.nodes[1], g.nodes[5]
    assert conv.meta["weight_bits"] == 1 and conv.meta["pad_value"] == -1.0
    assert set(np.unique(g.param(conv, "weight"))) <= {-1.0, 1.0}
    assert lin.meta["weight_bits"] == 2 and lin.meta["weight_scale"] == m[5].weight_scale
    assert g.nodes[0].attrs.bits == 8 and g.nodes[0].attrs.scale == 2.0**-8


def test_exported_from_nets():
    assert nets.BinaryConv2d is BinaryConv2d and nets.QuantAct is QuantAct
