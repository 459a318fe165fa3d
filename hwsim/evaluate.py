"""``hwsim.evaluate``: the accuracy a network keeps on a chip, over device seeds.

    ev = hwsim.evaluate(model, "imc/isaac", x_test, y_test, seeds=range(5))
    ev.table            # one row per seed: seed, accuracy, top1_agreement, rel_rms_error
    ev.accuracy_mean, ev.accuracy_std, ev.report.energy_j

The path, in order (every check before any inference runs):

1. the data (:func:`as_dataset`, :mod:`hwsim.evaluate_data`): arrays, or an iterable of ``(x, y)`` batches (a torch
   ``DataLoader``) read once and concatenated; ``x`` must be finite real numbers, ``y`` one integer class index per
   sample;
2. the net (:func:`net_graph`): a zoo name, a torch module or an ONNX model traced for one sample of ``x``'s shape;
   a Graph must already take that shape; labels must be valid classes of the net's output;
3. the cost report of one inference (batch 1) on the spec (``hwsim.simulate`` without an input);
4. the float reference outputs, once: torch's forward pass for a torch module, else the IR's fp32 run
   (:func:`hwsim.functional.run`, the Numba fp32 kernels);
5. the hardware outputs, per seed and batch (``hwsim.simulate(graph, spec, x=batch, seed=s)``; the graph object is
   the same for every batch of a seed, so a target caches what is fixed per (graph, spec, seed), such as the
   programmed conductances), seeds in parallel on an executor (local processes, or Dask, as sweeps do);
6. per seed (:func:`data_metrics`): ``accuracy`` = fraction of samples whose top-1 class is the label;
   ``top1_agreement`` = fraction whose top-1 class equals the float model's; ``rel_rms_error`` =
   sqrt(sum (out - ref)^2 / sum ref^2) over every output value (0 for bit-identical outputs). For a net with several
   outputs (early exits) the last output is compared.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.api import keeps_torch_threads
from hwsim.errors import HwsimError, ShapeError, first_line
from hwsim.evaluate_data import (  # noqa: F401 (the data side; re-exported, as before the split)
    Dataset,
    EvaluationError,
    LabelError,
    _array,
    as_dataset,
    load_data,
)
from hwsim.specs import is_integer

__all__ = ["evaluate", "Evaluation", "Dataset", "as_dataset", "load_data", "net_graph", "check_data",
           "reference_outputs", "hardware_outputs", "fixed_calibration", "data_figures", "data_metrics", "DATA_METRICS", "EvaluationError", "LabelError"]

DATA_METRICS = ("accuracy", "top1_agreement", "rel_rms_error")  # columns computed from a data set


# ----------------------------------------------------------------------------- net
def _is_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def net_graph(model: Any, sample_shape: Sequence[int]):
    """The Graph of ``model`` for one sample of ``sample_shape`` (batch first, any batch): a Graph is used as it is
    (its sample shape must match); a zoo name, a torch module or an ONNX model is traced / imported at that shape.
    A net that cannot take the shape is a one-line :class:`~hwsim.errors.ShapeError`."""
    from hwsim.api import as_graph
    from mapping.graph import Graph

    shape = (1,) + tuple(int(s) for s in sample_shape[1:])
    if isinstance(model, Graph):
        if tuple(model.input_shape[1:]) != shape[1:]:
            raise ShapeError(f"the data's samples have shape {shape[1:]} but {model.name} takes "
                             f"{tuple(model.input_shape[1:])}")
        return as_graph(model, shape) if model.batch != 1 else model
    from hwsim.codesign.points import torch_threads

    try:
        with torch_threads(1):
            return as_graph(model, shape)
    except HwsimError as e:
        if isinstance(e, ShapeError) or "shape" in str(e).lower():
            raise ShapeError(f"the net could not be imported for samples of shape {shape[1:]} at batch 1: "
                             f"{first_line(e)}") from None
        raise
    except (RuntimeError, ValueError, IndexError) as e:  # torch's own refusal of the shape, while tracing
        raise ShapeError(f"the net could not be imported for samples of shape {shape[1:]} at batch 1: "
                             f"{first_line(e)}") from None


def _classes(graph) -> int | None:
    shape = graph.shape_of(graph.outputs[-1])
    return int(shape[1]) if len(shape) == 2 else None


def check_data(ds: Dataset, graph, *, need_labels: bool = False) -> None:
    """The data fits the graph: sample shape, and labels that are classes of its (N, classes) output."""
    if tuple(ds.x.shape[1:]) != tuple(graph.input_shape[1:]):
        raise ShapeError(f"the data's samples have shape {tuple(ds.x.shape[1:])} but {graph.name} takes "
                         f"{tuple(graph.input_shape[1:])}")
    shapes = {tuple(graph.shape_of(o)[1:]) for o in graph.outputs}
    if len(shapes) > 1:  # e.g. (logits, features): which is scored must not be a guess
        raise EvaluationError(f"{graph.name} returns {len(graph.outputs)} outputs of different shapes "
                              f"{sorted(shapes)}; hwsim scores a net's last output (the deepest exit of a "
                              "multi-exit net): wrap the model so that it returns the output to score, or it last")
    if ds.y is None:
        if need_labels:
            raise LabelError("accuracy needs labels: give y (or (x, y) batches)")
        return
    n = _classes(graph)
    if n is None:
        raise LabelError(f"labels given, but {graph.name}'s output has shape {graph.shape_of(graph.outputs[-1])}, "
                         "not (N, classes)")
    if int(ds.y.max()) >= n:
        raise LabelError(f"label {int(ds.y.max())} is not a class of {graph.name}, whose output has {n} classes")


# ----------------------------------------------------------------------------- outputs
_REBATCHED: dict[tuple[int, int], tuple[Any, Any]] = {}


def _rebatched(graph, batch: int):
    """``graph`` for ``batch`` samples, one object per (graph object, batch) so target caches keyed on it hit."""
    if graph.batch == batch:
        return graph
    key = (id(graph), batch)
    hit = _REBATCHED.get(key)
    if hit is not None and hit[0] is graph:
        return hit[1]
    from hwsim.api import as_graph

    g = as_graph(graph, (batch,) + tuple(graph.input_shape[1:]))
    _REBATCHED[key] = (graph, g)
    while len(_REBATCHED) > 16:
        _REBATCHED.pop(next(iter(_REBATCHED)))
    return g


def _last(outputs: Any) -> np.ndarray:
    """The scored output: the last of a tuple / list / dict of outputs (a dict in its order, as the tracer reads
    it), or the only one."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    return np.asarray(outputs[-1] if isinstance(outputs, (list, tuple)) else outputs)


def _batches(x: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def reference_outputs(graph, ds: Dataset, batch_size: int, module: Any = None) -> np.ndarray:
    """The float model's (last) outputs on every sample: torch's forward pass for a torch ``module``, else the IR's
    fp32 run."""
    outs = []
    if module is not None:
        import torch

        from hwsim.codesign.points import torch_threads
        from mapping.trace import eval_mode

        with eval_mode(module), torch.no_grad(), torch_threads(max(1, torch.get_num_threads())):
            for xb in _batches(ds.x, batch_size):
                try:
                    y = module(torch.from_numpy(xb))
                except Exception as e:  # a model that runs one sample at a time
                    raise ShapeError(f"{type(module).__name__} cannot run a batch of {len(xb)}: {first_line(e)} "
                                     "(pass batch_size=1)") from None
                out = _array(_last(y)).astype(np.float32)  # a one-sample net may drop the batch dim (squeeze)
                outs.append(out.reshape(len(xb), -1) if graph.batch_fixed else out)
        return np.concatenate(outs)
    from hwsim.functional import progress_default, run

    with progress_default(False):
        for xb in _batches(ds.x, batch_size):
            out = _last(run(_rebatched(graph, len(xb)), xb))
            outs.append(out.reshape(len(xb), -1) if graph.batch_fixed else out)
    return np.concatenate(outs)


def _takes(spec: Any, option: str) -> bool:
    """Does the spec's target's ``simulate`` take ``option``?"""
    import inspect

    from hwsim.specs import spec_target
    from hwsim.target import load_target

    return option in inspect.signature(load_target(spec_target(spec)).simulate).parameters


def _reads_per_batch(spec: Any) -> bool:
    """Does the spec's target draw read noise per inference, chosen by a ``read_seed`` option (the IMC target)?"""
    return _takes(spec, "read_seed")


# samples of x an int8 evaluation calibrates its activation ranges on (whatever the batch size)
CALIB_SAMPLES = 256


def fixed_calibration(spec: Any, x: np.ndarray, graph, opts: tuple) -> tuple[tuple, str | None]:
    """The run options with one fixed int8 calibration batch, and the note saying so.

    A target that calibrates int8 activations (``calib=``; the CPU target's int8 precision) would otherwise calibrate
    each simulated batch on itself: a different quantized model per batch, unlike a deployed one. Unless the caller
    passed ``options={"calib": ...}``, every batch uses the first :data:`CALIB_SAMPLES` samples of ``x`` (1 for a
    ``graph`` that computes one sample): the result depends neither on the batch size nor on the caller
    (:func:`evaluate`, a sweep's or a search's accuracy columns)."""
    if "calib" in dict(opts) or getattr(spec, "precision", None) != "int8" or not _takes(spec, "calib"):
        return opts, None
    calib = x[:1 if graph.batch_fixed else CALIB_SAMPLES]
    note = (f"int8 activation ranges calibrated once, on the first {len(calib)} samples of x (optimistic; "
            "options={'calib': array} calibrates on other data)")
    return tuple(sorted({**dict(opts), "calib": calib}.items())), note


def hardware_outputs(graph, spec: Any, batches: Sequence[np.ndarray], seed: int,
                     options: Mapping[str, Any] | None = None, first_batch: int = 0) -> np.ndarray:
    """The (last) outputs ``spec``'s hardware computes for ``batches``, under device ``seed``, concatenated.

    ``first_batch``: the index of ``batches[0]`` in the whole data set. A target that draws read noise per inference
    (``read_seed``) draws batch ``first_batch + k``'s, so the outputs do not depend on which process ran which
    batches in which order (serial, a pool or Dask give the same numbers)."""
    from hwsim.api import simulate
    from hwsim.functional import progress_default

    opts = dict(options or {})
    per_batch = "read_seed" not in opts and _reads_per_batch(spec)
    outs = []
    with progress_default(False):
        for k, xb in enumerate(batches):
            if per_batch:
                opts["read_seed"] = first_batch + k
            res = simulate(_rebatched(graph, len(xb)), spec, xb, seed=int(seed), **opts)
            out = _last(res.outputs)  # simulate gives a one-sample graph's outputs in the source's shape
            outs.append(out.reshape(len(xb), -1) if graph.batch_fixed else out)
    return np.concatenate(outs)


def data_figures(graph, spec: Any, data: Dataset, ref: np.ndarray, seed: int, options: tuple,
                 batch_size: int) -> dict[str, float]:
    """:func:`data_metrics` of ``spec``'s outputs on ``data`` in batches of ``batch_size`` (1 for a one-sample graph),
    int8 calibrated once as :func:`evaluate` does (:func:`fixed_calibration`): a sweep's and a search's figures."""
    opts, _ = fixed_calibration(spec, data.x, graph, options)
    batches = _batches(data.x, 1 if graph.batch_fixed else batch_size)
    return data_metrics(hardware_outputs(graph, spec, batches, seed, dict(opts)), ref, data.y)


def data_metrics(out: np.ndarray, ref: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """``accuracy`` (when labels are given), ``top1_agreement`` with the float outputs, ``rel_rms_error`` of the
    outputs vs float (see the module docstring)."""
    out64, ref64 = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    top = out64.argmax(axis=1)
    m: dict[str, float] = {}
    if y is not None:
        m["accuracy"] = float(np.mean(top == y))
    m["top1_agreement"] = float(np.mean(top == ref64.argmax(axis=1)))
    with np.errstate(over="ignore", invalid="ignore"):
        num = float(np.sum((out64 - ref64) ** 2))
        den = float(np.sum(ref64 ** 2))
    m["rel_rms_error"] = math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)
    return m


# ----------------------------------------------------------------------------- seeds on an executor
def _chunk_task(net: Any, spec: Any, seed: int, batches: list[np.ndarray], options: tuple,
                first_batch: int) -> np.ndarray:
    """Worker side: the hardware outputs of a few batches under one seed (the graph cached per process)."""
    from hwsim.codesign.sweep import _graph

    return hardware_outputs(_graph(net), spec, batches, seed, dict(options), first_batch)


def _plan(n_batches: int, seeds: Sequence[int], workers: int) -> list[tuple[int, int, int]]:
    """(seed, first batch, end batch) tasks, seed-major: about 4 tasks per worker, at least one per seed."""
    per_seed = max(1, min(n_batches, math.ceil(4 * workers / len(seeds))))
    size = math.ceil(n_batches / per_seed)
    return [(s, i, min(i + size, n_batches)) for s in seeds for i in range(0, n_batches, size)]


def _run_seeds(net: Any, spec: Any, seeds: Sequence[int], batches: list[np.ndarray], options: tuple,
               executor: Executor | None, workers: int | None, bar) -> dict[int, list[np.ndarray]]:
    from hwsim.codesign.sweep import POOL_START_S, _default_executor, _workers_of

    parts: dict[tuple[int, int], np.ndarray] = {}
    todo = [(s, i, i + 1) for s in seeds for i in range(len(batches))]
    own = executor is None
    ex = _default_executor(len(todo), workers) if own else executor
    if own and ex is not None and workers is None:  # time a batch or two here: is a pool worth it?
        probe = todo[:min(2, len(batches))]
        for s, i, j in probe:
            t0 = time.perf_counter()
            parts[(s, i)] = hardware_outputs(net.graph, spec, batches[i:j], s, dict(options), i)
            bar.update(1)
        serial_s = (time.perf_counter() - t0) * (len(todo) - len(probe))
        n = _workers_of(ex)
        if n < 2 or serial_s * (0.8 - 1.0 / n) < POOL_START_S:
            ex.shutdown(wait=False, cancel_futures=True)
            ex = None
    try:
        if ex is None:
            for s, i, j in todo:
                if (s, i) not in parts:
                    parts[(s, i)] = hardware_outputs(net.graph, spec, batches[i:j], s, dict(options), i)
                    bar.update(1)
        else:
            _submit_all(ex, net, spec, seeds, batches, options, parts, bar)
    finally:
        if own and ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)
    return {s: [parts[k] for k in sorted(k for k in parts if k[0] == s)] for s in seeds}


def _submit_all(ex: Executor, net, spec, seeds, batches, options, parts: dict, bar) -> None:
    from hwsim.codesign.sweep import _workers_of

    futures = {}
    try:
        for s, i, j in _plan(len(batches), seeds, _workers_of(ex)):
            while i < j and (s, i) in parts:  # batches the probe ran: the rest of that chunk
                i += 1
            if i >= j:
                continue
            futures[ex.submit(_chunk_task, net, spec, s, batches[i:j], options, i)] = (s, i, j)
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in done:
                s, i, j = futures[fut]
                try:
                    parts[(s, i)] = fut.result()
                except HwsimError:
                    raise
                except Exception as e:  # the worker died or the task could not be sent
                    from hwsim.codesign.sweep import worker_failure

                    raise HwsimError(worker_failure("evaluate", e)) from e
                bar.update(j - i)
    except BaseException:
        for f in futures:
            f.cancel()
        raise


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Evaluation:
    """What :func:`evaluate` found. ``table``: pandas DataFrame, one row per seed (``seed``; ``accuracy`` [0-1] when
    labels were given; ``top1_agreement`` [0-1]; ``rel_rms_error`` [dimensionless]). ``report``: the cost report of
    one inference (batch 1). ``reference_accuracy`` [0-1]: the float model's accuracy (None without labels).
    ``*_mean``/``*_std``: over seeds (``std`` the sample standard deviation, ddof=1; NaN for one seed)."""

    table: Any
    report: Any
    net: str
    spec_name: str
    samples: int
    reference_accuracy: float | None = None

    def _col(self, name: str):
        if name not in self.table.columns:
            raise LabelError(f"no {name}: the evaluation was run without labels")
        return self.table[name].astype(float)

    @property
    def accuracy_mean(self) -> float:
        return float(self._col("accuracy").mean())

    @property
    def accuracy_std(self) -> float:
        return float(self._col("accuracy").std(ddof=1))

    @property
    def top1_agreement_mean(self) -> float:
        return float(self._col("top1_agreement").mean())

    @property
    def top1_agreement_std(self) -> float:
        return float(self._col("top1_agreement").std(ddof=1))

    @property
    def rel_rms_error_mean(self) -> float:
        return float(self._col("rel_rms_error").mean())

    @property
    def rel_rms_error_std(self) -> float:
        return float(self._col("rel_rms_error").std(ddof=1))

    def summary(self) -> str:
        n = len(self.table)
        head = f"{self.net} on {self.spec_name}: {self.samples} samples, {n} seed{'s' if n != 1 else ''}"
        parts = []
        if "accuracy" in self.table.columns:
            ref = f" (float {self.reference_accuracy:.4f})" if self.reference_accuracy is not None else ""
            spread = f" ± {self.accuracy_std:.4f}" if n > 1 else ""
            parts.append(f"accuracy {self.accuracy_mean:.4f}{spread}{ref}")
        parts.append(f"top-1 agreement {self.top1_agreement_mean:.4f}")
        parts.append(f"relative RMS error {self.rel_rms_error_mean:.3g}")
        return head + "; " + ", ".join(parts)


# ----------------------------------------------------------------------------- the entry point
def _check_args(seeds: Any, batch_size: Any, executor: Any, workers: Any, options: Any) -> tuple[int, ...]:
    if is_integer(seeds):  # seeds=5 could mean seed 5 or five seeds: ask
        raise EvaluationError(f"seeds={seeds!r} is one number: give the seeds, seeds=({seeds},) for seed {seeds} or "
                              f"seeds=range({seeds}) for {seeds} seeds")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise EvaluationError("seeds=(): give at least one device seed, e.g. seeds=(0,) or seeds=range(5)")
    bad = [s for s in seeds if not is_integer(s) or s < 0]
    if bad:
        raise EvaluationError(f"seeds must be non-negative integers, got {bad[0]!r}")
    if len(set(seeds)) != len(seeds):
        raise EvaluationError(f"seeds must be distinct, got {seeds}")
    if not is_integer(batch_size) or batch_size < 1:
        raise EvaluationError(f"batch_size must be a positive integer, got {batch_size!r}")
    if workers is not None and (not is_integer(workers) or workers < 1):
        raise EvaluationError(f"workers must be a positive integer, got {workers!r}")
    from hwsim.codesign.sweep import check_executor

    try:
        check_executor(executor, "evaluate")
    except HwsimError as e:
        raise EvaluationError(str(e)) from None
    if options is not None and not (isinstance(options, Mapping) and all(isinstance(k, str) for k in options)):
        raise EvaluationError(f"options (target options) must be a mapping of option names, got {options!r}")
    return tuple(int(s) for s in seeds)


@keeps_torch_threads
def evaluate(model: Any, spec: Any, x: Any, y: Any = None, *, seeds: Iterable[int] = (0,), batch_size: int = 256,
             executor: Executor | None = None, workers: int | None = None,
             options: Mapping[str, Any] | None = None, progress: bool | None = None) -> Evaluation:
    """How well ``model`` computes on ``spec``'s hardware over the data ``x`` (labels ``y``), per device seed.

    model: a zoo name, a torch module, an ONNX model (``.onnx`` path or ``ModelProto``) or a traced Graph (as
        :func:`hwsim.simulate` takes; traced for one sample of ``x``'s shape). spec: a preset name, a YAML path or a
        spec object, any target. x: an array (numpy or torch, N × sample shape), or an iterable of ``(x, y)``
        batches (a torch ``DataLoader``), read once. y: integer class indices (N,), or None.
    seeds: the device seeds (non-idealities are drawn per seed; an ideal spec gives the same row for every seed).
    batch_size: samples per simulated batch (1 for a net whose graph computes one sample).
    executor: any :class:`concurrent.futures.Executor` (``distributed.Client(...).get_executor()`` for Dask); None:
        local processes (``workers``, default all cores) when timing the first batches shows a pool pays off (as
        :func:`hwsim.sweep` decides), else this process. options: target options (``mode=`` for the IMC target, ...).
    progress: a bar over batches × seeds on stderr (None: on a terminal only).
    Returns an :class:`Evaluation`. Every input is checked before any inference runs: one-line
    :class:`~hwsim.errors.ShapeError` (data the net cannot take, non-finite ``x``), :class:`LabelError`,
    :class:`EvaluationError` (``seeds=()``, a bad ``batch_size``).
    """
    from hwsim.api import as_spec, simulate
    from hwsim.codesign.points import GraphNet, graph_digest
    from hwsim.functional import progress_bar

    seeds_t = _check_args(seeds, batch_size, executor, workers, options)
    spec = as_spec(spec)
    ds = as_dataset(x, y)
    graph = net_graph(model, ds.x.shape)
    check_data(ds, graph)
    opts = tuple(sorted((options or {}).items()))
    report = simulate(graph, spec, **dict(opts)).report
    size = 1 if graph.batch_fixed else int(batch_size)
    module = model if _is_module(model) else None
    ref = reference_outputs(graph, ds, size, module)
    batches = _batches(ds.x, size)
    run_opts, note = fixed_calibration(spec, ds.x, graph, opts)
    if note:
        report = dataclasses.replace(report, notes=report.notes + (note,))
    net = GraphNet(graph.name, graph_digest(graph), graph)
    bar = progress_bar(len(batches) * len(seeds_t), f"hwsim evaluate {graph.name} on {spec.name}", progress,
                       unit="batch", leave=True)
    try:
        outs = _run_seeds(net, spec, seeds_t, batches, run_opts, executor, workers, bar)
    finally:
        bar.close()
    import pandas as pd

    rows = [{"seed": s, **data_metrics(np.concatenate(outs[s]), ref, ds.y)} for s in seeds_t]
    ref_acc = None if ds.y is None else float(np.mean(ref.argmax(axis=1) == ds.y))
    return Evaluation(pd.DataFrame(rows), report, graph.name, str(getattr(spec, "name", "")), len(ds), ref_acc)


class _CallableModule(types.ModuleType):
    """``hwsim.evaluate(...)`` calls :func:`evaluate` even after ``import hwsim.evaluate`` has bound the name
    ``hwsim.evaluate`` to this module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Evaluation:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
