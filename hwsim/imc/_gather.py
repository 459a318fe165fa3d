"""The analog ADC path with 1-bit DAC steps and float32 codes: a chunked subset-sum kernel whose tables stay cached.

Same arithmetic and the same bits as :func:`hwsim.imc.xbar.split_adc` (and :func:`hwsim.imc._analog.split_adc_rows`,
which hands this kernel its common case: ``d = 1``, ``ADC_RINT32`` with float32 codes, no ADC noise, analog cells):
for every pixel and step the conductances of the rows whose input bit is set are summed over the pairs, each sum
converted ``code = clip(rint(p/lsb), 0, top)`` and ``Σ_j 2^j·code_j`` accumulated in float32 (exact: integers below
2^24, :func:`hwsim.imc._analog.codes_fit_float32`), then scaled by the LSB and shifted into ``acc``.

How it spends fewer cycles (measured on ResNet-20's splits, one thread): the subset sums of 8-row groups
(:func:`chunk_table`, one byte of an input bit-plane word selects a group's entry) are laid out 16 pairs to a
chunk, so a group's 256 entries of one chunk are 16 KB; the partial sums of 16 pixels x their non-zero steps are
formed group by group, four groups (64 KB of table, one pass over the partial sums) at a time, every addition one
16-float vector (explicit LLVM vectors: :func:`_add4`); the same table read 16 pixels x 8 steps times while it
is in L1/L2, where the row kernel reads a whole row of all pairs per group from a table of several MB. On
ResNet-20's splits (one thread) it takes 10-25 % less time than the row kernel in all, half on the narrowest ones,
and more than it on the 384-pair splits (so those stay there: :data:`TABLE_BYTES`). On a CPU without AVX-512 LLVM
splits each 16-float vector into narrower ones (same results).

Exactness: every table entry is a sum of at most 8 grid conductances and every partial sum a sum of table
entries, all on the 2^-F grid below 2^24 grid units (:func:`hwsim.imc.physics.grid_bits`), so float32 adds them
exactly in any order; the rounding ``(p·(1/lsb) + 1.5·2^23) − 1.5·2^23`` is the same float32 operation sequence as
:func:`hwsim.imc.xbar._convert_rint32` (no fused multiply-add: the LLVM instructions carry no fast-math flags); the
float64 shift-and-add ``acc += colw·(lsb·Σ)`` adds the same values in the same order per pixel as the row kernel.
Cells of either sign (a reference column) stay exact the same way, and a negative sum converts to code 0.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from hwsim.imc import _bitplane as bp
from hwsim.imc import xbar as xb

__all__ = ["LANES", "GROUP", "TABLE_BYTES", "BLOCK", "chunk_table", "fits", "split_adc_chunks"]

LANES = 16  # pairs per chunk: one 512-bit vector of float32
GROUP = 8  # rows per subset-sum group: one byte of a 64-row input bit-plane word
TABLE_BYTES = 1 << 22  # at most 4 MB of table; wider splits take the row kernel (measured faster on ResNet-20's
# 384-pair splits of 4096 pixels, 6.3 MB: its long rows stream; slower on the narrower ones)
BLOCK = 1024  # pixels per parallel work item (scratch allocated once per item)
_MAGIC32 = xb._RINT_MAGIC32  # 1.5·2^23: float32 rounding half to even


def _vec_ptr(context, builder, ty, arr, offset):
    """Pointer to ``LANES`` float32 at ``arr[offset]`` (a contiguous float32 array)."""
    data = context.make_array(ty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [offset]), ir.VectorType(ir.FloatType(), LANES).as_pointer())


def _add_rows_codegen(context, builder, signature, args):
    """acc[ao:ao+16] += Σ_i t[o_i:o_i+16] for args (acc, ao, t, o_1, ..., o_n): one vector load per row, a
    balanced sum, one load and one store of acc."""
    pa = _vec_ptr(context, builder, signature.args[0], args[0], args[1])
    rows = [builder.load(_vec_ptr(context, builder, signature.args[2], args[2], o), align=4) for o in args[3:]]
    while len(rows) > 1:
        rows = [builder.fadd(rows[i], rows[i + 1]) for i in range(0, len(rows) - 1, 2)] + rows[len(rows) & ~1:]
    builder.store(builder.fadd(builder.load(pa, align=4), rows[0]), pa, align=4)
    return context.get_dummy_value()


@intrinsic
def _add1(typingctx, acc, ao, t, o0):
    """acc[ao:ao+16] += t[o0:o0+16] (float32)."""
    return types.void(acc, ao, t, o0), _add_rows_codegen


@intrinsic
def _add2(typingctx, acc, ao, t, o0, o1):
    """acc[ao:ao+16] += t[o0:o0+16] + t[o1:o1+16]."""
    return types.void(acc, ao, t, o0, o1), _add_rows_codegen


@intrinsic
def _add4(typingctx, acc, ao, t, o0, o1, o2, o3):
    """acc[ao:ao+16] += (t[o0:o0+16] + t[o1:o1+16]) + (t[o2:o2+16] + t[o3:o3+16])."""
    return types.void(acc, ao, t, o0, o1, o2, o3), _add_rows_codegen


@intrinsic
def _codes(typingctx, p, po, a32, ao, il, tp, w):
    """a32[ao:ao+16] += w·min(max((p[po:po+16]·il + M) − M, 0), tp), M = 1.5·2^23, in float32 (as ADC_RINT32)."""
    sig = types.void(p, po, a32, ao, il, tp, w)

    def codegen(context, builder, signature, args):
        vt = ir.VectorType(ir.FloatType(), LANES)

        def splat(x):
            v = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

        pp = _vec_ptr(context, builder, signature.args[0], args[0], args[1])
        pa = _vec_ptr(context, builder, signature.args[2], args[2], args[3])
        zero, mg, tpv = ir.Constant(vt, [0.0] * LANES), ir.Constant(vt, [_MAGIC32] * LANES), splat(args[5])
        c = builder.fsub(builder.fadd(builder.fmul(builder.load(pp, align=4), splat(args[4])), mg), mg)
        c = builder.select(builder.fcmp_ordered(">", c, zero), c, zero)
        c = builder.select(builder.fcmp_ordered("<", c, tpv), c, tpv)
        builder.store(builder.fadd(builder.load(pa, align=4), builder.fmul(splat(args[6]), c)), pa, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _aligned(n):
    """n float32 zeros starting on a 64-byte boundary (whole-vector loads and stores stay within a cache line)."""
    buf = np.zeros(n + LANES, dtype=np.float32)
    o = ((64 - buf.ctypes.data % 64) % 64) // 4
    return buf[o:o + n]


def fits(rows: int, q: int) -> bool:
    """True when the chunked table of a split of ``rows`` rows and ``q`` pairs stays within ``TABLE_BYTES``."""
    return -(-rows // GROUP) * 256 * -(-q // LANES) * LANES * 4 <= TABLE_BYTES


@njit(cache=True)
def chunk_table(cells, ng, nch):
    """T[((c·ng + g)·256 + mask)·16 + l] = Σ_{t in mask} cells[8g + t, 16c + l] (rows and pairs past the split's
    count as 0): each entry one row addition to the entry without its lowest row (exact grid sums, any order)."""
    rows, q_n = cells.shape
    cp = np.zeros((nch, ng * GROUP, LANES), dtype=np.float32)
    for r in range(rows):
        for q in range(q_n):
            cp[q // LANES, r, q % LANES] = cells[r, q]
    t = _aligned(nch * ng * 256 * LANES)
    for c in range(nch):
        for g in range(ng):
            b0 = (c * ng + g) * 256 * LANES
            for mask in range(1, 256):
                low = mask & -mask
                r = GROUP * g
                while (1 << (r - GROUP * g)) != low:
                    r += 1
                dst, src, row = b0 + mask * LANES, b0 + (mask ^ low) * LANES, cp[c, r]
                for lane in range(LANES):
                    t[dst + lane] = t[src + lane] + row[lane]
    return t


@njit(cache=True)
def _active_steps(xall, i, nw, jn, na, mk, psi, psj):
    """Append pixel i's steps with a set input bit to the list: their plane words mk[na, w] = xall[j, i·nw + w]
    (group g's mask is byte g), pixel psi and step psj. Returns the new count."""
    for j in range(jn):
        anyw = np.uint64(0)
        for w in range(nw):
            u = xall[j, i * nw + w]
            mk[na, w] = u
            anyw |= u
        if anyw == 0:
            continue
        psi[na] = i
        psj[na] = j
        na += 1
    return na


@njit(cache=True)
def _entry(mk, k, g):
    """Table offset of group g's entry for active step k: its mask (byte g of the plane words) times 16."""
    return np.int64((mk[k, g >> 3] >> np.uint64(8 * (g & 7))) & np.uint64(255)) * LANES


@njit(cache=True)
def _partial_sums(t, c, ng, mk, na, p):
    """p[k·16:(k+1)·16] = the 16 pairs of chunk c summed over the set rows of active step k, four groups a pass."""
    p[:na * LANES] = 0
    g = 0
    base = c * ng * 256 * LANES
    while g + 4 <= ng:
        t0 = base + g * 256 * LANES
        t1, t2, t3 = t0 + 256 * LANES, t0 + 512 * LANES, t0 + 768 * LANES
        for k in range(na):
            _add4(p, k * LANES, t, t0 + _entry(mk, k, g), t1 + _entry(mk, k, g + 1), t2 + _entry(mk, k, g + 2),
                  t3 + _entry(mk, k, g + 3))
        g += 4
    if g + 2 <= ng:
        t0 = base + g * 256 * LANES
        t1 = t0 + 256 * LANES
        for k in range(na):
            _add2(p, k * LANES, t, t0 + _entry(mk, k, g), t1 + _entry(mk, k, g + 1))
        g += 2
    if g < ng:
        t0 = base + g * 256 * LANES
        for k in range(na):
            _add1(p, k * LANES, t, t0 + _entry(mk, k, g))


@njit(cache=True, parallel=True)
def split_adc_chunks(xp, base, off, m0, m1, k0, rows, cells, jn, colw, colout, lsb, top, acc):
    """:func:`hwsim.imc.xbar.split_adc` for 1-bit steps, mode ``ADC_RINT32`` with float32 codes, no noise,
    ``lin = 0`` and ``skip_sum = 0`` (a step with no set input bit is skipped), float32 cells: the same result bit for
    bit (module docstring). Arguments as there."""
    n_pix = base.shape[0]
    q_n = cells.shape[1]
    nw = max(1, (rows + 63) // 64)
    ng = (rows + GROUP - 1) // GROUP
    nch = (q_n + LANES - 1) // LANES
    t = chunk_table(cells, ng, nch)
    il = np.float32(1.0 / lsb)
    tp = np.float32(top)
    sub = bp.SUB
    nb = (m1 - m0 + BLOCK - 1) // BLOCK
    for blk in prange(nb):  # each work item: BLOCK pixels, 16 at a time, with its own scratch
        words = np.zeros((8, sub * nw), dtype=np.uint64)
        xall = np.zeros((jn, sub * nw), dtype=np.uint64)
        mk = np.zeros((sub * jn, nw), dtype=np.uint64)
        psi = np.zeros(sub * jn, dtype=np.int64)
        psj = np.zeros(sub * jn, dtype=np.int64)
        hit = np.zeros(sub, dtype=np.bool_)
        p = _aligned(sub * jn * LANES)
        a32 = _aligned(sub * LANES)
        end = min(m1, m0 + (blk + 1) * BLOCK)
        for ms in range(m0 + blk * BLOCK, end, sub):
            nm = min(sub, end - ms)
            bp._input_planes(xp, base, off, n_pix, ms, nm, k0, rows, jn, words, xall)
            na = 0
            for i in range(nm):
                n0 = na
                na = _active_steps(xall, i, nw, jn, na, mk, psi, psj)
                hit[i] = na > n0
            for c in range(nch if na else 0):
                _partial_sums(t, c, ng, mk, na, p)
                a32[:nm * LANES] = 0
                for k in range(na):
                    _codes(p, k * LANES, a32, psi[k] * LANES, il, tp, np.float32(1 << psj[k]))
                for i in range(nm):
                    if hit[i]:
                        m = ms + i
                        for lane in range(min(LANES, q_n - c * LANES)):
                            q = c * LANES + lane
                            acc[m, colout[q]] += colw[q] * (lsb * np.float64(a32[i * LANES + lane]))
