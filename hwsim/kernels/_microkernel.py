"""float32/float64 GEMM micro-kernels written as LLVM IR through ``numba.extending.intrinsic``.

Why IR and not plain Numba loops: a register-blocked micro-kernel needs an MR x NR tile of
accumulators that stays in vector registers for the whole K loop. Numba arrays are heap objects,
so LLVM cannot promote a local accumulator array to registers and the kernel becomes load/store
bound. Here each accumulator is an explicit ``<16 x float>`` (or ``<8 x double>``) value (an
``alloca`` in the entry block, which LLVM's mem2reg turns into SSA registers), updated with
``llvm.fma``. With MR = 8 rows and 3 vectors (NR = 48 float32 columns) the tile holds 24 zmm
accumulators; each k step issues 3 vector loads of B, 8 scalar broadcasts of A and 24 FMAs.
On a CPU without AVX-512 LLVM splits each vector in halves: still correct, slower.

Numba's on-disk cache (``cache=True``) of the functions in ``_conv.py`` is keyed on a hash of that
file's bytes only: after editing the code generator here, bump ``_conv.DEPS_REVISION`` (or delete
``hwsim/kernels/__pycache__``) so that they are recompiled.

The micro-kernel computes, for ``kk`` in ``[k0, k0 + kc)``::

    C[c0 + i*ldc + j] (+)= sum_kk A[a0 + i*lda + kk] * B[boff[kk] + b0 + j]
                          for i < MR, j < NR

``boff`` holds one B row offset per k: for a convolution this is the offset of the shifted input
plane of one (channel, tap) pair, so the implicit GEMM runs without an im2col copy (see
``_conv.py``). A is read with a row stride ``lda`` (the raw weight tensor, no packing). B and C
accesses are unaligned vector loads/stores (``align 4``), so any offset is legal; the caller
guarantees that ``boff[kk] + b0 + NR`` stays inside B.
"""
from __future__ import annotations

import llvmlite.binding as llb
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

VECTOR_BYTES = 64  # one 512-bit register: 16 float32 or 8 float64 lanes (AVX-512)


def target_features() -> str:
    """The CPU feature string LLVM compiles Numba code for (the host unless ``NUMBA_CPU_FEATURES`` overrides it)."""
    return config.CPU_FEATURES or llb.get_host_cpu_features().flatten()


def lanes(dtype) -> int:
    """Vector lanes for a numpy float dtype (16 for float32, 8 for float64)."""
    return VECTOR_BYTES // dtype.itemsize


def make_microkernel(mr: int, nv: int):
    """Return an intrinsic ``mk(A, a0, lda, B, b0, boff, k0, kc, C, c0, ldc, accumulate)``.

    ``mr`` rows of A times ``nv`` vectors of B columns (``nr = nv * lanes``: 16 lanes for float32
    arrays, 8 for float64; A, B and C must share the dtype, ``boff`` is int64).
    ``accumulate=False`` overwrites C.
    """
    if nv <= 0 or mr <= 0:
        raise ValueError(f"micro-kernel tile {mr} rows x {nv} vectors must be positive")

    @intrinsic
    def mk(typingctx, A, a0, lda, B, b0, boff, k0, kc, C, c0, ldc, accumulate):
        arrays = (A, B, C)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays + (boff,)):
            return None
        if A.dtype not in (types.float32, types.float64) or B.dtype != A.dtype \
                or C.dtype != A.dtype or boff.dtype != types.int64:
            return None
        sig = types.void(A, types.intp, types.intp, B, types.intp, boff, types.intp, types.intp,
                         C, types.intp, types.intp, types.boolean)
        is_f32 = A.dtype == types.float32

        def codegen(context, builder, signature, args):
            (a_arr, a0_, lda_, b_arr, b0_, off_arr, k0_, kc_, c_arr, c0_, ldc_, acc_) = args
            elt = ir.FloatType() if is_f32 else ir.DoubleType()
            nl = 16 if is_f32 else 8
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            vt = ir.VectorType(elt, nl)
            vptr = vt.as_pointer()
            sa = signature.args
            a_p = context.make_array(sa[0])(context, builder, a_arr).data
            b_p = context.make_array(sa[3])(context, builder, b_arr).data
            o_p = context.make_array(sa[5])(context, builder, off_arr).data
            c_p = context.make_array(sa[8])(context, builder, c_arr).data
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                "llvm.fma.v16f32" if is_f32 else "llvm.fma.v8f64")
            zero = ir.Constant(vt, [0.0] * nl)
            undef = ir.Constant(vt, ir.Undefined)
            splat_mask = ir.Constant(ir.VectorType(i32, nl), [0] * nl)
            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in range(mr)]
            for row in acc:
                for slot in row:
                    builder.store(zero, slot)
            row_base = [builder.add(a0_, builder.mul(lda_, ir.Constant(i64, i))) for i in range(mr)]
            with cgutils.for_range(builder, kc_) as loop:
                kk = builder.add(loop.index, k0_)
                off = builder.add(builder.load(builder.gep(o_p, [kk])), b0_)
                bptr = builder.gep(b_p, [off])
                bv = [builder.load(builder.bitcast(builder.gep(bptr, [ir.Constant(i64, nl * j)]),
                                                   vptr), align=4) for j in range(nv)]
                for i in range(mr):
                    a = builder.load(builder.gep(a_p, [builder.add(row_base[i], kk)]))
                    av = builder.shuffle_vector(
                        builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat_mask)
                    for j in range(nv):
                        builder.store(builder.call(fma, [av, bv[j], builder.load(acc[i][j])]),
                                      acc[i][j])
            for i in range(mr):
                crow = builder.gep(c_p, [builder.add(c0_, builder.mul(ldc_, ir.Constant(i64, i)))])
                for j in range(nv):
                    p = builder.bitcast(builder.gep(crow, [ir.Constant(i64, nl * j)]), vptr)
                    old = builder.load(p, align=4)
                    keep = builder.select(acc_, old, zero)
                    builder.store(builder.fadd(builder.load(acc[i][j]), keep), p, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


# Tile families used by the convolution driver, as (vectors per row, row counts tried largest
# first); a float32 vector holds 16 columns, a float64 vector 8. 8x3 and 6x4 vectors were the fastest
# tiles timed; 7x4 (28 accumulators) spills, and 12x2 (12 weight rows K*4 bytes apart) conflicts in L1
# inside the convolution (timings: docs/targets/kernels.md, "Tile choices"). The driver picks 4-vector tiles where they waste fewer padded columns (a 7x7 map
# has 63 flat positions: one 64-wide tile instead of two 48-wide ones); family 2 (1 row x 8
# vectors) serves depthwise and other narrow groups on larger maps.
MK3_8, MK3_4, MK3_2, MK3_1 = (make_microkernel(r, 3) for r in (8, 4, 2, 1))
MK4_6, MK4_4, MK4_2, MK4_1 = (make_microkernel(r, 4) for r in (6, 4, 2, 1))
MK8_1 = make_microkernel(1, 8)
FAMILIES = ((3, (8, 4, 2, 1)), (4, (6, 4, 2, 1)), (8, (1,)))
# Narrow tiles for the last column tile of a row of tiles (1 or 2 vectors where the family's 3 or
# 4 would compute up to 47 / 63 dropped columns: a 14x14 map with pad 1 has 210 flat positions,
# 14 vectors instead of 15 or 16).
NARROW_ROWS = {1: (8, 1), 2: (8, 4, 1)}  # row tiles of the 1- and 2-vector narrow tiles
MK2_8, MK2_4, MK2_1 = (make_microkernel(r, 2) for r in NARROW_ROWS[2])
MK1_8, MK1_1 = (make_microkernel(r, 1) for r in NARROW_ROWS[1])
