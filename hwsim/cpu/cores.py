"""Core-to-core latency of this machine: a cache-line ping-pong between two pinned threads.

Two threads, each pinned to one CPU, pass a token through one shared 8-byte word (atomic acquire loads and
release stores, compiled with Numba): a round trip moves the cache line holding it from one core to the other and
back. Its time tells how far apart the two cores are in the cache hierarchy: cores sharing a last-level cache
exchange the line through it (tens of ns to ~150 ns on current x86 server parts), cores on different LLC domains
(another chiplet or socket) through the interconnect (several hundred ns).

Why hwsim measures it: on a shared virtual machine the hypervisor may place the virtual CPUs on cores that share
an LLC at one moment and on different chiplets the next. Measured on the 2-vCPU machine the host preset was
calibrated on (benchmarks/bench_host_stability.py, benchmarks/results/host_stability.json): round trips of
78-133 ns and 355-425 ns alternate over tens of seconds, and the all-thread layer times follow (the calibration's
probe conv at 2 threads 59-66 us with the short round trip, 112-132 us, slower than on one thread, with the long
one). ``hwsim calibrate`` and the host validation record it beside their all-thread timings and tell the two
placements apart with :func:`threads_close`.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from hwsim.errors import HwsimError

__all__ = ["round_trip_s", "threads_close", "apart_above_s", "SPLIT_FACTOR", "SHARED_LLC_MAX_S"]

# A round trip more than this many times the shortest seen on the same machine in the same run means the two
# threads ran farther apart than the machine's best placement (measured here: 78-133 ns vs 355-425 ns,
# benchmarks/results/host_stability.json).
SPLIT_FACTOR = 2.0
# ... and a shortest round trip above this means no run had its threads on cores sharing a last-level cache: within
# one LLC a cache line goes from core to core and back in well under 200 ns on current x86 and Arm server parts
# (here 78-133 ns; across this machine's chiplets 355-425 ns), so the relative test alone would call every run close
# when all of them ran apart.
SHARED_LLC_MAX_S = 250e-9
_SPIN_LIMIT = 200_000_000  # spins (~0.1-1 s) before a side gives up on the other thread: it never got a CPU


@intrinsic
def _load_acquire(typingctx, arr, idx):
    """``arr[idx]`` read with an atomic acquire load (a plain load in a spin loop may be hoisted out of it)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def _store_release(typingctx, arr, idx, val):
    """``arr[idx] = val`` with an atomic release store."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(arr, idx, val), codegen


@njit(nogil=True, cache=True)
def _side(flag, me, nxt, trips, spin_limit):
    """Wait for the token value ``me``, hand over ``nxt``; ``trips`` times. Returns the trips completed."""
    for i in range(trips):
        k = 0
        while _load_acquire(flag, 0) != me:
            k += 1
            if k > spin_limit:
                return i
        _store_release(flag, 0, nxt)
    return trips


def round_trip_s(cpu_a: int | None = None, cpu_b: int | None = None, trips: int = 50_000,
                 settle_s: float = 0.05) -> float | None:
    """Seconds per cache-line round trip between CPUs ``cpu_a`` and ``cpu_b`` (default: the first two CPUs this
    process may run on), averaged over ``trips`` round trips, after sleeping ``settle_s``: an OpenMP runtime's
    worker threads spin on their CPUs for milliseconds after a parallel region and would share them with the two
    timing threads (measured here right after 2-thread torch convs: 160-185 ns; 10-50 ms later 95-110 ns, as idle).
    None when this process may use fewer than two CPUs or the other thread never ran (its CPU busy elsewhere for
    the whole spin budget)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpu_a is None and cpu_b is None:
        if len(allowed) < 2:
            return None
        cpu_a, cpu_b = allowed[0], allowed[1]
    if cpu_a is None or cpu_b is None or cpu_a == cpu_b or cpu_a not in allowed or cpu_b not in allowed:
        raise HwsimError(f"core round trip needs two different CPUs this process may use ({allowed}), "
                         f"got {cpu_a} and {cpu_b}")
    if isinstance(trips, bool) or not isinstance(trips, int) or trips < 1:
        raise HwsimError(f"round trips must be a positive integer, got {trips!r}")
    if not settle_s >= 0:
        raise HwsimError(f"settle time must be >= 0 s, got {settle_s!r}")
    time.sleep(settle_s)
    flag = np.zeros(8, np.int64)  # one 64-byte line: the token word and padding
    _side(np.ones(1, np.int64), 1, 1, 1, 1)  # compile before timing
    done: dict[str, int] = {}

    def other() -> None:
        os.sched_setaffinity(0, {cpu_b})  # pid 0: the calling thread only
        done["b"] = _side(flag, 1, 0, trips, _SPIN_LIMIT)

    mine = os.sched_getaffinity(0)
    th = threading.Thread(target=other, daemon=True)
    try:
        os.sched_setaffinity(0, {cpu_a})
        th.start()
        t0 = time.perf_counter()
        done["a"] = _side(flag, 0, 1, trips, _SPIN_LIMIT)
        dt = time.perf_counter() - t0
        th.join()
    finally:
        os.sched_setaffinity(0, mine)
    if done.get("a") != trips or done.get("b") != trips:
        return None
    return dt / trips


def threads_close(runs: list[list[float | None]]) -> list[bool]:
    """For each run's round trips (s; None = not measured), whether its threads ran as close together as the machine
    allows: every round trip within :data:`SPLIT_FACTOR` x the shortest of all the runs, and that shortest one within
    :data:`SHARED_LLC_MAX_S` (else every run with round trips ran apart). All True when no round trip was measured
    (nothing to tell placements apart by); a run without round trips (one thread) is close."""
    trips = [t for run in runs for t in run if t is not None]
    if not trips:
        return [True] * len(runs)
    bound = apart_above_s(trips)
    return [all(t is not None and t <= bound for t in run) for run in runs]


def apart_above_s(trips: list[float]) -> float:
    """The round trip (s) above which a run's threads count as placed apart, given every round trip measured in
    the same series: :data:`SPLIT_FACTOR` x the shortest, or 0 when even the shortest exceeds
    :data:`SHARED_LLC_MAX_S` (no run had its threads on cores sharing a last-level cache)."""
    shortest = min(trips)
    return SPLIT_FACTOR * shortest if shortest <= SHARED_LLC_MAX_S else 0.0
