"""Sweep files: :func:`sweep_from_yaml` runs the sweep a YAML file describes (the CLI's ``hwsim sweep FILE``), with
every key checked before the sweep starts; :data:`YAML_HELP` lists the keys."""
from __future__ import annotations

import math
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.specs import is_integer

__all__ = ["sweep_from_yaml", "YAML_HELP"]

_YAML_KEYS = {"nets", "base", "grid", "specs", "out", "plot", "metrics", "functional", "workers", "dask",
              "dask_timeout_s", "seed", "input_shape", "options", "data"}


def _load_yaml(path: Path) -> dict:
    from hwsim.specs import read_yaml

    data = read_yaml(path, what=f"sweep keys {sorted(_YAML_KEYS)}")
    unknown = sorted(set(data) - _YAML_KEYS)
    if unknown:
        raise HwsimError(f"{path}: unknown key(s) {unknown}; valid: {sorted(_YAML_KEYS)}")
    return data


def _onnx_relative(net: Any, path: Path) -> Any:
    """An ``.onnx`` net entry of a sweep file, its path resolved relative to the file."""
    name = net.get("name") if isinstance(net, dict) else net
    if not (isinstance(name, str) and name.lower().endswith(".onnx")) or Path(name).is_absolute():
        return net
    resolved = str(path.parent / name)
    return {**net, "name": resolved} if isinstance(net, dict) else resolved


YAML_HELP = """\
sweep file keys (YAML):
  nets:         [required] zoo names, {name: NET, BUILDER_OPTION: VALUE, input_shape: [...]} mappings,
                or .onnx paths (relative to the YAML file)
  base:         with grid: a preset name, a preset YAML path (relative to the YAML file), or an inline
                mapping {base: PRESET, FIELD: VALUE, ...}
  grid:         {FIELD: [VALUE, ...], ...}: every combination over base (a value of the wrong type or
                NaN/inf is refused before the sweep; an out-of-range one becomes an error row)
  specs:        instead of base/grid: a list of preset names or YAML paths (relative to the YAML file)
  out:          results file (.csv or .parquet), relative to the current directory: finished points
                are appended; a rerun reuses rows computed by the same hwsim version and settings
  plot:         latency-vs-energy plot with the Pareto front (.png, .svg, .pdf, ...), relative to the
                current directory; --plot overrides it
  metrics:      report figures to keep, e.g. [latency_s, energy_j, accuracy] (default: all)
  functional:   true: also run inference on a seeded random input (slower)
  data:         a data set every point runs inference on, adding the columns accuracy, top1_agreement and
                rel_rms_error: digits (scikit-learn's 8x8 digits, built in) or a .npz file with arrays x and y
                (relative to the YAML file); each net must take its samples
  workers:      local worker processes (default: all cores, when a pool pays off)
  dask:         a Dask scheduler address, e.g. tcp://host:8786
  dask_timeout_s: seconds to wait for the scheduler (default 10)
  seed:         integer seed of the random input and of non-idealities (default 0)
  input_shape:  e.g. [1, 3, 32, 32] for every net (default: each net's own)
  options:      target options, e.g. {mode: layer} (imc), {threads: 1} (cpu); see `hwsim run --help`
example:
  nets: [resnet20, {name: itnet, iterations: 4}]
  base: imc/isaac
  grid: {adc_bits: [4, 6, 8], rows: [64, 128, 256]}
  out: sweep-results.csv
  plot: sweep.png
"""


def _check_yaml(path: Path, cfg: dict) -> None:
    """Types of a sweep file's keys, checked before the sweep starts: one line naming the key."""
    def bad(key: str, want: str) -> HwsimError:
        return HwsimError(f"{path}: '{key}:' must be {want}, got {cfg[key]!r}")

    nets = cfg["nets"]
    if not (isinstance(nets, (str, dict)) or (isinstance(nets, list) and nets
                                               and all(isinstance(n, (str, dict)) for n in nets))):
        raise bad("nets", "a non-empty list of zoo names, {name: ..., <options>} mappings or .onnx paths")
    if "grid" in cfg and cfg["grid"] is not None and not isinstance(cfg["grid"], dict):
        raise bad("grid", "a mapping {field: [values, ...]}")
    if "specs" in cfg and not (isinstance(cfg["specs"], list) and all(isinstance(x, str) for x in cfg["specs"])):
        raise bad("specs", "a list of preset names or YAML paths")
    if "base" in cfg and not isinstance(cfg["base"], (str, dict)):
        raise bad("base", "a preset name, a YAML path or a mapping of spec fields")
    for key in ("out", "plot", "dask"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise bad(key, "a string")
    if "metrics" in cfg and cfg["metrics"] is not None and not (
            isinstance(cfg["metrics"], list) and all(isinstance(m, str) for m in cfg["metrics"])):
        raise bad("metrics", "a list of report figure names")
    if "functional" in cfg and not isinstance(cfg["functional"], bool):
        raise bad("functional", "true or false")
    if cfg.get("workers") is not None and not (is_integer(cfg["workers"]) and cfg["workers"] >= 1):
        raise bad("workers", "a positive integer")
    if "seed" in cfg and (not is_integer(cfg["seed"]) or cfg["seed"] < 0):
        raise bad("seed", "a non-negative integer")
    if "dask_timeout_s" in cfg and (isinstance(cfg["dask_timeout_s"], bool)
                                    or not isinstance(cfg["dask_timeout_s"], (int, float))
                                    or not math.isfinite(cfg["dask_timeout_s"]) or cfg["dask_timeout_s"] <= 0):
        raise bad("dask_timeout_s", "a positive number of seconds")
    if "data" in cfg and not (isinstance(cfg["data"], str) and (cfg["data"] == "digits"
                                                                 or cfg["data"].lower().endswith(".npz"))):
        raise bad("data", "digits or the path of a .npz file with arrays x and y")
    if cfg.get("options") is not None and not isinstance(cfg["options"], dict):
        raise bad("options", "a mapping of target options, e.g. {mode: layer}")
    if cfg.get("input_shape") is not None:
        from hwsim.codesign.points import check_shape

        try:
            check_shape(cfg["input_shape"])
        except HwsimError:
            raise bad("input_shape", "a list of positive integers like [1, 3, 32, 32]") from None


def sweep_from_yaml(path: str | os.PathLike, *, plot: str | os.PathLike | None = None,
                    executor: Executor | None = None, progress: bool | None = None):
    """Run the sweep a YAML file describes; returns the DataFrame (and writes the plot if asked).

    Keys: ``nets`` (list of zoo names, ``{name: ..., <builder kwargs>}``, or ``.onnx`` paths relative to
    the YAML file, optionally ``{name: model.onnx, input_shape: [...]}``), ``base`` (preset name,
    preset YAML path relative to the YAML file, or an inline spec mapping with ``target:``/``base:``), ``grid``
    (``{field: [values]}``) or ``specs`` (a list of preset names), and optionally ``out``
    (results file), ``plot`` (latency vs energy with the Pareto front; ``.png``, ``.svg``, ``.pdf``, ...),
    ``metrics``, ``functional``, ``workers``, ``dask`` (scheduler address) and ``dask_timeout_s``, ``seed``,
    ``input_shape``, ``options`` (target options), ``data`` (``digits`` or a ``.npz`` file relative to the YAML
    file, loaded and checked before the sweep). ``plot=`` overrides the file's. (See :data:`YAML_HELP`.)

    Outputs (``out``, ``plot``, ``plot=``) are relative to the current directory, like any command's output
    files (absolute paths are used as given); inputs named in the file (``.onnx`` nets, a ``base`` YAML) are
    relative to the file. Every key and output path is checked before the sweep starts. The DataFrame's
    ``attrs`` carry ``results_file``, ``reused``, ``computed``, ``ignored`` (see :func:`sweep`) and ``plot``
    (absolute path of the plot written, or None).
    """
    from hwsim.codesign.sweep import PLOT_SUFFIXES, _results_path, dask_executor, sweep
    from hwsim.specs import check_output_path, spec_from_dict

    path = Path(path)
    cfg = _load_yaml(path)
    if "nets" not in cfg:
        raise HwsimError(f"{path}: missing 'nets:' (a list of zoo names)")
    if ("grid" in cfg) == ("specs" in cfg):
        raise HwsimError(f"{path}: give either 'base:' with 'grid:' or a 'specs:' list")
    _check_yaml(path, cfg)
    plot_src = plot if plot is not None else cfg.get("plot")
    plot_path = None if plot_src is None else check_output_path(plot_src, "plot", PLOT_SUFFIXES)
    out_path = None if cfg.get("out") is None else _results_path(cfg["out"])
    metrics = cfg.get("metrics")
    if plot_path is not None and metrics is not None and not {"latency_s", "energy_j"} <= set(metrics):
        raise HwsimError(f"{path}: a plot needs the metrics latency_s and energy_j, got metrics {metrics}")
    if "grid" in cfg:
        if "base" not in cfg:
            raise HwsimError(f"{path}: 'grid:' needs a 'base:' preset")
        base = cfg["base"]
        if isinstance(base, dict):
            base = spec_from_dict(base, source=str(path), default_name=path.stem)
        elif isinstance(base, str) and base.endswith((".yaml", ".yml")):
            base = str((path.parent / base).resolve())
        specs_or_grid: Any = (base, cfg["grid"] or {})
    else:
        specs_or_grid = [str((path.parent / s).resolve()) if s.endswith((".yaml", ".yml")) else s
                         for s in cfg["specs"] or []]
    data = None
    if "data" in cfg:
        from hwsim.evaluate import load_data

        data = load_data(cfg["data"] if cfg["data"] == "digits" else path.parent / cfg["data"])
    own = None
    if executor is None and cfg.get("dask"):
        executor = own = dask_executor(str(cfg["dask"]), float(cfg.get("dask_timeout_s", 10.0)))
    nets = [_onnx_relative(n, path) for n in cfg["nets"]] if isinstance(cfg["nets"], list) \
        else _onnx_relative(cfg["nets"], path)
    try:
        df = sweep(nets, specs_or_grid, metrics=cfg.get("metrics"),
                   functional=bool(cfg.get("functional", False)), executor=executor, out=out_path,
                   progress=progress, workers=cfg.get("workers"), input_shape=cfg.get("input_shape"),
                   seed=int(cfg.get("seed", 0)), target_options=cfg.get("options"), data=data)
    finally:
        if own is not None:
            own._client.close()
    df.attrs["plot"] = None
    if plot_path is not None:
        from hwsim.plot import pareto

        ok = df[df["error"] == ""] if "error" in df.columns else df
        if {"latency_s", "energy_j"} <= set(ok.columns) and len(ok):
            pareto(ok, "latency_s", "energy_j", hue="net", save=plot_path)
            df.attrs["plot"] = str(plot_path.resolve())
        else:
            raise HwsimError(f"nothing to plot: no successful point with latency_s and energy_j "
                             f"({int((df['error'] != '').sum()) if 'error' in df else 0} errors)")
    return df
