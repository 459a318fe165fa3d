"""Integer inference kernels (symmetric or asymmetric quantization), numpy in, numpy out, NCHW.

Conventions (chosen here, relied on by the simulators):

- Accumulators are ``sum (x - x_zero_point) * (w - w_zero_point)`` over the receptive field. A
  padded tap holds ``x_zero_point`` (the quantized real 0) and so contributes exactly 0. The raw
  sum with zero-point padding is ``acc + x_zero_point * sum_k (w - w_zero_point)``.
- Accumulator dtype: int32 when the worst case over the *dtype ranges* of x and w (after the zero
  points) times K fits in int32, else int64 — so it depends on dtypes, zero points and K, never on
  the data (uint8 x int8 with zero points 0: int32 for K <= 65,793, as 255 * 128 * K < 2**31).
  If the actual values could overflow even int64, ``ValueError`` is raised.
- Computation: when that worst case is below 2**53 (always for 8/16-bit operands) the
  convolution runs on the float64 implicit-GEMM kernels of ``_conv.py``: every product and
  partial sum is an integer below 2**53 and therefore exact in float64, in any order, so the
  result is bit-exact. Otherwise (wide int32 operands) exact integer loops run in int64.
- ``requantize`` multiplies in float64 and rounds half to even (``np.rint``, the rule of
  ``torch.quantize_per_tensor``'s ``nearbyint``), adds the output zero point, applies ReLU (clamp at
  the zero point) if asked, then saturates to the output dtype. This is the real-valued reference
  rule, not TFLite's fixed-point multiplier (which can differ by 1 LSB at near-ties).
- ``quantize`` computes ``rint(x / scale) + zero_point`` in float64 and saturates; PyTorch's
  fbgemm path multiplies by a float32 ``1/scale`` and can differ by 1 at exact ties.
"""
from __future__ import annotations

import numpy as np

from hwsim.kernels import _checks as chk
from hwsim.kernels import _int_loops as loops
from hwsim.kernels._conv import conv2d_gemm, plan, tap_offsets

__all__ = ["conv2d_int", "gemm_int", "requantize", "quantize", "dequantize", "accumulator_dtype"]

OPERAND_DTYPES = (np.int8, np.uint8, np.int16, np.int32)
OUT_DTYPES = (np.int8, np.uint8, np.int16, np.int32)
_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1
_F64_EXACT = 2**53  # integers of smaller magnitude are exact in float64
# gemm_int takes the float64 GEMM from this many rows of x (its columns there): below, the GEMM's register tile
# is mostly empty and the integer loops are as fast or faster (timings: docs/targets/kernels.md, "Integer kernels").
_F64_GEMM_MIN_ROWS = 64


def _int_scalar(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {v!r}")
    return int(v)


def _span(dtype, zp: int) -> int:
    """Largest ``|v - zp|`` over all values ``v`` of ``dtype``."""
    info = np.iinfo(dtype)
    return max(abs(int(info.min) - zp), abs(int(info.max) - zp))


def accumulator_dtype(x_dtype, w_dtype, k: int, x_zero_point: int = 0, w_zero_point: int = 0):
    """int32 if ``span(x) * span(w) * k`` fits in int32, else int64 (see module docstring)."""
    bound = _span(x_dtype, x_zero_point) * _span(w_dtype, w_zero_point) * k
    return np.int32 if bound <= _I32_MAX else np.int64


def _check_data_bound(x, w, k, zx, zw):
    """Raise if the actual values could overflow an int64 accumulator."""
    bx = max(abs(int(x.min()) - zx), abs(int(x.max()) - zx))
    bw = max(abs(int(w.min()) - zw), abs(int(w.max()) - zw))
    if bx * bw * k > _I64_MAX:
        raise ValueError(f"integer accumulator would overflow int64: max|x - zp| = {bx}, "
                         f"max|w - zp| = {bw}, K = {k}")


def conv2d_int(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
               x_zero_point: int = 0, w_zero_point: int = 0, parallel: bool = False) -> np.ndarray:
    """Integer 2-D convolution accumulators (no bias), exact.

    x: int8/uint8/int16/int32 [N, C, H, W]; w: same dtypes [O, C/groups, kh, kw].
    Returns int32 or int64 (``accumulator_dtype``) [N, O, OH, OW] holding
    ``sum (x - x_zero_point) * (w - w_zero_point)``, padded taps contributing 0.
    ``parallel=True`` runs the separately compiled prange variant.
    """
    x = chk.int_array("x", x, 4, OPERAND_DTYPES)
    w = chk.int_array("w", w, 4, OPERAND_DTYPES)
    zx = _int_scalar("x_zero_point", x_zero_point)
    zw = _int_scalar("w_zero_point", w_zero_point)
    s, p, d, groups, oh, ow = chk.conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    k = cg * kh * kw
    acc_t = accumulator_dtype(x.dtype, w.dtype, k, zx, zw)
    if _span(x.dtype, zx) * _span(w.dtype, zw) * k < _F64_EXACT:
        xf = x.astype(np.float64)
        xf -= zx
        wf = w.astype(np.float64)
        wf -= zw
        return conv2d_gemm(xf, wf, None, s, p, d, groups, bool(parallel)).astype(acc_t)
    _check_data_bound(x, w, k, zx, zw)
    oh, ow, hq, wq, phases, ph_rh, ph_rw = plan(h, wd, kh, kw, s, p, d)
    boff = tap_offsets(cg, kh, kw, hq, wq, s, d, phases, c)
    wz = (w.reshape(o, k).astype(np.int64) - zw).astype(acc_t)
    P = np.zeros(len(phases) * c * hq * wq + hq * wq, dtype=acc_t)
    out = np.empty((n, o * oh * ow), dtype=acc_t)
    fn = loops.conv_int_parallel if parallel else loops.conv_int_serial
    fn(x, zx, wz, boff, P, out, groups, o // groups, cg, s[0], s[1], p[0], p[1], hq, wq,
       ph_rh, ph_rw, oh, ow)
    return out.reshape(n, o, oh, ow)


def gemm_int(x, w, x_zero_point: int = 0, w_zero_point: int = 0,
             parallel: bool = False) -> np.ndarray:
    """``sum_k (x[n, k] - x_zp) * (w[o, k] - w_zp)`` -> [N, O], int32 or int64 as documented."""
    x = chk.int_array("x", x, 2, OPERAND_DTYPES)
    w = chk.int_array("w", w, 2, OPERAND_DTYPES)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"gemm_int: x has K={x.shape[1]} but w has K={w.shape[1]}")
    zx = _int_scalar("x_zero_point", x_zero_point)
    zw = _int_scalar("w_zero_point", w_zero_point)
    k = x.shape[1]
    acc_t = accumulator_dtype(x.dtype, w.dtype, k, zx, zw)
    if x.shape[0] >= _F64_GEMM_MIN_ROWS and _span(x.dtype, zx) * _span(w.dtype, zw) * k < _F64_EXACT:
        # exact in float64 (see the module docstring): the GEMM as a 1x1 convolution of one image with
        # K channels and a 1 x N map on the register-tiled float64 kernels of _conv.py
        xt = (x.astype(np.float64) - zx).T.reshape(1, k, 1, x.shape[0])
        wf = (w.astype(np.float64) - zw).reshape(w.shape[0], k, 1, 1)
        y = conv2d_gemm(np.ascontiguousarray(xt), wf, None, (1, 1), (0, 0), (1, 1), 1, bool(parallel))
        return np.ascontiguousarray(y.reshape(w.shape[0], x.shape[0]).T).astype(acc_t)
    if acc_t == np.int64:
        _check_data_bound(x, w, k, zx, zw)
        _check_data_bound(x, w, k, zx, 0)  # the raw products summed before the correction
    xa = x.astype(np.int64) - zx  # [N, K], small; w stays in its own dtype
    corr = zw * xa.sum(axis=1)
    out = np.empty((x.shape[0], w.shape[0]), dtype=acc_t)
    (loops.gemm_int_parallel if parallel else loops.gemm_int_serial)(xa, w, corr, out)
    return out


def _channel_param(name: str, v, acc_ndim: int, axis: int, n_ch: int, dtype):
    """A scalar, or a 1-D per-channel array reshaped to broadcast along ``axis``."""
    arr = np.asarray(v, dtype=dtype)
    if arr.ndim == 0:
        return arr
    if arr.ndim != 1 or arr.shape[0] != n_ch:
        raise ValueError(f"{name} must be a scalar or have {n_ch} entries (axis {axis}), "
                         f"got shape {arr.shape}")
    shape = [1] * acc_ndim
    shape[axis] = n_ch
    return arr.reshape(shape)


def _out_dtype(out_dtype):
    dt = np.dtype(out_dtype)
    if dt.type not in OUT_DTYPES:
        names = ", ".join(np.dtype(t).name for t in OUT_DTYPES)
        raise ValueError(f"out_dtype must be one of ({names}), got {dt}")
    return dt


def requantize(acc, bias=None, multiplier=1.0, out_zero_point: int = 0, out_dtype=np.int8,
               relu: bool = False) -> np.ndarray:
    """``clamp(rint((acc + bias) * multiplier) + out_zero_point)`` -> out_dtype.

    acc: int32/int64 [N, O, ...] (channel axis 1); bias: int32/int64 [O] or None (in accumulator
    units, i.e. scale ``s_x * s_w``); multiplier: float or float64[O] (``s_x * s_w / s_y``);
    ``relu`` clamps below at ``out_zero_point``. Rounding: half to even, in float64.
    """
    acc = np.asarray(acc)
    if acc.dtype.type not in (np.int32, np.int64):
        raise ValueError(f"requantize: acc must be int32 or int64, got {acc.dtype}")
    if acc.ndim < 2:
        raise ValueError(f"requantize: acc must be at least 2-D [N, O, ...], got shape {acc.shape}")
    dt = _out_dtype(out_dtype)
    zy = _int_scalar("out_zero_point", out_zero_point)
    info = np.iinfo(dt)
    if not info.min <= zy <= info.max:
        raise ValueError(f"out_zero_point {zy} is outside the {dt} range")
    n_ch = acc.shape[1]
    total = acc.astype(np.int64)
    if bias is not None:
        b = np.asarray(bias)
        if b.dtype.kind not in "iu":
            raise ValueError(f"requantize: bias must be an integer array, got {b.dtype}")
        total = total + _channel_param("bias", b, acc.ndim, 1, n_ch, np.int64)
    m = _channel_param("multiplier", multiplier, acc.ndim, 1, n_ch, np.float64)
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("requantize: multiplier must be finite and > 0")
    y = np.rint(total.astype(np.float64) * m) + zy
    lo = zy if relu else info.min
    return np.clip(y, lo, info.max).astype(dt)


def quantize(x, scale, zero_point=0, dtype=np.int8, axis: int = 1) -> np.ndarray:
    """``clamp(rint(x / scale) + zero_point)`` -> dtype; scale/zero_point scalar or per ``axis``."""
    x = chk.f32("x", x)
    dt = _out_dtype(dtype)
    n_ch = x.shape[axis] if x.ndim > axis else 0
    s = _channel_param("scale", scale, x.ndim, axis, n_ch, np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("quantize: scale must be finite and > 0")
    zp = np.asarray(zero_point)
    if zp.dtype.kind not in "iu":
        raise ValueError(f"quantize: zero_point must be integer, got {zp.dtype}")
    zp = _channel_param("zero_point", zp, x.ndim, axis, n_ch, np.int64)
    info = np.iinfo(dt)
    q = np.rint(x.astype(np.float64) / s) + zp
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize(q, scale, zero_point=0, axis: int = 1) -> np.ndarray:
    """``(q - zero_point) * scale`` -> float32; scale/zero_point scalar or per ``axis``."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise ValueError(f"dequantize: q must be an integer array, got {q.dtype}")
    n_ch = q.shape[axis] if q.ndim > axis else 0
    s = _channel_param("scale", scale, q.ndim, axis, n_ch, np.float64)
    zp = _channel_param("zero_point", np.asarray(zero_point), q.ndim, axis, n_ch, np.int64)
    return ((q.astype(np.int64) - zp) * s).astype(np.float32)
