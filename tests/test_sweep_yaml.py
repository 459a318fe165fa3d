"""sweep_from_yaml (what ``hwsim sweep FILE --plot PNG`` runs): file format, results file, plot, errors."""
from __future__ import annotations

import pytest

import hwsim
from hwsim.codesign.sweep import sweep_from_yaml
from hwsim.errors import HwsimError

YAML = """
nets: [resnet20, {name: resnet20, base_width: 8}]
base: cpu/cortex-a72
grid:
  clock_hz: [1.5e9, 1.8e9]
  cores: [1, 2]
out: results.csv
plot: front.png
"""


def test_yaml_sweep_writes_results_and_plot(tmp_path, monkeypatch):
    f = tmp_path / "conf" / "sweep.yaml"
    f.parent.mkdir()
    f.write_text(YAML)
    monkeypatch.chdir(tmp_path)  # outputs are relative to the current directory, not to the YAML file
    df = sweep_from_yaml(f)
    assert len(df) == 8 and (df["error"] == "").all()
    assert set(df["net"]) == {"resnet20", "resnet20(base_width=8)"}
    assert (tmp_path / "results.csv").exists() and (tmp_path / "front.png").stat().st_size > 1000
    assert not (tmp_path / "conf" / "results.csv").exists()
    assert df.attrs["results_file"] == str(tmp_path / "results.csv") and df.attrs["plot"] == str(tmp_path / "front.png")
    assert (df.attrs["reused"], df.attrs["computed"]) == (0, 8)
    # the same figures as a direct simulation of one point
    row = df[(df["net"] == "resnet20") & (df["clock_hz"] == 1.8e9) & (df["cores"] == 1)].iloc[0]
    import dataclasses

    spec = dataclasses.replace(hwsim.load_preset("cpu/cortex-a72"), clock_hz=1.8e9, cores=1)
    assert row["latency_s"] == pytest.approx(hwsim.simulate("resnet20", spec).report.latency_s, rel=1e-12)
    again = sweep_from_yaml(f, plot=tmp_path / "other.png")  # resumed: nothing re-run, same rows
    assert list(again["key"]) == list(df["key"]) and (tmp_path / "other.png").exists()
    assert (again.attrs["reused"], again.attrs["computed"]) == (8, 0)


@pytest.mark.parametrize("text, match", [
    ("nets: [resnet20]\nbase: cpu/cortex-m7\ngrid: {clock_hz: [1e8]}\ngird: 1\n", "unknown key"),
    ("nets: [resnet20]\nbase: cpu/cortex-m7\nbase: cpu/cortex-m4\ngrid: {clock_hz: [1e8]}\n", "duplicate key"),
    ("nets: [resnet20]\ngrid: {clock_hz: [1e8]}\n", "needs a 'base:'"),
    ("nets: [resnet20]\nbase: cpu/cortex-m7\ngrid: {}\n", "empty grid"),
    ("nets: [resnet20]\nbase: cpu/cortex-m7\ngrid: {clockhz: [1e8]}\n", "clock_hz"),
    ("nets: [resnet20]\nbase: cpu/cortex-m7\ngrid: {clock_hz: [1e8]}\ndask: tcp://127.0.0.1:9\ndask_timeout_s: 1\n", "cannot reach"),
    ("nets: [resnet20\n", "malformed YAML"),
    ("nets: [resnet20\nbase: imc/isaac\n", r"malformed YAML \(line 2, column 5\): expected ',' or ']'"),
])
def test_yaml_errors_are_clear(tmp_path, text, match, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(HwsimError, match=match):
        sweep_from_yaml(f)
    assert not (tmp_path / "results.csv").exists()
