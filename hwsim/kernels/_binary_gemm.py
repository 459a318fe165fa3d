"""Register-tiled xnor-popcount GEMM driver around the LLVM micro-kernel of ``_binary_microkernel``.

The product ``out[i, j] = K - 2 * popcount(a_i ^ w_j)`` runs as MR x NP tiles (NP = NV * 8 output
columns). Weights are packed once into column *panels* (:func:`pack_panels`), each panel word-major
(``nw`` x NP uint64) so that one K step loads NV vectors. Rows are addressed through ``rbase`` (row
offsets) and ``aoff`` (word offsets) so that the same driver serves a plain GEMM and an implicit-GEMM
convolution (see ``binary.binary_conv2d``).

Edges without padding or a second kernel: the last panel starts at ``N - NP`` and the last row block
at ``M - MR``, overlapping the previous ones (the overlapping outputs are recomputed with identical
values). The caller guarantees ``N >= NP`` and ``M >= MR`` (smaller operands are padded by it).

Tile per ISA (chosen once at import from the features LLVM compiles for, i.e. the host unless
``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` say otherwise), not tuned at run time:

* AVX-512 (32 zmm): 6 rows x 4 vectors = 24 accumulators, the fastest tile timed (docs/targets/kernels.md,
  "Tile choices").
* AVX2 without VPOPCNTDQ (16 ymm, an 8-lane vector is 2 ymm, the ``vpshufb`` popcount needs 2 constant
  registers): 4 rows x 1 vector = 8 ymm byte accumulators, with the byte-accumulating K loop
  (``_binary_microkernel._k_loop_avx2``: 8 vector ops per 256-bit word instead of LLVM's 9). Timed on an
  *emulated AVX2 target on a Zen 5 host* (Numba compiled for ``haswell``, ``bench_xnor_gemm.py --isa avx2``):
  no tile from 1 x 2 to 8 x 1 was faster on all three shapes timed (the op mix, not loads or registers,
  binds), 4 x 1 kept; the byte accumulators gained 9-16 % on every shape (docs/targets/kernels.md, "AVX2
  fallback").
  Correctness: tests/test_binary_kernels.py compiles it for ``haswell``.

Numba's on-disk cache of the drivers below is keyed on this file only: after editing the code
generator, touch this file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from hwsim.kernels._binary_microkernel import LANES, make_xnor_microkernel, make_xnor_microkernel_nchw
from hwsim.kernels._microkernel import target_features
from hwsim.kernels._panels import pack_panels_of_width, pad_rows, row_start


def has_avx512_popcount(features: str | None = None) -> bool:
    """True when the compile target has AVX-512F and VPOPCNTDQ (``vpopcntq zmm``)."""
    f = target_features() if features is None else features
    return "+avx512f" in f and "+avx512vpopcntdq" in f


def has_avx2_only(features: str | None = None) -> bool:
    """True when the compile target has AVX2 but not AVX-512 VPOPCNTDQ (the ``vpshufb`` popcount path)."""
    f = target_features() if features is None else features
    return "+avx2" in f and not has_avx512_popcount(f)


TILE = (6, 4) if has_avx512_popcount() else (4, 1)  # (rows MR, vectors NV); see module docstring
MR, NV = TILE
NP = NV * LANES  # output columns per panel
_MK = make_xnor_microkernel(MR, NV, avx2_bytes=has_avx2_only())
# Convolutions on AVX-512 hosts: 8 rows (so that the epilogue transposes 8x8 blocks in registers and
# stores NCHW directly, _binary_conv) x 2 vectors (16-column panels split 64/128 channels exactly, 24-column ones
# recompute 12.5 %; timings: docs/targets/kernels.md, "Tile choices"); None = GEMM + to_nchw.
NCHW_NV = 2 if has_avx512_popcount() else None
NCHW_MR = 8
NCHW_NP = (NCHW_NV or 0) * LANES
_MK_NCHW = make_xnor_microkernel_nchw(NCHW_NV or 1)


def pack_panels(w):
    """:func:`pack_panels_of_width` with the GEMM tile's ``NP`` columns (N >= NP)."""
    return pack_panels_of_width(w, NP)


@njit(cache=True)
def drive(a, rbase, m, aoff, wp, starts, nw, c, ldc, k):
    """Serial: every (panel, row block) tile; ``m`` rows (>= MR) of ``rbase`` are used."""
    nblk = (m + MR - 1) // MR
    for p in range(starts.shape[0]):
        w0 = p * nw * NP
        for b in range(nblk):
            r = row_start(b, nblk, m, MR)
            _MK(a, rbase, r, aoff, wp, w0, NP, nw, c, r * ldc + starts[p], ldc, k)


@njit(cache=True, parallel=True)
def drive_parallel(a, rbase, m, aoff, wp, starts, nw, c, ldc, k):
    """:func:`drive` with the tiles split over Numba's threads. Overlapping edge tiles write
    identical values, so concurrent writes of the same element are benign."""
    nblk = (m + MR - 1) // MR
    npan = starts.shape[0]
    for task in prange(npan * nblk):
        p = task // nblk
        r = row_start(task % nblk, nblk, m, MR)
        _MK(a, rbase, r, aoff, wp, p * nw * NP, NP, nw, c, r * ldc + starts[p], ldc, k)


@njit(cache=True)
def drive_nchw(a, rbase, m, aoff, wp, starts, nw, res, coff, cs, k, cls, corr, ldcorr):
    """:func:`drive` with the NCHW-storing 8-row tile (``NCHW_NP``-column panels): tile rows are output
    positions, written at ``coff[row] + channel*cs`` of the flat ``res`` plus the row class's
    padding correction ``corr[cls[row]*ldcorr + channel]``."""
    nblk = (m + NCHW_MR - 1) // NCHW_MR
    for p in range(starts.shape[0]):
        w0 = p * nw * NCHW_NP
        for b in range(nblk):
            r = m - NCHW_MR if b == nblk - 1 else b * NCHW_MR
            _MK_NCHW(a, rbase, r, aoff, wp, w0, NCHW_NP, nw, res, coff, starts[p], cs, k, cls, corr, ldcorr)


@njit(cache=True, parallel=True)
def drive_nchw_parallel(a, rbase, m, aoff, wp, starts, nw, res, coff, cs, k, cls, corr, ldcorr):
    """:func:`drive_nchw` with the tiles split over Numba's threads (overlapping edge tiles write
    identical values)."""
    nblk = (m + NCHW_MR - 1) // NCHW_MR
    npan = starts.shape[0]
    for task in prange(npan * nblk):
        p = task // nblk
        b = task % nblk
        r = m - NCHW_MR if b == nblk - 1 else b * NCHW_MR
        _MK_NCHW(a, rbase, r, aoff, wp, p * nw * NCHW_NP, NCHW_NP, nw, res, coff, starts[p], cs, k, cls, corr,
                 ldcorr)


@dataclass(frozen=True)
class Panels:
    """Packed weight rows and their column panels, built once by :func:`panels_of` and reusable
    for every product with them (a network's weights)."""

    rows: np.ndarray  # (N, nw) uint64: the packed weight rows themselves
    flat: np.ndarray  # uint64 panels, see pack_panels
    starts: np.ndarray  # int64 first column of each panel


def panels_of(w: np.ndarray) -> Panels:
    """Column panels of packed weight rows ``w`` (N, nw), any N (fewer than NP rows are padded)."""
    w = np.ascontiguousarray(w)
    flat, starts = pack_panels(np.ascontiguousarray(pad_rows(w, NP)))
    return Panels(w, flat, starts)


def gemm(a: np.ndarray, w: np.ndarray | Panels, k: int, parallel: bool = False) -> np.ndarray:
    """``k - 2*popcount(a_i ^ w_j)`` for packed rows ``a`` (M, nw) and ``w`` (N, nw) or its
    :class:`Panels`: int32 (M, N). Operands already validated by the caller."""
    m, nw = a.shape
    pan = w if isinstance(w, Panels) else panels_of(w)
    n = pan.rows.shape[0]
    a2 = np.ascontiguousarray(pad_rows(a, MR))
    mc, nc = a2.shape[0], max(n, NP)
    c = np.empty((mc, nc), dtype=np.int32)
    rbase = np.arange(mc, dtype=np.int64) * nw
    aoff = np.arange(nw, dtype=np.int64)
    run = drive_parallel if parallel else drive
    run(a2.reshape(-1), rbase, mc, aoff, pan.flat, pan.starts, nw, c.reshape(-1), nc, int(k))
    return c if (mc == m and nc == n) else np.ascontiguousarray(c[:m, :n])
