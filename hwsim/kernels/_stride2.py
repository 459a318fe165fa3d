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

``deinterleave2_rows16`` is the same with chunks of 16 pairs, for phase rows of at most 16 columns (the
depthwise kernel's 7x7 to 28x28 maps, ``_dwconv``): half the loads, shuffles and stores of a 32-pair chunk
whose upper half would be masked off (672 channels 14x14 5x5 stride 2, fill alone: 35 -> 22 us).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

CHUNK = 32  # pairs per iteration of deinterleave2_rows


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


def _chunk(builder, x_p, p_p, row, t0, w, d0, d1, n_out, elt, align, chunk):
    """Pairs ``j < min(chunk, n_out)`` of one chunk: input lanes ``t0 + l`` (``0 <= . < w`` read),
    phase 0 to ``P[d0 + j]``, phase 1 to ``P[d1 + j]``."""
    i1, i32 = ir.IntType(1), ir.IntType(32)
    vin, vout = ir.VectorType(elt, 2 * chunk), ir.VectorType(elt, chunk)
    suffix = "f32" if isinstance(elt, ir.FloatType) else "f64"
    mod = builder.module
    mload = cgutils.get_or_insert_function(
        mod, ir.FunctionType(vin, [vin.as_pointer(), i32, ir.VectorType(i1, 2 * chunk), vin]),
        f"llvm.masked.load.v{2 * chunk}{suffix}.p0")
    mstore = cgutils.get_or_insert_function(
        mod, ir.FunctionType(ir.VoidType(), [vout, vout.as_pointer(), i32, ir.VectorType(i1, chunk)]),
        f"llvm.masked.store.v{chunk}{suffix}.p0")
    lo = _clamp(builder, builder.neg(t0), 2 * chunk)  # lanes [lo, hi) lie inside the row
    hi = _clamp(builder, builder.sub(w, t0), 2 * chunk)
    m_in = builder.and_(_low_bits(builder, hi, 2 * chunk), builder.not_(_low_bits(builder, lo, 2 * chunk)))
    if 2 * chunk < 64:
        m_in = builder.trunc(m_in, ir.IntType(2 * chunk))
    m_in = builder.bitcast(m_in, ir.VectorType(i1, 2 * chunk))
    m_out = builder.bitcast(builder.trunc(_low_bits(builder, _clamp(builder, n_out, chunk), chunk), ir.IntType(chunk)),
                            ir.VectorType(i1, chunk))
    ptr = builder.bitcast(builder.gep(x_p, [builder.add(row, t0)]), vin.as_pointer())
    v = builder.call(mload, [ptr, ir.Constant(i32, align), m_in, ir.Constant(vin, [0.0] * 2 * chunk)])
    for phase, dst in ((0, d0), (1, d1)):
        half = builder.shuffle_vector(v, ir.Constant(vin, ir.Undefined),
                                      ir.Constant(ir.VectorType(i32, chunk), [2 * j + phase for j in range(chunk)]))
        builder.call(mstore, [half, builder.bitcast(builder.gep(p_p, [dst]), vout.as_pointer()),
                              ir.Constant(i32, align), m_out])


def _make_deinterleave(chunk: int):
    """The intrinsic of the module docstring with ``chunk`` pairs per iteration."""

    def deinterleave(typingctx, x, src, w, base, P, d0, d1, wq, nrows, sstride, dstride):
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
            nchunk = builder.sdiv(builder.add(wq_, ir.Constant(i64, chunk - 1)), ir.Constant(i64, chunk))
            with cgutils.for_range(builder, nrows_) as rows:
                r = rows.index
                row = builder.add(src_, builder.mul(r, ss_))
                drow = builder.mul(r, ds_)
                with cgutils.for_range(builder, nchunk) as loop:
                    off = builder.mul(loop.index, ir.Constant(i64, chunk))
                    t0 = builder.add(base_, builder.mul(off, ir.Constant(i64, 2)))
                    _chunk(builder, x_p, p_p, row, t0, w_, builder.add(builder.add(d0_, drow), off),
                           builder.add(builder.add(d1_, drow), off), builder.sub(wq_, off), elt,
                           4 if is_f32 else 8, chunk)
            return context.get_dummy_value()

        return sig, codegen

    deinterleave.__name__ = "deinterleave2_rows" if chunk == CHUNK else f"deinterleave2_rows{chunk}"
    deinterleave.__doc__ = "See the module docstring."
    return intrinsic(deinterleave)


deinterleave2_rows = _make_deinterleave(CHUNK)
deinterleave2_rows16 = _make_deinterleave(16)
