"""Regenerate ``tests/golden/golden.json``: the regression snapshot of hwsim's cost models and functional outputs.

    python tests/golden/regenerate.py            # rewrite golden.json (then review `git diff tests/golden`)
    python tests/golden/regenerate.py --check    # compare only (what tests/test_golden.py does), exit 1 on a change

Run it *on purpose* only: after a deliberate change of a cost formula, a preset constant or a kernel's numerics, and
say in the commit why the numbers moved. For a few nets x every shipped preset that applies, it records latency,
energy, fits-on-chip (plus a few target-specific figures) and a summary of the functional outputs on a fixed input.

Outputs are summarised, not hashed bit for bit, so that a different BLAS / thread count / summation order (fp32
rounding) does not count as a regression while any real change does: the shape, the arg-max of each sample,
five quantiles and three fixed random projections of the output (each compared with a relative tolerance of
OUTPUT_RTOL scaled to the output's magnitude). Costs are compared with a relative tolerance of COST_RTOL.
Shipped presets only: a user's calibrated ``cpu/host`` preset (``~/.config/hwsim/presets``) is ignored.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"
if str(HERE.parents[1]) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parents[1]))

COST_RTOL = 1e-9
OUTPUT_RTOL = 1e-4  # of the output's largest magnitude: fp32 summation-order noise is ~1e-6 of it
FORMAT = 1

# net -> the preset folders it is simulated on (every shipped preset in them)
NETS = {
    "resnet20": ("cpu", "imc"),
    "mobilenetv2": ("cpu", "imc"),
    "itnet": ("cpu", "imc"),
    "tfc-w1a1": ("cpu", "fpga"),
}
# figures beyond latency / energy / fits_on_chip, by report field (recorded when the report has them)
EXTRA = ("onchip_weight_bytes", "peak_activation_bytes", "crossbars_needed", "crossbars_used", "dram_bytes",
         "adc_conversions", "fps", "luts", "bram18", "ii_cycles")


def _input(net: str) -> np.ndarray:
    import nets

    shape = (1, *nets.info(net).input_shape[1:])
    rng = np.random.default_rng(20240601)
    x = rng.standard_normal(shape).astype(np.float32)
    return x


def summarize(out) -> dict:
    """Shape, per-sample arg-max, quantiles and fixed random projections of one output array."""
    a = np.asarray(out, dtype=np.float64)
    flat = a.reshape(-1)
    rng = np.random.default_rng(7)
    proj = rng.standard_normal((3, flat.size)) / math.sqrt(flat.size)
    rows = a.reshape(a.shape[0], -1)
    top2 = np.sort(rows, axis=1)[:, -2:] if rows.shape[1] > 1 else np.zeros((rows.shape[0], 2))
    return {
        "shape": list(a.shape),
        "argmax": [int(i) for i in rows.argmax(axis=1)],
        "margin": float((top2[:, 1] - top2[:, 0]).min()),  # arg-max is compared only where it is not a near-tie
        "quantiles": [float(q) for q in np.quantile(flat, [0.0, 0.25, 0.5, 0.75, 1.0])],
        "projections": [float(p) for p in proj @ flat],
        "scale": float(np.abs(flat).max()),
    }


def entry(net: str, preset: str) -> dict:
    import hwsim

    try:
        res = hwsim.simulate(net, preset, x=_input(net))
    except hwsim.HwsimError as e:  # a net the target refuses: the refusal is part of the snapshot
        return {"refused": type(e).__name__}
    rep = res.report
    d = {"latency_s": float(rep.latency_s), "energy_j": float(rep.energy_j), "fits_on_chip": bool(rep.fits_on_chip)}
    for f in EXTRA:
        v = getattr(rep, f, None)
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            d[f] = float(v) if isinstance(v, (float, np.floating)) else int(v)
    outs = res.outputs if isinstance(res.outputs, list) else [res.outputs]
    d["outputs"] = [summarize(o) for o in outs]
    return d


# binary nets (sign activations) are refused by the CPU target's int8 path (TFLite has no int8 sign op), so
# they are snapshot on the fp32 CPU presets only
BINARY = ("tfc-w1a1",)


def _int8_cpu(preset: str) -> bool:
    from hwsim.specs import load_preset

    return preset.startswith("cpu/") and getattr(load_preset(preset), "precision", "fp32") == "int8"


def cases() -> list[tuple[str, str]]:
    from hwsim.specs import preset_names

    return [(net, p) for net, folders in NETS.items() for p in preset_names()
            if p.split("/")[0] in folders and not (net in BINARY and _int8_cpu(p))]


def generate() -> dict:
    with tempfile.TemporaryDirectory() as empty:  # shipped presets only
        old = os.environ.get("XDG_CONFIG_HOME")
        os.environ["XDG_CONFIG_HOME"] = empty
        try:
            entries = {f"{net} @ {p}": entry(net, p) for net, p in cases()}
        finally:
            if old is None:
                os.environ.pop("XDG_CONFIG_HOME", None)
            else:
                os.environ["XDG_CONFIG_HOME"] = old
    import hwsim

    return {"format": FORMAT, "hwsim_version": hwsim.__version__, "cost_rtol": COST_RTOL, "output_rtol": OUTPUT_RTOL,
            "entries": entries}


def _compare_output(i: int, e: dict, g: dict, rtol: float) -> list[str]:
    if e["shape"] != g["shape"]:
        return [f"output {i}: shape {g['shape']}, expected {e['shape']}"]
    tol = rtol * e["scale"]  # fp32 rounding noise is relative to the output's magnitude, not to each figure
    diffs = []
    if e["argmax"] != g["argmax"] and e["margin"] > 2 * tol:
        diffs.append(f"output {i}: argmax {g['argmax']}, expected {e['argmax']}")
    for f in ("quantiles", "projections", "scale"):
        ev, gv = np.atleast_1d(e[f]), np.atleast_1d(g[f])
        bad = np.flatnonzero(np.abs(ev - gv) > tol)
        if bad.size:
            diffs.append(f"output {i}: {f} {gv[bad].tolist()}, expected {ev[bad].tolist()} (tolerance {tol:.3g})")
    return diffs


def compare(expected: dict, got: dict, cost_rtol: float = COST_RTOL, output_rtol: float = OUTPUT_RTOL) -> list[str]:
    """Every difference between two entries, one line each (empty when they agree)."""
    diffs = []
    for k in sorted(set(expected) | set(got)):
        if k not in expected or k not in got:
            diffs.append(f"{k}: {'new' if k not in expected else 'missing'}")
            continue
        e, g = expected[k], got[k]
        if k == "outputs":
            if len(e) != len(g):
                diffs.append(f"outputs: {len(g)} outputs, expected {len(e)}")
                continue
            for i, (eo, go) in enumerate(zip(e, g)):
                diffs += _compare_output(i, eo, go, output_rtol)
        elif isinstance(e, (bool, str)) or isinstance(g, (bool, str)):
            if e != g:
                diffs.append(f"{k}: {g!r}, expected {e!r}")
        elif not math.isclose(g, e, rel_tol=cost_rtol, abs_tol=0.0):
            diffs.append(f"{k}: {g!r}, expected {e!r} (relative change {(g - e) / e if e else math.inf:+.3e})")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with golden.json instead of rewriting it")
    args = ap.parse_args(argv)
    got = generate()
    if args.check:
        expected = json.loads(GOLDEN.read_text())["entries"]
        bad = 0
        for case in sorted(set(expected) | set(got["entries"])):
            diffs = compare(expected.get(case, {}), got["entries"].get(case, {}))
            for d in diffs:
                print(f"{case}: {d}")
            bad += bool(diffs)
        print(f"{bad} of {len(got['entries'])} cases differ from {GOLDEN}")
        return 1 if bad else 0
    GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(got['entries'])} cases to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
