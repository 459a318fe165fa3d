"""Bit-plane partial sums of integer crossbar cells: the ADC path of :mod:`hwsim.imc.xbar` by popcounts.

For integer cell levels ``W[k, q] = Σ_b 2^b·W_b[k, q]`` (``W_b`` the b-th bit plane) and a DAC step's levels
``X[k] = Σ_a 2^a·X_a[k]`` (``X_a`` the a-th input bit of the step), the bit-line partial sum is

    p[q] = Σ_k X[k]·W[k, q] = Σ_a Σ_b 2^(a+b) · popcount(X_a & W_b[:, q])

with the rows of a split packed 64 to a word (row r -> bit r % 64 of word r // 64). Integer arithmetic, so
``p`` is the exact partial sum, equal bit for bit to the row additions of :func:`hwsim.imc.xbar.split_adc`; the
ADC conversion and shift-and-add that follow are the same. Work per (pixel, step): ``d·B·⌈rows/64⌉`` vector
popcounts over the pairs (B = bits of the largest cell, d = dac_bits) instead of one row addition per active row,
and no per-step compaction of the active rows.

Packing: 8 rows' bytes form one uint64 ``g`` (row 8i + t in byte t); ``((g >> a) & 0x0101…01)·0x0102040810204080 >> 56``
gathers bit a of the 8 bytes into one byte, row 8i + t at bit t (the products' cross terms land below bit 56 or
beyond bit 63, so no carry reaches the result byte). The packed planes are built in uint64 arrays only (reading a
byte array through a uint64 view let the compiler reorder the loads before the stores). Tests compare every
result with the row-add kernel. Integer cells are never negative (a reference column needs a finite on/off ratio,
so its splits are analog: :mod:`hwsim.imc._analog`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from hwsim.imc import xbar as xb

__all__ = ["pack_planes", "split_adc_bits"]

_LOW_BITS = np.uint64(0x0101010101010101)
_GATHER = np.uint64(0x0102040810204080)
PIXEL_BLOCK = 64  # pixels per parallel work item
SUB = 16  # pixels whose inputs are packed together (a long vectorised packing loop)


@intrinsic
def _ctpop(typingctx, x):
    """Number of set bits of a uint64 (llvm.ctpop: vectorised to vpopcntq where the CPU has it)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(x), codegen


def pack_planes(levels: np.ndarray, nbits: int, min_words: int = 1) -> np.ndarray:
    """Integer levels [rows, Q] (0 <= level < 2^nbits) -> bit planes [nbits, max(⌈rows/64⌉, min_words), Q] uint64
    (module docstring; words beyond the rows are 0)."""
    rows, q = levels.shape
    nw = max(min_words, -(-rows // 64))
    lv = np.zeros((nw * 64, q), dtype=np.int64)
    lv[:rows] = levels
    out = np.zeros((nbits, nw, q), dtype=np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    for b in range(nbits):
        bit = ((lv >> b) & 1).astype(np.uint64).reshape(nw, 64, q)
        out[b] = (bit * weights[None, :, None]).sum(axis=1, dtype=np.uint64)
    return out


@njit(cache=True)
def _gather_words(xp, img, b0, off, k0, rows, sh, nw, words, col):
    """Byte ``(x >> sh) & 255`` of one pixel's inputs over the split's rows, 8 rows to a uint64 (row 8g + t at
    byte t), word g at words[g % 8, col + g // 8]; the 8·nw words cover 64·nw rows, those beyond ``rows`` are 0."""
    xr = xp[img]
    full = rows // 8
    for g in range(full):
        o = off[k0 + 8 * g:k0 + 8 * g + 8]
        acc = np.uint64(0)
        for t in range(8):
            acc |= np.uint64((np.int64(xr[b0 + o[t]]) >> sh) & 255) << np.uint64(8 * t)
        words[g & 7, col + (g >> 3)] = acc
    for g in range(full, 8 * nw):
        acc = np.uint64(0)
        for t in range(max(0, min(8, rows - 8 * g))):
            acc |= np.uint64((np.int64(xr[b0 + off[k0 + 8 * g + t]]) >> sh) & 255) << np.uint64(8 * t)
        words[g & 7, col + (g >> 3)] = acc


@njit(cache=True)
def _input_planes(xp, base, off, n_pix, m, nm, k0, rows, nbits, words, xw):
    """Bit planes of the inputs of pixels m .. m + nm − 1 over the split's rows: xw[a, i·nw + w] (uint64) holds
    bit a of rows 64·w .. 64·w + 63 of pixel m + i. words [8, SUB·nw] uint64 is scratch (:func:`_gather_words`).
    For each bit a and byte slot t the loop over the batch's words is long and contiguous (vectorised)."""
    nw = xw.shape[1] // SUB
    ncol = nm * nw
    for byte in range((nbits + 7) // 8):
        sh = 8 * byte
        for i in range(nm):
            _gather_words(xp, (m + i) // n_pix, base[(m + i) % n_pix], off, k0, rows, sh, nw, words, i * nw)
        for a in range(min(8, nbits - sh)):
            sa = np.uint64(a)
            out = xw[sh + a]
            for c in range(ncol):
                out[c] = 0
            for t in range(8):
                st = np.uint64(8 * t)
                wt = words[t]
                for c in range(ncol):
                    out[c] |= (((wt[c] >> sa) & _LOW_BITS) * _GATHER >> np.uint64(56)) << st


@njit(cache=True)
def _combos(xw, j, d, cb, xs, rs, ss):
    """The non-zero (input word, plane row, shift) terms of step j, padded with zero words to a multiple of 4:
    xs[t] the input bit word, rs[t] the row of the planes [B·nw, Q] it meets, ss[t] = a + b. Returns the count."""
    nw = xw.shape[1]
    n = 0
    for a in range(d):
        for w in range(nw):
            x = xw[j * d + a, w]
            if x == 0:
                continue
            for b in range(cb):
                xs[n] = x
                rs[n] = b * nw + w
                ss[n] = a + b
                n += 1
    while n % 4:
        xs[n] = np.uint64(0)
        rs[n] = 0
        ss[n] = 0
        n += 1
    return n


@njit(cache=True)
def _step_sums(planes, xs, rs, ss, n, p):
    """p[q] = Σ_t popcount(xs[t] & planes[rs[t], q])·2^ss[t], four terms per pass over q (exact int64)."""
    p[:] = 0
    for t in range(0, n, 4):
        x0, x1, x2, x3 = xs[t], xs[t + 1], xs[t + 2], xs[t + 3]
        s0, s1, s2, s3 = ss[t], ss[t + 1], ss[t + 2], ss[t + 3]
        w0, w1, w2, w3 = planes[rs[t]], planes[rs[t + 1]], planes[rs[t + 2]], planes[rs[t + 3]]
        for q in range(p.shape[0]):
            p[q] += (((_ctpop(x0 & w0[q]) << s0) + (_ctpop(x1 & w1[q]) << s1))
                     + ((_ctpop(x2 & w2[q]) << s2) + (_ctpop(x3 & w3[q]) << s3)))


@njit(cache=True)
def _step_clip(planes, xs, rs, ss, n, top, sh, acci):
    """CLIP at LSB 1, fused: acci[q] += (min(p, top) − p)·2^sh with p from four terms (n == 4) in registers."""
    x0, x1, x2, x3 = xs[0], xs[1], xs[2], xs[3]
    s0, s1, s2, s3 = ss[0], ss[1], ss[2], ss[3]
    w0, w1, w2, w3 = planes[rs[0]], planes[rs[1]], planes[rs[2]], planes[rs[3]]
    for q in range(acci.shape[0]):
        v = (((_ctpop(x0 & w0[q]) << s0) + (_ctpop(x1 & w1[q]) << s1))
             + ((_ctpop(x2 & w2[q]) << s2) + (_ctpop(x3 & w3[q]) << s3)))
        acci[q] += (min(v, top) - v) << sh


@njit(cache=True)
def _step_clip22(x0, x1, w00, w01, w10, w11, top, sh, acci):
    """:func:`_step_clip` for 1-bit DAC steps, 2 bit planes and 2 words (2-bit cells, <= 128 rows: the common
    case), one shift per pair: p = pc(x0 & W0,0) + pc(x1 & W0,1) + 2·(pc(x0 & W1,0) + pc(x1 & W1,1))."""
    for q in range(acci.shape[0]):
        v = ((_ctpop(x0 & w00[q]) + _ctpop(x1 & w01[q]))
             + ((_ctpop(x0 & w10[q]) + _ctpop(x1 & w11[q])) << 1))
        acci[q] += (min(v, top) - v) << sh


@njit(cache=True)
def _level_sum(xw, j, d):
    s = 0
    for a in range(d):
        for w in range(xw.shape[1]):
            s += _ctpop(xw[j * d + a, w]) << a
    return s


@njit(cache=True)
def _clip_correction(p, top, sh, acci):
    """acci[q] += (min(p, top) − p)·2^sh: CLIP at LSB 1 with the exact sum already in the GEMM (p >= 0)."""
    for q in range(p.shape[0]):
        v = p[q]
        acci[q] += (min(v, top) - v) << sh


@njit(cache=True)
def _convert(p, z, zs, inv_lsb, lsb, top, mode, thr, wj, accq):
    """accq[q] += wj·(code·lsb − p): the converters of :mod:`hwsim.imc.xbar`, ADC_RINT (mode 1) or ADC_TABLE
    (mode 2), with ``lin = 1`` (``1.0·p`` is exact: the same bits)."""
    if mode == 1:
        xb._convert_rint(p, z, zs, inv_lsb, lsb, top, 1.0, wj, accq)
    else:
        xb._convert_table(p, z, zs, inv_lsb, lsb, top, thr, 1.0, wj, accq)


@njit(cache=True, parallel=True)
def split_adc_bits(xp, base, off, m0, m1, k0, rows, planes, jn, d, colw, colout, lsb, top, mode, thr, skip_sum,
                   noise, zs, acc):
    """:func:`hwsim.imc.xbar.split_adc` for an integer split with ``lin = 1`` (its exact part in the GEMM), the
    partial sums from the bit planes ``planes`` [B, ⌈rows/64⌉, Q] uint64 of its cells (:func:`pack_planes`);
    same arguments otherwise, same result bit for bit. mode 0 (CLIP, LSB 1) accumulates in int64 (exact)."""
    n_pix = base.shape[0]
    cb, nw, q_n = planes.shape
    p2 = planes.reshape(cb * nw, q_n)
    fixed22 = mode == 0 and d == 1 and cb == 2 and nw == 2
    w00, w01, w10, w11 = p2[0], p2[1], p2[2 % (cb * nw)], p2[3 % (cb * nw)]
    nbits = jn * d
    nb = (m1 - m0 + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    inv_lsb = 1.0 / lsb
    itop = np.int64(top)
    has_noise = noise.shape[0] > 0
    for blk in prange(nb):
        words = np.zeros((8, SUB * nw), dtype=np.uint64)
        xall = np.zeros((nbits, SUB * nw), dtype=np.uint64)
        p = np.empty(q_n, dtype=np.int64)
        acci = np.empty(q_n, dtype=np.int64)
        accf = np.empty(q_n, dtype=np.float64)
        z0 = np.zeros(q_n, dtype=np.float32)
        xs = np.zeros(d * nw * cb + 4, dtype=np.uint64)
        rs = np.zeros(d * nw * cb + 4, dtype=np.int64)
        ss = np.zeros(d * nw * cb + 4, dtype=np.int64)
        end = min(m1, m0 + (blk + 1) * PIXEL_BLOCK)
        for ms in range(m0 + blk * PIXEL_BLOCK, end, SUB):
            nm = min(SUB, end - ms)
            _input_planes(xp, base, off, n_pix, ms, nm, k0, rows, nbits, words, xall)
            for i in range(nm):
                m = ms + i
                xw = xall[:, i * nw:(i + 1) * nw]
                acci[:] = 0
                accf[:] = 0.0
                touched = False
                for j in range(jn):
                    if fixed22:  # inline: the step's two words, its level sum, the fused popcounts
                        x0, x1 = xall[j, 2 * i], xall[j, 2 * i + 1]
                        if _ctpop(x0) + _ctpop(x1) <= skip_sum:
                            continue
                        touched = True
                        _step_clip22(x0, x1, w00, w01, w10, w11, itop, j, acci)
                        continue
                    if _level_sum(xw, j, d) <= skip_sum:
                        continue
                    touched = True
                    n = _combos(xw, j, d, cb, xs, rs, ss)
                    if mode == 0 and n == 4:
                        _step_clip(p2, xs, rs, ss, n, itop, j * d, acci)
                        continue
                    _step_sums(p2, xs, rs, ss, n, p)
                    if mode == 0:
                        _clip_correction(p, itop, j * d, acci)
                    else:
                        z = noise[j, m - m0] if has_noise else z0
                        _convert(p, z, zs if has_noise else 0.0, inv_lsb, lsb, top, mode, thr, float(1 << (j * d)),
                                 accf)
                if touched:
                    if mode == 0:
                        for q in range(q_n):
                            acc[m, colout[q]] += colw[q] * np.float64(acci[q])
                    else:
                        for q in range(q_n):
                            acc[m, colout[q]] += colw[q] * accf[q]
