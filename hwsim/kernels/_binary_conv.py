"""Binary convolution as an implicit xnor-popcount GEMM on channel-packed activations (no im2col).

1. **One packing pass** (:func:`pack_channels`): per group, the input bits (N, C_g, H, W) become
   ``(N, Hp, Wp, cw)`` uint64 words: the C_g channel bits of a pixel packed little-endian into
   ``cw = ceil(C_g/64)`` words (tail bits 0), the spatial border already filled with the pad bit.
   A binarised network's thresholding step could emit this layout directly.
2. **Implicit GEMM**: output position ``i = (n, oh, ow)`` is row ``i`` with base offset
   ``rbase[i] = ((n*Hp + oh*sh)*Wp + ow*sw)*cw``; K word ``t = (a, b, u)`` (tap a, b; channel word
   u) is at ``aoff[t] = (a*dh*Wp + b*dw)*cw + u``. The micro-kernel reads ``A[rbase[i] + aoff[t]]``
   (see ``_binary_microkernel``), so strides and dilations cost nothing extra. The weights are
   packed in the same (a, b, u) order; K = C_g*kh*kw valid bits, and the zero channel tails of both
   operands add no mismatches: ``dot = K - 2*popcount(x ^ w)``.
3. **Zero padding** (torch semantics, a padded tap contributes 0): the border is filled with bit 0
   (= -1), so each padded tap adds ``-w``; the exact correction
   ``corr[o, oh, ow] = sum_{padded taps (a, b)} sum_c w[o, c, a, b]`` is added afterwards to the
   border outputs only (``sum_c w = 2*popcount - C_g`` from the packed weights). Border +1 / -1
   needs none.
4. The (positions, channels) product is transposed to NCHW in L1-sized blocks (:func:`to_nchw`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.kernels import _binary_gemm as G


def out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output extent of a convolution along one axis."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@njit(cache=True)
def _pack_channels(x, xp, ph, pw, pad_bit):
    """Fill ``xp`` (N, Hp, Wp, cw) from 0/1 ``x`` (N, C, H, W): border words hold the pad bit in
    every valid channel; interior channel ``c`` is bit ``c % 64`` of word ``c // 64``. One pass over
    ``x`` per channel plane (contiguous reads, LLVM-vectorised ORs into the pixel words)."""
    n_, c_n, h, w = x.shape
    _, hp, wp, cw = xp.shape
    for u in range(cw):
        nb = min(64, c_n - 64 * u)
        border = np.uint64(0) if pad_bit == 0 else (
            np.uint64(0xFFFFFFFFFFFFFFFF) if nb == 64 else (np.uint64(1) << np.uint64(nb)) - np.uint64(1))
        for n in range(n_):
            for y in range(hp):
                inside_row = ph <= y < ph + h
                for z in range(wp):
                    xp[n, y, z, u] = np.uint64(0) if inside_row and pw <= z < pw + w else border
    flat = xp.reshape(-1)
    for n in range(n_):
        for c in range(c_n):
            u, b = c // 64, np.uint64(c % 64)
            for y in range(h):
                d = np.uint64(((n * hp + y + ph) * wp + pw) * cw + u)
                row = x[n, c, y]
                for z in range(np.uint64(w)):
                    flat[d + z * np.uint64(cw)] |= np.uint64(row[z] != 0) << b


def pack_channels(x_bits: np.ndarray, padding, pad_bit: int) -> np.ndarray:
    """(N, C, H, W) 0/1 -> (N, H+2ph, W+2pw, ceil(C/64)) uint64, border pixels = pad bit in every
    channel, channel tail bits 0."""
    n, c, h, w = x_bits.shape
    ph, pw = padding
    xp = np.empty((n, h + 2 * ph, w + 2 * pw, (c + 63) // 64), dtype=np.uint64)
    _pack_channels(np.ascontiguousarray(x_bits), xp, ph, pw, int(pad_bit))
    return xp


def pack_weights(w_pm1: np.ndarray) -> np.ndarray:
    """(O, C_g, kh, kw) ±1 -> (O, kh*kw*cw) uint64 in the (tap a, tap b, channel word) order."""
    o, c, kh, kw = w_pm1.shape
    cw = (c + 63) // 64
    buf = np.zeros((o, kh, kw, cw * 64), dtype=np.uint8)
    buf[..., :c] = w_pm1.transpose(0, 2, 3, 1) > 0
    return np.ascontiguousarray(np.packbits(buf, axis=-1, bitorder="little").view("<u8").reshape(o, -1))


@njit(cache=True)
def _offsets(n, oh, ow, hp, wp, cw, sh, sw, kh, kw, dh, dw, min_rows):
    m = n * oh * ow
    rbase = np.empty(max(m, min_rows), np.int64)
    i = 0
    for b in range(n):
        for y in range(oh):
            for x in range(ow):
                rbase[i] = ((b * hp + y * sh) * wp + x * sw) * cw
                i += 1
    rbase[m:] = rbase[m - 1]
    aoff = np.empty(kh * kw * cw, np.int64)
    t = 0
    for a in range(kh):
        for c in range(kw):
            for u in range(cw):
                aoff[t] = (a * dh * wp + c * dw) * cw + u
                t += 1
    return rbase, aoff


def offsets(n: int, out_hw, padded_hw, cw: int, kernel, stride, dilation):
    """(``rbase``, ``aoff``): the offset of every output position (n, oh, ow) in the packed input,
    at least MR entries (the last repeated), and of every K word (tap a, tap b, channel word u)."""
    return _offsets(n, *out_hw, *padded_hw, cw, *stride, *kernel, *dilation, G.MR)


@njit(cache=True)
def _tap_sums(wq, ntaps, cg):
    """``sum_c w`` per (output channel, tap) from packed weights: ``2*popcount - C_g`` (SWAR popcount)."""
    o_n = wq.shape[0]
    cw = wq.shape[1] // ntaps
    out = np.empty((o_n, ntaps), np.int64)
    for o in range(o_n):
        for t in range(ntaps):
            cnt = 0
            for u in range(cw):
                v = wq[o, t * cw + u]
                v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
                v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
                v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
                cnt += np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))
            out[o, t] = 2 * cnt - cg
    return out


@njit(cache=True)
def _add_border_correction(res, col0, wsum, row_in, col_in):
    """``res[n, col0 + o, y, x] += sum of wsum[o, a*kw + b]`` over the taps (a, b) outside the input
    (``row_in[a, y]`` and ``col_in[b, x]`` false); positions whose taps are all inside are skipped."""
    kh, oh = row_in.shape
    kw, ow = col_in.shape
    taps = np.empty(kh * kw, np.int64)
    col_border = np.zeros(ow, np.bool_)
    for x in range(ow):
        for b in range(kw):
            col_border[x] |= not col_in[b, x]
    for y in range(oh):
        row_border = False
        for a in range(kh):
            row_border |= not row_in[a, y]
        for x in range(ow):
            if not (row_border or col_border[x]):
                continue
            nt = 0
            for a in range(kh):
                for b in range(kw):
                    if not (row_in[a, y] and col_in[b, x]):
                        taps[nt] = a * kw + b
                        nt += 1
            if nt == 0:
                continue
            for o in range(wsum.shape[0]):
                s = 0
                for i in range(nt):
                    s += wsum[o, taps[i]]
                for n in range(res.shape[0]):
                    res[n, col0 + o, y, x] += s


@njit(cache=True)
def to_nchw(c, res, col0):
    """``res[n, col0 + o, y, x] = c[(n*OH + y)*OW + x, o]``: the (positions, channels) GEMM output
    into NCHW, in blocks of 16 positions x all channels (L1-resident), uint64 flat indices (no
    negative-index checks)."""
    n_, c_n, oh, ow = res.shape
    npos = oh * ow
    og = c.shape[1]
    cf = c.reshape(-1)
    rf = res.reshape(-1)
    u_og = np.uint64(og)
    for n in range(n_):
        for p0 in range(0, npos, 16):
            p1 = min(npos, p0 + 16)
            src0 = np.uint64((n * npos + p0) * og)
            for o in range(np.uint64(og)):
                d = np.uint64((n * c_n + col0) * npos + p0) + o * np.uint64(npos)
                for p in range(np.uint64(p1 - p0)):
                    rf[d + p] = cf[src0 + p * u_og + o]


def add_zero_pad_correction(res: np.ndarray, col0: int, wq: np.ndarray, cg: int, kernel, h: int, w: int,
                            stride, padding, dilation) -> None:
    """Add to ``res`` (N, O, OH, OW) int32, channels ``col0 ..``, the exact zero-padding correction
    ``sum_c w`` over the taps that fall on the border (see step 3), from the packed weights ``wq``
    (O_g, kh*kw*cw). Only border outputs are touched (O(O_g x border positions x taps))."""
    kh, kw = kernel
    _, _, oh, ow = res.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    rows = np.arange(oh)[None, :] * sh - ph + np.arange(kh)[:, None] * dh  # (kh, OH) input row of each tap
    cols = np.arange(ow)[None, :] * sw - pw + np.arange(kw)[:, None] * dw  # (kw, OW)
    wsum = _tap_sums(np.ascontiguousarray(wq), kh * kw, cg)
    _add_border_correction(res, col0, wsum, (rows >= 0) & (rows < h), (cols >= 0) & (cols < w))


def conv_group(xp: np.ndarray, wq: np.ndarray, k: int, out_hw, kernel, stride, dilation,
               parallel: bool = False) -> np.ndarray:
    """One group: packed input ``xp`` (N, Hp, Wp, cw), packed weights ``wq`` (O_g, kh*kw*cw) ->
    int32 (N*OH*OW, O_g) dot products (border taps counted with the pad bit)."""
    n, hp, wp, cw = xp.shape
    oh, ow = out_hw
    og = wq.shape[0]
    rbase, aoff = offsets(n, (oh, ow), (hp, wp), cw, kernel, stride, dilation)
    panels, starts = G.pack_panels(np.ascontiguousarray(G.pad_rows(wq, G.NP)))
    m, nc = rbase.size, max(og, G.NP)
    c = np.empty((m, nc), dtype=np.int32)
    run = G.drive_parallel if parallel else G.drive
    run(xp.reshape(-1), rbase, m, aoff, panels, starts, aoff.size, c.reshape(-1), nc, int(k))
    return c[:n * oh * ow, :og]


def conv_group_nchw(res: np.ndarray, col0: int, xp: np.ndarray, wq: np.ndarray, k: int, kernel, stride,
                    dilation, parallel: bool = False) -> None:
    """:func:`conv_group` written into channels ``col0 ..`` of ``res`` (N, O, OH, OW) int32."""
    c = conv_group(xp, wq, k, res.shape[2:], kernel, stride, dilation, parallel)
    to_nchw(c if c.flags.c_contiguous else np.ascontiguousarray(c), res, col0)
