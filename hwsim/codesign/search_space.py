"""The search's arguments and space, checked before the first trial, and the fingerprint of a stored study
(:mod:`hwsim.codesign.search`: what a resumed study must match)."""
from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from hwsim.codesign.points import _check_grid_value, json_digest
from hwsim.errors import HwsimError, SpecError
from hwsim.specs import is_integer

__all__ = ["fingerprint", "range_kind", "ScoreFnError"]


class ScoreFnError(HwsimError):
    """The user's ``score_fn`` raised, or returned something that is not ``{name: number}``."""


def _is_range(values: Any) -> bool:
    """A 2-tuple of real numbers is a range; any other list or tuple is a choice."""
    return isinstance(values, tuple) and len(values) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


def _check_args(n_trials, population_size, n_jobs, seed, study_name, score_fn, target_options) -> None:
    """One-line errors for arguments Optuna would refuse late (or accept wrongly: ``n_trials=2.5``)."""
    if not is_integer(n_trials) or n_trials < 0:
        raise HwsimError(f"search: n_trials must be an integer >= 0 (the total of finished trials), got {n_trials!r}")
    if population_size is not None and (not is_integer(population_size) or population_size < 2):
        raise HwsimError(f"search: population_size must be an integer >= 2, got {population_size!r}")
    if not is_integer(n_jobs) or not (n_jobs >= 1 or n_jobs == -1):
        raise HwsimError(f"search: n_jobs must be an integer >= 1 (or -1: one per CPU), got {n_jobs!r}")
    if not is_integer(seed) or not 0 <= seed < 2**32:
        raise HwsimError(f"search: seed must be an integer in [0, 2**32), got {seed!r}")
    if not isinstance(study_name, str) or not study_name.strip():
        raise HwsimError(f"search: study_name must be a non-empty string, got {study_name!r}")
    if score_fn is not None and not callable(score_fn):
        raise ScoreFnError(f"search: score_fn must be callable (net, kwargs, graph, report) -> {{name: number}}, "
                           f"got {type(score_fn).__name__}")
    if target_options is not None and not isinstance(target_options, Mapping):
        raise HwsimError(f"search: target_options must be a mapping, got {type(target_options).__name__}")


def _check_values(where: str, values: Any, err: type[HwsimError]) -> None:
    """A non-empty list (a choice of numbers, strings, bools) or a (lo, hi) range of finite numbers with lo <= hi."""
    if not isinstance(values, (list, tuple)) or not values:
        raise err(f"search: {where} needs a non-empty list of values or a (lo, hi) range, got {values!r}")
    if _is_range(values):
        lo, hi = values
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise err(f"search: {where} range {values!r} needs finite lo <= hi")
        return
    for v in values:
        v = v.value if hasattr(v, "value") else v
        if not (v is None or isinstance(v, (bool, int, float, str, numbers.Real))):
            raise err(f"search: {where} value {v!r} is not a number, string or bool")


def _check_space(nets: Any, base: Any, hw: Mapping[str, Any]) -> None:
    import nets as zoo

    if not isinstance(nets, Mapping) or not nets:
        raise HwsimError("search: nets must be a non-empty {zoo name: {keyword: [values]}}, e.g. {'resnet20': {}}")
    for name, kw in nets.items():
        zoo.info(name)
        if not isinstance(kw, Mapping):
            raise HwsimError(f"search: net {name!r} needs a {{keyword: [values]}} mapping, got {kw!r}")
        bad = sorted(set(kw) - set(zoo.keywords(name)))
        if bad:
            raise HwsimError(f"search: net {name!r} has no keyword(s) {bad}; valid: {zoo.keywords(name)}")
        for k, vs in kw.items():
            _check_values(f"{name}.{k}", vs, HwsimError)
    fields = [f.name for f in dataclasses.fields(base) if f.init]
    unknown = [k for k in hw if k not in fields]
    if unknown:
        raise SpecError(f"search: hardware field(s) {unknown} are not fields of {type(base).__name__}; "
                        f"valid fields: {sorted(fields)}")
    for k, vs in hw.items():
        _check_values(f"hardware field {k!r}", vs, SpecError)
        for v in vs:  # of the field's type ('many' for cores): no point could use it
            try:
                _check_grid_value(type(base), k, v)
            except SpecError as e:
                raise SpecError(f"search: {e}".replace("grid field", "hardware field", 1)) from None


def range_kind(cls: type | None, field: str | None, values: Sequence) -> str | None:
    """``"int"`` or ``"float"``: how a (lo, hi) range is searched (None for a choice). A hardware field's type
    decides (``IMCSpec.adc_noise_lsb: float`` with ``(0, 2)`` searches the reals in [0, 2]; an int field searches
    the integers in [ceil(lo), floor(hi)]); elsewhere (a net keyword, a field of another type) the bounds do: int if
    both are ints."""
    if not _is_range(values):
        return None
    from hwsim.codesign.points import _hints

    tp = _hints(cls).get(field) if cls is not None and field is not None else None
    args = set(typing.get_args(tp)) - {type(None)} if typing.get_origin(tp) in (typing.Union, types.UnionType) \
        else {tp}
    if args == {float}:
        return "float"
    if args == {int}:
        return "int"
    return "int" if all(is_integer(v) for v in values) else "float"


def _suggest(trial, name: str, values: Sequence, kind: str | None = None) -> Any:
    """A list is a categorical choice; a 2-tuple of numbers is a range of ``kind`` (:func:`range_kind`; None: int
    if both bounds are ints)."""
    if _is_range(values):
        lo, hi = values
        kind = kind or range_kind(None, None, values)
        if kind == "int":
            return trial.suggest_int(name, math.ceil(lo), math.floor(hi))
        return trial.suggest_float(name, float(lo), float(hi))
    from hwsim.specs import plain_value

    choices = [plain_value(v) for v in values]
    return trial.suggest_categorical(name, choices)


def _first(values: Sequence) -> Any:
    v = getattr(values[0], "value", values[0])
    return int(v) if is_integer(v) else v


# ----------------------------------------------------------------------------- fingerprint
def _space(values: Sequence, kind: str | None = None) -> list:
    """A space's identity; a float range with int bounds (searched as floats since the field's type decides) is
    marked, so a study stored when such bounds meant integers is not resumed."""
    from hwsim.specs import plain_value

    what = "choice" if not _is_range(values) else \
        "float range" if kind == "float" and all(is_integer(v) for v in values) else "range"
    return [what, [plain_value(v) for v in values]]


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _callable_id(fn: Any) -> Any:
    """A score_fn's module, name and source (its code object where the source is not available). Data it reads
    from outside (globals, closures) is not covered: change ``study_name`` when that changes."""
    if fn is None:
        return None
    try:
        body = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        body = repr((code.co_code, code.co_consts, code.co_names)) if code is not None else repr(type(fn))
    return [getattr(fn, "__module__", ""), _fn_name(fn), body]


def fingerprint(nets: Mapping[str, Mapping[str, Sequence]], base: Any, hw: Mapping[str, Any],
                objectives: Mapping[str, str], score_fn: Any = None, input_shape: Any = None,
                target_options: Mapping[str, Any] | None = None, data: Any = None) -> dict[str, str]:
    """``{part: digest}`` of everything that determines a trial's result, part by part so that a refused resume
    can say what differs. Not in it: ``seed``, ``population_size``, ``n_jobs``, ``n_trials`` (they choose which
    points are tried, not what a point gives)."""
    import hwsim
    from hwsim.codesign.points import ZooNet, cost_model_version
    from hwsim.specs import spec_target, spec_to_dict

    target = spec_target(base)
    parts = {
        "base spec": spec_to_dict(base),
        "hardware space": {k: _space(v, range_kind(type(base), k, v)) for k, v in hw.items()},
        "nets": {n: [ZooNet(n, (), input_shape).key_identity(), {k: _space(v) for k, v in kw.items()}]
                 for n, kw in nets.items()},
        "data": None if data is None else data.digest,
        "objectives": dict(objectives),
        "score_fn": _callable_id(score_fn),
        "target options": dict(target_options or {}),
        "hwsim/cost-model version": [hwsim.__version__, cost_model_version(target)],
    }
    return {k: json_digest(v) for k, v in parts.items()}


def _check_resume(study, fp: Mapping[str, str], url: str | None, study_name: str) -> None:
    """Refuse to resume a study whose finished trials come from a search with another fingerprint. A study without
    finished trials has nothing to reuse: it takes this search's fingerprint."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    n = len(study.get_trials(deepcopy=False, states=states))
    if not n:
        return
    where = f"study {study_name!r} in {url}"
    old = study.user_attrs.get("fingerprint")
    if not isinstance(old, dict):
        raise HwsimError(f"search: {where} has {n} trials stored without a fingerprint (an older hwsim), so they "
                         "cannot be checked against this search: pass another study_name")
    diff = [k for k in fp if old.get(k) != fp[k]]
    if diff:
        raise HwsimError(f"search: {where} holds {n} trials of another search (different {', '.join(diff)}): "
                         "pass another study_name (or storage) for this one")


# ----------------------------------------------------------------------------- trials
