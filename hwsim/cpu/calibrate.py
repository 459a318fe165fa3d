"""``hwsim calibrate``: measure the machine hwsim runs on and write a ``cpu/host`` preset.

What is measured (torch fp32 and numpy, one thread unless noted, after warm-up; machine capabilities as
the best of many short timed calls — on a shared machine the one no other process disturbed — and layers
and layer chains as the median of their calls, see :data:`LAYER_STAT`):

1. peak fp32 throughput: the best of a large GEMM (``torch.mm``) and a large 3×3 conv. The preset's
   ``clock_hz`` is the *effective* sustained clock implied by it: ``peak / (lanes · fma_per_cycle · 2)``
   with ``fma_per_cycle = 2`` (two vector FMA pipes, as on current x86 server cores); the nominal clock
   from ``/proc/cpuinfo`` goes in the header. Lanes come from the CPU flags (AVX-512, AVX2, NEON).
2. bandwidths: L2 from ``numpy.copyto`` of an L2-sized array (2 bytes moved per byte copied); L3 and main
   memory from a weight stream (``torch.mv`` over matrices sized for L3 and beyond it), since weights are
   what layers stream from there; the *effective* L3 capacity from where that stream's bandwidth drops
   (a virtual machine shares the L3 with other tenants).
3. per-layer overhead: tiny torch layers (a conv on 4×4 pixels, a relu, an add) whose time is all overhead;
   the time of a channel slice ``x[:, a:b]`` (a view: dispatch only, no data touched) -> ``overhead_view_s``.
4. per-kernel efficiencies and fixed overheads: a few *synthetic* conv / grouped / depthwise / 1×1 (dense and
   grouped) / linear / elementwise (out-of-place and in-place activations, adds, unfused batch norms) /
   pooling / upsampling (nearest, bilinear) layers,
   large ones and tiny ones (shapes chosen not to be the zoo's:
   calibrate on synthetic layers, validate on the zoo); the fields of each group are the values that
   minimise the squared log error of the cost model (:mod:`hwsim.cpu.cost`) on its layers.
5. layers in a network: ``layer_overhead_s`` fitted on eight synthetic layer chains
   run back to back (a layer in a network pays costs an isolated layer does not: cold caches, dispatch of
   the module graph); the isolated tiny-layer figure is kept in the header.
6. all threads: ``parallel_eff`` and ``parallel_flops_half`` fitted on the synthetic conv layers timed again on
   all threads in three fresh processes, each layer keeping its median over them (on a shared machine whole
   processes run their parallel regions fast or slow); then ``parallel_overhead_s`` on the synthetic chains timed
   on all threads in the same processes (a per-layer cost on several threads that a layer timed over and over
   alone does not show; what it came to on the calibration machine: ``docs/targets/cpu-calibration.md``). Each process
   measures the core-to-core round trip (:mod:`hwsim.cpu.cores`) before and after; one whose threads ran
   split apart (:func:`hwsim.cpu.cores.threads_close`: a round trip above ``SPLIT_FACTOR`` x the shortest seen, or
   every one above ``SHARED_LLC_MAX_S``) is set aside and replaced.

Steps 1-5 run in :data:`CALIBRATION_ROUNDS` rounds back to back and every figure keeps its median over the
rounds (a shared machine's state drifts over tens of seconds; one round takes seconds); the fits run once, on
those medians. Cache sizes are read from ``/sys/devices/system/cpu/cpu0/cache``. Power constants are not measurable
here; they are cited in the written header.

This module is the entry (:func:`calibrate` and the two fits that make the spec); the jobs it calls live in
:mod:`hwsim.cpu.calibration` (host facts, timing, workloads, fitting, the all-thread child processes), whose
names this module re-exports: ``hwsim.cpu.calibrate.<name>`` keeps working for every name it had.
"""
from __future__ import annotations

import dataclasses
import datetime
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Re-exported: every name this module had before it was split keeps working as hwsim.cpu.calibrate.<name>.
from hwsim.cpu.calibration.child import (  # noqa: F401
    PARALLEL_PROCESSES,
    _parallel_child,
    _parallel_layer_times,
    _same_placement,
    _time_parallel,
    probe_time,
)
from hwsim.cpu.calibration.fit import (  # noqa: F401
    FIT_GROUPS,
    LINEAR_FIELDS,
    LOG_FIELD_RANGE,
    PARALLEL_FIELDS,
    _fit,
    _Measured,
    _predict,
    _rms,
)
from hwsim.cpu.calibration.host import (  # noqa: F401
    FMA_PIPES_X86,
    HOST_POWER,
    TORCH_GEMM_CONV_MAX_INPUT_ELEMENTS,
    TORCH_GRAIN_SIZE,
    TORCH_ONEDNN_REORDERS,
    TORCH_POINTWISE_GEMM_MAX_THREADS,
    _Caches,
    _cpu_flags,
    _cpu_mhz,
    _cpu_model,
    _ncpus,
    _ram_bytes,
    _read,
    _size,
    cache_sizes,
    simd_bits_of_host,
)
from hwsim.cpu.calibration.timing import (  # noqa: F401
    _M_MMAP_THRESHOLD,
    _M_TRIM_THRESHOLD,
    KEEP_FREED_MEMORY,
    LAYER_STAT,
    _copy_bw,
    _effective_llc,
    _measure_round,
    _median_rounds,
    _no_phase,
    _overhead,
    _peak_flops,
    _Phases,
    _read_bw,
    _round_phases,
    _threads,
    _time_chains,
    _time_layer,
    _view_overhead,
    _weight_reorder_bw,
    keep_freed_memory,
    time_call,
)
from hwsim.cpu.calibration.workloads import (  # noqa: F401
    PROBE_LAYER,
    SYNTHETIC_LAYERS,
    _Add,
    _Branchy,
    _chains,
    _DenseGrowth,
    _module,
    _synthetic,
    _torch,
)
from hwsim.cpu.cores import SHARED_LLC_MAX_S, SPLIT_FACTOR
from hwsim.cpu.spec import CPUSpec
from hwsim.errors import HwsimError
from hwsim.specs import check_output_path, save_spec, user_preset_dir

__all__ = ["calibrate", "time_call", "cache_sizes", "simd_bits_of_host", "keep_freed_memory", "KEEP_FREED_MEMORY",
           "SYNTHETIC_LAYERS"]

# Single-thread measurements are repeated in this many rounds, back to back, and each quantity keeps its median over
# them: one round takes seconds, while a shared machine's state drifts over tens of seconds (how far, on the
# calibration machine: docs/targets/cpu-calibration.md), and the validation that judges the preset runs for minutes.
CALIBRATION_ROUNDS = 5


def calibrate(out_path: str | Path | None = None, quick: bool = False, rounds: int | None = None,
              progress: bool | None = None) -> CPUSpec:
    """Measure this machine and write a ``cpu/host`` preset YAML; returns the spec.

    ``out_path``: where to write (default ``user_preset_dir() / "cpu/host.yaml"``, which then overrides the
    shipped ``cpu/host``). ``quick``: fewer/smaller measurements (a few seconds; for tests). ``rounds``: how many
    times the single-thread measurements are repeated, each quantity keeping its median (default
    :data:`CALIBRATION_ROUNDS`, 1 when ``quick``). On glibc the calling process keeps glibc's raised malloc
    thresholds afterwards (:func:`keep_freed_memory`). ``progress``: a bar over the measurement phases on stderr
    (None: when stderr is a terminal, see :func:`hwsim.functional.show_progress`).
    """
    from mapping.trace import trace

    if rounds is None:
        rounds = 1 if quick else CALIBRATION_ROUNDS
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise HwsimError(f"calibration rounds must be a positive integer, got {rounds!r}")
    # the output path is checked (its folder created) before a minute of measuring, not after
    path = check_output_path(out_path if out_path is not None else user_preset_dir() / "cpu" / "host.yaml",
                             "calibrated preset", (".yaml", ".yml"))
    torch = _torch()
    keep_freed_memory()  # measure the allocator's steady state, as the model describes (see KEEP_FREED_MEMORY)
    chains = [(model.eval(), shape) for model, shape in _chains()]
    caches = _Caches.of_host()
    parallel = _ncpus() > 1
    phase = _Phases(rounds * _round_phases(quick) + 2 + len(FIT_GROUPS)
                    + (_parallel_phases(quick) if parallel else 0) + 1, progress)
    try:
        with _threads(1):
            raw = _median_rounds([_measure_round(quick, caches, chains, phase, f"round {r + 1}/{rounds}: ")
                                  for r in range(rounds)])
            phase("tracing the synthetic layers")
            measured = [_Measured(kind, args, shape, trace(_module(kind, args).eval(), shape), t)
                        for (kind, args, shape), t in zip(_synthetic(quick), raw["layers"])]
            chain_graphs = [trace(m, shape) for m, shape in chains]
            spec, notes = _calibrate_single(raw, caches, measured, list(zip(chain_graphs, raw["chains"])), phase)
            notes[0] = (f"single-thread figures: median of {rounds} measurement round{'s' if rounds > 1 else ''}; "
                        + notes[0])
            if parallel:
                spec, more = _calibrate_parallel(spec, quick, measured, chain_graphs, phase)
                notes += more
        phase("writing the preset")
        header = "\n".join("# " + line for line in [
            f"cpu/host: measured by `hwsim calibrate{' --quick' if quick else ''}` on "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"machine: {_cpu_model()}, {_ncpus()} CPUs, nominal {_cpu_mhz()} MHz (/proc/cpuinfo), "
            f"torch {torch.__version__}, numpy {np.__version__}",
            "method: hwsim/cpu/calibrate.py (torch fp32 / numpy micro-benchmarks, best of many short repeats);",
            "caches from /sys/devices/system/cpu/cpu0/cache; clock_hz is the effective clock implied by the",
            "measured peak with fma_per_cycle = 2. Power (not measurable here): AMD EPYC 9555 (Zen 5) 360 W TDP / 64",
            "cores per core; DRAM 20 pJ/bit (Horowitz, ISSCC 2014); idle power of a VM's share unknown (0).",
            *notes,
        ])
        save_spec(spec, path, header=header)
    finally:
        phase.close()
    return spec


def _calibrate_single(raw: dict[str, object], caches: _Caches, measured: list[_Measured],
                      chains: list[tuple[object, float]],
                      phase: Callable[[str], None] = _no_phase) -> tuple[CPUSpec, list[str]]:
    """The single-thread spec from one set of measurements (:func:`_median_rounds` of :func:`_measure_round`) and
    the cache sizes they were sized by: machine figures taken as measured, kernel groups fitted on the synthetic
    layers, then ``layer_overhead_s`` on the synthetic chains (traced graph, seconds)."""
    lanes_bits = simd_bits_of_host()
    best = max(raw["gemm_flops"], raw["conv_flops"])
    clock = best / (lanes_bits // 32 * FMA_PIPES_X86 * 2)
    l1, l2, l2_per_core, l3_sysfs = caches.l1, caches.l2, caches.l2_per_core, caches.l3
    l3, bw_l2, bw_l3, bw_dram = raw["l3"], raw["bw_l2"], raw["bw_l3"], raw["bw_dram"]
    overhead, view, w_reorder = raw["overhead"], raw["view"], raw["w_reorder"]
    spec = CPUSpec(
        name="cpu/host", clock_hz=float(clock), cores=_ncpus(), board_cores=_ncpus(), simd_bits=lanes_bits,
        fma_per_cycle=float(FMA_PIPES_X86), l1d_bytes=int(l1), l2_bytes=int(l2), l3_bytes=int(l3),
        l2_per_core=bool(l2_per_core), l2_bw_bytes_s=float(bw_l2), l3_bw_bytes_s=float(bw_l3),
        dram_bw_bytes_s=float(bw_dram), ram_bytes=_ram_bytes(), flash_bytes=0, flash_bw_bytes_s=0.0,
        layer_overhead_s=float(overhead), overhead_view_s=float(f"{view:.4g}"),
        gemm_conv_max_input_elements=TORCH_GEMM_CONV_MAX_INPUT_ELEMENTS,
        pointwise_gemm_max_threads=TORCH_POINTWISE_GEMM_MAX_THREADS, parallel_grain_elements=TORCH_GRAIN_SIZE,
        reorder_activations=TORCH_ONEDNN_REORDERS, weight_reorder_bw_bytes_s=float(f"{w_reorder:.4g}"),
        **HOST_POWER,
    )
    notes = [f"measured: torch.mm {raw['gemm_flops'] / 1e9:.1f} GFLOP/s, 3x3 conv 192ch 28x28 "
             f"{raw['conv_flops'] / 1e9:.1f} GFLOP/s (1 thread); copy bandwidth L2 {bw_l2 / 1e9:.1f} GB/s; "
             f"weight-stream (torch.mv) read bandwidth L3 {bw_l3 / 1e9:.1f}, DRAM {bw_dram / 1e9:.1f} GB/s; "
             f"effective L3 {l3 / 2**20:.0f} MiB of {l3_sysfs / 2**20:.0f} MiB (sysfs); "
             f"tiny-layer overhead {overhead * 1e6:.1f} us; channel slice (view) {view * 1e6:.2f} us; "
             f"conv weight reorder {w_reorder / 1e9:.1f} GB/s"]
    fits = []
    for kinds, fields in FIT_GROUPS:
        phase(f"fitting {', '.join(fields)}")
        items = [(m.graph, m.seconds) for m in measured if m.kind in kinds]
        spec, rms = _fit(spec, fields, items)
        vals = ", ".join(f"{f} {getattr(spec, f):.4g}" for f in fields)
        fits.append(f"{vals} (rms log error {rms:.3f} on {len(items)} synthetic layers)")
    notes += ["fitted: " + f for f in fits]
    isolated = spec.layer_overhead_s
    phase("fitting layer_overhead_s")
    spec, rms = _fit(spec, ("layer_overhead_s",), chains)
    notes.append(f"fitted on {len(chains)} synthetic layer chains: layer_overhead_s {spec.layer_overhead_s * 1e6:.1f} us "
                 f"(isolated tiny layer {isolated * 1e6:.1f} us; rms log error {rms:.3f})")
    return spec, notes


def _parallel_phases(quick: bool) -> int:
    """Phases of :func:`_calibrate_parallel` (when no all-thread process is set aside)."""
    return 3 + (1 if quick else PARALLEL_PROCESSES)


def _calibrate_parallel(spec: CPUSpec, quick: bool, measured: list[_Measured],
                        chain_graphs: list[object], phase=_no_phase) -> tuple[CPUSpec, list[str]]:
    """:data:`PARALLEL_FIELDS` fitted on the synthetic conv layers timed again on all threads, then
    ``parallel_overhead_s`` on the synthetic chains (traced graphs, order of :func:`_chains`) timed on all threads
    in the same processes (:func:`_parallel_layer_times`), as ``layer_overhead_s`` is on one thread."""
    n = _ncpus()
    phase(f"{n} threads: large conv")
    t1 = _peak_flops(True, clock="wall")["conv_s"]
    kinds = ("conv", "im2col", "pointwise", "depthwise", "grouped")
    with _threads(n):
        t2 = _peak_flops(True, clock="wall")["conv_s"]
    layers = [m for m in measured if m.kind in kinds]
    times, chain_times, seen = _parallel_layer_times(kinds, quick, n, phase=phase)
    items = list(zip((m.graph for m in layers), times))
    probe = [(m.seconds, t) for m, t in zip(layers, times) if (m.kind, m.args, m.shape) == PROBE_LAYER]
    phase(f"fitting {', '.join(PARALLEL_FIELDS)}")
    spec, rms = _fit(spec, PARALLEL_FIELDS, items, cores=n)
    where = "this process" if quick else f"median over {seen['processes']} fresh processes"
    notes = [f"{n} threads: large 3x3 conv speed-up {t1 / t2:.2f}; fitted on {len(items)} synthetic conv layers "
             f"({where}): parallel_eff {spec.parallel_eff:.3f}, parallel_flops_half {spec.parallel_flops_half:.3g} "
             f"(rms log error {rms:.3f})"]
    chains = list(zip(chain_graphs, chain_times))
    spec = dataclasses.replace(spec, parallel_overhead_s=0.0)
    phase("fitting parallel_overhead_s")
    rms0 = _rms(spec, chains, n)
    spec, rms = _fit(spec, ("parallel_overhead_s",), chains, cores=n)
    notes.append(f"fitted on {len(chains)} synthetic layer chains on {n} threads (same processes): "
                 f"parallel_overhead_s {spec.parallel_overhead_s * 1e6:.2f} us per layer (rms log error {rms:.3f}; "
                 f"{rms0:.3f} without it)")
    apart = (f"no all-thread process ran with its threads sharing a last-level cache (every core-to-core round trip "
             f"above {SHARED_LLC_MAX_S * 1e9:.0f} ns): the {n}-thread figures describe threads placed apart; "
             "calibrate again later")
    if seen["none_close"]:
        warnings.warn("calibration: " + apart, stacklevel=2)
    if seen["round_trips_s"]:
        trips = seen["round_trips_s"]
        notes.append(f"core-to-core round trip (hwsim.cpu.cores) {min(trips) * 1e9:.0f}-{max(trips) * 1e9:.0f} ns over "
                     f"the all-thread processes; {seen['set_aside']} set aside for round trips above "
                     f"{SPLIT_FACTOR:g}x the shortest (threads placed apart)"
                     + ("; WARNING: " + apart if seen["none_close"] else ""))
    (cin, cout, _, _), (_, _, h, w) = PROBE_LAYER[1:]
    notes += [f"machine-state probe ({cin}->{cout} im2col conv, {h}x{w}): 1 thread {probe[0][0] * 1e6:.1f} us, {n} threads "
              f"{probe[0][1] * 1e6:.1f} us"] if probe else []
    return spec, notes
