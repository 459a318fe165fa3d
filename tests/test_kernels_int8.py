"""Integer kernels, bit-exact against an independent numpy int64 reference (explicit im2col)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import int8

FAST = settings(max_examples=40, deadline=None)


def conv_ref(x, w, stride, padding, dilation, groups, zx=0, zw=0):
    """sum (x - zx)(w - zw) in int64 via an explicit im2col; padded taps are exactly zx."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xs = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.int64)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, a, b] = xs[:, :, a * dh: a * dh + sh * (oh - 1) + 1: sh,
                                  b * dw: b * dw + sw * (ow - 1) + 1: sw]
    wz = w.astype(np.int64) - zw
    og = o // groups
    out = np.empty((n, o, oh, ow), np.int64)
    for g in range(groups):
        out[:, g * og:(g + 1) * og] = np.einsum(
            "nckhij,ockh->noij", cols[:, g * cg:(g + 1) * cg], wz[g * og:(g + 1) * og])
    return out


def rand_int(rng, dtype, shape, lo=None, hi=None):
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return rng.integers(lo, hi, shape, dtype=np.int64, endpoint=True).astype(dtype)


@st.composite
def int_conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3, "dw"]))
    cg = 1 if groups == "dw" else draw(st.integers(1, 6))
    g = draw(st.integers(1, 8)) if groups == "dw" else groups
    mult = 1 if groups == "dw" else draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    xdt = draw(st.sampled_from([np.int8, np.uint8, np.int16]))
    info = np.iinfo(xdt)
    return dict(
        n=draw(st.integers(1, 2)), c=cg * g, o=mult * g, groups=g, k=(kh, kw),
        s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), p=(ph, pw), d=(dh, dw),
        h=draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 17)),
        w=draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 17)),
        xdt=xdt, wdt=draw(st.sampled_from([np.int8, np.int8, np.uint8])),
        zx=draw(st.integers(int(info.min), int(info.max))) if xdt != np.int16 else 0,
        zw=draw(st.sampled_from([0, 0, 3])), seed=draw(st.integers(0, 2**31 - 1)))


def _check_conv(case, parallel):
    rng = np.random.default_rng(case["seed"])
    x = rand_int(rng, case["xdt"], (case["n"], case["c"], case["h"], case["w"]))
    w = rand_int(rng, case["wdt"], (case["o"], case["c"] // case["groups"], *case["k"]))
    ours = int8.conv2d_int(x, w, case["s"], case["p"], case["d"], case["groups"],
                           x_zero_point=case["zx"], w_zero_point=case["zw"], parallel=parallel)
    ref = conv_ref(x, w, case["s"], case["p"], case["d"], case["groups"], case["zx"], case["zw"])
    k = w.shape[1] * w.shape[2] * w.shape[3]
    assert ours.dtype == int8.accumulator_dtype(x.dtype, w.dtype, k, case["zx"], case["zw"])
    assert np.array_equal(ours, ref)


@FAST
@given(int_conv_cases())
def test_conv2d_int_bit_exact(case):
    _check_conv(case, parallel=False)


@settings(max_examples=15, deadline=None)
@given(int_conv_cases())
def test_conv2d_int_parallel_bit_exact(case):
    _check_conv(case, parallel=True)


@settings(max_examples=20, deadline=None)
@given(int_conv_cases(), st.booleans())
def test_conv2d_int_integer_loop_path_bit_exact(case, parallel):
    """The int32/int64 loops (used for operands too wide for exact float64) on the same cases."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "_F64_EXACT", 0)
        _check_conv(case, parallel)


def test_conv2d_int_padding_contributes_zero_point():
    """With x == x_zero_point everywhere the accumulators are 0, padding included."""
    x = np.full((1, 3, 5, 5), 7, np.uint8)
    w = rand_int(np.random.default_rng(0), np.int8, (4, 3, 3, 3))
    assert not int8.conv2d_int(x, w, 1, 2, x_zero_point=7).any()
    # raw sum with zero-point padding = acc + zx * sum(w)
    raw = conv_ref(x, w, (1, 1), (0, 0), (1, 1), 1)  # no padding: raw == 7 * sum(w)
    assert np.array_equal(raw[:, :, 0, 0], 7 * w.astype(np.int64).sum(axis=(1, 2, 3))[None])


def test_accumulator_dtype_rule():
    assert int8.accumulator_dtype(np.int8, np.int8, 4608) == np.int32
    assert int8.accumulator_dtype(np.uint8, np.int8, 65793) == np.int32  # 255*128*65793 < 2^31
    assert int8.accumulator_dtype(np.uint8, np.int8, 65794) == np.int64
    assert int8.accumulator_dtype(np.int16, np.int8, 9) == np.int32
    assert int8.accumulator_dtype(np.int16, np.int16, 9) == np.int64


def test_wide_operands_use_int64_exactly():
    rng = np.random.default_rng(1)
    x = rand_int(rng, np.int32, (1, 5, 6, 7), -2**24, 2**24)
    w = rand_int(rng, np.int16, (3, 5, 3, 3))
    ours = int8.conv2d_int(x, w, 1, 1)
    assert ours.dtype == np.int64
    assert np.array_equal(ours, conv_ref(x, w, (1, 1), (1, 1), (1, 1), 1))


def test_int64_overflow_is_refused():
    x = np.full((1, 4, 3, 3), 2**31 - 1, np.int32)
    w = np.full((1, 4, 3, 3), -2**31, np.int32)
    with pytest.raises(ValueError, match="overflow int64"):
        int8.conv2d_int(x, w)


@FAST
@given(st.integers(1, 5), st.integers(1, 300), st.integers(1, 40),
       st.sampled_from([np.int8, np.uint8, np.int16]), st.integers(-5, 5),
       st.sampled_from([np.int8, np.uint8]), st.integers(-3, 3),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_gemm_int_bit_exact(n, k, o, xdt, zx, wdt, zw, parallel, seed):
    rng = np.random.default_rng(seed)
    x = rand_int(rng, xdt, (n, k))
    w = rand_int(rng, wdt, (o, k))
    ours = int8.gemm_int(x, w, x_zero_point=zx, w_zero_point=zw, parallel=parallel)
    ref = (x.astype(np.int64) - zx) @ (w.astype(np.int64) - zw).T
    assert ours.dtype == int8.accumulator_dtype(xdt, wdt, k, zx, zw)
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("n, k, o, xdt, wdt, parallel", [
    (64, 300, 37, np.uint8, np.int8, False), (100, 1000, 8, np.int8, np.uint8, True),
    (70, 33, 200, np.int16, np.int8, False), (64, 200, 5, np.int32, np.int16, False)])
def test_gemm_int_float64_path_bit_exact(n, k, o, xdt, wdt, parallel):
    """From 64 rows ``gemm_int`` runs on the float64 GEMM where that is exact (8/16-bit operands);
    int32 operands keep the integer loops. Both against the int64 product."""
    rng = np.random.default_rng(n + k + o)
    x, w = rand_int(rng, xdt, (n, k)), rand_int(rng, wdt, (o, k))
    ours = int8.gemm_int(x, w, x_zero_point=3, w_zero_point=-2, parallel=parallel)
    assert ours.dtype == int8.accumulator_dtype(xdt, wdt, k, 3, -2)
    assert np.array_equal(ours, (x.astype(np.int64) - 3) @ (w.astype(np.int64) + 2).T)


@pytest.mark.parametrize("parallel", [False, True])
def test_conv2d_int_depthwise_fused_path_bit_exact(parallel):
    """Depthwise 3x3 / 5x5 through the fused float64 path (rows shorter and longer than one vector)."""
    rng = np.random.default_rng(3)
    for c, hw, s, k in [(40, 7, 1, 3), (24, 17, 2, 5), (16, 20, 1, 3)]:
        x = rand_int(rng, np.uint8, (2, c, hw, hw))
        w = rand_int(rng, np.int8, (c, 1, k, k))
        got = int8.conv2d_int(x, w, (s, s), (k // 2, k // 2), (1, 1), c, x_zero_point=5, parallel=parallel)
        assert np.array_equal(got, conv_ref(x, w, (s, s), (k // 2, k // 2), (1, 1), c, zx=5))


def test_integer_kernels_reject_bad_input():
    x = np.zeros((1, 4, 5, 5), np.int8)
    with pytest.raises(ValueError, match="integer dtype"):
        int8.conv2d_int(x.astype(np.float32), np.zeros((2, 4, 3, 3), np.int8))
    with pytest.raises(ValueError, match="input channels per group"):
        int8.conv2d_int(x, np.zeros((2, 3, 3, 3), np.int8))
    with pytest.raises(ValueError, match="K=3"):
        int8.gemm_int(np.zeros((1, 4), np.int8), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="x_zero_point must be an int"):
        int8.conv2d_int(x, np.zeros((2, 4, 3, 3), np.int8), x_zero_point=0.5)


def _round_half_even(v: Fraction) -> int:
    fl = v.numerator // v.denominator
    rem = v - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def test_requantize_against_exact_rational_reference():
    rng = np.random.default_rng(2)
    acc = rng.integers(-2**20, 2**20, (2, 6, 3, 4)).astype(np.int32)
    bias = rng.integers(-5000, 5000, 6).astype(np.int32)
    mult = rng.uniform(1e-5, 3e-4, 6)
    for dt, zy, relu in [(np.int8, 0, False), (np.int8, -3, True), (np.uint8, 128, False),
                         (np.uint8, 10, True)]:
        ours = int8.requantize(acc, bias, mult, zy, dt, relu)
        info = np.iinfo(dt)
        lo = zy if relu else info.min
        ref = np.empty(acc.shape, np.int64)
        for idx in np.ndindex(acc.shape):
            v = _round_half_even(Fraction(int(acc[idx]) + int(bias[idx[1]]))
                                 * Fraction(float(mult[idx[1]]))) + zy
            ref[idx] = min(max(v, lo), info.max)
        assert ours.dtype == dt
        assert np.array_equal(ours, ref)


def test_requantize_saturates_and_applies_relu():
    acc = np.array([[-10**6, -300, -1, 0, 1, 300, 10**6]], np.int64)
    assert int8.requantize(acc, None, 1.0).tolist() == [[-128, -128, -1, 0, 1, 127, 127]]
    assert int8.requantize(acc, None, 1.0, 5, np.int8, relu=True).tolist() == [
        [5, 5, 5, 5, 6, 127, 127]]
    assert int8.requantize(acc, None, 1.0, 3, np.uint8).tolist() == [[0, 0, 2, 3, 4, 255, 255]]


def test_requantize_ties_round_half_to_even():
    acc = np.array([[5, 7, -5, -7, 1, 3]], np.int32)
    assert int8.requantize(acc, None, 0.5).tolist() == [[2, 4, -2, -4, 0, 2]]


def test_requantize_rejects_bad_arguments():
    acc = np.zeros((1, 3), np.int32)
    with pytest.raises(ValueError, match="3 entries"):
        int8.requantize(acc, None, np.ones(2))
    with pytest.raises(ValueError, match="int32 or int64"):
        int8.requantize(acc.astype(np.float32))
    with pytest.raises(ValueError, match="outside"):
        int8.requantize(acc, None, 1.0, 300, np.int8)
    with pytest.raises(ValueError, match="> 0"):
        int8.requantize(acc, None, 0.0)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_quantize_dequantize_match_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
    for dt, tdt, zp in [(np.int8, torch.qint8, 0), (np.uint8, torch.quint8, 100)]:
        q = int8.quantize(x, 0.05, zp, dt)
        tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.05, zp, tdt)
        # torch multiplies by a float32 1/scale: it can differ by one step at near-ties only
        assert np.abs(q.astype(np.int64) - tq.int_repr().numpy().astype(np.int64)).max() <= 1
        ref = np.clip(np.rint(x.astype(np.float64) / 0.05) + zp, np.iinfo(dt).min, np.iinfo(dt).max)
        assert np.array_equal(q, ref.astype(dt))
        deq = int8.dequantize(q, 0.05, zp)
        assert np.allclose(deq, torch.dequantize(tq).numpy(), atol=0.05 + 1e-6)
        assert np.array_equal(deq, ((q.astype(np.int64) - zp) * 0.05).astype(np.float32))


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_quantize_per_channel_matches_torch():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    scales = np.abs(w).reshape(6, -1).max(axis=1) / 127
    q = int8.quantize(w, scales, 0, np.int8, axis=0)
    tq = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scales),
                                    torch.zeros(6, dtype=torch.long), 0, torch.qint8)
    assert np.abs(q.astype(np.int64) - tq.int_repr().numpy()).max() <= 1
    assert np.abs(q).max() == 127
    back = int8.dequantize(q, scales, 0, axis=0)
    assert np.abs(back - w).max() <= scales.max() / 2 + 1e-6
