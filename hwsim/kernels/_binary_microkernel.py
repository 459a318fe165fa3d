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
cycle = 67 % of the popcount issue rate. Measured on this host by ``benchmarks/_host.py``.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # uint64 columns per <8 x i64> vector (one zmm, or two ymm halves on AVX2)


def make_xnor_microkernel(mr: int, nv: int):
    """Return an intrinsic ``mk(A, rbase, r0, aoff, W, w0, ldw, nw, C, c0, ldc, k)`` computing an
    ``mr`` x ``nv*8`` tile of ±1 dot products over ``nw`` words (``k`` valid bits)."""
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
            vt = ir.VectorType(i64, LANES)
            vt32 = ir.VectorType(i32, LANES)
            sa = signature.args
            a_p = context.make_array(sa[0])(context, builder, a_arr).data
            rb_p = context.make_array(sa[1])(context, builder, rb_arr).data
            off_p = context.make_array(sa[3])(context, builder, off_arr).data
            w_p = context.make_array(sa[4])(context, builder, w_arr).data
            c_p = context.make_array(sa[8])(context, builder, c_arr).data
            ctpop = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt]), "llvm.ctpop.v8i64")
            zero = ir.Constant(vt, [0] * LANES)
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in range(mr)]
            for row in acc:
                for slot in row:
                    builder.store(zero, slot)
            rows = [builder.gep(a_p, [builder.load(builder.gep(rb_p, [builder.add(r0_, ir.Constant(i64, i))]))])
                    for i in range(mr)]
            with cgutils.for_range(builder, nw_) as loop:
                t = loop.index
                at = builder.load(builder.gep(off_p, [t]))
                wrow = builder.gep(w_p, [builder.add(w0_, builder.mul(t, ldw_))])
                wv = [builder.load(builder.bitcast(builder.gep(wrow, [ir.Constant(i64, LANES * j)]),
                                                   vt.as_pointer()), align=8) for j in range(nv)]
                for i in range(mr):
                    a = builder.load(builder.gep(rows[i], [at]))
                    av = builder.shuffle_vector(
                        builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                    for j in range(nv):
                        pc = builder.call(ctpop, [builder.xor(av, wv[j])])
                        builder.store(builder.add(builder.load(acc[i][j]), pc), acc[i][j])
            kv = builder.trunc(k_, i32)
            kvec = builder.shuffle_vector(
                builder.insert_element(ir.Constant(vt32, ir.Undefined), kv, ir.Constant(i32, 0)),
                ir.Constant(vt32, ir.Undefined), splat)
            for i in range(mr):
                crow = builder.gep(c_p, [builder.add(c0_, builder.mul(ldc_, ir.Constant(i64, i)))])
                for j in range(nv):
                    cnt = builder.trunc(builder.load(acc[i][j]), vt32)
                    val = builder.sub(kvec, builder.shl(cnt, ir.Constant(vt32, [1] * LANES)))
                    p = builder.bitcast(builder.gep(crow, [ir.Constant(i64, LANES * j)]),
                                        vt32.as_pointer())
                    builder.store(val, p, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk
