"""Pareto fronts of result tables.

A row *dominates* another when it is at least as good in every objective and strictly better in
one. :func:`pareto_front` keeps the rows no other row dominates. Objectives are columns with a
direction, ``{"latency_s": "min", "accuracy": "max"}``, or a list of columns (minimised, except the columns of
:data:`MAXIMISED` — ``accuracy``, ``top1_agreement`` — which are maximised).
Rows with a missing (NaN) objective or a non-empty ``error`` are not candidates.

Algorithm: sort by the first objective (then the others), then sweep the rows in that order keeping
the front so far; a row is compared only with the kept rows (O(n·f) for a front of f rows), in
vectorised blocks. Rows with identical objective values do not dominate each other: all are kept.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from hwsim.errors import HwsimError

__all__ = ["pareto_front", "pareto_mask", "normalize_objectives", "MAXIMISED"]

MAXIMISED = frozenset({"accuracy", "top1_agreement"})  # objectives named without a direction that are maximised


def normalize_objectives(objectives: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    """``{column: "min"|"max"}`` from a mapping, a list of columns or one column name (``min``, or ``max`` for a
    column of :data:`MAXIMISED`). Column names are kept as given: ``[0, 1]`` names a table's int columns."""
    if isinstance(objectives, str):
        objectives = [objectives]
    if not isinstance(objectives, (Mapping, Sequence, set, frozenset)):
        raise HwsimError(f"objectives must be a column name, a list of columns or {{column: 'min'|'max'}}, "
                         f"got {type(objectives).__name__}")
    items = objectives.items() if isinstance(objectives, Mapping) else [(k, None) for k in objectives]
    out = {}
    for k, d in items:  # a column name is kept as given (an int column name stays an int)
        if not isinstance(k, Hashable) or isinstance(k, (list, dict, set)):
            raise HwsimError(f"objective {k!r} is not a column name")
        if d is None:
            d = "max" if k in MAXIMISED else "min"
        d = str(d).lower()
        if d not in ("min", "max"):
            raise HwsimError(f"objective {k!r}: direction must be 'min' or 'max', got {d!r}")
        out[k] = d
    if not out:
        raise HwsimError("pareto_front needs at least one objective column")
    return out


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n × m, every column minimised)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort(v.T[::-1])  # by column 0, then 1, ...: a dominator always comes first
    front: list[int] = []
    for i in order:
        if front:
            f = v[front]
            dominated = np.all(f <= v[i], axis=1) & np.any(f < v[i], axis=1)
            if dominated.any():
                continue
        front.append(int(i))
    mask[front] = True
    return mask


def pareto_front(df, objectives: Mapping[str, str] | Sequence[str] | str):
    """The non-dominated rows of ``df`` (a pandas DataFrame) for ``objectives``, in ``df``'s order.

    Raises :class:`HwsimError` for a ``df`` that is not a DataFrame and naming a column that is not in ``df`` or
    is not numeric."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise HwsimError(f"pareto_front needs a pandas DataFrame, got {type(df).__name__} "
                         "(wrap records with pandas.DataFrame(...))")
    obj = normalize_objectives(objectives)
    missing = [c for c in obj if c not in df.columns]
    if missing:
        raise HwsimError(f"objective column(s) {missing} not in the table; columns: {list(df.columns)}")
    sub = df
    if "error" in df.columns:
        sub = sub[sub["error"].fillna("").astype(str) == ""]
    vals = np.column_stack([_numeric(sub[c], c) for c in obj]) if len(sub) else np.zeros((0, len(obj)))
    ok = ~np.isnan(vals).any(axis=1)
    sub, vals = sub[ok], vals[ok]
    signs = np.array([1.0 if d == "min" else -1.0 for d in obj.values()])
    return sub[pareto_mask(vals * signs)]


def _numeric(col, name: str) -> np.ndarray:
    """An objective column as float64 (NaN and None kept as NaN), or a one-line error naming the column."""
    try:
        return col.astype(float).to_numpy()
    except (TypeError, ValueError):
        bad = next((v for v in col if not _is_number(v)), None)
        raise HwsimError(f"objective column {name!r} is not numeric (value {bad!r})") from None


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
