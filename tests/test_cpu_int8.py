"""The int8 path (hwsim.cpu.int8 + hwsim.cpu.functional) against an independent integer reference.

The reference below is a plain numpy int64 transcription of TFLite's reference kernels
(tensorflow/lite/kernels/internal/reference/integer_ops/{conv,depthwise_conv,fully_connected,add,pooling,mean}.h and
common.h / quantization_util.cc), written apart from the implementation: it reads only a program's int8 weights,
int32 biases, float32 scales and zero points, and derives its own fixed-point multipliers and clamps. Every int8
tensor of the program must equal it bit for bit. Against fp32 the dequantized outputs must agree within the
quantization error stated in each test.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mapping
from hwsim.cpu.functional import run_int8
from hwsim.cpu.int8 import Int8OverflowError, Int8UnsupportedError, check_int8, quantize_int8
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.functional import run
from hwsim.kernels._int8_tflite import mbqm, quantize_multiplier
from mapping.passes.fold_bn import fold_bn

# ----------------------------------------------------------------------------- the reference (int64 numpy)
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def ref_quantize_multiplier(m: float) -> tuple[int, int]:
    """quantization_util.cc QuantizeMultiplier."""
    if m == 0:
        return 0, 0
    frac, exp = math.frexp(m)
    qf = math.floor(Fraction(frac) * 2**31 + Fraction(1, 2))  # std::round of a positive value
    if qf == 2**31:
        qf, exp = qf // 2, exp + 1
    if exp < -31:
        return 0, 0
    return qf, exp


def ref_mbqm(x: np.ndarray, q: int, shift: int) -> np.ndarray:
    """common.h MultiplyByQuantizedMultiplier (double rounding), elementwise over int64 arrays of int32 values."""
    x = np.asarray(x, np.int64) * (2 ** max(shift, 0))
    assert x.min(initial=0) >= I32_MIN and x.max(initial=0) <= I32_MAX
    ab = x * np.int64(q)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    high = np.where(s >= 0, s // (1 << 31), -((-s) // (1 << 31)))  # C++ '/' truncates
    e = max(-shift, 0)
    mask = np.int64((1 << e) - 1)
    rem = high & mask
    thr = (mask >> 1) + (high < 0)
    return (high >> e) + (rem > thr)


def ref_requant(acc, s_in, s_w, s_out, zp_out, lo, hi):
    """Per-channel output stage (axis 1)."""
    out = np.empty(acc.shape, np.int64)
    for c in range(acc.shape[1]):
        q, sh = ref_quantize_multiplier(float(s_in) * float(s_w[c]) / float(s_out))
        out[:, c] = ref_mbqm(acc[:, c], q, sh) + zp_out
    return np.clip(out, lo, hi)


def ref_act_range(act, scale, zp):
    if act == "none":
        return -128, 127
    lo = max(-128, zp)  # zp + round(0 / scale)
    if act == "relu":
        return lo, 127
    v = np.float32(6.0) / np.float32(scale)
    return lo, min(127, zp + int(math.floor(float(v) + 0.5)))


def ref_conv(x, w, bias, zp_in, stride, pad, dil, groups):
    """conv.h / depthwise_conv.h: acc = bias + sum w * (x - zp) over in-bounds taps, int64."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    acc = np.zeros((n, o, oh, ow), np.int64) + bias.astype(np.int64)[None, :, None, None]
    xo = x.astype(np.int64) - zp_in
    opg = o // groups
    for ky in range(kh):
        for kx in range(kw):
            for i in range(oh):
                y = i * stride[0] - pad[0] + ky * dil[0]
                if not 0 <= y < h:
                    continue
                for j in range(ow):
                    z = j * stride[1] - pad[1] + kx * dil[1]
                    if not 0 <= z < wd:
                        continue
                    for g in range(groups):
                        xs = xo[:, g * cg:(g + 1) * cg, y, z]  # [n, cg]
                        ws = w[g * opg:(g + 1) * opg, :, ky, kx].astype(np.int64)  # [opg, cg]
                        acc[:, g * opg:(g + 1) * opg, i, j] += xs @ ws.T
    return acc


def ref_add(a, b, qa, qb, qo, lo, hi):
    """add.h with add.cc's parameters (left shift 20)."""
    twice = 2 * max(qa[0], qb[0])
    ma = ref_quantize_multiplier(qa[0] / twice)
    mb = ref_quantize_multiplier(qb[0] / twice)
    mo = ref_quantize_multiplier(twice / ((1 << 20) * qo[0]))
    sa = ref_mbqm((a.astype(np.int64) - qa[1]) * (1 << 20), *ma)
    sb = ref_mbqm((b.astype(np.int64) - qb[1]) * (1 << 20), *mb)
    return np.clip(ref_mbqm(sa + sb, *mo) + qo[1], lo, hi)


def ref_pool(x, kernel, stride, pad, out_hw, is_max):
    """pooling.h: max / rounded average over in-bounds taps."""
    n, c, h, w = x.shape
    out = np.empty((n, c) + tuple(out_hw), np.int64)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            y0, x0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
            win = x[:, :, max(y0, 0):min(y0 + kernel[0], h), max(x0, 0):min(x0 + kernel[1], w)].astype(np.int64)
            if is_max:
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                cnt = win.shape[2] * win.shape[3]
                s = win.sum(axis=(2, 3))
                out[:, :, i, j] = np.where(s > 0, (s + cnt // 2) // cnt, -((-s + cnt // 2) // cnt))
    return out


def ref_mean(x, q_in, q_out):
    """mean.h: sum of (x - zp_in), scaled by s_in / s_out, divided by H*W rounding half away, + zp_out."""
    n, c, h, w = x.shape
    acc = (x.astype(np.int64) - q_in[1]).reshape(n, c, -1).sum(axis=2)
    acc = ref_mbqm(acc, *ref_quantize_multiplier(q_in[0] / q_out[0]))
    m = h * w
    acc = np.where(acc > 0, (acc + m // 2) // m, -((-acc + m // 2) // m))
    return np.clip(acc + q_out[1], -128, 127).reshape(n, c, 1, 1)


def ref_rescale(x, q_in, q_out, lo, hi):
    """QUANTIZE int8->int8 (Requantize) and RELU/RELU6 (ReluX)."""
    m = ref_quantize_multiplier(q_in[0] / q_out[0])
    return np.clip(ref_mbqm(x.astype(np.int64) - q_in[1], *m) + q_out[1], lo, hi)


def _qp(q):
    return float(q.scale), int(q.zero_point)


def ref_step(step, xs, shape):
    """One program step computed by the reference."""
    k = step.kind
    qo = _qp(step.out_q) if step.out_q is not None else None
    if k in ("conv", "depthwise", "fc"):
        x = xs[0] if k != "fc" else xs[0].reshape(xs[0].shape + (1, 1))
        w = step.weight if k != "fc" else step.weight.reshape(step.weight.shape + (1, 1))
        a = step.attrs
        geo = (a.stride, a.padding, a.dilation, a.groups) if k != "fc" else ((1, 1), (0, 0), (1, 1), 1)
        acc = ref_conv(x, w, step.bias, step.in_q[0].zero_point, *geo)
        lo, hi = ref_act_range(step.act, *qo)
        y = ref_requant(acc, step.in_q[0].scale, step.weight_scale, qo[0], qo[1], lo, hi)
        return y.reshape(shape)
    if k == "add":
        return ref_add(xs[0], xs[1], _qp(step.in_q[0]), _qp(step.in_q[1]), qo, *ref_act_range(step.act, *qo))
    if k in ("maxpool", "avgpool"):
        a = step.attrs
        return ref_pool(xs[0], a.kernel, a.stride, a.padding, shape[2:], k == "maxpool")
    if k == "mean":
        return ref_mean(xs[0], _qp(step.in_q[0]), qo)
    if k in ("requantize", "relu"):
        return ref_rescale(xs[0], _qp(step.in_q[0]), qo, *ref_act_range(step.act, *qo))
    if k == "concat":
        return np.concatenate(xs, axis=1)
    if k == "reshape":
        return xs[0].reshape(shape)
    raise AssertionError(k)


def assert_bit_exact(program, x, ref_step=ref_step):
    """Run the program and the reference (``ref_step`` per step) side by side; every int8 tensor must match
    exactly."""
    outs, values = run_int8(program, x, keep=True)
    ref = {program.input: values[program.input]}
    for step in program.steps:
        if step.kind == "softmax":
            continue
        shape = (x.shape[0],) + tuple(program.shapes[step.output][1:])
        y = ref_step(step, [ref[i] for i in step.inputs], shape)
        got = values[step.output]
        assert got.dtype == np.int8, step.output
        np.testing.assert_array_equal(got.astype(np.int64), y, err_msg=f"{step.kind} {step.output}")
        ref[step.output] = y.astype(np.int8)
    return outs


def rel_rms(a, b) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


# ----------------------------------------------------------------------------- nets
class SmallCNN(nn.Module):
    """Every kind of step: conv+relu, max pool, depthwise+relu6, two branches concatenated at different scales, a
    standalone relu, avg pool, residual add+relu, global pooling, flatten, linear, softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pa = nn.Conv2d(8, 4, 1)
        self.pb = nn.Conv2d(8, 4, 3, padding=2, dilation=2, bias=False)
        self.ap = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            self.pb.weight.mul_(3.0)  # the two concatenated branches get different ranges, hence scales

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = self.pool(x)
        x = torch.clamp(self.dw(x), 0, 6)
        x = torch.relu(torch.cat([self.pa(x), self.pb(x)], 1))
        x = self.ap(x)
        y = self.c2(x)
        x = torch.relu(y + self.c3(y))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.softmax(self.fc(x), dim=1)


def _graph(model, shape):
    torch.manual_seed(0)
    model.eval()
    return fold_bn(mapping.trace(model, shape))


def _data(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_small_cnn_bit_exact_and_close_to_fp32():
    torch.manual_seed(0)
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    p = quantize_int8(g, _data((16, 3, 16, 16), 1))
    kinds = {s.kind for s in p.steps}
    assert kinds >= {"conv", "depthwise", "fc", "add", "maxpool", "avgpool", "mean", "concat", "requantize", "relu",
                     "reshape", "softmax"}, kinds
    x = _data((4, 3, 16, 16), 2)
    outs = assert_bit_exact(p, x)
    ref = run(g, x)[0]
    # softmax probabilities: the int8 logits are within a few quantization steps of fp32
    assert np.abs(outs[0] - ref).max() < 0.01  # measured 4.5e-4
    assert (outs[0].argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_program_follows_the_tflite_scheme():
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    p = quantize_int8(g, _data((8, 3, 16, 16), 1))
    for s in p.steps:
        if s.weight is not None:
            assert s.weight.dtype == np.int8 and s.weight.min() >= -127  # narrow range, zero point 0
            assert np.all(np.abs(s.weight.reshape(len(s.weight), -1)).max(1) == 127)  # per-channel max hits 127
            assert s.bias.dtype == np.int32
        if s.act in ("relu", "relu6"):
            assert s.out_q.zero_point == -128 and s.act_range[0] == -128  # range [0, max] -> zp = -128
        if s.kind in ("maxpool", "avgpool", "reshape"):
            assert s.out_q == s.in_q[0]
        if s.kind == "concat":
            assert all(q == s.out_q for q in s.in_q)
    # the concat of two branches of different ranges: scales differ, so the converter's requantization is there
    assert any(s.kind == "requantize" for s in p.steps)


def test_resnet20_bit_exact_and_within_quantization_error():
    import nets

    g = fold_bn(mapping.trace(nets.get("resnet20"), (1, 3, 16, 16)))
    p = quantize_int8(g, _data((8, 3, 16, 16), 3))
    x = _data((2, 3, 16, 16), 4)
    outs = assert_bit_exact(p, x)
    # relative RMS of the logits against fp32: int8 activations over 20 layers of a randomly initialised net
    assert rel_rms(outs[0], run(g, x)[0]) < 0.05  # measured 0.017


@pytest.mark.slow
def test_mobilenetv2_bit_exact_and_within_quantization_error():
    import nets

    g = fold_bn(mapping.trace(nets.get("mobilenetv2"), (1, 3, 32, 32)))
    p = quantize_int8(g, _data((16, 3, 32, 32), 5))
    x = _data((2, 3, 32, 32), 6)
    outs = assert_bit_exact(p, x)
    # measured 0.081: the error grows gradually over the 52 int8 layers (0.012 after the first conv)
    assert rel_rms(outs[0], run(g, x)[0]) < 0.12


# ----------------------------------------------------------------------------- the requantization helper
@settings(max_examples=300)
@given(x=st.integers(I32_MIN // 256, I32_MAX // 256), q=st.integers(2**30, I32_MAX), shift=st.integers(-31, 8))
def test_mbqm_against_exact_rational(x, q, shift):
    ls, rs = max(shift, 0), max(-shift, 0)
    if not I32_MIN <= x * 2**ls <= I32_MAX:
        return
    high = math.floor(Fraction(x * 2**ls * q, 2**31) + Fraction(1, 2))  # SRDHM: nearest, halves up
    r = Fraction(high, 2**rs)
    want = int(math.copysign(math.floor(abs(r) + Fraction(1, 2)), r))  # RDBPOT: nearest, halves away from 0
    assert int(mbqm(np.array([x]), q, shift)[0]) == want
    assert int(ref_mbqm(np.array([x]), q, shift)[0]) == want
    exact = Fraction(x * q) * Fraction(2) ** (shift - 31)
    assert abs(want - exact) <= 1  # two roundings: within one step of the real product


@settings(max_examples=300)
@given(m=st.floats(1e-9, 1e4, allow_nan=False))
def test_quantize_multiplier_against_exact(m):
    q, shift = quantize_multiplier(m)
    assert (q, shift) == ref_quantize_multiplier(m)
    assert 2**30 <= q <= I32_MAX
    assert abs(Fraction(q) * Fraction(2) ** (shift - 31) - Fraction(m)) <= Fraction(m) * Fraction(1, 2**31)


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # shift < -31 flushes to zero
    assert quantize_multiplier(1 - 2.0**-40) == (2**30, 1)  # rounds up to 2^31: halved, shift + 1


# ----------------------------------------------------------------------------- refusals (before any work)
class _Hardswish(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.a = nn.Hardswish()

    def forward(self, x):
        return self.a(self.c(x))


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 8, 3, groups=2)

    def forward(self, x):
        return self.c(x)


class _MidSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.softmax(x, 1))


class _PaddedAvg(nn.Module):
    def forward(self, x):
        return nn.functional.avg_pool2d(x, 3, 1, 1)  # count_include_pad=True


@pytest.mark.parametrize("model, shape, words", [
    (_Hardswish(), (1, 3, 8, 8), ["'hardswish'", "node", "no int8 kernel"]),
    (_Grouped(), (1, 4, 8, 8), ["'conv2d'", "grouped conv (groups=2"]),
    (_MidSoftmax(), (1, 4), ["'softmax'", "last op"]),
    (_PaddedAvg(), (1, 3, 8, 8), ["'avgpool'", "count_include_pad"]),
])
def test_unsupported_ops_refused_before_work(model, shape, words):
    g = _graph(model, shape)
    with pytest.raises(Int8UnsupportedError) as e:
        check_int8(g)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert isinstance(e.value, UnsupportedOpError) and isinstance(e.value, HwsimError)
    with pytest.raises(Int8UnsupportedError):  # quantize_int8 refuses before calibrating: no data needed
        quantize_int8(g, np.zeros((1, 1), np.float32))


def test_input_shape_mismatch_refused():
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    p = quantize_int8(g, _data((2, 3, 16, 16), 1))
    with pytest.raises(HwsimError, match="does not match"):
        run_int8(p, _data((1, 3, 8, 8), 0))


def test_int32_overflow_is_an_error_not_a_wrap():
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, -1.0]]))
        m.bias.fill_(1e-9)
    g = _graph(m, (1, 2))
    # calibrated where both inputs are equal, the output range is [0, 1e-9]: the multiplier s_in*s_w/s_out is ~2^24,
    # so an input with x0 != x1 shifts the accumulator past int32, which TFLite would wrap
    a = _data((8, 1), 0)
    p = quantize_int8(g, np.concatenate([a, a], 1))
    assert p.steps[0].shift[0] > 16
    with pytest.raises(Int8OverflowError, match="fc"):
        run_int8(p, np.array([[1.0, -1.0]], np.float32))


# ----------------------------------------------------------------------------- simulate() with an int8 spec
@pytest.fixture
def int8_m7(monkeypatch):
    """The Cortex-M7 preset as an int8 CMSIS-NN spec. Its latency comes from the runtime cost model
    (hwsim.cpu.runtime), fitted elsewhere; these tests check the functional path and the memory verdict, so they
    cost each layer with the fp32 model of the same core."""
    import dataclasses
    import importlib

    from hwsim.api import as_spec

    S = importlib.import_module("hwsim.cpu.simulate")  # the module (hwsim.cpu.simulate is also the function)

    m7 = as_spec("cpu/cortex-m7")
    fp32 = dataclasses.replace(m7, runtime="pytorch", precision="fp32", core="")
    fp32_cost = S.layer_cost
    monkeypatch.setattr(S, "layer_cost", lambda g, node, spec, place, n: fp32_cost(g, node, fp32, place, n))
    return dataclasses.replace(m7, runtime="cmsis-nn", precision="int8", core="cortex-m7")


def test_simulate_int8_runs_the_int8_program_and_plans_memory(int8_m7):
    import dataclasses

    from hwsim.cpu import simulate
    from hwsim.cpu.arena import flash_bytes, plan_int8_arena

    torch.manual_seed(0)
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    cal, x = _data((16, 3, 16, 16), 1), _data((1, 3, 16, 16), 2)
    r = simulate(g, int8_m7, x, calib=cal)
    want = run_int8(quantize_int8(g, cal), x)[0]
    np.testing.assert_array_equal(r.outputs, want)
    rep = r.report
    assert rep.arena_bytes == plan_int8_arena(g).arena_bytes > 0
    assert rep.flash_bytes == flash_bytes(g) > 0
    assert rep.peak_activation_bytes == rep.arena_bytes and rep.onchip_weight_bytes == rep.flash_bytes
    assert rep.fits_on_chip and "arena" in rep.fit_reason and "flash" in rep.fit_reason
    assert rep.to_dict()["arena_bytes"] == rep.arena_bytes
    assert any("calibration batch of 16" in n for n in rep.notes)
    assert any("evaluated batch itself" in n for n in simulate(g, int8_m7, x).report.notes)
    # a part whose RAM is smaller than the arena: the verdict names the arena
    tiny = dataclasses.replace(int8_m7, ram_bytes=rep.arena_bytes - 16)
    rep2 = simulate(g, tiny).report
    assert not rep2.fits_on_chip and "arena" in rep2.fit_reason and "RAM" in rep2.fit_reason
    small_flash = dataclasses.replace(int8_m7, flash_bytes=rep.flash_bytes - 1)
    assert "flash" in simulate(g, small_flash).report.fit_reason


def test_simulate_int8_quantizes_once_per_calibration_set(int8_m7, monkeypatch):
    """evaluate runs a data set batch by batch with one calibration set: the program is built once for it, and a
    calibration set with other content (same shape) builds a new one, with that set's outputs."""
    import importlib

    from hwsim.cpu import simulate

    S = importlib.import_module("hwsim.cpu.simulate")
    S._INT8_PROGRAMS.clear()
    torch.manual_seed(0)
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    cal, other = _data((8, 3, 16, 16), 1), _data((8, 3, 16, 16), 3)
    calls = []
    real = quantize_int8
    monkeypatch.setattr("hwsim.cpu.int8.quantize_int8", lambda *a, **k: calls.append(1) or real(*a, **k))
    for seed in (2, 4, 5):
        x = _data((2, 3, 16, 16), seed)
        np.testing.assert_array_equal(simulate(g, int8_m7, x, calib=cal.copy()).outputs,
                                      run_int8(real(g, cal), x)[0])
    assert len(calls) == 1
    x = _data((2, 3, 16, 16), 2)
    np.testing.assert_array_equal(simulate(g, int8_m7, x, calib=other).outputs, run_int8(real(g, other), x)[0])
    assert len(calls) == 2


def test_simulate_int8_refuses_unsupported_op_before_work(int8_m7, monkeypatch):
    import importlib

    from hwsim.cpu import cost_report, simulate

    g = _graph(_Hardswish(), (1, 3, 8, 8))
    S = importlib.import_module("hwsim.cpu.simulate")
    with monkeypatch.context() as m:
        m.setattr(S, "_report", lambda *a, **k: pytest.fail("costed before the refusal"))
        with pytest.raises(Int8UnsupportedError, match="hardswish"):
            simulate(g, int8_m7, _data((1, 3, 8, 8), 0))
    # the cost model alone runs on any graph: the deployed runtime may have kernels hwsim's int8 path lacks
    rep = cost_report(g, int8_m7)
    assert rep.arena_bytes > 0 and rep.flash_bytes == 4 * 3 * 9 + 4 * 4


def test_simulate_fp32_refuses_calib():
    import dataclasses

    from hwsim.api import as_spec
    from hwsim.cpu import simulate

    fp32 = dataclasses.replace(as_spec("cpu/cortex-a72"), runtime="pytorch", precision="fp32", core="")
    g = _graph(_Grouped(), (1, 4, 8, 8))
    with pytest.raises(HwsimError, match="calib"):
        simulate(g, fp32, _data((1, 4, 8, 8), 0), calib=_data((1, 4, 8, 8), 1))


def test_simulate_int8_checks_calib_before_work(int8_m7, monkeypatch):
    import importlib

    from hwsim.cpu import simulate
    from hwsim.errors import ShapeError

    S = importlib.import_module("hwsim.cpu.simulate")
    monkeypatch.setattr(S, "_report", lambda *a, **k: pytest.fail("costed before the refusal"))
    g = _graph(SmallCNN(), (1, 3, 16, 16))
    bad = _data((4, 3, 16, 16), 1)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ShapeError, match="NaN"):
        simulate(g, int8_m7, _data((1, 3, 16, 16), 2), calib=bad)
    with pytest.raises(ShapeError, match="does not match"):
        simulate(g, int8_m7, _data((1, 3, 16, 16), 2), calib=_data((4, 3, 8, 8), 1))
    with pytest.raises(ShapeError, match="calib of shape .0, 3, 16, 16. holds no sample"):
        simulate(g, int8_m7, _data((1, 3, 16, 16), 2), calib=_data((0, 3, 16, 16), 1))
