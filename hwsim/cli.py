"""The ``hwsim`` command line: zoo | presets | run | fit | sweep | calibrate | demo.

Every error hwsim raises on purpose (:class:`~hwsim.errors.HwsimError`) is printed as one line on
stderr and exits with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hwsim.errors import HwsimError, ShapeError

__all__ = ["main"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise ShapeError(f"--input-shape must be comma-separated integers like 1,3,224,224, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ShapeError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise HwsimError(f"--option must look like key=value, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def cmd_zoo(args: argparse.Namespace) -> int:
    import nets

    rows = []
    for name in nets.names():
        info = nets.info(name)
        rows.append({"name": name, "task": info.task, "input_shape": list(info.input_shape),
                     "published_params": info.published_params, "published_macs": info.published_macs,
                     "tags": list(info.tags), "source": info.source, "counts_source": info.counts_source})
    if args.counts:
        from mapping import trace
        from mapping.analysis import totals

        for r in rows:
            t = totals(trace(nets.get(r["name"]), tuple(r["input_shape"])))
            r["params"], r["macs"] = t.params, t.macs
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    mega = lambda v, d: f"{v / 1e6:.{d}f}" if v else "-"  # noqa: E731
    ours = "  params (M)  MACs (M)" if args.counts else ""
    print(f"{'name':<16} {'task':<14} {'input':<12}{ours}  {'published params (M)':>20} {'MACs (M)':>9}  source")
    for r in rows:
        mine = f"  {mega(r['params'], 3):>10} {mega(r['macs'], 1):>9}" if args.counts else ""
        print(f"{r['name']:<16} {r['task']:<14} {'x'.join(map(str, r['input_shape'][1:])):<12}{mine}  "
              f"{mega(r['published_params'], 3):>20} {mega(r['published_macs'], 1):>9}  {r['source'][:80]}")
    if not args.counts:
        print("(--counts also counts each net's parameters and MACs on the traced graph; "
              "benchmarks/results/zoo_counts.csv compares them with the publications)")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import hwsim

    names = hwsim.preset_names(args.target)
    if args.json:
        print(json.dumps(names))
    else:
        for n in names:
            print(n)
    return 0


def _net_and_shape(args: argparse.Namespace):
    """(model, input shape): a zoo net (``--net``, its own shape unless ``--input-shape``) or an imported ONNX /
    QONNX file (``--model``, as a Graph: its shape is the file's, ``--input-shape`` for dynamic dims)."""
    if args.model:
        import hwsim

        graph = hwsim.as_graph(args.model, _shape(args.input_shape) if args.input_shape else None)
        return graph, graph.input_shape
    import nets

    model = nets.get(args.net)
    shape = _shape(args.input_shape) if args.input_shape else nets.info(args.net).input_shape
    return model, shape


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    import hwsim

    model, shape = _net_and_shape(args)
    spec = hwsim.load_preset(args.hw)
    x = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32) if args.functional else None
    options = dict(_option(o) for o in args.option or [])
    res = hwsim.simulate(model, spec, x=x, input_shape=shape, seed=args.seed, **options)
    if args.functional:
        if args.model:
            from mapping.onnx import reference_outputs

            _compare(reference_outputs(args.model, x), res.outputs, "the ONNX model's own executor")
        else:
            _compare_with_torch(model, x, res.outputs)
    if args.json:
        print(json.dumps(res.report.to_dict(), indent=2))
    else:
        print(res.report.summary())
        if args.layers:
            import pandas as pd

            with pd.option_context("display.max_rows", 500, "display.width", 200):
                cols = [c for c in ("name", "op", "macs", "cycles", "latency_s", "energy_j", "weight_bytes",
                                    "placement", "bound") if c in res.report.to_pandas().columns]
                print(res.report.to_pandas()[cols].to_string(index=False))
    return 0


def _compare_with_torch(model, x, outputs) -> None:
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    _compare([r.numpy() for r in refs], outputs, "torch fp32")


def _compare(refs, outputs, source: str) -> None:
    import numpy as np

    outs = outputs if isinstance(outputs, list) else [outputs]
    errs = [float(np.max(np.abs(o - r)) / max(float(np.max(np.abs(r))), 1e-30)) for o, r in zip(outs, refs)]
    print(f"functional check vs {source}: max relative error {max(errs):.2e}", file=sys.stderr)


def cmd_fit(args: argparse.Namespace) -> int:
    import hwsim

    model, shape = _net_and_shape(args)
    fr = hwsim.fit(model, args.hw, input_shape=shape)
    if args.json:
        from hwsim.report import jsonable

        print(json.dumps(fr.to_dict() if hasattr(fr, "to_dict") else jsonable(fr), indent=2))
    else:
        print(fr.summary() if hasattr(fr, "summary") else fr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from hwsim.codesign.sweep import sweep_from_yaml

    df = sweep_from_yaml(args.file, plot=args.plot)
    if not args.all_columns:  # the net, the spec fields that vary, and the headline figures
        cols = list(df.columns)
        spec_cols = cols[cols.index("target") + 1:cols.index("spec_name")] if "spec_name" in cols else []
        varying = [c for c in spec_cols if df[c].astype(str).nunique() > 1]
        headline = [c for c in ("latency_s", "energy_j", "fps", "fits_on_chip", "area_mm2", "error") if c in cols]
        df = df[["net"] + varying + headline]
    print(df.to_string(max_rows=args.max_rows))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from hwsim.cpu.calibrate import calibrate

    spec = calibrate(out_path=args.out, quick=args.quick, rounds=args.rounds)
    print(spec)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hwsim.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwsim", description="Hardware/network co-design simulators for efficient DNNs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("zoo", help="list the networks of the zoo")
    s.add_argument("--counts", action="store_true", help="trace every net and count its parameters and MACs")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_zoo)

    s = sub.add_parser("presets", help="list the hardware presets")
    s.add_argument("target", nargs="?", help="only this target (cpu, imc, fpga)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_presets)

    for name, fn, help_ in (("run", cmd_run, "simulate a zoo net or an ONNX model on a preset"),
                            ("fit", cmd_fit, "does a zoo net or an ONNX model fit an IMC chip's crossbars?")):
        s = sub.add_parser(name, help=help_)
        which = s.add_mutually_exclusive_group(required=True)
        which.add_argument("--net", help="zoo name (see `hwsim zoo`)")
        which.add_argument("--model", metavar="PATH.onnx",
                           help="an ONNX or QONNX file (imported and checked against onnxruntime / qonnx)")
        s.add_argument("--hw", required=True, help="preset name (see `hwsim presets`) or YAML path")
        s.add_argument("--input-shape", help="e.g. 1,3,224,224 (default: the net's or the ONNX model's own; "
                                             "required for an ONNX model with dynamic dims)")
        s.add_argument("--json", action="store_true", help="print the report as JSON")
        s.set_defaults(fn=fn)
        if name == "run":
            s.add_argument("--functional", action="store_true",
                           help="also run inference on a random input and check it against torch (or the ONNX "
                                "model's executor)")
            s.add_argument("--layers", action="store_true", help="print the per-layer table")
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--option", action="append", metavar="KEY=VALUE",
                           help="target option, e.g. --option mode=layer (JSON values)")

    s = sub.add_parser("sweep", help="run a hardware sweep described by a YAML file")
    s.add_argument("file")
    s.add_argument("--plot", help="write a plot of the results to this PNG")
    s.add_argument("--max-rows", type=int, default=40)
    s.add_argument("--all-columns", action="store_true", help="print every spec field and report figure")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("calibrate", help="measure this machine and write a cpu/host preset")
    s.add_argument("--out", help="YAML path (default: the user preset directory)")
    s.add_argument("--quick", action="store_true", help="fewer repeats, one round (seconds instead of a minute)")
    s.add_argument("--rounds", type=int, default=None,
                   help="single-thread measurement rounds, each figure's median kept (default 5; 1 with --quick)")
    s.set_defaults(fn=cmd_calibrate)

    s = sub.add_parser("demo", help="show the three headline uses on built-in presets")
    s.add_argument("--out", default="hwsim-demo", help="directory for the demo's plots and files")
    s.add_argument("--quick", action="store_true")
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        rc = args.fn(args)
    except HwsimError as e:
        print(f"hwsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `hwsim zoo | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "verbose", False):
        print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
