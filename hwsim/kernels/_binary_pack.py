"""Channel packing of 0/1 bytes into 64-channel words, 64 pixels at a time, as LLVM IR.

``pack64(x, xoff, cs, npix, out, dst)`` reads 64 channel planes of one-byte 0/1 values (nonzero =
bit 1) at ``x[xoff + c*cs + p]`` for pixels ``p < 64`` and writes the 64-bit word whose bit ``c`` is
channel ``c`` of pixel ``p`` to ``out[dst[g0 + p // 8] + shift + p % 8]`` (eight runs of 8 words: consecutive
for a plain word plane, or straight into the padded layout when 8 pixels never straddle a row). Per 8 channels the 64-pixel rows are tested against zero
and ORed into one byte plane (``<64 x i8>``: 64 byte lanes per AVX-512 op); the 8 byte planes are then
transposed into 64 words by three interleave stages (bytes, 16-bit pairs, 32-bit quads: 24 two-source
shuffles, ``vpermt2b/w/d`` with AVX-512 VBMI). About 300 vector instructions per 64 pixels x 64
channels, against two passes with a read-modify-write per channel in the generic Numba packer of
``_binary_conv`` (which keeps pixels outside whole 64-pixel blocks, channel tails and other dtypes).
On AVX2 hosts LLVM splits the vectors in ymm halves (correct, slower).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

PIX = 64  # pixels per block


def _interleave(builder, lo, hi, n):
    """Interleave two ``<n x iB>`` vectors element-wise: (lo[0], hi[0], lo[1], hi[1], ...), returned as
    the first and second half (each ``n`` elements)."""
    first = [v for p in range(n // 2) for v in (p, n + p)]
    second = [v for p in range(n // 2, n) for v in (p, n + p)]
    i32 = ir.IntType(32)
    return (builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, n), first)),
            builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, n), second)))


def _byte_plane(builder, x_p, base, cs, q, mask):
    """``<64 x i8>``: bit ``b`` of lane ``p`` = (x[base + (8q + b)*cs + p] != 0); lanes outside
    ``mask`` (a ``<64 x i1>``, None = all) are not read and count as 0."""
    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    vt = ir.VectorType(i8, PIX)
    acc = ir.Constant(vt, [0] * PIX)
    if mask is not None:
        mload = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mask.type, vt]), "llvm.masked.load.v64i8.p0")
    for b in range(8):
        off = builder.add(base, builder.mul(cs, ir.Constant(i64, 8 * q + b)))
        ptr = builder.bitcast(builder.gep(x_p, [off]), vt.as_pointer())
        v = builder.load(ptr, align=1) if mask is None else \
            builder.call(mload, [ptr, ir.Constant(i32, 1), mask, ir.Constant(vt, [0] * PIX)])
        nz = builder.icmp_unsigned("!=", v, ir.Constant(vt, [0] * PIX))
        acc = builder.or_(acc, builder.select(nz, ir.Constant(vt, [1 << b] * PIX), ir.Constant(vt, [0] * PIX)))
    return acc


def _words(builder, planes):
    """8 byte planes ``<64 x i8>`` (plane q, pixel p) -> 8 ``<8 x i64>`` vectors, pixels 8r..8r+7,
    byte q of each word = plane q's lane: interleave bytes (planes 2k, 2k+1: pixel pairs as i16),
    then 16-bit pairs (planes 0-3, 4-7: i32), then 32-bit quads (planes 0-7: i64)."""
    def stage(a, b, width):
        vt = ir.VectorType(ir.IntType(width), 512 // width)
        return _interleave(builder, builder.bitcast(a, vt), builder.bitcast(b, vt), vt.count)

    pairs = [stage(planes[2 * k], planes[2 * k + 1], 8) for k in range(4)]  # (pixels 0-31, 32-63)
    quads = [[stage(pairs[2 * g][h], pairs[2 * g + 1][h], 16) for h in range(2)] for g in range(2)]
    words = []
    for h in range(2):
        for h2 in range(2):  # pixels 32h + 16h2 .. +15
            words.extend(stage(quads[0][h][h2], quads[1][h][h2], 32))
    vt = ir.VectorType(ir.IntType(64), 8)
    return [builder.bitcast(w, vt) for w in words]


def make_pack64(masked: bool):
    """Intrinsic ``pack64(x, xoff, cs, npix, out, dst, g0, shift)``; see the module docstring. ``masked``: only
    pixels ``p < npix`` are read (masked loads: maps smaller than 64 pixels, no read past the input;
    the words of the other pixels are written as 0);
    otherwise ``npix`` is ignored and all 64 pixels are read (unmasked loads, AVX2 friendly)."""

    @intrinsic
    def pack64(typingctx, x, xoff, cs, npix, out, dst, g0, shift):
        arrays = (x, out, dst)
        if not (all(isinstance(t, types.Array) and t.layout == "C" for t in arrays)
                and x.dtype in (types.uint8, types.int8) and out.dtype == types.uint64 and dst.dtype == types.int64):
            return None
        sig = types.void(x, types.intp, types.intp, types.intp, out, dst, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            x_arr, xoff_, cs_, npix_, out_arr, dst_arr, g0_, shift_ = args
            sa = signature.args
            x_p = builder.bitcast(context.make_array(sa[0])(context, builder, x_arr).data, ir.IntType(8).as_pointer())
            o_p = context.make_array(sa[4])(context, builder, out_arr).data
            d_p = context.make_array(sa[5])(context, builder, dst_arr).data
            mask = None
            if masked:
                lane = ir.Constant(ir.VectorType(ir.IntType(64), PIX), list(range(PIX)))
                lim = builder.insert_element(ir.Constant(lane.type, ir.Undefined), npix_, ir.Constant(ir.IntType(32), 0))
                lim = builder.shuffle_vector(lim, ir.Constant(lane.type, ir.Undefined),
                                             ir.Constant(ir.VectorType(ir.IntType(32), PIX), [0] * PIX))
                mask = builder.icmp_signed("<", lane, lim)
            planes = [_byte_plane(builder, x_p, xoff_, cs_, q, mask) for q in range(8)]
            words = _words(builder, planes)
            vt = ir.VectorType(ir.IntType(64), 8)
            for r, wv in enumerate(words):
                at = builder.load(builder.gep(d_p, [builder.add(g0_, ir.Constant(ir.IntType(64), r))]))
                p = builder.gep(o_p, [builder.add(at, shift_)])
                builder.store(wv, builder.bitcast(p, vt.as_pointer()), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return pack64
