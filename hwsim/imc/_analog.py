"""The ADC path of a row split by row additions (analog conductances on the 2^-F grid), batch-vectorised.

Same arithmetic as :func:`hwsim.imc.xbar.split_adc` (the functional path uses it for analog splits, ``lin = 0``:
every pair through the ADC, direct values; integer splits go to the faster popcount kernel of
:mod:`hwsim.imc._bitplane`): for every pixel and DAC step the rows with a non-zero level are summed over the
pairs (exact float32 sums on the grid, eight table rows per pass) and every sum converted. Cheaper than the
reference kernel:

- the active rows come from the inputs' bit planes (:func:`hwsim.imc._bitplane._input_planes`, packed for 16
  pixels at a time); with 1-bit steps the rows are taken in groups of 4 or 8 and each non-empty group adds one
  precomputed subset sum (:func:`_subset_sums`, built per call: 2^g − 1 row additions per group) instead of one
  row per active input: about half the additions at ResNet-20's densities;
- with 1-bit steps, float32 codes and no noise (the common case) :mod:`hwsim.imc._gather` does the same with the
  tables laid out 16 pairs to a chunk and 8-row groups added four at a time as 16-float vectors, so the table
  being read stays in L1/L2 (10-25 % less time on ResNet-20's splits than this row kernel);
- with the float32 rounding rule (``ADC_RINT32``) and ``top·(2^(J·d) − 1) < 2^24`` the shift-and-add of the codes
  ``Σ_j 2^(j·d)·code_j`` is accumulated in float32 (integers below 2^24: exact) and scaled by the power-of-two
  LSB once: the same value as the float64 sum of ``2^(j·d)·code_j·lsb`` (every term and partial sum an exact
  integer multiple of the LSB), so the result is unchanged bit for bit.

Conductances of either sign (a reference column subtracted) keep all of this exact: every subset sum is bounded by
``rows·(2^d − 1)·max|g|`` like the whole split, the 1.5·2^23 rounding is exact for ``|p/lsb| < 2^22`` of either
sign, and a negative partial sum converts to code 0.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from hwsim.imc import _bitplane as bp
from hwsim.imc import _gather as ga
from hwsim.imc import xbar as xb

__all__ = ["split_adc_rows", "codes_fit_float32", "group_bits"]


@intrinsic
def _cttz(typingctx, x):
    """Trailing zeros of a non-zero uint64 (llvm.cttz)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], context.get_constant(types.boolean, True))

    return types.int64(x), codegen


def codes_fit_float32(top: float, steps: int, dac_bits: int) -> bool:
    """True when ``Σ_j 2^(j·d)·code_j`` (codes <= top) is an integer below 2^24 (exact in float32)."""
    return top * (2.0 ** (steps * dac_bits) - 1.0) < 2.0**24


@njit(cache=True)
def _active(xw, j, d, idx, lvl):
    """Rows with a non-zero DAC level at step j (d > 1 bits per step) from the bit planes xw [bits, nw]: idx[:n],
    their levels lvl[:n]; returns (n, level sum)."""
    nw = xw.shape[1]
    n = 0
    s = 0
    for w in range(nw):
        u = xw[j * d, w]
        for a in range(1, d):
            u |= xw[j * d + a, w]
        while u != 0:
            t = _cttz(u)
            v = 0
            for a in range(d):
                v += np.int64((xw[j * d + a, w] >> np.uint64(t)) & np.uint64(1)) << a
            idx[n] = w * 64 + t
            lvl[n] = v
            s += v
            n += 1
            u &= u - np.uint64(1)
    return n, s


@njit(cache=True)
def _row_sum1(cells, idx, n, p):
    """p = Σ_t cells[idx[t], :] for 1-bit steps, eight rows per pass over p (exact grid sums: any order)."""
    q_n = p.shape[0]
    for q in range(q_n):
        p[q] = 0
    t = 0
    while t + 8 <= n:
        a, b, c, e = cells[idx[t]], cells[idx[t + 1]], cells[idx[t + 2]], cells[idx[t + 3]]
        f, g, h, k = cells[idx[t + 4]], cells[idx[t + 5]], cells[idx[t + 6]], cells[idx[t + 7]]
        for q in range(q_n):
            p[q] += ((a[q] + b[q]) + (c[q] + e[q])) + ((f[q] + g[q]) + (h[q] + k[q]))
        t += 8
    while t < n:
        a = cells[idx[t]]
        for q in range(q_n):
            p[q] += a[q]
        t += 1


@njit(cache=True)
def _subset_sums(cells, nw, gb):
    """T[2^gb·g + mask] = Σ_{t in mask} cells[gb·g + t] for every group g of gb rows (rows past the split count
    as 0): a 1-bit step's partial sums are then one addition per non-empty group instead of one per active row.
    Exact: any subset of grid values sums below 2^24 grid units like the whole split. Built in mask order, each
    entry one row addition: T[mask] = T[mask without its lowest row] + that row."""
    rows, q_n = cells.shape
    ns = 1 << gb
    t = np.zeros((nw * (64 // gb) * ns, q_n), dtype=cells.dtype)
    for g in range(nw * (64 // gb)):
        for mask in range(1, ns):
            low = mask & -mask
            r = gb * g
            while (1 << (r - gb * g)) != low:
                r += 1
            dst, src = t[ns * g + mask], t[ns * g + (mask ^ low)]
            if r < rows:
                row = cells[r]
                for q in range(q_n):
                    dst[q] = src[q] + row[q]
            else:
                for q in range(q_n):
                    dst[q] = src[q]
    return t


def group_bits(nw: int, q: int, itemsize: int) -> int:
    """Rows per subset-sum group: 8 while the table (nw·8·256 rows of q pairs) stays within 4 MB, else 4 (measured
    on ResNet-20's layers: 8 is faster up to 3 MB tables, 4 from 6 MB)."""
    return 8 if nw * 8 * 256 * q * itemsize <= 1 << 22 else 4


@njit(cache=True)
def _codes32(p, inv_lsb, top, wj, acc32):
    """acc32[q] += wj·clip(rint(p/lsb), 0, top) in float32 (1.5·2^23 rounding, as ADC_RINT32; exact integers)."""
    il = np.float32(inv_lsb)
    tp = np.float32(top)
    mg = np.float32(xb._RINT_MAGIC32)
    w = np.float32(wj)
    for q in range(p.shape[0]):
        c = (p[q] * il + mg) - mg
        acc32[q] += w * min(max(c, np.float32(0.0)), tp)


def split_adc_rows(xp, base, off, m0, m1, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, lin, skip_sum,
                   noise, zs, fast32, gb, acc):
    """:func:`hwsim.imc.xbar.split_adc` (same arguments, same result bit for bit; module docstring) plus
    ``fast32``: mode 3 with codes that fit float32 (:func:`codes_fit_float32`), and gb: rows per subset-sum group
    for 1-bit steps (4 or 8, :func:`group_bits`). The common case (1-bit steps, float32 codes, no noise, analog
    float32 cells, a table within :data:`hwsim.imc._gather.TABLE_BYTES`) runs the chunked kernel
    :func:`hwsim.imc._gather.split_adc_chunks` (same bits, its tables in L1/L2), the rest the row kernel."""
    if (d == 1 and fast32 and mode == xb.ADC_RINT32 and lin == 0.0 and skip_sum == 0 and noise.shape[0] == 0
            and cells.dtype == np.float32 and ga.fits(rows, cells.shape[1])):
        ga.split_adc_chunks(xp, base, off, m0, m1, k0, rows, cells, jn, colw, colout, lsb, top, acc)
    else:
        _split_adc_rows(xp, base, off, m0, m1, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, lin,
                        skip_sum, noise, zs, fast32, gb, acc)


@njit(cache=True, parallel=True)
def _split_adc_rows(xp, base, off, m0, m1, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, lin, skip_sum,
                    noise, zs, fast32, gb, acc):
    """The row kernel of :func:`split_adc_rows`. CLIP with ``lin = 1`` (integer cells, LSB 1) accumulates its
    corrections ``(min(p, top) − p)·2^(j·d)`` in int64 (exact)."""
    n_pix = base.shape[0]
    q_n = cells.shape[1]
    nw = max(1, (rows + 63) // 64)
    nbits = jn * d
    sub = bp.SUB
    nb = (m1 - m0 + bp.PIXEL_BLOCK - 1) // bp.PIXEL_BLOCK
    inv_lsb = 1.0 / lsb
    dmax = (1 << d) - 1
    has_noise = noise.shape[0] > 0
    table = _subset_sums(cells, nw, gb) if d == 1 else cells[:0]
    ns, gpw, gmask, ugb = 1 << gb, 64 // gb, np.uint64((1 << gb) - 1), np.uint64(gb)
    int_clip = mode == 0 and lin == 1.0
    itop = np.int64(top)
    for blk in prange(nb):
        words = np.zeros((8, sub * nw), dtype=np.uint64)
        xall = np.zeros((nbits, sub * nw), dtype=np.uint64)
        p = np.empty(q_n, dtype=cells.dtype)
        accq = np.empty(q_n, dtype=np.float64)
        acc32 = np.empty(q_n, dtype=np.float32)
        acci = np.empty(q_n, dtype=np.int64)
        idx = np.empty(nw * 64, dtype=np.int64)
        lvl = np.empty(nw * 64, dtype=np.int64)
        z0 = np.zeros(q_n, dtype=np.float32)
        end = min(m1, m0 + (blk + 1) * bp.PIXEL_BLOCK)
        for ms in range(m0 + blk * bp.PIXEL_BLOCK, end, sub):
            nm = min(sub, end - ms)
            bp._input_planes(xp, base, off, n_pix, ms, nm, k0, rows, nbits, words, xall)
            for i in range(nm):
                m = ms + i
                xw = xall[:, i * nw:(i + 1) * nw]
                accq[:] = 0.0
                acc32[:] = 0.0
                acci[:] = 0
                touched = False
                for j in range(jn):
                    if d == 1:  # the non-empty 4-row groups of the step's plane: rows of the subset-sum table
                        n = 0
                        s = 0
                        for w in range(nw):
                            u = xall[j, i * nw + w]
                            s += bp._ctpop(u)
                            g = 0
                            while u != 0:
                                mask = np.int64(u & gmask)
                                idx[n] = (w * gpw + g) * ns + mask
                                n += mask != 0
                                u >>= ugb
                                g += 1
                    else:
                        n, s = _active(xw, j, d, idx, lvl)
                    if s <= skip_sum:
                        continue
                    touched = True
                    if d == 1:
                        _row_sum1(table, idx, n, p)
                    else:
                        xb._row_sum(cells, idx, lvl, n, p, dmax)
                    if int_clip:
                        sh = j * d
                        for q in range(q_n):
                            v = np.int64(p[q])
                            acci[q] += (min(v, itop) - v) << sh
                        continue
                    wj = float(1 << (j * d))
                    if fast32:
                        _codes32(p, inv_lsb, top, wj, acc32)
                        continue
                    z = noise[j, m - m0] if has_noise else z0
                    if mode == 0:
                        xb._convert_clip(p, top, lin, wj, accq)
                    elif mode == 3:
                        xb._convert_rint32(p, inv_lsb, lsb, top, wj, accq)
                    elif mode == 1:
                        xb._convert_rint(p, z, zs if has_noise else 0.0, inv_lsb, lsb, top, lin, wj, accq)
                    else:
                        xb._convert_table(p, z, zs if has_noise else 0.0, inv_lsb, lsb, top, thr, lin, wj, accq)
                if touched:
                    if int_clip:
                        for q in range(q_n):
                            acc[m, colout[q]] += colw[q] * np.float64(acci[q])
                    elif fast32:
                        for q in range(q_n):
                            acc[m, colout[q]] += colw[q] * (lsb * np.float64(acc32[q]))
                    else:
                        for q in range(q_n):
                            acc[m, colout[q]] += colw[q] * accq[q]
