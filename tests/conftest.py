"""Suite-wide settings: the quick default run, one torch thread, hypothesis profiles.

Runs (markers registered in pyproject.toml):

- ``python -m pytest`` — the quick run: tests marked ``slow`` are left out (the summary says how many). It stays
  within ~2 minutes of CPU on a quiet 2-core machine; a test over ~5 s, or one of many parametrizations of the
  same check beyond a representative few, is marked ``slow``;
- ``python -m pytest --slow --nbmake tests notebooks`` — the full run (the README's command, run by CI);
- ``-m "not subprocess"`` also leaves out the tests that start fresh Python processes; ``-m slow`` (or any
  ``-m`` expression naming ``slow``) and a test named by its node id (``file.py::test``) run whatever they select.

One torch thread, so tests behave the same on a loaded 2-core machine (numbers are never timed in tests;
benchmarks set their own threads). Matplotlib draws with Agg (no display).

Hypothesis profiles (``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE=NAME``); none has a deadline or the
too-slow health check, since both time the machine, not the code. A test's own ``@settings(max_examples=...)``
wins over the profile's:

- ``dev`` (default): random examples, remembered in ``.hypothesis/`` so a failure replays first;
- ``ci``: derandomized (the same examples on every run) and no example database: reproducible CI runs
  (``.ci/run`` sets it);
- ``thorough``: 10x the examples of tests that do not set their own count, for a hunt before a release.
"""
from __future__ import annotations

import copy
import gc
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

os.environ["MPLBACKEND"] = "Agg"  # read when matplotlib is first imported: no import here
if "matplotlib" in sys.modules:  # a plugin imported it already
    sys.modules["matplotlib"].use("Agg")
torch.set_num_threads(1)

_UNTIMED = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("dev", **_UNTIMED)
settings.register_profile("ci", derandomize=True, database=None, **_UNTIMED)
settings.register_profile("thorough", max_examples=1000, **_UNTIMED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

FULL_RUN = "python -m pytest --slow --nbmake tests notebooks"
_LEFT_OUT = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help=f"run the tests marked slow too (left out by default); the full run is `{FULL_RUN}`")


def _named_by_id(config: pytest.Config) -> list[tuple[Path, str]]:
    """(file, rest of the node id) of each command-line argument that names tests by node id (``file::test``)."""
    named = []
    for arg in config.args:
        if "::" in arg:
            file, rest = arg.split("::", 1)
            named.append(((config.invocation_params.dir / file).resolve(), rest))
    return named


def _runs_slow(config: pytest.Config) -> bool:
    return config.getoption("slow") or "slow" in (config.getoption("markexpr") or "")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Garbage collection cost the quick run ~12 % of its CPU (most in full collections rescanning every live
    object). Move what import and collection built (torch, the test modules, their parameters) out of the
    collector's sight (it never frees any of it), and collect the young generation every 10 000 allocations
    instead of 700: the collector's CPU halves again; cyclic garbage lives a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The quick run: leave out the slow tests unless --slow, a -m naming slow, or the test's node id asks."""
    if _runs_slow(config):
        return
    named = _named_by_id(config)
    keep, left_out = [], []
    for item in items:
        asked = any(item.path == f and item.nodeid.partition("::")[2].startswith(rest) for f, rest in named)
        (left_out if item.get_closest_marker("slow") and not asked else keep).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep
    config.stash[_LEFT_OUT] = len(left_out)


# ----------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="session")
def _digits_cnn_once():
    from hwsim.codesign.digits import load_split, pretrained_cnn

    model = pretrained_cnn(width=8, epochs=10, seed=0)  # seeded and on one thread: the same weights every run
    _, _, xte, yte = load_split((0, 1, 2, 3, 4), seed=0)
    return model, xte.numpy(), yte.numpy()


@pytest.fixture(scope="module")
def digits_cnn(_digits_cnn_once):
    """(model, x, y): a DigitsCNN trained on digits 0-4 (``pretrained_cnn(width=8, epochs=10, seed=0)``, trained
    once per session, about 2 s) and its held-out test split (270 images, numpy); each module gets its own copy."""
    model, x, y = _digits_cnn_once
    return copy.deepcopy(model), x.copy(), y.copy()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    n = config.stash.get(_LEFT_OUT, 0)
    if n:
        terminalreporter.write_line(f"quick run: {n} slow tests left out; add --slow to run them "
                                    f"(the full run, as CI: {FULL_RUN})")
