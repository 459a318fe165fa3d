"""The fused 3x3 and 5x5 depthwise convolutions (dilation 1, stride <= 2: MobileNet's and EfficientNet's
depthwise layers; the generic depthwise loop ran 5x5 at 0.15-0.73x torch: docs/targets/kernels.md, "Tile choices").

Split out of :mod:`hwsim.kernels._conv`, which dispatches to :func:`depthwise3x3` (and re-exports it). Per channel:

1. *fill*: the channel's ``sh * sw`` stride phases, zero padding included, go into a flat buffer with row
   pitch ``wq`` (:func:`row_pitch`): ``buf[(rh*sw + rw)*plane + i*wq + m] = xpad[i*sh + rh, m*sw + rw]``.
   Rows share their zero padding (a tap reading past a row's end lands in the next row's leading zeros), so
   a 5x5 / pad-2 map W wide has pitch W + 2 instead of W + 4: fewer junk columns per vector.
2. *taps* (:func:`make_taps`, LLVM IR): ``tile[q] = sum_t w[c, t] * buf[off_t + q]`` over flat positions
   ``q = oh*wq + ow``, one vector of ``q`` at a time; tap ``t = (a, b)`` reads phase ``(a % sh, b % sw)`` at
   in-phase offset ``(a // sh, b // sw)``.
3. *store*: the OW valid columns of the OH rows (+ bias) are copied out (``_rowcopy``).

Small maps (5x5 kernels up to 28x28 maps, 3x3 up to 7x7) go, in whole blocks of 16 float32 channels, through
:mod:`hwsim.kernels._dwconv_small` instead, which vectorises across channels (no junk lanes, no per-channel
set-up); the channels left over, and every channel of larger maps, take the per-channel path above.

Small planes are software-pipelined over two buffer and two tile slots (fill channel i+1, taps of
channel i, store channel i-1), so that no vector load reads data that stores wrote a few cycles before (a
load partly overlapping a pending store cannot be forwarded and waits for it), and their input planes are
prefetched three channels ahead. Measured on the Zen 5 host (us, one thread; 1152 channels 7x7 5x5 /
672 channels 14x14 5x5): the former Numba tap loop with one slot 126 / 167, this 75 / 95. Numba's loop
carried one runtime alias check per tap and spilled the tap pointers, some 200 cycles per channel before
the first vector of a 4-vector map.

Numba caches this file's functions keyed on this file only: after editing the code generators they inline
(``_rowcopy.py``, ``_stride2.py``, ``_dwconv_small.prefetch``), touch this file.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from hwsim.kernels._dwconv_small import dw_blocked, dw_blocked_parallel, prefetch
from hwsim.kernels._rowcopy import copy_rows
from hwsim.kernels._stride2 import deinterleave2_rows, deinterleave2_rows16

__all__ = ["depthwise3x3"]

# Input planes of at most PREFETCH_MAX_BYTES are prefetched PREFETCH_AHEAD channels before their fill (672
# channels 14x14 5x5 stride 2, torch-interleaved: 86 -> 69 us); larger ones are not: three 56x56 planes
# ahead fill most of L1 and gained nothing (144 channels 56x56 3x3 stride 2: 124 us without, 131 with).
PREFETCH_AHEAD = 3
PREFETCH_MAX_BYTES = 4096
# Input rows wider than this are filled by plain (LLVM-vectorised) loops, narrower ones by masked vector
# copies (_rowcopy, _stride2). Measured (us, 144 channels 56x56 3x3 stride 2, input not in cache): masked
# 285-310, plain 193-198; at 14x14 the plain loops run mostly in their scalar remainders (672 channels
# 5x5 stride 2: plain 155, masked 114).
WIDE = 32
# Two buffer slots (the fill one channel ahead of the taps) only while a slot is this small: larger planes
# gain nothing from it (their taps take long enough) and two slots crowd the 48 KiB L1 (144 channels 56x56
# 3x3 stride 2, input not in cache: 240 us with two slots of 14 KiB, 200 us with one).
PIPELINE_MAX_BYTES = 8 * 1024
# Maps whose zero-padded position grid for one block of channels (16 float32 channels per position) takes
# at most BLOCK_MAX_BYTES[k] run vectorised across channels (_dwconv_small), whole blocks of channels only:
# 5x5 up to 28x28 maps, 3x3 up to 7x7. bench_conv's interleaving, ratio to torch (median, two runs each),
# per-channel -> blocks: 5x5 1152@7 1.02/1.09 -> 1.28/1.27, 672@14 1.12/1.41 -> 1.25/1.37, 672@14 stride 2
# 1.11/1.14 -> 1.25/1.25, 240@28 1.04/1.20 -> 1.25/1.22; 3x3 960@7 1.61/1.70 -> 1.97/2.00, but 576@14
# 1.83/2.11 -> 1.64/1.59 (nine taps per position pay less for the transposes than 25 do).
BLOCK_MAX_BYTES = {3: 8 * 1024, 5: 96 * 1024}


def _row_sum(builder, fma, wv, xs):
    """``sum_b wv[b] * xs[b]`` as one FMA chain in ``b`` order."""
    acc = builder.fmul(wv[0], xs[0])
    for w_b, x_b in zip(wv[1:], xs[1:]):
        acc = builder.call(fma, [w_b, x_b, acc])
    return acc


def _tree_sum(builder, vals):
    """Pairwise sum ``(v0 + v1) + (v2 + v3) + ...``."""
    while len(vals) > 1:
        vals = [builder.fadd(vals[i], vals[i + 1]) if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


def make_taps(k: int, sw: int):
    """Intrinsic ``taps(buf, base, roff, w, w0, tile, t0, nv)`` for a ``k`` x ``k`` kernel, column stride ``sw``:
    for ``v < nv`` (``lanes`` = 16 float32 / 8 float64, ``q = v*lanes + l``)

        tile[t0 + q] = sum_a (sum_b w[w0 + a*k + b] * buf[base + roff[a*sw + b % sw] + b // sw + q])

    ``roff`` (int64, ``k*sw`` entries): buffer offset of tap row ``a`` in column phase ``b % sw``. Each inner
    sum is an ``llvm.fma`` chain in ``b`` order (k independent chains per vector instead of one k*k long);
    the row sums are added pairwise. Loads: each tap row's vector at ``q`` is the one loaded at ``q + lanes``
    in the previous step, the column shifts ``b // sw > 0`` are two-vector shuffles (``valignd``) of it and
    the next one: ``k*sw`` vector loads per output vector instead of ``k*k`` (most of them split across
    cache lines). The caller guarantees that every index, including ``lanes`` past the last vector of
    each tap row, is inside ``buf`` / ``tile``."""

    def taps(typingctx, buf, base, roff, w, w0, tile, t0, nv):
        arrays = (buf, w, tile)
        if not (all(isinstance(a, types.Array) and a.layout == "C" for a in arrays + (roff,))
                and len({a.dtype for a in arrays}) == 1 and buf.dtype in (types.float32, types.float64)
                and roff.dtype == types.int64):
            return None
        ip = types.intp
        return types.void(buf, ip, roff, w, ip, tile, ip, ip), lambda *a: _taps_codegen(k, sw, *a)

    taps.__name__ = f"dw_taps{k}_s{sw}"
    return intrinsic(taps)


def _taps_codegen(k, sw, context, builder, signature, args):
    """IR of :func:`make_taps`' intrinsic."""
    buf_a, base_, roff_a, w_a, w0_, tile_a, t0_, nv_ = args
    i32, i64 = ir.IntType(32), ir.IntType(64)
    is_f32 = signature.args[0].dtype == types.float32
    elt, lanes, align = (ir.FloatType(), 16, 4) if is_f32 else (ir.DoubleType(), 8, 8)
    vt = ir.VectorType(elt, lanes)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                         f"llvm.fma.v{lanes}{'f32' if is_f32 else 'f64'}")
    b_p, r_p, w_p, t_p = (context.make_array(signature.args[i])(context, builder, a).data
                          for i, a in ((0, buf_a), (2, roff_a), (3, w_a), (5, tile_a)))
    rows = [builder.gep(b_p, [builder.add(base_, builder.load(builder.gep(r_p, [ir.Constant(i64, j)])))])
            for j in range(k * sw)]
    splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    wv = [builder.shuffle_vector(builder.insert_element(
        ir.Constant(vt, ir.Undefined), builder.load(builder.gep(w_p, [builder.add(w0_, ir.Constant(i64, t))])),
        ir.Constant(i32, 0)), ir.Constant(vt, ir.Undefined), splat) for t in range(k * k)]
    shifts = [ir.Constant(ir.VectorType(i32, lanes), list(range(d, d + lanes))) for d in range(k)]

    def load(j, q, d):
        ptr = builder.gep(rows[j], [builder.add(q, ir.Constant(i64, d))])
        return builder.load(builder.bitcast(ptr, vt.as_pointer()), align=align)

    carry = {}  # tap rows read at column shifts > 0: the vector at q, carried from the previous step
    for j in range(k * sw):
        if (k - 1 - j % sw) // sw > 0:
            carry[j] = cgutils.alloca_once(builder, vt)
            builder.store(load(j, ir.Constant(i64, 0), 0), carry[j])
    with cgutils.for_range(builder, nv_) as loop:
        q = builder.mul(loop.index, ir.Constant(i64, lanes))
        cur, nxt = {}, {}
        for j, slot in carry.items():
            cur[j], nxt[j] = builder.load(slot), load(j, q, lanes)
            builder.store(nxt[j], slot)
        sums = []
        for a in range(k):
            xs = []
            for b in range(k):
                j, d = a * sw + b % sw, b // sw
                if j not in carry:
                    xs.append(load(j, q, 0))
                else:
                    xs.append(cur[j] if d == 0 else builder.shuffle_vector(cur[j], nxt[j], shifts[d]))
            sums.append(_row_sum(builder, fma, wv[a * k:(a + 1) * k], xs))
        dst = builder.gep(t_p, [builder.add(t0_, q)])
        builder.store(_tree_sum(builder, sums), builder.bitcast(dst, vt.as_pointer()), align=align)
    return context.get_dummy_value()


taps3_s1, taps3_s2, taps5_s1, taps5_s2 = make_taps(3, 1), make_taps(3, 2), make_taps(5, 1), make_taps(5, 2)


def row_pitch(w: int, k: int, sw: int, pw: int) -> int:
    """The smallest phase-row pitch ``wq`` for a map ``w`` wide, kernel ``k``, column stride ``sw``, padding
    ``pw``: the data columns of every phase fit in a row, and every tap read past a row's end (column
    ``m >= wq``, from an output column ``< OW``) lands in the next row's leading zero columns of that phase."""
    ow = (w + 2 * pw - k) // sw + 1
    full = -(-(w + 2 * pw) // sw)
    for pitch in range(ow, full):
        fits = True
        for rw in range(min(sw, k)):
            last = (pw + w - 1 - rw) // sw  # last data column of phase rw
            lead = max(0, -(-(pw - rw) // sw))  # leading zero columns of phase rw
            reach = ow - 1 + (k - 1 - rw) // sw  # last column a tap of phase rw reads
            fits = fits and last < pitch and reach < pitch + lead
        if fits:
            return pitch
    return full


@njit(cache=True, inline="always")
def _pairs(xf, src, sstride, buf, d0, plane, wq, nrows, w, pw):
    """``nrows`` input rows (``xf[src + r*sstride:]``, ``w`` wide) into their two column phases (rows of
    pitch ``wq`` from ``buf[d0]`` and ``buf[d0 + plane]``): input columns ``j, j+1`` (``j + pw`` even) go to
    phases 0 and 1 in one pass, which LLVM vectorises (a lone stride-2 read does not). The uint64 indices
    spare the wraparound checks."""
    j0 = pw % 2
    npair = (w - j0) // 2
    e0 = np.uint64((j0 + pw) // 2)
    for r in range(nrows):
        s = np.uint64(src + r * sstride)
        dd0 = np.uint64(d0 + r * wq)
        dd1 = dd0 + np.uint64(plane)
        for t in range(np.uint64(npair)):
            buf[dd0 + e0 + t] = xf[s + np.uint64(j0) + np.uint64(2) * t]
            buf[dd1 + e0 + t] = xf[s + np.uint64(j0 + 1) + np.uint64(2) * t]
        if j0 == 1:
            buf[dd1 + np.uint64(pw // 2)] = xf[s]
        if (w - j0) % 2:
            buf[dd0 + np.uint64((w - 1 + pw) // 2)] = xf[s + np.uint64(w - 1)]


@njit(cache=True, inline="always")
def _fill(xf, s0, h, w, buf, base, sh, sw, ph, pw, plane, wq):
    """The channel plane at ``xf[s0:]`` (H x W) into the stride phases at ``buf[base:]`` (interiors only: the
    zero borders were written once, they are the same for every channel)."""
    for rh in range(sh):
        i0 = max(0, -(-(ph - rh) // sh))  # first phase row holding an input row
        i1 = (h - 1 + ph - rh) // sh + 1
        if i1 <= i0:
            continue
        src = s0 + (i0 * sh + rh - ph) * w
        d0 = base + rh * sw * plane + i0 * wq
        if sw == 1 and w <= WIDE:
            copy_rows(xf, src, sh * w, buf, d0 + pw, wq, i1 - i0, w, 0.0)
        elif sw == 1:  # plain rows
            for r in range(i1 - i0):
                s = np.uint64(src + r * sh * w)
                dd = np.uint64(d0 + pw + r * wq)
                for t in range(np.uint64(w)):
                    buf[dd + t] = xf[s + t]
        elif wq <= 16:  # whole phase rows, zero columns included
            deinterleave2_rows16(xf, src, w, -pw, buf, d0, d0 + plane, wq, i1 - i0, sh * w, wq)
        elif w <= WIDE:
            deinterleave2_rows(xf, src, w, -pw, buf, d0, d0 + plane, wq, i1 - i0, sh * w, wq)
        else:
            _pairs(xf, src, sh * w, buf, d0, plane, wq, i1 - i0, w, pw)


@njit(cache=True, inline="always")
def _taps(k, sw, buf, base, roff, w, c, tile, t0, nv):
    """The tap intrinsic for ``k`` x ``k``, column stride ``sw``, on channel ``c``."""
    if k == 5:
        if sw == 1:
            taps5_s1(buf, base, roff, w, c * 25, tile, t0, nv)
        else:
            taps5_s2(buf, base, roff, w, c * 25, tile, t0, nv)
    elif sw == 1:
        taps3_s1(buf, base, roff, w, c * 9, tile, t0, nv)
    else:
        taps3_s2(buf, base, roff, w, c * 9, tile, t0, nv)


@njit(cache=True)
def dw_channels(x, w, bias, has_bias, out, sh, sw, ph, pw, plane, wq, buf, tile, c0, c1, slots):
    """Depthwise k x k (k = 3 or 5, from ``w``'s shape) of channels ``[c0, c1)`` of every image. Items (image,
    channel) are pipelined over ``slots`` (1 or 2) equal parts of ``buf`` (zero outside the phases'
    interiors) and of ``tile``: step i runs the taps of item i, fills item i + slots - 1 (before the taps
    with one slot, after them with two: 1152 channels 7x7 5x5, 86 -> 81 us) and stores item i - slots + 1;
    small input planes are prefetched PREFETCH_AHEAD items ahead."""
    k = w.shape[2]
    c_n, hw = x.shape[1], x.shape[2] * x.shape[3]
    oh_n, ow_n = out.shape[2], out.shape[3]
    lanes = 64 // x.itemsize
    nv = (oh_n * wq + lanes - 1) // lanes
    bslot, tslot = buf.size // slots, tile.size // slots
    roff = np.empty(k * sw, np.int64)
    for a in range(k):
        for rw in range(sw):
            roff[a * sw + rw] = ((a % sh) * sw + rw) * plane + (a // sh) * wq
    wf, xf, of = w.reshape(-1), x.reshape(-1), out.reshape(-1)
    nc = c1 - c0
    items, ahead = x.shape[0] * nc, slots - 1
    pf = PREFETCH_AHEAD if hw * x.itemsize <= PREFETCH_MAX_BYTES else 0
    for i in range(-max(pf, ahead), items + ahead):  # i: the item whose taps run
        j = i + pf
        if pf > 0 and 0 <= j < items:
            prefetch(xf, ((j // nc) * c_n + c0 + j % nc) * hw, hw)
        j = i + ahead
        if ahead == 0 and 0 <= j < items:
            _fill(xf, ((j // nc) * c_n + c0 + j % nc) * hw, x.shape[2], x.shape[3], buf, 0, sh, sw, ph, pw,
                  plane, wq)
        if 0 <= i < items:
            _taps(k, sw, buf, (i % slots) * bslot, roff, wf, c0 + i % nc, tile, (i % slots) * tslot, nv)
        if ahead > 0 and 0 <= j < items:  # after the taps: their loads need not wait for these stores
            _fill(xf, ((j // nc) * c_n + c0 + j % nc) * hw, x.shape[2], x.shape[3], buf, (j % slots) * bslot,
                  sh, sw, ph, pw, plane, wq)
        j = i - ahead
        if 0 <= j < items:
            c = c0 + j % nc
            copy_rows(tile, (j % slots) * tslot, wq, of, ((j // nc) * c_n + c) * oh_n * ow_n, ow_n, oh_n, ow_n,
                      bias[c] if has_bias else bias[0])


@njit(cache=True, parallel=True)
def dw_parallel(x, w, bias, has_bias, out, sh, sw, ph, pw, plane, wq, buf_size, tile_size, blk, slots, c_start):
    """:func:`dw_channels` of channels ``[c_start, C)`` in blocks of ``blk`` channels spread over threads (own
    buffers per block)."""
    c_n = x.shape[1]
    for b in prange((c_n - c_start + blk - 1) // blk):
        buf = np.zeros(slots * buf_size, dtype=x.dtype)
        tile = np.empty(slots * tile_size, dtype=x.dtype)
        c0 = c_start + b * blk
        dw_channels(x, w, bias, has_bias, out, sh, sw, ph, pw, plane, wq, buf, tile, c0, min(c_n, c0 + blk), slots)


def depthwise3x3(x, w, b, stride, padding, parallel: bool):
    """Depthwise 3x3 or 5x5 (square, from ``w``'s shape) convolution, dilation 1 (multiplier 1), stride 1 or 2:
    ``[N, C, OH, OW]``."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    if w.shape[2:] not in ((3, 3), (5, 5)):
        raise ValueError(f"fused depthwise path: kernel {w.shape[2:]} is neither 3x3 nor 5x5")
    sh, sw = stride
    ph, pw = padding
    if sh not in (1, 2) or sw not in (1, 2):
        raise ValueError(f"fused depthwise path: stride {stride} is not 1 or 2")
    oh, ow = (h + 2 * ph - k) // sh + 1, (wd + 2 * pw - k) // sw + 1
    hq, wq = -(-(h + 2 * ph) // sh), row_pitch(wd, k, sw, pw)
    lanes = 64 // x.itemsize
    tile_size = -(-(oh * wq) // lanes) * lanes
    plane = (hq + 1) * wq  # one zero row more: the last row's reads past its end land in zeros
    # slack past the phases: a tap row is read up to tile_size + lanes past its offset (< one plane)
    buf_size = sh * sw * plane + tile_size + lanes
    slots = 2 if buf_size * x.itemsize <= PIPELINE_MAX_BYTES else 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    c0 = _blocked(x, w, b, out, stride, padding, parallel)
    if c0 == c:
        return out
    if parallel:
        blk = max(1, (c - c0) // (4 * numba.get_num_threads()))
        dw_parallel(x, w, bias, b is not None, out, sh, sw, ph, pw, plane, wq, buf_size, tile_size, blk, slots, c0)
        return out
    from hwsim.kernels._conv import _workspace  # the per-thread scratch the GEMM path uses too

    ws = _workspace("planes", slots * (buf_size + tile_size), x.dtype)
    ws[:slots * buf_size] = 0
    dw_channels(x, w, bias, b is not None, out, sh, sw, ph, pw, plane, wq, ws[:slots * buf_size],
                ws[slots * buf_size:], c0, c, slots)
    return out


def _blocked(x, w, b, out, stride, padding, parallel: bool) -> int:
    """The whole blocks of ``L`` channels of a small map through :func:`dw_blocked` (``_dwconv_small``);
    returns the first channel left to the per-channel path (0 if the map is too large)."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    lanes = 64 // x.itemsize
    grid = (h + 2 * padding[0]) * (wd + 2 * padding[1])
    nblk = c // lanes
    if nblk == 0 or grid * lanes * x.itemsize > BLOCK_MAX_BYTES[k]:
        return 0
    wb = np.ascontiguousarray(w[:nblk * lanes].reshape(nblk, lanes, k * k).transpose(0, 2, 1))
    bvec = b if b is not None else np.zeros(c, dtype=x.dtype)
    oh, ow = out.shape[2], out.shape[3]
    g_size, o_size = (grid + 1) * lanes, (oh * ow + lanes) * lanes
    sh, sw, ph, pw = stride[0], stride[1], padding[0], padding[1]
    if parallel:
        per_task = max(1, n * nblk // (4 * numba.get_num_threads()))
        dw_blocked_parallel(x, wb, bvec, out, sh, sw, ph, pw, g_size, o_size, nblk, per_task)
        return nblk * lanes
    from hwsim.kernels._conv import _workspace  # the per-thread scratch the GEMM path uses too

    ws = _workspace("tile", g_size + o_size, x.dtype)
    ws[:g_size] = 0
    dw_blocked(x, wb, bvec, out, sh, sw, ph, pw, ws[:g_size], ws[g_size:], nblk, 0, n * nblk)
    return nblk * lanes
