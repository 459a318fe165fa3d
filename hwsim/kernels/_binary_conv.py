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
   ``corr[o, oh, ow] = sum_{padded taps (a, b)} sum_c w[o, c, a, b]`` is added to the border
   outputs only. Output positions fall into a few *classes* (which taps are outside: interior,
   4 edges, 4 corners for 3x3 / pad 1); the table ``corr[class, o]`` comes from the per-tap channel
   sums (``sum_c w = 2*popcount - C_g``), computed once per weights and geometry. Border +1 / -1
   needs none.
4. **Output**: on AVX-512 hosts with at least ``NCHW_NP`` (16) channels per group, the 8-row tile
   of ``_binary_microkernel.make_xnor_microkernel_nchw`` adds ``corr[class(row), o]`` and stores
   NCHW directly (8x8 register transposition: 8 consecutive positions per channel), so steps 3 and
   4 cost no pass of their own. Otherwise the (positions, channels) product is corrected on its
   border rows and transposed to NCHW in L1-sized blocks (:func:`to_nchw`).

One-byte inputs (uint8, int8, bool) are packed by the LLVM-IR kernel of ``_binary_pack`` (64 pixels x
64 channels per call, straight into the padded layout when rows are a multiple of 8 pixels; Numba's
cache of this file's functions is keyed on this file only: touch it after editing ``_binary_pack``).

Weights packed once (:func:`pack_conv_weights`, what a network does with its layers) leave per call
the activation pass (1) and the GEMM (2, with 3 and 4 in its epilogue); geometry-only arrays (row
offsets, classes) are cached per shape.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from hwsim.cache import on_clear
from hwsim.kernels import _binary_gemm as G
from hwsim.kernels._binary_pack import PIX as _PIX
from hwsim.kernels._binary_pack import make_pack64

_PACK64 = make_pack64(False)
_PACK64_MASKED = make_pack64(True)


def out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output extent of a convolution along one axis."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@njit(cache=True)
def _word_plane(xr, n, u, nb, acc, byte):
    """``acc[p]`` = the word of channels ``64u .. 64u + nb`` of pixel ``p`` of image ``n`` (any numeric
    dtype, nonzero = 1): 8 channel planes at a time ORed into a byte plane (64 byte lanes per AVX-512
    op), then the byte planes into bits ``g .. g+7`` of the words."""
    hw = xr.shape[2]
    acc[:] = 0
    for g in range(0, nb, 8):
        byte[:] = 0
        for b in range(min(8, nb - g)):
            plane = xr[n, 64 * u + g + b]
            m = np.uint8(1 << b)
            for p in range(hw):
                byte[p] |= m if plane[p] != 0 else np.uint8(0)
        sh = np.uint64(g)
        for p in range(hw):
            acc[p] |= np.uint64(byte[p]) << sh


@njit(cache=True)
def _store_padded(acc, xp, n, u, ph, pw, h, w, border, interior):
    """Border words of ``xp[n, :, :, u]`` set to ``border`` and, when ``interior``, the word plane
    ``acc`` (H*W) copied inside (flat unsigned indices: no negative-index checks, so the row copies
    vectorise)."""
    hp, wp, cw = xp.shape[1], xp.shape[2], xp.shape[3]
    xf = xp.reshape(-1)
    ucw, uw = np.uint64(cw), np.uint64(w)
    for y in range(hp):
        row = np.uint64(((n * hp + y) * wp) * cw + u)
        if y < ph or y >= ph + h:
            for z in range(np.uint64(wp)):
                xf[row + z * ucw] = border
            continue
        for z in range(np.uint64(pw)):
            xf[row + z * ucw] = border
            xf[row + (np.uint64(pw + w) + z) * ucw] = border
        if not interior:
            continue
        src = np.uint64((y - ph) * w)
        dst = row + np.uint64(pw * cw)
        if cw == 1:  # contiguous row copy
            for z in range(uw):
                xf[dst + z] = acc[src + z]
        else:
            for z in range(uw):
                xf[dst + z * ucw] = acc[src + z]


@njit(cache=True, inline="always")
def _border_word(nb, pad_bit):
    if pad_bit == 0:
        return np.uint64(0)
    return np.uint64(0xFFFFFFFFFFFFFFFF) if nb == 64 else (np.uint64(1) << np.uint64(nb)) - np.uint64(1)


@njit(cache=True)
def _pack_channels(x, xp, ph, pw, pad_bit):
    """Fill ``xp`` (N, Hp, Wp, cw) from 0/1 ``x`` (N, C, H, W), any numeric dtype, in one pass over
    ``x``: channel ``c`` is bit ``c % 64`` of word ``c // 64``; border words hold the pad bit in every
    valid channel. Per (image, channel word) one contiguous plane of H*W words (:func:`_word_plane`:
    contiguous reads, long LLVM-vectorised loops even for 7x7 maps) is stored into the padded layout."""
    n_, c_n, h, w = x.shape
    cw = xp.shape[3]
    xr = x.reshape(n_, c_n, h * w)
    acc = np.empty(h * w, np.uint64)
    byte = np.empty(h * w, np.uint8)
    for u in range(cw):
        nb = min(64, c_n - 64 * u)
        for n in range(n_):
            _word_plane(xr, n, u, nb, acc, byte)
            _store_padded(acc, xp, n, u, ph, pw, h, w, _border_word(nb, pad_bit), True)


@njit(cache=True)
def _pack_channels_bytes(x, xp, ph, pw, pad_bit):
    """:func:`_pack_channels` for one-byte inputs (uint8 / int8 / bool viewed as uint8): whole
    64-channel words take the LLVM-IR ``pack64`` (64 pixels x 64 channels per call; the last block of
    a map overlaps the previous one, maps under 64 pixels use masked loads), written straight into
    the padded layout when there is one channel word and rows are a multiple of 8 pixels (8 words
    per store never straddle a row), else into a word plane copied inside the border; channel tails
    take the generic word plane."""
    n_, c_n, h, w = x.shape
    hp, wp, cw = xp.shape[1], xp.shape[2], xp.shape[3]
    hw = h * w
    xr = x.reshape(n_, c_n, hw)
    xf, of = x.reshape(-1), xp.reshape(-1)
    acc = np.empty(max(hw, _PIX), np.uint64)
    byte = np.empty(hw if c_n % 64 else 0, np.uint8)  # only the generic word plane uses it
    direct = cw == 1 and w % 8 == 0 and hw >= _PIX
    dst = np.arange(0, max(hw, _PIX), 8)  # where the words of pixels 8g .. 8g+7 go: a word plane
    for u in range(cw):
        nb = min(64, c_n - 64 * u)
        for n in range(n_):
            base = (n * c_n + 64 * u) * hw
            if direct:  # ... or the padded rows of image n (one channel word)
                for y in range(h):
                    for zg in range(w // 8):
                        dst[y * (w // 8) + zg] = (n * hp + ph + y) * wp + pw + 8 * zg
            if nb < 64:
                _word_plane(xr, n, u, nb, acc, byte)
            elif hw < _PIX:
                _PACK64_MASKED(xf, base, hw, hw, acc, dst, 0, 0)
            else:
                for b in range((hw + _PIX - 1) // _PIX):
                    p0 = min(b * _PIX, hw - _PIX)  # a multiple of 8 whenever direct
                    if direct:
                        _PACK64(xf, base + p0, hw, _PIX, of, dst, p0 // 8, 0)
                    else:
                        _PACK64(xf, base + p0, hw, _PIX, acc, dst, 0, p0)
            _store_padded(acc, xp, n, u, ph, pw, h, w, _border_word(nb, pad_bit), not (direct and nb == 64))


def pack_channels(x_bits: np.ndarray, padding, pad_bit: int) -> np.ndarray:
    """(N, C, H, W) 0/1 (any numeric dtype, nonzero = bit 1) -> (N, H+2ph, W+2pw, ceil(C/64))
    uint64, border pixels = pad bit in every channel, channel tail bits 0. One pass."""
    n, c, h, w = x_bits.shape
    ph, pw = padding
    xp = np.empty((n, h + 2 * ph, w + 2 * pw, (c + 63) // 64), dtype=np.uint64)
    x = np.ascontiguousarray(x_bits)
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    pack = _pack_channels_bytes if x.dtype in (np.uint8, np.int8) else _pack_channels
    pack(x, xp, ph, pw, int(pad_bit))
    return xp


@njit(cache=True)
def _pack_weights(w, out):
    """``out[o, (a*kw + b)*cw + c//64]`` bit ``c % 64`` = ``w[o, c, a, b] > 0``, any numeric dtype:
    each word assembled in a register and stored once."""
    o_n, c_n, kh, kw = w.shape
    cw = (c_n + 63) // 64
    for o in range(o_n):
        for a in range(kh):
            for b in range(kw):
                for u in range(cw):
                    word = np.uint64(0)
                    for c in range(64 * u, min(c_n, 64 * u + 64)):
                        word |= np.uint64(w[o, c, a, b] > 0) << np.uint64(c - 64 * u)
                    out[o, (a * kw + b) * cw + u] = word


def pack_weights(w_pm1: np.ndarray) -> np.ndarray:
    """(O, C_g, kh, kw) ±1 (any numeric dtype, > 0 = bit 1) -> (O, kh*kw*cw) uint64 in the
    (tap a, tap b, channel word) order. One pass."""
    o, c, kh, kw = w_pm1.shape
    out = np.empty((o, kh * kw * ((c + 63) // 64)), dtype=np.uint64)
    _pack_weights(np.ascontiguousarray(w_pm1), out)
    return out


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
def _add_border_correction(c, og, wsum, row_in, col_in, n_img):
    """``c[(n*OH + y)*OW + x, o] += sum of wsum[o, a*kw + b]`` over the taps (a, b) outside the
    input (``row_in[a, y]`` and ``col_in[b, x]`` false), on the (positions, channels) GEMM output
    (contiguous over ``o``); positions whose taps are all inside are skipped."""
    kh, oh = row_in.shape
    kw, ow = col_in.shape
    s = np.empty(og, np.int32)
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
            s[:] = 0
            for a in range(kh):
                for b in range(kw):
                    if not (row_in[a, y] and col_in[b, x]):
                        for o in range(og):
                            s[o] += wsum[o, a * kw + b]
            for n in range(n_img):
                r = (n * oh + y) * ow + x
                for o in range(og):
                    c[r, o] += s[o]


@njit(cache=True)
def to_nchw(c, og, res, col0):
    """``res[n, col0 + o, y, x] = c[(n*OH + y)*OW + x, o]`` for ``o < og``: the (positions,
    channels) GEMM output (row stride ``c.shape[1]``) into NCHW, in blocks of 16 positions x all
    channels (L1-resident), uint64 flat indices (no negative-index checks)."""
    n_, c_n, oh, ow = res.shape
    npos = oh * ow
    ldc = np.uint64(c.shape[1])
    cf = c.reshape(-1)
    rf = res.reshape(-1)
    for n in range(n_):
        for p0 in range(0, npos, 16):
            p1 = min(npos, p0 + 16)
            src0 = np.uint64(n * npos + p0) * ldc
            for o in range(np.uint64(og)):
                d = np.uint64((n * c_n + col0) * npos + p0) + o * np.uint64(npos)
                for p in range(np.uint64(p1 - p0)):
                    rf[d + p] = cf[src0 + p * ldc + o]


@dataclass(frozen=True)
class PackedConvWeights:
    """±1 convolution weights packed once for :func:`binary.binary_conv2d` (a network's layer):
    per group the packed rows, their GEMM column panels and the per-tap channel sums of the
    zero-padding correction."""

    shape: tuple  # (Cout, C/groups, kh, kw) of the ±1 weights
    groups: int
    rows: tuple  # per group (Cout/groups, kh*kw*cw) uint64, (tap a, tap b, channel word) order
    panels: tuple  # per group (flat uint64 panels, int64 start columns), see _binary_gemm.pack_panels_of_width
    tap_sums: tuple  # per group (Cout/groups, kh*kw) int64: sum over channels of w per tap
    nchw: bool  # panels NCHW_NP wide for the NCHW-storing tile (AVX-512, Cout/groups >= NCHW_NP), else NP
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # padding tables per (group, geometry)


def pack_conv_weights(w_pm1: np.ndarray, groups: int = 1) -> PackedConvWeights:
    """Pack (Cout, C/groups, kh, kw) ±1 weights (any numeric dtype, > 0 = +1) once."""
    if not isinstance(w_pm1, np.ndarray) or w_pm1.ndim != 4:
        raise ValueError(f"binary conv weights must be a 4-D array, got {type(w_pm1).__name__}"
                         f"{getattr(w_pm1, 'shape', '')}")
    cout, cg, kh, kw = w_pm1.shape
    if groups < 1 or cout % groups:
        raise ValueError(f"binary conv weights {w_pm1.shape}: {cout} output channels do not split into {groups} groups")
    og = cout // groups
    rows = tuple(pack_weights(w_pm1[g * og:(g + 1) * og]) for g in range(groups))
    nchw = G.NCHW_NV is not None and og >= G.NCHW_NP
    width = G.NCHW_NP if nchw else G.NP
    panels = tuple(G.pack_panels_of_width(np.ascontiguousarray(G.pad_rows(r, width)), width) for r in rows)
    sums = tuple(_tap_sums(r, kh * kw, cg) for r in rows)
    return PackedConvWeights(tuple(int(v) for v in w_pm1.shape), int(groups), rows, panels, sums, nchw)


def _gemm(xp, panels, og: int, k: int, out_hw, kernel, stride, dilation, parallel: bool) -> np.ndarray:
    """The implicit GEMM of one group: int32 (max(N*OH*OW, MR), max(O_g, NP)), rows beyond
    N*OH*OW and columns beyond O_g are scratch."""
    n, hp, wp, cw = xp.shape
    rbase, aoff = offsets(n, out_hw, (hp, wp), cw, kernel, stride, dilation)
    flat, starts = panels
    m, nc = rbase.size, max(og, G.NP)
    c = np.empty((m, nc), dtype=np.int32)
    run = G.drive_parallel if parallel else G.drive
    run(xp.reshape(-1), rbase, m, aoff, flat, starts, aoff.size, c.reshape(-1), nc, int(k))
    return c


def conv_group(xp: np.ndarray, wq: np.ndarray, k: int, out_hw, kernel, stride, dilation,
               parallel: bool = False) -> np.ndarray:
    """One group: packed input ``xp`` (N, Hp, Wp, cw), packed weights ``wq`` (O_g, kh*kw*cw) ->
    int32 (N*OH*OW, O_g) dot products (border taps counted with the pad bit)."""
    og = wq.shape[0]
    panels = G.pack_panels(np.ascontiguousarray(G.pad_rows(wq, G.NP)))
    c = _gemm(xp, panels, og, k, out_hw, kernel, stride, dilation, parallel)
    return c[:xp.shape[0] * out_hw[0] * out_hw[1], :og]


@functools.lru_cache(maxsize=256)
def _geometry(n: int, h: int, w: int, out_hw, kernel, stride, padding, dilation, cw: int, cout: int):
    """Per output position (rows padded to NCHW_MR): offset in the packed input (``rbase``), NCHW
    offset of channel 0 (``coff``), padding class (``cls``); per K word its offset (``aoff``); and the
    (kh*kw, classes) 0/1 matrix of the taps outside the input in each class. Pure function of the
    shapes, cached (arrays read-only)."""
    (oh, ow), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = out_hw, kernel, stride, padding, dilation
    rbase, aoff = _offsets(n, oh, ow, h + 2 * ph, w + 2 * pw, cw, sh, sw, kh, kw, dh, dw, G.NCHW_MR)
    rows = np.arange(oh)[None, :] * sh - ph + np.arange(kh)[:, None] * dh  # (kh, OH) input row of each tap
    cols = np.arange(ow)[None, :] * sw - pw + np.arange(kw)[:, None] * dw  # (kw, OW)
    row_in, col_in = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    ru, ry = np.unique(row_in.T, axis=0, return_inverse=True)  # distinct row masks (kh,), index per y
    cu, cx = np.unique(col_in.T, axis=0, return_inverse=True)
    outside = ~(ru[:, None, :, None] & cu[None, :, None, :])  # (rows, cols, kh, kw)
    taps_out = outside.reshape(len(ru) * len(cu), kh * kw).T.astype(np.int64)
    npos = oh * ow
    pos = np.arange(n * npos)
    coff = np.empty(rbase.size, np.int64)
    coff[:pos.size] = (pos // npos) * cout * npos + pos % npos
    coff[pos.size:] = coff[pos.size - 1]
    cls = np.empty(rbase.size, np.int64)
    cls[:pos.size] = (ry.reshape(-1)[:, None] * len(cu) + cx.reshape(-1)[None, :]).reshape(-1)[pos % npos]
    cls[pos.size:] = cls[pos.size - 1]
    for a in (rbase, aoff, coff, cls, taps_out):
        a.flags.writeable = False
    return rbase, aoff, coff, cls, taps_out


on_clear(_geometry.cache_clear)  # hwsim.clear_caches() frees it too


def _conv_nchw(x, pk: PackedConvWeights, stride, padding, dilation, pad_value: float, parallel: bool,
               out_hw) -> np.ndarray:
    """:func:`conv_packed` on the NCHW-storing tile: the padding correction and the transposition are
    in the micro-kernel's epilogue (one table row of ``sum_c w`` per border class)."""
    n, _, h, w = x.shape
    cout, cg, kh, kw = pk.shape
    og = cout // pk.groups
    cw = (cg + 63) // 64
    rbase, aoff, coff, cls, taps_out = _geometry(n, h, w, out_hw, (kh, kw), stride, padding, dilation, cw, cout)
    res = np.empty((n, cout) + tuple(out_hw), dtype=np.int32)
    npos = out_hw[0] * out_hw[1]
    run = G.drive_nchw_parallel if parallel else G.drive_nchw
    correct = pad_value == 0 and (padding[0] or padding[1])
    for g in range(pk.groups):
        xp = pack_channels(x[:, g * cg:(g + 1) * cg] if pk.groups > 1 else x, padding, 1 if pad_value > 0 else 0)
        if correct:
            key = (g, h, w, out_hw, stride, padding, dilation)  # what taps_out depends on
            corr = pk.memo.get(key)
            if corr is None:  # (classes, og): sum_c w over the outside taps of each class
                if len(pk.memo) >= 64:  # bounded: a layer sees few input sizes
                    pk.memo.clear()
                corr = pk.memo[key] = np.ascontiguousarray((pk.tap_sums[g] @ taps_out).T.astype(np.int32))
            cl = cls
        else:
            corr, cl = np.zeros((1, og), np.int32), np.zeros(rbase.size, np.int64)
        flat, starts = pk.panels[g]
        run(xp.reshape(-1), rbase, rbase.size, aoff, flat, starts, aoff.size, res.reshape(-1),
            coff + g * og * npos if g else coff, npos, cg * kh * kw, cl, corr, og)
    return res


def conv_packed(x_bits: np.ndarray, pk: PackedConvWeights, stride, padding, dilation, pad_value: float,
                parallel: bool, out_hw) -> np.ndarray:
    """Binary convolution with packed weights: per group one packing pass of the input (border
    = pad bit), the implicit GEMM, the zero-padding correction on the GEMM's rows and one
    transposition into the int32 (N, Cout, OH, OW) result (both in the micro-kernel's epilogue
    when ``pk.nchw``)."""
    x = np.ascontiguousarray(x_bits)
    if pk.nchw:
        return _conv_nchw(x, pk, stride, padding, dilation, pad_value, parallel, out_hw)
    n, _, h, w = x_bits.shape
    cout, cg, kh, kw = pk.shape
    og = cout // pk.groups
    oh, ow = out_hw
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    res = np.empty((n, cout, oh, ow), dtype=np.int32)
    correct = pad_value == 0 and (ph or pw)
    if correct:
        rows = np.arange(oh)[None, :] * sh - ph + np.arange(kh)[:, None] * dh  # (kh, OH) input row of each tap
        cols = np.arange(ow)[None, :] * sw - pw + np.arange(kw)[:, None] * dw  # (kw, OW)
        row_in, col_in = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    for g in range(pk.groups):
        xp = pack_channels(x[:, g * cg:(g + 1) * cg] if pk.groups > 1 else x, padding, 1 if pad_value > 0 else 0)
        c = _gemm(xp, pk.panels[g], og, cg * kh * kw, out_hw, (kh, kw), stride, dilation, parallel)
        if correct:
            _add_border_correction(c, og, pk.tap_sums[g], row_in, col_in, n)
        to_nchw(c, og, res, g * og)
    return res
