"""Post-training quantization, binarization and k-bit XNOR layers (nets/compress/quantize.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mapping import trace
from mapping.graph import Op
from mapping.passes.quantize import quantize_weights
from nets.compress import CalibrationError, CompressError, binarize, quantize_ptq, quantize_xnor, recalibrate_bn
from nets.compress.testing import one_torch_thread, small_net  # noqa: F401 (autouse fixture)


def test_weights_are_on_the_per_channel_grid():
    model, shape = small_net("resnet20")
    res = quantize_ptq(model, torch.randn(4, *shape[1:]), shape, weight_bits=4, act_bits=8)
    for name, m in res.model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight.detach().double().numpy().reshape(m.weight.shape[0], -1)
        w0 = model.get_submodule(name).weight.detach().double().numpy().reshape(w.shape)
        s = np.abs(w0).max(axis=1) / 7  # 4 bits: levels -7..7
        q = w / s[:, None]
        np.testing.assert_allclose(q, np.rint(q), atol=1e-4)
        assert np.abs(np.rint(q)).max() <= 7
        np.testing.assert_allclose(w, w0, atol=0.5 * s.max() + 1e-6)  # rounding error at most half a step
        # re-quantizing on a target at the same bits is the identity
        q2, s2 = quantize_weights(m.weight.detach().numpy(), 4, True)
        np.testing.assert_allclose(q2 * s2.reshape(-1, *[1] * (q2.ndim - 1)), m.weight.detach().numpy(), atol=1e-6)


def test_single_conv_matches_a_numpy_integer_reference():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True)).eval()
    calib = torch.randn(6, 3, 9, 9)
    res = quantize_ptq(net, calib, (1, 3, 9, 9), weight_bits=6, act_bits=5, per_channel=True)
    x = torch.randn(2, 3, 9, 9)
    lo, hi = float(calib.min()), float(calib.max())
    assert res.input_ranges == {"_0": (lo, hi)}
    # reference: signed 5-bit input codes, 6-bit per-channel weight codes, integer accumulation
    sx = max(abs(lo), abs(hi)) / 15
    qx = np.clip(np.rint(x.double().numpy() / sx), -15, 15)
    w = net[0].weight.detach().double().numpy()
    sw = np.abs(w.reshape(5, -1)).max(1) / 31
    qw = np.rint(w / sw[:, None, None, None])
    acc = torch.nn.functional.conv2d(torch.from_numpy(qx), torch.from_numpy(qw), None, 2, 1).numpy()
    assert np.array_equal(acc, np.rint(acc))  # exact integers
    ref = acc * sx * sw[None, :, None, None] + net[0].bias.detach().double().numpy()[None, :, None, None]
    with torch.no_grad():
        np.testing.assert_allclose(res.model(x).double().numpy(), ref, rtol=1e-5, atol=1e-5)
    q = res.graph()["_0"].meta["quant"]
    assert q.input_scale == pytest.approx(sx) and q.input_signed is True and q.weight_bits == 6


def test_more_bits_less_error_on_every_net():
    for key in ("resnet20", "mobilenetv2", "ghostnet", "densenet-bc"):
        model, shape = small_net(key)
        calib, x = torch.randn(8, *shape[1:]), torch.randn(4, *shape[1:])
        with torch.no_grad():
            ref = model(x)
            err = [float((quantize_ptq(model, calib, shape, b, b).model(x) - ref).abs().max()) for b in (3, 8)]
        assert err[1] < err[0], key
        assert err[1] < 0.1 * float(ref.abs().max()), key


def test_bad_calibration_and_bits():
    model, shape = small_net("resnet20", random_bn=False)
    with pytest.raises(CalibrationError, match=r"\(4, 1, 32, 32\)"):
        quantize_ptq(model, torch.randn(4, 1, 32, 32), shape)
    with pytest.raises(CalibrationError, match="NaN"):
        quantize_ptq(model, torch.full((2, 3, 32, 32), float("nan")), shape)
    with pytest.raises(CompressError, match="weight_bits"):
        quantize_ptq(model, torch.randn(2, 3, 32, 32), shape, weight_bits=1)


def test_binarized_layers_trace_with_sign_inputs():
    model, shape = small_net("resnet20")
    bnet = binarize(model, shape)
    g = trace(bnet, shape)
    weighted = [n for n in g.nodes if n.op in (Op.CONV2D, Op.LINEAR)]
    first, last = weighted[0], weighted[-1]
    assert "weight_bits" not in first.meta and "weight_bits" not in last.meta  # kept in float
    for n in weighted[1:-1]:
        assert n.meta["weight_bits"] == 1
        w = g.param(n, "weight")
        assert set(np.unique(w)) <= {-1.0, 1.0}
        src = g[n.inputs[0]]
        assert src.op == Op.SIGN and g[src.inputs[0]].op != Op.RELU  # sign of the pre-ReLU value
    # it still trains (straight-through) and BN statistics can be re-estimated
    bnet.train()
    bnet(torch.randn(2, *shape[1:])).sum().backward()
    assert bnet.get_submodule("layer1.0.conv1").weight.grad is not None
    recalibrate_bn(bnet, torch.randn(8, *shape[1:]), shape)
    assert not bnet.training


def test_kbit_xnor_layers_use_power_of_two_calibrated_steps():
    model, shape = small_net("mobilenetv2")
    calib = torch.randn(4, *shape[1:])
    qnet, kept = quantize_xnor(model, shape, bits=2, calib=calib)
    g = trace(qnet, shape)
    quants = [n for n in g.nodes if n.op == Op.QUANTIZE]
    assert quants
    for n in quants:
        s = n.attrs.scale
        assert n.attrs.bits == 2 and math.log2(s) == round(math.log2(s))
    # a project conv reads the depthwise ReLU6 output: converted; an expand conv reads the previous
    # block's linear-bottleneck output (signed, no ReLU): kept in float
    assert "features.2.conv.0.0" in kept and "features.2.conv.2.0" not in kept
    qw = [n for n in g.nodes if n.op == Op.CONV2D and n.meta.get("weight_bits") == 2]
    assert qw and all(n.module not in kept for n in qw)
    with pytest.raises(CompressError, match="bits"):
        quantize_xnor(model, shape, bits=0)


@pytest.mark.parametrize("key", ["resnet20", "mobilenetv2"])
def test_ptq_model_equals_the_imc_simulator(key):
    """With a lossless ADC the IMC target's integer arithmetic (BN folded, the PTQ's calibrated input
    scales, which the simulator keeps from the graph) reproduces the PTQ torch model, on the calibration
    batch and on other data (the simulator re-quantized with dynamic scales, matching on the calibration
    batch only)."""
    import dataclasses

    import hwsim

    model, shape = small_net(key)
    x = torch.randn(2, *shape[1:])
    res = quantize_ptq(model, x, shape, weight_bits=4, act_bits=4)
    spec = dataclasses.replace(hwsim.load_preset("imc/edge-small"), weight_bits=4, input_bits=4, adc_bits=8)
    out = hwsim.simulate(res.graph(), spec, x=x.numpy()).outputs
    with torch.no_grad():
        ref, fp = res.model(x).numpy(), model(x).numpy()
    scale = float(np.abs(ref).max())
    assert np.abs(out - ref).max() <= 1e-5 * scale
    assert np.abs(fp - ref).max() > 1e-2 * scale  # 4-bit quantization is visible: the check is not vacuous
    other = 0.5 * torch.randn(3, *shape[1:])  # not the calibration data (clipped where outside its ranges)
    with torch.no_grad():
        ref = res.model(other).numpy()
    out = hwsim.simulate(res.graph(), spec, x=other.numpy()).outputs
    assert np.abs(out - ref).max() <= 1e-5 * float(np.abs(ref).max())


def _chain():
    def cbr(i, o):
        return [nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*cbr(1, 8), nn.MaxPool2d(2), *cbr(8, 16), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))


@pytest.mark.parametrize("bits", [1, 2])
def test_binary_and_kbit_chains_run_bit_exact_on_the_xnor_engine(bits):
    import hwsim
    from nets.compress.testing import randomize_bn

    torch.manual_seed(0)
    net = randomize_bn(_chain().eval())
    shape = (1, 1, 8, 8)
    x = torch.randint(0, 17, (4, 1, 8, 8)).float()  # integer pixels, as the engine's first layer takes
    if bits == 1:
        qnet = binarize(net, shape, keep_first=False, keep_last=False)
    else:
        qnet, kept = quantize_xnor(net, shape, bits=2, calib=x, keep_first=False, keep_last=False)
        assert kept == []
    out = hwsim.simulate(qnet, "fpga/pynq-z1", x=x.numpy()).outputs
    with torch.no_grad():
        ref = qnet.eval()(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_ptq_rounds_ties_as_the_imc_target_on_digits():
    """Digits' pixels are k/16: x / s lands on exact .5 ties, which float32 and float64 round to different sides;
    the PTQ model rounds in float64 as the simulator does, so the two agree there too (they were 12 % apart)."""
    import dataclasses

    import hwsim
    from hwsim.codesign.digits import DigitsCNN, load_split

    torch.manual_seed(0)
    model = DigitsCNN(width=4, num_classes=10).eval()
    _, _, xte, _ = load_split(tuple(range(10)))
    x = xte[:16]
    res = quantize_ptq(model, x, (1,) + tuple(x.shape[1:]), weight_bits=4, act_bits=4)
    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), weight_bits=4, input_bits=4)
    out = hwsim.simulate(res.graph(), spec, x=x.numpy()).outputs
    with torch.no_grad():
        ref = res.model(x).numpy()
    assert np.abs(out - ref).max() <= 1e-5 * float(np.abs(ref).max())
