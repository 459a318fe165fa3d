"""A binary conv that pads with ±1 (``nets.layers.BinaryConv2d(pad_value=...)``, Larq / daBNN style) on every target:
each computes the border as torch does or refuses in one line naming the layer and the pad value.

Per target (reference: the torch module itself):

- cpu/host, cpu/cortex-a53 (fp32, the xnor-popcount path for sign + binary conv): equal (integer sums, exact in fp32)
  or within 1e-5 of the largest output (real-valued input, fp32 summation order);
- fpga/pynq-z1: sign + binary conv equal; a real-valued input to a binary layer is refused (ShapeError);
- imc/isaac, imc/edge-small: sign + binary conv equal (±1 inputs, pads and weights are on the grid; both ADCs cover
  the 27-row partial sums); a real-valued input within the input-rounding bound ``K · s_x / 2`` (K = 27 taps, each
  rounded by at most half a step of the per-sample max-abs scale of the *padded* input); bit-equal to the same chip
  running an explicit ``ConstantPad2d(pad_value)`` then a padding-0 conv (the crossbar sees the padded input);
- cpu/cortex-m7 (int8, TFLite): a conv padded with ±1 is refused before calibration (Int8UnsupportedError naming
  the node and the value; ``BinarySign`` has no int8 kernel at all); zero padding within the int8 bound
  ``K · s_in / 2 + s_out`` (input rounding, then one output step).
"""
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
import mapping
from hwsim.cpu.int8 import Int8UnsupportedError, check_int8
from hwsim.errors import ShapeError, UnsupportedOpError
from nets.layers import BinaryConv2d, BinarySign, QuantAct

PADS = (-1.0, 0.0, 1.0)
SHAPE = (2, 3, 5, 5)
K = 3 * 3 * 3  # rows of the conv's weight matrix
IMC = {"imc/isaac": 16, "imc/edge-small": 8}  # preset -> input_bits


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


def _model(pv: float, front: str, explicit: bool = False) -> nn.Module:
    """[front] + BinaryConv2d(3, 4, 3, padding 1, pad_value pv); ``explicit``: ConstantPad2d(1, pv) + a padding-0
    conv with the same weights (what the crossbar runs)."""
    torch.manual_seed(1)
    conv = BinaryConv2d(3, 4, 3, padding=1, pad_value=pv)
    layers = {"sign": [BinarySign()], "none": [], "quant8": [QuantAct(8)]}[front]
    if explicit:
        plain = BinaryConv2d(3, 4, 3, padding=0)
        plain.weight.data.copy_(conv.weight.data)
        layers += [nn.ConstantPad2d(1, pv), plain]
    else:
        layers.append(conv)
    return nn.Sequential(*layers).eval()


def _torch(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def _sim(m: nn.Module, target: str, x: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hwsim.simulate(m, target, x=x)


def _imc_bound(x: np.ndarray, pv: float, bits: int) -> np.ndarray:
    """Per-sample bound of the input rounding: K taps, each within half a step of max|padded x| / (2^(b-1) - 1)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=pv)
    s = np.abs(xp).reshape(len(x), -1).max(axis=1) / (2 ** (bits - 1) - 1)
    return K * s / 2 * (1 + 1e-6) + 1e-5


@pytest.mark.parametrize("pv", PADS)
@pytest.mark.parametrize("target", ["cpu/host", "cpu/cortex-a53"])
@pytest.mark.parametrize("front", ["sign", "none"])
def test_fp32_cpu_targets_match_torch(pv, target, front):
    x = _x()
    m = _model(pv, front)
    ref, got = _torch(m, x), _sim(m, target, x).outputs
    tol = 0.0 if front == "sign" else 1e-5 * np.abs(ref).max()
    assert np.abs(got - ref).max() <= tol


@pytest.mark.parametrize("pv", PADS)
def test_fpga_sign_binary_conv_matches_torch_and_refuses_real_inputs(pv):
    x = _x()
    m = _model(pv, "sign")
    assert np.array_equal(_sim(m, "fpga/pynq-z1", x).outputs, _torch(m, x))
    with pytest.raises(ShapeError, match="non-integer values"):
        _sim(_model(pv, "none"), "fpga/pynq-z1", x)


@pytest.mark.parametrize("pv", PADS)
@pytest.mark.parametrize("target", sorted(IMC))
def test_imc_sign_binary_conv_is_exact(pv, target):
    x = _x()
    m = _model(pv, "sign")
    assert np.array_equal(_sim(m, target, x).outputs, _torch(m, x))


@pytest.mark.parametrize("pv", PADS)
@pytest.mark.parametrize("target", sorted(IMC))
def test_imc_binary_conv_within_input_rounding(pv, target):
    x = _x()
    m = _model(pv, "none")
    err = np.abs(_sim(m, target, x).outputs - _torch(m, x)).reshape(len(x), -1).max(axis=1)
    assert (err <= _imc_bound(x, pv, IMC[target])).all()


@pytest.mark.parametrize("pv", (-1.0, 1.0))
@pytest.mark.parametrize("target", sorted(IMC))
@pytest.mark.parametrize("front", ["sign", "none"])
def test_imc_equals_explicit_pad_then_padding0_conv(pv, target, front):
    x = _x()
    got = _sim(_model(pv, front), target, x)
    want = _sim(_model(pv, front, explicit=True), target, x)
    assert np.array_equal(got.outputs, want.outputs)
    # the cost counts the same MVMs: one per output pixel, every (padded) tap a row
    conv = [r for r in got.report.layers if r.op == "conv2d"][-1]
    conv_explicit = [r for r in want.report.layers if r.op == "conv2d"][-1]
    zero = [r for r in _sim(_model(0.0, front), target, x).report.layers if r.op == "conv2d"][-1]
    assert conv.cost.adc_conversions == conv_explicit.cost.adc_conversions == zero.cost.adc_conversions > 0
    assert conv.energy_j == pytest.approx(zero.energy_j, rel=1e-12)
    assert conv.energy_j == pytest.approx(conv_explicit.energy_j, rel=1e-12)


def test_imc_fixed_unsigned_grid_holds_plus_one_exactly():
    """QuantAct(8) (scale 2^-8, codes 0..255) feeds isaac's 16-bit inputs with its own grid: +1 is code 256."""
    x = np.abs(_x())
    m = _model(1.0, "quant8")
    ref = _torch(m, x)
    assert np.abs(_sim(m, "imc/isaac", x).outputs - ref).max() <= 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("pv,target,why", [(-1.0, "imc/isaac", "unsigned"), (-1.0, "imc/edge-small", "unsigned"),
                                           (1.0, "imc/edge-small", r"\[0, 0.996")])
def test_imc_refuses_a_pad_value_its_fixed_grid_cannot_hold(pv, target, why):
    with pytest.raises(UnsupportedOpError, match=rf"conv '_1' \(module '1'\) pads with {re.escape(f'{pv:+g}')} .*{why}"):
        _sim(_model(pv, "quant8"), target, np.abs(_x()))


def test_imc_conv_acc_refuses_an_implicit_nonzero_pad():
    from hwsim.imc.functional import conv_acc

    g = mapping.trace(_model(-1.0, "sign"), SHAPE)
    node = next(n for n in g.nodes if n.op.value == "conv2d")
    with pytest.raises(UnsupportedOpError, match="pads with -1; pad its input explicitly"):
        conv_acc(g, node, np.zeros(SHAPE, np.int64), True, np.ones((4, 3, 3, 3), np.int8),
                 hwsim.load_preset("imc/isaac"), 0)


@pytest.mark.parametrize("pv", PADS)
def test_int8_refuses_pm1_padding_and_runs_zero_padding(pv):
    x = _x()
    with pytest.raises(Int8UnsupportedError, match="'sign'"):
        _sim(_model(pv, "sign"), "cpu/cortex-m7", x)
    m = _model(pv, "none")
    if pv != 0:
        msg = rf"op 'conv2d' \(node '_0', module '0'\): conv padded with {re.escape(f'{pv:+g}')} \(pad_value"
        with pytest.raises(Int8UnsupportedError, match=msg):
            check_int8(mapping.trace(m, SHAPE))  # refused before any calibration
        with pytest.raises(Int8UnsupportedError, match=msg):
            _sim(m, "cpu/cortex-m7", x)
        return
    ref = _torch(m, x)
    s_in = (max(x.max(), 0) - min(x.min(), 0)) / 255
    s_out = (max(ref.max(), 0) - min(ref.min(), 0)) / 255
    assert np.abs(_sim(m, "cpu/cortex-m7", x).outputs - ref).max() <= K * s_in / 2 + s_out


@pytest.mark.parametrize("pv", PADS)
def test_imc_larq_like_block_after_batch_norm_folding(pv):
    """float stem -> BN -> sign -> binary conv (pv) -> BN -> ReLU -> GAP -> linear on isaac (batch norms folded into
    the convs): the padded border survives the folding; relative RMS error within 1e-4 for every pad (16-bit input
    rounding; measured 1.1e-5 to 2.2e-5), where zero-padding the ±1 border gave 0.2-0.3."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), BinarySign(),
                      BinaryConv2d(16, 16, 3, padding=1, pad_value=pv), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    for bn in (m[1], m[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    m.eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    ref, got = _torch(m, x), _sim(m, "imc/isaac", x).outputs
    assert np.sqrt(((got - ref) ** 2).mean() / (ref**2).mean()) <= 1e-4
