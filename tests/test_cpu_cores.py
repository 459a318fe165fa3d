"""The core-to-core round-trip probe (hwsim.cpu.cores)."""
from __future__ import annotations

import os

import pytest

import hwsim
from hwsim.cpu.cores import SHARED_LLC_MAX_S, SPLIT_FACTOR, round_trip_s, threads_close

TWO_CPUS = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs to pass the token between")
def test_round_trip_is_a_plausible_cache_line_transfer_and_restores_affinity():
    """A round trip moves one cache line between two cores and back: a positive time (~10 ns for sibling
    hyperthreads to ~100 us for a descheduled vCPU; not bounded here, the machine may be loaded); the calling
    thread may use all its CPUs again afterwards."""
    before = os.sched_getaffinity(0)
    t = round_trip_s(trips=20_000)
    assert t is not None and t > 0
    assert os.sched_getaffinity(0) == before


def test_round_trip_refuses_bad_cpus_and_counts():
    allowed = sorted(os.sched_getaffinity(0))
    with pytest.raises(hwsim.HwsimError, match="two different CPUs"):
        round_trip_s(allowed[0], allowed[0])
    with pytest.raises(hwsim.HwsimError, match="two different CPUs"):
        round_trip_s(allowed[0], max(allowed) + 1000)
    if len(allowed) >= 2:
        with pytest.raises(hwsim.HwsimError, match="positive integer"):
            round_trip_s(allowed[0], allowed[1], trips=0)


def test_threads_close_compares_every_round_trip_with_the_shortest_of_all_runs():
    """A run is close when all its round trips stay within SPLIT_FACTOR x the shortest of every run; a run without
    round trips (one thread) is close; with nothing measured there is nothing to tell placements apart by."""
    short = 80e-9
    runs = [[short, 100e-9], [90e-9, SPLIT_FACTOR * short * 1.01], [], [None, 90e-9], [SPLIT_FACTOR * short] * 2]
    assert threads_close(runs) == [True, False, True, False, True]
    assert threads_close([[None, None], []]) == [True, True]
    # every run's threads apart (the shortest round trip already beyond one shared last-level cache): none is close
    far = 1.5 * SHARED_LLC_MAX_S
    assert threads_close([[far, far * 1.2], [far * 1.1, far], []]) == [False, False, True]
