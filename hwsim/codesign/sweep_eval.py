"""The worker side of :func:`hwsim.sweep`: evaluate one chunk of (key, spec) points of one net, in whichever process
the executor runs it.

A worker traces each net once (:func:`_graph`, cached per process), runs :func:`hwsim.simulate` for every point,
keeps the report's scalar figures (:func:`report_metrics`) or the chosen ``metrics``, and with a data set the data
metrics (``accuracy``, ``top1_agreement``, ``rel_rms_error``, :mod:`hwsim.evaluate`) against the net's float
outputs, computed once per net and data set (:func:`_reference`). A point that raises is a row with its error.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.codesign.points import GraphNet, ZooNet, sample_shape
from hwsim.codesign.store import KEY
from hwsim.errors import HwsimError

__all__ = ["EvalSettings", "evaluate_chunk", "report_metrics", "clear_graph_cache", "DATA_BATCH"]


@dataclass(frozen=True, slots=True)
class EvalSettings:
    functional: bool = False
    seed: int = 0
    options: tuple[tuple[str, Any], ...] = ()
    metrics: Any = None  # None | tuple of names | tuple of (name, callable-or-name)
    data: Any = None  # hwsim.evaluate.Dataset: accuracy, top1_agreement, rel_rms_error on it

    def key_extra(self) -> dict[str, Any]:
        m = self.metrics
        if m is not None:
            m = [x if isinstance(x, str) else [x[0], getattr(x[1], "__qualname__", repr(x[1]))] for x in m]
        extra = {"functional": self.functional, "seed": self.seed, "options": [list(o) for o in self.options],
                 "metrics": m}
        if self.data is not None:
            extra["data"] = self.data.digest
        return extra


_GRAPHS: dict[str, Any] = {}
_GRAPH_LOCK = threading.Lock()
_TRACES = {"count": 0}  # graphs built in this process (tests check one trace per net and process)


def clear_graph_cache() -> None:
    """Forget the graphs this process has traced for sweeps."""
    with _GRAPH_LOCK:
        _GRAPHS.clear()


def _graph(net: ZooNet | GraphNet):
    ident = repr(net.identity())
    with _GRAPH_LOCK:
        g = _GRAPHS.get(ident)
        if g is None:
            _single_thread_torch_in_child()
            g = net.build_graph()
            _TRACES["count"] += 1
            _GRAPHS[ident] = g
        return g


def _single_thread_torch_in_child() -> None:
    """In a worker process, one torch thread: workers already run in parallel with each other."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        import torch

        torch.set_num_threads(1)


_SKIP_FIELDS = {"target", "network", "spec_name", "layers", "exits", "notes"}


_NOT_SCALAR: dict[type, set[str]] = {}  # report properties found to be non-scalar, per report class


@functools.lru_cache(maxsize=32)
def _report_layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dataclass fields, public properties) of a report class, computed once per class."""
    import dataclasses

    fields = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _SKIP_FIELDS)
    props: list[str] = []
    for c in cls.__mro__:
        for name, attr in vars(c).items():
            if isinstance(attr, property) and not name.startswith("_") and name not in fields and name not in props:
                props.append(name)
    return fields, tuple(props)


def figure_names() -> frozenset[str]:
    """Every name a report can hold (:func:`_report_layout` of :class:`~hwsim.report.Report` and of every subclass
    imported so far, a target's report class, plus the fields no sweep column shows): what a metric may name."""
    from hwsim.report import Report

    names, todo = set(_SKIP_FIELDS), [Report]
    while todo:
        cls = todo.pop()
        fields, props = _report_layout(cls)
        names |= set(fields) | set(props)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


def report_metrics(report: Any) -> dict[str, Any]:
    """The scalar totals of a report: its dataclass fields (target-specific ones included), its
    scalar properties (``macs``, ``edp_js``, ...) and, for a net with several exits, each exit's
    latency and energy (``exit0_latency_s``, ...)."""
    fields, props = _report_layout(type(report))
    out: dict[str, Any] = {}
    for name in fields:
        v = getattr(report, name)
        if _scalar(v):
            out[name] = v
    skip = _NOT_SCALAR.setdefault(type(report), set())
    for name in props:
        if name in skip:
            continue
        try:
            v = getattr(report, name)
        except Exception:  # a derived figure that does not apply to this report
            continue
        if _scalar(v):
            out[name] = v
        else:  # e.g. energy_breakdown (a dict): not a column; not computed again for this class
            skip.add(name)
    exits = getattr(report, "exits", ())
    if len(exits) > 1:
        for i, e in enumerate(exits):
            out[f"exit{i}_latency_s"] = e.latency_s
            out[f"exit{i}_energy_j"] = e.energy_j
    return out


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str, np.generic))


def _pick_metrics(report: Any, metrics: Any, figures: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen report figures, and the data metrics (``figures``: accuracy, top1_agreement, rel_rms_error)."""
    if metrics is None:
        return {**report_metrics(report), **figures}
    out = {}
    for m in metrics:
        name, how = (m, m) if isinstance(m, str) else m
        if isinstance(how, str) and how in figures:
            out[name] = figures[how]
        elif callable(how):
            out[name] = how(report)
        elif hasattr(report, how):
            out[name] = getattr(report, how)
        else:
            raise HwsimError(f"metric {how!r} is not a figure of the {type(report).__name__}; "
                             f"available: {sorted(report_metrics(report))}")
    return out


def _input(graph, seed: int):
    import numpy as np

    return np.random.default_rng(seed).standard_normal(graph.input_shape).astype(np.float32)


def evaluate_chunk(net: ZooNet | GraphNet, items: Sequence[tuple[str, Any]], settings: EvalSettings) -> list[dict]:
    """Run ``hwsim.simulate`` for each ``(key, spec)`` of one net; one row dict per item.

    A point that raises becomes a row whose ``error`` says why; the others are unaffected."""
    from hwsim.functional import progress_default

    with progress_default(False):  # no bar of a functional run inside the sweep's (nor in a worker's stderr)
        return _evaluate_chunk(net, items, settings)


def _evaluate_chunk(net: ZooNet | GraphNet, items: Sequence[tuple[str, Any]], settings: EvalSettings) -> list[dict]:
    from hwsim.api import simulate

    try:
        graph = _graph(net)
    except Exception as e:  # the net itself cannot be built/traced: every point fails the same way
        msg = f"{type(e).__name__}: {e}"
        return [{KEY: k, "eval_s": 0.0, "error": msg} for k, _ in items]
    x = _input(graph, settings.seed) if settings.functional and settings.data is None else None
    try:
        ref = None if settings.data is None else _reference(net, graph, settings.data)
    except Exception as e:  # the data does not fit the net (labels out of its classes): every point fails
        msg = f"{type(e).__name__}: {e}"
        return [{KEY: k, "eval_s": 0.0, "error": msg} for k, _ in items]
    rows = []
    for key, spec in items:
        t0 = time.perf_counter()
        try:
            res = simulate(graph, spec, x, seed=settings.seed, **dict(settings.options))
            figures = {} if ref is None else _data_figures(graph, spec, settings, ref)
            row = _pick_metrics(res.report, settings.metrics, figures)
            err = ""
        except Exception as e:  # one failing point is a row with its error, the sweep goes on
            row, err = {}, f"{type(e).__name__}: {e}"
        row.update({KEY: key, "eval_s": time.perf_counter() - t0, "error": err})
        rows.append(row)
    return rows


DATA_BATCH = 256  # samples per simulated batch of a sweep's data set


_REFS: dict[tuple[str, str], Any] = {}  # (net identity, data digest) -> float reference outputs, per process


def _reference(net: ZooNet | GraphNet, graph, data) -> Any:
    """The float (IR fp32) outputs of ``graph`` on the data, computed once per net and data set in this process."""
    from hwsim.evaluate import check_data, reference_outputs

    k = (repr(net.identity()), data.digest)
    with _GRAPH_LOCK:
        ref = _REFS.get(k)
    if ref is None:
        check_data(data, graph)
        ref = reference_outputs(graph, data, 1 if graph.batch_fixed else DATA_BATCH)
        with _GRAPH_LOCK:
            _REFS[k] = ref
    return ref


def _data_figures(graph, spec: Any, settings: EvalSettings, ref) -> dict[str, float]:
    """accuracy (when the data has labels), top1_agreement and rel_rms_error of ``spec``'s outputs on the data."""
    from hwsim.evaluate import data_figures

    return data_figures(graph, spec, settings.data, ref, settings.seed, tuple(settings.options), DATA_BATCH)


def sweep_dataset(data: Any):
    """A sweep's ``data`` argument (``(x, y)``, ``x``, a loader, a :class:`~hwsim.evaluate_data.Dataset` or a name) as
    a Dataset."""
    from hwsim.evaluate import as_dataset

    return as_dataset(*data) if isinstance(data, tuple) and len(data) == 2 else as_dataset(data)


def _sweep_data(data: Any, metrics: Any, refs: Sequence[ZooNet | GraphNet], who: str = "sweep"):
    """The sweep's data set (None without one), checked against the metrics and every net's input before any point:
    a data metric without data or accuracy without labels, a net that cannot take the samples, labels that are no
    class of a net's output (each net traced here, once: the points reuse the trace in this process): one line."""
    from hwsim.errors import ShapeError
    from hwsim.evaluate import DATA_METRICS, LabelError, check_data

    names = [] if metrics is None else [m if isinstance(m, str) else m[1] for m in metrics]
    wanted = [m for m in names if isinstance(m, str) and m in DATA_METRICS]
    if data is None:
        if wanted:
            raise HwsimError(f"{who}: metric {wanted[0]!r} needs a data set: pass data=(x, y) "
                             "(YAML: data: digits or a .npz file)")
        return None
    ds = sweep_dataset(data)
    if "accuracy" in wanted and ds.y is None:
        raise LabelError(f"{who}: metric 'accuracy' needs labels: pass data=(x, y)")
    for r in refs:
        shape = sample_shape(r)
        if tuple(shape[1:]) != tuple(ds.x.shape[1:]):
            raise ShapeError(f"{who}: net {r.label} takes samples of shape {tuple(shape[1:])}, the data's are "
                             f"{tuple(ds.x.shape[1:])} (give the net an input_shape, or other data)")
    if ds.y is not None:
        for r in refs:
            try:
                check_data(ds, _graph(r))
            except LabelError as e:
                raise LabelError(f"{who}: {e}") from None
    return ds
