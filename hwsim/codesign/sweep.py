"""``hwsim.sweep``: evaluate every (net, hardware spec) pair of a grid, on any executor, resumably.

The pipeline, in order:

1. :func:`~hwsim.codesign.points.as_net_refs` — nets become zoo references (traced by each worker,
   once) or traced graphs (traced here, once, and shipped with the tasks);
2. :func:`~hwsim.codesign.points.expand_specs` — specs, preset names or a grid
   ``(base, {field: [values]})`` become spec points (invalid ones keep their error);
3. each (net, point) gets a stable key (net, spec, settings, data set, hwsim and cost-model versions:
   :func:`~hwsim.codesign.points.point_key`); with ``out=`` the keys already in the results file are skipped;
4. the remaining points run in chunks (one net per chunk) on the executor; each finished chunk's
   rows are appended to the results file at once (:class:`~hwsim.codesign.store.ResultsStore`);
5. the DataFrame has one row per (net, spec) in sweep order: ``net``, ``target``, the spec's
   fields, ``spec_name``, the report's totals (or the chosen ``metrics``), with ``data=`` the data metrics
   (``accuracy``, ``top1_agreement``, ``rel_rms_error``, :mod:`hwsim.evaluate`), ``eval_s`` (wall time of
   the simulation), ``error`` (empty when the point succeeded) and ``key``.
"""
from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.codesign.points import GraphNet, SpecPoint, ZooNet, as_net_refs, expand_specs, point_key, sample_shape
from hwsim.codesign.store import KEY, ResultsStore
from hwsim.errors import HwsimError

__all__ = ["sweep", "sweep_from_yaml", "report_metrics", "dask_executor", "clear_graph_cache"]

SERIAL_BELOW = 16  # points: below this a sweep with no executor runs in this process
PROBE_POINTS = 2  # points run here first to time one evaluation (the first one also traces the net)
# Start-up cost of a local pool in s (forkserver, imports, one trace per worker; ~3 s measured on a
# 2-core machine, benchmarks/bench_sweep.py). A pool is used when start-up + serial/n beats 80 % of
# serial, i.e. serial > POOL_START_S / (0.8 - 1/n): 10 s for 2 workers, 4.4 s for 8.
POOL_START_S = 3.0
MAX_CHUNK = 32  # points per task: bounds the work lost to a kill and the progress-bar granularity


# ----------------------------------------------------------------------------- evaluation (worker side)
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
    from hwsim.evaluate import data_metrics, hardware_outputs

    data = settings.data
    size = 1 if graph.batch_fixed else DATA_BATCH
    batches = [data.x[i:i + size] for i in range(0, len(data), size)]
    out = hardware_outputs(graph, spec, batches, settings.seed, dict(settings.options))
    return data_metrics(out, ref, data.y)


def _sweep_data(data: Any, metrics: Any, refs: Sequence[ZooNet | GraphNet]):
    """The sweep's data set (None without one), checked against the metrics and every net's input before any point:
    a data metric without data or accuracy without labels, a net that cannot take the samples: one line."""
    from hwsim.errors import ShapeError
    from hwsim.evaluate import DATA_METRICS, LabelError, as_dataset

    names = [] if metrics is None else [m if isinstance(m, str) else m[1] for m in metrics]
    wanted = [m for m in names if isinstance(m, str) and m in DATA_METRICS]
    if data is None:
        if wanted:
            raise HwsimError(f"sweep: metric {wanted[0]!r} needs a data set: pass data=(x, y) "
                             "(YAML: data: digits or a .npz file)")
        return None
    ds = as_dataset(*data) if isinstance(data, tuple) and len(data) == 2 else as_dataset(data)
    if "accuracy" in wanted and ds.y is None:
        raise LabelError("sweep: metric 'accuracy' needs labels: pass data=(x, y)")
    for r in refs:
        shape = sample_shape(r)
        if tuple(shape[1:]) != tuple(ds.x.shape[1:]):
            raise ShapeError(f"sweep: net {r.label} takes samples of shape {tuple(shape[1:])}, the data's are "
                             f"{tuple(ds.x.shape[1:])} (give the net an input_shape, or other data)")
    return ds


# ----------------------------------------------------------------------------- orchestration
@dataclass(frozen=True, slots=True)
class _Job:
    net: ZooNet | GraphNet
    point: SpecPoint
    key: str


def _base_row(job: _Job) -> dict[str, Any]:
    row: dict[str, Any] = {"net": job.net.label, "target": job.point.data.get("target", "")}
    row.update({k: v for k, v in job.point.data.items() if k != "target"})
    row["spec_name"] = job.point.name
    return row


def _merge(job: _Job, result: Mapping[str, Any]) -> dict[str, Any]:
    row = _base_row(job)
    for k, v in result.items():
        row[f"report_{k}" if k in row and k != KEY else k] = v
    return row


def _chunks(jobs: list[_Job], size: int) -> list[list[_Job]]:
    by_net: dict[str, list[_Job]] = {}
    for j in jobs:
        by_net.setdefault(repr(j.net.identity()), []).append(j)
    out = []
    for js in by_net.values():
        out.extend(js[i:i + size] for i in range(0, len(js), size))
    return out


def _workers_of(executor: Executor) -> int:
    n = getattr(executor, "_max_workers", None)
    if n:
        return int(n)
    client = getattr(executor, "_client", None)  # distributed.ClientExecutor
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:
            pass
    return os.cpu_count() or 1


def _target_packages() -> list[str]:
    import importlib.util

    return [m for m in ("hwsim.cpu", "hwsim.imc", "hwsim.xnor") if importlib.util.find_spec(m) is not None]


def _default_executor(n_jobs: int, workers: int | None) -> Executor | None:
    n = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n <= 1 or (workers is None and n_jobs < SERIAL_BELOW):
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: workers fork from a clean server process (no torch/OpenMP/Numba threads of this
    # process), with hwsim preloaded there so each worker starts in milliseconds.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hwsim", "hwsim.api", "nets", "mapping.trace"] + _target_packages())
    else:  # pragma: no cover - non-POSIX
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx)


def _progress_bar(total: int, progress: bool | None):
    """The sweep's bar, from its first point: on a terminal (None: :func:`hwsim.functional.show_progress`, off in
    tests, pipes, CI and under the CLI's ``--quiet``), or when ``progress`` is True."""
    from hwsim.functional import progress_bar

    return progress_bar(total, "hwsim sweep", progress, unit="pt", leave=True)


def sweep(nets: Any, specs_or_grid: Any, *, metrics: Sequence[str] | Mapping[str, Any] | None = None,
          functional: bool = False, executor: Executor | None = None, out: str | os.PathLike | None = None,
          progress: bool | None = None, workers: int | None = None, input_shape: Sequence[int] | None = None,
          seed: int = 0, target_options: Mapping[str, Any] | None = None, chunksize: int | None = None,
          data: Any = None):
    """Evaluate every net on every hardware point; one row per (net, spec), as a pandas DataFrame.

    nets: a zoo name, ``(name, {builder kwargs})``, ``{"name": ..., **kwargs}``, a torch module, a
        traced Graph, an ONNX / QONNX model (a path ending in ``.onnx`` or an ``onnx.ModelProto``, imported and
        verified once), or a list of those.
    specs_or_grid: a spec, a preset name, a list of those, or a grid ``(base, {field: [values]})``
        (Cartesian product through ``dataclasses.replace``; ``base`` a spec or a preset name).
    metrics: None for all report totals (and, with ``data``, the data metrics); a list of report attribute names
        and data metrics (``accuracy``, ``top1_agreement``, ``rel_rms_error``); or a mapping
        ``column -> attribute name | data metric | callable(report)`` (callables must pickle for process executors).
    functional: also run inference on a seeded random input (slower; checks the kernels run).
    data: ``(x, y)`` arrays (``y`` may be None), an ``x`` array, ``"digits"``, a ``.npz`` path (arrays ``x``, ``y``)
        or a :class:`hwsim.evaluate.Dataset`: every point runs inference on it (``functional`` implied; batches of
        :data:`DATA_BATCH`, device seed ``seed``) and gets the columns ``accuracy`` (with labels), ``top1_agreement``
        and ``rel_rms_error`` against the net's float (IR fp32) outputs (see :mod:`hwsim.evaluate`). Each net must
        take the data's samples (checked before any point runs).
    executor: any :class:`concurrent.futures.Executor` (``distributed.Client(...).get_executor()``
        for a Dask cluster); None: local processes (``workers`` of them, default all cores), or
        this process for sweeps under 16 points, for ``workers=1``, or (``workers`` not given)
        when timing the first two points shows that a pool would not save time (see POOL_START_S).
    out: results file (``.csv`` or ``.parquet``); finished points are appended as they complete,
        points already in it are not evaluated again.
    progress: a tqdm bar on stderr from the first point (None: when stderr is a terminal and no
        ``hwsim.functional.progress_default(False)`` — the CLI's ``--quiet`` — is in effect).
    Returns columns ``net, target, <spec fields>, spec_name, <metrics>, eval_s, error, key``
    (``eval_s`` in seconds; ``error`` empty for a successful point). A report figure named like a
    spec field gets a ``report_`` prefix: for the XNOR target ``luts``/``bram18`` are the device's
    resources and ``report_luts``/``report_bram18`` what the design uses.
    ``DataFrame.attrs`` says what happened to the results file: ``results_file`` (absolute path, or None),
    ``reused`` (rows taken from a previous run), ``computed`` (points evaluated now) and ``ignored`` (rows in the
    file from other settings, another data set, an older hwsim version or cost model, which are never reused: a row's
    key includes the hwsim version and the target's cost-model version, see
    :func:`~hwsim.codesign.points.cost_model_version`).

    Every argument is checked before any point runs (a bad ``out`` path, ``input_shape``, ``workers``, a grid
    value of the wrong type or NaN/inf is a one-line :class:`~hwsim.errors.HwsimError`); a missing folder of
    ``out`` is created.
    """
    _check_args(functional=functional, workers=workers, seed=seed, target_options=target_options,
                chunksize=chunksize, metrics=metrics, progress=progress, executor=executor)
    if out is not None:
        out = _results_path(out)
    refs = as_net_refs(nets, input_shape)
    points = expand_specs(specs_or_grid)
    if isinstance(metrics, Mapping):
        metrics_t = tuple((str(k), v) for k, v in metrics.items())
    elif metrics is not None:
        metrics_t = tuple(str(m) for m in metrics)
    else:
        metrics_t = None
    ds = _sweep_data(data, metrics_t, refs)
    settings = EvalSettings(bool(functional) or ds is not None, int(seed),
                            tuple(sorted((target_options or {}).items())), metrics_t, ds)
    extra = settings.key_extra()
    jobs = [_Job(r, p, point_key(r, p.data, extra)) for r in refs for p in points]

    store = ResultsStore(out) if out is not None else None
    done = store.keys() if store is not None else set()
    rows: dict[str, dict] = {}
    pending = [j for j in jobs if j.key not in done]
    invalid = [j for j in pending if j.point.spec is None]
    runnable = [j for j in pending if j.point.spec is not None]

    bar = _progress_bar(len(jobs), progress)
    bar.update(len(jobs) - len(pending))
    try:
        finished = [{**_base_row(j), "eval_s": 0.0, "error": j.point.error, KEY: j.key} for j in invalid]
        _record(finished, store, rows, bar)
        _run(runnable, settings, executor, workers, chunksize, store, rows, bar)
    finally:
        bar.close()
        if store is not None:
            store.finalize()
    df = _frame(jobs, rows, store)
    keys = {j.key for j in jobs}
    df.attrs.update(results_file=None if store is None else str(store.path.resolve()),
                    reused=len(jobs) - len(pending), computed=len(pending),
                    ignored=len(done - keys))
    return df


RESULTS_SUFFIXES = (".csv", ".parquet", ".pq")


def _results_path(out: str | os.PathLike) -> Path:
    from hwsim.specs import check_output_path

    if isinstance(out, (str, os.PathLike)) and Path(out).suffix.lower() not in RESULTS_SUFFIXES:
        raise HwsimError(f"results file {out}: use a .csv or .parquet file name")
    return check_output_path(out, "results file")
# what matplotlib's Agg canvas writes (FigureCanvasBase.get_supported_filetypes, less the raw/latex ones)
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".svgz")


def _check_args(*, functional, workers, seed, target_options, chunksize, metrics, progress, executor) -> None:
    """One-line errors, before any work, for arguments of :func:`sweep` of the wrong type."""
    def integer(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, np.integer))

    if not isinstance(functional, (bool, np.bool_)):
        raise HwsimError(f"sweep: functional must be true or false, got {functional!r}")
    if workers is not None and (not integer(workers) or workers < 1):
        raise HwsimError(f"sweep: workers must be a positive integer, got {workers!r}")
    if chunksize is not None and (not integer(chunksize) or chunksize < 1):
        raise HwsimError(f"sweep: chunksize must be a positive integer, got {chunksize!r}")
    if not integer(seed):
        raise HwsimError(f"sweep: seed must be an integer, got {seed!r}")
    if target_options is not None and (not isinstance(target_options, Mapping)
                                       or not all(isinstance(k, str) for k in target_options)):
        raise HwsimError(f"sweep: options (target options) must be a mapping of option names to values, "
                         f"got {target_options!r}")
    if metrics is not None and not isinstance(metrics, Mapping) and (
            isinstance(metrics, (str, bytes)) or not isinstance(metrics, Sequence)
            or not all(isinstance(m, str) for m in metrics)):
        raise HwsimError(f"sweep: metrics must be a list of report figure names (or a mapping), got {metrics!r}")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise HwsimError(f"sweep: progress must be true, false or None, got {progress!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise HwsimError(f"sweep: executor must be a concurrent.futures.Executor, got {type(executor).__name__}")


def _record(new_rows: list[dict], store: ResultsStore | None, rows: dict, bar) -> None:
    if store is not None:
        store.append(new_rows)
    for r in new_rows:
        rows[r[KEY]] = r
    bar.update(len(new_rows))


def _serial(jobs: list[_Job], settings: EvalSettings, store: ResultsStore | None, rows: dict, bar) -> None:
    """In this process, one point at a time: each is on file as soon as it is done."""
    for j in jobs:
        _record([_merge(j, evaluate_chunk(j.net, [(j.key, j.point.spec)], settings)[0])], store, rows, bar)


def _run(jobs: list[_Job], settings: EvalSettings, executor: Executor | None, workers: int | None,
         chunksize: int | None, store: ResultsStore | None, rows: dict, bar) -> None:
    if not jobs:
        return
    own = executor is None
    ex = _default_executor(len(jobs), workers) if own else executor
    if own and ex is not None and workers is None:  # time a couple of points here: is a pool worth it?
        probe, jobs = jobs[:PROBE_POINTS], jobs[PROBE_POINTS:]
        _serial(probe, settings, store, rows, bar)
        serial_s = rows[probe[-1].key].get("eval_s", 0.0) * len(jobs)
        n = _workers_of(ex)
        if n < 2 or serial_s * (0.8 - 1.0 / n) < POOL_START_S:
            ex.shutdown(wait=False, cancel_futures=True)
            ex = None
    if ex is None:
        _serial(jobs, settings, store, rows, bar)
        return
    size = chunksize or max(1, min(MAX_CHUNK, math.ceil(len(jobs) / (4 * _workers_of(ex)))))
    chunks = _chunks(jobs, size)
    futures = {}
    try:
        for ch in chunks:
            fut = ex.submit(evaluate_chunk, ch[0].net, [(j.key, j.point.spec) for j in ch], settings)
            futures[fut] = ch
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in done:
                ch = futures[fut]
                try:
                    result = fut.result()
                except Exception as e:  # the worker died or the task could not be sent
                    raise HwsimError(f"sweep worker failed ({type(e).__name__}: {e}); finished points are "
                                     "kept in the results file, run the sweep again to resume") from e
                by_key = {r[KEY]: r for r in result}
                _record([_merge(j, by_key[j.key]) for j in ch], store, rows, bar)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    finally:
        if own:
            ex.shutdown(wait=True, cancel_futures=True)


def _frame(jobs: list[_Job], rows: dict, store: ResultsStore | None):
    import pandas as pd

    order = [j.key for j in jobs]
    if store is not None:  # everything from the file: the same types whether run now or before
        df = store.load()
        if len(df) == 0:
            return pd.DataFrame(columns=["net", "target", "error", KEY])
        df = df.set_index(KEY, drop=False)
        df = df.loc[[k for k in order if k in df.index]].reset_index(drop=True)
    else:
        df = pd.DataFrame([rows[k] for k in order if k in rows])
    for col in ("error", "spec_name"):  # strings that may be empty (read back from a file as NaN)
        if col in df.columns:
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
    return _ordered(df)


def _ordered(df):
    tail = [c for c in ("eval_s", "error", KEY) if c in df.columns]
    return df[[c for c in df.columns if c not in tail] + tail]


# ----------------------------------------------------------------------------- Dask and YAML
def dask_executor(address: str, timeout_s: float = 10.0) -> Executor:
    """An executor on the Dask scheduler at ``address`` (``"tcp://host:8786"``); a clear
    :class:`HwsimError` when it cannot be reached within ``timeout_s``."""
    try:
        from distributed import Client
    except ImportError:
        raise HwsimError("a Dask address needs the 'distributed' package (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as e:
        raise HwsimError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s: {e}") from None
    return client.get_executor()


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

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

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
    if cfg.get("workers") is not None and not (integer(cfg["workers"]) and cfg["workers"] >= 1):
        raise bad("workers", "a positive integer")
    if "seed" in cfg and not integer(cfg["seed"]):
        raise bad("seed", "an integer")
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
