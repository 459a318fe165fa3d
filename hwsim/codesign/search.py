"""Multi-objective network × hardware search with Optuna (NSGA-II), resumable through SQLite.

One trial picks a zoo net, that net's builder keywords (width, depth, iterations T, ...), and
hardware fields (crossbar size, ADC or weight bits, cores, clock, ...), simulates the cost model
(``hwsim.simulate`` without an input) and returns the chosen report figures as the objectives.
A ``score_fn`` adds figures of its own (an accuracy or an accuracy proxy such as the parameter
count) that can be objectives too. With ``data=(x, y)`` each trial also runs the net on the data on its hardware
point (:func:`hwsim.evaluate.hardware_outputs`) and gets ``accuracy``, ``top1_agreement`` and ``rel_rms_error``
figures, which can be objectives (named in a list, accuracy and top-1 agreement are maximised).

Checked before the first trial: the arguments, the space (every hardware value of the field's type, ranges with
lo <= hi), and one *probe* — each net at the first value of its keywords on the base spec, simulated and scored —
which shows that every objective is a figure the trials produce and that ``score_fn`` runs and gives a finite
number for each objective it provides.

The study lives in an Optuna storage, in memory by default; with ``storage=`` a file (SQLite) or a database URL a
search interrupted at any point resumes where it stopped (``n_trials`` is the total to reach) and several machines
can share one study. A stored study carries a *fingerprint* of everything that determines a trial's result (base
spec, hardware space, nets with the zoo's source digest, data digest, objectives and directions, ``score_fn``'s
source, target options, input shape, hwsim and cost-model versions); resuming it with another fingerprint is
refused, so a search never returns trials of a different search. (The default used to be ``./hwsim_search.db``
with study ``hwsim-search``: every search run in one folder, or one notebook, resumed the first one's study.)

Search space, written as plain data::

    nets = {"resnet20": {"base_width": [8, 16]}, "itnet": {"iterations": [1, 2, 4]}}
    hw = {"rows": [64, 128, 256], "adc_bits": (4, 8)}   # list: a choice; (lo, hi): an int/float range
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.codesign.pareto import normalize_objectives, pareto_front
from hwsim.codesign.points import _coerce, check_shape, torch_threads
from hwsim.codesign.search_space import (
    ScoreFnError,
    _check_args,
    _check_resume,
    _check_space,
    _first,
    _fn_name,
    _suggest,
    fingerprint,
    range_kind,
)
from hwsim.errors import HwsimError, SpecError, first_line

__all__ = ["search", "SearchResult", "storage_url", "fingerprint", "ScoreFnError"]



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
    """An Optuna storage URL: None or ``":memory:"`` -> None (in memory, not resumable); a file path -> SQLite URL
    (its folder must exist); a URL (``sqlite:///``, ``postgresql://``) as is."""
    if storage is None or str(storage) == ":memory:":
        return None
    s = os.fspath(storage) if isinstance(storage, os.PathLike) else storage
    if not isinstance(s, str) or not s:
        raise HwsimError(f"search: storage must be a file path, a database URL or ':memory:', got {storage!r}")
    if "://" in s:
        return s
    path = Path(s).resolve()
    if path.is_dir() or not path.parent.is_dir():
        raise HwsimError(f"search: storage {s!r} must be a file in an existing folder")
    return f"sqlite:///{path}"


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


# ----------------------------------------------------------------------------- input checks
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
        from hwsim.evaluate import check_data, data_figures, reference_outputs

        size = 1 if graph.batch_fixed else DATA_BATCH
        key = (name, tuple(sorted(kw.items())))
        with self.lock:
            if key not in self.refs:
                check_data(self.data, graph)
                self.refs[key] = reference_outputs(graph, self.data, size)
        return data_figures(graph, spec, self.data, self.refs[key], 0, tuple(sorted(self.options.items())), size)

    def scores(self, name: str, kw: dict, graph, rep, finite: bool = False) -> dict[str, Any]:
        """``score_fn``'s figures; a raise, a non-mapping or a non-number objective (with ``finite``, a NaN or
        infinite one too) is a :class:`ScoreFnError`."""
        fn = _fn_name(self.score_fn)
        try:
            out = self.score_fn(name, dict(kw), graph, rep)
        except Exception as e:  # the user's code: any exception, named in one line
            raise ScoreFnError(f"search: score_fn {fn} raised {type(e).__name__}: {first_line(e)} "
                               f"(net {name} {kw})") from None
        if not isinstance(out, Mapping):
            raise ScoreFnError(f"search: score_fn {fn} must return {{name: number}}, got {type(out).__name__}")
        for k in self.objectives:
            v = out.get(k, 0.0)
            if not isinstance(v, numbers.Real) or (finite and not math.isfinite(v)):
                raise ScoreFnError(f"search: score_fn {fn} returned {v!r} for objective {k!r} (net {name} {kw}): "
                                   "an objective must be a finite number")
        return dict(out)

    def figures(self, name: str, kw: dict, spec, probe: bool = False) -> dict[str, Any]:
        """The trial's figures: the report's totals, ``params``, the data metrics (not in the probe), score_fn's."""
        from hwsim.api import simulate
        from hwsim.codesign.sweep import report_metrics

        graph = self.graph(name, kw)
        rep = simulate(graph, spec, **self.options).report
        figures = report_metrics(rep)
        figures["params"] = graph.param_count
        if self.data is not None and not probe:
            figures.update(self.data_figures(name, kw, graph, spec))
        if self.score_fn is not None:
            figures.update(self.scores(name, kw, graph, rep, finite=probe))
        return figures

    def probe(self) -> None:
        """Before any trial: each net at the first value of its keywords on the base spec until one simulates;
        every objective must be one of its figures (or a data metric), a number, finite where score_fn gives it."""
        from hwsim.evaluate import DATA_METRICS

        errors = []
        for name, space in self.nets.items():
            kw = {k: _first(vs) for k, vs in space.items()}
            try:
                figs = self.figures(name, kw, self.base, probe=True)
            except ScoreFnError:
                raise
            except (HwsimError, ValueError, TypeError) as e:
                errors.append(f"{name} {kw}: {type(e).__name__}: {first_line(e)}")
                continue
            extra = DATA_METRICS if self.data is not None else ()
            missing = [o for o in self.objectives if o not in figs and o not in extra]
            if missing:
                raise HwsimError(f"search: objective(s) {missing} are not report figures"
                                 f"{', data metrics' if extra else ''} or score_fn outputs; available: "
                                 f"{sorted(set(figs) | set(extra))}")
            text = [o for o in self.objectives if not isinstance(figs.get(o, 0.0), numbers.Real)]
            if text:
                raise HwsimError(f"search: objective {text[0]!r} is not a number ({figs[text[0]]!r})")
            return
        raise HwsimError(f"search: no net simulates on the base spec {getattr(self.base, 'name', '')!s} at the first "
                         f"value of its keywords: {errors[0]}")

    def __call__(self, trial):
        import optuna

        name = trial.suggest_categorical("net", list(self.nets))
        kw = {k: _suggest(trial, f"{name}.{k}", vs) for k, vs in self.nets[name].items()}
        changes = {k: _suggest(trial, f"hw.{k}", vs, range_kind(type(self.base), k, vs)) for k, vs in self.hw.items()}
        try:
            spec = dataclasses.replace(self.base, **{k: _coerce(type(self.base), k, v) for k, v in changes.items()})
            figures = self.figures(name, kw, spec)
        except ScoreFnError:
            raise  # the user's function is wrong: stop the search (the trial is FAIL, not counted)
        except (HwsimError, ValueError, TypeError) as e:  # an invalid point: recorded, not fatal
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise optuna.TrialPruned(str(e)) from None
        missing = [o for o in self.objectives if o not in figures]
        if missing:
            raise HwsimError(f"search: objective(s) {missing} are not figures of net {name} {kw}; "
                             f"available: {sorted(figures)}")
        # one storage write for all figures (a write per figure costs ~10 ms each with SQLite)
        trial.set_user_attr("figures", {k: (v.item() if hasattr(v, "item") else v) for k, v in figures.items()
                                        if isinstance(v, (bool, int, float, str)) or hasattr(v, "item")})
        values = tuple(float(figures[o]) for o in self.objectives)
        bad = [f"{o}={v}" for o, v in zip(self.objectives, values) if not math.isfinite(v)]
        if bad:  # Optuna would mark the trial FAIL with a log line only: an error row instead
            trial.set_user_attr("error", f"objective value(s) {', '.join(bad)} not finite")
            raise optuna.TrialPruned(trial.user_attrs["error"])
        return values



# ----------------------------------------------------------------------------- the search
def search(nets: Mapping[str, Mapping[str, Sequence]], base_spec: Any, hw: Mapping[str, Any] | None = None, *,
           objectives: Mapping[str, str] | Sequence[str] = ("latency_s", "energy_j"), n_trials: int = 50,
           storage: str | os.PathLike | None = None, study_name: str = "hwsim-search", seed: int = 0,
           population_size: int | None = None, score_fn: Callable[..., Mapping[str, float]] | None = None,
           input_shape: Sequence[int] | None = None, target_options: Mapping[str, Any] | None = None,
           n_jobs: int = 1, data: Any = None) -> SearchResult:
    """Search nets × hardware with NSGA-II; returns every trial and the Pareto front.

    nets: ``{zoo name: {builder keyword: [values]}}``. base_spec: a spec or preset name.
    hw: ``{spec field: [values] | (lo, hi)}``: a list is a choice; a (lo, hi) range is searched by the field's
    type, so ``{"adc_noise_lsb": (0, 2)}`` (a float field) tries reals in [0, 2] and an int field the integers
    (a net keyword's range is integer when both bounds are ints). objectives: ``{figure: "min"|"max"}`` or a list
    (minimised) of report figures (``latency_s``, ``energy_j``, ``edp_js``, ``area_mm2``, ...),
    ``params`` (distinct parameters of the net) or keys returned by ``score_fn(net, kwargs, graph,
    report) -> {name: value}``, and with ``data`` ``accuracy``, ``top1_agreement``, ``rel_rms_error``
    (``accuracy`` and ``top1_agreement`` named in a list are maximised). n_trials: total finished trials (COMPLETE,
    and PRUNED: an invalid hardware point or a non-finite objective, kept as a row with its ``error``) the study
    should have; a resumed study runs only the rest; FAIL trials (a search stopped by an exception) do not count.
    storage: None (in memory), a file (SQLite) or a URL, see :func:`storage_url`; a stored study is resumed only by
    the same search (:func:`fingerprint`), another one is refused: pass another ``study_name``.
    data: ``(x, y)`` arrays (``y`` may be None), ``"digits"`` or a ``.npz`` path (see :func:`hwsim.sweep`); every
    net must take its samples and an accuracy objective needs labels (checked before the first trial).
    score_fn: an exception in it, or an objective it gives that is not a number, stops the search with a
    :class:`ScoreFnError`; a NaN objective is refused at the probe and an error row in a trial.
    """
    import optuna

    from hwsim.api import as_spec

    _check_args(n_trials, population_size, n_jobs, seed, study_name, score_fn, target_options)
    base = as_spec(base_spec)
    if not isinstance(hw or {}, Mapping):
        raise SpecError(f"search: hw must be {{field: [values] | (lo, hi)}}, got {type(hw).__name__}")
    hw = dict(hw or {})
    if isinstance(objectives, (Mapping, list, tuple, set, frozenset)) and not objectives:
        raise HwsimError(f"search: objectives must name at least one figure (e.g. ['latency_s', 'energy_j']), "
                         f"got {objectives!r}")
    obj = normalize_objectives(objectives)
    _check_space(nets, base, hw)
    shape = check_shape(input_shape)
    ds = _search_data(data, obj, nets, shape)
    objective = _Objective(nets, base, hw, obj, score_fn, shape, target_options, ds)
    objective.probe()
    url = storage_url(storage)
    fp = fingerprint(nets, base, hw, obj, score_fn, shape, target_options, ds)
    directions = ["minimize" if d == "min" else "maximize" for d in obj.values()]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _open_study(url, study_name, seed, population_size, directions, fp)
        counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=counted))
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, n_jobs=n_jobs, catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = _trials_frame(study)
    done = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    front = pareto_front(done, obj) if len(done) else done
    return SearchResult(trials, front, obj, study_name, url)


def _open_study(url: str | None, study_name: str, seed: int, population_size: int | None,
                directions: list[str], fp: Mapping[str, str]):
    """The study, created or loaded and checked against this search's fingerprint, which it then carries."""
    import optuna

    def create():
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size or 20)
        return optuna.create_study(storage=_storage(url), study_name=study_name, sampler=sampler,
                                   load_if_exists=True, directions=directions)

    try:
        study = create()
        _check_resume(study, fp, url, study_name)
        if [d.name.lower() for d in study.directions] != directions:  # no finished trial (checked): start afresh
            optuna.delete_study(study_name=study_name, storage=_storage(url))
            study = create()
        study.set_user_attr("fingerprint", dict(fp))
    except HwsimError:
        raise
    except Exception as e:  # the storage's driver (SQLAlchemy, sqlite3): a path or URL it cannot open
        raise HwsimError(f"search: cannot open study {study_name!r} in {url}: {type(e).__name__}: "
                         f"{first_line(e)}") from None
    return study


def _search_data(data: Any, objectives: Mapping[str, str], nets: Mapping[str, Any], input_shape: Any):
    """The search's data set (None without one), checked against the objectives (a data metric without data,
    accuracy without labels) and each net's input shape, with the one-line errors of a sweep."""
    from hwsim.codesign.points import ZooNet
    from hwsim.codesign.sweep import _sweep_data

    return _sweep_data(data, list(objectives), [ZooNet(name, (), input_shape) for name in nets], who="search")


def _trials_frame(study):
    """One row per trial: number, state, the sampled parameters, the figures and the error ("" when none)."""
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
    return pd.DataFrame(rows)
