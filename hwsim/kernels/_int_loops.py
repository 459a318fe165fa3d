"""Integer convolution / GEMM loops (Numba), generic over the accumulator dtype (int32 or int64).

The convolution loops serve operands too wide for the exact float64 path of ``int8.conv2d_int``.
They use the same stride-phase implicit GEMM as ``_conv.py`` (see its docstring for
the index algebra): the zero-point-shifted input ``x - x_zp`` is split into stride phases with zero
padding (a padded tap therefore holds ``x_zp`` before the shift and contributes nothing), and for
output channel ``o``::

    Y[o, q] = sum_k Wz[o, k] * P[boff[k] + q]         q = oh*Wq + ow on the phase grid

is accumulated over K for a block of ``QB`` flat positions at a time (the inner loop over ``q`` is
contiguous and vectorises), then scattered to NCHW. All arithmetic is in the accumulator dtype,
which the caller has chosen so that no partial sum can overflow.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

QB = 512  # flat positions per accumulator block (2 KiB of int32: stays in L1)


@njit(cache=True)
def pack_phases_int(x, zp, P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw):
    """``P[(p*C + c)*hq*wq + i*wq + j] = x[c, i*sh+rh-ph, j*sw+rw-pw] - zp`` (0 outside)."""
    c_n, h, w = x.shape
    plane = hq * wq
    for p in range(ph_rh.size):
        rh = ph_rh[p]
        rw = ph_rw[p]
        for c in range(c_n):
            base = (p * c_n + c) * plane
            for i in range(hq):
                hi = i * sh + rh - ph
                row = base + i * wq
                for j in range(wq):
                    wi = j * sw + rw - pw
                    if hi >= 0 and hi < h and wi >= 0 and wi < w:
                        P[row + j] = x[c, hi, wi] - zp
                    else:
                        P[row + j] = 0


@njit(cache=True)
def _conv_block(o, gi, qb, P, wz, boff, acc, out, mg, k, b_group, nflat, wq, oh_n, ow_n):
    """Output channel ``o`` (group ``gi``), flat positions ``[qb, qb + QB)``, into ``out[o]``."""
    qn = min(QB, nflat - qb)
    for j in range(qn):
        acc[j] = 0
    b0 = qb + gi * b_group
    for kk in range(k):
        wv = wz[o, kk]
        if wv == 0:
            continue
        src = boff[kk] + b0
        for j in range(qn):
            acc[j] += wv * P[src + j]
    base = o * oh_n * ow_n
    q = qb
    end = qb + qn
    while q < end:
        oh = q // wq
        ow = q - oh * wq
        seg_end = min(end, oh * wq + ow_n)
        dst = base + oh * ow_n + ow - q
        for j in range(q, seg_end):
            out[dst + j] = acc[j - qb]
        q = (oh + 1) * wq


@njit(cache=True)
def conv_int_serial(x, zp, wz, boff, P, out, groups, mg, cg, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw,
                    oh_n, ow_n):
    """Serial integer convolution; ``out[n]`` is flat ``O*OH*OW`` in the accumulator dtype."""
    k = wz.shape[1]
    nflat = oh_n * wq
    n_qb = (nflat + QB - 1) // QB
    b_group = cg * hq * wq
    acc = np.empty(QB, dtype=out.dtype)
    for n in range(x.shape[0]):
        pack_phases_int(x[n], zp, P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw)
        on = out[n]
        for o in range(groups * mg):
            gi = o // mg
            for t in range(n_qb):
                _conv_block(o, gi, t * QB, P, wz, boff, acc, on, mg, k, b_group, nflat, wq,
                            oh_n, ow_n)


@njit(cache=True, parallel=True)
def conv_int_parallel(x, zp, wz, boff, P, out, groups, mg, cg, sh, sw, ph, pw, hq, wq, ph_rh,
                      ph_rw, oh_n, ow_n):
    """``conv_int_serial`` with the (output channel, block) tasks spread by prange."""
    k = wz.shape[1]
    nflat = oh_n * wq
    n_qb = (nflat + QB - 1) // QB
    b_group = cg * hq * wq
    n_o = groups * mg
    for n in range(x.shape[0]):
        pack_phases_int(x[n], zp, P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw)
        on = out[n]
        for t in prange(n_o * n_qb):
            acc = np.empty(QB, dtype=out.dtype)
            o = t // n_qb
            _conv_block(o, o // mg, (t - o * n_qb) * QB, P, wz, boff, acc, on, mg, k, b_group,
                        nflat, wq, oh_n, ow_n)


@njit(cache=True)
def _dot(xa, w, n, o):
    """``sum_k xa[n, k] * w[o, k]`` in int64 (``w`` raw, any integer dtype)."""
    s = np.int64(0)
    xr = xa[n]
    wr = w[o]
    for kk in range(xr.size):
        s += np.int64(xr[kk]) * np.int64(wr[kk])
    return s


@njit(cache=True)
def gemm_int_serial(xa, w, corr, out):
    """``out[n, o] = sum_k xa[n, k] * w[o, k] - corr[n]``: with ``xa = x - x_zp``, ``w`` raw and
    ``corr[n] = w_zp * sum_k xa[n, k]`` this is ``sum (x - x_zp)(w - w_zp)`` without a widened
    copy of a large weight matrix. Exact in int64."""
    for n in range(xa.shape[0]):
        for o in range(w.shape[0]):
            out[n, o] = _dot(xa, w, n, o) - corr[n]


@njit(cache=True, parallel=True)
def gemm_int_parallel(xa, w, corr, out):
    """``gemm_int_serial`` with output elements spread by prange."""
    n_n = xa.shape[0]
    n_o = w.shape[0]
    for t in prange(n_n * n_o):
        n = t // n_o
        o = t - n * n_o
        out[n, o] = _dot(xa, w, n, o) - corr[n]
