"""Micro-kernel dispatch of the convolution driver (``_conv.py``): the largest register tile of a
family that fits the rows left, and the narrow (1-, 2- or 3-vector) tiles of a last column tile;
the scatter of a tile buffer to NCHW (:func:`_scatter`); and the issue model that picks the tile family
(:func:`choose_family`, :func:`choose_row_family`).

Numba caches ``_conv.py``'s compiled functions keyed on a hash of that file's bytes only: after editing
this file, bump ``_conv.DEPS_REVISION``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.kernels import _microkernel as K
from hwsim.kernels._microkernel import FAMILIES, NARROW_ROWS


@njit(cache=True, inline="always")
def lanes_of(a):
    """Vector lanes of the micro-kernels for ``a``'s dtype (16 float32, 8 float64)."""
    return 64 // a.itemsize


@njit(cache=True, inline="always")
def _scatter(tile, t0, out, o, bias_v, q0, ncol, wq, oh_n, ow_n):
    """Copy ``tile[t0:t0+ncol]`` (flat positions q0..q0+ncol) into ``out[o]`` (flat OH*OW) + bias.

    Walks the output rows covered by the tile. Indices are uint64 so that Numba emits no
    negative-index wraparound check and the row-segment copy vectorises (slices would do the
    same but cost two reference-count updates each).
    """
    base = o * oh_n * ow_n
    oh = q0 // wq
    ow = q0 - oh * wq
    q = q0
    end = q0 + ncol
    while q < end and oh < oh_n:
        n_seg = min(end - q, ow_n - ow)
        if n_seg > 0:
            src = np.uint64(t0 + q - q0)
            dst = np.uint64(base + oh * ow_n + ow)
            for j in range(np.uint64(n_seg)):
                out[dst + j] = tile[src + j] + bias_v
        q += wq - ow
        oh += 1
        ow = 0


@njit(cache=True)
def _mk_rows(fam, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc):
    """Run the largest micro-kernel of family ``fam`` fitting ``left`` rows; return rows done."""
    if fam == 0:
        if left >= 8:
            K.MK3_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 8
        if left >= 4:
            K.MK3_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        if left >= 2:
            K.MK3_2(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 2
        K.MK3_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    if fam == 1:
        if left >= 6:
            K.MK4_6(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 6
        if left >= 4:
            K.MK4_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        if left >= 2:
            K.MK4_2(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 2
        K.MK4_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    K.MK8_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    return 1


@njit(cache=True)
def _mk_narrow(nv, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc):
    """Run the largest ``nv``-vector micro-kernel (1, 2 or 3 vectors: the narrow last column tile)
    fitting ``left`` rows; return rows done."""
    if nv == 3:
        return _mk_rows(0, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    if nv == 2:
        if left >= 8:
            K.MK2_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 8
        if left >= 4:
            K.MK2_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        K.MK2_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    if left >= 8:
        K.MK1_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 8
    K.MK1_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    return 1


def _cycles_per_k(mr: int, nv: int) -> float:
    """Issue model of one micro-kernel k step: 2 FMA/cycle, 4-cycle FMA latency, 2 load slots per
    cycle of which a 512-bit load takes two (Zen 5: 1 zmm load or 2 broadcasts per cycle, timed by
    ``benchmarks/_host.py``), so ``mr`` broadcasts and ``nv`` vector loads take ``(mr + 2*nv) / 2`` cycles."""
    return max(mr * nv / 2, (2 * nv + mr) / 2, 4.0)


def _rows_cost(mg: int, nv: int, rows) -> float:
    """Modelled cycles per k step of ``mg`` rows covered greedily by tiles of ``rows`` x ``nv``."""
    left, cost = mg, 0.0
    for r in rows:
        cost += (left // r) * _cycles_per_k(r, nv)
        left %= r
    return cost


_NARROW_ROWS = {**NARROW_ROWS, 3: FAMILIES[0][1]}  # the row tiles of _mk_narrow


def _tiles_cost(mg: int, fam: int, vectors: int) -> float:
    """Modelled cycles per k step of ``vectors`` column vectors in tiles of family ``fam``: whole
    tiles, then one narrow tile (1-3 vectors, ``_mk_narrow``) or, in the 8-vector family, one
    more whole tile for a remainder of 4-7 vectors."""
    nv, rows = FAMILIES[fam]
    rem = vectors % nv
    cost = (vectors // nv) * _rows_cost(mg, nv, rows)
    if rem and (rem < 3 or (fam == 1 and rem == 3)):
        cost += _rows_cost(mg, rem, _NARROW_ROWS[rem])
    elif rem:
        cost += _rows_cost(mg, nv, rows)
    return cost


def choose_family(mg: int, nflat: int, nl: int) -> int:
    """Family (index into FAMILIES) with the fewest modelled cycles for an mg x nflat GEMM.

    ``nl``: vector lanes (16 for float32, 8 for float64). Rows are covered greedily (largest
    tile first), as ``_mk_rows`` does. Wide tiles win for big maps with few output channels per
    group (depthwise), 4-vector tiles for small maps (a 7x7 map has 56 flat positions: one 4-vector
    tile rather than 3 vectors and a load-bound 1-vector one).
    """
    costs = [_tiles_cost(mg, fam, -(-nflat // nl)) for fam in range(len(FAMILIES))]
    return costs.index(min(costs))


def choose_row_family(mg: int, row_vectors: int) -> int:
    """Family 0 or 1 for the row-aligned tiles of ``_task_rows``: every output row of ``row_vectors``
    vectors is covered by whole tiles and one narrow tile; e.g. 7 vectors (OW = 112) as 4 + 3 rather
    than 3 + 3 + 1 (the 1-vector tile is load-bound)."""
    return 0 if _tiles_cost(mg, 0, row_vectors) <= _tiles_cost(mg, 1, row_vectors) else 1
