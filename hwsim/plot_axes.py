"""Axes of hwsim's plots: every column named as a reader calls it, with its unit in the SI (or binary) prefix that
suits the data (:func:`quantity`: ``latency [µs]``, ``energy [mJ]``), tick labels scaled (the data stay in the
table's units), log axes labelled at 1-2-5 steps (at most :data:`MAX_TICKS`), design values written short, and
colours per value. Used by :mod:`hwsim.plot`; matplotlib is imported inside the functions that draw."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["quantity", "MAX_TICKS"]

MAX_TICKS = 6  # labelled ticks per axis at most


_NAMES = {  # column -> what a reader calls it
    "latency_s": "latency", "energy_j": "energy", "edp_js": "energy-delay product", "area_mm2": "chip area",
    "fps": "throughput", "throughput_inf_s": "throughput", "energy_per_frame_j": "energy per frame",
    "latency_sum_s": "latency (sum of layers)", "eval_s": "evaluation time", "gops_per_w": "efficiency",
    "tile_power_w": "tile power", "macs": "MACs", "adc_bits": "ADC resolution", "dac_bits": "DAC resolution",
    "cell_bits": "cell resolution", "weight_bits": "weight precision", "input_bits": "input precision", "rows": "crossbar rows",
    "cols": "crossbar columns", "cols_per_adc": "columns per ADC", "tiles": "tiles", "luts": "LUTs",
    "bram18": "BRAM18", "report_luts": "LUTs used", "report_bram18": "BRAM18 used", "dsps": "DSPs",
    "crossbars_needed": "crossbars needed", "crossbars_used": "crossbars used", "cell_utilization": "cell utilization",
    "crossbar_utilization": "crossbar utilization", "adc_conversions": "ADC conversions", "clock_hz": "clock",
    "onchip_weight_bytes": "on-chip weights", "peak_activation_bytes": "peak activations", "dram_bytes": "DRAM traffic",
    "cores": "cores", "threads": "threads", "duplication": "weight duplication", "mode": "schedule",
}
# suffix -> (unit, prefixes allowed: "si" below 1 only, "si+" both ways, "bin" 1024s, "" fixed)
_SUFFIXES = (("_js", "J·s", "si"), ("_mm2", "mm²", ""), ("_um2", "µm²", ""), ("_bytes_s", "B/s", "si+"),
             ("_bytes", "B", "bin"), ("_hz", "Hz", "si+"), ("_pj", "pJ", ""), ("_w", "W", "si"),
             ("_j", "J", "si"), ("_s", "s", "si"), ("_bits", "bit", ""))
_SPECIAL = {"fps": ("frames/s", "si+"), "throughput_inf_s": ("inferences/s", "si+"), "gops_per_w": ("GOPS/W", ""),
            "macs": ("MACs", "count")}
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"),
       (1e-12, "p"))
_BIN = ((2.0**40, "Ti"), (2.0**30, "Gi"), (2.0**20, "Mi"), (2.0**10, "Ki"), (1.0, ""))
_COUNT = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


_PERCENT = {"accuracy": "accuracy", "top1_agreement": "top-1 agreement"}  # fractions [0, 1] shown in percent


def quantity(col: str, values: Any = None) -> tuple[str, float]:
    """``(axis label, factor)`` of a table column: the label names the quantity and its unit in the prefix that
    suits ``values`` (their largest magnitude between 1 and 1000 of it), and a value is shown as
    ``value / factor``. ``quantity("latency_s", [2e-5, 8e-5])`` is ``("latency [µs]", 1e-6)``;
    ``quantity("area_mm2")`` is ``("chip area [mm²]", 1.0)``; a column without a unit keeps its name (with
    underscores as spaces) and factor 1; ``accuracy`` and ``top1_agreement`` (fractions) are shown in percent."""
    if col in _PERCENT:
        return f"{_PERCENT[col]} [%]", 0.01
    name = _NAMES.get(col)
    unit, kind = _SPECIAL.get(col, (None, ""))
    if unit is None:
        for suf, u, k in _SUFFIXES:
            if col.endswith(suf):
                unit, kind = u, k
                name = name or col[: -len(suf)].replace("_", " ")
                break
    name = name or col.replace("_", " ")
    if unit is None:
        return name, 1.0
    factor, prefix = _prefix(values, kind)
    if kind == "count":
        return (f"{name} [{prefix}]" if prefix else name), factor
    if kind == "si+" and prefix and "/" in unit and not unit[0].isupper():  # "kframes/s" reads badly
        return f"{name} [{prefix} {unit}]", factor
    return f"{name} [{prefix}{unit}]", factor


def _prefix(values: Any, kind: str) -> tuple[float, str]:
    """(factor, prefix) that brings the largest magnitude of ``values`` to [1, 1000) (``kind``: "si" prefixes up to
    none, "si+" all SI prefixes, "bin" KiB..., "count" k/M/G, "" none)."""
    if values is None or not kind:
        return 1.0, ""
    try:
        v = np.abs(np.asarray(values, dtype=float)).ravel()
    except (TypeError, ValueError):
        return 1.0, ""
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return 1.0, ""
    mag = float(v.max())
    table = {"si": [p for p in _SI if p[0] <= 1.0], "si+": list(_SI), "bin": list(_BIN), "count": list(_COUNT)}[kind]
    for f, p in table:
        if mag >= f * 0.9995:
            return f, p
    return table[-1]


def _num(v: float, digits: int = 4) -> str:
    """A tick label: a plain number, ``digits`` significant digits at most, no trailing zeros."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if 1e-3 <= a < 1e5:
        text = f"{v:.{digits}g}"
        return text if "e" not in text else f"{v:.0f}"
    return f"{v:.{min(digits, 3)}g}"


def _formatter(factor: float):
    """Tick labels ``value / factor`` as plain numbers, with as many digits as it takes to tell the ticks apart."""
    from matplotlib.ticker import Formatter

    class _Plain(Formatter):
        digits = 4

        def set_locs(self, locs):
            super().set_locs(locs)
            vals = [v / factor for v in locs]
            for d in range(4, 13):
                if len({_num(v, d) for v in vals}) == len(set(vals)):
                    break
            self.digits = d

        def __call__(self, v, pos=None):
            return _num(v / factor, self.digits)

    return _Plain()


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Labelled ticks of a log axis over [lo, hi] (display units, lo > 0): 1-2-5 steps, or fewer or denser ones,
    at most :data:`MAX_TICKS`; [] when no such set gives two ticks (the caller falls back to linear steps)."""
    d0, d1 = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    eps = 1e-9 * (hi - lo)

    def ticks(mants, every=1):
        out = []
        for d in range(d0, d1 + 1):
            if (d - d0) % every:
                continue
            for m in mants:
                t = float(f"{m * 10.0**d:.12g}")
                if lo - eps <= t <= hi + eps:
                    out.append(t)
        return out

    sets = [(1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)]
    best: list[float] = []
    for mants in sets:
        t = ticks(mants)
        if len(t) > MAX_TICKS:
            break
        best = t
        if len(t) >= 3:
            break
    if not best:  # even whole decades are too many: every k-th decade
        every = 2
        while len(ticks((1,), every)) > MAX_TICKS:
            every += 1
        best = ticks((1,), every)
    return best if len(best) >= 2 else []


def _locator(factor: float, log: bool):
    """Major ticks at round numbers *of the displayed unit* (``value / factor``)."""
    from matplotlib.ticker import Locator, MaxNLocator

    class _Ticks(Locator):
        def __call__(self):
            vmin, vmax = self.axis.get_view_interval()
            return self.tick_values(vmin, vmax)

        def tick_values(self, vmin, vmax):
            lo, hi = sorted((vmin / factor, vmax / factor))
            ticks: list[float] = _log_ticks(lo, hi) if log and lo > 0 else []
            if len(ticks) < 3 and (not log or lo <= 0 or hi / lo < 10):  # a short range: even steps read better
                ticks = [t for t in MaxNLocator(nbins=MAX_TICKS, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
                         if lo - 1e-9 * (hi - lo) <= t <= hi + 1e-9 * (hi - lo)]
            return np.asarray(ticks, dtype=float) * factor

    return _Ticks()


def _unit_axis(axis, label: str, factor: float, log: bool) -> None:
    """Name ``axis``; its ticks at round numbers of the displayed unit (``value / factor``), labelled as plain
    numbers; minor ticks unlabelled."""
    from matplotlib.ticker import NullFormatter

    axis.set_label_text(label)
    axis.set_major_locator(_locator(factor, log))
    axis.set_major_formatter(_formatter(factor))
    axis.set_minor_formatter(NullFormatter())


def _quantity_axis(axis, col: str, values, log: bool) -> None:
    """An axis showing column ``col``: named with its unit (:func:`quantity`), ticks as :func:`_unit_axis`."""
    label, factor = quantity(col, values)
    _unit_axis(axis, label, factor, log)


def _log_ok(values, col: str = "") -> bool:
    """A log axis suits the column: every value positive and finite (fractions such as accuracy stay linear)."""
    if col in _PERCENT:
        return False
    v = np.asarray(values, dtype=float)
    return bool(len(v)) and bool(np.all(v > 0)) and bool(np.all(np.isfinite(v)))


def _value_text(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.3g}"
    return str(v)


def _design_columns(df, exclude: Sequence[str]) -> list[str]:
    """The design parameters of a sweep table that vary: the spec fields between ``target`` and ``spec_name`` (the
    layout of :func:`hwsim.sweep`); none for another table (name them with ``labels=[...]``)."""
    cols = list(df.columns)
    if not ("target" in cols and "spec_name" in cols and cols.index("target") < cols.index("spec_name")):
        return []
    cand = cols[cols.index("target") + 1:cols.index("spec_name")]
    out = []
    for c in cand:
        if c in exclude:
            continue
        try:
            if df[c].astype(str).nunique() > 1:
                out.append(c)
        except TypeError:
            continue
    return out


def _colors(values: Sequence[Any]) -> dict[Any, Any]:
    """One colour per hue value: a sequential map for ordered numbers, qualitative colours otherwise."""
    from matplotlib import colormaps

    numeric = len(values) > 2 and all(isinstance(v, (int, float, np.integer, np.floating))
                                      and not isinstance(v, (bool, np.bool_)) for v in values)
    if numeric:
        cmap = colormaps["viridis"]
        return {v: cmap(0.05 + 0.8 * i / max(1, len(values) - 1)) for i, v in enumerate(values)}
    cmap = colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(values)}
