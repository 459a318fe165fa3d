"""Stride-2 column phases of input rows, as LLVM IR (``_conv._pack_phases``).

``deinterleave2_rows(x, src, w, base, P, d0, d1, wq, nrows, sstride, dstride)``: for ``r < nrows``
and ``j < wq``, with ``t = base + 2*j`` and row ``x[src + r*sstride ...]`` of ``w`` elements,

    P[d0 + r*dstride + j] = x[src + r*sstride + t]       if 0 <= t < w     else 0
    P[d1 + r*dstride + j] = x[src + r*sstride + t + 1]   if 0 <= t + 1 < w else 0

i.e. the two column phases of a stride-2 convolution (``base = rw - pw``), whole rows with their
zero padding, float32 or float64. ResNet's stride-2 layers have short phase rows (29 columns at
56x56): an auto-vectorised loop leaves a scalar remainder of up to 15 pairs per row and the edges
loops of their own. Here every chunk of 32 pairs is one masked vector load of 64 elements (lanes
outside the row are neither read nor faulted: they give the zero padding), two two-source shuffles
(``vpermt2ps``) and two masked stores; the row loop is inside, one call per channel plane.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

CHUNK = 32  # pairs per iteration


def _clamp(builder, v, top):
    """``min(max(v, 0), top)`` of an i64."""
    i64 = ir.IntType(64)
    v = builder.select(builder.icmp_signed("<", v, ir.Constant(i64, 0)), ir.Constant(i64, 0), v)
    return builder.select(builder.icmp_signed(">", v, ir.Constant(i64, top)), ir.Constant(i64, top), v)


def _low_bits(builder, n, width):
    """i64 with the low ``n`` bits set, ``0 <= n <= width <= 64`` (no shift by 64)."""
    i64 = ir.IntType(64)
    full = ir.Constant(i64, (1 << width) - 1 if width < 64 else -1)
    part = builder.sub(builder.shl(ir.Constant(i64, 1), builder.select(
        builder.icmp_signed(">=", n, ir.Constant(i64, 64)), ir.Constant(i64, 0), n)), ir.Constant(i64, 1))
    return builder.select(builder.icmp_signed(">=", n, ir.Constant(i64, width)), full, part)


def _chunk(builder, x_p, p_p, row, t0, w, d0, d1, n_out, elt, align):
    """Pairs ``j < min(CHUNK, n_out)`` of one chunk: input lanes ``t0 + l`` (``0 <= . < w`` read),
    phase 0 to ``P[d0 + j]``, phase 1 to ``P[d1 + j]``."""
    i1, i32 = ir.IntType(1), ir.IntType(32)
    vin, vout = ir.VectorType(elt, 2 * CHUNK), ir.VectorType(elt, CHUNK)
    suffix = "f32" if isinstance(elt, ir.FloatType) else "f64"
    mod = builder.module
    mload = cgutils.get_or_insert_function(
        mod, ir.FunctionType(vin, [vin.as_pointer(), i32, ir.VectorType(i1, 2 * CHUNK), vin]),
        f"llvm.masked.load.v{2 * CHUNK}{suffix}.p0")
    mstore = cgutils.get_or_insert_function(
        mod, ir.FunctionType(ir.VoidType(), [vout, vout.as_pointer(), i32, ir.VectorType(i1, CHUNK)]),
        f"llvm.masked.store.v{CHUNK}{suffix}.p0")
    lo = _clamp(builder, builder.neg(t0), 2 * CHUNK)  # lanes [lo, hi) lie inside the row
    hi = _clamp(builder, builder.sub(w, t0), 2 * CHUNK)
    m_in = builder.bitcast(builder.and_(_low_bits(builder, hi, 2 * CHUNK), builder.not_(_low_bits(builder, lo, 2 * CHUNK))),
                           ir.VectorType(i1, 2 * CHUNK))
    m_out = builder.bitcast(builder.trunc(_low_bits(builder, _clamp(builder, n_out, CHUNK), CHUNK), i32),
                            ir.VectorType(i1, CHUNK))
    ptr = builder.bitcast(builder.gep(x_p, [builder.add(row, t0)]), vin.as_pointer())
    v = builder.call(mload, [ptr, ir.Constant(i32, align), m_in, ir.Constant(vin, [0.0] * 2 * CHUNK)])
    for phase, dst in ((0, d0), (1, d1)):
        half = builder.shuffle_vector(v, ir.Constant(vin, ir.Undefined),
                                      ir.Constant(ir.VectorType(i32, CHUNK), [2 * j + phase for j in range(CHUNK)]))
        builder.call(mstore, [half, builder.bitcast(builder.gep(p_p, [dst]), vout.as_pointer()),
                              ir.Constant(i32, align), m_out])


@intrinsic
def deinterleave2_rows(typingctx, x, src, w, base, P, d0, d1, wq, nrows, sstride, dstride):
    """See the module docstring."""
    if not (isinstance(x, types.Array) and isinstance(P, types.Array) and x.layout == "C" and P.layout == "C"
            and x.dtype == P.dtype and x.dtype in (types.float32, types.float64)):
        return None
    ip = types.intp
    sig = types.void(x, ip, ip, ip, P, ip, ip, ip, ip, ip, ip)
    is_f32 = x.dtype == types.float32

    def codegen(context, builder, signature, args):
        x_arr, src_, w_, base_, p_arr, d0_, d1_, wq_, nrows_, ss_, ds_ = args
        i64 = ir.IntType(64)
        elt = ir.FloatType() if is_f32 else ir.DoubleType()
        x_p = context.make_array(signature.args[0])(context, builder, x_arr).data
        p_p = context.make_array(signature.args[4])(context, builder, p_arr).data
        nchunk = builder.sdiv(builder.add(wq_, ir.Constant(i64, CHUNK - 1)), ir.Constant(i64, CHUNK))
        with cgutils.for_range(builder, nrows_) as rows:
            r = rows.index
            row = builder.add(src_, builder.mul(r, ss_))
            drow = builder.mul(r, ds_)
            with cgutils.for_range(builder, nchunk) as loop:
                off = builder.mul(loop.index, ir.Constant(i64, CHUNK))
                t0 = builder.add(base_, builder.mul(off, ir.Constant(i64, 2)))
                _chunk(builder, x_p, p_p, row, t0, w_, builder.add(builder.add(d0_, drow), off),
                       builder.add(builder.add(d1_, drow), off), builder.sub(wq_, off), elt, 4 if is_f32 else 8)
        return context.get_dummy_value()

    return sig, codegen
