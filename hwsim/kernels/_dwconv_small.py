"""Depthwise 3x3 / 5x5 on small maps, vectorised across channels (``_dwconv``'s path for 5x5 kernels on maps up
to 28x28 and 3x3 kernels up to 7x7: ``_dwconv.BLOCK_MAX_BYTES``).

A 7x7 map has 49 outputs per channel: vectorised along one channel's flat positions (``_dwconv``) a vector
holds at most 16 of them, and every channel pays its own fill, tap set-up and row stores. Here a block of
``L`` channels (16 float32 / 8 float64 lanes) is computed at once, one vector per map position:

1. *pack* (:func:`pack_block`): the block's ``L`` planes are read ``L`` positions at a time (one vector per
   channel), transposed in registers (log2(L) rounds of two-vector shuffles) and stored as one vector per
   position into ``G[(y + ph)*Wp + x + pw]`` (position-major, ``L`` channels per position). The border
   positions of ``G`` are zero (written once per call).
2. *taps* (:func:`make_block_taps`): ``O[oy*OW + ox] = sum_{a,b} wb[a*k + b] * G[(oy*sh + a)*Wp + ox*sw + b]``
   with one weight vector per tap (the block's ``L`` weights of that tap, ``wb``), in registers. Four
   (3x3: eight) neighbouring outputs of a row are accumulated together, so each input vector loaded for a
   kernel row serves up to ``k`` of them. Every lane is a real output: no junk columns, no shifted loads.
3. *unpack* (:func:`unpack_block`): ``O`` is transposed back, ``L`` positions at a time, and stored (plus
   the bias) into the block's output planes (masked past a plane's end).

The sums run in tap order ``a``, then ``b`` per output (one FMA chain). Channels beyond the last whole block
go through ``_dwconv``'s per-channel path. While a block's taps run, row by row, the next block's input and
output planes are prefetched in as many slices (a whole block's 196 lines at once, 14x14 maps, helped less
when the input came from memory). Measured on the Zen 5 host, one thread, input in cache (us): 1152
channels 7x7 5x5 81 -> 45 (torch 69), 672 channels 14x14 5x5 95 -> 73 (torch 103).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from hwsim.kernels._rowcopy import _low_mask

XB = 4  # outputs of a row accumulated together (5x5; 8 for 3x3)


def _vtypes(dtype):
    """(element type, lanes, alignment in bytes) of a float32 / float64 array."""
    return (ir.FloatType(), 16, 4) if dtype == types.float32 else (ir.DoubleType(), 8, 8)


def _ptr(builder, base, idx, vt):
    return builder.bitcast(builder.gep(base, [idx]), vt.as_pointer())


def _masked(builder, vt, name):
    i1, i32 = ir.IntType(1), ir.IntType(32)
    mt = ir.VectorType(i1, vt.count)
    sfx = f"v{vt.count}{'f32' if isinstance(vt.element, ir.FloatType) else 'f64'}"
    if name == "load":
        return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mt, vt]),
                                              f"llvm.masked.load.{sfx}.p0")
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), i32, mt]),
                                          f"llvm.masked.store.{sfx}.p0")


def transpose(builder, rows):
    """Transpose ``L`` vectors of ``L`` lanes (``L`` a power of two): ``out[j][l] = rows[l][j]``. Round ``h``
    (L/2, L/4, .., 1) pairs rows ``i`` and ``i + h`` and swaps their off-diagonal ``h``-lane blocks."""
    lanes = len(rows)
    i32 = ir.IntType(32)
    rows = list(rows)
    h = lanes // 2
    while h >= 1:
        lo = [s + t for s in range(0, lanes, 2 * h) for t in (*range(h), *range(lanes, lanes + h))]
        hi = [s + h + t for s in range(0, lanes, 2 * h) for t in (*range(h), *range(lanes, lanes + h))]
        m_lo, m_hi = (ir.Constant(ir.VectorType(i32, lanes), m) for m in (lo, hi))
        for i in range(lanes):
            if (i // h) % 2 == 0:
                a, b = rows[i], rows[i + h]
                rows[i], rows[i + h] = builder.shuffle_vector(a, b, m_lo), builder.shuffle_vector(a, b, m_hi)
        h //= 2
    return rows


def _is_c_array(*arrs):
    return all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1 for a in arrs) and \
        len({a.dtype for a in arrs}) == 1 and arrs[0].dtype in (types.float32, types.float64)


@intrinsic
def pack_block(typingctx, xf, s0, pstride, npos, w, g, wp, ph, pw):
    """For channel ``l < L`` (plane ``xf[s0 + l*pstride:]``, ``npos`` = H*W positions of a map ``w`` wide)
    and position ``p = y*w + x``: ``g[((y + ph)*wp + x + pw)*L + l] = xf[s0 + l*pstride + p]``."""
    if not _is_c_array(xf, g):
        return None
    ip = types.intp

    def codegen(context, builder, signature, args):
        xf_a, s0_, ps_, np_, w_, g_a, wp_, ph_, pw_ = args
        i64 = ir.IntType(64)
        elt, lanes, align = _vtypes(signature.args[0].dtype)
        vt = ir.VectorType(elt, lanes)
        mload = _masked(builder, vt, "load")
        x_p = context.make_array(signature.args[0])(context, builder, xf_a).data
        g_p = context.make_array(signature.args[5])(context, builder, g_a).data
        L = ir.Constant(i64, lanes)
        nchunk = builder.sdiv(builder.add(np_, ir.Constant(i64, lanes - 1)), L)
        with cgutils.for_range(builder, nchunk) as loop:
            p0 = builder.mul(loop.index, L)
            n = builder.sub(np_, p0)
            mask = _low_mask(builder, n, lanes)
            rows = [builder.call(mload, [_ptr(builder, x_p, builder.add(builder.add(s0_, builder.mul(ps_, ir.Constant(i64, ch))), p0), vt),
                                         ir.Constant(ir.IntType(32), align), mask, ir.Constant(vt, [0.0] * lanes)])
                    for ch in range(lanes)]
            cols = transpose(builder, rows)
            for j in range(lanes):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, j), n)):
                    pos = builder.add(p0, ir.Constant(i64, j))
                    y = builder.sdiv(pos, w_)
                    xx = builder.sub(pos, builder.mul(y, w_))
                    dst = builder.mul(builder.add(builder.mul(builder.add(y, ph_), wp_), builder.add(xx, pw_)), L)
                    builder.store(cols[j], _ptr(builder, g_p, dst, vt), align=align)
        return context.get_dummy_value()

    return types.void(xf, ip, ip, ip, ip, g, ip, ip, ip), codegen


@intrinsic
def unpack_block(typingctx, o, npos, out, o0, pstride, bvec, b0):
    """For channel ``l < L`` and position ``p < npos``: ``out[o0 + l*pstride + p] = o[p*L + l] + bvec[b0 + l]``
    (``o`` holds ``L`` vectors of slack past ``npos*L``)."""
    if not _is_c_array(o, out, bvec):
        return None
    ip = types.intp

    def codegen(context, builder, signature, args):
        o_a, np_, out_a, o0_, ps_, b_a, b0_ = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        elt, lanes, align = _vtypes(signature.args[0].dtype)
        vt = ir.VectorType(elt, lanes)
        mstore = _masked(builder, vt, "store")
        o_p = context.make_array(signature.args[0])(context, builder, o_a).data
        out_p = context.make_array(signature.args[2])(context, builder, out_a).data
        b_p = context.make_array(signature.args[5])(context, builder, b_a).data
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        bias = [builder.shuffle_vector(builder.insert_element(
            ir.Constant(vt, ir.Undefined), builder.load(builder.gep(b_p, [builder.add(b0_, ir.Constant(i64, ch))])),
            ir.Constant(i32, 0)), ir.Constant(vt, ir.Undefined), splat) for ch in range(lanes)]
        L = ir.Constant(i64, lanes)
        nchunk = builder.sdiv(builder.add(np_, ir.Constant(i64, lanes - 1)), L)
        with cgutils.for_range(builder, nchunk) as loop:
            p0 = builder.mul(loop.index, L)
            mask = _low_mask(builder, builder.sub(np_, p0), lanes)
            rows = [builder.load(_ptr(builder, o_p, builder.mul(builder.add(p0, ir.Constant(i64, j)), L), vt), align=align)
                    for j in range(lanes)]
            for ch, v in enumerate(transpose(builder, rows)):
                dst = builder.add(builder.add(o0_, builder.mul(ps_, ir.Constant(i64, ch))), p0)
                builder.call(mstore, [builder.fadd(v, bias[ch]), _ptr(builder, out_p, dst, vt), ir.Constant(i32, align), mask])
        return context.get_dummy_value()

    return types.void(o, ip, out, ip, ip, bvec, ip), codegen


def _make_prefetch(write: bool):
    """Intrinsic ``prefetch(arr, start, n)``: hint ``arr[start:start + n]`` into L1 (one hint per 64-byte line;
    hints never fault), for reading or, with ``write``, for writing (the lines come in exclusive)."""

    def prefetch(typingctx, arr, start, n):
        if not (isinstance(arr, types.Array) and arr.layout == "C"):
            return None

        def codegen(context, builder, signature, args):
            a, start_, n_ = args
            i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
            data = context.make_array(signature.args[0])(context, builder, a).data
            base = builder.bitcast(builder.gep(data, [start_]), i8p)
            size = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
            lines = builder.sdiv(builder.add(builder.mul(n_, ir.Constant(i64, size)), ir.Constant(i64, 63)),
                                 ir.Constant(i64, 64))
            with cgutils.for_range(builder, lines) as loop:
                p = builder.gep(base, [builder.mul(loop.index, ir.Constant(i64, 64))])
                builder.call(fn, [p, ir.Constant(i32, int(write)), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, types.intp, types.intp), codegen

    prefetch.__name__ = "prefetch_w" if write else "prefetch"
    return intrinsic(prefetch)


prefetch, prefetch_w = _make_prefetch(False), _make_prefetch(True)


def make_block_taps(k: int, sw: int):
    """Intrinsic ``taps(g, wp, sh, wb, w0, o, oy0, oy1, ow)``: for ``oy0 <= oy < oy1``, ``ox < ow``,
    ``o[(oy*ow + ox)*L:][:L] = sum_{a<k, b<k} wb[w0 + (a*k + b)*L:][:L] * g[((oy*sh + a)*wp + ox*sw + b)*L:][:L]``
    (one FMA chain per output in tap order); ``xb`` outputs of a row share their input loads."""
    xb = 8 if k == 3 else XB

    def taps(typingctx, g, wp, sh, wb, w0, o, oy0, oy1, ow):
        if not _is_c_array(g, wb, o):
            return None
        ip = types.intp
        return types.void(g, ip, ip, wb, ip, o, ip, ip, ip), lambda *a: _block_taps_codegen(k, sw, xb, *a)

    taps.__name__ = f"dw_block_taps{k}_s{sw}"
    return intrinsic(taps)


def _block_taps_codegen(k, sw, xb, context, builder, signature, args):
    """IR of :func:`make_block_taps`' intrinsic."""
    g_a, wp_, sh_, wb_a, w0_, o_a, oy0_, oy1_, ow_ = args
    i64 = ir.IntType(64)
    elt, lanes, align = _vtypes(signature.args[0].dtype)
    vt = ir.VectorType(elt, lanes)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                         f"llvm.fma.v{lanes}{'f32' if lanes == 16 else 'f64'}")
    g_p, wb_p, o_p = (context.make_array(signature.args[i])(context, builder, a).data
                      for i, a in ((0, g_a), (3, wb_a), (5, o_a)))
    L = ir.Constant(i64, lanes)
    wv = [builder.load(_ptr(builder, wb_p, builder.add(w0_, ir.Constant(i64, t * lanes)), vt), align=align)
          for t in range(k * k)]

    def outputs(oy, ox0, n_out):
        accs = [None] * n_out
        for a in range(k):
            row = builder.mul(builder.add(builder.mul(oy, sh_), ir.Constant(i64, a)), wp_)
            base = builder.add(row, builder.mul(ox0, ir.Constant(i64, sw)))
            cols = [builder.load(_ptr(builder, g_p, builder.mul(builder.add(base, ir.Constant(i64, col)), L), vt),
                                 align=align) for col in range(sw * (n_out - 1) + k)]
            for j in range(n_out):
                for b in range(k):
                    x = cols[j * sw + b]
                    accs[j] = builder.fmul(wv[a * k + b], x) if accs[j] is None else \
                        builder.call(fma, [wv[a * k + b], x, accs[j]])
        for j in range(n_out):
            dst = builder.mul(builder.add(builder.mul(oy, ow_), builder.add(ox0, ir.Constant(i64, j))), L)
            builder.store(accs[j], _ptr(builder, o_p, dst, vt), align=align)

    nblk = builder.sdiv(ow_, ir.Constant(i64, xb))
    with cgutils.for_range(builder, builder.sub(oy1_, oy0_)) as rows:
        oy = builder.add(oy0_, rows.index)
        with cgutils.for_range(builder, nblk) as blocks:
            outputs(oy, builder.mul(blocks.index, ir.Constant(i64, xb)), xb)
        with cgutils.for_range(builder, builder.sub(ow_, builder.mul(nblk, ir.Constant(i64, xb)))) as rest:
            outputs(oy, builder.add(builder.mul(nblk, ir.Constant(i64, xb)), rest.index), 1)
    return context.get_dummy_value()


btaps3_s1, btaps3_s2, btaps5_s1, btaps5_s2 = (make_block_taps(3, 1), make_block_taps(3, 2),
                                              make_block_taps(5, 1), make_block_taps(5, 2))


@njit(cache=True, inline="always")
def _block_taps(kk, sw, g, wp, sh, wf, w0, o, oy0, oy1, ow):
    if kk == 25:
        if sw == 1:
            btaps5_s1(g, wp, sh, wf, w0, o, oy0, oy1, ow)
        else:
            btaps5_s2(g, wp, sh, wf, w0, o, oy0, oy1, ow)
    elif sw == 1:
        btaps3_s1(g, wp, sh, wf, w0, o, oy0, oy1, ow)
    else:
        btaps3_s2(g, wp, sh, wf, w0, o, oy0, oy1, ow)


@njit(cache=True)
def dw_blocked(x, wb, bvec, out, sh, sw, ph, pw, g, o, nblk, i0, i1):
    """Depthwise k x k of blocks ``[i0, i1)`` of ``L`` channels, counted over images (block ``i``: image
    ``i // nblk``, channels ``(i % nblk)*L ..``): pack, taps, unpack (module docstring). ``wb[cb, t, l]``:
    weight of tap ``t`` of channel ``cb*L + l``; ``bvec``: one bias per channel; ``g`` zero outside the map's
    positions. While a block's taps run, row by row, the next block's input and output planes (contiguous)
    are prefetched in as many slices."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    lanes, kk = wb.shape[2], wb.shape[1]
    wp = w + 2 * pw
    xf, of, wf = x.reshape(-1), out.reshape(-1), wb.reshape(-1)
    xs, os_ = -(-lanes * h * w // oh), -(-lanes * oh * ow // oh)  # prefetch slices (elements)
    for i in range(i0, i1):
        c = (i // nblk) * c_n + (i % nblk) * lanes  # first channel of the block, counted over images
        pack_block(xf, c * h * w, h * w, h * w, w, g, wp, ph, pw)
        for oy in range(oh):
            if i + 1 < i1:
                nc = c + lanes if (i + 1) % nblk else (i // nblk + 1) * c_n
                prefetch(xf, nc * h * w + oy * xs, min(xs, lanes * h * w - oy * xs))
                prefetch_w(of, nc * oh * ow + oy * os_, min(os_, lanes * oh * ow - oy * os_))
            _block_taps(kk, sw, g, wp, sh, wf, (i % nblk) * kk * lanes, o, oy, oy + 1, ow)
        unpack_block(o, oh * ow, of, c * oh * ow, oh * ow, bvec, c % c_n)


@njit(cache=True, parallel=True)
def dw_blocked_parallel(x, wb, bvec, out, sh, sw, ph, pw, g_size, o_size, nblk, per_task):
    """:func:`dw_blocked` over all blocks of all images, ``per_task`` blocks per thread task (own buffers)."""
    items = x.shape[0] * nblk
    for t in prange((items + per_task - 1) // per_task):
        g = np.zeros(g_size, dtype=x.dtype)
        o = np.empty(o_size, dtype=x.dtype)
        dw_blocked(x, wb, bvec, out, sh, sw, ph, pw, g, o, nblk, t * per_task, min(items, (t + 1) * per_task))
