"""TFLite's int8 arithmetic, bit for bit: fixed-point requantization and the int8 kernels built on it (NCHW).

Sources (read for the arithmetic; the code here is hwsim's own):

- ``QuantizeMultiplier`` — tensorflow/lite/kernels/internal/quantization_util.cc: a real multiplier ``m > 0`` is
  ``q · 2^shift`` with ``q`` in [0.5, 1) (``frexp``), stored as the int32 ``round(q · 2^31)`` (``std::round``: half
  away from zero); ``2^31`` becomes ``2^30`` with ``shift + 1``; ``shift < -31`` flushes to (0, 0).
- ``MultiplyByQuantizedMultiplier`` — tensorflow/lite/kernels/internal/common.h (the default, double-rounding
  build): ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x · 2^max(shift, 0), q), max(-shift, 0))``.
  ``SaturatingRoundingDoublingHighMul(a, b)`` (gemmlowp fixedpoint.h) is ``floor((a·b + 2^30) / 2^31)`` for every
  sign (its nudge ``1 - 2^30`` for negative products with a truncating division is the same thing), saturating
  only for ``a = b = INT32_MIN``; ``RoundingDivideByPOT(x, e)`` divides by ``2^e`` rounding half away from zero.
  CMSIS-NN's ``arm_nn_requantize`` (Include/arm_nnsupportfunctions.h, without ``CMSIS_NN_USE_SINGLE_ROUNDING``)
  computes the same: ``arm_nn_doubling_high_mult_no_sat`` adds ``2^30`` and shifts right by 31 (floor), then
  ``arm_nn_divide_by_power_of_two``.
- int8 ADD — tensorflow/lite/kernels/internal/reference/integer_ops/add.h with the parameters of kernels/add.cc:
  inputs offset by their zero points, shifted left by 20, scaled by ``s_i / (2·max(s_1, s_2))`` each
  (``MultiplyByQuantizedMultiplierSmallerThanOneExp`` = the same fixed-point product with a shift <= 0), summed,
  scaled by ``2·max(s_1, s_2) / (2^20 · s_out)``, offset by the output zero point, clamped.
- pooling — reference/integer_ops/pooling.h: max over the window's in-bounds taps; average = the sum of the
  in-bounds int8 values divided by their count, rounding half away from zero (padding never counts).
- MEAN over H and W — reference/integer_ops/mean.h: ``acc = Σ (q - zp_in)``, ``MultiplyByQuantizedMultiplier`` by
  ``s_in / s_out``, divided by H·W rounding half away from zero, plus ``zp_out``, clamped.

Every function works in int64 holding int32 values; an intermediate that would leave int32 where TFLite's C++ would
overflow is counted and reported (the caller raises), never wrapped silently.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["quantize_multiplier", "mbqm", "requantize_acc", "requantize_int8", "add_int8", "max_pool_int8",
           "avg_pool_int8", "mean_hw_int8", "ADD_LEFT_SHIFT"]

ADD_LEFT_SHIFT = 20  # int8 ADD: kernels/add.cc sets left_shift = 20 for int8 (15 for int16)
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``(q31 multiplier, shift)`` with ``m ≈ q · 2^(shift - 31)``."""
    m = float(m)
    if not math.isfinite(m) or m < 0:
        raise ValueError(f"multiplier must be finite and >= 0, got {m!r}")
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(math.floor(q * 2.0**31 + 0.5))  # q > 0: std::round = floor(x + 0.5); q · 2^31 is exact
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


@njit(cache=True, inline="always")
def _srdhm(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` of two int32 values (held in int64)."""
    if a == _I32_MIN and b == _I32_MIN:
        return _I32_MAX
    ab = a * b
    if ab >= 0:
        return (ab + (1 << 30)) >> 31
    return -((-(ab + 1 - (1 << 30))) >> 31)  # C++ division truncates toward zero


@njit(cache=True, inline="always")
def _rdbpot(x, e):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2^e`` rounded half away from zero."""
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


@njit(cache=True, inline="always")
def _mbqm(x, q, shift):
    """``MultiplyByQuantizedMultiplier``; returns (value, 1 if ``x · 2^left_shift`` left int32 else 0)."""
    ls = shift if shift > 0 else 0
    rs = -shift if shift < 0 else 0
    if ls > 31:  # x · 2^ls leaves int32 for any x != 0 (and a shift past 63 is undefined in int64): never wrap
        return 0, (0 if x == 0 else 1)
    xs = x << ls
    bad = 1 if (xs < _I32_MIN or xs > _I32_MAX) else 0
    return _rdbpot(_srdhm(xs, q), rs), bad


@njit(cache=True)
def _mbqm_array(x, q, shift, out):
    bad = 0
    for i in range(x.size):
        v, b = _mbqm(x[i], q, shift)
        out[i] = v
        bad += b
    return bad


def mbqm(x, q: int, shift: int) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier`` elementwise over int32 values ``x`` (any shape) -> int64."""
    x = np.ascontiguousarray(x, dtype=np.int64)
    if x.size and (x.min() < _I32_MIN or x.max() > _I32_MAX):
        raise ValueError("mbqm: x must hold int32 values")
    out = np.empty(x.size, np.int64)
    if _mbqm_array(x.ravel(), np.int64(q), np.int64(shift), out):
        raise OverflowError(f"x · 2^{shift} leaves int32 (TFLite's left shift would overflow)")
    return out.reshape(x.shape)


@njit(cache=True)
def _requant_channels(acc, bias, q, shift, zp, lo, hi, out):
    n, c, m = acc.shape
    bad = 0
    for b in range(n):
        for ch in range(c):
            qc, sc, bc = q[ch], shift[ch], bias[ch]
            for i in range(m):
                a = acc[b, ch, i] + bc
                if a < _I32_MIN or a > _I32_MAX:
                    bad += 1
                v, f = _mbqm(a, qc, sc)
                bad += f
                out[b, ch, i] = min(max(v + zp, lo), hi)
    return bad


def requantize_acc(acc: np.ndarray, bias: np.ndarray, q: np.ndarray, shift: np.ndarray, zp: int, lo: int,
                   hi: int) -> tuple[np.ndarray, int]:
    """Conv / fully-connected output stage: ``clamp(mbqm(acc + bias[c], q[c], shift[c]) + zp, lo, hi)`` per channel
    ``c`` (axis 1 of ``acc`` [N, C, ...]) -> (int8 array, number of values whose int32 arithmetic overflowed)."""
    shape = acc.shape
    a = np.ascontiguousarray(acc, dtype=np.int64).reshape(shape[0], shape[1], -1)
    out = np.empty(a.shape, np.int8)
    bad = _requant_channels(a, np.asarray(bias, np.int64), np.asarray(q, np.int64), np.asarray(shift, np.int64),
                            np.int64(zp), np.int64(lo), np.int64(hi), out)
    return out.reshape(shape), int(bad)


@njit(cache=True)
def _requant_flat(x, zp_in, q, shift, zp_out, lo, hi, out):
    bad = 0
    for i in range(x.size):
        v, f = _mbqm(np.int64(x[i]) - zp_in, q, shift)
        bad += f
        out[i] = min(max(v + zp_out, lo), hi)
    return bad


def requantize_int8(x: np.ndarray, zp_in: int, q: int, shift: int, zp_out: int, lo: int = -128,
                    hi: int = 127) -> tuple[np.ndarray, int]:
    """int8 -> int8 rescale (TFLite QUANTIZE int8->int8 ``Requantize``, and RELU/RELU6 ``ReluX``):
    ``clamp(mbqm(x - zp_in, q, shift) + zp_out, lo, hi)``."""
    xf = np.ascontiguousarray(x).ravel()
    out = np.empty(xf.size, np.int8)
    bad = _requant_flat(xf, np.int64(zp_in), np.int64(q), np.int64(shift), np.int64(zp_out), np.int64(lo),
                        np.int64(hi), out)
    return out.reshape(x.shape), int(bad)


@njit(cache=True)
def _add_flat(a, b, p, out):
    # p: zp_a, zp_b, q_a, s_a, q_b, s_b, q_out, s_out, zp_out, lo, hi, left_shift
    bad = 0
    for i in range(a.size):
        va = (np.int64(a[i]) - p[0]) << p[11]
        vb = (np.int64(b[i]) - p[1]) << p[11]
        sa, f1 = _mbqm(va, p[2], p[3])
        sb, f2 = _mbqm(vb, p[4], p[5])
        s = sa + sb
        f3 = 1 if (s < _I32_MIN or s > _I32_MAX) else 0
        r, f4 = _mbqm(s, p[6], p[7])
        bad += f1 + f2 + f3 + f4
        out[i] = min(max(r + p[8], p[9]), p[10])
    return bad


def add_int8(a: np.ndarray, b: np.ndarray, zp_a: int, zp_b: int, q_a: int, s_a: int, q_b: int, s_b: int,
             q_out: int, s_out: int, zp_out: int, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """TFLite int8 ADD of two same-shape tensors (see module doc); shifts are <= 0 (``...SmallerThanOneExp``)."""
    p = np.array([zp_a, zp_b, q_a, s_a, q_b, s_b, q_out, s_out, zp_out, lo, hi, ADD_LEFT_SHIFT], np.int64)
    out = np.empty(a.size, np.int8)
    bad = _add_flat(np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel(), p, out)
    return out.reshape(a.shape), int(bad)


@njit(cache=True)
def _pool(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, is_max, lo, hi, out):
    n, c, h, w = x.shape
    for t in range(n * c):
        b, ch = t // c, t % c
        for i in range(oh):
            for j in range(ow):
                acc = np.int64(0)
                best = np.int64(-129)
                cnt = 0
                for u in range(kh):
                    y = i * sh - ph + u * dh
                    if y < 0 or y >= h:
                        continue
                    for v in range(kw):
                        z = j * sw - pw + v * dw
                        if z < 0 or z >= w:
                            continue
                        val = np.int64(x[b, ch, y, z])
                        acc += val
                        best = max(best, val)
                        cnt += 1
                if is_max:
                    r = best
                elif acc > 0:
                    r = (acc + cnt // 2) // cnt
                else:
                    r = -((-acc + cnt // 2) // cnt)  # C++ division truncates toward zero
                out[b, ch, i, j] = min(max(r, lo), hi)


def _pool_call(x, kernel, stride, padding, dilation, out_hw, is_max, lo, hi):
    out = np.empty(x.shape[:2] + tuple(out_hw), np.int8)
    _pool(np.ascontiguousarray(x), kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0],
          dilation[1], out_hw[0], out_hw[1], is_max, np.int64(lo), np.int64(hi), out)
    return out


def max_pool_int8(x, kernel, stride, padding, dilation, out_hw, lo=-128, hi=127) -> np.ndarray:
    """Max over the in-bounds taps of each window (input and output share scale and zero point)."""
    return _pool_call(x, kernel, stride, padding, (1, 1) if dilation is None else dilation, out_hw, True, lo, hi)


def avg_pool_int8(x, kernel, stride, padding, out_hw, lo=-128, hi=127) -> np.ndarray:
    """Average of the in-bounds taps, rounded half away from zero (same scale and zero point in and out)."""
    return _pool_call(x, kernel, stride, padding, (1, 1), out_hw, False, lo, hi)


@njit(cache=True)
def _mean_hw(x, zp_in, q, shift, zp_out, out):
    n, c, m = x.shape
    bad = 0
    for b in range(n):
        for ch in range(c):
            acc = np.int64(0)
            for i in range(m):
                acc += np.int64(x[b, ch, i]) - zp_in
            v, f = _mbqm(acc, q, shift)
            bad += f
            if v > 0:
                v = (v + m // 2) // m
            else:
                v = -((-v + m // 2) // m)
            out[b, ch] = min(max(v + zp_out, -128), 127)
    return bad


def mean_hw_int8(x: np.ndarray, zp_in: int, q: int, shift: int, zp_out: int) -> tuple[np.ndarray, int]:
    """TFLite int8 MEAN over H and W of an [N, C, H, W] tensor -> ([N, C, 1, 1] int8, overflow count)."""
    n, c = x.shape[:2]
    out = np.empty((n, c), np.int8)
    bad = _mean_hw(np.ascontiguousarray(x).reshape(n, c, -1), np.int64(zp_in), np.int64(q), np.int64(shift),
                   np.int64(zp_out), out)
    return out.reshape(n, c, 1, 1), int(bad)
