"""fp32 pooling and resampling loops (Numba, serial), following PyTorch's CPU kernels.

Index formulas (from ATen ``Pool.h``, ``AdaptivePooling.h``, ``UpSample.h``):
- pooled size: ``out = (in + 2p - d(k-1) - 1 + (s-1 if ceil_mode)) // s + 1``, minus one when
  ``ceil_mode`` and the last window would start in the right padding (``(out-1)*s >= in + p``).
- avg pool window ``[o*s - p, min(o*s - p + k, in + p))``; its size before clipping to the input
  is the divisor when ``count_include_pad``, else the number of real input elements.
- adaptive window ``[floor(o*in/out), ceil((o+1)*in/out))``.
- bilinear source coordinate: ``align_corners``: ``o*(in-1)/(out-1)``; else
  ``max((o+0.5)*in/out - 0.5, 0)``; computed in float32 as PyTorch does for float tensors.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Pooled output length along one axis (PyTorch ``pooling_output_shape``)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@njit(cache=True)
def max_pool(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """``out[n,c,i,j] = max`` over the dilated window; padding acts as -inf; NaN propagates (the first
    NaN met in tap order (a, b) wins, as a NaN compares false). Per output row, each tap (a, b) is
    one pass over the output columns whose input column is inside (bounds hoisted out of the loop:
    a branch-free select that LLVM vectorises)."""
    n_n, c_n, h, w = x.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    j_lo = np.empty(kw, np.int64)
    j_hi = np.empty(kw, np.int64)
    for b in range(kw):
        off = b * dw - pw  # input column of output j is j*sw + off
        j_lo[b] = min(ow_n, max(0, (-off + sw - 1) // sw))
        j_hi[b] = max(j_lo[b], min(ow_n, (w - 1 - off) // sw + 1))
    for n in range(n_n):
        for c in range(c_n):
            for i in range(oh_n):
                orow = out[n, c, i]
                orow[:] = -np.inf
                for a in range(kh):
                    hi = i * sh - ph + a * dh
                    if hi < 0 or hi >= h:
                        continue
                    xrow = x[n, c, hi]
                    for b in range(kw):
                        off = b * dw - pw
                        for j in range(j_lo[b], j_hi[b]):
                            v = xrow[j * sw + off]
                            m = orow[j]
                            orow[j] = v if (v > m or v != v) else m


@njit(cache=True)
def avg_pool(x, out, kh, kw, sh, sw, ph, pw, count_include_pad):
    """Average over ``[i*sh - ph, ...)`` windows, divisor as in PyTorch (see module docstring)."""
    n_n, c_n, h, w = x.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_n):
        for c in range(c_n):
            for i in range(oh_n):
                h0 = i * sh - ph
                h1 = min(h0 + kh, h + ph)
                for j in range(ow_n):
                    w0 = j * sw - pw
                    w1 = min(w0 + kw, w + pw)
                    pool = (h1 - h0) * (w1 - w0)
                    a0, a1 = max(h0, 0), min(h1, h)
                    b0, b1 = max(w0, 0), min(w1, w)
                    if a0 >= a1 or b0 >= b1:
                        out[n, c, i, j] = 0.0
                        continue
                    s = 0.0
                    for a in range(a0, a1):
                        for b in range(b0, b1):
                            s += x[n, c, a, b]
                    div = pool if count_include_pad else (a1 - a0) * (b1 - b0)
                    out[n, c, i, j] = s / div


@njit(cache=True, fastmath={"reassoc"})
def adaptive_avg_pool(x, out):
    """Mean over ``[floor(i*H/OH), ceil((i+1)*H/OH))`` x the same along W. The window sum is a
    float64 sum that LLVM may reassociate (``fastmath`` reassoc: vectorised partial sums; a global
    pool over a 112x112 map was a serial chain of 12,544 dependent adds), then rounded to float32."""
    n_n, c_n, h, w = x.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_n):
        for c in range(c_n):
            for i in range(oh_n):
                a0 = (i * h) // oh_n
                a1 = -((-(i + 1) * h) // oh_n)
                for j in range(ow_n):
                    b0 = (j * w) // ow_n
                    b1 = -((-(j + 1) * w) // ow_n)
                    s = 0.0
                    if b0 == 0 and b1 == w and a1 > a0:  # full-width window rows: one contiguous run
                        run = x[n, c].reshape(-1)[a0 * w:a1 * w]
                        for q in range(run.size):
                            s += run[q]
                    else:
                        for a in range(a0, a1):
                            row = x[n, c, a]
                            for b in range(b0, b1):
                                s += row[b]
                    out[n, c, i, j] = s / ((a1 - a0) * (b1 - b0))


def nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source index per output index, PyTorch ``nearest_idx`` (float32 scale, floor, clamp)."""
    if out_size == in_size:
        return np.arange(out_size, dtype=np.int64)
    if out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int64) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def linear_index(in_size: int, out_size: int, align_corners: bool):
    """``(i0, i1, lambda1)`` per output index for bilinear interpolation (PyTorch, float32)."""
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0.0)
        src = dst * scale
    else:
        scale = np.float32(in_size) / np.float32(out_size)
        src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = src.astype(np.int64)  # truncation == floor for src >= 0
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


@njit(cache=True)
def bilinear(x, out, h0, h1, hl, w0, w1, wl):
    """Separable linear interpolation with precomputed indices and weights."""
    n_n, c_n = x.shape[0], x.shape[1]
    oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_n):
        for c in range(c_n):
            for i in range(oh_n):
                a = hl[i]
                for j in range(ow_n):
                    b = wl[j]
                    top = (1 - b) * x[n, c, h0[i], w0[j]] + b * x[n, c, h0[i], w1[j]]
                    bot = (1 - b) * x[n, c, h1[i], w0[j]] + b * x[n, c, h1[i], w1[j]]
                    out[n, c, i, j] = (1 - a) * top + a * bot
