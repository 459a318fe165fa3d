"""The command line: one-line errors with exit status 2, JSON output, listings."""
import json
import subprocess
import sys

import pytest

from hwsim.cli import main


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_zoo_lists_every_net(capsys):
    import nets

    rc, out, _ = run(["zoo", "--json"], capsys)
    assert rc == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == nets.names()
    assert all(r["source"] for r in rows)


def test_presets_lists_shipped_presets(capsys):
    import hwsim

    rc, out, _ = run(["presets", "--json"], capsys)
    assert rc == 0 and json.loads(out) == hwsim.preset_names()
    with pytest.warns(DeprecationWarning):
        rc, out, err = run(["presets", "xnor"], capsys)  # the FPGA target's old name: listed, with a note
    assert rc == 0 and out.split() == hwsim.preset_names("fpga") and "now named 'fpga'" in err


@pytest.mark.parametrize("argv,fragment", [
    (["run", "--net", "resnet81", "--hw", "cpu/cortex-a72"], "did you mean 'resnet18'"),
    (["run", "--net", "resnet18", "--hw", "cpu/cortex-a27"], "unknown preset 'cpu/cortex-a27'"),
    (["run", "--net", "resnet18", "--hw", "nowhere/file.yaml"], "no such preset file"),
    (["run", "--net", "resnet18", "--hw", "cpu/cortex-a72", "--input-shape", "1,3,a"], "--input-shape"),
    (["fit", "--net", "resnet20", "--hw", "imc/nope"], "unknown preset"),
])
def test_errors_are_one_line_with_exit_2(capsys, argv, fragment):
    rc, out, err = run(argv, capsys)
    assert rc == 2
    assert err.startswith("hwsim: error:") and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malformed_yaml_and_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: cpu\nclock_hz: [1\n")
    rc, _, err = run(["run", "--net", "resnet20", "--hw", str(bad)], capsys)
    assert rc == 2 and "malformed YAML" in err
    dup = tmp_path / "dup.yaml"
    dup.write_text("base: cpu/cortex-a72\ncores: 2\ncores: 4\n")
    rc, _, err = run(["run", "--net", "resnet20", "--hw", str(dup)], capsys)
    assert rc == 2 and "duplicate key 'cores'" in err


@pytest.mark.subprocess
def test_console_script_exit_code():
    r = subprocess.run([sys.executable, "-m", "hwsim.cli", "run", "--net", "nonet", "--hw", "cpu/cortex-a72"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown net 'nonet'" in r.stderr and "Traceback" not in r.stderr


def test_run_json_prints_totals_and_layers(capsys):
    rc, out, _ = run(["run", "--net", "resnet18", "--hw", "cpu/cortex-a72", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["network"] == "resnet18" and d["latency_s"] > 0 and d["macs"] == 1814073344
    assert len(d["layers"]) > 20 and {"name", "op", "macs", "cycles", "latency_s", "energy_j"} <= set(d["layers"][0])


def test_run_functional_on_imc_with_a_target_option(capsys):
    rc, out, err = run(["run", "--net", "resnet20", "--hw", "imc/isaac", "--functional", "--option", "mode=layer"],
                       capsys)
    assert rc == 0 and "resnet20 on" in out and "functional check vs torch fp32" in err


def test_unknown_target_option_is_a_clear_error(capsys):
    rc, _, err = run(["run", "--net", "resnet20", "--hw", "cpu/cortex-a72", "--option", "warp=9"], capsys)
    assert rc == 2 and "warp" in err


def test_fit_verdict_flips_between_shared_and_unshared_itnet(capsys):
    import hwsim
    import nets

    rc, out, _ = run(["fit", "--net", "itnet", "--hw", "imc/edge-small", "--json"], capsys)
    assert rc == 0 and json.loads(out)["fits"] is True
    assert hwsim.fit(nets.get("itnet", shared=False), "imc/edge-small").fits is False


def test_sweep_says_where_its_files_went_and_what_it_reused(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "s.yaml").write_text("nets: [tfc-w1a1]\nbase: cpu/cortex-m7\ngrid: {cores: [1, 2]}\n"
                                              "out: res/r.csv\n")
    monkeypatch.chdir(tmp_path)  # outputs go under the current directory, not beside the YAML file
    rc, out, err = run(["sweep", "conf/s.yaml", "--plot", "plots/p.png"], capsys)
    assert rc == 0 and "tfc-w1a1" in out
    assert f"results: {tmp_path / 'res' / 'r.csv'} (2 row(s) computed now, none reused)" in err
    assert f"plot: {tmp_path / 'plots' / 'p.png'}" in err and (tmp_path / "plots" / "p.png").is_file()
    rc, _, err = run(["sweep", "conf/s.yaml"], capsys)
    assert rc == 0 and "2 row(s) reused from a previous run" in err and "plot:" not in err
    assert not (tmp_path / "conf" / "res").exists()
    import hwsim.codesign.points as points  # the cpu cost model's source changes: its rows are stale

    real = points.cost_model_version
    monkeypatch.setattr(points, "cost_model_version", lambda t: real(t) + "-edited")
    rc, _, err = run(["sweep", "conf/s.yaml"], capsys)
    assert rc == 0 and "(2 row(s) computed now, none reused; 2 row(s) in the file from other settings, data, " \
        "hwsim version or cost model not used (stale rows are recomputed))" in err


def test_sweep_with_data_prints_accuracy(tmp_path, monkeypatch, capsys):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5))
    (tmp_path / "s.yaml").write_text("nets: [tfc-w1a1]\nbase: fpga/pynq-z1\ngrid: {clock_hz: [1e8, 2e8]}\n"
                                     "data: d.npz\n")
    rc, out, err = run(["sweep", "s.yaml"], capsys)
    header = out.splitlines()[0].split()
    assert rc == 0 and header[:3] == ["net", "clock_hz", "latency_s"], out
    assert {"accuracy", "top1_agreement", "rel_rms_error"} <= set(header)


@pytest.mark.subprocess
def test_version_flag():
    r = subprocess.run([sys.executable, "-m", "hwsim.cli", "--version"], capture_output=True, text=True)
    import hwsim

    assert r.returncode == 0 and r.stdout.strip() == f"hwsim {hwsim.__version__}" == "hwsim 0.2.0"
