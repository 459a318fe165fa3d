"""float32/float64 convolution as an implicit GEMM over stride phases (no im2col copy).

float32 serves ``fp32.conv2d``; float64 serves exact integer convolution in ``int8.conv2d_int``
(integers below 2**53 add and multiply exactly in float64, whatever the summation order).

Algorithm (one image, one group; O_g = O/groups output channels, C_g input channels):

1. Pad the input and split it into ``sh x sw`` stride phases
   ``P[ph, c, i, j] = xpad[c, i*sh + rh, j*sw + rw]`` (only the phases some tap needs), each plane
   ``Hq x Wq`` with ``Hq = ceil(Hp/sh)``, ``Wq = ceil(Wp/sw)``. Tap ``(a, b)`` of a dilated, strided
   kernel reads phase ``((a*dh) % sh, (b*dw) % sw)`` at in-phase offset
   ``((a*dh)//sh, (b*dw)//sw)``, so every tap becomes a *stride-1* read. With stride 2 the two
   column phases of a row phase are filled together, channel by channel, with the input prefetched
   ahead (``_stride2_conv.pack_pairs``; 3x3 / 2: all four phases).
2. Index outputs by a flat position ``q = oh*Wq + ow`` on the phase grid. For a fixed
   ``k = (c, a, b)`` the needed inputs ``P[ph, c, oh + a', ow + b']`` over consecutive ``q`` are
   consecutive floats starting at ``boff[k] + q``: the convolution is a GEMM
   ``Y[o, q] = sum_k W[o, k] * B[boff[k] + q]`` whose B rows are shifted windows of the phase
   planes. The columns with ``ow >= OW`` (at most ``Wq - OW`` per row) are computed and dropped.
3. The GEMM runs as MR x NR register tiles (``_microkernel.py``) reading the weight tensor in
   place (row stride K = C_g*kh*kw). The tile family (8 x 3 vectors, 6 x 4 or 1 x 8) is chosen
   by ``choose_family`` from an issue model that counts padded columns. Depthwise convolutions
   (one input and one output channel per group) use a direct per-tap loop (``_task_dw``); 3x3
   depthwise ones with dilation 1 and stride <= 2 (MobileNet's) a fused path (``depthwise3x3``)
   that fills one channel's stride phases at a time (L1-resident) and keeps the nine taps of a
   vector in registers (9 loads and 1 store per 16 outputs instead of 9 + 18).
   Tiles are scattered to NCHW with the bias added; when the phase grid equals the output grid
   (``Wq == OW``: unpadded 1x1 convs) full tiles are written in place.

FLOP count of the work done: ``2 * O * K * 16 * ceil(OH*Wq / 16)`` (float32) vs. ``2*O*K*OH*OW``
useful: the last column tile of a row of tiles takes a 1- or 2-vector kernel (``_mk_narrow``)
instead of a whole 3- or 4-vector one, and stride-1 rows share their padding (``Wq = W + pw``,
:func:`shared_pad_width`), so the overhead is ``Wq/OW`` (1.8 % at 56x56, 3.6 % at 28x28, 7 % at
14x14 with 3x3 / pad 1; with the full padded width and whole tiles it was 5.7 %, 10 % and 22 %)
plus at most 15 columns. Numba caches the compiled functions of this file keyed on a hash of this
file's bytes only (numba 0.68; touching it is not enough): after editing ``_microkernel.py``,
``_conv_tiles.py``, ``_stride2.py`` or ``_stride2_conv.py``, bump :data:`DEPS_REVISION`.

``conv_serial`` and ``conv_parallel`` are distinct compiled functions (a ``cache=True`` entry is
keyed on the function, not on ``parallel=``); both call the same per-task functions.
Scratch buffers (phase planes, tiles) are reused per thread (``_workspace``).

Per-call Python is kept short because a network's layer runs with cold caches, where every interpreted
step costs several times its warm time: what depends on the shapes alone (plan, tap offsets, tile family,
the drivers' scalars) is computed once per geometry (:func:`layout`, cached), the drivers take their 16
scalars as one int64 array (``geo``: Numba's dispatch of the former 28 arguments took 22 us cold, of 8
arguments 12 us), and the slack zeroing and reshapes happen in compiled code. ``fp32.conv2d`` up to the
driver call, with every cache flushed: 100 -> 34 us (warm: 18 -> 4 us); on ResNet-18's layers run
round-robin (``benchmarks/bench_conv.py``) these changes took 50-100 us off every layer
(docs/targets/kernels.md, "Cold layers").
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from numba import njit, prange

from hwsim.cache import on_clear
from hwsim.kernels._conv_tiles import _mk_narrow, _mk_rows, _scatter, choose_family, choose_row_family, lanes_of
from hwsim.kernels._dwconv import depthwise3x3  # noqa: F401  (re-exported: the fused depthwise path)
from hwsim.kernels._microkernel import FAMILIES
from hwsim.kernels._stride2_conv import pack_pairs


def plan(h: int, w: int, kh: int, kw: int, stride, padding, dilation):
    """Geometry of the phase decomposition; pure Python (ints and small int64 arrays)."""
    sh, sw = stride
    ph_, pw_ = padding
    dh, dw = dilation
    hp, wp = h + 2 * ph_, w + 2 * pw_
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    hq, wq = -(-hp // sh), -(-wp // sw)
    phases: list[tuple[int, int]] = []
    for a in range(kh):
        for b in range(kw):
            key = ((a * dh) % sh, (b * dw) % sw)
            if key not in phases:
                phases.append(key)
    ph_rh = np.array([p[0] for p in phases], dtype=np.int64)
    ph_rw = np.array([p[1] for p in phases], dtype=np.int64)
    return oh, ow, hq, wq, phases, ph_rh, ph_rw


def shared_pad_width(w: int, kw: int, stride, padding, dilation, wq: int) -> int:
    """Plane row stride ``W + pw`` (not ``W + 2*pw``) of a stride-1 convolution whose rows share their
    padding: the right padding of a row is read from the left padding of the next (both zero; a plane's
    last row reads the next plane's left padding or the zeroed slack); exact when ``1 <= pw <=
    (kw - 1)*dw`` (``OW <= W + pw``). 3x3 / pad 1: 1 dropped column per row instead of 2."""
    pw = padding[1]
    if stride[0] == 1 and stride[1] == 1 and 1 <= pw <= (kw - 1) * dilation[1]:
        return w + pw
    return wq


def tap_offsets(cg: int, kh: int, kw: int, hq: int, wq: int, stride, dilation, phases, n_chan: int):
    """``boff[k]`` for ``k = (c*kh + a)*kw + b`` (the flattening of a weight row), group 0."""
    sh, sw = stride
    dh, dw = dilation
    index = {p: i for i, p in enumerate(phases)}
    tap = np.empty((kh, kw), dtype=np.int64)
    plane = hq * wq
    for a in range(kh):
        for b in range(kw):
            p = index[((a * dh) % sh, (b * dw) % sw)]
            tap[a, b] = p * n_chan * plane + ((a * dh) // sh) * wq + (b * dw) // sw
    chan = np.arange(cg, dtype=np.int64) * plane
    return (chan[:, None] + tap.reshape(1, -1)).reshape(-1)


@njit(cache=True, inline="always")
def _col_range(rw, pw, sw, w, wq):
    """Phase columns ``[j_lo, j_hi)`` whose input column ``j*sw + rw - pw`` lies in ``[0, w)``."""
    j_lo = min(wq, max(0, (pw - rw + sw - 1) // sw))
    j_hi = max(j_lo, min(wq, (w - 1 + pw - rw) // sw + 1))
    return j_lo, j_hi


@njit(cache=True, inline="always")
def _pack_row(xf, P, row, src, wq, sw, j_lo, j_hi, skip_lo, skip_hi, zero_edges):
    """One phase row: zeros outside ``[j_lo, j_hi)`` (if ``zero_edges``), input
    ``xf[src + (j - j_lo)*sw]`` inside, except ``[skip_lo, skip_hi)`` which the caller fills.
    Indices are uint64 (see ``_conv_tiles._scatter``)."""
    zero = P.dtype.type(0)
    row = np.uint64(row)
    if zero_edges:
        for j in range(np.uint64(j_lo)):
            P[row + j] = zero
        for j in range(np.uint64(j_hi), np.uint64(wq)):
            P[row + j] = zero
    ssw = np.uint64(sw)
    src = np.uint64(src)
    for j in range(np.uint64(j_lo), np.uint64(skip_lo)):
        P[row + j] = xf[src + (j - np.uint64(j_lo)) * ssw]
    for j in range(np.uint64(skip_hi), np.uint64(j_hi)):
        P[row + j] = xf[src + (j - np.uint64(j_lo)) * ssw]


@njit(cache=True)
def _pack_phases(x, P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw, pairs):
    """Fill ``P[(p*C + c)*hq*wq + i*wq + j]`` from one image ``x[C, H, W]`` (zeros outside).

    With stride 2 the column phases 0 and 1 of the same row phase (``pairs``, see :class:`Layout`) are
    filled together (``_stride2_conv.pack_pairs``: masked vector loads, shuffles and masked stores of
    whole rows; a lone stride-2 read does not vectorise). Planes with short rows (``wq <= 64``) are zeroed
    whole first, which costs less than the per-row edge loops.
    """
    c_n, h, w = x.shape
    xf = x.reshape(-1)
    plane = hq * wq
    done = np.zeros(ph_rh.size, dtype=np.bool_)
    for t in range(pairs.shape[0]):
        done[pairs[t, 0]] = done[pairs[t, 1]] = True
    if pairs.shape[0]:
        pack_pairs(x, P, pairs, sh, ph, pw, hq, wq)
    zero = P.dtype.type(0)
    for p in range(ph_rh.size):
        if done[p]:
            continue
        lo0, hi0 = _col_range(ph_rw[p], pw, sw, w, wq)
        short = wq <= 64
        for c in range(c_n):
            if short:
                for j in range(np.uint64(plane)):
                    P[np.uint64((p * c_n + c) * plane) + j] = zero
            for i in range(hq):
                hi = i * sh + ph_rh[p] - ph
                row0 = (p * c_n + c) * plane + i * wq
                if short and (hi < 0 or hi >= h):
                    continue
                if hi < 0 or hi >= h:
                    for j in range(np.uint64(wq)):
                        P[np.uint64(row0) + j] = zero
                    continue
                src_row = (c * h + hi) * w
                _pack_row(xf, P, row0, src_row + lo0 * sw + ph_rw[p] - pw, wq, sw, lo0, hi0,
                          lo0, lo0, not short)


@njit(cache=True)
def _task(fam, nr, gi, c0, c1, P, w, boff, bias, has_bias, out, tile, mg, k, b_group, wq, oh_n,
          ow_n):
    """All output channels of group ``gi`` for column tiles ``c0 <= nt < c1`` (``nr`` wide each).

    Each micro-kernel call runs the whole K loop (the B panel, K rows x nr floats, is re-read
    from L1/L2 by every row block; splitting K into L1-sized blocks measured no faster). Results
    go to ``tile`` (``mg`` rows of ``ldt = (c1 - c0) * nr`` floats), scattered to NCHW once per
    task in long row segments. When the phase grid equals the output grid (``wq == ow_n``, e.g.
    unpadded 1x1 convs) every full column tile is written straight into ``out`` instead.
    """
    ldt = (c1 - c0) * nr
    nflat = oh_n * wq
    direct = wq == ow_n
    nl = lanes_of(P)
    for nt in range(c0, c1):
        q0 = nt * nr
        b0 = q0 + gi * b_group
        to_out = direct and q0 + nr <= nflat
        dst = out if to_out else tile
        ld = nflat if to_out else ldt
        nv = (min(nr, nflat - q0) + nl - 1) // nl  # vectors this column tile needs
        i = 0
        while i < mg:
            o = gi * mg + i
            d0 = o * nflat + q0 if to_out else i * ldt + (nt - c0) * nr
            if nv < 3 or (fam == 1 and nv == 3):
                i += _mk_narrow(nv, mg - i, w, o * k, k, P, b0, boff, 0, k, dst, d0, ld, False)
            else:
                i += _mk_rows(fam, mg - i, w, o * k, k, P, b0, boff, 0, k, dst, d0, ld, False)
    q_full = min(c1 * nr, (nflat // nr) * nr) if direct else c0 * nr  # end of in-place tiles
    for i in range(mg):
        o = gi * mg + i
        bv = bias[o] if has_bias else bias[0]
        if has_bias:
            for q in range(o * nflat + c0 * nr, o * nflat + q_full):
                out[q] += bv
        if c1 * nr > q_full:  # tiles that went through the tile buffer
            _scatter(tile, i * ldt + (q_full - c0 * nr), out, o, bv, q_full, c1 * nr - q_full,
                     wq, oh_n, ow_n)


@njit(cache=True)
def _task_rows(fam, nr, gi, c0, c1, P, w, boff, bias, has_bias, out, mg, k, b_group, wq, oh_n, ow_n):
    """:func:`_task` with column tiles aligned to output rows (``ow_n`` a multiple of the vector
    lanes): tile ``nt`` covers columns ``seg*nr ..`` of output row ``oh`` (``tpr`` tiles per row, the
    last one narrow), read at ``oh*wq + seg*nr`` on the phase grid and written straight into ``out``
    (no dropped columns computed, no scatter). Used where ``ow_n % lanes == 0`` and ``wq > ow_n``
    (ResNet's 7x7/2 stem: OW = 112, Wq = 115)."""
    tpr = (ow_n + nr - 1) // nr
    nout = oh_n * ow_n
    nl = lanes_of(P)
    for nt in range(c0, c1):
        oh = nt // tpr
        col = (nt - oh * tpr) * nr
        b0 = oh * wq + col + gi * b_group
        nv = (min(nr, ow_n - col) + nl - 1) // nl
        i = 0
        while i < mg:
            o = gi * mg + i
            d0 = o * nout + oh * ow_n + col
            if nv < 3 or (fam == 1 and nv == 3):
                i += _mk_narrow(nv, mg - i, w, o * k, k, P, b0, boff, 0, k, out, d0, nout, False)
            else:
                i += _mk_rows(fam, mg - i, w, o * k, k, P, b0, boff, 0, k, out, d0, nout, False)
    if has_bias:
        lo = (c0 // tpr) * ow_n + (c0 % tpr) * nr
        hi = (c1 // tpr) * ow_n + (c1 % tpr) * nr
        for i in range(mg):
            o = gi * mg + i
            for q in range(o * nout + lo, o * nout + hi):
                out[q] += bias[o]


@njit(cache=True)
def _task_dw(c, c0, c1, nr, P, w, boff, bias, has_bias, out, tile, b_group, wq, oh_n, ow_n, k):
    """Depthwise channel ``c`` (one input, one output channel) over flat positions
    ``[c0*nr, min(c1*nr, OH*Wq))``: ``tile[q] = sum_t w[c, t] * P[boff[t] + c*plane + q]``.

    A direct loop over the flat block per tap (long, contiguous, vectorised; the block stays in
    L1), then one scatter. It avoids the per-call overhead of a 1-row micro-kernel, which
    dominates on small maps (K = 9).
    """
    q0 = c0 * nr
    n_out = min(c1 * nr, oh_n * wq) - q0
    # round up to whole vectors (no scalar remainder loop); P's slack and the tile (nr, a
    # multiple of 16) cover the extra positions, which the scatter ignores
    n = np.uint64(min(nr, (n_out + 15) // 16 * 16))
    base = np.uint64(c * b_group + q0)
    for t in range(k):
        wv = w[c * k + t]
        src = base + np.uint64(boff[t])
        if t == 0:
            for q in range(n):
                tile[q] = wv * P[src + q]
        else:
            for q in range(n):
                tile[q] += wv * P[src + q]
    bv = bias[c] if has_bias else bias[0]
    _scatter(tile, 0, out, c, bv, q0, n_out, wq, oh_n, ow_n)


@njit(cache=True, inline="always")
def _zero_slack(P, start):
    """Zero ``P[start:]``, the slack after the packed planes (see ``conv2d_gemm``)."""
    for j in range(np.uint64(start), np.uint64(P.size)):
        P[j] = 0


GEO = ("groups", "mg", "k", "cg", "sh", "sw", "ph", "pw", "hq", "wq", "oh", "ow", "fam", "nr", "tpt", "row_tiles")


@njit(cache=True, inline="always")
def _geo(geo):
    """The scalars of ``geo`` (int64, in the order of :data:`GEO`) as a tuple: one array argument instead of
    16 integers (Numba's dispatch of a 28-argument call: 22 us with cold caches, 12 us for 8 arguments)."""
    return (geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8], geo[9], geo[10], geo[11],
            geo[12], geo[13], geo[14], geo[15] != 0)


@njit(cache=True)
def conv_serial(x, w4, bias, has_bias, out4, P, tile, boff, ph_rh, ph_rw, pairs, geo):
    """Serial convolution of each image ``x[n]`` into ``out4[n]`` ([N, O, OH, OW]); ``w4`` [O, C_g, kh, kw].

    Tasks are (group, run of ``tpt`` column tiles of width ``nr``, micro-kernel family ``fam``);
    ``tile`` (at least ``mg * tpt * nr`` elements) is the caller's scratch buffer.
    """
    groups, mg, k, cg, sh, sw, ph, pw, hq, wq, oh_n, ow_n, fam, nr, tpt, row_tiles = _geo(geo)
    w = w4.reshape(-1)
    n_nt = oh_n * ((ow_n + nr - 1) // nr) if row_tiles else (oh_n * wq + nr - 1) // nr
    n_ch = (n_nt + tpt - 1) // tpt
    b_group = cg * hq * wq
    _zero_slack(P, ph_rh.size * x.shape[1] * hq * wq)
    for n in range(x.shape[0]):
        _pack_phases(x[n], P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw, pairs)
        on = out4[n].reshape(-1)
        for t in range(groups * n_ch):
            gi = t // n_ch
            c0 = (t - gi * n_ch) * tpt
            if fam == FAM_DW:
                _task_dw(gi, c0, min(c0 + tpt, n_nt), nr, P, w, boff, bias, has_bias, on, tile,
                         b_group, wq, oh_n, ow_n, k)
            elif row_tiles:
                _task_rows(fam, nr, gi, c0, min(c0 + tpt, n_nt), P, w, boff, bias, has_bias, on, mg, k,
                           b_group, wq, oh_n, ow_n)
            else:
                _task(fam, nr, gi, c0, min(c0 + tpt, n_nt), P, w, boff, bias, has_bias, on,
                      tile, mg, k, b_group, wq, oh_n, ow_n)


@njit(cache=True, parallel=True)
def conv_parallel(x, w4, bias, has_bias, out4, P, tile_unused, boff, ph_rh, ph_rw, pairs, geo):
    """Same as ``conv_serial`` with the tasks of each image spread over threads by prange
    (each task allocates its own tile)."""
    groups, mg, k, cg, sh, sw, ph, pw, hq, wq, oh_n, ow_n, fam, nr, tpt, row_tiles = _geo(geo)
    w = w4.reshape(-1)
    n_nt = oh_n * ((ow_n + nr - 1) // nr) if row_tiles else (oh_n * wq + nr - 1) // nr
    n_ch = (n_nt + tpt - 1) // tpt
    b_group = cg * hq * wq
    _zero_slack(P, ph_rh.size * x.shape[1] * hq * wq)
    for n in range(x.shape[0]):
        _pack_phases(x[n], P, sh, sw, ph, pw, hq, wq, ph_rh, ph_rw, pairs)
        on = out4[n].reshape(-1)
        for t in prange(groups * n_ch):
            tile = np.empty(mg * tpt * nr, dtype=P.dtype)
            gi = t // n_ch
            c0 = (t - gi * n_ch) * tpt
            if fam == FAM_DW:
                _task_dw(gi, c0, min(c0 + tpt, n_nt), nr, P, w, boff, bias, has_bias, on, tile,
                         b_group, wq, oh_n, ow_n, k)
            elif row_tiles:
                _task_rows(fam, nr, gi, c0, min(c0 + tpt, n_nt), P, w, boff, bias, has_bias, on, mg, k,
                           b_group, wq, oh_n, ow_n)
            else:
                _task(fam, nr, gi, c0, min(c0 + tpt, n_nt), P, w, boff, bias, has_bias, on,
                      tile, mg, k, b_group, wq, oh_n, ow_n)


DEPS_REVISION = 5  # of the compiled code this file's functions inline from other files (docstring)
TILE_BYTES = 256 * 1024  # accumulator tile budget per task (L2-resident)
FAM_DW = len(FAMILIES)  # pseudo-family: depthwise direct loop (``_task_dw``)
DW_BLOCK_BYTES = 8 * 1024  # flat block of a depthwise task (L1-resident)


_LOCAL = threading.local()
WORKSPACE_MAX_BYTES = 64 * 2**20  # larger phase buffers are allocated per call


def _workspace(slot: str, size: int, dtype) -> np.ndarray:
    """A per-thread scratch buffer (``slot``: "planes" or "tile"), reused across calls.

    Reuse avoids first-touch page faults on every call: buffers of 128 KiB and more come from
    mmap and are returned to the OS on free, so a fresh one faults in every page again (~50 us
    per MB here, several times more when the machine is loaded). Callers overwrite the buffer
    before reading it. Buffers above WORKSPACE_MAX_BYTES are not kept.
    """
    dtype = np.dtype(dtype)
    if size * dtype.itemsize > WORKSPACE_MAX_BYTES:
        return np.empty(size, dtype=dtype)
    cache = getattr(_LOCAL, "buffers", None)
    if cache is None:
        cache = _LOCAL.buffers = {}
    buf = cache.get((slot, dtype))
    if buf is None or buf.size < size:
        grown = min(2 * (0 if buf is None else buf.size), WORKSPACE_MAX_BYTES // dtype.itemsize)
        buf = cache[(slot, dtype)] = np.empty(max(size, grown), dtype=dtype)
    return buf[:size]


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """What :func:`conv2d_gemm` derives from the shapes alone (counts are elements or tiles of one image;
    compared by identity: it holds arrays)."""

    oh: int  # output rows
    ow: int  # output columns
    hq: int  # phase plane rows
    wq: int  # phase plane row stride (elements)
    ph_rh: np.ndarray  # int64 [phases]: row phase of each plane (read-only)
    ph_rw: np.ndarray  # int64 [phases]: column phase of each plane (read-only)
    k: int  # GEMM depth C_g*kh*kw
    fam: int  # tile family (index into FAMILIES, or FAM_DW)
    nr: int  # columns per column tile
    row_tiles: bool  # column tiles aligned to output rows (_task_rows)
    n_nt: int  # column tiles per group
    boff: np.ndarray  # int64 [k]: B row offset of each k (read-only)
    n_packed: int  # elements of the packed phase planes
    pairs: np.ndarray  # int64 [pairs, 3]: planes of column phases 0 and 1, row phase (stride 2; read-only)
    tpt: int  # column tiles per task of the serial driver
    geo: np.ndarray  # int64 [len(GEO)]: the serial driver's scalars (read-only)


_NO_BIAS: dict = {}  # dtype -> the zero bias array passed when there is none (never written)


@lru_cache(maxsize=256)
def layout(c: int, h: int, wd: int, w_shape, stride, padding, dilation, groups: int, itemsize: int,
           chooser) -> Layout:
    """The :class:`Layout` of a convolution, cached: plan, tap offsets and family choice cost 15-25 us of
    Python per call hot, about 80 us when a network's other layers have run in between (measured on
    ResNet-18's layers). ``chooser`` is :func:`choose_family` (a key, so that a test forcing a family by
    monkeypatching it gets its own entry)."""
    o, cg, kh, kw = w_shape
    nl = 64 // itemsize
    mg = o // groups
    oh, ow, hq, wq, phases, ph_rh, ph_rw = plan(h, wd, kh, kw, stride, padding, dilation)
    wq = shared_pad_width(wd, kw, stride, padding, dilation, wq)
    if mg == 1 and cg == 1:  # depthwise (multiplier 1)
        fam, nr = FAM_DW, DW_BLOCK_BYTES // itemsize
    else:
        fam = chooser(mg, oh * wq, nl)
        nr = FAMILIES[fam][0] * nl
    # row-aligned tiles (_task_rows) where output rows are whole vectors; 3- / 4-vector families only
    row_tiles = fam in (0, 1) and wq > ow and ow % nl == 0
    if row_tiles:
        fam = choose_row_family(mg, ow // nl)
        nr = FAMILIES[fam][0] * nl
    n_nt = oh * -(-ow // nr) if row_tiles else -(-(oh * wq) // nr)
    boff = tap_offsets(cg, kh, kw, hq, wq, stride, dilation, phases, c)
    pairs = np.array([(i, phases.index((rh, 1)), rh) for i, (rh, rw) in enumerate(phases)
                      if stride[1] == 2 and rw == 0 and (rh, 1) in phases], dtype=np.int64).reshape(-1, 3)
    tpt = 1 if fam == FAM_DW else max(1, min(n_nt, TILE_BYTES // (itemsize * mg * nr)))
    geo = np.array([groups, mg, cg * kh * kw, cg, *stride, *padding, hq, wq, oh, ow, fam, nr, tpt, row_tiles],
                   dtype=np.int64)
    for a in (ph_rh, ph_rw, boff, pairs, geo):
        a.flags.writeable = False
    return Layout(oh, ow, hq, wq, ph_rh, ph_rw, cg * kh * kw, fam, nr, row_tiles, n_nt, boff,
                  len(phases) * c * hq * wq, pairs, tpt, geo)


on_clear(layout.cache_clear)  # hwsim.clear_caches() frees it too


def conv2d_gemm(x, w, b, stride, padding, dilation, groups, parallel: bool):
    """Validated C-contiguous arrays of one float dtype in, ``[N, O, OH, OW]`` of it out."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    dt = x.dtype
    mg = o // groups
    if mg == 1 and cg == 1 and (kh, kw) in ((3, 3), (5, 5)) and tuple(dilation) == (1, 1) and max(stride) <= 2:
        return depthwise3x3(x, w, b, stride, padding, parallel)
    g = layout(c, h, wd, w.shape, tuple(stride), tuple(padding), tuple(dilation), groups, dt.itemsize,
               choose_family)
    # B reads reach at most one plane plus one column tile past the last plane's start; the
    # slack after the packed planes must be finite (it only feeds discarded columns): the compiled
    # drivers zero it (_zero_slack; a numpy slice assignment here cost about 10 us cold).
    P = _workspace("planes", g.n_packed + g.n_nt * g.nr + g.hq * g.wq, dt)
    out = np.empty((n, o, g.oh, g.ow), dtype=dt)
    has_bias = b is not None
    bias = b if has_bias else _NO_BIAS.get(dt)
    if bias is None:
        bias = _NO_BIAS[dt] = np.zeros(1, dtype=dt)
    if parallel:  # leave enough tasks for the threads
        geo = g.geo.copy()
        geo[GEO.index("tpt")] = max(1, min(g.tpt, -(-g.n_nt * groups // (4 * numba.get_num_threads()))))
        conv_parallel(x, w, bias, has_bias, out, P, P, g.boff, g.ph_rh, g.ph_rw, g.pairs, geo)
    else:
        tile = _workspace("tile", mg * g.tpt * g.nr, dt)
        conv_serial(x, w, bias, has_bias, out, P, tile, g.boff, g.ph_rh, g.ph_rw, g.pairs, g.geo)
    return out
