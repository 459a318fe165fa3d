"""Exact u8 x s8 -> int32 GEMM micro-kernel on AVX-512 VNNI (``vpdpbusd``), written as LLVM IR.

Why IR (same reason as ``_microkernel.py`` and ``_binary_microkernel.py``): an MR x NV tile of
``<16 x i32>`` accumulators must stay in zmm registers for the whole K loop.

``vpdpbusd acc, a, b`` adds, to each of its 16 int32 lanes, the four products of the lane's four
unsigned bytes of ``a`` with the four signed bytes of ``b`` (Intel SDM, VPDPBUSD; no saturation: the
sum wraps modulo 2**32, so the caller bounds K so that no true sum leaves int32). Layout:

* ``A``: uint8 activations; the four bytes ``k = 4t .. 4t+3`` of tile row ``i`` start at
  ``A[rbase[r0 + i] + aoff[t]]`` and are broadcast as one int32 to all 16 lanes. A plain GEMM has
  ``rbase[i] = i*lda``, ``aoff[t] = 4t``; a convolution has the offset of an output position's
  receptive field in the padded NHWC input as ``rbase`` and that of (tap, channel quad) as ``aoff``
  (implicit GEMM, no im2col).
* ``W``: one int8 weight *panel* of ``nv*16`` columns, 4-byte interleaved: the quad ``t`` of column
  ``j`` is at byte ``w0 + t*ldw + 4j`` (``ldw`` = ``nv*64``), so one K-quad step loads ``nv`` zmm.
* ``C``: int32 output, row ``i`` at ``c0 + i*ldc``, ``nv*16`` columns written (overwritten).

Per K quad: ``nv`` vector loads, ``mr`` broadcast loads, ``mr*nv`` ``vpdpbusd`` (64 MACs each).
On a CPU without AVX-512 VNNI LLVM cannot select the instruction: callers compile it only where
:func:`has_avx512_vnni` holds.
"""
from __future__ import annotations

import llvmlite.binding as llb
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from hwsim.kernels._microkernel import target_features

LANES = 16  # int32 columns per zmm
# LLVM 21 changed the byte operands of the VNNI intrinsics from <16 x i32> to <64 x i8> (older
# declarations are auto-upgraded, but declare what the running LLVM expects).
_BYTE_OPERANDS = llb.llvm_version_info >= (21,)


def has_avx512_vnni(features: str | None = None) -> bool:
    """True when the features LLVM compiles Numba code for (the host unless ``NUMBA_CPU_FEATURES``
    says otherwise) include AVX-512F and AVX-512 VNNI."""
    f = target_features() if features is None else features
    return "+avx512f" in f and "+avx512vnni" in f


def _vpdpbusd(builder):
    vi32 = ir.VectorType(ir.IntType(32), LANES)
    vop = ir.VectorType(ir.IntType(8), 64) if _BYTE_OPERANDS else vi32
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vi32, [vi32, vop, vop]),
                                        "llvm.x86.avx512.vpdpbusd.512")

    def call(acc, a, b):
        if _BYTE_OPERANDS:
            a, b = builder.bitcast(a, vop), builder.bitcast(b, vop)
        return builder.call(fn, [acc, a, b])
    return call


def _store_tile(builder, acc, c_p, c0, ldc, vt) -> None:
    """Store the tile's accumulators ``acc[i][j]`` (int32 vectors) to row ``c0 + i * ldc``, lanes ``LANES * j``."""
    i64 = ir.IntType(64)
    for i, row in enumerate(acc):
        crow = builder.gep(c_p, [builder.add(c0, builder.mul(ldc, ir.Constant(i64, i)))])
        for j, a in enumerate(row):
            p = builder.bitcast(builder.gep(crow, [ir.Constant(i64, LANES * j)]), vt.as_pointer())
            builder.store(builder.load(a), p, align=4)


def make_vnni_microkernel(mr: int, nv: int):
    """Return an intrinsic ``mk(A, rbase, r0, aoff, W, w0, ldw, nq, C, c0, ldc, irow, icol, col0)``
    computing the ``mr`` x ``nv*16`` int32 tile ``C = irow[r0 + i] + icol[col0 + j] + sum_k A(u8) * W(s8)``
    over ``nq`` K quads (int32 wrap-around; ``irow``, ``icol`` int32: the zero-point corrections)."""
    if mr <= 0 or nv <= 0:
        raise ValueError(f"vnni micro-kernel tile {mr} rows x {nv} vectors must be positive")

    @intrinsic
    def mk(typingctx, A, rbase, r0, aoff, W, w0, ldw, nq, C, c0, ldc, irow, icol, col0):
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in (A, rbase, aoff, W, C, irow, icol)):
            return None
        if A.dtype != types.uint8 or W.dtype != types.int8 or C.dtype != types.int32 \
                or rbase.dtype != types.int64 or aoff.dtype != types.int64 \
                or irow.dtype != types.int32 or icol.dtype != types.int32:
            return None
        ip = types.intp
        sig = types.void(A, rbase, ip, aoff, W, ip, ip, ip, C, ip, ip, irow, icol, ip)

        def codegen(context, builder, signature, args):
            (a_arr, rb_arr, r0_, off_arr, w_arr, w0_, ldw_, nq_, c_arr, c0_, ldc_, _, _, col0_) = args
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vt = ir.VectorType(i32, LANES)
            sa = signature.args
            a_p, rb_p, off_p, w_p, c_p, ir_p, ic_p = (context.make_array(sa[q])(context, builder, args[q]).data
                                                      for q in (0, 1, 3, 4, 8, 11, 12))
            dot = _vpdpbusd(builder)
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(vt, [0] * LANES)
            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in range(mr)]
            cols = [builder.load(builder.bitcast(builder.gep(ic_p, [builder.add(col0_, ir.Constant(i64, LANES * j))]),
                                                 vt.as_pointer()), align=4) for j in range(nv)]
            for i in range(mr):
                r = builder.load(builder.gep(ir_p, [builder.add(r0_, ir.Constant(i64, i))]))
                rv = builder.shuffle_vector(builder.insert_element(undef, r, ir.Constant(i32, 0)), undef, splat)
                for j in range(nv):
                    builder.store(builder.add(rv, cols[j]), acc[i][j])
            rows = [builder.gep(a_p, [builder.load(builder.gep(rb_p, [builder.add(r0_, ir.Constant(i64, i))]))])
                    for i in range(mr)]
            with cgutils.for_range(builder, nq_) as loop:
                t = loop.index
                at = builder.load(builder.gep(off_p, [t]))
                wrow = builder.gep(w_p, [builder.add(w0_, builder.mul(t, ldw_))])
                wv = [builder.load(builder.bitcast(builder.gep(wrow, [ir.Constant(i64, 64 * j)]), vt.as_pointer()),
                                   align=1) for j in range(nv)]
                for i in range(mr):
                    a = builder.load(builder.bitcast(builder.gep(rows[i], [at]), i32.as_pointer()), align=1)
                    av = builder.shuffle_vector(builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                    for j in range(nv):
                        builder.store(dot(builder.load(acc[i][j]), av, wv[j]), acc[i][j])
            _store_tile(builder, acc, c_p, c0_, ldc_, vt)
            return context.get_dummy_value()

        return sig, codegen

    return mk


def make_vnni_microkernel_wbcast(mr: int, nv: int):
    """The transposed tile: ``mr`` weight rows (broadcast) x ``nv*16`` activation columns (vectors).
    Return an intrinsic ``mk(V, v0, voff, W, w0, ldw, ldt, nq, C, c0, ldc, init, o0)`` computing

        C[c0 + i*ldc + j] = init[o0 + i] + sum_t sum_q V[v0 + voff[t] + 4j + q] * W[w0 + i*ldw + t*ldt + q]

    for ``i < mr``, ``j < nv*16`` (V uint8, W int8 quads, ``ldw``/``ldt`` bytes apart per row/quad, C and init int32, int32 wrap-around
    arithmetic). Column ``j``'s quad ``t`` is the int32 word at byte ``v0 + voff[t] + 4j``: packed
    activation panels for a GEMM, or shifted planes of a channel-quad-planar input for a stride-1
    convolution, whose output then lands in NCHW order."""
    if mr <= 0 or nv <= 0:
        raise ValueError(f"vnni micro-kernel tile {mr} rows x {nv} vectors must be positive")

    @intrinsic
    def mk(typingctx, V, v0, voff, W, w0, ldw, ldt, nq, C, c0, ldc, init, o0):
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in (V, voff, W, C, init)):
            return None
        if V.dtype != types.uint8 or W.dtype != types.int8 or C.dtype != types.int32 \
                or init.dtype != types.int32 or voff.dtype != types.int64:
            return None
        ip = types.intp
        sig = types.void(V, ip, voff, W, ip, ip, ip, ip, C, ip, ip, init, ip)

        def codegen(context, builder, signature, args):
            (v_arr, v0_, off_arr, w_arr, w0_, ldw_, ldt_, nq_, c_arr, c0_, ldc_, init_arr, o0_) = args
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vt = ir.VectorType(i32, LANES)
            sa = signature.args
            v_p, off_p, w_p, c_p, in_p = (context.make_array(sa[q])(context, builder, args[q]).data
                                          for q in (0, 2, 3, 8, 11))
            dot = _vpdpbusd(builder)
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(vt, [0] * LANES)

            def bcast(x):
                return builder.shuffle_vector(builder.insert_element(undef, x, ir.Constant(i32, 0)), undef, splat)

            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in range(mr)]
            for i in range(mr):
                start = bcast(builder.load(builder.gep(in_p, [builder.add(o0_, ir.Constant(i64, i))])))
                for slot in acc[i]:
                    builder.store(start, slot)
            wrows = [builder.gep(w_p, [builder.add(w0_, builder.mul(ldw_, ir.Constant(i64, i)))]) for i in range(mr)]
            vbase = builder.gep(v_p, [v0_])
            with cgutils.for_range(builder, nq_) as loop:
                t = loop.index
                vrow = builder.gep(vbase, [builder.load(builder.gep(off_p, [t]))])
                vv = [builder.load(builder.bitcast(builder.gep(vrow, [ir.Constant(i64, 64 * j)]), vt.as_pointer()),
                                   align=1) for j in range(nv)]
                t4 = builder.mul(t, ldt_)
                for i in range(mr):
                    wq = builder.load(builder.bitcast(builder.gep(wrows[i], [t4]), i32.as_pointer()), align=1)
                    wb = bcast(wq)
                    for j in range(nv):
                        builder.store(dot(builder.load(acc[i][j]), vv[j], wb), acc[i][j])
            _store_tile(builder, acc, c_p, c0_, ldc_, vt)
            return context.get_dummy_value()

        return sig, codegen

    return mk
