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


# --- VNNI (vpdpbusd) path and its fallback -------------------------------------------------------
from hwsim.kernels import _vnni_gemm as vnni  # noqa: E402
from hwsim.kernels._vnni_microkernel import has_avx512_vnni  # noqa: E402

HOST_VNNI = has_avx512_vnni()
# Both paths where the host has VNNI; the fallback (float64 / integer loops) everywhere.
VNNI_MODES = [False, True] if HOST_VNNI else [False]


def _spy(mp):
    """Count the calls of the two VNNI products (``product``: row tiles; ``product_t``: the
    transposed tiles), through which every VNNI gemm_int / conv2d_int passes."""
    calls = []
    for name in ("product", "product_t"):
        real = getattr(vnni, name)

        def counted(*args, _real=real):
            calls.append(args[0].shape)
            return _real(*args)
        mp.setattr(vnni, name, counted)
    return calls


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 300), st.integers(1, 150),
       st.sampled_from([np.int8, np.uint8]), st.integers(-300, 300),
       st.sampled_from([np.int8, np.uint8]), st.integers(-300, 300),
       st.booleans(), st.sampled_from(VNNI_MODES), st.integers(0, 2**31 - 1))
def test_gemm_int_8bit_vnni_and_fallback_bit_exact(n, k, o, xdt, zx, wdt, zw, parallel, use_vnni, seed):
    """8-bit operands, any zero points (also outside the dtype), edges in M (tile 6), N (panel 64)
    and K (quads), with the VNNI kernel on and forced off."""
    rng = np.random.default_rng(seed)
    x, w = rand_int(rng, xdt, (n, k)), rand_int(rng, wdt, (o, k))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "USE_VNNI", use_vnni)
        calls = _spy(mp)
        ours = int8.gemm_int(x, w, x_zero_point=zx, w_zero_point=zw, parallel=parallel)
    assert len(calls) == int(use_vnni)
    assert ours.dtype == int8.accumulator_dtype(xdt, wdt, k, zx, zw)
    assert np.array_equal(ours, (x.astype(np.int64) - zx) @ (w.astype(np.int64) - zw).T)


@settings(max_examples=40, deadline=None)
@given(int_conv_cases(), st.sampled_from(VNNI_MODES), st.booleans())
def test_conv2d_int_8bit_vnni_and_fallback_bit_exact(case, use_vnni, parallel):
    """The conv cases (groups=1 8-bit ones take the implicit VNNI GEMM) with VNNI on and forced off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "USE_VNNI", use_vnni)
        _check_conv(case, parallel)


@pytest.mark.skipif(not HOST_VNNI, reason="the host has no AVX-512 VNNI (fallback tested above)")
@pytest.mark.parametrize("zx, zw, wdt, taken", [
    (3, 0, np.int8, True), (-128, 0, np.int8, True),  # int8 x: pad value zx + 128 = 0 fits uint8
    (0, 100, np.int8, False),  # w - zw leaves int8: float64 path
    (300, 0, np.int8, False),  # pad value zx + sx outside uint8: float64 path
    (0, 128, np.uint8, True)])  # uint8 weights with the symmetric zero point: w - 128 fits int8
def test_conv2d_int_vnni_routing_and_refusal_bit_exact(zx, zw, wdt, taken):
    rng = np.random.default_rng(abs(zx) + zw)
    xdt = np.int8 if zx == -128 else np.uint8
    x, w = rand_int(rng, xdt, (2, 5, 9, 8)), rand_int(rng, wdt, (7, 5, 3, 3))
    with pytest.MonkeyPatch.context() as mp:
        calls = _spy(mp)
        got = int8.conv2d_int(x, w, (2, 1), (1, 2), x_zero_point=zx, w_zero_point=zw)
    assert len(calls) == int(taken)
    assert np.array_equal(got, conv_ref(x, w, (2, 1), (1, 2), (1, 1), 1, zx, zw))


@pytest.mark.skipif(not HOST_VNNI, reason="the host has no AVX-512 VNNI")
def test_vnni_int32_bound_extremes_and_long_k_fallback():
    """K = MAX_K with the extreme products (255 * -128 and 255 * 127) is exact in int32; one more
    K leaves the VNNI kernel (int64 accumulators) and stays exact."""
    k = vnni.MAX_K
    a = np.full((7, k), 255, np.uint8)
    w = np.full((65, k), -128, np.int8)
    w[1::2] = 127
    got = vnni.gemm(a, w)
    ref = a[:, :1].astype(np.int64) * w[:, 0].astype(np.int64)[None] * k
    assert np.array_equal(got, ref) and got.min() == -255 * 128 * k
    with pytest.MonkeyPatch.context() as mp:
        calls = _spy(mp)
        long = int8.gemm_int(a[:2, :1].repeat(k + 1, 1), w[:3, :1].repeat(k + 1, 1))
    assert not calls and long.dtype == np.int64
    assert np.array_equal(long, 255 * w[:3, 0].astype(np.int64)[None].repeat(2, 0) * (k + 1))


@pytest.mark.parametrize("use_vnni", VNNI_MODES)
@pytest.mark.parametrize("stride", [1, 2])
def test_weights_changed_in_place_are_repacked(use_vnni, stride):
    """The packed weights are cached per array (``_vnni_pack``): writing into the same array between
    calls (same address, shape and dtype) must give the new result, never the stale one."""
    rng = np.random.default_rng(stride)
    x = rand_int(rng, np.uint8, (1, 8, 9, 9))
    w = rand_int(rng, np.int8, (6, 8, 3, 3))
    xg = rand_int(rng, np.int8, (5, 40))
    wg = rand_int(rng, np.uint8, (70, 40))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "USE_VNNI", use_vnni)
        for _ in range(3):
            got = int8.conv2d_int(x, w, stride, 1, x_zero_point=9)
            assert np.array_equal(got, conv_ref(x, w, (stride, stride), (1, 1), (1, 1), 1, zx=9))
            gg = int8.gemm_int(xg, wg, x_zero_point=-3, w_zero_point=128)
            assert np.array_equal(gg, (xg.astype(np.int64) + 3) @ (wg.astype(np.int64) - 128).T)
            w[rng.integers(0, 6), rng.integers(0, 8), 1, 2] ^= 0x55  # one weight, in place
            wg[rng.integers(0, 70), rng.integers(0, 40)] ^= 0x0F


@pytest.mark.skipif(not HOST_VNNI, reason="the host has no AVX-512 VNNI")
@pytest.mark.parametrize("parallel", [False, True])
def test_vnni_gemm_with_int64_accumulators_bit_exact(parallel):
    """A zero point far outside uint8 makes the accumulator int64 while K stays within MAX_K: the
    VNNI product is exact in int32 and the corrections are applied in int64."""
    rng = np.random.default_rng(7)
    x, w = rand_int(rng, np.uint8, (9, 1000)), rand_int(rng, np.int8, (67, 1000))
    x[0] = 255
    w[0] = -128
    with pytest.MonkeyPatch.context() as mp:
        calls = _spy(mp)
        got = int8.gemm_int(x, w, x_zero_point=-30000, w_zero_point=0, parallel=parallel)
    assert calls and got.dtype == np.int64
    ref = (x.astype(np.int64) + 30000) @ w.astype(np.int64).T
    assert abs(int(ref[0, 0])) > 2**31 and np.array_equal(got, ref)


@pytest.mark.parametrize("use_vnni", VNNI_MODES)
@pytest.mark.parametrize("n, c, o, hw, k, pad, dil", [
    (2, 7, 30, (14, 14), (3, 3), (1, 1), (1, 1)),  # 210 flat columns: the 12 x 32 transposed tile
    (1, 5, 13, (20, 9), (5, 5), (2, 2), (1, 1)),
    (1, 8, 7, (6, 11), (1, 1), (1, 1), (1, 1)),  # pw > dw*(kw-1): rows keep both pads
    (1, 12, 70, (9, 10), (3, 2), (2, 1), (2, 3)),
    (3, 4, 64, (1, 1), (1, 1), (0, 0), (1, 1))])
@pytest.mark.parametrize("parallel", [False, True])
def test_conv2d_int_stride1_layouts_bit_exact(use_vnni, n, c, o, hw, k, pad, dil, parallel):
    """Stride-1 convolutions across the transposed tiles, row pitches and channel quads."""
    rng = np.random.default_rng(c * o)
    x, w = rand_int(rng, np.int8, (n, c, *hw)), rand_int(rng, np.int8, (o, c, *k))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "USE_VNNI", use_vnni)
        got = int8.conv2d_int(x, w, 1, pad, dil, x_zero_point=-7, parallel=parallel)
    assert np.array_equal(got, conv_ref(x, w, (1, 1), pad, dil, 1, zx=-7))


def test_vnni_pack_cache_is_bounded_and_verified():
    """The packing cache keeps at most MAX_ENTRIES entries / MAX_BYTES bytes, and a hit is used only
    when the weight bytes are unchanged."""
    from hwsim.kernels import _vnni_pack as vpack
    made = []

    def make_of(w):
        def make():
            made.append(1)
            return (w.astype(np.int64) * 2,)
        return make
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vpack, "_CACHE", type(vpack._CACHE)())
        mp.setattr(vpack, "_SIZE", [0])
        mp.setattr(vpack, "MAX_ENTRIES", 3)
        ws = [np.full((4, 9), i, np.int8) for i in range(5)]
        for w in ws:
            assert np.array_equal(vpack.packed("t", w, (), make_of(w))[0], w * 2)
        assert len(vpack._CACHE) == 3 and len(made) == 5
        vpack.packed("t", ws[4], (), make_of(ws[4]))
        assert len(made) == 5  # hit
        ws[4][1, 2] = 7
        assert vpack.packed("t", ws[4], (), make_of(ws[4]))[0][1, 2] == 14 and len(made) == 6
        mp.setattr(vpack, "MAX_BYTES", 1)
        vpack.packed("t", ws[0], (), make_of(ws[0]))
        assert len(vpack._CACHE) == 1 and vpack._SIZE[0] == sum(e[2] for e in vpack._CACHE.values())


@pytest.mark.parametrize("use_vnni", VNNI_MODES)
def test_non_contiguous_8bit_operands_bit_exact(use_vnni):
    rng = np.random.default_rng(11)
    x = rand_int(rng, np.int8, (2, 6, 11, 13))[:, ::2, :, ::-1]
    w = rand_int(rng, np.int8, (12, 3, 3, 5)).transpose(0, 1, 3, 2)
    xg, wg = rand_int(rng, np.uint8, (30, 40)).T, rand_int(rng, np.int8, (30, 90)).T
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "USE_VNNI", use_vnni)
        for s in (1, 2):
            got = int8.conv2d_int(x, w, s, (2, 1), x_zero_point=5)
            assert np.array_equal(got, conv_ref(x, w, (s, s), (2, 1), (1, 1), 1, zx=5))
        got = int8.gemm_int(xg, wg, x_zero_point=1, w_zero_point=2)
    assert np.array_equal(got, (xg.astype(np.int64) - 1) @ (wg.astype(np.int64) - 2).T)


def test_packed_weight_cache_on_many_threads(monkeypatch):
    """Eight threads share the packed-weight cache (two entries: constant eviction) and each gets the exact GEMM;
    hwsim.clear_caches() empties it."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import hwsim
    from hwsim.kernels import _vnni_pack

    monkeypatch.setattr(_vnni_pack, "MAX_ENTRIES", 2)
    rng = np.random.default_rng(7)
    xs = [rng.integers(0, 256, (64, 96)).astype(np.uint8) for _ in range(4)]
    ws = [rng.integers(-128, 128, (40, 96)).astype(np.int8) for _ in range(6)]
    refs = {(i, j): xs[i].astype(np.int64) @ ws[j].astype(np.int64).T for i in range(4) for j in range(6)}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda ij: (ij, int8.gemm_int(xs[ij[0]], ws[ij[1]])), list(refs) * 3))
    finally:
        sys.setswitchinterval(interval)
    for ij, out in got:
        assert np.array_equal(out, refs[ij]), ij
    assert len(_vnni_pack._CACHE) <= 2
    hwsim.clear_caches()
    assert len(_vnni_pack._CACHE) == 0 and _vnni_pack._SIZE[0] == 0


@pytest.mark.skipif(not HOST_VNNI, reason="the VNNI row tiles need an AVX-512 VNNI compile target")
@pytest.mark.parametrize("parallel", [False, True])
def test_vnni_row_tiles_both_chosen_and_bit_exact(parallel):
    """``row_tile`` picks 8 x 48 where it computes fewer edge outputs than 6 x 64, and one packed weight
    array serves both tiles (each tile's panels built on first use), bit-exact either way."""
    rng = np.random.default_rng(5)
    assert vnni.row_tile(64, 1000) == (vnni.MR_S, vnni.NP_S) and vnni.row_tile(256, 256) == (vnni.MR, vnni.NP)
    assert vnni.row_tile(3, 40) == (vnni.MR, vnni.NP)  # equal cost: the 6 x 64 tile
    w = rng.integers(-128, 128, (96, 37)).astype(np.int8)  # 96 columns: 2 x 48, or 128 computed by 6 x 64
    pan = vnni.panels_of(w)
    for m, narrow in ((1, False), (5, False), (6, False), (8, True), (12, False), (13, True), (36, True), (64, True)):
        assert (vnni.row_tile(m, 96) == (vnni.MR_S, vnni.NP_S)) == narrow, m
        x = rng.integers(0, 256, (m, 37)).astype(np.uint8)
        irow = rng.integers(-1000, 1000, m).astype(np.int32)
        icol = rng.integers(-1000, 1000, 96).astype(np.int32)
        ref = x.astype(np.int64) @ w.astype(np.int64).T + irow[:, None] + icol[None, :]
        assert np.array_equal(vnni.gemm(x, None, parallel, pan, irow, icol), ref), m
    assert set(pan[2]) == {vnni.NP, vnni.NP_S}


def test_packed_weight_comparison_is_bytewise():
    """``_vnni_pack._same``: equal only when every byte is (memcmp and numpy paths, any position)."""
    from hwsim.kernels import _vnni_pack as vpack
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, 100_003).astype(np.uint8)
    for memcmp in (vpack._MEMCMP, None):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(vpack, "_MEMCMP", memcmp)
            assert vpack._same(a, a.copy()) and vpack._same(a[:0], a[:0].copy())
            assert not vpack._same(a, a[:-1].copy())
            for pos in (0, 1, 50_000, 100_002):
                b = a.copy()
                b[pos] ^= 0x80
                assert not vpack._same(a, b)
            assert vpack._same(a[1:], a[1:].copy())  # unaligned start
            assert vpack._same(a[::2], np.ascontiguousarray(a[::2]))  # non-contiguous: numpy's comparison
