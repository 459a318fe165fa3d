"""Weight panels of the register-tiled GEMM micro-kernels: the rows of a weight matrix regrouped ``width`` output
columns at a time, word-major, so a micro-kernel streams one contiguous panel per k step (the binary GEMM's uint64
bit words, the VNNI GEMM's int32 byte quads)."""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["pack_panels_of_width", "pad_rows"]



@njit(cache=True, inline="always")
def row_start(b, nblk, m, mr):
    """First row of row block ``b`` of ``nblk`` blocks of ``mr`` rows over ``m >= mr`` rows: the last block starts
    at ``m - mr`` and overlaps the one before (its rows are recomputed with the same values)."""
    return m - mr if b == nblk - 1 else b * mr


@njit(cache=True)
def pack_panels_of_width(w, width):
    """(N, nw) packed rows (any dtype: uint64 bit words here, int32 byte quads for the VNNI GEMM) -> (flat panels of
    that dtype, panel start columns), N >= ``width``. Panel ``p`` holds
    columns ``starts[p] .. starts[p] + width`` word-major: ``flat[(p*nw + t)*width + j] = w[starts[p] + j, t]``."""
    n, nw = w.shape
    npan = (n + width - 1) // width
    starts = np.empty(npan, np.int64)
    flat = np.empty(npan * nw * width, w.dtype)
    for p in range(npan):
        s = min(p * width, n - width)
        starts[p] = s
        base = p * nw * width
        for j in range(width):
            for t in range(nw):
                flat[base + t * width + j] = w[s + j, t]
    return flat, starts


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` (R, ...) with zero rows appended up to ``rows`` (unchanged when R >= rows): a matrix too small for a
    whole panel or register tile."""
    if x.shape[0] >= rows:
        return x
    out = np.zeros((rows,) + x.shape[1:], dtype=x.dtype)
    out[:x.shape[0]] = x
    return out
