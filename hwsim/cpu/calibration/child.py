"""The all-thread timing of ``hwsim calibrate`` in fresh child processes: the parent starts
``python -m hwsim.cpu.calibration.child --parallel-child THREADS KIND[,KIND...]`` with
:data:`~hwsim.cpu.calibration.timing.KEEP_FREED_MEMORY` in its environment; the child prints one JSON line
(``times``, ``chains``, ``round_trip_s``) as its last line of stdout."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from hwsim.cpu.calibration.timing import (
    KEEP_FREED_MEMORY,
    _median_rounds,
    _no_phase,
    _Phases,
    _threads,
    _time_chains,
    _time_layer,
)
from hwsim.cpu.calibration.workloads import PROBE_LAYER, _chains, _synthetic
from hwsim.cpu.cores import round_trip_s, threads_close
from hwsim.errors import HwsimError

PARALLEL_PROCESSES = 3  # all-thread layer timings: fresh processes sampled, each layer's median over them kept


def probe_time(threads: int) -> float:
    """Median time in s of :data:`PROBE_LAYER` on ``threads`` threads, in this process."""
    with _threads(threads):
        return _time_layer(*PROBE_LAYER, quick=False)


def _time_parallel(kinds: tuple[str, ...], quick: bool, n: int) -> dict[str, list[float]]:
    """Median time of every synthetic layer of ``kinds`` (``times``, the order of :func:`_synthetic`) and of every
    synthetic chain (``chains``, the order of :func:`_chains`) on ``n`` threads, in this process."""
    chains = [(model.eval(), shape) for model, shape in _chains()]
    with _threads(n):
        return {"times": [_time_layer(kind, args, shape, quick) for kind, args, shape in _synthetic(quick, kinds)],
                "chains": _time_chains(chains, quick)}


def _parallel_child(kinds: tuple[str, ...], n: int) -> dict[str, object]:
    """One all-thread calibration process: the layer and chain times and the core-to-core round trip (s) just
    before and just after them (:func:`hwsim.cpu.cores.round_trip_s`; None where it cannot be measured)."""
    before = round_trip_s()
    out = _time_parallel(kinds, False, n)
    return {**out, "round_trip_s": [before, round_trip_s()]}


def _same_placement(runs: list[dict[str, object]]) -> list[dict[str, object]]:
    """The processes whose threads ran as close together as the machine allows (:func:`hwsim.cpu.cores.threads_close`
    on their round trips before and after)."""
    return [r for r, close in zip(runs, threads_close([r["round_trip_s"] for r in runs])) if close]


def _parallel_layer_times(kinds: tuple[str, ...], quick: bool, n: int,
                          phase=_no_phase) -> tuple[list[float], list[float], dict[str, object]]:
    """All-thread layer times and chain times (each the median over PARALLEL_PROCESSES fresh processes of its
    median in a process) and what the processes saw (``round_trips_s``, ``processes``, ``set_aside``).

    On a shared virtual machine a whole process runs its parallel regions fast or slow: the hypervisor places the
    virtual CPUs on cores that share the last-level cache or on different chiplets, for tens of seconds at a time
    (:mod:`hwsim.cpu.cores`; how far it moved on the calibration machine: ``docs/targets/cpu-calibration.md``). Each process measures the core-to-core round trip before
    and after its layers; processes that ran split apart (:func:`_same_placement`) are set aside and replaced, up
    to PARALLEL_PROCESSES x 3 processes in all: the preset describes the machine with its cores together. The
    host validation pools its nets over fresh processes too and reports both placements. ``quick``: this process
    only."""
    if quick:
        phase(f"{n} threads: synthetic layers and chains")
        out = _time_parallel(kinds, quick, n)
        return out["times"], out["chains"], {"round_trips_s": [], "processes": 1, "set_aside": 0, "none_close": False}
    runs: list[dict[str, object]] = []
    while len(runs) < 3 * PARALLEL_PROCESSES and len(_same_placement(runs)) < PARALLEL_PROCESSES:
        if len(runs) >= PARALLEL_PROCESSES and isinstance(phase, _Phases):  # a process set aside: one more
            phase.more(1)
        phase(f"{n} threads: process {len(runs) + 1} (synthetic layers and chains)")
        out = subprocess.run([sys.executable, "-m", "hwsim.cpu.calibration.child", "--parallel-child", str(n),
                              ",".join(kinds)], capture_output=True, text=True, check=False,
                             env={**os.environ, **KEEP_FREED_MEMORY})
        if out.returncode != 0:
            raise HwsimError(f"calibration child process failed: {out.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    close = _same_placement(runs)
    kept = close or runs  # none ran with its threads close: keep them all, and say so in the preset header
    info = {"round_trips_s": [t for r in runs for t in r["round_trip_s"] if t is not None],
            "processes": len(kept), "set_aside": len(runs) - len(kept), "none_close": not close}
    med = _median_rounds([{"times": r["times"], "chains": r["chains"]} for r in kept])
    return med["times"], med["chains"], info


if __name__ == "__main__":  # the all-thread timing child of _parallel_layer_times
    if len(sys.argv) == 4 and sys.argv[1] == "--parallel-child":  # started with KEEP_FREED_MEMORY in its environment
        print(json.dumps(_parallel_child(tuple(sys.argv[3].split(",")), int(sys.argv[2]))))
    else:
        raise SystemExit("usage: python -m hwsim.cpu.calibration.child --parallel-child THREADS KIND[,KIND...]")
