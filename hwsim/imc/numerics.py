"""What the crossbars compute: bit-serial inputs x bit-sliced weights, per-column ADCs, shift-and-add.

For one conv/linear node with integer inputs q_x (``input_bits``) and weights q_w (``weight_bits``,
symmetric, from :mod:`mapping.passes.quantize`), the chip computes ``acc = Σ_k q_x[k]·q_w[k, n]``:

1. Encoding (all conductances and DAC levels are non-negative):
   - inputs: ``u = q_x + o_x`` with ``o_x = 2^(b_x-1)`` for signed inputs, 0 for unsigned ones;
     padded taps hold ``o_x`` (the encoded zero);
   - weights, OFFSET: one matrix ``U = q_w + o_w``, ``o_w = 2^(b_w-1)``; DIFFERENTIAL: two
     matrices ``U+ = max(q_w, 0)``, ``U- = max(-q_w, 0)`` (b_w - 1 magnitude bits each).
   Then ``acc = Σ u·U - o_w·Σ_k u - o_x·Σ_k U + K·o_x·o_w`` (OFFSET) or
   ``Σ u·U+ - Σ u·U- - o_x·Σ_k q_w`` (DIFFERENTIAL): the correction terms are exact digital sums.
2. ``u = Σ_j 2^(j·d)·X_j`` (d = dac_bits, J = ceil(b_x/d) steps) and ``U = Σ_s 2^(s·c)·W_s``
   (c = cell_bits, S slices). For every row split r (at most ``rows`` rows), step j, slice s and
   column n the array produces the analog partial sum ``p = Σ_{k∈r} X_j[k]·W_s[k, n]`` in
   ``[0, |r|·(2^d - 1)·(2^c - 1)]``.
   With ``column_flip`` (ISAAC §5), a (slice, column) pair of a row split whose cells sum to more than
   half of ``|r|·(2^c - 1)`` stores ``2^c - 1 - W_s`` instead: the array gives
   ``p' = (2^c - 1)·Σ_{k∈r} X_j[k] - p``, at most half the full scale, and the periphery recovers
   ``p`` from the exact digital sum of the inputs.
3. ADC (``AdcMode``): CLIP: ``code = min(rint(p + noise), 2^B - 1)``, LSB 1; SCALE: LSB = 2^e, the
   smallest power of two with ``(2^B - 1)·2^e >=`` the largest partial sum (``|r|·(2^d-1)·(2^c-1)``,
   halved with column flips),
   ``code = clip(rint((p + noise)/2^e), 0, 2^B - 1)``, value ``code·2^e``. Noise: Gaussian with
   std ``adc_noise_lsb`` LSB.
4. Shift-and-add: ``Σ_{r,j,s} 2^(j·d + s·c)·value`` (float64, exact for integer values < 2^53).

When ``2^B - 1`` covers the largest partial sum of every row split and there is no noise, steps
2-4 equal the integer GEMM exactly; the fast path then computes ``acc`` with the exact integer
kernels of :mod:`hwsim.kernels.int8`. Non-idealities (seeded): each cell value ``W_s`` times
``1 + conductance_sigma·z`` and a fraction ``stuck_at_rate`` of cells stuck at 0 or ``2^c - 1``,
fixed per weight key (the same cells at every execution), plus ADC noise per node execution.

Implementation (each path computes exactly the arithmetic above; tests check them against an
explicit int64 transcription of steps 1-4):
- :func:`program` encodes and slices a weight matrix once (the kernels cache it per weight array).
  A (slice, column) pair whose partial sum can never exceed the ADC range (even with every input
  level at its maximum) and that sees no noise is *exact*: all such pairs are folded into one
  matrix and computed by a single GEMM over the encoded inputs (float32 when every sum is an
  integer < 2^24, else float64).
- the other pairs go through the ADC: integer cells with a packed-bit popcount kernel
  (:func:`_bitserial_adc_popc`), non-integer cells (conductance variation) with a gathered-rows
  kernel (:func:`_bitserial_adc`), and ADC noise with dense float32 partial sums (one noise draw
  per conversion) then :func:`_adc_shift_add`. A step whose input levels are all zero produces
  partial sums of 0 and code 0 and is skipped (not with noise).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numba import njit

from hwsim.imc.spec import AdcMode, IMCSpec, SignedWeights
from hwsim.kernels import int8 as ik
from hwsim.kernels.binary import popcount64

__all__ = ["adc_exact", "int_dtype", "patches", "program", "apply", "Program", "crossbar_matmul",
           "exact_matmul_needed", "rng_for"]

_PIXEL_BLOCK = 2048  # output pixels per block of the bit-level path (bounds memory)


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator fixed by ``seed`` and names (stable across runs: crc32, not ``hash``)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(n.encode()) for n in names])


def int_dtype(bits: int, signed: bool):
    """Smallest operand dtype of the integer kernels holding ``bits``-bit values."""
    if signed:
        return np.int8 if bits <= 8 else (np.int16 if bits <= 16 else np.int32)
    return np.uint8 if bits <= 8 else (np.int16 if bits <= 15 else np.int32)


def adc_exact(spec: IMCSpec, rows_used: int) -> bool:
    """True when no partial sum of a row split of ``rows_used`` rows can be clipped or rounded."""
    return spec.partial_sum_max(rows_used) <= 2**spec.adc_bits - 1


def exact_matmul_needed(spec: IMCSpec, k: int) -> bool:
    """The structure shortcut: with an ADC that can never clip and no noise, an integer GEMM is exact."""
    return adc_exact(spec, k) and spec.adc_noise_lsb == 0 and spec.conductance_sigma == 0 and spec.stuck_at_rate == 0


def patches(xq: np.ndarray, kernel, stride, padding, dilation, pad_value: int) -> np.ndarray:
    """im2col: [N, C, H, W] integers -> [N·OH·OW, C·kh·kw] (channel-major, like the weight rows)."""
    n, c, h, w = xq.shape
    kh, kw = kernel
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=xq.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = xq
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    oh, ow = win.shape[2], win.shape[3]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * kh * kw)


@njit(cache=True)
def _adc_shift_add(p, acc, jw, colw, colout, clip_mode, lsb, top):
    """p: [J·Mb, Q] partial sums (step-major rows); acc[m, colout[q]] += jw[j]·colw[q]·ADC(p[j·Mb + m, q])."""
    jn = jw.shape[0]
    q_n = colw.shape[0]
    mb = acc.shape[0]
    for j in range(jn):
        for m in range(mb):
            row = j * mb + m
            for q in range(q_n):
                v = p[row, q]
                if clip_mode:
                    code = np.rint(v)
                else:
                    code = np.rint(v / lsb)
                if code < 0.0:
                    code = 0.0
                elif code > top:
                    code = top
                acc[m, colout[q]] += jw[j] * colw[q] * code * lsb


@njit(cache=True)
def _bitserial_adc(u, k0, rows, cells, jn, d, colw, colout, clip_mode, lsb, top, acc):
    """Fused crossbar read + ADC + shift-add for one row split, noise-free.

    For every pixel m and input step j the DAC levels ``X_j[m, k] = (u[m, k0+k] >> j·d) & (2^d-1)``
    select rows of ``cells`` [rows, Q]; their weighted sum is the partial sum of each (slice,
    column) pair q (what the array's bit lines carry), converted by the ADC and shifted into
    ``acc[m, colout[q]]`` with weight 2^(j·d)·colw[q]. A step whose levels are all zero gives
    partial sums of 0 (code 0) and is skipped. Same arithmetic as the dense GEMM path, fewer
    operations: only the non-zero levels are visited.
    """
    m_n = u.shape[0]
    q_n = cells.shape[1]
    mask = (1 << d) - 1
    p = np.empty(q_n, dtype=np.float32)
    idx = np.empty(rows, dtype=np.int64)
    lv = np.empty(rows, dtype=np.float32)
    for m in range(m_n):
        for j in range(jn):
            sh = j * d
            nnz = 0
            for k in range(rows):  # gather the rows this step drives
                lvl = (u[m, k0 + k] >> sh) & mask
                if lvl != 0:
                    idx[nnz] = k
                    lv[nnz] = lvl
                    nnz += 1
            if nnz == 0:
                continue
            for q in range(q_n):
                p[q] = 0.0
            for t in range(nnz):  # bit-line currents: sum of the driven rows' cells
                k = idx[t]
                f = lv[t]
                for q in range(q_n):
                    p[q] += f * cells[k, q]
            wj = 2.0 ** sh
            for q in range(q_n):
                if clip_mode:
                    code = np.rint(p[q])
                else:
                    code = np.rint(p[q] / lsb)
                if code < 0.0:
                    code = 0.0
                elif code > top:
                    code = top
                acc[m, colout[q]] += wj * colw[q] * code * lsb


@njit(cache=True)
def _bitserial_adc_popc(xp, wp, jn, d, colw, colout, clip_mode, lsb, top, acc):
    """The same arithmetic as :func:`_bitserial_adc` for integer cells, on packed bits.

    xp [M, Bx, W] uint64: bit i of every pixel's encoded inputs over the split's rows (W words);
    wp [c, W, Q] uint64: bit b of every (slice, column) pair's cells over the rows. The partial
    sum of step j is ``Σ_{i in step j} Σ_b 2^(i - j·d + b)·popcount(xp[m, i] & wp[b, :, q])``.
    """
    m_n = xp.shape[0]
    n_w = xp.shape[2]
    c_n = wp.shape[0]
    q_n = wp.shape[2]
    b_n = xp.shape[1]
    p = np.empty(q_n, dtype=np.int64)
    accq = np.empty(q_n, dtype=np.float64)  # Σ_j 2^(j·d)·code per pair, scattered once per pixel
    for m in range(m_n):
        for q in range(q_n):
            accq[q] = 0.0
        for j in range(jn):
            i0, i1 = j * d, min((j + 1) * d, b_n)
            nz = False
            for i in range(i0, i1):
                for w in range(n_w):
                    if xp[m, i, w] != 0:
                        nz = True
            if not nz:
                continue
            for q in range(q_n):
                p[q] = 0
            for i in range(i0, i1):
                for b in range(c_n):
                    sh = i - i0 + b
                    for w in range(n_w):
                        x = xp[m, i, w]
                        if x == 0:
                            continue
                        for q in range(q_n):
                            p[q] += np.int64(popcount64(x & wp[b, w, q])) << sh
            wj = 2.0 ** i0
            if clip_mode:
                for q in range(q_n):
                    accq[q] += wj * min(float(p[q]), top)
            else:
                for q in range(q_n):
                    accq[q] += wj * min(np.rint(p[q] / lsb), top)
        for q in range(q_n):
            acc[m, colout[q]] += colw[q] * accq[q] * lsb


@njit(cache=True)
def _pack_inputs(u, k0, rows, bx):
    """Bits of the encoded inputs u[:, k0:k0+rows] packed over rows: [M, bx, ceil(rows/64)] uint64."""
    m_n = u.shape[0]
    nw = (rows + 63) // 64
    out = np.empty((m_n, bx, nw), dtype=np.uint64)
    for m in range(m_n):
        for w in range(nw):
            kend = min(rows, (w + 1) * 64)
            for i in range(bx):
                word = np.uint64(0)
                for k in range(w * 64, kend):
                    word |= np.uint64((u[m, k0 + k] >> i) & 1) << np.uint64(k - w * 64)
                out[m, i, w] = word
    return out


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack a 0/1 array [..., rows] along its last axis into little-endian uint64 words [..., W]."""
    rows = bits.shape[-1]
    nw = (rows + 63) // 64
    padded = np.zeros(bits.shape[:-1] + (nw * 64,), dtype=np.uint8)
    padded[..., :rows] = bits
    return np.ascontiguousarray(np.packbits(padded, axis=-1, bitorder="little").view("<u8"))


@dataclass(frozen=True, slots=True)
class SplitProgram:
    """One row split of one stored matrix, as programmed.

    cells: [rows, Q] stored cell values of the (slice, column) pairs whose partial sums can clip
    (or are non-ideal), with their shift ``col_w`` and output column ``col_out``. The other pairs
    are exact and folded into :attr:`Program.exact`.
    """

    k0: int
    rows: int
    cells: np.ndarray
    col_w: np.ndarray
    col_out: np.ndarray
    lsb: float
    packed: np.ndarray | None = None  # [c, W, Q] uint64 cell bits (integer cells only)


@dataclass(frozen=True, slots=True)
class Program:
    """A weight matrix [K, N] programmed on crossbars: per stored matrix (sign) its row splits."""

    n: int
    parts: tuple  # ((sign, (SplitProgram, ...)), ...)
    exact: np.ndarray | None  # [K, N] Σ_sign sign·Σ_s 2^(s·c)·W_s over the pairs that never clip (one GEMM), or None
    w_offset: int  # o_w (OFFSET encoding) or 0
    colsum: np.ndarray  # Σ_k q_w[k, n] (int64), for the input-offset correction


def _slices(u: np.ndarray, spec: IMCSpec) -> np.ndarray:
    """[K, N] unsigned weights -> [S, K, N] nominal cell values (int64)."""
    mask = (1 << spec.cell_bits) - 1
    return np.stack([((u >> (s * spec.cell_bits)) & mask) for s in range(spec.slices)])


def _flips(nominal: np.ndarray, spec: IMCSpec) -> np.ndarray:
    """[S, K, N] nominal cells -> [S, K, N] bool: cells of the (slice, column) pairs the column-flip encoding
    stores complemented, decided per row split (their cells sum to more than half the full scale)."""
    flip = np.zeros(nominal.shape, dtype=bool)
    if not spec.column_flip:
        return flip
    cmax = 2**spec.cell_bits - 1
    for k0 in range(0, nominal.shape[1], spec.rows):
        c = nominal[:, k0:k0 + spec.rows, :]
        flip[:, k0:k0 + spec.rows, :] = (2 * c.sum(axis=1) > c.shape[1] * cmax)[:, None, :]
    return flip


def _cells(stored: np.ndarray, spec: IMCSpec, rng: np.random.Generator | None) -> np.ndarray:
    """[S, K, N] stored cell values -> float32, with stuck-at faults and conductance variation."""
    cells = stored.astype(np.float32)
    if rng is None:
        return cells
    if spec.stuck_at_rate > 0:
        hit = rng.random(cells.shape) < spec.stuck_at_rate
        high = rng.random(cells.shape) < 0.5
        cells = np.where(hit, np.where(high, np.float32(2**spec.cell_bits - 1), np.float32(0)), cells)
    if spec.conductance_sigma > 0:
        cells = cells * (1 + spec.conductance_sigma * rng.standard_normal(cells.shape)).astype(np.float32)
    return cells.astype(np.float32)


def program(qw: np.ndarray, spec: IMCSpec, weight_rng: np.random.Generator | None = None) -> Program:
    """Encode, slice and split ``qw`` [K, N] (signed ints) as the crossbars store it.

    A flipped (slice, column) pair reads ``Σ X·(cmax - W)``: its ADC path enters the shift-and-add with
    the opposite sign and ``cmax·Σ_{k in split} u`` (exact digital sums) is folded into the exact GEMM.
    """
    k, n = qw.shape
    q64 = qw.astype(np.int64)
    if spec.signed_weights == SignedWeights.OFFSET:
        ow = 2 ** (spec.weight_bits - 1)
        mats = [(q64 + ow, 1.0)]
    else:
        ow = 0
        mats = [(np.maximum(q64, 0), 1.0), (np.maximum(-q64, 0), -1.0)]
    top = float(2**spec.adc_bits - 1)
    clip_mode = spec.adc_mode == AdcMode.CLIP
    ideal = weight_rng is None and spec.adc_noise_lsb == 0
    dmax = 2**spec.dac_bits - 1
    cmax = 2**spec.cell_bits - 1
    shift = np.array([2.0 ** (s * spec.cell_bits) for s in range(spec.slices)])
    parts = []
    exact = np.zeros((k, n), dtype=np.float64)
    for mat, sign in mats:
        nominal = _slices(mat, spec)
        flipped = _flips(nominal, spec)
        cells = _cells(np.where(flipped, cmax - nominal, nominal), spec, weight_rng)  # [S, K, N] as stored
        splits = []
        for k0 in range(0, k, spec.rows):
            rows = min(spec.rows, k - k0)
            fs = spec.partial_sum_max(rows)
            lsb = 1.0 if clip_mode or fs <= top else float(2 ** int(np.ceil(np.log2(fs / top))))
            c = cells[:, k0:k0 + rows, :]  # [S, rows, N]
            fl = flipped[:, k0, :]  # [S, N]
            sgn = np.where(fl, -1.0, 1.0)  # the ADC path of a flipped pair is subtracted
            if fl.any():  # + cmax·Σ_{k in split} u for every flipped pair
                exact[k0:k0 + rows] += sign * cmax * np.einsum("s,sn->n", shift, fl.astype(np.float64))[None, :]
            if ideal and lsb == 1.0:  # pairs that never clip: every input step at its maximum stays <= top
                safe = dmax * c.sum(axis=1) <= top  # [S, N]
            else:
                safe = np.zeros((spec.slices, n), dtype=bool)
            if safe.any():
                exact[k0:k0 + rows] += sign * np.einsum("s,skn->kn", shift,
                                                        np.where(safe[:, None, :], sgn[:, None, :] * c, 0)
                                                        .astype(np.float64))
            s_idx, n_idx = np.nonzero(~safe)
            cl = np.ascontiguousarray(c[s_idx, :, n_idx].T, dtype=np.float32) if len(s_idx) else \
                np.zeros((rows, 0), np.float32)
            packed = None
            if weight_rng is None and cl.shape[1]:
                ci = cl.astype(np.int64)  # [rows, Q] integer cell values
                bits = np.stack([((ci >> b) & 1).T for b in range(spec.cell_bits)])  # [c, Q, rows]
                packed = np.ascontiguousarray(_pack_rows(bits.astype(np.uint8)).transpose(0, 2, 1))
            splits.append(SplitProgram(k0, rows, cl, (shift[s_idx] * sgn[s_idx, n_idx]).astype(np.float64),
                                       n_idx.astype(np.int64), lsb, packed))
        parts.append((sign, tuple(splits)))
    if not exact.any():
        ex = None
    elif np.abs(exact).sum(axis=0).max() * (2**spec.input_bits - 1) < 2**24:
        ex = exact.astype(np.float32)  # every partial product sum is an integer < 2^24: float32 is exact
    else:
        ex = exact
    return Program(n, tuple(parts), ex, ow, q64.sum(axis=0))


def _bitplanes(u: np.ndarray, spec: IMCSpec) -> np.ndarray:
    """[M, K] unsigned inputs -> [J·M, K] DAC levels (step-major rows, float32)."""
    d = spec.dac_bits
    mask = (1 << d) - 1
    return np.concatenate([((u >> (j * d)) & mask) for j in range(spec.input_steps)], axis=0).astype(np.float32)


def apply(prog: Program, u: np.ndarray, spec: IMCSpec, noise_rng: np.random.Generator | None = None,
          x_offset: int = 0) -> np.ndarray:
    """Run encoded inputs ``u`` [M, K] (int64, >= 0) through ``prog``: [M, N] float64 accumulators
    of the signed product (the encodings' corrections included)."""
    m = u.shape[0]
    jw = np.array([2.0 ** (j * spec.dac_bits) for j in range(spec.input_steps)])
    top = float(2**spec.adc_bits - 1)
    clip_mode = spec.adc_mode == AdcMode.CLIP
    out = np.zeros((m, prog.n), dtype=np.float64)
    packed_x: dict[int, np.ndarray] = {}
    uc = np.ascontiguousarray(u)
    if prog.exact is not None:
        out += u.astype(prog.exact.dtype) @ prog.exact
    for sign, splits in prog.parts:
        for sp in splits:
            ur = u[:, sp.k0:sp.k0 + sp.rows]
            if sp.cells.shape[1] == 0:
                continue
            if sp.packed is not None and (noise_rng is None or spec.adc_noise_lsb == 0):  # packed popcount kernel
                if sp.k0 not in packed_x:  # once per split for both signs
                    packed_x[sp.k0] = _pack_inputs(uc, sp.k0, sp.rows, spec.input_bits)
                xp = packed_x[sp.k0]
                acc = np.zeros((m, prog.n), dtype=np.float64)
                _bitserial_adc_popc(xp, sp.packed, spec.input_steps, spec.dac_bits, sp.col_w, sp.col_out,
                                    clip_mode, sp.lsb, top, acc)
                out += sign * acc
                continue
            if noise_rng is None or spec.adc_noise_lsb == 0:  # fused sparse kernel (non-integer cells)
                acc = np.zeros((m, prog.n), dtype=np.float64)
                _bitserial_adc(u, sp.k0, sp.rows, sp.cells, spec.input_steps, spec.dac_bits, sp.col_w, sp.col_out,
                               clip_mode, sp.lsb, top, acc)
                out += sign * acc
                continue
            for m0 in range(0, m, _PIXEL_BLOCK):  # with ADC noise: dense partial sums, one noise draw each
                m1 = min(m, m0 + _PIXEL_BLOCK)
                p = _bitplanes(ur[m0:m1], spec) @ sp.cells  # exact: integer values < 2^24 in float32
                if noise_rng is not None and spec.adc_noise_lsb > 0:
                    p = p + (spec.adc_noise_lsb * sp.lsb * noise_rng.standard_normal(p.shape)).astype(np.float32)
                acc = np.zeros((m1 - m0, prog.n), dtype=np.float64)
                _adc_shift_add(np.ascontiguousarray(p, dtype=np.float32), acc, jw, sp.col_w, sp.col_out,
                               clip_mode, sp.lsb, top)
                out[m0:m1] += sign * acc
    if prog.w_offset:
        out -= prog.w_offset * u.sum(axis=1, dtype=np.int64)[:, None].astype(np.float64)
    if x_offset:
        out -= x_offset * prog.colsum[None, :].astype(np.float64)
    return out


def crossbar_matmul(xq: np.ndarray, qw: np.ndarray, x_signed: bool, spec: IMCSpec,
                    weight_rng: np.random.Generator | None = None,
                    noise_rng: np.random.Generator | None = None, encoded: bool = False,
                    prog: Program | None = None) -> np.ndarray:
    """``Σ_k q_x[m, k]·q_w[k, n]`` as the crossbars compute it (module docstring): [M, N] float64.

    xq: [M, K] integer inputs (already offset-encoded with padding = o_x when ``encoded``);
    qw: [K, N] signed integer weights (or ``prog``, the same matrix already programmed).
    ``weight_rng`` draws the cell non-idealities of this matrix, ``noise_rng`` the ADC noise.
    """
    ox = 2 ** (spec.input_bits - 1) if x_signed else 0
    u = xq.astype(np.int64) if encoded else xq.astype(np.int64) + ox
    if prog is None:
        prog = program(qw, spec, weight_rng)
    return apply(prog, u, spec, noise_rng, ox)


def exact_conv(xq: np.ndarray, qw: np.ndarray, x_bits: int, x_signed: bool, w_bits: int, attrs) -> np.ndarray:
    """Exact integer conv accumulators via the int8 kernels ([N, O, OH, OW], int32/int64)."""
    return ik.conv2d_int(xq.astype(int_dtype(x_bits, x_signed), copy=False), qw.astype(int_dtype(w_bits, True), copy=False),
                         attrs.stride, attrs.padding, attrs.dilation, attrs.groups)


def exact_gemm(xq: np.ndarray, qw_nk: np.ndarray, x_bits: int, x_signed: bool, w_bits: int) -> np.ndarray:
    """Exact integer GEMM [M, K] x [N, K] -> [M, N]."""
    return ik.gemm_int(xq.astype(int_dtype(x_bits, x_signed), copy=False),
                       qw_nk.astype(int_dtype(w_bits, True), copy=False))
