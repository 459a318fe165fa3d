"""What the crossbars compute: bit-serial inputs x bit-sliced weights, per-column ADCs, shift-and-add.

For one conv/linear node with integer inputs q_x (``input_bits``) and weights q_w (``weight_bits``,
symmetric, from :mod:`mapping.passes.quantize`), the chip computes ``acc = Σ_k q_x[k]·q_w[k, n]``:

1. Encoding (all conductances and DAC levels are non-negative):
   - inputs: ``u = q_x + o_x`` with ``o_x = 2^(b_x-1)`` for signed inputs, 0 for unsigned ones;
     padded taps hold ``o_x`` (the encoded zero; a conv padded with a non-zero value, ``meta["pad_value"]``, gets
     its input padded explicitly by :mod:`hwsim.imc.functional` and runs here as a padding-0 conv);
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
kernels of :mod:`hwsim.kernels.int8`. Non-idealities (seeded; equations in :mod:`hwsim.imc.physics`): the
cells' conductances (finite on/off ratio, stuck-at cells, programming noise, PCM drift with optional
compensation, IR drop, the reference column's subtraction) are drawn once per weight key, row split and seed and
folded into the programmed conductances; read noise is drawn again per functional run (one batch); ADC noise
(Gaussian, ``adc_noise_lsb`` LSB) per conversion, drawn again per run as read noise is (seed, read index, node); the ADC transfer may carry INL/DNL (thresholds instead of rounding).

Implementation (each path computes exactly the arithmetic above; tests check them against explicit
transcriptions, bit for bit, with every effect on):
- :func:`program` encodes, slices and splits a weight matrix once (the kernels cache it per weight array,
  spec and seed: :func:`hwsim.imc.functional.clear_cache`), all signs and slices of a row split side by side.
  *Integer cells* (no analog effect): every pair's exact contribution ``Σ_k u·col_w·W`` is one exact GEMM
  (:func:`hwsim.imc.xbar.exact_gemm`, float32 below 2^24, float64 below 2^53); a pair whose partial sum can
  never exceed the ADC range (its column sum times the largest DAC level <= 2^B − 1, no noise, ideal
  transfer) needs nothing else, the others get the correction ``col_w·2^(j·d)·(code·lsb − p)``, skipped for
  every step whose level sum times the largest cell cannot reach the top code. *Analog cells*: conductances
  on a 2^-F grid (exact float32 sums, :func:`hwsim.imc.physics.grid_bits` of the largest |g|), every pair through
  the ADC. With a reference column (only with a finite on/off ratio, so always analog cells) conductances and
  partial sums may be negative: every converter clips the code at 0, and the grid bound holds for |p|.
- The ADC path of one row split runs for a whole batch of pixels, per pixel and step: the partial sums of all
  pairs at once, each converted and shifted into the accumulators. *Integer cells*:
  :func:`hwsim.imc._bitplane.split_adc_bits` forms them as popcounts of the inputs' and the cells' bit planes
  (64 rows per word; CLIP at LSB 1 fused with the shift-and-add in int64). *Analog cells*:
  :func:`hwsim.imc._analog.split_adc_rows` adds precomputed sums of 4-8-row subsets of the conductances,
  the subsets read from the input bit planes (float32 shift-and-add of the codes when exact). Both equal :func:`hwsim.imc.xbar.split_adc`, the
  straightforward row-add kernel, bit for bit (tests). A step whose levels are all zero produces partial sums
  of 0 and code 0 and is skipped (not with ADC noise).
- Exact convolutions (the folded exact part, the OFFSET correction, the exact path) run on the float32 conv
  kernels when every partial sum is an integer below 2^24, else on the int8 kernels' float64 path.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from hwsim.imc import _analog as an
from hwsim.imc import _bitplane as bp
from hwsim.imc import physics as ph
from hwsim.imc import xbar as xb
from hwsim.imc._exact import absmax, conv_exact, exact_conv, exact_linear, int_dtype
from hwsim.imc.spec import AdcMode, IMCSpec, SignedWeights

__all__ = ["adc_exact", "int_dtype", "patches", "program", "program_splits", "program_bytes", "read_program",
           "read_split", "apply", "apply_conv", "apply_streaming", "Program", "SplitProgram",
           "crossbar_matmul", "exact_matmul_needed", "exact_conv", "exact_linear", "rng_for"]


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator fixed by ``seed`` and names (stable across runs: crc32, not ``hash``)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(n.encode()) for n in names])


def adc_exact(spec: IMCSpec, rows_used: int) -> bool:
    """True when no partial sum of a row split of ``rows_used`` rows can be clipped or rounded."""
    return spec.partial_sum_max(rows_used) <= 2**spec.adc_bits - 1


def exact_matmul_needed(spec: IMCSpec, k: int) -> bool:
    """The structure shortcut: with an ADC that can never clip or round, no noise and ideal cells, an integer GEMM
    is exact."""
    return (adc_exact(spec, k) and spec.adc_noise_lsb == 0 and spec.stuck_at_rate == 0 and not ph.analog(spec)
            and not ph.per_seed(spec) and not ph.nonlinear_adc(spec))


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


@dataclass(frozen=True, slots=True)
class SplitProgram:
    """One row split (rows k0 .. k0 + rows − 1) of a programmed weight matrix, every sign and slice at once.

    cells [rows, Q]: the conductances (levels) the ADC path reads, of the (sign, slice, column) pairs q that need
    it; ``col_w[q]`` = 2^(s·c) · matrix sign · (−1 for a flipped pair), ``col_out[q]`` its output column.
    ``lin``: the cells are integer levels and :attr:`Program.exact` already holds ``Σ col_w·p``, so the kernel adds
    only ``col_w·(code·lsb − p)``; ``skip_sum``: a step whose DAC level sum is at most this cannot change a code
    (−1: every step is converted); ``mode``: the ADC rule (:mod:`hwsim.imc.xbar`); ``grid``: F of the 2^-F grid
    of non-integer cells (0 for integer levels).
    """

    k0: int
    rows: int
    cells: np.ndarray
    col_w: np.ndarray
    col_out: np.ndarray
    lsb: float
    lin: bool
    skip_sum: int
    mode: int
    grid: int = 0
    planes: np.ndarray | None = None  # integer cells as bit planes [B, ⌈rows/64⌉, Q] uint64 (hwsim.imc._bitplane)
    # with a reference column and read noise: the data cells before the subtraction [rows, Q] (on their own 2^-F
    # grid) and the reference cells [rows] float64, which each inference reads afresh (:func:`read_split`)
    dev: np.ndarray | None = None
    ref: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Program:
    """A weight matrix [K, N] programmed on crossbars: its row splits, the exact part and the digital corrections."""

    n: int
    splits: tuple  # (SplitProgram, ...)
    exact: np.ndarray | None  # [K, N] integer-valued float64 computed by one exact GEMM, or None
    w_offset: int  # o_w (OFFSET encoding) or 0
    colsum: np.ndarray  # Σ_k q_w[k, n] (int64), for the input-offset correction
    thresholds: np.ndarray  # ADC transfer thresholds in LSB (INL/DNL), or empty (ideal rounding)

    @property
    def nbytes(self) -> int:
        return (sum(sp.cells.nbytes + sum(0 if a is None else a.nbytes for a in (sp.planes, sp.dev, sp.ref))
                    for sp in self.splits) + (0 if self.exact is None else self.exact.nbytes))


def _slices(u: np.ndarray, spec: IMCSpec) -> np.ndarray:
    """[K, N] unsigned weights -> [S, K, N] nominal cell values (int64)."""
    mask = (1 << spec.cell_bits) - 1
    return np.stack([((u >> (s * spec.cell_bits)) & mask) for s in range(spec.slices)])


def _encoded(qw: np.ndarray, spec: IMCSpec) -> tuple[list, int]:
    q64 = qw.astype(np.int64)
    if spec.signed_weights == SignedWeights.OFFSET:
        ow = 2 ** (spec.weight_bits - 1)
        return [(q64 + ow, 1.0)], ow
    return [(np.maximum(q64, 0), 1.0), (np.maximum(-q64, 0), -1.0)], 0


def _split_levels(mats: list, k0: int, rows: int, spec: IMCSpec, ex: np.ndarray):
    """Stored levels [rows, Q] of one row split over every (sign, slice, column) pair, with col_w and col_out;
    the flipped pairs' digital term ``cmax·Σ_{k in split} u`` is added to the split's exact rows ``ex`` [rows, N]."""
    cmax = 2**spec.cell_bits - 1
    shift = np.array([2.0 ** (s * spec.cell_bits) for s in range(spec.slices)])
    levels, colw, colout = [], [], []
    for mat, sign in mats:
        nominal = _slices(mat[k0:k0 + rows], spec)  # [S, rows, N]
        n = nominal.shape[2]
        flip = (2 * nominal.sum(axis=1) > rows * cmax) if spec.column_flip else np.zeros((spec.slices, n), bool)
        if flip.any():
            ex += sign * cmax * (shift[:, None] * flip).sum(axis=0)[None, :]
        stored = np.where(flip[:, None, :], cmax - nominal, nominal)
        levels.append(stored.transpose(1, 0, 2).reshape(rows, -1))
        colw.append((sign * shift[:, None] * np.where(flip, -1.0, 1.0)).ravel())
        colout.append(np.tile(np.arange(n, dtype=np.int64), spec.slices))
    return np.concatenate(levels, axis=1), np.concatenate(colw), np.concatenate(colout)


def _lsb(spec: IMCSpec, rows: int) -> float:
    top = 2**spec.adc_bits - 1
    fs = spec.partial_sum_max(rows)
    return 1.0 if spec.adc_mode == AdcMode.CLIP or fs <= top else float(2 ** int(np.ceil(np.log2(fs / top))))


def _fold(ex: np.ndarray, g: np.ndarray, colw: np.ndarray, colout: np.ndarray) -> None:
    """ex[k, colout[q]] += colw[q]·g[k, q] (exact: integers)."""
    np.add.at(ex.T, colout, (g * colw[None, :]).T)


def _integer_split(g, colw, colout, k0, lsb, spec, ex) -> SplitProgram:
    """Integer levels: all pairs in the exact GEMM; the pairs whose ADC can change a value get a correction."""
    top = 2**spec.adc_bits - 1
    dmax = 2**spec.dac_bits - 1
    noisy, nonlin = spec.adc_noise_lsb > 0, ph.nonlinear_adc(spec)
    _fold(ex, g, colw, colout)
    colsum = g.sum(axis=0)
    if noisy:
        need = np.ones(g.shape[1], bool)
    elif nonlin or lsb > 1:
        need = colsum > 0
    else:  # CLIP at LSB 1: exact unless the column's largest partial sum can pass the top code
        need = dmax * colsum > top
    sel = np.nonzero(need)[0]
    gmax = float(g[:, sel].max()) if len(sel) else 0.0
    if noisy:
        skip = -1
    elif nonlin or lsb > 1 or gmax == 0:
        skip = 0
    else:
        skip = int(top // gmax)  # level sum x largest cell <= top: no partial sum of this step can clip
    mode = xb.ADC_TABLE if nonlin else (xb.ADC_RINT if noisy or lsb > 1 else xb.ADC_CLIP)
    # int16 partial sums are exact (and twice as many per vector as float32) while rows·dmax·gmax < 2^15
    dt = np.int16 if g.shape[0] * dmax * max(gmax, 1.0) < 2**15 else np.float32
    cells = np.ascontiguousarray(g[:, sel], dtype=dt)
    planes = bp.pack_planes(cells.astype(np.int64), max(2, int(gmax).bit_length()), 2)  # >= 2 x 2: fixed22
    return SplitProgram(k0, g.shape[0], cells, colw[sel], colout[sel], lsb, True, skip, mode, planes=planes)


def _absmax_f(g: np.ndarray) -> float:
    """max |g| of a float array (0 if empty): the bound :func:`hwsim.imc.physics.grid_bits` takes."""
    return float(max(-g.min(), g.max())) if g.size else 0.0


def _analog_split(g, lv, colw, colout, k0, lsb, spec, ex, raw=None) -> SplitProgram:
    """Non-integer conductances on the 2^-F grid: the pairs through the ADC (direct values).

    A pair whose conductances stay so close to their integer levels l that ``dmax·Σ_k |g_k − l_k| < 1/2`` and
    whose largest integer sum ``dmax·Σ_k l_k`` is within the ADC range reads ``rint(p) = Σ_k X_k·l_k`` for every
    input (|p − Σ X·l| < 1/2, no tie, no clip): with LSB 1, no ADC noise, an ideal transfer and no read noise it
    is folded into the exact GEMM with its levels (the top slices under small programming noise).

    ``raw``: (data cells before the reference subtraction, reference cells) when each inference reads them afresh
    (reference column and read noise); every pair is then kept (the reference's read noise reaches every column)."""
    noisy = spec.adc_noise_lsb > 0
    dmax = 2**spec.dac_bits - 1
    f = ph.grid_bits(spec, _absmax_f(g))
    cells = ph.grid(g, f)
    keep = np.ones(g.shape[1], bool) if noisy or raw is not None else cells.any(axis=0)
    if lsb == 1 and not (noisy or ph.nonlinear_adc(spec) or ph.per_read(spec)):
        near = (dmax * np.abs(cells.astype(np.float64) - lv).sum(axis=0) < 0.5) & \
            (dmax * lv.sum(axis=0) <= 2**spec.adc_bits - 1)
        if near.any():
            _fold(ex, lv[:, near].astype(np.float64), colw[near], colout[near])
            keep &= ~near
    sel = np.nonzero(keep)[0]
    dev = ref = None
    if raw is not None:
        dev = np.ascontiguousarray(ph.grid(raw[0][:, sel], ph.grid_bits(spec, _absmax_f(raw[0][:, sel]))))
        ref = raw[1]
    return SplitProgram(k0, g.shape[0], np.ascontiguousarray(cells[:, sel]), colw[sel], colout[sel], lsb, False,
                        -1 if noisy else 0, _analog_mode(spec, cells, f), f, dev=dev, ref=ref)


def _analog_mode(spec: IMCSpec, cells: np.ndarray, f: int) -> int:
    if ph.nonlinear_adc(spec):
        return xb.ADC_TABLE
    fast = spec.adc_noise_lsb == 0 and cells.dtype == np.float32 and f >= 2
    return xb.ADC_RINT32 if fast else xb.ADC_RINT


def program_splits(qw: np.ndarray, spec: IMCSpec, split_rng=None) -> Iterator[tuple[np.ndarray, SplitProgram]]:
    """The row splits of ``qw`` [K, N] as programmed, one at a time: (its exact rows [rows, N] float64, the split)."""
    k, _ = qw.shape
    analog = ph.analog(spec)
    for k0 in range(0, k, spec.rows):
        rows = min(spec.rows, k - k0)
        ex = np.zeros((rows, qw.shape[1]), dtype=np.float64)
        mats, _ = _encoded(qw[k0:k0 + rows], spec)  # encoded split by split: int64 copies of one split only
        lv, colw, colout = _split_levels(mats, 0, rows, spec, ex)
        rng = split_rng(k0) if split_rng is not None else None
        g, ref = ph.program_array(lv, spec, rng, k0) if (analog or rng is not None) else (lv, None)
        raw = (g, ref) if ref is not None and ph.per_read(spec) else None
        if ref is not None:  # the reference column's current, subtracted from every column's before the ADC
            g = g - ref[:, None]
        lsb = _lsb(spec, rows)
        yield ex, (_analog_split(g, lv, colw, colout, k0, lsb, spec, ex, raw) if analog
                   else _integer_split(g, colw, colout, k0, lsb, spec, ex))


def _thresholds(spec: IMCSpec, adc_rng: np.random.Generator | None) -> np.ndarray:
    if not ph.nonlinear_adc(spec):
        return np.zeros(0)
    return ph.adc_thresholds(spec, adc_rng if adc_rng is not None else np.random.default_rng(0))


def program(qw: np.ndarray, spec: IMCSpec, split_rng=None, adc_rng: np.random.Generator | None = None) -> Program:
    """Encode, slice and split ``qw`` [K, N] (signed ints) as the crossbars store it, with the device physics.

    ``split_rng(k0)``: the generator of the per-seed draws of the row split starting at row k0 (stuck-at cells,
    programming noise, drift exponents), or None (no per-seed effects); ``adc_rng``: draws the ADC transfer when
    INL/DNL are set. A flipped (slice, column) pair reads ``Σ X·(cmax − W)``: its ADC path enters the shift-and-add
    with the opposite sign and ``cmax·Σ_{k in split} u`` (exact digital sums) is folded into the exact GEMM.
    """
    exs, splits = zip(*program_splits(qw, spec, split_rng)) if qw.shape[0] else ((), ())
    exact = np.concatenate(exs, axis=0) if exs else np.zeros(qw.shape)
    _, ow = _encoded(qw[:0], spec)
    return Program(qw.shape[1], tuple(splits), exact if exact.any() else None, ow, qw.sum(axis=0, dtype=np.int64),
                   _thresholds(spec, adc_rng))


def program_bytes(k: int, n: int, spec: IMCSpec) -> int:
    """Upper bound of a programmed [k, n] matrix's memory: float32 cells of every pair plus the float64 exact part
    (and the un-subtracted cells a reference column keeps for read noise, float32, plus its float64 cells)."""
    raw = spec.reference_column and ph.per_read(spec)
    return k * n * (4 * spec.columns_per_weight * (2 if raw else 1) + 8) + (8 * k if raw else 0)


def read_split(sp: SplitProgram, spec: IMCSpec, rng: np.random.Generator) -> SplitProgram:
    """The conductances one inference reads of one split (per-read noise, ``read_sigma``). With a reference column
    the data cells and the reference cells are read (the latter from :func:`hwsim.imc.physics.reference_rng` of
    ``rng``), then subtracted."""
    if sp.ref is not None:
        g = (ph.read_cells(sp.dev.astype(np.float64), spec, rng)
             - ph.read_cells(sp.ref[:, None], spec, ph.reference_rng(rng, sp.k0)))
    else:
        g = ph.read_cells(sp.cells.astype(np.float64), spec, rng)
    f = ph.grid_bits(spec, _absmax_f(g))
    cells = np.ascontiguousarray(ph.grid(g, f))
    return replace(sp, cells=cells, grid=f, mode=_analog_mode(spec, cells, f), planes=None, dev=None, ref=None)


def read_program(prog: Program, spec: IMCSpec, rng: np.random.Generator) -> Program:
    """The conductances one inference reads (per-read noise, ``read_sigma``), drawn split by split."""
    return replace(prog, splits=tuple(read_split(sp, spec, rng) for sp in prog.splits))


NOISE_CHUNK = 4096  # pixels per ADC-noise draw (fixes the draw order: pixel chunk, then row split)


def _adc_paths(splits, thresholds: np.ndarray, xp: np.ndarray, base: np.ndarray, off: np.ndarray, m: int,
               spec: IMCSpec, noise_rng: np.random.Generator | None, out: np.ndarray) -> None:
    """Every row split's ADC path for the m pixels addressed by (xp, base, off) (:func:`hwsim.imc.xbar.split_adc`).
    ADC noise is drawn split by split, then per ``NOISE_CHUNK`` pixels (fixes the draw order)."""
    top = float(2**spec.adc_bits - 1)
    noisy = noise_rng is not None and spec.adc_noise_lsb > 0
    empty = np.zeros((0, 0, 0), dtype=np.float32)
    step = NOISE_CHUNK if noisy else max(m, 1)
    for sp in splits:
        q = sp.cells.shape[1]
        if q == 0:
            continue
        for m0 in range(0, m, step):
            m1 = min(m, m0 + step)
            z = noise_rng.standard_normal((spec.input_steps, m1 - m0, q), dtype=np.float32) if noisy else empty
            if sp.planes is not None:  # integer cells: partial sums by popcounts (same bits, less work)
                bp.split_adc_bits(xp, base, off, m0, m1, sp.k0, sp.rows, sp.planes, spec.input_steps, spec.dac_bits,
                                  sp.col_w, sp.col_out, sp.lsb, top, sp.mode, thresholds, sp.skip_sum, z,
                                  spec.adc_noise_lsb * sp.lsb, out)
                continue
            if not sp.lin:  # analog cells: every pair through the ADC (active rows from bit planes)
                fast32 = sp.mode == xb.ADC_RINT32 and an.codes_fit_float32(top, spec.input_steps, spec.dac_bits)
                an.split_adc_rows(xp, base, off, m0, m1, sp.k0, sp.rows, sp.cells, spec.input_steps, spec.dac_bits,
                                  sp.col_w, sp.col_out, sp.lsb, top, sp.mode, thresholds, 0.0, sp.skip_sum, z,
                                  spec.adc_noise_lsb * sp.lsb, fast32,
                                  an.group_bits(-(-sp.rows // 64), q, sp.cells.itemsize), out)
                continue
            xb.split_adc(xp, base, off, m0, m1, sp.k0, sp.rows, sp.cells, spec.input_steps, spec.dac_bits, sp.col_w,
                         sp.col_out, sp.lsb, top, sp.mode, thresholds, 1.0 if sp.lin else 0.0, sp.skip_sum, z,
                         spec.adc_noise_lsb * sp.lsb, out)


def apply(prog: Program, u: np.ndarray, spec: IMCSpec, noise_rng: np.random.Generator | None = None,
          x_offset: int = 0) -> np.ndarray:
    """Run encoded inputs ``u`` [M, K] (integers >= 0) through ``prog``: [M, N] float64 accumulators
    of the signed product (the encodings' corrections included)."""
    m, k = u.shape
    out = np.zeros((m, prog.n), dtype=np.float64)
    if prog.exact is not None:
        xb.exact_gemm(u, prog.exact, out, int(u.max()) if u.size else 0)
    _adc_paths(prog.splits, prog.thresholds, np.ascontiguousarray(u), np.zeros(1, np.int64),
               np.arange(k, dtype=np.int64), m, spec, noise_rng, out)
    if prog.w_offset:
        out -= prog.w_offset * u.sum(axis=1, dtype=np.int64)[:, None].astype(np.float64)
    if x_offset:
        out -= x_offset * prog.colsum[None, :].astype(np.float64)
    return out


def apply_conv(prog: Program, xq: np.ndarray, x_bits: int, x_signed: bool, spec: IMCSpec, attrs, oh: int, ow: int,
               noise_rng: np.random.Generator | None = None, parallel: bool = False) -> np.ndarray:
    """A conv (one group: ``xq`` [N, C/g, H, W] integer inputs, ``prog`` its [C/g·kh·kw, O/g] matrix) through the
    crossbars: [N·OH·OW, O/g] float64 accumulators, as :func:`apply` on the im2col patches, without building them.

    The ADC paths read the padded encoded images in place (:func:`hwsim.imc.xbar.split_adc`); the exact part
    ``Σ_patch u·E`` is ``conv(q, E) + o_x·Σ_k E`` (padded taps hold u = o_x) on the exact integer conv kernels when
    ``|E| < 2^15``, else an exact GEMM of the patches; the OFFSET correction ``o_w·Σ_patch u`` likewise."""
    n, c, h, w = xq.shape
    kh, kw = attrs.kernel
    (sh, sw), (ph_, pw), (dh, dw) = attrs.stride, attrs.padding, attrs.dilation
    ox = 2 ** (x_bits - 1) if x_signed else 0
    hp, wp = h + 2 * ph_, w + 2 * pw
    xp = np.full((n, c, hp, wp), ox, dtype=np.uint16 if x_bits <= 16 else np.int64)
    xp[:, :, ph_:ph_ + h, pw:pw + w] = xq + ox
    xp = xp.reshape(n, c * hp * wp)
    base = ((np.arange(oh) * sh)[:, None] * wp + (np.arange(ow) * sw)[None, :]).ravel().astype(np.int64)
    off = (np.arange(c)[:, None, None] * (hp * wp) + (np.arange(kh) * dh)[None, :, None] * wp
           + (np.arange(kw) * dw)[None, None, :]).ravel().astype(np.int64)
    m, k = n * oh * ow, c * kh * kw
    xmax = absmax(xq)

    def conv(weights: np.ndarray) -> np.ndarray:  # [n_out, k] integers -> [M, n_out] float64, exact
        r = conv_exact(xq, xmax, x_bits, x_signed, weights.reshape(-1, c, kh, kw), attrs, 1, parallel)
        return r.transpose(0, 2, 3, 1).reshape(m, -1).astype(np.float64)

    out = np.zeros((m, prog.n), dtype=np.float64) if prog.exact is None or absmax(prog.exact) >= 2**15 else None
    if prog.exact is not None:
        if out is None:  # the exact part fills every entry
            out = conv(prog.exact.T.astype(np.int16))
            if ox:
                out += ox * prog.exact.sum(axis=0)[None, :]
        else:
            u = patches(xq.astype(np.int64) + ox, attrs.kernel, attrs.stride, attrs.padding, attrs.dilation, ox)
            xb.exact_gemm(u, prog.exact, out, int(u.max()) if u.size else 0)
    _adc_paths(prog.splits, prog.thresholds, xp, base, off, m, spec, noise_rng, out)
    if prog.w_offset:
        out -= prog.w_offset * (conv(np.ones((1, k), np.int8)) + ox * k)
    if ox:
        out -= ox * prog.colsum[None, :].astype(np.float64)
    return out


def apply_streaming(qw: np.ndarray, u: np.ndarray, spec: IMCSpec, split_rng=None,
                    adc_rng: np.random.Generator | None = None, noise_rng: np.random.Generator | None = None,
                    x_offset: int = 0, read_rng: np.random.Generator | None = None) -> np.ndarray:
    """:func:`apply` of ``program(qw, ...)`` (then :func:`read_program` with ``read_rng``) without holding the
    program: each row split is programmed, run and dropped in turn (same draws, same order, same bits), so a
    matrix whose program exceeds the memory budget (VGG-16's 25088 x 4096) needs one split's worth of memory."""
    m, k = u.shape
    out = np.zeros((m, qw.shape[1]), dtype=np.float64)
    uc = np.ascontiguousarray(u)
    base, off = np.zeros(1, np.int64), np.arange(k, dtype=np.int64)
    thr = _thresholds(spec, adc_rng)
    umax = int(u.max()) if u.size else 0
    for ex, sp in program_splits(qw, spec, split_rng):
        if ex.any():
            xb.exact_gemm(uc[:, sp.k0:sp.k0 + sp.rows], ex, out, umax)
        if read_rng is not None:
            sp = read_split(sp, spec, read_rng)
        _adc_paths((sp,), thr, uc, base, off, m, spec, noise_rng, out)
    _, ow = _encoded(qw[:0], spec)
    if ow:
        out -= ow * u.sum(axis=1, dtype=np.int64)[:, None].astype(np.float64)
    if x_offset:
        out -= x_offset * qw.sum(axis=0, dtype=np.int64)[None, :].astype(np.float64)
    return out


def crossbar_matmul(xq: np.ndarray, qw: np.ndarray, x_signed: bool, spec: IMCSpec,
                    split_rng=None, noise_rng: np.random.Generator | None = None, encoded: bool = False,
                    prog: Program | None = None) -> np.ndarray:
    """``Σ_k q_x[m, k]·q_w[k, n]`` as the crossbars compute it (module docstring): [M, N] float64.

    xq: [M, K] integer inputs (already offset-encoded with padding = o_x when ``encoded``);
    qw: [K, N] signed integer weights (or ``prog``, the same matrix already programmed).
    ``split_rng`` draws the per-seed cell non-idealities (see :func:`program`), ``noise_rng`` the ADC noise.
    """
    ox = 2 ** (spec.input_bits - 1) if x_signed else 0
    u = xq.astype(np.int64) if encoded else xq.astype(np.int64) + ox
    if prog is None:
        prog = program(qw, spec, split_rng)
    return apply(prog, u, spec, noise_rng, ox)
