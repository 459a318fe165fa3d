"""The data of :func:`hwsim.evaluate` (and of a sweep's ``data=``): :class:`Dataset` (float32 samples, int64 labels,
a digest that names them in a sweep row's key), made by :func:`as_dataset` from arrays (numpy or torch), an iterable
of ``(x, y)`` batches (a torch ``DataLoader``), or a name :func:`load_data` knows (``digits``, a ``.npz`` file); and
the errors of bad data (:class:`EvaluationError`, :class:`LabelError`). Every check runs before any inference."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, ShapeError, first_line

__all__ = ["Dataset", "as_dataset", "load_data", "EvaluationError", "LabelError"]


class EvaluationError(HwsimError, ValueError):
    """An argument of :func:`evaluate` (or a sweep's ``data``) that cannot be used: no seeds, no samples, a bad
    batch size or data file."""


class LabelError(EvaluationError):
    """Labels of the wrong length, dtype or range, or accuracy asked for without labels."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples ready for a net: ``x`` float32 (N, ...) finite; ``y`` int64 (N,) class indices or None."""

    x: np.ndarray
    y: np.ndarray | None
    name: str = ""
    digest: str = ""  # SHA-256 prefix of x and y: a sweep row's key names the data by it

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _array(v: Any) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _is_array(x: Any) -> bool:
    """An array (numpy, torch, anything with ``__array__``) or a nested list of numbers; not a list of batches."""
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return True
    if isinstance(x, list) and x:
        first = x[0]
        while isinstance(first, list) and first:
            first = first[0]
        return isinstance(first, (int, float, np.number))
    return False


def _labels(y: Any, n: int) -> np.ndarray:
    a = _array(y)
    if a.dtype.kind == "b" or a.dtype.kind not in "iu":
        raise LabelError(f"labels must be integer class indices, got dtype {a.dtype}")
    if a.ndim != 1:
        raise LabelError(f"labels must be one class index per sample (shape (N,)), got shape {a.shape}")
    if len(a) != n:
        raise LabelError(f"{len(a)} labels for {n} samples: give one label per sample")
    if len(a) and a.min() < 0:
        raise LabelError(f"labels must be class indices >= 0, got {int(a.min())}")
    return a.astype(np.int64)


def _digest(x: np.ndarray, y: np.ndarray | None) -> str:
    h = hashlib.sha256(repr((x.dtype.str, x.shape)).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    if y is not None:
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def _from_batches(batches: Iterable[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    xs, ys = [], []
    for i, b in enumerate(batches):
        if isinstance(b, (tuple, list)) and len(b) == 2:
            xs.append(_array(b[0]))
            ys.append(None if b[1] is None else _array(b[1]))
        elif isinstance(b, (tuple, list)) and len(b) == 1 or _is_array(b):
            xs.append(_array(b[0] if isinstance(b, (tuple, list)) else b))
            ys.append(None)
        else:
            raise EvaluationError(f"batch {i} of the data is a {type(b).__name__}: give (x, y) pairs or arrays")
    if not xs:
        raise EvaluationError("the data has no batches")
    if any(y is None for y in ys) and not all(y is None for y in ys):
        raise LabelError("some batches have labels and some do not")
    shapes = {a.shape[1:] for a in xs}
    if len(shapes) > 1 or any(a.ndim < 2 for a in xs):
        raise ShapeError(f"the data's batches have different sample shapes: {sorted(shapes)}")
    x = np.concatenate(xs)
    y = None if ys[0] is None else np.concatenate([np.atleast_1d(v) for v in ys])
    return x, y


def load_data(source: str | os.PathLike) -> Dataset:
    """A built-in data set or a file: ``"digits"`` (scikit-learn's 1,797 8×8 digits, shape (N, 1, 8, 8) scaled to
    [0, 1], labels 0-9) or a ``.npz`` file with arrays ``x`` and ``y`` (``y`` optional)."""
    if str(source) == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return as_dataset((d.images / 16.0)[:, None].astype(np.float32), d.target, name="digits")
    path = Path(source)
    if path.suffix.lower() != ".npz":
        raise EvaluationError(f"data {str(source)!r}: give 'digits' or a .npz file with arrays x and y")
    if not path.is_file():
        raise EvaluationError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise EvaluationError(f"data file {path} is not a readable .npz file: {first_line(e)}") from None
    if "x" not in arrays:
        raise EvaluationError(f"data file {path} has no array 'x' (arrays: {sorted(arrays)})")
    return as_dataset(arrays["x"], arrays.get("y"), name=path.stem)


def as_dataset(x: Any, y: Any = None, name: str = "") -> Dataset:
    """A :class:`Dataset` from arrays (numpy or torch), an iterable of ``(x, y)`` batches or of ``x`` arrays, a
    ``Dataset``, or a name :func:`load_data` knows. One-line errors for non-finite or non-real ``x``
    (:class:`~hwsim.errors.ShapeError`), labels of the wrong length or dtype (:class:`LabelError`), no samples."""
    from hwsim.functional import check_values

    if isinstance(x, Dataset) or isinstance(x, (str, os.PathLike)):
        if y is not None:
            raise LabelError("labels given twice: the data set already carries its labels")
        return x if isinstance(x, Dataset) else load_data(x)
    if _is_array(x):
        xa = _array(x)
    elif isinstance(x, Iterable):
        if y is not None:
            raise LabelError("labels given beside an iterable of batches: put them in the batches as (x, y)")
        xa, y = _from_batches(x)
    else:
        raise EvaluationError(f"data must be an array or an iterable of (x, y) batches, got {type(x).__name__}")
    xa = check_values(xa, "x")
    if xa.ndim < 2:
        raise ShapeError(f"x must have a batch dimension first (N x C x H x W or N x F), got shape {xa.shape}")
    if xa.shape[0] == 0:
        raise EvaluationError("the data has no samples")
    ya = None if y is None else _labels(y, xa.shape[0])
    return Dataset(xa, ya, name, _digest(xa, ya))
