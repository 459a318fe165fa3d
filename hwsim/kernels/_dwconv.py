"""The fused 3x3 and 5x5 depthwise convolutions (dilation 1, stride <= 2: MobileNet's and EfficientNet's
depthwise layers; the generic depthwise loop ran 5x5 at 0.15-0.73x torch: docs/targets/kernels.md, "Tile choices").

Split out of :mod:`hwsim.kernels._conv`, which dispatches to :func:`depthwise3x3` (and re-exports it): each channel
is filled into its ``stride_h * stride_w`` stride phases once (zero padding included), then the nine taps are
accumulated over contiguous rows of those phases, so the inner loop is a unit-stride vector FMA.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from hwsim.kernels._rowcopy import copy_rows

__all__ = ["depthwise3x3"]


@njit(cache=True, inline="always")
def _dw_fill(xc, buf, sh, sw, ph, pw, hq, wq):
    """One channel ``xc`` (H, W) into its ``sh*sw`` stride phases (``sw`` 1 or 2)
    ``buf[(rh*sw + rw)*hq*wq + i*wq + m] = xpad[i*sh + rh, m*sw + rw]``. Border positions are not
    written (the caller zeroed them once: they are the same for every channel). With ``sw == 2``
    input columns ``j, j+1`` (``j + pw`` even) go to phases 0 and 1 in one pass, which LLVM
    vectorises (a lone stride-2 read does not)."""
    h, w = xc.shape
    plane = hq * wq
    j0 = pw % 2  # first column that lands in column phase 0
    npair = (w - j0) // 2
    for rh in range(sh):
        for i in range(hq):
            hi = i * sh + rh - ph
            if hi < 0 or hi >= h:
                continue
            d0 = np.uint64(rh * sw * plane + i * wq)
            if sw == 1:
                for j in range(np.uint64(w)):
                    buf[d0 + np.uint64(pw) + j] = xc[hi, j]
                continue
            d1 = d0 + np.uint64(plane)
            e0 = np.uint64((j0 + pw) // 2)
            for t in range(np.uint64(npair)):
                buf[d0 + e0 + t] = xc[hi, np.uint64(j0) + np.uint64(2) * t]
                buf[d1 + e0 + t] = xc[hi, np.uint64(j0 + 1) + np.uint64(2) * t]
            if j0 == 1:
                buf[d1 + np.uint64(pw // 2)] = xc[hi, 0]
            if (w - j0) % 2:
                buf[d0 + np.uint64((w - 1 + pw) // 2)] = xc[hi, w - 1]


@njit(cache=True, inline="always")
def _store(tile, oc, bv, oh_n, ow_n, wq):
    """One channel's accumulated rows (``tile``, rows of ``wq`` phase columns) plus bias into its output
    map: masked vector copies of the ``ow_n`` valid columns of each row (``_rowcopy``; was a gather over
    the map below 16 columns: 960 channels at 7x7 75 -> 52 us, 576 at 14x14 87 -> 61 us, 5x5 1152 at
    7x7 146 -> 115 us. The same masked copies for the fill were slower at 7x7: the taps' loads then
    straddle recent masked stores, which cannot be forwarded)."""
    copy_rows(tile, 0, wq, oc, 0, ow_n, oh_n, ow_n, bv)


@njit(cache=True)
def dw3x3(x, w, bias, has_bias, out, sh, sw, ph, pw, hq, wq, buf, tile, c0, c1):
    """Depthwise 3x3 (dilation 1) of channels ``[c0, c1)`` of every image: fill the channel's stride
    phases, then ``tile[q] = sum_t w[c, t] * buf[off_t + q]`` over flat phase positions
    ``q = oh*wq + ow`` with all nine taps of a vector in registers (9 loads, 1 store; summed in tap
    order like ``_task_dw``), then copy the OW valid columns of each row (+ bias) out.
    Tap ``t = (a, b)`` reads phase ``(a % sh, b % sw)`` at in-phase offset ``(a // sh, b // sw)``:
    ``off_t = ((a % sh)*sw + b % sw)*hq*wq + (a // sh)*wq + b // sw``.
    ``buf`` is zero outside the phases' interiors; ``tile`` holds ``nq`` floats."""
    oh_n, ow_n = out.shape[2], out.shape[3]
    nq = np.uint64((oh_n * wq + 15) // 16 * 16)
    off = np.empty(9, np.uint64)
    for t in range(9):
        a, b = t // 3, t % 3
        off[t] = ((a % sh) * sw + b % sw) * hq * wq + (a // sh) * wq + b // sw
    o0, o1, o2, o3, o4, o5, o6, o7, o8 = off[0], off[1], off[2], off[3], off[4], off[5], off[6], off[7], off[8]
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _dw_fill(x[n, c], buf, sh, sw, ph, pw, hq, wq)
            a0, a1, a2, a3, a4 = w[c, 0, 0, 0], w[c, 0, 0, 1], w[c, 0, 0, 2], w[c, 0, 1, 0], w[c, 0, 1, 1]
            a5, a6, a7, a8 = w[c, 0, 1, 2], w[c, 0, 2, 0], w[c, 0, 2, 1], w[c, 0, 2, 2]
            for q in range(nq):
                acc = a0 * buf[o0 + q]
                acc += a1 * buf[o1 + q]
                acc += a2 * buf[o2 + q]
                acc += a3 * buf[o3 + q]
                acc += a4 * buf[o4 + q]
                acc += a5 * buf[o5 + q]
                acc += a6 * buf[o6 + q]
                acc += a7 * buf[o7 + q]
                acc += a8 * buf[o8 + q]
                tile[q] = acc
            _store(tile, out[n, c].reshape(-1), bias[c] if has_bias else bias[0], oh_n, ow_n, wq)


@njit(cache=True)
def dw5x5(x, w, bias, has_bias, out, sh, sw, ph, pw, hq, wq, buf, tile, c0, c1):
    """:func:`dw3x3` for 5x5 kernels (EfficientNet / MobileNetV3 depthwise layers): the 25 taps of a vector
    summed in registers in tap order (offsets in locals, the weights read as broadcast operands)."""
    oh_n, ow_n = out.shape[2], out.shape[3]
    nq = np.uint64((oh_n * wq + 15) // 16 * 16)
    off = np.empty(25, np.uint64)
    for t in range(25):
        a, b = t // 5, t % 5
        off[t] = ((a % sh) * sw + b % sw) * hq * wq + (a // sh) * wq + b // sw
    o0, o1, o2, o3, o4 = off[0], off[1], off[2], off[3], off[4]
    o5, o6, o7, o8, o9 = off[5], off[6], off[7], off[8], off[9]
    o10, o11, o12, o13, o14 = off[10], off[11], off[12], off[13], off[14]
    o15, o16, o17, o18, o19 = off[15], off[16], off[17], off[18], off[19]
    o20, o21, o22, o23, o24 = off[20], off[21], off[22], off[23], off[24]
    for n in range(x.shape[0]):
        for c in range(c0, c1):
            _dw_fill(x[n, c], buf, sh, sw, ph, pw, hq, wq)
            k = w[c, 0].reshape(-1)
            for q in range(nq):
                acc = k[0] * buf[o0 + q]
                acc += k[1] * buf[o1 + q]
                acc += k[2] * buf[o2 + q]
                acc += k[3] * buf[o3 + q]
                acc += k[4] * buf[o4 + q]
                acc += k[5] * buf[o5 + q]
                acc += k[6] * buf[o6 + q]
                acc += k[7] * buf[o7 + q]
                acc += k[8] * buf[o8 + q]
                acc += k[9] * buf[o9 + q]
                acc += k[10] * buf[o10 + q]
                acc += k[11] * buf[o11 + q]
                acc += k[12] * buf[o12 + q]
                acc += k[13] * buf[o13 + q]
                acc += k[14] * buf[o14 + q]
                acc += k[15] * buf[o15 + q]
                acc += k[16] * buf[o16 + q]
                acc += k[17] * buf[o17 + q]
                acc += k[18] * buf[o18 + q]
                acc += k[19] * buf[o19 + q]
                acc += k[20] * buf[o20 + q]
                acc += k[21] * buf[o21 + q]
                acc += k[22] * buf[o22 + q]
                acc += k[23] * buf[o23 + q]
                acc += k[24] * buf[o24 + q]
                tile[q] = acc
            _store(tile, out[n, c].reshape(-1), bias[c] if has_bias else bias[0], oh_n, ow_n, wq)


@njit(cache=True, parallel=True)
def dw3x3_parallel(x, w, bias, has_bias, out, sh, sw, ph, pw, hq, wq, buf_size, nq, blk):
    """:func:`dw3x3` / :func:`dw5x5` (by the weights' size) with blocks of ``blk`` channels spread over
    threads (own buffers per block)."""
    c_n = x.shape[1]
    for b in prange((c_n + blk - 1) // blk):
        buf = np.zeros(buf_size, dtype=x.dtype)
        tile = np.empty(nq, dtype=x.dtype)
        c0, c1 = b * blk, min(c_n, (b + 1) * blk)
        if w.shape[2] == 5:
            dw5x5(x, w, bias, has_bias, out, sh, sw, ph, pw, hq, wq, buf, tile, c0, c1)
        else:
            dw3x3(x, w, bias, has_bias, out, sh, sw, ph, pw, hq, wq, buf, tile, c0, c1)


def depthwise3x3(x, w, b, stride, padding, parallel: bool):
    """Depthwise 3x3 or 5x5 (square, from ``w``'s shape) convolution, dilation 1 (multiplier 1):
    ``[N, C, OH, OW]``."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    if w.shape[2:] not in ((3, 3), (5, 5)):
        raise ValueError(f"fused depthwise path: kernel {w.shape[2:]} is neither 3x3 nor 5x5")
    sh, sw = stride
    ph, pw = padding
    oh, ow = (h + 2 * ph - k) // sh + 1, (wd + 2 * pw - k) // sw + 1
    hq, wq = -(-(h + 2 * ph) // sh), -(-(wd + 2 * pw) // sw)
    nq = -(-(oh * wq) // 16) * 16
    planes = sh * sw * hq * wq
    buf_size = 2 * planes + nq  # slack past the phases (every tap offset < planes) reads zeros
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    if parallel:
        blk = max(1, c // (4 * numba.get_num_threads()))
        dw3x3_parallel(x, w, bias, b is not None, out, sh, sw, ph, pw, hq, wq, buf_size, nq, blk)
        return out
    from hwsim.kernels._conv import _workspace  # the per-thread scratch the GEMM path uses too

    ws = _workspace("planes", buf_size + nq, x.dtype)
    ws[:buf_size] = 0
    fn = dw5x5 if k == 5 else dw3x3
    fn(x, w, bias, b is not None, out, sh, sw, ph, pw, hq, wq, ws[:buf_size], ws[buf_size:], 0, c)
    return out
