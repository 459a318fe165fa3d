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
- VNNI path (taken first where it applies): on hosts with AVX-512 VNNI (``USE_VNNI``), 8-bit
  operands run on the exact u8 x s8 -> int32 ``vpdpbusd`` kernels of ``_vnni_gemm.py`` /
  ``_vnni_conv.py`` (:func:`_vnni_gemm_int`, :func:`_vnni_conv2d_int`; convolutions with groups=1):
  int8 activations are made unsigned by adding 128 (``a = x + sx``), uint8 weights signed by
  subtracting 128 (``b = w - sw``), and the shifts and zero points are removed with
  ``sum (a - ex)(b - ew) = sum a*b - ew*sum_k a - ex*sum_k b + K*ex*ew`` (``ex = zx + sx``,
  ``ew = zw - sw``). ``sum a*b`` stays in int32 for ``K <= _vnni_gemm.MAX_K`` (255 * 128 * K < 2**31);
  larger K keeps the paths above. Where the accumulator dtype is int32 the corrections are the
  kernel's starting values (int32 wrap-around arithmetic: exact because the true result fits int32),
  else they are applied in int64. A convolution uses ``b = w - zw`` directly (it must fit int8, checked
  on the weights) and pads with ``a = ex`` (must fit uint8), else it keeps the float64 path. The
  packed weights are cached per weight array and reused only while its bytes are unchanged
  (``_vnni_pack.py``).
- ``requantize`` multiplies in float64 and rounds half to even (``np.rint``, the rule of
  ``torch.quantize_per_tensor``'s ``nearbyint``), adds the output zero point, applies ReLU (clamp at
  the zero point) if asked, then saturates to the output dtype. This is the real-valued reference
  rule, not TFLite's fixed-point multiplier (which can differ by 1 LSB at near-ties).
- ``quantize`` computes ``rint(x / scale) + zero_point`` in float64 and saturates; PyTorch's
  fbgemm path multiplies by a float32 ``1/scale`` and can differ by 1 at exact ties.
"""
from __future__ import annotations

import functools

import numpy as np

from hwsim.kernels import _checks as chk
from hwsim.kernels import _int_loops as loops
from hwsim.kernels import _vnni_conv as vconv
from hwsim.kernels import _vnni_gemm as vnni
from hwsim.kernels import _vnni_pack as vpack
from hwsim.kernels._conv import conv2d_gemm, plan, tap_offsets
from hwsim.kernels._vnni_microkernel import has_avx512_vnni

__all__ = ["conv2d_int", "gemm_int", "requantize", "quantize", "dequantize", "accumulator_dtype"]

OPERAND_DTYPES = (np.int8, np.uint8, np.int16, np.int32)
OUT_DTYPES = (np.int8, np.uint8, np.int16, np.int32)
_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1
_F64_EXACT = 2**53  # integers of smaller magnitude are exact in float64
# gemm_int takes the float64 GEMM from this many rows of x (its columns there): below, the GEMM's register tile
# is mostly empty and the integer loops are as fast or faster (timings: docs/targets/kernels.md, "Integer kernels").
_F64_GEMM_MIN_ROWS = 64
# 8-bit operands take the VNNI kernels when the compile target has AVX-512 VNNI (a test sets this
# False to exercise the other paths on such a host).
USE_VNNI = has_avx512_vnni()
_EIGHT_BIT = (np.int8, np.uint8)


def _int_scalar(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {v!r}")
    return int(v)


def _span(dtype, zp: int) -> int:
    """Largest ``|v - zp|`` over all values ``v`` of ``dtype``."""
    lo, hi = _int_range(np.dtype(dtype))
    return max(abs(lo - zp), abs(hi - zp))


@functools.lru_cache(maxsize=None)
def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


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
    if groups == 1 and _vnni_operands(x, w, k):
        y = _vnni_conv2d_int(x, w, s, p, d, oh, ow, zx, zw, acc_t, bool(parallel))
        if y is not None:
            return y
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
    if _vnni_operands(x, w, k):
        return _vnni_gemm_int(x, w, zx, zw, acc_t, bool(parallel))
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


def _vnni_operands(x, w, k: int) -> bool:
    """True when the VNNI kernels apply: enabled, both operands 8-bit, 0 < K <= MAX_K, not empty."""
    return (USE_VNNI and x.dtype.type in _EIGHT_BIT and w.dtype.type in _EIGHT_BIT
            and 0 < k <= vnni.MAX_K and x.size > 0 and w.size > 0)


def _as_u8(x):
    """8-bit ``x`` as uint8 ``a = x + shift`` (int8: flip the sign bit, shift 128) and the shift."""
    if x.dtype == np.uint8:
        return x, 0
    return x.view(np.uint8) ^ np.uint8(0x80), 128


def _as_s8(w):
    """8-bit weights as int8 ``b = w - sw`` and the shift ``sw`` (0 for int8, 128 for uint8)."""
    if w.dtype == np.int8:
        return w, 0
    return (w ^ np.uint8(0x80)).view(np.int8), 128


def _vnni_gemm_int(x, w, zx: int, zw: int, acc_t, parallel: bool) -> np.ndarray:
    """gemm_int on the VNNI kernel: ``a = x + sx`` (uint8), ``b = w - sw`` (int8, packed into panels
    once per weight array: ``_vnni_pack``), ``sum a*b`` corrected with ``ex = sx + zx``,
    ``ew = zw - sw`` (module docstring). With int32 accumulators the corrections are the tile's
    starting values (int32 wrap-around: exact, as the true result fits int32); with int64 ones they
    are applied afterwards in int64."""
    a, sx = _as_u8(x)
    k = x.shape[1]
    ex = sx + zx

    def make():
        b, sw = _as_s8(w)
        return vnni.panels_of(b), vnni.row_sums(b), sw, {}
    pan, wsum, sw, icols = vpack.packed("gemm", w, (), make)
    ew = zw - sw
    if acc_t == np.int32:
        if ex not in icols:  # -ex * sum_k b as the int32 column starts, per activation shift
            if len(icols) >= 8:
                icols.clear()
            icols[ex] = (-ex * wsum).astype(np.int32)
        irow = (-(ew * vnni.row_sums(a) - k * ex * ew)).astype(np.int32) if ew else None
        return np.ascontiguousarray(vnni.gemm(a, None, parallel, pan, irow, icols[ex]))
    row_corr = (ew * vnni.row_sums(a) - k * ex * ew) if ew else np.zeros(a.shape[0], np.int64)
    out = np.empty((x.shape[0], w.shape[0]), dtype=acc_t)
    vnni.finish_gemm(vnni.gemm(a, None, parallel, pan), row_corr, ex * wsum, out)
    return out


def _conv_weights(w, zw: int):
    """(``wq = weight_quads(w - zw)``, its row sums, a dict of further packings of ``wq`` filled on
    demand), or () when ``w - zw`` leaves int8; cached per weight array (``_vnni_pack``)."""
    def make():
        if (w.dtype == np.int8 and zw == 0) or (w.dtype == np.uint8 and zw == 128):
            b = _as_s8(w)[0]
        else:
            b16 = w.astype(np.int16) - zw
            if int(b16.min()) < -128 or int(b16.max()) > 127:
                return ()
            b = b16.astype(np.int8)
        wq = vconv.weight_quads(np.ascontiguousarray(b))
        return wq, vnni.row_sums(wq), {}
    return vpack.packed("conv", w, (zw,), make)


def _vnni_conv2d_int(x, w, s, p, d, oh: int, ow: int, zx: int, zw: int, acc_t, parallel: bool):
    """groups=1 conv2d_int on the VNNI kernels, or None when they do not apply: the weights are
    used as ``b = w - zw``, which must fit int8 (checked on the data), and the padded taps hold
    ``a = zx + sx``, which must fit uint8; then ``acc = sum a*b - (zx + sx) * sum_k b``, whose true
    value fits int32 (``|a - zx - sx| <= 255``, ``|b| <= 128``, K <= MAX_K). Stride 1 runs on the
    channel-quad-planar transposed tile (``_vnni_conv``), other strides on the NHWC implicit GEMM."""
    a, sx = _as_u8(x)
    ex = zx + sx
    if not 0 <= ex <= 255:
        return None
    packed = _conv_weights(w, zw)
    if not packed:
        return None
    wq, wsum, more = packed
    n, o = x.shape[0], w.shape[0]
    kernel = w.shape[2:]
    out = np.empty((n, o, oh, ow), dtype=acc_t)
    if s == (1, 1):
        def wpan_of(rows):
            if rows not in more:
                more[rows] = vnni.row_panels(wq, rows)
            return more[rows]
        vconv.conv2d_s1(a, ex, wpan_of, wsum, kernel, p, d, oh, ow, out, parallel)
        return out
    if "panels" not in more:
        more["panels"] = vnni.panels_of(wq)
    xp, rbase, aoff = vnni.conv_operands(a, ex, kernel, s, p, d, oh, ow)
    raw = vnni.product(xp, rbase, aoff, more["panels"], parallel, None, (-ex * wsum).astype(np.int32))
    vnni.finish_nchw(raw, out.reshape(n, o, oh * ow))
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
