"""CPU target outputs (fp32 Numba kernels, BN folded) against torch, and the host calibration."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import hwsim
import nets
from hwsim.cpu import CPUSpec
from hwsim.cpu.calibrate import calibrate


def _torch_out(model, x):
    with torch.inference_mode():
        y = model(torch.from_numpy(x))
    return [t.numpy() for t in y] if isinstance(y, (tuple, list)) else [y.numpy()]


def _check(outs, refs):
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
        assert np.max(np.abs(o - r)) <= 1e-4 * np.max(np.abs(r)), np.max(np.abs(o - r))


@pytest.mark.parametrize("name, shape", [("resnet20", (2, 3, 32, 32)), ("mobilenetv2", (1, 3, 64, 64))])
def test_outputs_match_torch(name, shape):
    model = nets.get(name)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    res = hwsim.simulate(model, "cpu/cortex-a72", x=x)
    _check([res.outputs], _torch_out(model, x))
    assert res.report.batch == shape[0] and res.report.latency_s > 0


def test_multi_exit_outputs_match_torch_with_and_without_folding():
    model = nets.get("itnet")
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    refs = _torch_out(model, x)
    for fold in (True, False):
        res = hwsim.simulate(model, "cpu/cortex-a72", x=x, fold_bn=fold)
        assert isinstance(res.outputs, list)
        _check(res.outputs, refs)
        assert len(res.report.exits) == len(refs)


def test_cost_only_when_no_input():
    res = hwsim.simulate("resnet20", "cpu/cortex-a53")
    assert res.outputs is None and res.report.latency_s > 0


@pytest.mark.slow
@pytest.mark.subprocess
def test_quick_calibration_writes_a_loadable_host_preset(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "host.yaml"
    spec = calibrate(out_path=out, quick=True)
    assert torch.get_num_threads() == threads  # restored
    assert isinstance(spec, CPUSpec) and spec.name == "cpu/host"
    text = out.read_text()
    assert text.startswith("# cpu/host: measured by `hwsim calibrate --quick`")
    loaded = hwsim.load_preset(out)
    assert loaded == spec
    # measured figures: positive (their size depends on the machine and its load, so no bounds here)
    assert spec.dram_bw_bytes_s > 0 and spec.peak_flops_per_core > 0 and spec.layer_overhead_s > 0


def test_calibration_keeps_each_figures_median_over_rounds():
    """Rounds of single-thread measurements merge figure by figure: scalars and each layer's time take their
    median, the effective L3 (one of the probed sizes) its lower median; bad round counts are refused."""
    import importlib

    cal = importlib.import_module("hwsim.cpu.calibrate")
    rounds = [{"conv_flops": 2.0e11, "l3": 8 << 20, "layers": [1.0, 5.0]},
              {"conv_flops": 2.6e11, "l3": 16 << 20, "layers": [3.0, 4.0]},
              {"conv_flops": 2.4e11, "l3": 16 << 20, "layers": [2.0, 9.0]},
              {"conv_flops": 2.5e11, "l3": 8 << 20, "layers": [2.5, 6.0]}]
    merged = cal._median_rounds(rounds)
    assert merged == {"conv_flops": 2.45e11, "l3": 8 << 20, "layers": [2.25, 5.5]}
    for bad in (0, -1, 2.0, True):
        with pytest.raises(hwsim.HwsimError, match="rounds"):
            calibrate(out_path=None, rounds=bad)


@pytest.mark.slow
@pytest.mark.subprocess
def test_all_thread_layer_timings_come_from_fresh_processes():
    """The full calibration times its all-thread layers and chains in PARALLEL_PROCESSES child processes and keeps
    each one's median over them: one positive time per synthetic layer of the asked kinds and per chain."""
    import importlib

    cal = importlib.import_module("hwsim.cpu.calibrate")  # the module (hwsim.cpu re-exports the function)
    times, chain_times, seen = cal._parallel_layer_times(("depthwise", "linear"), False, 2)
    assert len(times) == len(cal.SYNTHETIC_LAYERS["depthwise"]) + len(cal.SYNTHETIC_LAYERS["linear"])
    assert all(t > 0 for t in times)  # measured: positive, not bounded (the machine may be loaded)
    assert len(chain_times) == len(cal._chains()) and all(t > 0 for t in chain_times)
    assert seen["processes"] >= 1 and seen["processes"] + seen["set_aside"] >= cal.PARALLEL_PROCESSES
    if len(os.sched_getaffinity(0)) > 1:  # two CPUs: the processes measured round trips before and after
        assert 0 < len(seen["round_trips_s"]) <= 2 * (seen["processes"] + seen["set_aside"])
        assert all(t > 0 for t in seen["round_trips_s"])


def test_processes_whose_threads_ran_apart_are_set_aside():
    """A process whose round trip (before or after its layers) exceeds SPLIT_FACTOR x the shortest any process saw
    ran with its threads split across the machine; unmeasured round trips keep every process."""
    import importlib

    cal = importlib.import_module("hwsim.cpu.calibrate")
    near = {"times": [1.0], "round_trip_s": [90e-9, 110e-9]}
    apart = {"times": [2.0], "round_trip_s": [95e-9, 400e-9]}
    edge = {"times": [3.0], "round_trip_s": [180e-9, 170e-9]}  # exactly within 2 x 90 ns
    assert cal._same_placement([near, apart, edge]) == [near, edge]
    unmeasured = [{"times": [1.0], "round_trip_s": [None, None]}, {"times": [2.0], "round_trip_s": [None, None]}]
    assert cal._same_placement(unmeasured) == unmeasured


def _glibc() -> bool:
    import os

    try:
        return "glibc" in os.confstr("CS_GNU_LIBC_VERSION").lower()
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.subprocess
@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt and mallinfo2 only")
def test_calibration_process_keeps_freed_memory():
    """Calibration measures the allocator's steady state: after keep_freed_memory() an 8 MiB buffer comes from the
    heap and stays there when freed (glibc's defaults map it with mmap and hand it back to the OS on free)."""
    import subprocess
    import sys

    code = """
import ctypes, sys
from hwsim.cpu.calibrate import keep_freed_memory
class MI(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = MI
libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "keep":
    assert keep_freed_memory()
p = libc.malloc(8 << 20); mapped = libc.mallinfo2().hblkhd; libc.free(p)
print(mapped >= 8 << 20, libc.mallinfo2().fordblks >= 8 << 20)
"""
    def run(mode):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert run("default")[0] == "True"  # mapped on its own (munmap returns it to the OS on free)
    assert run("keep") == ["False", "True"]  # carved from the heap, which keeps it free after the call


def test_calibration_warns_when_no_process_had_its_threads_close(monkeypatch):
    """When every all-thread process ran with its threads apart, the parallel fit still runs on them all, and the
    calibration says so: a warning and a WARNING in the preset header's round-trip line."""
    import importlib

    from mapping.trace import trace

    cal = importlib.import_module("hwsim.cpu.calibrate")
    kinds = ("conv", "im2col", "pointwise", "depthwise", "grouped")
    measured = [cal._Measured(k, a, s, trace(cal._module(k, a).eval(), s), 1e-4)
                for k, a, s in cal._synthetic(True, kinds)]
    chain_graphs = [trace(m.eval(), s) for m, s in cal._chains()]
    seen = {"round_trips_s": [400e-9, 420e-9, 410e-9, 430e-9], "processes": 2, "set_aside": 0, "none_close": True}
    monkeypatch.setattr(cal, "_parallel_layer_times",
                        lambda kinds, quick, n, **kw: ([6e-5] * len(measured), [5e-4] * len(chain_graphs), seen))
    monkeypatch.setattr(cal, "_ncpus", lambda: 2)
    spec = CPUSpec(cores=2, layer_overhead_s=3e-6)
    with pytest.warns(UserWarning, match="no all-thread process ran with its threads sharing a last-level cache"):
        fitted, notes = cal._calibrate_parallel(spec, True, measured, chain_graphs)
    assert any("round trip" in n and "WARNING" in n for n in notes)
    assert fitted.parallel_overhead_s >= 0 and 0.05 <= fitted.parallel_eff <= 1.0
