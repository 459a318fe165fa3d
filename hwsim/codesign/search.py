"""Multi-objective network × hardware search with Optuna (NSGA-II), resumable through SQLite.

One trial picks a zoo net, that net's builder keywords (width, depth, iterations T, ...), and
hardware fields (crossbar size, ADC or weight bits, cores, clock, ...), simulates the cost model
(``hwsim.simulate`` without an input) and returns the chosen report figures as the objectives.
A ``score_fn`` adds figures of its own (an accuracy or an accuracy proxy such as the parameter
count) that can be objectives too. With ``data=(x, y)`` each trial also runs the net on the data on its hardware
point (:func:`hwsim.evaluate.hardware_outputs`) and gets ``accuracy``, ``top1_agreement`` and ``rel_rms_error``
figures, which can be objectives (named in a list, accuracy and top-1 agreement are maximised).

The study lives in an Optuna storage — an SQLite file by default — so a search interrupted at any
point resumes where it stopped (``n_trials`` is the total to reach, finished trials count), and
several machines can share one study through a common database.

Search space, written as plain data::

    nets = {"resnet20": {"base_width": [8, 16]}, "itnet": {"iterations": [1, 2, 4]}}
    hw = {"rows": [64, 128, 256], "adc_bits": (4, 8)}   # list: a choice; (lo, hi): an int/float range
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.codesign.pareto import normalize_objectives, pareto_front
from hwsim.codesign.points import _coerce, torch_threads
from hwsim.errors import HwsimError, SpecError

__all__ = ["search", "SearchResult", "storage_url"]

DEFAULT_DB = "hwsim_search.db"


@dataclass(frozen=True)
class SearchResult:
    """``trials``: one row per trial (state, net, keywords, hardware fields, figures, error);
    ``front``: the non-dominated finished trials for ``objectives``."""

    trials: Any  # pandas.DataFrame
    front: Any  # pandas.DataFrame
    objectives: Mapping[str, str]
    study_name: str
    storage: str | None


def storage_url(storage: str | os.PathLike | None) -> str | None:
    """An Optuna storage URL: None -> ``sqlite:///<cwd>/hwsim_search.db``; a file path -> SQLite
    URL; ``":memory:"`` -> in memory (not resumable); a URL (``sqlite:///``, ``postgresql://``) as is."""
    if storage is None:
        return f"sqlite:///{Path(DEFAULT_DB).resolve()}"
    s = str(storage)
    if s == ":memory:":
        return None
    if "://" in s:
        return s
    return f"sqlite:///{Path(s).resolve()}"


def _storage(url: str | None):
    """An Optuna storage for ``url``. SQLite files run in WAL mode with ``synchronous=NORMAL``: a commit
    no longer waits for an fsync (measured ~20 ms per commit here, several commits per trial); the
    database stays consistent after a killed process (SQLite WAL guarantees), only a power loss can
    drop the last trials. Several machines should share a server database (``postgresql://...``)."""
    import optuna

    if url is None or not url.startswith("sqlite:///"):
        return url
    import sqlite3

    path = url[len("sqlite:///"):]

    def creator():
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return optuna.storages.RDBStorage(url, engine_kwargs={"creator": creator})


def _check_space(nets: Mapping[str, Mapping[str, Sequence]], base: Any, hw: Mapping[str, Any]) -> None:
    import nets as zoo

    if not nets:
        raise HwsimError("search: give at least one zoo net, e.g. {'resnet20': {}}")
    for name, kw in nets.items():
        zoo.info(name)
        bad = sorted(set(kw) - set(zoo.keywords(name)))
        if bad:
            raise HwsimError(f"search: net {name!r} has no keyword(s) {bad}; valid: {zoo.keywords(name)}")
        for k, vs in kw.items():
            if not isinstance(vs, (list, tuple)) or not vs:
                raise HwsimError(f"search: {name}.{k} needs a non-empty list of values, got {vs!r}")
    fields = [f.name for f in dataclasses.fields(base) if f.init]
    unknown = [k for k in hw if k not in fields]
    if unknown:
        raise SpecError(f"search: hardware field(s) {unknown} are not fields of {type(base).__name__}; "
                        f"valid fields: {sorted(fields)}")
    for k, vs in hw.items():
        if not isinstance(vs, (list, tuple)) or not vs:
            raise SpecError(f"search: hardware field {k!r} needs a list of values or a (lo, hi) range, got {vs!r}")


def _suggest(trial, name: str, values: Sequence) -> Any:
    """A list is a categorical choice; a 2-tuple of numbers is a range (int if both are ints)."""
    if isinstance(values, tuple) and len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              for v in values):
        lo, hi = values
        if isinstance(lo, int) and isinstance(hi, int):
            return trial.suggest_int(name, lo, hi)
        return trial.suggest_float(name, float(lo), float(hi))
    choices = [v.value if hasattr(v, "value") else v for v in values]
    return trial.suggest_categorical(name, choices)


class _Objective:
    """Callable Optuna objective; keeps traced graphs per (net, keywords) for the whole search."""

    def __init__(self, nets, base, hw, objectives, score_fn, input_shape, target_options, data=None):
        self.nets, self.base, self.hw, self.objectives = nets, base, hw, objectives
        self.score_fn, self.input_shape, self.options = score_fn, input_shape, dict(target_options or {})
        self.data = data
        self.graphs: dict[Any, Any] = {}
        self.refs: dict[Any, Any] = {}
        self.lock = threading.Lock()

    def graph(self, name: str, kw: dict):
        import nets as zoo
        from hwsim.api import as_graph

        key = (name, tuple(sorted(kw.items())))
        with self.lock:
            if key not in self.graphs:
                shape = self.input_shape or zoo.info(name).input_shape
                with torch_threads(1):
                    self.graphs[key] = as_graph(zoo.get(name, **kw), shape)
            return self.graphs[key]

    def data_figures(self, name: str, kw: dict, graph, spec) -> dict[str, float]:
        """accuracy (with labels), top1_agreement, rel_rms_error of the trial's net and hardware on the data."""
        from hwsim.codesign.sweep import DATA_BATCH
        from hwsim.evaluate import check_data, data_metrics, hardware_outputs, reference_outputs

        size = 1 if graph.batch_fixed else DATA_BATCH
        key = (name, tuple(sorted(kw.items())))
        with self.lock:
            if key not in self.refs:
                check_data(self.data, graph)
                self.refs[key] = reference_outputs(graph, self.data, size)
        batches = [self.data.x[i:i + size] for i in range(0, len(self.data), size)]
        return data_metrics(hardware_outputs(graph, spec, batches, 0, self.options), self.refs[key], self.data.y)

    def __call__(self, trial):
        import optuna

        from hwsim.api import simulate
        from hwsim.codesign.sweep import report_metrics

        name = trial.suggest_categorical("net", list(self.nets))
        kw = {k: _suggest(trial, f"{name}.{k}", vs) for k, vs in self.nets[name].items()}
        changes = {k: _suggest(trial, f"hw.{k}", vs) for k, vs in self.hw.items()}
        try:
            spec = dataclasses.replace(self.base, **{k: _coerce(type(self.base), k, v) for k, v in changes.items()})
            graph = self.graph(name, kw)
            rep = simulate(graph, spec, **self.options).report
            figures = report_metrics(rep)
            figures["params"] = graph.param_count
            if self.data is not None:
                figures.update(self.data_figures(name, kw, graph, spec))
            if self.score_fn is not None:
                figures.update(self.score_fn(name, dict(kw), graph, rep))
        except (HwsimError, ValueError, TypeError) as e:  # an invalid point: recorded, not fatal
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise optuna.TrialPruned(str(e)) from None
        missing = [o for o in self.objectives if o not in figures]
        if missing:
            raise HwsimError(f"search: objective(s) {missing} are not report figures or score_fn outputs; "
                             f"available: {sorted(figures)}")
        # one storage write for all figures (a write per figure costs ~10 ms each with SQLite)
        trial.set_user_attr("figures", {k: (v.item() if hasattr(v, "item") else v) for k, v in figures.items()
                                        if isinstance(v, (bool, int, float, str)) or hasattr(v, "item")})
        return tuple(float(figures[o]) for o in self.objectives)


def search(nets: Mapping[str, Mapping[str, Sequence]], base_spec: Any, hw: Mapping[str, Any] | None = None, *,
           objectives: Mapping[str, str] | Sequence[str] = ("latency_s", "energy_j"), n_trials: int = 50,
           storage: str | os.PathLike | None = None, study_name: str = "hwsim-search", seed: int = 0,
           population_size: int | None = None, score_fn: Callable[..., Mapping[str, float]] | None = None,
           input_shape: Sequence[int] | None = None, target_options: Mapping[str, Any] | None = None,
           n_jobs: int = 1, data: Any = None) -> SearchResult:
    """Search nets × hardware with NSGA-II; returns every trial and the Pareto front.

    nets: ``{zoo name: {builder keyword: [values]}}``. base_spec: a spec or preset name.
    hw: ``{spec field: [values] | (lo, hi)}``. objectives: ``{figure: "min"|"max"}`` or a list
    (minimised) of report figures (``latency_s``, ``energy_j``, ``edp_js``, ``area_mm2``, ...),
    ``params`` (distinct parameters of the net) or keys returned by ``score_fn(net, kwargs, graph,
    report) -> {name: value}``, and with ``data`` ``accuracy``, ``top1_agreement``, ``rel_rms_error``
    (``accuracy`` and ``top1_agreement`` named in a list are maximised). n_trials: total finished trials the study
    should have (a resumed study runs only the rest). storage: see :func:`storage_url` (SQLite file by default).
    data: ``(x, y)`` arrays (``y`` may be None), ``"digits"`` or a ``.npz`` path (see :func:`hwsim.sweep`); every
    net must take its samples and an accuracy objective needs labels (checked before the first trial).
    """
    import optuna

    from hwsim.api import as_spec

    base = as_spec(base_spec)
    hw = dict(hw or {})
    obj = normalize_objectives(objectives)
    _check_space(nets, base, hw)
    ds = _search_data(data, obj, nets, input_shape)
    url = storage_url(storage)
    store = _storage(url)
    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size or 20)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=store, study_name=study_name, sampler=sampler, load_if_exists=True,
                                    directions=["minimize" if d == "min" else "maximize" for d in obj.values()])
        if list(study.user_attrs.get("objectives", obj)) != list(obj):
            raise HwsimError(f"study {study_name!r} in {url} was run with objectives "
                             f"{study.user_attrs['objectives']}, not {list(obj)}: use another study_name")
        study.set_user_attr("objectives", list(obj))
        finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        remaining = max(0, int(n_trials) - finished)
        if remaining:
            study.optimize(_Objective(nets, base, hw, obj, score_fn, input_shape, target_options, ds),
                           n_trials=remaining, n_jobs=n_jobs, catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = _trials_frame(study, obj)
    done = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    front = pareto_front(done, obj) if len(done) else done
    return SearchResult(trials, front, obj, study_name, url)


def _search_data(data: Any, objectives: Mapping[str, str], nets: Mapping[str, Any], input_shape: Any):
    """The search's data set (None without one), checked against the objectives (a data metric without data,
    accuracy without labels) and each net's input shape, with the one-line errors of a sweep."""
    from hwsim.codesign.points import ZooNet
    from hwsim.codesign.sweep import _sweep_data

    shape = None if input_shape is None else tuple(input_shape)
    return _sweep_data(data, list(objectives), [ZooNet(name, (), shape) for name in nets])


def _trials_frame(study, objectives: Mapping[str, str]):
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        row.update(t.params)
        attrs = dict(t.user_attrs)
        row.update(attrs.pop("figures", {}))
        row.update(attrs)
        row.setdefault("error", "")
        rows.append(row)
    df = pd.DataFrame(rows)
    return df
