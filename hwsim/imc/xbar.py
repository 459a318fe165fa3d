"""Batch-vectorised crossbar kernels: the exact GEMM and the fused read + ADC + shift-add of one row split.

Both compute the arithmetic of :mod:`hwsim.imc.numerics` (steps 1-4) exactly; they differ only in how many
operations they spend:

- :func:`exact_gemm`: ``u @ w`` for integer-valued operands with a BLAS GEMM. Exactness: every product and
  every partial sum of the GEMM is an integer of magnitude at most ``bound = max|u| · max_n Σ_k |w[k, n]|``;
  float32 represents every integer below 2^24 exactly, float64 every integer below 2^53, so the GEMM in
  float32 (bound < 2^24) or float64 (bound < 2^53) is exact in any summation order, with or without fused
  multiply-adds. Beyond 2^53 it refuses (no hwsim configuration gets there: 16-bit inputs and weights on
  2^20 rows stay below 2^52). Pixels are processed in chunks of at most ``CHUNK_BYTES`` of converted inputs.
- :func:`split_adc` (the reference row-add kernel; the functional path runs the faster, bit-identical
  :mod:`hwsim.imc._bitplane` for integer cells and :mod:`hwsim.imc._analog` for analog ones, which reuse its
  converters): for one row split, every pixel m and input step j, the rows whose DAC level is non-zero
  are gathered once and their programmed conductances summed over all (sign, slice, column) pairs q of the
  split at once (one vectorised row add per active row), giving the bit-line partial sums ``p[m, j, q]``;
  each is converted (:data:`ADC_CLIP`, :data:`ADC_RINT` or :data:`ADC_TABLE`) and
  ``colw[q] · 2^(j·d) · (code·lsb − lin·p)`` is added to ``acc[m, colout[q]]``. With ``lin = 0`` this is
  the whole ADC path; with ``lin = 1`` it is the correction to an exact GEMM that already holds ``Σ p``
  (integer cells), and a step whose level sum · ``gmax`` cannot exceed the ADC range (``skip_sum``) needs no
  work at all. The partial sums are exact: cells are integers or multiples of 2^-F with
  ``rows·(2^d − 1)·max|cell|·2^F < 2^24`` (float32) — see :func:`hwsim.imc.physics.grid_bits` — so the sum
  order (here: gathered rows, a transcription: a dense product) never changes a bit. Cells may be negative (a
  reference column subtracted, :mod:`hwsim.imc.physics` step 7; analog cells only): the bound is on ``|p|`` and
  every converter outputs code 0 for a negative partial sum (clip at 0; the transfer's thresholds are > 0).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from hwsim.errors import HwsimError

__all__ = ["exact_gemm", "split_adc", "ADC_CLIP", "ADC_RINT", "ADC_TABLE", "ADC_RINT32", "CHUNK_BYTES", "PIXEL_BLOCK"]

ADC_CLIP = 0  # integer partial sums, LSB 1: code = clip(p, 0, top)
ADC_RINT = 1  # code = clip(rint(p / lsb), 0, top) (round half to even, like np.rint)
ADC_TABLE = 2  # code = number of transfer thresholds <= p / lsb (INL/DNL), at most top
ADC_RINT32 = 3  # ADC_RINT in float32, direct values, no noise: float32 grid sums with F >= 2 (|p/lsb| < 2^22)
CHUNK_BYTES = 1 << 25  # 32 MiB of converted inputs per GEMM chunk (bounds peak memory)
PIXEL_BLOCK = 64  # pixels per parallel work item of split_adc
_RINT_MAGIC = 6755399441055744.0  # 1.5·2^52: (v + M) − M rounds a float64 |v| < 2^51 half to even
_RINT_MAGIC32 = 12582912.0  # 1.5·2^23: the same for a float32 |v| < 2^22


def exact_gemm(u: np.ndarray, w: np.ndarray, out: np.ndarray | None = None, umax: int | None = None) -> np.ndarray:
    """``u @ w`` [M, N] in float64 for integer-valued ``u`` [M, K] and ``w`` [K, N], exactly (module docstring).
    Added into ``out`` when given. Inputs and weights are converted in chunks of about ``CHUNK_BYTES``."""
    if umax is None:
        umax = int(np.abs(u).max()) if u.size else 0
    m, k = u.shape
    n = w.shape[1]
    res = np.zeros((m, n), dtype=np.float64) if out is None else out
    ncol = max(1, CHUNK_BYTES // max(1, k * 8))
    for n0 in range(0, n, ncol):  # a column block: its own bound, dtype and converted weights
        n1 = min(n, n0 + ncol)
        wb = w[:, n0:n1]
        bound = float(umax) * float(np.abs(wb).sum(axis=0).max()) if wb.size else 0.0
        if bound >= 2.0**53:
            raise HwsimError(f"exact crossbar GEMM: partial sums up to {bound:.3g} exceed 2^53 (float64 would round)")
        dt = np.float32 if bound < 2.0**24 else np.float64
        wd = wb.astype(dt)
        step = max(1, CHUNK_BYTES // max(1, k * np.dtype(dt).itemsize))
        for m0 in range(0, m, step):
            m1 = min(m, m0 + step)
            res[m0:m1, n0:n1] += u[m0:m1].astype(dt) @ wd
    return res


@njit(cache=True)
def _nonzero_rows(xp, img, b0, off, k0, rows, nz, val):
    """Rows of one pixel (image img, base offset b0) with a non-zero input ``xp[img, b0 + off[k0 + k]]``: nz[:n],
    their values val[:n]; returns n (branch-free compaction: every row is written, the count advances only on a
    non-zero value)."""
    n = 0
    for k in range(rows):
        x = np.int64(xp[img, b0 + off[k0 + k]])
        nz[n] = k
        val[n] = x
        n += x != 0
    return n


@njit(cache=True)
def _active_rows(nz, val, n_nz, sh, mask, idx, lvl):
    """Of those rows, the ones whose DAC level at shift sh is non-zero: idx[:n], levels lvl[:n]; returns
    (n, level sum)."""
    n = 0
    s = 0
    for t in range(n_nz):
        x = (val[t] >> sh) & mask
        idx[n] = nz[t]
        lvl[n] = x
        n += x != 0
        s += x
    return n, s


@njit(cache=True)
def _row_sum(cells, idx, lvl, n, p, dmax):
    """p = Σ_t lvl[t]·cells[idx[t], :] (exact: integers or grid multiples below 2^24, so four rows are added
    at a time in any order)."""
    q_n = p.shape[0]
    for q in range(q_n):
        p[q] = 0.0
    if dmax == 1:
        t = 0
        while t + 4 <= n:
            a, b, c, e = cells[idx[t]], cells[idx[t + 1]], cells[idx[t + 2]], cells[idx[t + 3]]
            for q in range(q_n):
                p[q] += (a[q] + b[q]) + (c[q] + e[q])
            t += 4
        while t < n:
            a = cells[idx[t]]
            for q in range(q_n):
                p[q] += a[q]
            t += 1
    else:
        for t in range(n):
            a = cells[idx[t]]
            f = lvl[t]
            for q in range(q_n):
                p[q] += f * a[q]


@njit(cache=True)
def _convert_clip(p, top, lin, wj, accq):
    """Integer partial sums, LSB 1, no noise: accq[q] += wj·(clip(p, 0, top) − lin·p) (exact in p's dtype)."""
    tp = p.dtype.type(top)
    ln = p.dtype.type(lin)
    for q in range(p.shape[0]):
        v = p[q]
        accq[q] += wj * (min(max(v, 0), tp) - ln * v)


@njit(cache=True)
def _convert_rint32(p, inv_lsb, lsb, top, wj, accq):
    """Direct values of float32 grid sums, no noise: accq[q] += wj·clip(rint(p/lsb), 0, top)·lsb, rounded in float32
    by the 1.5·2^23 trick (exact: |p/lsb| < 2^22, guaranteed by the grid bound p < 2^(24−F), F >= 2)."""
    il = np.float32(inv_lsb)
    tp = np.float32(top)
    mg = np.float32(_RINT_MAGIC32)
    for q in range(p.shape[0]):
        c = (p[q] * il + mg) - mg
        accq[q] += wj * (np.float64(min(max(c, np.float32(0.0)), tp)) * lsb)


@njit(cache=True)
def _convert_rint(p, z, zs, inv_lsb, lsb, top, lin, wj, accq):
    """accq[q] += wj·(clip(rint((p + zs·z)/lsb), 0, top)·lsb − lin·p); rint by the 1.5·2^52 trick (half to even)."""
    for q in range(p.shape[0]):
        v = np.float64(p[q])
        a = (v + zs * np.float64(z[q])) * inv_lsb
        c = (a + _RINT_MAGIC) - _RINT_MAGIC
        accq[q] += wj * (min(max(c, 0.0), top) * lsb - lin * v)


@njit(cache=True)
def _convert_table(p, z, zs, inv_lsb, lsb, top, thr, lin, wj, accq):
    """accq[q] += wj·(code·lsb − lin·p), code = number of thresholds <= (p + zs·z)/lsb, at most top."""
    for q in range(p.shape[0]):
        v = np.float64(p[q])
        x = (v + zs * np.float64(z[q])) * inv_lsb
        lo, hi = 0, thr.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if thr[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        accq[q] += wj * (float(min(lo, top)) * lsb - lin * v)


@njit(cache=True, parallel=True)
def split_adc(xp, base, off, m0, m1, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, lin, skip_sum,
              noise, zs, acc):
    """The ADC path of one row split for pixels m0 <= m < m1 (module docstring); adds into acc[m, :].

    Pixel m = img·P + pix (P = len(base)) reads row k of its im2col patch at ``xp[img, base[pix] + off[k]]``:
    for a conv, xp holds the padded encoded images flattened [N, C·Hp·Wp], base the top-left offset of each
    output pixel's window and off each (channel, tap) offset (no im2col copy); for a matrix, xp = u [M, K],
    base = [0], off = arange(K).
    cells [rows, Q] float32/float64; colw [Q] float64 (shift · matrix sign · flip sign); colout [Q] int64;
    skip_sum: a step whose level sum is <= skip_sum is skipped (-1: never); noise [J, M, Q] float32 standard
    normals for pixels m0..m1 (scaled by zs = adc_noise_lsb·lsb) or an empty array.
    """
    n_pix = base.shape[0]
    q_n = cells.shape[1]
    nb = (m1 - m0 + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    inv_lsb = 1.0 / lsb
    dmax = (1 << d) - 1
    has_noise = noise.shape[0] > 0
    for b in prange(nb):
        p = np.empty(q_n, dtype=cells.dtype)
        accq = np.empty(q_n, dtype=np.float64)
        idx = np.empty(rows, dtype=np.int64)
        lvl = np.empty(rows, dtype=np.int64)
        nz = np.empty(rows, dtype=np.int64)
        val = np.empty(rows, dtype=np.int64)
        z0 = np.zeros(q_n, dtype=np.float32)
        for m in range(m0 + b * PIXEL_BLOCK, min(m1, m0 + (b + 1) * PIXEL_BLOCK)):
            for q in range(q_n):
                accq[q] = 0.0
            touched = False
            n_nz = _nonzero_rows(xp, m // n_pix, base[m % n_pix], off, k0, rows, nz, val)
            for j in range(jn):
                n, s = _active_rows(nz, val, n_nz, j * d, dmax, idx, lvl)
                if s <= skip_sum:
                    continue
                touched = True
                _row_sum(cells, idx, lvl, n, p, dmax)
                wj = float(1 << (j * d))
                z = noise[j, m - m0] if has_noise else z0
                if mode == 0:
                    _convert_clip(p, top, lin, wj, accq)
                elif mode == 3:
                    _convert_rint32(p, inv_lsb, lsb, top, wj, accq)
                elif mode == 1:
                    _convert_rint(p, z, zs if has_noise else 0.0, inv_lsb, lsb, top, lin, wj, accq)
                else:
                    _convert_table(p, z, zs if has_noise else 0.0, inv_lsb, lsb, top, thr, lin, wj, accq)
            if touched:
                for q in range(q_n):
                    acc[m, colout[q]] += colw[q] * accq[q]
