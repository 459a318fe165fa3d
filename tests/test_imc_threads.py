"""The IMC target's caches under threads (hwsim.evaluate and sweeps may run seeds on a thread pool) and
hwsim.clear_caches()."""
from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import hwsim
from hwsim.imc import functional as imf


def _spec():
    return dataclasses.replace(hwsim.load_preset("imc/isaac"), conductance_sigma=0.02)


def test_programs_made_and_evicted_on_many_threads_at_once(monkeypatch):
    """Eight threads program, hit and evict crossbar programs concurrently (a cache budget of 16 of the 48 programs forces
    evictions): every thread gets the program a serial call gets, and no thread sees the cache change under it."""
    spec = _spec()
    rng = np.random.default_rng(0)
    mats = [rng.integers(-127, 128, (300, 40)).astype(np.int16) for _ in range(24)]  # [K, N], 3 row splits
    imf.clear_cache()
    serial = [imf._programmed(w, 0, w, spec, s, f"w{i}") for s in (0, 1) for i, w in enumerate(mats)]
    imf.clear_cache()
    monkeypatch.setattr(imf, "PCACHE_BYTES", 16 * max(p.nbytes for p in serial))
    jobs = [(s, i) for _ in range(4) for s in (0, 1) for i in range(len(mats))]

    def one(job):
        s, i = job
        return job, imf._programmed(mats[i], 0, mats[i], spec, s, f"w{i}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows up at once
    try:
        with ThreadPoolExecutor(8) as ex:
            got = list(ex.map(one, jobs))
    finally:
        sys.setswitchinterval(interval)
    for (s, i), prog in got:
        ref = serial[s * len(mats) + i]
        for a, b in zip(prog.splits, ref.splits):
            np.testing.assert_array_equal(a.cells, b.cells)
    assert len(imf._PCACHE) <= 16


def test_clear_caches_forgets_programs_and_quantized_weights():
    spec = _spec()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    first = hwsim.simulate("resnet20", spec, x, seed=3).outputs
    assert len(imf._PCACHE) > 0 and len(imf._WEIGHTS) > 0
    hwsim.clear_caches()
    assert len(imf._PCACHE) == 0 and len(imf._WEIGHTS) == 0
    np.testing.assert_array_equal(hwsim.simulate("resnet20", spec, x, seed=3).outputs, first)
