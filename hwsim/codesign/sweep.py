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

This module drives the sweep (executors, chunks, the results file); the worker side (evaluating a chunk of points)
is :mod:`hwsim.codesign.sweep_eval`, sweep files (YAML) :mod:`hwsim.codesign.sweep_yaml`; their public names stay
importable from here.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.codesign.points import GraphNet, SpecPoint, ZooNet, as_net_refs, expand_specs, point_key
from hwsim.codesign.store import KEY, ResultsStore
from hwsim.codesign.sweep_eval import (  # noqa: F401 (the worker side; re-exported)
    _GRAPHS,
    _TRACES,
    DATA_BATCH,
    EvalSettings,
    _graph,
    _sweep_data,
    clear_graph_cache,
    evaluate_chunk,
    figure_names,
    report_metrics,
    sweep_dataset,
)
from hwsim.codesign.sweep_yaml import _YAML_KEYS, YAML_HELP, sweep_from_yaml  # noqa: F401 (re-exported)
from hwsim.errors import HwsimError
from hwsim.specs import is_integer

__all__ = ["sweep", "sweep_from_yaml", "report_metrics", "dask_executor", "clear_graph_cache"]

SERIAL_BELOW = 16  # points: below this a sweep with no executor runs in this process
PROBE_POINTS = 2  # points run here first to time one evaluation (the first one also traces the net)
# Start-up cost of a local pool in s (forkserver, imports, one trace per worker; ~3 s measured on a
# 2-core machine, benchmarks/bench_sweep.py). A pool is used when start-up + serial/n beats 80 % of
# serial, i.e. serial > POOL_START_S / (0.8 - 1/n): 10 s for 2 workers, 4.4 s for 8.
POOL_START_S = 3.0
MAX_CHUNK = 32  # points per task: bounds the work lost to a kill and the progress-bar granularity


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

    return [m for m in ("hwsim.cpu", "hwsim.imc", "hwsim.fpga") if importlib.util.find_spec(m) is not None]


def check_executor(executor: Any, who: str) -> None:
    """An executor hwsim can use, checked before any work: it has ``submit``, and a process pool does not fork this
    process (Linux's default start method: a child forked after torch / Numba started their thread pools deadlocks
    or dies, as their documentation warns)."""
    if executor is None:
        return
    if not callable(getattr(executor, "submit", None)):
        raise HwsimError(f"{who}: executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    from concurrent.futures import ProcessPoolExecutor

    if isinstance(executor, ProcessPoolExecutor):
        ctx = getattr(executor, "_mp_context", None)
        method = ctx.get_start_method() if ctx is not None else None
        if method == "fork":
            raise HwsimError(f"{who}: a ProcessPoolExecutor that forks (Linux's default start method) hangs or dies "
                             "once torch has started its threads: pass mp_context=multiprocessing.get_context("
                             "'forkserver') (or 'spawn'), or leave executor=None for hwsim's own pool")


def worker_failure(who: str, e: BaseException) -> str:
    """The message of a worker that died: a broken pool most often means a script that starts workers without the
    ``if __name__ == "__main__":`` guard (a forkserver / spawn worker imports the main module again)."""
    from concurrent.futures.process import BrokenProcessPool

    hint = ("; a script that runs hwsim on worker processes must make its calls under `if __name__ == "
            "\"__main__\":` (each worker imports the script again)") if isinstance(e, BrokenProcessPool) else ""
    return f"{who}: a worker failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}){hint}"


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


def _metrics_tuple(metrics: Sequence[str] | Mapping[str, Any] | None, points) -> tuple | None:
    """``metrics`` as :class:`EvalSettings` holds it: None, names, or (column, name-or-callable) pairs; a name no
    swept target's report has, or no metric at all, is a one-line error before any point runs."""
    from hwsim.evaluate import DATA_METRICS
    from hwsim.specs import spec_target
    from hwsim.target import load_target

    if metrics is None:
        return None
    out = (tuple((str(k), v) for k, v in metrics.items()) if isinstance(metrics, Mapping)
           else tuple(str(m) for m in metrics))
    if not out:
        raise HwsimError("sweep: metrics is empty: name at least one (or leave metrics out for every figure)")
    for target in {spec_target(p.spec) for p in points if p.spec is not None}:
        load_target(target)  # imports the target's report class
    known = set(DATA_METRICS) | figure_names()
    for m in out:
        how = m if isinstance(m, str) else m[1]
        if isinstance(how, str) and how not in known:
            raise HwsimError(f"sweep: metric {how!r} is not a figure of any report; e.g. latency_s, energy_j, "
                             f"fits_on_chip, {', '.join(DATA_METRICS)}")
    return out


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
    out = None if out is None else _results_path(out)
    points = expand_specs(specs_or_grid)
    _check_target_options(points, target_options or {})
    metrics_t = _metrics_tuple(metrics, points)  # before any net is traced
    ds = None if data is None else sweep_dataset(data)
    refs = as_net_refs(nets, input_shape, None if ds is None else (1,) + tuple(ds.x.shape[1:]))
    ds = _sweep_data(ds, metrics_t, refs)
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


def _check_target_options(points, options: Mapping[str, Any]) -> None:
    """Every target option is one each swept target's ``simulate`` takes (one line naming it, before any point
    runs; :func:`hwsim.api.check_options`)."""
    from hwsim.api import check_options
    from hwsim.specs import spec_target
    from hwsim.target import load_target

    for target in sorted({spec_target(p.spec) for p in points if p.spec is not None}):
        check_options(load_target(target).simulate, target, options)


def _check_args(*, functional, workers, seed, target_options, chunksize, metrics, progress, executor) -> None:
    """One-line errors, before any work, for arguments of :func:`sweep` of the wrong type."""
    if not isinstance(functional, (bool, np.bool_)):
        raise HwsimError(f"sweep: functional must be true or false, got {functional!r}")
    if workers is not None and (not is_integer(workers) or workers < 1):
        raise HwsimError(f"sweep: workers must be a positive integer, got {workers!r}")
    if chunksize is not None and (not is_integer(chunksize) or chunksize < 1):
        raise HwsimError(f"sweep: chunksize must be a positive integer, got {chunksize!r}")
    if not is_integer(seed) or seed < 0:
        raise HwsimError(f"sweep: seed must be a non-negative integer, got {seed!r}")
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
    check_executor(executor, "sweep")


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
                    raise HwsimError(worker_failure("sweep", e) + "; finished points are kept in the results "
                                     "file, run the sweep again to resume") from e
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
    except ValueError as e:  # distributed's address parser: "missing port number in address ..."
        raise HwsimError(f"not a Dask scheduler address: {address!r} ({e}); e.g. tcp://host:8786") from None
    return client.get_executor()
