"""IMC device and circuit physics, and the fast crossbar kernels against a slow straightforward transcription."""
import dataclasses
import zlib

import numpy as np
import pytest

import hwsim
import nets
from hwsim import functional
from hwsim.errors import SpecError
from hwsim.imc import functional as ik
from hwsim.imc import numerics as nm
from hwsim.imc import physics as ph
from hwsim.imc.spec import AdcMode, IMCSpec, SignedWeights
from mapping.passes import fold_bn, quantize


# ----------------------------------------------------------------------------- the transcription
def _levels(mat, k0, rows, spec):
    """Stored levels [rows, Q] of a row split, pair order (slice, column), flip flags and shifts, by explicit loops."""
    cmax = 2**spec.cell_bits - 1
    n = mat.shape[1]
    lv = np.zeros((rows, spec.slices * n), np.int64)
    flip = np.zeros(spec.slices * n, bool)
    shift = np.zeros(spec.slices * n)
    for s in range(spec.slices):
        for c in range(n):
            q = s * n + c
            cells = (mat[k0:k0 + rows, c] >> (s * spec.cell_bits)) & cmax
            flip[q] = spec.column_flip and 2 * cells.sum() > rows * cmax
            lv[:, q] = cmax - cells if flip[q] else cells
            shift[q] = 2.0 ** (s * spec.cell_bits)
    return lv, flip, shift


def _ref_generator(rng, k0):
    """The reference column's generator, written out: the split's seed entropy, its spawn key + (crc32 key, k0)."""
    ss = rng.bit_generator.seed_seq
    key = tuple(ss.spawn_key) + (zlib.crc32(b"reference-column"), k0)
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=key))


def _by_hand(lv, spec, rng):
    """Steps 1-4 of hwsim.imc.physics on levels lv (float64), cell by cell in the module docstring's order:
    (g at t0, g at t)."""
    cmax = 2**spec.cell_bits - 1
    g_off = 0.0 if spec.on_off_ratio == 0 else cmax / (spec.on_off_ratio - 1.0)
    if rng is not None and spec.stuck_at_rate > 0:
        hit, high = rng.random(lv.shape) < spec.stuck_at_rate, rng.random(lv.shape) < 0.5
        lv = np.where(hit, np.where(high, float(cmax), 0.0), lv)
    g = lv + g_off
    if rng is not None and spec.conductance_sigma > 0:
        g = np.maximum(g * (1.0 + spec.conductance_sigma * rng.standard_normal(g.shape)), 0.0)
    g0 = g
    if rng is not None and ph.drifts(spec):
        nu = np.abs(spec.drift_nu_mean + spec.drift_nu_std * rng.standard_normal(g.shape))
        g = g * (spec.drift_time_s / spec.drift_t0_s) ** (-nu)
    return g0, g


def cells_by_hand(lv, spec, rng, k0):
    """Programmed conductances of a row split (data cells [rows, Q], reference cells [rows] or None) by the
    equations of hwsim.imc.physics, steps 1-5 and 7, before the subtraction."""
    g0, g = _by_hand(lv.astype(np.float64), spec, rng)
    ref = None
    if spec.reference_column:
        ref = _by_hand(np.zeros(lv.shape[0]), spec, None if rng is None else _ref_generator(rng, k0))[1]
    if rng is not None and ph.drifts(spec) and spec.drift_compensation and g.sum() > 0:
        a = g0.sum() / g.sum()
        g, ref = g * a, (None if ref is None else ref * a)
    if spec.ir_drop > 0:
        att = 1.0 - spec.ir_drop * ((k0 % spec.rows) + np.arange(lv.shape[0])) / max(spec.rows - 1, 1)
        g, ref = g * att[:, None], (None if ref is None else ref * att)
    return g, ref


def _on_grid(g, spec):
    return ph.grid(g, ph.grid_bits(spec, np.abs(g).max())).astype(np.float64)


def _read_by_hand(g, spec, rng):
    return np.maximum(g * (1.0 + spec.read_sigma * rng.standard_normal(g.shape)), 0.0)


def ref_matmul(xq, qw, x_signed, spec, seed, read_seed=None):
    """The crossbar model of hwsim.imc.numerics and hwsim.imc.physics written out densely: per row split, input
    step and (sign, slice, column) pair a float64 partial sum, one ADC conversion each, shift-and-add in int
    arithmetic terms. The conductances and noise come from the same seeded generators as the simulator's."""
    ox = 2 ** (spec.input_bits - 1) if x_signed else 0
    u = xq.astype(np.int64) + ox
    q64 = qw.astype(np.int64)
    if spec.signed_weights == SignedWeights.OFFSET:
        ow, mats = 2 ** (spec.weight_bits - 1), [(q64 + 2 ** (spec.weight_bits - 1), 1.0)]
    else:
        ow, mats = 0, [(np.maximum(q64, 0), 1.0), (np.maximum(-q64, 0), -1.0)]
    cmax, top, d = 2**spec.cell_bits - 1, 2**spec.adc_bits - 1, spec.dac_bits
    m, k = u.shape
    n = qw.shape[1]
    thr = ph.adc_thresholds(spec, nm.rng_for(seed, "adc-transfer")) if ph.nonlinear_adc(spec) else None
    noise = nm.rng_for(seed, "adc") if spec.adc_noise_lsb > 0 else None
    read = np.random.default_rng(read_seed) if read_seed is not None else None
    splits = []
    for k0 in range(0, k, spec.rows):
        rows = min(spec.rows, k - k0)
        parts = [_levels(mat, k0, rows, spec) + (sign,) for mat, sign in mats]
        lv = np.concatenate([p[0] for p in parts], axis=1)
        g = lv.astype(np.float64)
        rng = nm.rng_for(seed, "cells", "w", "0", str(k0)) if ph.per_seed(spec) else None
        ref = None
        if ph.analog(spec) or rng is not None:
            g, ref = cells_by_hand(lv, spec, rng, k0)
        if read is not None and ref is not None:  # both columns read afresh, then subtracted
            g = _read_by_hand(_on_grid(g, spec), spec, read) - _read_by_hand(ref[:, None], spec,
                                                                             _ref_generator(read, k0))
            g = _on_grid(g, spec)
        else:
            if ref is not None:
                g = g - ref[:, None]
            if ph.analog(spec):
                g = _on_grid(g, spec)
            if read is not None:
                g = _on_grid(_read_by_hand(g, spec, read), spec)
        fs = spec.partial_sum_max(rows)
        e = 0
        while spec.adc_mode == AdcMode.SCALE and top * 2**e < fs:
            e += 1
        splits.append((k0, rows, g, parts, float(2**e)))
    acc = np.zeros((m, n))
    for k0, rows, g, parts, lsb in splits:
        for m0 in range(0, m, nm.NOISE_CHUNK):
            m1 = min(m, m0 + nm.NOISE_CHUNK)
            z = noise.standard_normal((spec.input_steps, m1 - m0, g.shape[1]), dtype=np.float32) if noise else None
            for j in range(spec.input_steps):
                xj = (u[m0:m1, k0:k0 + rows] >> (j * d)) & (2**d - 1)
                p = xj.astype(np.float64) @ g
                v = p if z is None else p + (spec.adc_noise_lsb * lsb) * z[j].astype(np.float64)
                if thr is not None:
                    code = np.minimum(np.searchsorted(thr, v / lsb, side="right"), top).astype(np.float64)
                else:
                    code = np.clip(np.rint(v / lsb), 0, top)
                q0 = 0
                for _, flip, shift, sign in parts:
                    for q in range(len(flip)):
                        val = code[:, q0 + q] * lsb
                        if flip[q]:
                            val = cmax * xj.sum(axis=1) - val
                        acc[m0:m1, q % n] += sign * shift[q] * 2.0 ** (j * d) * val
                    q0 += len(flip)
    acc -= ow * u.sum(axis=1, keepdims=True)
    acc -= ox * q64.sum(axis=0, keepdims=True)
    return acc


PHYSICS = [dict(), dict(conductance_sigma=0.05), dict(stuck_at_rate=0.02), dict(adc_noise_lsb=0.4),
           dict(on_off_ratio=17.0), dict(drift_time_s=3600.0, drift_nu_mean=0.05, drift_nu_std=0.02),
           dict(drift_time_s=3600.0, drift_nu_mean=0.05, drift_nu_std=0.02, drift_compensation=True),
           dict(adc_inl_lsb=0.6, adc_dnl_lsb=0.2), dict(ir_drop=0.1), dict(read_sigma=0.03),
           dict(conductance_sigma=0.03, stuck_at_rate=0.01, adc_noise_lsb=0.3, on_off_ratio=50.0, ir_drop=0.05)]
REFERENCE = [dict(on_off_ratio=17.0, reference_column=True), dict(on_off_ratio=10.0, reference_column=True),
             dict(on_off_ratio=17.0, reference_column=True, conductance_sigma=0.05, stuck_at_rate=0.02, ir_drop=0.1,
                  drift_time_s=3600.0, drift_nu_mean=0.05, drift_nu_std=0.02, drift_compensation=True),
             dict(on_off_ratio=17.0, reference_column=True, read_sigma=0.03, conductance_sigma=0.02),
             dict(on_off_ratio=5.0, reference_column=True, adc_noise_lsb=0.3, adc_inl_lsb=0.6, adc_dnl_lsb=0.2,
                  stuck_at_rate=0.05),
             dict(on_off_ratio=17.0, reference_column=True, adc_noise_lsb=0.4, conductance_sigma=0.05)]


@pytest.mark.parametrize("phys", PHYSICS + REFERENCE, ids=lambda p: ",".join(p) or "ideal")
@pytest.mark.parametrize("case", range(4))
def test_fast_path_equals_transcription_bit_for_bit(phys, case):
    r = np.random.default_rng(100 + case)
    wb, xb = int(r.integers(3, 9)), int(r.integers(2, 9))
    diff, signed = bool(r.integers(2)), bool(r.integers(2))
    diff = diff and "reference_column" not in phys  # the reference column is for offset weights
    cell = int(min(r.integers(1, 4), wb - 1 if diff else wb))
    spec = IMCSpec(rows=int(r.choice([8, 16, 40])), cols=128, cell_bits=cell, weight_bits=wb, input_bits=xb,
                   dac_bits=int(min(r.integers(1, 3), xb)), adc_bits=int(r.integers(2, 7)),
                   adc_mode=AdcMode.SCALE if case == 3 else AdcMode.CLIP, column_flip=case == 2,
                   signed_weights=SignedWeights.DIFFERENTIAL if diff else SignedWeights.OFFSET, **phys)
    m, k, n = int(r.integers(1, 70)), int(r.integers(1, 90)), int(r.integers(1, 7))
    lo, hi = (-(2 ** (xb - 1) - 1), 2 ** (xb - 1) - 1) if signed else (0, 2**xb - 1)
    xq = r.integers(lo, hi + 1, size=(m, k))
    qmax = 2 ** (wb - 1) - 1
    qw = r.integers(-qmax, qmax + 1, size=(k, n))
    seed = 7 + case
    prog = nm.program(qw, spec, (lambda k0: nm.rng_for(seed, "cells", "w", "0", str(k0))) if ph.per_seed(spec)
                      else None, nm.rng_for(seed, "adc-transfer"))
    if ph.per_read(spec):
        prog = nm.read_program(prog, spec, np.random.default_rng(5))
    noise = nm.rng_for(seed, "adc") if spec.adc_noise_lsb > 0 else None
    got = nm.crossbar_matmul(xq, qw, signed, spec, noise_rng=noise, prog=prog)
    want = ref_matmul(xq, qw, signed, spec, seed, read_seed=5 if ph.per_read(spec) else None)
    assert np.array_equal(got, want)
    # the streaming form (one split programmed at a time, for matrices too large to hold) is the same
    ox = 2 ** (xb - 1) if signed else 0
    streamed = nm.apply_streaming(qw, xq.astype(np.int64) + ox, spec,
                                  (lambda k0: nm.rng_for(seed, "cells", "w", "0", str(k0))) if ph.per_seed(spec)
                                  else None, nm.rng_for(seed, "adc-transfer"),
                                  nm.rng_for(seed, "adc") if spec.adc_noise_lsb > 0 else None, ox,
                                  np.random.default_rng(5) if ph.per_read(spec) else None)
    assert np.array_equal(streamed, want)


# ----------------------------------------------------------------------------- each effect, on a small net
def _net():
    g = quantize(fold_bn(hwsim.as_graph(nets.get("itnet", iterations=1, channels=8), (2, 3, 8, 8))), 6, 6)
    x = np.random.default_rng(6).normal(size=(2, 3, 8, 8)).astype(np.float32)
    return g, x


BASE = IMCSpec(rows=64, cell_bits=2, adc_bits=10, weight_bits=6, input_bits=6,
               signed_weights=SignedWeights.DIFFERENTIAL)  # 64 x 1 x 3 = 192 <= 1023: the ideal chip is exact


def _run(spec, seed=0, read_index=None, g=None, x=None):
    if g is None:
        g, x = _net()
    return functional.run(g, x, ik.make_kernels(spec, seed, read_index=read_index))[0]


def _rel(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


def test_ideal_presets_have_every_effect_off():
    for name in ("imc/isaac", "imc/neurosim-rram-22nm", "imc/edge-small"):
        s = hwsim.load_preset(name)
        assert not (ph.analog(s) or ph.per_seed(s) or ph.per_read(s) or ph.nonlinear_adc(s)), name


def test_drift_lowers_the_readout_and_compensation_restores_its_mean():
    """Without the ReLU-ending net: one crossbar GEMM of positive inputs and weights, where the read-out is
    the product itself (offset-free differential encoding)."""
    r = np.random.default_rng(0)
    xq, qw = r.integers(0, 64, size=(200, 60)), r.integers(0, 32, size=(60, 8))
    spec = dataclasses.replace(BASE, drift_time_s=86400.0, drift_nu_mean=0.06, drift_nu_std=0.02)

    def run(s):
        return nm.crossbar_matmul(xq, qw, False, s, lambda k0: nm.rng_for(0, "cells", str(k0)))

    ideal = (xq @ qw).astype(np.float64)
    drifted = run(spec)
    comp = run(dataclasses.replace(spec, drift_compensation=True))
    assert drifted.mean() < 0.7 * ideal.mean()  # (86400/20)^-0.06 = 0.61
    assert abs(comp.mean() / ideal.mean() - 1) < 0.01
    assert _rel(comp, ideal) < _rel(drifted, ideal) / 5
    week = run(dataclasses.replace(spec, drift_time_s=7 * 86400.0))
    assert week.mean() < drifted.mean()  # it keeps drifting


def test_read_noise_differs_per_run_programming_noise_only_per_seed():
    read = dataclasses.replace(BASE, read_sigma=0.05)
    a, b = _run(read, seed=1), _run(read, seed=1)  # two inferences: fresh read noise
    assert not np.array_equal(a, b)
    assert np.array_equal(_run(read, 1, read_index=3), _run(read, 1, read_index=3))  # pinned read: reproducible
    prog = dataclasses.replace(BASE, conductance_sigma=0.05)
    c, d, e = _run(prog, seed=1), _run(prog, seed=1), _run(prog, seed=2)
    assert np.array_equal(c, d) and not np.array_equal(c, e)


def test_adc_noise_is_drawn_per_run_not_replayed_per_batch():
    """ADC noise is temporal: two runs of the same input differ (it was the same draw at every call, so a data set
    evaluated one sample per batch had one fixed noise vector and its seed-to-seed spread was 30x too large); a
    pinned read index reproduces a run."""
    noisy = dataclasses.replace(BASE, adc_noise_lsb=0.7)
    a, b = _run(noisy, seed=1), _run(noisy, seed=1)
    assert not np.array_equal(a, b)
    assert np.array_equal(_run(noisy, 1, read_index=5), _run(noisy, 1, read_index=5))


def test_read_noise_sequence_is_reproducible_after_clearing_the_cache():
    read = dataclasses.replace(BASE, read_sigma=0.05)
    ik.clear_cache()
    first = [_run(read, seed=4) for _ in range(2)]
    ik.clear_cache()
    again = [_run(read, seed=4) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_on_off_ratio_leak_cancelled_by_differential_not_by_offset():
    r = np.random.default_rng(1)
    xq, qw = r.integers(0, 64, size=(300, 60)), r.integers(-31, 32, size=(60, 6))
    exact = (xq @ qw).astype(np.float64)
    errs = {}
    for enc in SignedWeights:
        s = dataclasses.replace(BASE, signed_weights=enc, adc_bits=12, on_off_ratio=10.0)
        got = nm.crossbar_matmul(xq, qw, False, s)
        errs[enc] = (got - exact).mean() / np.abs(exact).mean()
    assert abs(errs[SignedWeights.DIFFERENTIAL]) < 0.01  # the two columns' leakage cancels (up to rounding)
    assert errs[SignedWeights.OFFSET] > 0.3  # g_off·Σ_s 2^(s·c)·Σu remains: a large positive bias


def test_ir_drop_attenuates_and_inl_distorts():
    ideal = _run(BASE)
    ir = _run(dataclasses.replace(BASE, ir_drop=0.2))
    assert np.abs(ir).mean() < np.abs(ideal).mean() and not np.array_equal(ir, ideal)
    inl = dataclasses.replace(BASE, adc_bits=5, adc_inl_lsb=1.0, adc_dnl_lsb=0.3)
    clip = dataclasses.replace(BASE, adc_bits=5)
    assert not np.array_equal(_run(inl), _run(clip))
    assert np.array_equal(_run(inl, seed=3), _run(inl, seed=3))


def test_adc_thresholds_are_increasing_positive_and_bowed():
    s = dataclasses.replace(BASE, adc_bits=6, adc_inl_lsb=1.0)
    t = ph.adc_thresholds(s, np.random.default_rng(0))
    assert len(t) == 63 and np.all(np.diff(t) >= 0) and t[0] > 0
    dev = t - (np.arange(1, 64) - 0.5)
    assert dev[31] == pytest.approx(1.0, abs=0.01) and abs(dev[0]) < 0.1 and abs(dev[-1]) < 0.1


@pytest.mark.parametrize("phys", PHYSICS[1:], ids=lambda p: ",".join(p))
def test_same_seed_same_outputs(phys):
    s = dataclasses.replace(BASE, adc_bits=7, **phys)
    assert np.array_equal(_run(s, seed=9, read_index=0), _run(s, seed=9, read_index=0))


def test_crossbars_are_programmed_once_per_seed(monkeypatch):
    s = dataclasses.replace(BASE, adc_bits=6, conductance_sigma=0.02)
    g, x = _net()
    _run(s, 0, g=g, x=x)
    calls = []
    real = nm.program
    monkeypatch.setattr(nm, "program", lambda *a, **k: calls.append(1) or real(*a, **k))
    _run(s, 0, g=g, x=x)
    _run(s, 0, g=g, x=x[:1])
    assert calls == []
    _run(s, 1, g=g, x=x)  # a new seed programs a new chip
    assert calls


@pytest.mark.parametrize("bad", [dict(on_off_ratio=0.5), dict(read_sigma=-0.1), dict(ir_drop=1.0),
                                 dict(drift_t0_s=0.0), dict(adc_inl_lsb=-1.0), dict(drift_compensation=1)])
def test_bad_physics_fields_are_refused(bad):
    with pytest.raises(SpecError):
        dataclasses.replace(BASE, **bad)


@pytest.mark.parametrize("enc", list(SignedWeights))
@pytest.mark.parametrize("cfg", [(6, 5, 3, 1, 1, 1, 1, 7), (8, 12, 3, 2, 1, 1, 4, 9), (5, 4, 3, 1, 2, 2, 1, 8)])
def test_conv_reads_images_in_place_like_the_patches(cfg, enc):
    """The conv path (padded images read in place, exact part on the integer conv kernels) equals the matrix path
    on explicit im2col patches, bit for bit, with clipping, ADC noise, variation and stuck-at cells."""
    import torch

    cin, cout, k, s, p, d, g, hw = cfg
    conv = torch.nn.Conv2d(cin, cout, k, s, p, d, g).eval()
    graph = quantize(hwsim.as_graph(conv, (2, cin, hw, hw)), 6, 5)
    node = graph.nodes[0]
    spec = IMCSpec(rows=16, cols=64, cell_bits=2, adc_bits=4, weight_bits=6, input_bits=5, signed_weights=enc,
                   conductance_sigma=0.03, stuck_at_rate=0.02, adc_noise_lsb=0.3)
    xq = np.random.default_rng(1).integers(-15, 16, size=(2, cin, hw, hw))
    qw, _ = ik.weights_q(graph.param(node, "weight"), 6, True)
    got = ik.conv_acc(graph, node, xq, True, qw, spec, 3, force_bitlevel=True)
    a = node.attrs
    og, cg, kg = cout // g, cin // g, a.rows
    noise = nm.rng_for(3, "adc", "None", node.name)  # conv_acc without a read index (hwsim.imc.physics.adc_noise_rng)
    key = node.params["weight"]
    parts = []
    for gi in range(g):
        wg = qw[gi * og:(gi + 1) * og].reshape(og, kg).T
        prog = nm.program(wg, spec, lambda k0, gi=gi: nm.rng_for(3, "cells", key, str(gi), str(k0)),
                          nm.rng_for(3, "adc-transfer"))
        u = nm.patches(xq[:, gi * cg:(gi + 1) * cg] + 16, a.kernel, a.stride, a.padding, a.dilation, 16)
        parts.append(nm.crossbar_matmul(u, wg, True, spec, None, noise, encoded=True, prog=prog))
    want = np.concatenate(parts, axis=1).reshape(2, node.shape[2], node.shape[3], cout).transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)


def test_adc_transfer_differs_per_seed():
    s = dataclasses.replace(BASE, adc_bits=5, adc_inl_lsb=0.5, adc_dnl_lsb=0.5)
    assert not np.array_equal(_run(s, seed=1), _run(s, seed=2))


def test_large_linear_layers_stream_their_splits_with_the_same_bits(monkeypatch):
    import torch

    lin = torch.nn.Linear(150, 7).eval()
    graph = quantize(hwsim.as_graph(lin, (5, 150)), 6, 6)
    x = np.random.default_rng(2).normal(size=(5, 150)).astype(np.float32)
    spec = dataclasses.replace(BASE, adc_bits=5, conductance_sigma=0.03, stuck_at_rate=0.01, adc_noise_lsb=0.2,
                               read_sigma=0.02)
    held = functional.run(graph, x, ik.make_kernels(spec, 4, read_index=2))[0]
    monkeypatch.setattr(ik, "STREAM_BYTES", 0)
    ik.clear_cache()
    streamed = functional.run(graph, x, ik.make_kernels(spec, 4, read_index=2))[0]
    assert np.array_equal(held, streamed)


def test_program_cache_is_bounded_and_keeps_the_first_layers_of_a_net_larger_than_it(monkeypatch):
    s = dataclasses.replace(BASE, adc_bits=6, conductance_sigma=0.02)
    g, x = _net()
    ik.clear_cache()
    _run(s, 0, g=g, x=x)
    total = sum(v[1].nbytes for v in ik._PCACHE.values())
    monkeypatch.setattr(ik, "PCACHE_BYTES", total // 2)  # room for about half of the net's programs
    ik.clear_cache()
    calls = []
    real = nm.program
    monkeypatch.setattr(nm, "program", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = _run(s, 0, g=g, x=x)
    n_first = len(calls)
    second = _run(s, 0, g=g, x=x)
    assert np.array_equal(first, second)
    assert 0 < len(calls) - n_first < n_first  # some programs were kept, the others rebuilt (identically)
    assert sum(v[1].nbytes for v in ik._PCACHE.values()) <= total // 2
    ik.clear_cache()
    assert not ik._PCACHE


# ----------------------------------------------------------------------------- the reference column
OFFSET = dataclasses.replace(BASE, signed_weights=SignedWeights.OFFSET)  # 64 x 3 x 3 = 192 <= 1023: exact ideal chip


def test_reference_column_restores_the_offset_chip():
    """Offset weights on cells with on/off ratio 17: the g_min leakage wrecks the outputs; the reference column
    cancels it exactly (g_off = 3/16 is a float: l + g_off − g_off = l) and, with programming noise, keeps the
    error at the noise's level."""
    g, x = _net()
    fp = functional.run(g, x)[0]
    ideal = _run(OFFSET, g=g, x=x)
    leak = _run(dataclasses.replace(OFFSET, on_off_ratio=17.0), g=g, x=x)
    ref = _run(dataclasses.replace(OFFSET, on_off_ratio=17.0, reference_column=True), g=g, x=x)
    assert np.array_equal(ref, ideal)
    assert _rel(leak, fp) > 1000 * _rel(ideal, fp)  # measured: 174 vs 0.016
    noisy = dict(on_off_ratio=17.0, conductance_sigma=0.03, read_sigma=0.02)
    leak_n = _run(dataclasses.replace(OFFSET, **noisy), 1, read_index=0, g=g, x=x)
    ref_n = _run(dataclasses.replace(OFFSET, reference_column=True, **noisy), 1, read_index=0, g=g, x=x)
    assert _rel(ref_n, fp) < _rel(leak_n, fp) / 100  # measured: 0.080 vs 152


def test_reference_column_leaves_the_data_cells_draws_unchanged():
    """Its own generator: the data cells of a spec with it are those of the same spec without it, bit for bit,
    and the reference cells equal the by-hand transcription."""
    lv = np.random.default_rng(0).integers(0, 4, (40, 9))
    kw = dict(on_off_ratio=17.0, conductance_sigma=0.05, stuck_at_rate=0.05, ir_drop=0.1, drift_time_s=3600.0,
              drift_nu_mean=0.05, drift_nu_std=0.02, drift_compensation=True)
    with_ref = dataclasses.replace(OFFSET, reference_column=True, **kw)
    g, ref = ph.program_array(lv, with_ref, nm.rng_for(3, "cells", "5"), 24)
    assert np.array_equal(g, ph.program_cells(lv, dataclasses.replace(OFFSET, **kw), nm.rng_for(3, "cells", "5"), 24))
    want_g, want_ref = cells_by_hand(lv, with_ref, nm.rng_for(3, "cells", "5"), 24)
    assert np.array_equal(g, want_g) and np.array_equal(ref, want_ref)
    assert np.array_equal(ph.program_cells(lv, with_ref, nm.rng_for(3, "cells", "5"), 24), g - ref[:, None])
    other = ph.program_array(lv, with_ref, nm.rng_for(3, "cells", "5"), 88)[1]  # another split: other draws
    assert not np.array_equal(ref, other)
    assert (g - ref[:, None]).min() < 0  # negative conductances do occur


@pytest.mark.parametrize("phys", REFERENCE[2:], ids=lambda p: ",".join(p))
def test_reference_column_is_reproducible_per_seed(phys):
    s = dataclasses.replace(OFFSET, adc_bits=7, **phys)
    a = _run(s, seed=9, read_index=0)
    assert np.array_equal(a, _run(s, seed=9, read_index=0))
    assert not np.array_equal(a, _run(s, seed=10, read_index=0))


@pytest.mark.parametrize("phys", REFERENCE[2:], ids=lambda p: ",".join(p))
@pytest.mark.parametrize("dac", [1, 2])
def test_analog_kernel_equals_the_row_add_kernel_on_negative_cells(phys, dac):
    """Every programmed split of a reference-column spec (conductances of both signs on the grid) through the
    subset-sum kernel and the reference row-add kernel: the same accumulators bit for bit."""
    from hwsim.imc import _analog as an
    from hwsim.imc import xbar as xb

    spec = dataclasses.replace(OFFSET, rows=100, adc_bits=6, dac_bits=dac, **phys)
    r = np.random.default_rng(dac)
    qw = r.integers(-31, 32, (230, 7))
    u = r.integers(0, 64, (120, 230))
    u[r.random(u.shape) < 0.4] = 0
    prog = nm.program(qw, spec, lambda k0: nm.rng_for(2, "cells", str(k0)), nm.rng_for(2, "adc-transfer"))
    if ph.per_read(spec):
        prog = nm.read_program(prog, spec, nm.rng_for(2, "read"))
    base, off = np.zeros(1, np.int64), np.arange(230, dtype=np.int64)
    top, jn = float(2**spec.adc_bits - 1), spec.input_steps
    negative = 0
    for sp in prog.splits:
        q = sp.cells.shape[1]
        negative += int((sp.cells < 0).sum())
        noisy = spec.adc_noise_lsb > 0
        z = r.standard_normal((jn, 120, q), dtype=np.float32) if noisy else np.zeros((0, 0, 0), np.float32)
        zs = spec.adc_noise_lsb * sp.lsb
        want = np.zeros((120, 7))
        xb.split_adc(u, base, off, 0, 120, sp.k0, sp.rows, sp.cells, jn, dac, sp.col_w, sp.col_out, sp.lsb, top,
                     sp.mode, prog.thresholds, 0.0, sp.skip_sum, z, zs, want)
        fast32 = sp.mode == 3 and an.codes_fit_float32(top, jn, dac)
        for gb in (4, 8):
            got = np.zeros((120, 7))
            an.split_adc_rows(u, base, off, 0, 120, sp.k0, sp.rows, sp.cells, jn, dac, sp.col_w, sp.col_out, sp.lsb,
                              top, sp.mode, prog.thresholds, 0.0, sp.skip_sum, z, zs, fast32, gb, got)
            assert np.array_equal(got, want)
    assert negative > 0


@pytest.mark.parametrize("bad,words", [(dict(signed_weights=SignedWeights.DIFFERENTIAL), "offset"),
                                       (dict(on_off_ratio=0.0), "on_off_ratio"), (dict(reference_column=1), "true")])
def test_reference_column_refused_where_it_makes_no_sense(bad, words):
    with pytest.raises(SpecError, match=words):
        dataclasses.replace(OFFSET, **{"on_off_ratio": 17.0, "reference_column": True, **bad})


def test_analog_sums_beyond_the_exact_grid_are_refused():
    """rows x DAC levels x conductance beyond 2^23 levels: the analog sums cannot stay exact, a one-line SpecError
    (the conductances were rounded to multiples of several levels before)."""
    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), rows=512, dac_bits=8, cell_bits=8, on_off_ratio=10,
                               conductance_sigma=0.02)
    with pytest.raises(SpecError, match="exceed the 2\\^23 levels"):
        ph.grid_bits(spec, 294.0)
    assert ph.grid_bits(dataclasses.replace(spec, rows=128, dac_bits=1), 294.0) >= 0


def test_too_wide_analog_sums_are_refused_before_any_layer_runs(monkeypatch):
    import importlib

    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), rows=512, dac_bits=8, cell_bits=8, on_off_ratio=10,
                               conductance_sigma=0.02)
    S = importlib.import_module("hwsim.imc.simulate")
    monkeypatch.setattr(S, "_outputs", lambda *a, **k: pytest.fail("a layer ran before the refusal"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with pytest.raises(SpecError, match="exceed the 2\\^23 levels"):
        hwsim.simulate("resnet20", spec, x=x)
    assert hwsim.simulate("resnet20", spec).report.latency_s > 0  # the cost model alone still runs
