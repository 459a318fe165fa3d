"""Stride-2 phase planes of a convolution whose stride phases come in column pairs (3x3 / 2, as in ResNet's
down-sampling blocks), filled from an input that comes cold from DRAM (``_conv._pack_phases``).

The implicit GEMM of ``_conv.py`` reads the phase planes ``P[(p*C + c)*hq*wq + i*wq + j] = xpad[c, 2i + rh_p,
2j + rw_p]``; the column phases 0 and 1 of a row phase are de-interleaved together (``_stride2.deinterleave2_rows``:
one masked load of 64 floats, two shuffles and two masked stores per 32 column pairs), ``pairs[t] = (plane of
column phase 0, plane of column phase 1, row phase)``. :func:`pack_pairs` fills them channel by channel (every
row phase of a channel while its rows are in L1) and prefetches the input ``PREFETCH_BYTES`` ahead of the
channel it fills (``_dwconv_small.prefetch``: whole channel planes).

Why the prefetch: in a network the input of a layer has left the caches by the time the layer runs, and the
fill is a stream of loads with little work between them, which the hardware prefetchers did not keep ahead of
(stride-2 rows, one channel plane of 3-12 KB at a time). ResNet-18's layers run round-robin as in
``benchmarks/bench_conv.py`` (one thread, Zen 5 host): layer2.0.conv1's 64 x 56 x 56 input took 125-150 us to
fill (24 us with the input in cache), 80-110 us prefetched 2 planes (25 KB) ahead (1 plane: about 110 us;
4-8 planes: no better);
128 x 28 x 28: 85-95 -> 60-75 us. With the input in cache the fill takes the time it took before (24 and
20 us); the channel order alone (without the prefetch) changed nothing cold.

Tried and not kept (same round-robin, A/B in one process): filling the planes tile by tile just ahead of the
GEMM, with the next tile's input rows prefetched between micro-kernel calls, so that the DRAM reads overlap
FMAs: 0.75 against 0.86 ms on layer2.0.conv1 with every cache flushed before each call, but within noise
round-robin and 17-32 us slower with the input in cache (2,000 short de-interleave calls instead of 128);
per-(row phase, column tap) planes of width OW (no dropped columns, 3 planes per row phase instead of 2):
GEMM 4-5 % faster in cache, slower cold (1.45x the planes to fill).

Numba caches ``_conv.py``'s compiled functions keyed on a hash of that file's bytes only: after editing
this file, bump ``_conv.DEPS_REVISION``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.kernels._dwconv_small import prefetch
from hwsim.kernels._stride2 import deinterleave2_rows

PREFETCH_BYTES = 32 * 1024  # input prefetched ahead of the channel being filled, in whole channel planes


@njit(cache=True)
def pack_pairs(x, P, pairs, sh, ph, pw, hq, wq):
    """Both planes of every pair, every channel of ``x[C, H, W]``: the rows inside the input by one
    ``deinterleave2_rows`` call per channel and pair, the padding rows zeroed; the input plane of channel
    ``c + ahead`` prefetched while channel ``c`` is filled."""
    c_n, h, w = x.shape
    xf = x.reshape(-1)
    plane = hq * wq
    zero = P.dtype.type(0)
    ahead = max(1, PREFETCH_BYTES // (h * w * xf.itemsize))  # channels
    for c in range(min(ahead, c_n)):
        prefetch(xf, c * h * w, h * w)
    for c in range(c_n):
        if c + ahead < c_n:
            prefetch(xf, (c + ahead) * h * w, h * w)
        for t in range(pairs.shape[0]):
            p, q, rh = pairs[t, 0], pairs[t, 1], pairs[t, 2]
            i_lo = min(hq, max(0, (ph - rh + sh - 1) // sh))  # phase rows [i_lo, i_hi) lie inside the input
            i_hi = max(i_lo, min(hq, (h - 1 + ph - rh) // sh + 1))
            for pl in (p, q):
                base = np.uint64((pl * c_n + c) * plane)
                for j in range(np.uint64(i_lo * wq)):
                    P[base + j] = zero
                for j in range(np.uint64(i_hi * wq), np.uint64(plane)):
                    P[base + j] = zero
            src = (c * h + i_lo * sh + rh - ph) * w
            deinterleave2_rows(xf, src, w, -pw, P, (p * c_n + c) * plane + i_lo * wq,
                               (q * c_n + c) * plane + i_lo * wq, wq, i_hi - i_lo, sh * w, wq)
