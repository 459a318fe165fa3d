"""xnor-popcount GEMM micro-kernel written as LLVM IR (``numba.extending.intrinsic``).

Why IR (same reason as the float kernels of ``_microkernel.py``): an MR x NV register tile of
``<8 x i64>`` accumulators must stay in vector registers for the whole K loop; Numba arrays would
make it load/store bound.

Layout (vectorised across output *columns*, like the float kernel):

* ``A``: packed activations; word ``t`` of tile row ``i`` is ``A[rbase[r0 + i] + aoff[t]]``. A
  plain GEMM has ``rbase[i] = i*lda`` and ``aoff[t] = t``; a convolution has the offset of one
  output position's receptive field in the padded, channel-packed input as ``rbase`` and the
  offset of (tap, channel word) as ``aoff``, so it runs as an implicit GEMM without im2col.
* ``W``: one packed weight *panel*, word ``t`` of column ``j`` at ``w0 + t*ldw + j`` (the
  transposed weights, ``ldw`` = panel width = ``nv * 8`` columns, zero columns beyond N).
* ``C``: int32 output, row ``i`` at ``c0 + i*ldc``, ``nv * 8`` columns written.

For every word ``t`` the tile broadcasts ``mr`` words of A (an embedded ``{1to8}`` memory
operand of ``vpxorq`` once LLVM folds it), loads ``nv`` vectors of W and issues ``mr*nv`` times
``xor, ctpop, add``. The result is ``C = K - 2*popcount(a ^ w)`` (tail bits are 0 in both
operands, so their xor adds nothing): the ±1 dot product.

``llvm.ctpop.v8i64`` lowers to ``vpopcntq`` on AVX-512 VPOPCNTDQ hosts and to LLVM's nibble
look-up popcount (``vpshufb`` + ``vpsadbw``) on AVX2 hosts; the vector of 8 lanes is split into
two ``ymm`` halves there. The tile shape is chosen per ISA in :func:`tile_for`.

Issue bound (why about 2/3 of the popcount roofline is the ceiling of this op mix): every 64-bit
word pair costs three vector ALU micro-ops (xor, popcount, add). Zen 5 issues 4 such ops per
cycle but only 2 popcounts, Golden Cove / Sapphire Rapids 2 zmm ops per cycle (ports 0 and 5)
but 1 popcount (port 5): in both cases 3 ops per word cap the rate at 4/3 resp. 2/3 words per
cycle = 67 % of the popcount issue rate (``benchmarks/_host.py`` measures both rates on the host it runs on).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # uint64 columns per <8 x i64> vector (one zmm, or two ymm halves on AVX2)


def _k_loop(builder, mr, nv, a_p, rb_p, r0_, off_p, w_p, w0_, ldw_, nw_):
    """The K loop of an ``mr`` x ``nv`` tile: for every word ``t`` broadcast the ``mr`` A words, load
    the ``nv`` W vectors and accumulate ``popcount(a ^ w)``; returns the ``<8 x i64>`` sums."""
    i64, i32 = ir.IntType(64), ir.IntType(32)
    vt = ir.VectorType(i64, LANES)
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt]), "llvm.ctpop.v8i64")
    undef = ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
    acc = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in range(mr)]
    for row in acc:
        for slot in row:
            builder.store(ir.Constant(vt, [0] * LANES), slot)
    rows = [builder.gep(a_p, [builder.load(builder.gep(rb_p, [builder.add(r0_, ir.Constant(i64, i))]))])
            for i in range(mr)]
    with cgutils.for_range(builder, nw_) as loop:
        t = loop.index
        at = builder.load(builder.gep(off_p, [t]))
        wrow = builder.gep(w_p, [builder.add(w0_, builder.mul(t, ldw_))])
        wv = [builder.load(builder.bitcast(builder.gep(wrow, [ir.Constant(i64, LANES * j)]), vt.as_pointer()),
                           align=8) for j in range(nv)]
        for i in range(mr):
            a = builder.load(builder.gep(rows[i], [at]))
            av = builder.shuffle_vector(builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
            for j in range(nv):
                pc = builder.call(ctpop, [builder.xor(av, wv[j])])
                builder.store(builder.add(builder.load(acc[i][j]), pc), acc[i][j])
    return [[builder.load(slot) for slot in row] for row in acc]


BYTE_CHUNK = 31  # words per byte-accumulator flush: a byte gains <= 8 per word, 31 * 8 = 248 <= 255
_NIBBLE_POPCOUNT = [0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4] * 2  # vpshufb table, both 128-bit lanes


def _k_loop_avx2(builder, mr, nv, a_p, rb_p, r0_, off_p, w_p, w0_, ldw_, nw_):
    """:func:`_k_loop` for AVX2 targets (``vpshufb`` nibble look-up), with *byte* accumulators.

    Per 256-bit word ``x = a ^ w``: ``lo = x & 0x0F``, ``hi = (x >> 4) & 0x0F`` (a 16-bit shift),
    ``acc8 += lut[lo] + lut[hi]`` (two ``vpshufb``, two ``vpaddb``): 8 vector ops. LLVM's own
    ``ctpop.v4i64`` lowering ends every word with ``vpsadbw`` + ``vpaddq`` instead of the last
    ``vpaddb`` (9 ops). The byte sums are folded into the 64-bit sums (``vpsadbw`` against zero,
    ``vpaddq``) once every :data:`BYTE_CHUNK` words, before a byte can overflow. Only valid for
    targets with AVX2 (``llvm.x86.avx2.*`` intrinsics). Returns ``<8 x i64>`` sums like :func:`_k_loop`."""
    i8, i16, i32, i64 = (ir.IntType(b) for b in (8, 16, 32, 64))
    h64, b32, w16 = ir.VectorType(i64, 4), ir.VectorType(i8, 32), ir.VectorType(i16, 16)
    mod = builder.module
    pshufb = cgutils.get_or_insert_function(mod, ir.FunctionType(b32, [b32, b32]), "llvm.x86.avx2.pshuf.b")
    psad = cgutils.get_or_insert_function(mod, ir.FunctionType(h64, [b32, b32]), "llvm.x86.avx2.psad.bw")
    lut, mask = ir.Constant(b32, _NIBBLE_POPCOUNT), ir.Constant(b32, [15] * 32)
    four, zb = ir.Constant(w16, [4] * 16), ir.Constant(b32, [0] * 32)
    undef = ir.Constant(h64, ir.Undefined)
    splat = ir.Constant(ir.VectorType(i32, 4), [0] * 4)
    shape = [(i, j, h) for i in range(mr) for j in range(nv) for h in range(2)]
    acc = {key: cgutils.alloca_once(builder, h64) for key in shape}
    acc8 = {key: cgutils.alloca_once(builder, b32) for key in shape}
    for slot in acc.values():
        builder.store(ir.Constant(h64, [0] * 4), slot)
    rows = [builder.gep(a_p, [builder.load(builder.gep(rb_p, [builder.add(r0_, ir.Constant(i64, i))]))])
            for i in range(mr)]
    chunk = ir.Constant(i64, BYTE_CHUNK)
    nchunk = builder.udiv(builder.add(nw_, ir.Constant(i64, BYTE_CHUNK - 1)), chunk)
    with cgutils.for_range(builder, nchunk) as outer:
        t0 = builder.mul(outer.index, chunk)
        left = builder.sub(nw_, t0)
        cnt = builder.select(builder.icmp_signed("<", left, chunk), left, chunk)
        for slot in acc8.values():
            builder.store(zb, slot)
        with cgutils.for_range(builder, cnt) as loop:
            t = builder.add(t0, loop.index)
            at = builder.load(builder.gep(off_p, [t]))
            wrow = builder.gep(w_p, [builder.add(w0_, builder.mul(t, ldw_))])
            wv = [[builder.load(builder.bitcast(builder.gep(wrow, [ir.Constant(i64, LANES * j + 4 * h)]),
                                                h64.as_pointer()), align=8) for h in range(2)] for j in range(nv)]
            for i in range(mr):
                a = builder.load(builder.gep(rows[i], [at]))
                av = builder.shuffle_vector(builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                for j in range(nv):
                    for h in range(2):
                        x = builder.xor(av, wv[j][h])
                        lo = builder.and_(builder.bitcast(x, b32), mask)
                        hi = builder.and_(builder.bitcast(builder.lshr(builder.bitcast(x, w16), four), b32), mask)
                        pc = builder.add(builder.call(pshufb, [lut, lo]), builder.call(pshufb, [lut, hi]))
                        slot = acc8[(i, j, h)]
                        builder.store(builder.add(builder.load(slot), pc), slot)
        for key, slot in acc.items():
            builder.store(builder.add(builder.load(slot), builder.call(psad, [builder.load(acc8[key]), zb])), slot)
    return [[builder.shuffle_vector(builder.load(acc[(i, j, 0)]), builder.load(acc[(i, j, 1)]),
                                    ir.Constant(ir.VectorType(i32, 8), list(range(8)))) for j in range(nv)]
            for i in range(mr)]


def make_xnor_microkernel(mr: int, nv: int, avx2_bytes: bool = False):
    """Return an intrinsic ``mk(A, rbase, r0, aoff, W, w0, ldw, nw, C, c0, ldc, k)`` computing an
    ``mr`` x ``nv*8`` tile of ±1 dot products over ``nw`` words (``k`` valid bits).
    ``avx2_bytes`` selects :func:`_k_loop_avx2` (AVX2 targets without VPOPCNTDQ only)."""
    if mr <= 0 or nv <= 0:
        raise ValueError(f"xnor micro-kernel tile {mr} rows x {nv} vectors must be positive")

    @intrinsic
    def mk(typingctx, A, rbase, r0, aoff, W, w0, ldw, nw, C, c0, ldc, k):
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in (A, rbase, aoff, W, C)):
            return None
        if A.dtype != types.uint64 or W.dtype != types.uint64 or C.dtype != types.int32 \
                or rbase.dtype != types.int64 or aoff.dtype != types.int64:
            return None
        sig = types.void(A, rbase, types.intp, aoff, W, types.intp, types.intp, types.intp,
                         C, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            (a_arr, rb_arr, r0_, off_arr, w_arr, w0_, ldw_, nw_, c_arr, c0_, ldc_, k_) = args
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vt32 = ir.VectorType(i32, LANES)
            sa = signature.args
            a_p = context.make_array(sa[0])(context, builder, a_arr).data
            rb_p = context.make_array(sa[1])(context, builder, rb_arr).data
            off_p = context.make_array(sa[3])(context, builder, off_arr).data
            w_p = context.make_array(sa[4])(context, builder, w_arr).data
            c_p = context.make_array(sa[8])(context, builder, c_arr).data
            loaded = (_k_loop_avx2 if avx2_bytes else _k_loop)(builder, mr, nv, a_p, rb_p, r0_, off_p, w_p, w0_,
                                                                ldw_, nw_)
            splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
            kv = builder.trunc(k_, i32)
            kvec = builder.shuffle_vector(
                builder.insert_element(ir.Constant(vt32, ir.Undefined), kv, ir.Constant(i32, 0)),
                ir.Constant(vt32, ir.Undefined), splat)
            for i in range(mr):
                crow = builder.gep(c_p, [builder.add(c0_, builder.mul(ldc_, ir.Constant(i64, i)))])
                for j in range(nv):
                    cnt = builder.trunc(loaded[i][j], vt32)
                    val = builder.sub(kvec, builder.shl(cnt, ir.Constant(vt32, [1] * LANES)))
                    p = builder.bitcast(builder.gep(crow, [ir.Constant(i64, LANES * j)]),
                                        vt32.as_pointer())
                    builder.store(val, p, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


def _transpose8(builder, rows):
    """8x8 transpose of eight ``<8 x i32>`` rows: ``out[l][i] = rows[i][l]``, three butterfly stages
    (stage ``s`` swaps bit ``s`` of the row index with bit ``s`` of the lane index)."""
    for s in (1, 2, 4):
        lo_idx = [lane if not lane & s else 8 + lane - s for lane in range(8)]
        hi_idx = [lane + s if not lane & s else 8 + lane for lane in range(8)]
        nxt = list(rows)
        for i in range(8):
            if i & s:
                continue
            a, b = rows[i], rows[i | s]
            nxt[i] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), lo_idx))
            nxt[i | s] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), hi_idx))
        rows = nxt
    return rows


def make_xnor_microkernel_nchw(nv: int):
    """An 8-row x ``nv*8``-column tile like :func:`make_xnor_microkernel` whose epilogue adds a
    per-row-class correction and stores straight into an NCHW array (the binary convolution's
    output, no separate transposition pass):
    ``mk(A, rbase, r0, aoff, W, w0, ldw, nw, C, coff, r_col, cs, k, cls, corr, ldcorr)``.

    Tile row ``i`` (output position ``r0 + i``), column ``j`` (channel ``r_col + j`` of the group):
    ``C[coff[r0+i] + (r_col + j)*cs] = k - 2*popcount + corr[cls[r0+i]*ldcorr + r_col + j]``
    (``coff`` holds the NCHW offset of each position with the group's first channel, ``cs`` the
    channel stride OH*OW). When the 8 positions are consecutive in memory
    (``coff[r0+7] == coff[r0]+7``: one image, no padding rows) the 8x8 blocks are transposed in
    registers (:func:`_transpose8`) and stored as 8 consecutive int32 per channel; otherwise each
    element is stored on its own."""
    mr = 8

    @intrinsic
    def mk(typingctx, A, rbase, r0, aoff, W, w0, ldw, nw, C, coff, r_col, cs, k, cls, corr, ldcorr):
        arrays = (A, rbase, aoff, W, C, coff, cls, corr)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if A.dtype != types.uint64 or W.dtype != types.uint64 or C.dtype != types.int32 \
                or corr.dtype != types.int32 or any(t.dtype != types.int64 for t in (rbase, aoff, coff, cls)):
            return None
        ip = types.intp
        sig = types.void(A, rbase, ip, aoff, W, ip, ip, ip, C, coff, ip, ip, ip, cls, corr, ip)

        def codegen(context, builder, signature, args):
            (a_arr, rb_arr, r0_, off_arr, w_arr, w0_, ldw_, nw_, c_arr, coff_arr, rcol_, cs_, k_, cls_arr,
             corr_arr, ldcorr_) = args
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vt32 = ir.VectorType(i32, LANES)
            sa = signature.args
            ptr = [context.make_array(sa[q])(context, builder, args[q]).data for q in (0, 1, 3, 4, 8, 9, 13, 14)]
            a_p, rb_p, off_p, w_p, c_p, coff_p, cls_p, corr_p = ptr
            acc = _k_loop(builder, mr, nv, a_p, rb_p, r0_, off_p, w_p, w0_, ldw_, nw_)
            splat = ir.Constant(vt32, [0] * LANES)
            kvec = builder.shuffle_vector(builder.insert_element(ir.Constant(vt32, ir.Undefined),
                                                                 builder.trunc(k_, i32), ir.Constant(i32, 0)),
                                          ir.Constant(vt32, ir.Undefined), splat)
            rows_at = [builder.add(r0_, ir.Constant(i64, i)) for i in range(mr)]
            coffs = [builder.load(builder.gep(coff_p, [r])) for r in rows_at]
            vals = []
            for i in range(mr):
                cbase = builder.add(builder.mul(builder.load(builder.gep(cls_p, [rows_at[i]])), ldcorr_), rcol_)
                row = []
                for j in range(nv):
                    cnt = builder.trunc(acc[i][j], vt32)
                    cp = builder.bitcast(builder.gep(corr_p, [builder.add(cbase, ir.Constant(i64, LANES * j))]),
                                         vt32.as_pointer())
                    v = builder.sub(kvec, builder.shl(cnt, ir.Constant(vt32, [1] * LANES)))
                    row.append(builder.add(v, builder.load(cp, align=4)))
                vals.append(row)
            contiguous = builder.icmp_signed("==", coffs[mr - 1], builder.add(coffs[0], ir.Constant(i64, mr - 1)))
            with builder.if_else(contiguous) as (then, otherwise):
                with then:
                    for j in range(nv):
                        cols = _transpose8(builder, [vals[i][j] for i in range(mr)])
                        for lane in range(LANES):
                            ch = builder.add(rcol_, ir.Constant(i64, LANES * j + lane))
                            p = builder.gep(c_p, [builder.add(coffs[0], builder.mul(ch, cs_))])
                            builder.store(cols[lane], builder.bitcast(p, vt32.as_pointer()), align=4)
                with otherwise:
                    for j in range(nv):
                        for lane in range(LANES):
                            chs = builder.mul(builder.add(rcol_, ir.Constant(i64, LANES * j + lane)), cs_)
                            for i in range(mr):
                                e = builder.extract_element(vals[i][j], ir.Constant(i32, lane))
                                builder.store(e, builder.gep(c_p, [builder.add(coffs[i], chs)]))
            return context.get_dummy_value()

        return sig, codegen

    return mk
