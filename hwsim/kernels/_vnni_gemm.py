"""Register-tiled u8 x s8 -> int32 GEMM / implicit-GEMM convolution on the VNNI micro-kernels of
``_vnni_microkernel`` (the exact integer path of ``int8.gemm_int`` and ``int8.conv2d_int`` on AVX-512
VNNI hosts).

Row tiles (:func:`product`, :func:`gemm`): ``C[m, o] = irow[m] + icol[o] + sum_k A[m, k] * W[o, k]``
with A uint8 and W int8, as MR x NP tiles (NP = NV * 16 columns). Weights are packed into
4-byte-interleaved column panels (:func:`panels_of`, :func:`panels_for`, K padded with zeros to a multiple of 4). Rows are
addressed through ``rbase`` (row offsets) and ``aoff`` (K-quad offsets), so the same driver serves a
GEMM and a convolution over a padded NHWC input (:func:`conv_operands`; strided convolutions).

Transposed tiles (:func:`product_t`): weight rows broadcast (from :func:`row_panels`), activation
columns as vectors, for the stride-1 convolutions of ``_vnni_conv`` (output rows are channels, so the
result is NCHW without a transposition).

Edges without a second kernel (as ``_binary_gemm``): the last panel / tile starts at ``N - NP`` and
the last row block at ``M - MR``, overlapping the previous ones (overlapping outputs are recomputed
with identical values); operands with fewer columns / rows are padded here.

Exactness: every product is at most 255 * 128 in magnitude, so with ``K <= MAX_K`` no raw partial
sum leaves int32 (``vpdpbusd`` wraps, it does not saturate); with starting values (corrections) the
arithmetic is modulo 2**32, exact whenever the true result fits int32 (the caller's condition).

Tiles: 6 rows x 4 vectors, the fastest row tile timed (docs/targets/kernels.md, "Tile choices"), and
8 rows x 3 vectors where it computes fewer edge rows and columns (:func:`row_tile`: a 64-row GEMM with
1000 columns computes 64 x 1008 instead of 66 x 1024; both 24 accumulators); transposed tiles: see
``MR_N`` below.

Numba's on-disk cache of the drivers below is keyed on this file only: after editing the code
generator, touch this file.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from hwsim.kernels._panels import pack_panels_of_width, pad_rows, row_start
from hwsim.kernels._vnni_microkernel import LANES, make_vnni_microkernel, make_vnni_microkernel_wbcast

MR, NV = 6, 4
NP = NV * LANES  # output columns per panel
MAX_K = (2**31 - 1) // (255 * 128)  # 65,793: |sum_k a*b| <= 255*128*K stays in int32
_MK = make_vnni_microkernel(MR, NV)
_MK_T = make_vnni_microkernel_wbcast(MR, NV)  # the transposed tile: MR weight rows x NP activations
# A narrower transposed tile (12 weight rows x 2 vectors, also 24 accumulators) for maps whose flat
# width is closer to a multiple of 32 columns than of 64 (a 14x14 map: 210 columns, 7 x 32 vs 4 x 64);
# weights broadcast from row panels, not their plain rows K bytes apart (L1 set conflicts). Timings:
# docs/targets/kernels.md, "Tile choices".
MR_N, NP_N = 12, 2 * LANES
_MK_TN = make_vnni_microkernel_wbcast(MR_N, 2)
MR_S, NP_S = 8, 3 * LANES  # the second row tile (row_tile)
_MK_S = make_vnni_microkernel(MR_S, 3)


def pack_panels(w4, width: int = NP):
    """(N, kq) K quads of int8 weights viewed as int32 (N >= width) -> (flat int8 panels, panel start
    columns): ``flat[(p*kq + t)*width + j] = w4[starts[p] + j, t]``, i.e. byte ``((p*kq + t)*width + j)*4 + q``
    of the panels is weight ``(starts[p] + j, 4t + q)`` (the binary GEMM's panel layout, of int32 words)."""
    flat, starts = pack_panels_of_width(w4, width)
    return flat.view(np.int8), starts


def quads(x: np.ndarray) -> np.ndarray:
    """(R, K) 8-bit rows zero-padded to a multiple of 4 columns, contiguous."""
    r, k = x.shape
    if k % 4:
        return np.concatenate([x, np.zeros((r, -k % 4), x.dtype)], axis=1)
    return np.ascontiguousarray(x)


@njit(cache=True)
def drive(a, rbase, m, aoff, wp, starts, nq, c, ldc, irow, icol):
    """Serial: every (panel, row block) tile; ``m`` rows (>= MR) of ``rbase`` are used; tile element
    ``(r, o)`` starts at ``irow[r] + icol[o]``."""
    nblk = (m + MR - 1) // MR
    for p in range(starts.shape[0]):
        w0 = p * nq * NP * 4
        for b in range(nblk):
            r = row_start(b, nblk, m, MR)
            _MK(a, rbase, r, aoff, wp, w0, NP * 4, nq, c, r * ldc + starts[p], ldc, irow, icol, starts[p])


@njit(cache=True, parallel=True)
def drive_parallel(a, rbase, m, aoff, wp, starts, nq, c, ldc, irow, icol):
    """:func:`drive` with the tiles split over Numba's threads (overlapping edge tiles write
    identical values, so concurrent writes of one element are benign)."""
    nblk = (m + MR - 1) // MR
    for task in prange(starts.shape[0] * nblk):
        p = task // nblk
        r = row_start(task % nblk, nblk, m, MR)
        _MK(a, rbase, r, aoff, wp, p * nq * NP * 4, NP * 4, nq, c, r * ldc + starts[p], ldc, irow, icol,
            starts[p])


@njit(cache=True)
def drive_s(a, rbase, m, aoff, wp, starts, nq, c, ldc, irow, icol):
    """:func:`drive` with the MR_S x NP_S tile (panels of width NP_S)."""
    nblk = (m + MR_S - 1) // MR_S
    for p in range(starts.shape[0]):
        w0 = p * nq * NP_S * 4
        for b in range(nblk):
            r = m - MR_S if b == nblk - 1 else b * MR_S
            _MK_S(a, rbase, r, aoff, wp, w0, NP_S * 4, nq, c, r * ldc + starts[p], ldc, irow, icol, starts[p])


@njit(cache=True, parallel=True)
def drive_s_parallel(a, rbase, m, aoff, wp, starts, nq, c, ldc, irow, icol):
    """:func:`drive_s` with the tiles split over Numba's threads."""
    nblk = (m + MR_S - 1) // MR_S
    for task in prange(starts.shape[0] * nblk):
        p = task // nblk
        b = task % nblk
        r = m - MR_S if b == nblk - 1 else b * MR_S
        _MK_S(a, rbase, r, aoff, wp, p * nq * NP_S * 4, NP_S * 4, nq, c, r * ldc + starts[p], ldc, irow, icol,
              starts[p])


def row_tile(m: int, n: int) -> tuple[int, int]:
    """(rows, columns) of the row tile for an M x N product: (MR_S, NP_S) where it computes fewer
    outputs than (MR, NP) (edge tiles overlap, so ``ceil(M / rows) * rows`` rows are computed, likewise
    columns), else (MR, NP). Chosen on the development host (Zen 5), docs/targets/kernels.md."""
    def cost(mr, width):
        return -(-max(m, mr) // mr) * mr * (-(-max(n, width) // width) * width)
    return (MR_S, NP_S) if cost(MR_S, NP_S) < cost(MR, NP) else (MR, NP)


@njit(cache=True)
def row_panels(wq, mr):
    """(O, 4*nq) int8 K-quad weight rows -> flat int8 blocks of ``mr`` rows, quad-major:
    int32 word ``(b*nq + t)*mr + i`` is quad ``t`` of row ``o0(b) + i`` with ``o0(b) = min(b*mr, O' - mr)``
    over the rows zero-padded to ``O' = max(O, mr)``: the broadcasts of one K step of the transposed
    tile are then consecutive (no L1 set conflicts between rows K bytes apart)."""
    o_n, k = wq.shape
    nq = k // 4
    w4 = wq.view(np.int32)
    op = max(o_n, mr)
    nblk = (op + mr - 1) // mr
    out = np.zeros(nblk * nq * mr, np.int32)
    for b in range(nblk):
        o0 = min(b * mr, op - mr)
        for t in range(nq):
            for i in range(mr):
                if o0 + i < o_n:
                    out[(b * nq + t) * mr + i] = w4[o0 + i, t]
    return out.view(np.int8)


@njit(cache=True)
def drive_t(v, vbase, cstart, voff, wpan, o_n, nq, c, ldc, init):
    """Serial, transposed tiles: for every activation tile ``p`` (bytes from ``vbase[p]``, output
    columns from ``cstart[p]``) every block of MR weight rows of ``row_panels(wq, MR)`` (``o_n >= MR``)."""
    nblk = (o_n + MR - 1) // MR
    for p in range(vbase.shape[0]):
        for b in range(nblk):
            o0 = row_start(b, nblk, o_n, MR)
            _MK_T(v, vbase[p], voff, wpan, b * nq * MR * 4, 4, MR * 4, nq, c, o0 * ldc + cstart[p], ldc, init, o0)


@njit(cache=True, parallel=True)
def drive_t_parallel(v, vbase, cstart, voff, wpan, o_n, nq, c, ldc, init):
    """:func:`drive_t` with the tiles split over Numba's threads."""
    nblk = (o_n + MR - 1) // MR
    for task in prange(vbase.shape[0] * nblk):
        p = task // nblk
        b = task % nblk
        o0 = row_start(b, nblk, o_n, MR)
        _MK_T(v, vbase[p], voff, wpan, b * nq * MR * 4, 4, MR * 4, nq, c, o0 * ldc + cstart[p], ldc, init, o0)


@njit(cache=True)
def drive_tn(v, vbase, cstart, voff, wpan, o_n, nq, c, ldc, init):
    """:func:`drive_t` with the narrow MR_N x NP_N tile (``row_panels(wq, MR_N)``)."""
    nblk = (o_n + MR_N - 1) // MR_N
    for p in range(vbase.shape[0]):
        for b in range(nblk):
            o0 = row_start(b, nblk, o_n, MR_N)
            _MK_TN(v, vbase[p], voff, wpan, b * nq * MR_N * 4, 4, MR_N * 4, nq, c, o0 * ldc + cstart[p], ldc,
                   init, o0)


@njit(cache=True, parallel=True)
def drive_tn_parallel(v, vbase, cstart, voff, wpan, o_n, nq, c, ldc, init):
    """:func:`drive_tn` with the tiles split over Numba's threads."""
    nblk = (o_n + MR_N - 1) // MR_N
    for task in prange(vbase.shape[0] * nblk):
        p = task // nblk
        b = task % nblk
        o0 = row_start(b, nblk, o_n, MR_N)
        _MK_TN(v, vbase[p], voff, wpan, b * nq * MR_N * 4, 4, MR_N * 4, nq, c, o0 * ldc + cstart[p], ldc,
               init, o0)


def tile_t(ncols: int) -> tuple[int, int]:
    """(columns, rows) of the transposed tile for ``ncols`` flat columns: (NP_N, MR_N) where it computes
    fewer columns (tiles overlap at the end, so ``ceil(ncols / width) * width`` are computed), else
    (NP, MR)."""
    def cost(width):
        return -(-max(ncols, width) // width) * width
    return (NP_N, MR_N) if cost(NP_N) < cost(NP) else (NP, MR)


def product_t(v: np.ndarray, vbase: np.ndarray, cstart: np.ndarray, voff: np.ndarray, wpan: np.ndarray,
              o: int, ncols: int, init: np.ndarray, parallel: bool, width: int = NP) -> np.ndarray:
    """Transposed raw product ``C[o, col]`` int32 (O, ncols) of the ``width``-column tiles
    ``(vbase, cstart)`` of ``v`` (flat uint8) with ``wpan = row_panels(wq, rows)`` of the K-quad weight
    rows ``wq`` (O, 4*len(voff)) int8 (``(width, rows)`` from :func:`tile_t`), each started at
    ``init[o]`` (int32). Operands already validated."""
    mr = MR if width == NP else MR_N
    op = max(o, mr)
    if op > o:
        init = np.concatenate([init, np.zeros(op - o, np.int32)])
    c = np.empty((op, ncols), np.int32)
    if width == NP:
        run = drive_t_parallel if parallel else drive_t
    else:
        run = drive_tn_parallel if parallel else drive_tn
    run(v, vbase, cstart, voff, wpan, op, voff.shape[0], c.reshape(-1), ncols, init)
    return c[:o]


def panels_of(w: np.ndarray) -> tuple:
    """(K-quad rows, N, panels) of (N, K) int8 weights: the rows as int32 K quads (fewer than NP rows are
    padded with zeros, K to a multiple of 4; otherwise a *view* of ``w``: no copy, whose fresh pages cost
    more than the packing on a first call) and a dict in which :func:`panels_for` keeps the column panels
    of each tile width, packed on first use (a weight array used with one tile is packed once). As the
    rows may be ``w`` itself, ``w`` must not change while ``pan`` is used: ``int8`` gets ``pan`` from
    ``_vnni_pack``, which checks the weight bytes against its copy before every use."""
    return quads(pad_rows(w, NP)).view(np.int32), w.shape[0], {}


def panels_for(pan: tuple, width: int) -> tuple:
    """(flat int8 panels, panel starts) of ``pan = panels_of(w)`` for tiles ``width`` columns wide."""
    built = pan[2]
    got = built.get(width)
    if got is None:  # a whole value stored at once: threads racing here build equal panels
        got = built[width] = pack_panels(pan[0], width)
    return got


def _padded(v: np.ndarray | None, n: int, size: int) -> np.ndarray:
    """int32 ``v`` (``n`` entries, or zeros when None) zero-padded to ``size``."""
    if v is not None and n == size:
        return np.ascontiguousarray(v, dtype=np.int32)
    out = np.zeros(size, np.int32)
    if v is not None:
        out[:n] = v
    return out


def product(a: np.ndarray, rbase: np.ndarray, aoff: np.ndarray, pan: tuple, parallel: bool,
            irow: np.ndarray | None = None, icol: np.ndarray | None = None) -> np.ndarray:
    """``C[m, o] = irow[m] + icol[o] + sum_t sum_q a[rbase[m] + aoff[t] + q] * w[o, 4t + q]`` int32
    (M, N) (wrap-around) on the :func:`row_tile` of (M, N), with ``a`` flat uint8, ``pan = panels_of(w)`` of
    ``w`` (N, K) int8,
    ``len(aoff) == ceil(K / 4)`` and ``irow``, ``icol`` int32 (zeros when None)."""
    m, nq = rbase.shape[0], aoff.shape[0]
    n = pan[1]
    mr, width = row_tile(m, n)
    flat, starts = panels_for(pan, width)
    if width == NP_S:
        run = drive_s_parallel if parallel else drive_s
    else:
        run = drive_parallel if parallel else drive
    if m < mr:
        rbase = np.concatenate([rbase, np.full(mr - m, rbase[0], np.int64)])
    mc, nc = rbase.shape[0], max(n, NP)
    irow_c, icol_c = _padded(irow, m, mc), _padded(icol, n, nc)
    c = np.empty((mc, nc), dtype=np.int32)
    run(a, rbase, mc, aoff, flat, starts, nq, c.reshape(-1), nc, irow_c, icol_c)
    return c if (mc == m and nc == n) else c[:m, :n]


def gemm(a: np.ndarray, w: np.ndarray | None, parallel: bool = False, pan: tuple | None = None,
         irow: np.ndarray | None = None, icol: np.ndarray | None = None) -> np.ndarray:
    """``irow[m] + icol[o] + sum_k a[m, k] * w[o, k]`` for ``a`` (M, K) uint8, ``w`` (N, K) int8
    (or its ``pan = panels_of(w)``): int32 (M, N), exact for K <= MAX_K when the result fits int32."""
    m, k = a.shape
    kq = (k + 3) // 4
    rbase, aoff = _gemm_offsets(m, kq)
    return product(quads(a).reshape(-1), rbase, aoff, panels_of(w) if pan is None else pan, parallel, irow, icol)


@functools.lru_cache(maxsize=64)
def _gemm_offsets(m: int, kq: int) -> tuple:
    """Read-only (rbase, aoff) of an (M, 4*kq) uint8 GEMM operand, cached per shape (a network repeats
    its shapes: two ``np.arange`` cost 2 us, 2 % of a 64 x 512 x 1000 product)."""
    rbase, aoff = np.arange(m, dtype=np.int64) * (4 * kq), np.arange(kq, dtype=np.int64) * 4
    rbase.flags.writeable = aoff.flags.writeable = False
    return rbase, aoff


def conv_operands(a: np.ndarray, pad_value: int, kernel, stride, padding, dilation, oh: int, ow: int):
    """Implicit-GEMM operands of a groups=1 convolution of ``a`` (N, C, H, W) uint8 with a
    ``kernel = (kh, kw)`` whose weights are in ``_vnni_conv.weight_quads`` order: (flat padded NHWC
    input, rbase, aoff), channels padded to ``Cp`` (a multiple of 4) and the spatial border filled
    with ``pad_value``. Row ``(n, y, x)`` of the product is output position ``(y, x)`` of image ``n``."""
    n, c, h, wd = a.shape
    kh, kw = kernel
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    cp = (c + 3) // 4 * 4
    hp, wp = h + 2 * ph, wd + 2 * pw
    xp = np.full((n, hp, wp, cp), pad_value, np.uint8)
    xp[:, ph:ph + h, pw:pw + wd, :c] = a.transpose(0, 2, 3, 1)
    if cp > c:
        xp[:, :, :, c:] = 0
    rows = ((np.arange(n)[:, None, None] * hp + np.arange(oh)[None, :, None] * sh) * wp
            + np.arange(ow)[None, None, :] * sw) * cp
    taps = (np.arange(kh)[:, None] * dh * wp + np.arange(kw)[None, :] * dw) * cp
    aoff = (taps.reshape(-1, 1) + 4 * np.arange(cp // 4)[None, :]).reshape(-1)
    return xp.reshape(-1), rows.reshape(-1).astype(np.int64), aoff.astype(np.int64)


@njit(cache=True)
def row_sums(x):
    """``sum_k x[r, k]`` of a 2-D 8-bit array as int64 (in int32 per row: exact for K <= 2**23)."""
    out = np.empty(x.shape[0], np.int64)
    for r in range(x.shape[0]):
        s = np.int32(0)
        for k in range(x.shape[1]):
            s += np.int32(x[r, k])
        out[r] = s
    return out


@njit(cache=True)
def finish_gemm(c, row_corr, col_corr, out):
    """``out[m, o] = c[m, o] - row_corr[m] - col_corr[o]`` in int64, stored in ``out``'s dtype."""
    for m in range(out.shape[0]):
        rc = row_corr[m]
        for o in range(out.shape[1]):
            out[m, o] = np.int64(c[m, o]) - rc - col_corr[o]


@njit(cache=True)
def finish_nchw(c, out):
    """``out[n, o, q] = c[n*Q + q, o]`` (``out`` (N, O, Q)), in 16 x 16 blocks."""
    nb, no, nq = out.shape
    for n in range(nb):
        for q0 in range(0, nq, 16):
            q1 = min(q0 + 16, nq)
            for o0 in range(0, no, 16):
                o1 = min(o0 + 16, no)
                for o in range(o0, o1):
                    for q in range(q0, q1):
                        out[n, o, q] = c[n * nq + q, o]
