"""Golden regression snapshots: latency, energy, fits-on-chip and a summary of the functional outputs of a few
nets on every shipped preset that applies, compared with ``tests/golden/golden.json``.

A failure here means a cost formula, a preset constant or a kernel's numerics changed. If the change is deliberate,
regenerate the snapshot on purpose and review the diff::

    python tests/golden/regenerate.py && git diff tests/golden/golden.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN_DIR))
import regenerate as golden  # noqa: E402  (tests/golden/regenerate.py: the generator and the comparison)

sys.path.remove(str(GOLDEN_DIR))

SNAPSHOT = json.loads(golden.GOLDEN.read_text())
SLOW_NETS = ("mobilenetv2",)  # 224 x 224 inputs: seconds per preset


def _cases() -> list:
    """Every entry; the quick run takes a cover: each preset with one net and each net on one preset (--slow: all)."""
    params, nets_seen, presets_seen = [], set(), set()
    for case in sorted(SNAPSHOT["entries"]):
        net, preset = case.split(" @ ")
        quick = net not in SLOW_NETS and (net not in nets_seen or preset not in presets_seen)
        if quick:
            nets_seen.add(net)
            presets_seen.add(preset)
        params.append(pytest.param(case, id=case.replace(" @ ", "@"), marks=[] if quick else [pytest.mark.slow]))
    return params


@pytest.fixture
def shipped_presets_only(monkeypatch, tmp_path):
    """A user's calibrated presets (``hwsim calibrate`` writes ``cpu/host``) must not move the numbers."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def test_the_snapshot_covers_every_shipped_preset_that_applies(shipped_presets_only):
    assert sorted(SNAPSHOT["entries"]) == sorted(f"{n} @ {p}" for n, p in golden.cases()), \
        "a preset or net was added or removed: regenerate tests/golden/golden.json on purpose"
    assert SNAPSHOT["format"] == golden.FORMAT
    assert SNAPSHOT["cost_rtol"] == golden.COST_RTOL and SNAPSHOT["output_rtol"] == golden.OUTPUT_RTOL
    refused = [c for c, e in SNAPSHOT["entries"].items() if "refused" in e]
    assert not refused, f"the snapshot should only hold nets each target runs: {refused}"


@pytest.mark.parametrize("case", _cases())
def test_golden(case, shipped_presets_only):
    net, preset = case.split(" @ ")
    diffs = golden.compare(SNAPSHOT["entries"][case], golden.entry(net, preset))
    assert not diffs, f"{case} moved from tests/golden/golden.json:\n  " + "\n  ".join(diffs)


# ----------------------------------------------------------------------------- the comparison itself
def _entry(**kw):
    out = {"shape": [1, 3], "argmax": [2], "margin": 1.0, "quantiles": [0.0, 0.5, 1.0, 1.5, 2.0],
           "projections": [0.1, -0.2, 0.3], "scale": 2.0}
    e = {"latency_s": 1e-3, "energy_j": 2e-3, "fits_on_chip": True, "outputs": [out]}
    e.update(kw)
    return e


def test_compare_accepts_rounding_noise_and_refuses_changes():
    e = _entry()
    assert golden.compare(e, _entry()) == []
    assert golden.compare(e, _entry(latency_s=1e-3 * (1 + 1e-12))) == []
    assert golden.compare(e, _entry(latency_s=1e-3 * (1 + 1e-8)))[0].startswith("latency_s:")
    assert golden.compare(e, _entry(fits_on_chip=False)) == ["fits_on_chip: False, expected True"]
    noisy = json.loads(json.dumps(e))
    noisy["outputs"][0]["projections"][0] += 1e-6 * 2.0  # fp32 summation order
    assert golden.compare(e, noisy) == []
    moved = json.loads(json.dumps(e))
    moved["outputs"][0]["quantiles"][2] += 1e-3
    assert golden.compare(e, moved)[0].startswith("output 0: quantiles")
    flipped = json.loads(json.dumps(e))
    flipped["outputs"][0]["argmax"] = [1]
    assert golden.compare(e, flipped)[0].startswith("output 0: argmax")
    assert golden.compare(e, {k: v for k, v in e.items() if k != "energy_j"}) == ["energy_j: missing"]
