"""hwsim.sweep: grids, rows, errors, executors (serial, processes, Dask), resumable results files.

A small test target (``fake``) registered here makes these tests independent of the real
simulators: latency = MACs / rate, energy = MACs x pJ/MAC, exact and checkable by hand. Its
module is importable by worker processes (``import test_sweep``).
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import hwsim
from hwsim.codesign.store import ResultsStore
from hwsim.errors import HwsimError, SpecError
from hwsim.report import LayerReport, Report, Result
from hwsim.specs import check_positive, spec_class
from mapping.analysis import node_macs

sweep_mod = importlib.import_module("hwsim.codesign.sweep")  # the module: hwsim.codesign.sweep is the function
HERE = Path(__file__).parent


# ----------------------------------------------------------------------------- the test target
class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@spec_class("fake")
@dataclasses.dataclass(frozen=True, slots=True)
class FakeSpec:
    """Latency = MACs / macs_per_s (x2 in SLOW mode); energy = MACs x energy_pj_per_mac."""

    macs_per_s: float = 1e9
    energy_pj_per_mac: float = 1.0
    delay_s: float = 0.0  # wall time each simulation sleeps (to kill a sweep mid-run)
    fail: bool = False  # simulate() raises (a failing point)
    mode: Mode = Mode.FAST

    def __post_init__(self):
        check_positive(self, "macs_per_s", "energy_pj_per_mac")
        check_positive(self, "delay_s", allow_zero=True)


def _fake_simulate(graph, spec, x, *, seed=0):
    if spec.fail:
        raise RuntimeError("fake target asked to fail")
    time.sleep(spec.delay_s)
    rate = spec.macs_per_s / (2 if spec.mode is Mode.SLOW else 1)
    layers = tuple(LayerReport(name=n.name, op=n.op.value, macs=node_macs(n), latency_s=node_macs(n) / rate,
                               energy_j=node_macs(n) * spec.energy_pj_per_mac * 1e-12,
                               energy_breakdown={"mac": node_macs(n) * spec.energy_pj_per_mac * 1e-12})
                   for n in graph.nodes)
    rep = Report(target="fake", network=graph.name, layers=layers, latency_s=sum(lr.latency_s for lr in layers),
                 energy_j=sum(lr.energy_j for lr in layers))
    return Result(None if x is None else np.zeros(1), rep)


_mod = types.ModuleType("hwsim.fake")
_mod.simulate = _fake_simulate
_mod.SPEC = FakeSpec  # the target contract (hwsim.target.Target)
_mod.cost_model_version = lambda: "fake-1"
sys.modules["hwsim.fake"] = _mod


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


TINY_SHAPE = (1, 1, 8, 8)
TINY_MACS = 4 * 9 * 64 + 256 * 10


# ----------------------------------------------------------------------------- grids and rows
def test_grid_rows_match_hand_computed_costs():
    df = hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [1e6, 2e6], "energy_pj_per_mac": [1, 3]}),
                     input_shape=TINY_SHAPE)
    assert len(df) == 4 and (df["error"] == "").all()
    assert list(df["macs_per_s"]) == [1e6, 1e6, 2e6, 2e6]  # row-major: last field fastest
    assert list(df["energy_pj_per_mac"]) == [1.0, 3.0, 1.0, 3.0]
    np.testing.assert_allclose(df["latency_s"], TINY_MACS / df["macs_per_s"], rtol=1e-12)
    np.testing.assert_allclose(df["energy_j"], TINY_MACS * df["energy_pj_per_mac"] * 1e-12, rtol=1e-12)
    assert (df["macs"] == TINY_MACS).all() and (df["target"] == "fake").all()
    assert (df["eval_s"] >= 0).all() and df["key"].is_unique
    assert list(df.columns[-3:]) == ["eval_s", "error", "key"]


def test_enum_field_from_plain_value_and_list_of_specs():
    df = hwsim.sweep(tiny_net(), (FakeSpec(), {"mode": ["fast", "slow"]}), input_shape=TINY_SHAPE)
    assert list(df["mode"]) == ["fast", "slow"]
    assert df["latency_s"].iloc[1] == pytest.approx(2 * df["latency_s"].iloc[0])
    df2 = hwsim.sweep(tiny_net(), [FakeSpec(), FakeSpec(macs_per_s=2e9)], input_shape=TINY_SHAPE)
    assert list(df2["macs_per_s"]) == [1e9, 2e9]


def test_unknown_field_names_it_and_the_valid_ones():
    with pytest.raises(SpecError) as e:
        hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_sec": [1e6]}), input_shape=TINY_SHAPE)
    msg = str(e.value)
    assert "macs_per_sec" in msg and "macs_per_s" in msg and "energy_pj_per_mac" in msg


@pytest.mark.parametrize("grid", [{}, {"macs_per_s": []}])
def test_empty_grid_is_an_error(grid):
    with pytest.raises(SpecError, match="empty grid"):
        hwsim.sweep(tiny_net(), (FakeSpec(), grid), input_shape=TINY_SHAPE)


def test_invalid_and_failing_points_become_error_rows():
    df = hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [-1.0, 1e6], "fail": [False, True]}),
                     input_shape=TINY_SHAPE)
    assert len(df) == 4
    err = dict(zip(zip(df["macs_per_s"], df["fail"]), df["error"]))
    assert "macs_per_s must be > 0" in err[(-1.0, False)] and "SpecError" in err[(-1.0, False)]
    assert "fake target asked to fail" in err[(1e6, True)]
    assert err[(1e6, False)] == ""
    ok = df[df["error"] == ""]
    assert ok["latency_s"].iloc[0] == pytest.approx(TINY_MACS / 1e6)


def test_metrics_selection_and_callables():
    df = hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE,
                     metrics={"lat_ms": lambda r: r.latency_s * 1e3, "edp": "edp_js"})
    assert df["lat_ms"].iloc[0] == pytest.approx(TINY_MACS / 1e9 * 1e3)
    assert "energy_j" not in df.columns and "edp" in df.columns
    with pytest.raises(HwsimError, match="'no_such_metric' is not a figure of any report; e.g. latency_s"):
        hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE, metrics=["no_such_metric"])


def test_each_net_traced_once_per_process(monkeypatch):
    trace_mod = importlib.import_module("mapping.trace")
    sweep_mod.clear_graph_cache()
    before = sweep_mod._TRACES["count"]
    calls = []
    real = trace_mod.trace
    monkeypatch.setattr(trace_mod, "trace", lambda *a, **k: calls.append(1) or real(*a, **k))
    df = hwsim.sweep([("resnet20", {"base_width": 4}), ("resnet20", {"base_width": 8})],
                     (FakeSpec(), {"macs_per_s": [1e6, 2e6, 3e6]}), workers=1)
    assert len(df) == 6 and (df["error"] == "").all()
    assert len(calls) == 2 and sweep_mod._TRACES["count"] - before == 2
    assert set(df["net"]) == {"resnet20(base_width=4)", "resnet20(base_width=8)"}
    m4, m8 = (df[df["net"] == f"resnet20(base_width={w})"]["macs"].iloc[0] for w in (4, 8))
    assert 3.5 < m8 / m4 < 4.5  # MACs scale with width squared


def test_report_figures_named_like_spec_fields_get_a_prefix():
    df = hwsim.sweep("tfc-w1a1", ("fpga/pynq-z1", {"clock_hz": [1e8, 2e8]}), target_options={"target_fps": 1000.0})
    assert (df["error"] == "").all()
    spec = hwsim.load_preset("fpga/pynq-z1")
    assert (df["luts"] == spec.luts).all() and (df["bram18"] == spec.bram18).all()  # the device
    rep = hwsim.simulate("tfc-w1a1", spec, target_fps=1000.0).report
    assert df["report_luts"].iloc[0] == rep.luts and df["report_bram18"].iloc[0] == rep.bram18  # the design
    assert df["latency_s"].iloc[0] == pytest.approx(2 * df["latency_s"].iloc[1], rel=0.01)  # half the clock


def test_functional_runs_with_an_input():
    df = hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE, functional=True)
    assert df["error"].iloc[0] == ""


def test_bad_nets_are_clear_errors():
    with pytest.raises(HwsimError, match="resnet-18|resnet18"):
        hwsim.sweep("resnet-18", FakeSpec())
    with pytest.raises(HwsimError, match="no keyword"):
        hwsim.sweep(("resnet20", {"widht": 3}), FakeSpec())
    with pytest.raises(HwsimError, match="no nets"):
        hwsim.sweep([], FakeSpec())


# ----------------------------------------------------------------------------- executors
GRID = (FakeSpec(), {"macs_per_s": [1e6, 2e6, 4e6], "energy_pj_per_mac": [1.0, 2.0], "fail": [False, True]})


def _cmp(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = [c for c in a.columns if c != "eval_s"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


@pytest.mark.subprocess
def test_thread_and_process_executors_give_the_serial_frame():
    serial = hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, workers=1)
    with ThreadPoolExecutor(2) as ex:
        _cmp(serial, hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, executor=ex, chunksize=2))
    # the default local pool (forkserver workers import this module to unpickle the test spec)
    _cmp(serial, hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, workers=2, chunksize=3))


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_executor_gives_the_local_frame(dask_client, tmp_path):
    local = hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, workers=1)
    dask = hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, executor=dask_client.get_executor(), chunksize=2)
    _cmp(local, dask)
    with_file = hwsim.sweep(tiny_net(), GRID, input_shape=TINY_SHAPE, executor=dask_client.get_executor(),
                            out=tmp_path / "d.csv")
    assert len(with_file) == len(local) and set(with_file["key"]) == set(local["key"])


# ----------------------------------------------------------------------------- results files
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_results_file_resume_skips_finished_points(tmp_path, suffix):
    out = tmp_path / f"res{suffix}"
    first = hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [1e6, 2e6]}), input_shape=TINY_SHAPE, out=out)
    assert out.exists() and not Path(str(out) + ".journal.csv").exists()
    calls = []
    orig = sweep_mod.evaluate_chunk
    try:
        sweep_mod.evaluate_chunk = lambda net, items, s: calls.extend(items) or orig(net, items, s)
        both = hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [1e6, 2e6, 3e6]}), input_shape=TINY_SHAPE,
                           out=out)
    finally:
        sweep_mod.evaluate_chunk = orig
    assert len(calls) == 1  # only the new point ran
    assert list(both["macs_per_s"]) == [1e6, 2e6, 3e6]
    _cmp(first, both.iloc[:2])
    assert len(ResultsStore(out).load()) == 3


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    out = tmp_path / "r.csv"
    hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [1e6, 2e6]}), input_shape=TINY_SHAPE, out=out)
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a write cut in half
    assert len(ResultsStore(out).load()) == 1
    df = hwsim.sweep(tiny_net(), (FakeSpec(), {"macs_per_s": [1e6, 2e6]}), input_shape=TINY_SHAPE, out=out)
    assert len(df) == 2 and (df["error"] == "").all()
    assert out.read_text().count("\n") == 3  # header + 2 rows, no fragment left


def test_bad_results_file_names_are_errors(tmp_path):
    with pytest.raises(HwsimError, match=".csv or .parquet"):
        hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE, out=tmp_path / "r.txt")
    (tmp_path / "afile").write_text("")
    with pytest.raises(HwsimError, match="afile is a file, not a folder"):  # checked before any point runs
        hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE, out=tmp_path / "afile" / "r.csv")
    # a missing folder is created (the same rule as every other output path)
    df = hwsim.sweep(tiny_net(), FakeSpec(), input_shape=TINY_SHAPE, out=tmp_path / "nodir" / "r.csv")
    assert (tmp_path / "nodir" / "r.csv").is_file() and df.attrs["computed"] == 1


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import test_sweep as t, hwsim
if __name__ == "__main__":  # worker processes import the main module
    hwsim.sweep(t.tiny_net(), (t.FakeSpec(delay_s=0.02), {{"macs_per_s": [float(i + 1) for i in range(40)],
                "fail": [False, True]}}), input_shape=t.TINY_SHAPE, out={out!r}, workers={workers}, progress=False)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("suffix, workers", [(".csv", 1), pytest.param(".parquet", 2, marks=pytest.mark.slow)])
def test_sigkill_mid_sweep_then_rerun_has_every_point_exactly_once(tmp_path, suffix, workers):
    out = tmp_path / f"killed{suffix}"
    log = Path(str(out) + ".journal.csv") if suffix == ".parquet" else out  # what grows while it runs
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILL_SCRIPT.format(tests=str(HERE), out=str(out), workers=workers)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(HERE.parent), start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # wait until some, not all, points are on file
        if log.exists() and log.read_text().count("\n") > 8:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
    assert proc.wait() == -signal.SIGKILL  # killed, not finished or crashed
    n_before = len(ResultsStore(out).load())
    assert 0 < n_before < 80
    df = hwsim.sweep(tiny_net(), (FakeSpec(delay_s=0.02), {"macs_per_s": [float(i + 1) for i in range(40)],
                                                          "fail": [False, True]}), input_shape=TINY_SHAPE, out=out)
    assert len(df) == 80
    stored = ResultsStore(out).load()
    raw = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(raw) == 80 and raw["key"].is_unique and len(stored) == 80
    assert not (suffix == ".parquet" and log.exists())  # the journal was merged and removed
    assert (df["error"] == "").sum() == 40 and df["error"].str.contains("asked to fail").sum() == 40
