"""The ``hwsim`` command line: zoo | presets | run | fit | sweep | calibrate | demo.

Every error hwsim raises on purpose (:class:`~hwsim.errors.HwsimError`), and every malformed command line, is
printed as one line on stderr and exits with status 2; no traceback. Output paths are checked before any work;
every file written is named on stderr. Commands that can take seconds (zoo --counts, run, fit, sweep, calibrate,
demo) draw progress bars on stderr when it is a terminal (:func:`hwsim.functional.show_progress`); ``--quiet``
turns them off.
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
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise HwsimError(f"--option must look like key=value, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def _scalar(v: str) -> object:
    """A ``--net-option`` value: int, float, bool (true/false), none, or the string itself."""
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def _net_options(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    for text in getattr(args, "net_option", None) or []:
        k, sep, v = text.partition("=")
        if not sep or not k.strip():
            raise HwsimError(f"--net-option must look like key=value (e.g. iterations=4), got {text!r}")
        if k.strip() in out:
            raise HwsimError(f"--net-option {k.strip()!r} given twice")
        out[k.strip()] = _scalar(v)
    if out and getattr(args, "model", None):
        raise HwsimError("--net-option sets a zoo net's builder options (--net); an ONNX model (--model) has none")
    return out


class _Stages:
    """A bar over the stages of one command (tracing, simulating, checking), the stage running after it; drawn on a
    terminal only (:func:`hwsim.functional.show_progress`) and cleared when the command is done. A functional run's
    own bar over the layers appears under it."""

    def __init__(self, names: Sequence[str], desc: str):
        from hwsim.functional import progress_bar

        self.bar = progress_bar(len(names), desc, unit="stage")
        self.started = False

    def __call__(self, name: str) -> None:
        self.bar.set_postfix_str(name, refresh=False)
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _dict(pairs: list[tuple[str, object]], flag: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise HwsimError(f"{flag} {k!r} given twice")
        out[k] = v
    return out


def cmd_zoo(args: argparse.Namespace) -> int:
    import nets

    rows = []
    for name in nets.names():
        info = nets.info(name)
        rows.append({"name": name, "task": info.task, "input_shape": list(info.input_shape),
                     "published_params": info.published_params, "published_macs": info.published_macs,
                     "tags": list(info.tags), "source": info.source, "counts_source": info.counts_source})
    if args.counts:
        from hwsim.functional import progress_bar
        from mapping import trace
        from mapping.analysis import totals

        with progress_bar(len(rows), "tracing the zoo", unit="net") as bar:
            for r in rows:
                bar.set_postfix_str(r["name"])
                t = totals(trace(nets.get(r["name"]), tuple(r["input_shape"])))
                r["params"], r["macs"] = t.params, t.macs
                bar.update()
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
    from hwsim.specs import OLD_TARGET_NAMES

    if args.target in OLD_TARGET_NAMES:
        print(f"note: target {args.target!r} is now named {OLD_TARGET_NAMES[args.target]!r}", file=sys.stderr)
    names = hwsim.preset_names(args.target)  # an unknown target is an UnknownNameError (exit 2)
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

        _net_options(args)  # --net-option with --model: refused
        model = Path(args.model)  # a path, whatever its suffix: never mistaken for a zoo name
        if model.exists() and not model.is_file():  # (a missing file: the importer's "no such ONNX file")
            raise HwsimError(f"--model {args.model} is not a file")
        graph = hwsim.as_graph(model, _shape(args.input_shape) if args.input_shape else None)
        return graph, graph.input_shape
    import nets

    shape = _shape(args.input_shape) if args.input_shape else nets.info(args.net).input_shape
    options = _net_options(args)
    try:
        model = nets.get(args.net, **options)
    except HwsimError:
        raise
    except TypeError as e:  # a builder given a value of the wrong type (e.g. iterations=abc)
        raise HwsimError(f"net {args.net!r} cannot be built with --net-option {options}: {e}") from None
    return model, shape


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    import hwsim

    spec = hwsim.load_preset(args.hw)  # a bad preset before the net is built or traced
    if args.seed < 0:
        raise HwsimError(f"--seed must be a non-negative integer, got {args.seed}")
    options = _dict([_option(o) for o in args.option or []], "--option")
    from hwsim.api import check_options
    from hwsim.specs import spec_target
    from hwsim.target import load_target

    check_options(load_target(spec_target(spec)).simulate, spec_target(spec), options)  # before the net is built
    what = args.net or Path(args.model).name
    stages = _Stages(["import", "trace", "simulate"] + (["check"] if args.functional else []), f"hwsim run {what}")
    try:
        stages(f"importing and verifying {what}" if args.model else f"building {what}")
        model, shape = _net_and_shape(args)
        x = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32) if args.functional else None
        stages(f"tracing and verifying {what}")
        graph = hwsim.as_graph(model, shape)
        stages(f"{'running' if args.functional else 'costing'} {what} on {spec.name}")
        res = hwsim.simulate(graph, spec, x=x, input_shape=shape, seed=args.seed, **options)
        check = None
        if args.functional:
            if args.model:
                from mapping.onnx import reference_outputs

                stages("the ONNX model's own executor on the same input")
                check = _compare(reference_outputs(Path(args.model), x), res.outputs, "the ONNX model's own executor")
            else:
                stages("torch on the same input")
                check = _compare_with_torch(model, x, res.outputs)
    finally:
        stages.close()  # (before anything is printed: a line printed under a bar would be cleared with it)
    if check is not None:
        print(check, file=sys.stderr)
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


def _compare_with_torch(model, x, outputs) -> str:
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    return _compare([r.numpy() for r in refs], outputs, "torch fp32")


def _compare(refs, outputs, source: str) -> str:
    """The line that says how far the outputs are from the reference's."""
    import numpy as np

    outs = outputs if isinstance(outputs, list) else [outputs]
    errs = [float(np.max(np.abs(o - r)) / max(float(np.max(np.abs(r))), 1e-30)) for o, r in zip(outs, refs)]
    return f"functional check vs {source}: max relative error {max(errs):.2e}"


def cmd_fit(args: argparse.Namespace) -> int:
    import hwsim
    from hwsim.specs import spec_target

    spec = hwsim.load_preset(args.hw)
    if spec_target(spec) != "imc":
        raise HwsimError(f"fit answers whether a net fits an IMC chip's crossbars; {args.hw!r} is a "
                         f"{spec_target(spec)} preset (use `hwsim run` and its fits_on_chip)")
    what = args.net or Path(args.model).name
    stages = _Stages(["import", "trace", "fit"], f"hwsim fit {what}")
    try:
        stages(f"importing and verifying {what}" if args.model else f"building {what}")
        model, shape = _net_and_shape(args)
        stages(f"tracing and verifying {what}")
        graph = hwsim.as_graph(model, shape)
        stages(f"mapping {what} onto {spec.name}")
        fr = hwsim.fit(graph, spec, input_shape=shape)
    finally:
        stages.close()
    if args.json:
        from hwsim.report import jsonable

        print(json.dumps(fr.to_dict() if hasattr(fr, "to_dict") else jsonable(fr), indent=2))
    else:
        print(fr.summary() if hasattr(fr, "summary") else fr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from hwsim.codesign.sweep import PLOT_SUFFIXES, sweep_from_yaml
    from hwsim.specs import check_output_path

    if args.plot is not None:  # before the YAML is even read (sweep_from_yaml checks the rest before working)
        check_output_path(args.plot, "plot", PLOT_SUFFIXES)
    if args.max_rows < 1:
        raise HwsimError(f"--max-rows must be a positive integer, got {args.max_rows}")
    df = sweep_from_yaml(args.file, plot=args.plot)
    attrs = dict(df.attrs)
    if attrs.get("results_file"):
        reused, computed, ignored = attrs.get("reused", 0), attrs.get("computed", 0), attrs.get("ignored", 0)
        how = (f"{reused} row(s) reused from a previous run (delete the file to recompute them), "
               f"{computed} computed now" if reused else f"{computed} row(s) computed now, none reused")
        if ignored:
            how += (f"; {ignored} row(s) in the file from other settings, data, hwsim version or cost model "
                    "not used (stale rows are recomputed)")
        print(f"results: {attrs['results_file']} ({how})", file=sys.stderr)
    if attrs.get("plot"):
        print(f"plot: {attrs['plot']}", file=sys.stderr)
    if not args.all_columns:  # the net, the spec fields that vary, and the headline figures
        cols = list(df.columns)
        spec_cols = cols[cols.index("target") + 1:cols.index("spec_name")] if "spec_name" in cols else []
        varying = [c for c in spec_cols if df[c].astype(str).nunique() > 1]
        headline = [c for c in ("latency_s", "energy_j", "fps", "fits_on_chip", "area_mm2", "accuracy",
                                "top1_agreement", "rel_rms_error", "error") if c in cols]
        df = df[["net"] + varying + headline]
    print(df.to_string(max_rows=args.max_rows, float_format=lambda v: f"{v:.4g}"))  # 4 significant digits each
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from hwsim.specs import check_output_path, user_preset_dir

    path = args.out if args.out is not None else user_preset_dir() / "cpu" / "host.yaml"
    path = check_output_path(path, "calibrated preset (--out)", (".yaml", ".yml"))  # before the measurements
    if args.rounds is not None and args.rounds < 1:
        raise HwsimError(f"--rounds must be a positive integer, got {args.rounds}")
    from hwsim.cpu.calibrate import calibrate

    spec = calibrate(out_path=path, quick=args.quick, rounds=args.rounds)  # progress: auto (off with --quiet)
    print(f"{spec.name}: effective clock {spec.clock_hz / 1e9:.2f} GHz, {spec.cores} cores, "
          f"{spec.simd_bits}-bit SIMD, layer overhead {spec.layer_overhead_s * 1e6:.1f} us")
    use = "it now overrides the shipped cpu/host" if args.out is None else f"use it as --hw {path}"
    print(f"preset written to {path.resolve()} ({use})", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hwsim.demo import run_demo
    from hwsim.specs import check_output_path

    run_demo(check_output_path(args.out, "demo folder (--out)", folder=True), quick=args.quick)
    return 0


TARGET_OPTIONS = """\
target options (--option KEY=VALUE, repeatable; VALUE is JSON, else a string):
  cpu/*   threads=N            cores to use (default: all of the preset's)
          fold_bn=true|false   fold batch norm into conv/linear first (default true)
          calib=[[...]]        int8 presets: the batch that calibrates activation ranges (default: x)
  imc/*   mode=pipelined|layer layers overlap in row chunks (default) or run one at a time
          max_chunks=N         row chunks per layer in pipelined mode (default 8)
          read_seed=N          which inference's read noise to draw (default: the next one of the process)
  fpga/*  folding=auto|[[PE,SIMD],...]  per MVAU (default auto: cheapest meeting target_fps)
          target_fps=F         throughput the auto folding must reach
          kbit=decomposed|native  k-bit layers as binary branches (default) or native MVAUs
          fifo_depth=N         elements per inter-layer FIFO (default: never stalls)
--functional: x is a seeded standard-normal array (hwsim refuses NaN/inf inputs on every target).
"""
NET_OPTIONS = """\
net options (--net-option KEY=VALUE, repeatable; VALUE parsed as int, float, true/false, else a string):
  a zoo net's builder options, e.g. --net itnet --net-option iterations=4 --net-option shared=false
  (an unknown option is refused with the net's valid ones)
"""


QUIET_HELP = "no progress bars (they are drawn on stderr only when it is a terminal)"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("hwsim run: error: ... (see hwsim run --help)"), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import hwsim
    from hwsim.codesign.sweep import YAML_HELP

    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="hwsim", description="Hardware/network co-design simulators for efficient DNNs",
                epilog="Errors are one line on stderr with exit status 2. Output files are checked before any "
                       "work and named on stderr when written.")
    p.add_argument("--version", action="version", version=f"hwsim {hwsim.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands (hwsim COMMAND --help for each)")

    s = sub.add_parser("zoo", help="list the networks of the zoo")
    s.add_argument("--counts", action="store_true", help="trace every net and count its parameters and MACs")
    s.add_argument("--json", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    s.set_defaults(fn=cmd_zoo)

    s = sub.add_parser("presets", help="list the hardware presets")
    s.add_argument("target", nargs="?", help="only this target: cpu, imc or fpga")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_presets)

    for name, fn, help_ in (("run", cmd_run, "simulate a zoo net or an ONNX model on a preset"),
                            ("fit", cmd_fit, "does a zoo net or an ONNX model fit an IMC chip's crossbars?")):
        s = sub.add_parser(name, help=help_, description=help_, formatter_class=raw,
                           epilog=(TARGET_OPTIONS if name == "run" else "") + NET_OPTIONS)
        which = s.add_mutually_exclusive_group(required=True)
        which.add_argument("--net", help="zoo name (see `hwsim zoo`)")
        which.add_argument("--model", metavar="PATH.onnx",
                           help="an ONNX or QONNX file (imported and checked against onnxruntime / qonnx)")
        s.add_argument("--hw", required=True, help="preset name (see `hwsim presets`) or YAML path")
        s.add_argument("--input-shape", help="e.g. 1,3,224,224 (default: the net's or the ONNX model's own; "
                                             "required for an ONNX model with dynamic dims)")
        s.add_argument("--net-option", action="append", metavar="KEY=VALUE",
                       help="builder option of a zoo net, e.g. --net-option iterations=4 (repeatable)")
        s.add_argument("--json", action="store_true", help="print the report as JSON")
        s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
        s.set_defaults(fn=fn)
        if name == "run":
            s.add_argument("--functional", action="store_true",
                           help="also run inference on a random input and check it against torch (or the ONNX "
                                "model's executor)")
            s.add_argument("--layers", action="store_true", help="print the per-layer table")
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--option", action="append", metavar="KEY=VALUE",
                           help="target option, e.g. --option mode=layer (JSON values; see below)")

    s = sub.add_parser("sweep", help="run a hardware sweep described by a YAML file", formatter_class=raw,
                       description="Run a hardware sweep described by a YAML file.\n"
                                   "Output paths (out:, plot:, --plot) are relative to the current directory and\n"
                                   "checked before the sweep starts; where each file went, and how many rows were\n"
                                   "reused from a previous run, is printed on stderr.",
                       epilog=YAML_HELP)
    s.add_argument("file", help="the sweep YAML file (keys below)")
    s.add_argument("--plot", metavar="PATH",
                   help="write latency vs energy with the Pareto front here (.png, .svg, .pdf; overrides plot:)")
    s.add_argument("--max-rows", type=int, default=40)
    s.add_argument("--all-columns", action="store_true", help="print every spec field and report figure")
    s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("calibrate", help="measure this machine and write a cpu/host preset")
    s.add_argument("--out", help="YAML path (default: the user preset directory; a missing folder is created)")
    s.add_argument("--quick", action="store_true", help="fewer repeats, one round (seconds instead of a minute)")
    s.add_argument("--rounds", type=int, default=None,
                   help="single-thread measurement rounds, each figure's median kept (default 5; 1 with --quick)")
    s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    s.set_defaults(fn=cmd_calibrate)

    s = sub.add_parser("demo", help="show the three headline uses on built-in presets")
    s.add_argument("--out", default="hwsim-demo",
                   help="folder for the demo's plots and files (created if missing; default hwsim-demo)")
    s.add_argument("--quick", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        if getattr(args, "quiet", False):
            from hwsim.functional import progress_default

            with progress_default(False):  # every bar, down to a functional run's inside hwsim.simulate
                rc = args.fn(args)
        else:
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
