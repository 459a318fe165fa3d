"""Stride-1, groups=1 integer convolution on the transposed VNNI tile (``_vnni_gemm.product_t``),
writing NCHW directly (no im2col, no output transposition).

The input of one image, made unsigned (``a``, uint8) and padded with ``pad_value``, is stored
*channel-quad planar*: word ``(ci, y, x)`` (int32) holds channels ``4ci .. 4ci+3`` of padded pixel
``(y, x)``, planes of ``Hp*Wp`` words. For flat output position ``q = y*Wp + x`` (on the padded width,
as in ``_conv.py``) and K quad ``t = (dy*kw + dx)*C4 + ci`` the activation word is at
``ci*Hp*Wp + dy*dh*Wp + dx*dw + q``: 16 consecutive positions are one vector load, and the weights
(``(O, kh, kw, Cp)`` flattened, ``Cp = 4*C4``) are broadcast one quad at a time. Columns with
``x >= OW`` are computed and dropped (``(Wp - OW) / Wp`` of the work: 2/58 on a 56x56 map with
padding 1, 2/16 on 14x14). The accumulators start at ``init[o] = -(zx + sx) * sum_k b[o, k]``, the
zero-point correction, so the tile is the final accumulator (exact in int32: see ``int8``).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

from hwsim.kernels import _vnni_gemm as vg


@njit(cache=True)
def weight_quads(b):
    """(O, C, kh, kw) int8 (C-contiguous) -> (O, kh*kw*Cp) int8: K quad ``t*C4 + ci`` holds channels
    ``4ci .. 4ci+3`` of tap ``t``, channels padded with zero weights to Cp = 4*C4."""
    o_n, c, kh, kw = b.shape
    cp = (c + 3) // 4 * 4
    taps = kh * kw
    out = np.zeros((o_n, taps * cp), np.int8)
    b3 = b.reshape(o_n, c, taps)
    for o in range(o_n):
        for t in range(taps):
            for ch in range(c):
                out[o, t * cp + ch] = b3[o, ch, t]
    return out


@njit(cache=True)
def _planar(a, pad_value, ph, pw, wp, plane, tail):
    """One image (C, H, W) uint8 -> flat uint8 of C4 planes of ``plane`` int32 words (word
    ``ci*plane + y*wp + x`` = channels ``4ci .. 4ci+3`` of padded pixel ``(y, x - pw)``, little-endian;
    pad words hold ``pad_value`` in every byte, as do the words after the last row of a plane)
    followed by ``tail`` zero words."""
    c, h, wd = a.shape
    c4 = (c + 3) // 4
    hp = h + 2 * ph
    words = np.empty(c4 * plane + tail, np.uint32)
    pv = np.uint32(pad_value) * np.uint32(0x01010101)
    for ci in range(c4):
        nq = min(4, c - 4 * ci)
        for y in range(hp):
            row = ci * plane + y * wp
            if y < ph or y >= ph + h:
                words[row:row + wp] = pv
                continue
            words[row:row + pw] = pv
            words[row + pw + wd:row + wp] = pv
            dst = row + pw
            if nq == 4:
                s0, s1, s2, s3 = a[4 * ci, y - ph], a[4 * ci + 1, y - ph], a[4 * ci + 2, y - ph], a[4 * ci + 3, y - ph]
                for x in range(wd):
                    words[dst + x] = (np.uint32(s0[x]) | (np.uint32(s1[x]) << np.uint32(8))
                                      | (np.uint32(s2[x]) << np.uint32(16)) | (np.uint32(s3[x]) << np.uint32(24)))
            else:
                for x in range(wd):
                    v = np.uint32(0)
                    for q in range(nq):
                        v |= np.uint32(a[4 * ci + q, y - ph, x]) << np.uint32(8 * q)
                    words[dst + x] = v
        words[ci * plane + hp * wp:(ci + 1) * plane] = pv
    words[c4 * plane:] = 0
    return words.view(np.uint8)


@njit(cache=True)
def _drop_columns(res, wp, out):
    """``out[o, y, x] = res[o, y*wp + x]`` for ``x < OW``: the flat product on the padded row pitch to
    NCHW (one pass; numpy's strided copy of a 256 x 14 x 14 map took 2.5x as long)."""
    no, oh, ow = out.shape
    for o in range(no):
        for y in range(oh):
            src = res[o, y * wp:y * wp + ow]
            dst = out[o, y]
            for x in range(ow):
                dst[x] = src[x]


@functools.lru_cache(maxsize=128)
def _offsets(kh: int, kw: int, dh: int, dw: int, wp: int, plane: int, c4: int, ncols: int, width: int):
    """(voff, q0, 4*q0) of :func:`conv2d_s1` for one geometry, read-only, cached (a network repeats
    its layer geometries: building them costs about 10 us a call, 3 % of a 256 x 14 x 14 layer)."""
    taps = (np.arange(kh)[:, None] * (dh * wp) + np.arange(kw)[None, :] * dw).reshape(-1, 1)
    voff = (4 * (taps + plane * np.arange(c4)[None, :])).reshape(-1).astype(np.int64)
    q0 = np.minimum(np.arange(0, ncols, width), ncols - width).astype(np.int64)
    arrays = (voff, q0, 4 * q0)
    for arr in arrays:
        arr.flags.writeable = False
    return arrays


def conv2d_s1(a: np.ndarray, pad_value: int, wpan_of, wsum: np.ndarray, kernel, padding, dilation,
              oh: int, ow: int, out: np.ndarray, parallel: bool) -> None:
    """``out[n, o, y, x] = sum (a - pad_value) * b`` over each window (int32 wrap-around, exact when
    the true sums fit int32) for ``a`` (N, C, H, W) uint8 and weights ``b`` (O, C, kh, kw) int8 given
    as ``wpan_of(rows)`` = ``row_panels(weight_quads(b), rows)`` (a function: the tile height depends
    on the map) and ``wsum = row_sums(weight_quads(b))``, stride 1; ``out`` (N, O, OH, OW) of any
    integer dtype receives the values.

    Row pitch ``wp``: ``W + pw`` where the right padding of a row can be the left padding of the next
    (``pw <= dw*(kw-1)``, so that OW <= wp: every window's columns past ``W + pw`` wrap onto the next
    row's left pad words, or onto the ``pw`` pad words after a plane's last row), else ``W + 2pw``."""
    n, c, h, wd = a.shape
    o = wsum.shape[0]
    kh, kw = kernel
    (ph, pw), (dh, dw) = padding, dilation
    c4 = (c + 3) // 4
    wp = wd + pw if pw <= dw * (kw - 1) else wd + 2 * pw
    plane = (h + 2 * ph) * wp + pw
    nflat = oh * wp
    width, rows = vg.tile_t(nflat)
    wpan = wpan_of(rows)
    ncols = max(nflat, width)
    init = (-pad_value * wsum).astype(np.int32)
    voff, q0, v0 = _offsets(kh, kw, dh, dw, wp, plane, c4, ncols, width)
    for i in range(n):
        v = _planar(a[i], pad_value, ph, pw, wp, plane, ncols)
        res = vg.product_t(v, v0, q0, voff, wpan, o, ncols, init, parallel, width)
        if out.dtype == np.int32:
            _drop_columns(res, wp, out[i])
        else:
            out[i] = res[:, :nflat].reshape(o, oh, wp)[:, :, :ow]
