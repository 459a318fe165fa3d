"""Device and circuit physics of the crossbar cells: the conductances the ADCs actually read.

Units: conductances are in *levels*, one level being the programmed step ``Δg = (g_max − g_min)/(2^c − 1)``
(c = ``cell_bits``), so an ideal cell storing level l reads l and an ideal partial sum is an integer.
Every effect is off in the ideal presets and seeded; the per-seed ones are folded into the programmed
conductances once per (weight matrix, spec, seed) (:func:`program_cells`), the per-inference ones are
drawn per functional run (:func:`read_cells`). For a cell storing level l in row k of its crossbar:

1. finite on/off ratio r = ``on_off_ratio`` = g_max / g_min: ``g = l + g_off``, ``g_off = (2^c − 1)/(r − 1)``
   (the level-0 cell still conducts g_min; ``on_off_ratio = 0`` means r = inf: g_off = 0). DIFFERENTIAL weights cancel the leakage
   ``g_off·Σ_k X[k]`` (both columns of a weight see it; exact up to the two ADC roundings); OFFSET weights
   do not (the periphery subtracts ``o_w·Σu`` only): their outputs carry ``+g_off·Σ_s 2^(s·c)·Σ u``, unless a
   reference column (step 7) subtracts the leakage before the ADC.
2. stuck-at faults (``stuck_at_rate``): the cell holds level 0 or 2^c − 1 (half each) whatever was written.
3. programming noise (``conductance_sigma``): ``g ← max(g·(1 + σ_p·z), 0)``, z ~ N(0, 1) per cell.
4. PCM drift at ``drift_time_s`` = t after programming (aihwkit's PCM model after Nandakumar et al., ICECS
   2019): ``g ← g·(t/t0)^(−ν)`` for t > t0 (``drift_t0_s``), ν = |N(ν_mean, ν_std)| per cell
   (``drift_nu_mean``, ``drift_nu_std``). Global drift compensation (``drift_compensation``): the periphery
   scales each row block's read-out by ``α = Σ g(t0) / Σ g(t)`` over the block's cells (aihwkit's
   GlobalDriftCompensation reads a reference response per tile; here, per row split of a weight matrix),
   folded into the conductances.
5. IR drop (``ir_drop``): row k of a crossbar of R rows reaches the ADC attenuated by
   ``1 − ir_drop·k/(R − 1)`` (a static linear model: row 0 nearest the sense amplifier, the far row losing the
   fraction ``ir_drop`` of its current).
6. read noise per functional run (``read_sigma``; the samples of one batch share the draw): at every functional
   run, ``g ← max(g·(1 + σ_r·z'), 0)`` with a fresh z' per cell (aihwkit draws its 1/f read noise once per
   inference: ``apply_drift_noise_to_conductance``).
7. reference column (``reference_column``, OFFSET weights with a finite on/off ratio only): each crossbar has one
   more column of level-0 cells, ``g_ref[k]`` for row k, whose bit-line current is subtracted from every column's
   before the ADC (after NeuroSim's dummy column, DNN_NeuroSim V1.3), so the ADC reads ``Σ_k X[k]·(g[k] − g_ref[k])``
   and the leakage ``g_off·Σ_k X[k]`` cancels. The reference cells go through steps 1-6 like the others (their
   stuck-at, programming-noise and drift draws from their own generator, :func:`reference_rng`, derived from the
   split's seed with an extra key, so the data cells' draws are those of the same spec without it; its read noise
   likewise from the inference's generator; the drift compensation's α of the data cells and the IR drop of their
   row). Conductances ``g − g_ref`` may be negative, and so may a partial sum: the ADC then outputs code 0.

Exactness of the sums: non-integer conductances are held on a grid of 2^-F levels, F = :func:`grid_bits`, chosen
so that every partial sum ``Σ_k X[k]·g[k]`` (and every sum of a subset of its terms) is an integer multiple of 2^-F
below 2^24·2^-F in magnitude (F from the largest |g|: negative cells too): float32
accumulates it exactly in any order (the fast kernels and a straightforward transcription agree bit for bit).
F >= 12 for the presets' geometries (a grid 2.4e-4 of a level, far below any effect modelled).

ADC transfer (``adc_inl_lsb``, ``adc_dnl_lsb``; :func:`adc_thresholds`): code c (1 <= c <= 2^B − 1) is output
when ``p/lsb`` reaches the threshold ``t_c = c − 1/2 + INL(c) + D_c``, with a mid-scale bow
``INL(c) = adc_inl_lsb·4·(c/2^B)(1 − c/2^B)`` and ``D_c`` the cumulative code-width errors
``δ_i ~ N(0, adc_dnl_lsb)`` with their end-point line removed (so D vanishes at both ends); thresholds are kept
increasing and above 0 (zero input reads code 0). The code is the number of thresholds <= p/lsb. One transfer
per chip and seed, shared by every ADC.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from hwsim.errors import SpecError
from hwsim.imc.spec import IMCSpec

__all__ = ["program_cells", "program_array", "reference_rng", "read_cells", "grid_bits", "grid", "per_seed", "per_read", "g_offset", "analog",
           "adc_thresholds", "nonlinear_adc"]


def per_seed(spec: IMCSpec) -> bool:
    """Non-idealities fixed per seed (drawn when the crossbars are programmed)."""
    return (spec.conductance_sigma > 0 or spec.stuck_at_rate > 0 or drifts(spec))


def drifts(spec: IMCSpec) -> bool:
    return spec.drift_time_s > spec.drift_t0_s and (spec.drift_nu_mean > 0 or spec.drift_nu_std > 0)


def per_read(spec: IMCSpec) -> bool:
    """Read noise: drawn again at every functional run (one batch)."""
    return spec.read_sigma > 0


def per_inference(spec: IMCSpec) -> bool:
    """Any noise drawn again at every functional run: read noise, or ADC noise (temporal, per conversion)."""
    return per_read(spec) or spec.adc_noise_lsb > 0


def adc_noise_rng(spec: IMCSpec, seed: int, read_index: int | None, node_name: str):
    """The ADC noise generator of one node in one run (None without ADC noise): keyed by the run's read index as
    read noise is, so each inference (batch) draws its own noise, never a replay of the previous batch's."""
    from hwsim.imc.numerics import rng_for

    return rng_for(seed, "adc", str(read_index), node_name) if spec.adc_noise_lsb > 0 else None


def analog(spec: IMCSpec) -> bool:
    """True when programmed conductances are not exact integer levels (then the ADC path sees every pair)."""
    return (spec.conductance_sigma > 0 or drifts(spec) or spec.ir_drop > 0 or spec.on_off_ratio > 0
            or spec.read_sigma > 0)


def g_offset(spec: IMCSpec) -> float:
    """g_min in levels: (2^c − 1)/(r − 1), 0 for an infinite on/off ratio (``on_off_ratio = 0``)."""
    r = spec.on_off_ratio
    return 0.0 if r == 0 else (2**spec.cell_bits - 1) / (r - 1.0)


def grid_bits(spec: IMCSpec, gmax: float) -> int:
    """F: the largest partial-sum magnitude rows·(2^d − 1)·gmax, times 2^F, stays below 2^24 (float32 exact), F <= 20.
    ``gmax``: the largest |g| of the cells (with the reference column conductances may be negative)."""
    pmax = spec.rows * (2**spec.dac_bits - 1) * max(abs(gmax), 1.0)
    f = int(min(20, 23 - math.ceil(math.log2(pmax + 1.0))))
    if f < 0:  # the sums would need a grid coarser than one level: the analog values could not be kept
        raise SpecError(f"{spec.name}: partial sums of rows={spec.rows} x dac_bits={spec.dac_bits} x conductances up "
                        f"to {gmax:.3g} levels exceed the 2^23 levels the exact analog sums hold; use fewer rows, DAC "
                        "bits or cell bits, or a larger on_off_ratio")
    return f


def grid(g: np.ndarray, bits: int) -> np.ndarray:
    """Round conductances to multiples of 2^-bits (float32 when exact, else float64)."""
    s = 2.0**bits
    out = np.rint(np.asarray(g, dtype=np.float64) * s) / s
    return out.astype(np.float32) if bits >= 0 else out


def reference_rng(rng: np.random.Generator | None, k0: int) -> np.random.Generator | None:
    """The reference column's own generator for the row split starting at row k0: derived from ``rng``'s seed with
    an extra key (``rng`` itself is not drawn from, so the data cells' draws keep their bits). None for None."""
    if rng is None:
        return None
    ss = rng.bit_generator.seed_seq
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (_REF_KEY, k0)))


_REF_KEY = zlib.crc32(b"reference-column")


def _device(lv: np.ndarray, spec: IMCSpec, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4 (without the drift compensation) of levels ``lv`` float64: (g at t0, g at t)."""
    cmax = 2**spec.cell_bits - 1
    if rng is not None and spec.stuck_at_rate > 0:
        hit = rng.random(lv.shape) < spec.stuck_at_rate
        high = rng.random(lv.shape) < 0.5
        lv = np.where(hit, np.where(high, float(cmax), 0.0), lv)
    g = lv + g_offset(spec)
    if rng is not None and spec.conductance_sigma > 0:
        g = np.maximum(g * (1.0 + spec.conductance_sigma * rng.standard_normal(g.shape)), 0.0)
    g0 = g
    if rng is not None and drifts(spec):
        nu = np.abs(spec.drift_nu_mean + spec.drift_nu_std * rng.standard_normal(g.shape))
        g = g * (spec.drift_time_s / spec.drift_t0_s) ** (-nu)
    return g0, g


def program_array(levels: np.ndarray, spec: IMCSpec, rng: np.random.Generator | None,
                  k0: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored levels [rows, Q] of one row split (first row k0 of the matrix) -> (conductances [rows, Q] float64,
    the reference column's [rows] float64 or None), steps 1-5 and 7 of the module docstring, before the reference
    subtraction and grid rounding."""
    g0, g = _device(levels.astype(np.float64), spec, rng)
    ref = None
    if spec.reference_column:  # one level-0 cell per row, its own draws (reference_rng)
        _, ref = _device(np.zeros(levels.shape[0]), spec, reference_rng(rng, k0))
    if rng is not None and drifts(spec) and spec.drift_compensation and g.sum() > 0:
        alpha = g0.sum() / g.sum()  # the block's read-out is scaled, the reference's with it
        g = g * alpha
        ref = None if ref is None else ref * alpha
    if spec.ir_drop > 0:
        r = (k0 % spec.rows) + np.arange(levels.shape[0])  # row index within its crossbar
        att = 1.0 - spec.ir_drop * r / max(spec.rows - 1, 1)
        g = g * att[:, None]
        ref = None if ref is None else ref * att
    return g, ref


def program_cells(levels: np.ndarray, spec: IMCSpec, rng: np.random.Generator | None, k0: int) -> np.ndarray:
    """Stored levels [rows, Q] of one row split (first row k0 of the matrix) -> conductances [rows, Q] float64 as
    the ADCs see them, steps 1-5 and 7 of the module docstring (reference subtracted; no grid rounding yet)."""
    g, ref = program_array(levels, spec, rng, k0)
    return g if ref is None else g - ref[:, None]


def read_cells(g: np.ndarray, spec: IMCSpec, rng: np.random.Generator) -> np.ndarray:
    """Step 6: the conductances one inference reads (float64, before grid rounding)."""
    return np.maximum(g * (1.0 + spec.read_sigma * rng.standard_normal(g.shape)), 0.0)


def nonlinear_adc(spec: IMCSpec) -> bool:
    return spec.adc_inl_lsb > 0 or spec.adc_dnl_lsb > 0


def adc_thresholds(spec: IMCSpec, rng: np.random.Generator) -> np.ndarray:
    """The 2^B − 1 transfer thresholds of the ADC, in LSB (module docstring), float64, increasing, > 0."""
    top = 2**spec.adc_bits - 1
    c = np.arange(1, top + 1, dtype=np.float64)
    x = c / (top + 1)
    t = c - 0.5 + spec.adc_inl_lsb * 4.0 * x * (1.0 - x)
    if spec.adc_dnl_lsb > 0 and top > 1:
        d = np.concatenate([[0.0], np.cumsum(spec.adc_dnl_lsb * rng.standard_normal(top - 1))])
        t = t + d - d[-1] * (c - 1) / (top - 1)
    t = np.maximum(t, 1e-3)
    return np.maximum.accumulate(t)
