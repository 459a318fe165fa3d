"""The results file of a sweep: append-only, crash-safe, keyed by each point's hash.

CSV (``.csv``): one physical line per row. A row is written whole with a single ``os.write`` on a
file descriptor opened with ``O_APPEND`` after everything before it is on the file, so a process
killed at any instant leaves at most one torn *last* line; loading drops it (and reopening for
append truncates it away). Strings are kept on one line (newlines replaced) so a line is a row.
When a row brings a column the header does not have (the first successful row after error rows,
a net with several exits), the file is rewritten to a temporary file and swapped in atomically
with ``os.replace`` — the old file stays intact until the new one is complete.

Parquet (``.parquet``/``.pq``) cannot be appended to, so rows are journaled to
``<out>.journal.csv`` (the CSV scheme above) as they finish; :meth:`ResultsStore.finalize`
merges the journal into the Parquet file atomically and removes it. A sweep killed before that
leaves the journal, which the next load reads.

Loading de-duplicates on the ``key`` column (first row wins), so a row can never appear twice.
A row's key (:func:`hwsim.codesign.points.point_key`) hashes the net, the spec, the evaluation settings (the data
set's digest among them), ``hwsim.__version__`` and the target's cost-model version (a digest of its source,
:func:`hwsim.codesign.points.cost_model_version`): rows written by another hwsim version or cost model are kept in
the file but never reused — the sweep recomputes them.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError

__all__ = ["ResultsStore", "KEY"]

KEY = "key"


def _cell(v: Any) -> str:
    """One CSV cell; floats round-trip exactly (``repr``), missing values are empty."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (list, tuple)):
        v = "[" + ", ".join(str(x) for x in v) + "]"
    return str(v).replace("\r\n", " | ").replace("\n", " | ").replace("\r", " | ")


class _CsvLog:
    """Append-only CSV file with whole-line writes and torn-tail repair."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        self._fd: int | None = None
        if path.exists():
            self._repair()
            self.columns = self._header()

    # -- reading
    def _complete_text(self) -> str:
        data = self.path.read_bytes() if self.path.exists() else b""
        cut = data.rfind(b"\n")
        return data[: cut + 1].decode("utf-8", errors="replace") if cut >= 0 else ""

    def _header(self) -> list[str]:
        text = self._complete_text()
        if not text:
            return []
        return next(csv.reader(io.StringIO(text.split("\n", 1)[0])))

    def _repair(self) -> None:
        """Truncate a torn last line (a write cut by a kill) so appends start on a fresh line."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            data = f.read()
        cut = data.rfind(b"\n") + 1
        if cut != size:
            os.truncate(self.path, cut)

    def read(self):
        import pandas as pd

        text = self._complete_text()
        if not text.strip():
            return pd.DataFrame()
        return pd.read_csv(io.StringIO(text), on_bad_lines="skip", low_memory=False)

    # -- writing
    def _line(self, row: Mapping[str, Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(c)) for c in self.columns])
        return buf.getvalue()

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _rewrite(self, columns: list[str]) -> None:
        """Widen the header: write every complete row under the new header to a temporary file,
        then swap it in atomically."""
        old_rows: list[list[str]] = []
        text = self._complete_text()
        if text:
            reader = csv.reader(io.StringIO(text))
            old_cols = next(reader, [])
            for r in reader:
                if len(r) == len(old_cols):
                    d = dict(zip(old_cols, r))
                    old_rows.append([d.get(c, "") for c in columns])
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            w.writerows(old_rows)
            f.flush()
            os.fsync(f.fileno())
        self.close()
        os.replace(tmp, self.path)
        self.columns = columns

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        new = [c for r in rows for c in r if c not in self.columns]
        if new or not self.path.exists() or self.path.stat().st_size == 0:
            cols = list(self.columns)
            for c in new:
                if c not in cols:
                    cols.append(c)
            self._rewrite(cols)
        self._write_all("".join(self._line(r) for r in rows).encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ResultsStore:
    """The results file of a sweep (``.csv``, ``.parquet`` or ``.pq``); see the module docstring."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise HwsimError(f"results file {self.path}: use a .csv or .parquet file name")
        from hwsim.specs import check_output_path

        check_output_path(self.path, "results file")  # a missing folder is created; under a file: one line
        self.parquet = suffix != ".csv"
        log_path = self.path.with_name(self.path.name + ".journal.csv") if self.parquet else self.path
        self._log = _CsvLog(log_path)

    def load(self):
        """Every finished row (Parquet file plus journal), one per key, in file order."""
        import pandas as pd

        frames = []
        if self.parquet and self.path.exists():
            try:
                frames.append(pd.read_parquet(self.path))
            except Exception as e:
                raise HwsimError(f"results file {self.path} is not a readable Parquet file: {e}") from None
        frames.append(self._log.read())
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if KEY not in df.columns:
            raise HwsimError(f"results file {self.path} has no {KEY!r} column: not a hwsim sweep file")
        df = df[df[KEY].notna()]
        return df.drop_duplicates(subset=KEY, keep="first").reset_index(drop=True)

    def keys(self) -> set[str]:
        df = self.load()
        return set(df[KEY].astype(str)) if len(df) else set()

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._log.append(rows)

    def finalize(self) -> None:
        """Close the file; for Parquet, merge the journal into the Parquet file atomically."""
        self._log.close()
        if not self.parquet or not self._log.path.exists():
            return
        df = self.load()
        tmp = self.path.with_name(self.path.name + ".tmp")
        _to_parquet(df, tmp)
        os.replace(tmp, self.path)
        self._log.path.unlink()


def _to_parquet(df, path: Path) -> None:
    df = df.copy()
    for c in df.columns:  # mixed object columns (e.g. numbers and strings) as strings
        if df[c].dtype == object:
            kinds = {type(v) for v in df[c].dropna()}
            if len(kinds) > 1:
                df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    df.to_parquet(path, index=False)
