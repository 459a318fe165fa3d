"""Plots of sweeps and reports: Pareto fronts, per-layer stacked bars, roofline, heat maps, per-exit costs.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI
backend needed; ``savefig`` renders with Agg), returns it, and writes it to ``save=`` (PNG, SVG,
PDF by suffix) when given.

Figures are meant to be read by a person: every axis of a physical quantity is named with its unit, in the
SI prefix that suits the data (``latency [µs]``, ``energy [mJ]``, ``chip area [mm²]``; :func:`quantity`), the
data stay in the table's units (seconds, joules) and only the tick labels are scaled; log axes are labelled at
1-2-5 steps (or fewer) as plain numbers, so that labels do not overlap; every legend has a title; a Pareto plot
draws one front per net and names the design parameters of each front point when there are few (labels placed off
each other and off the floor lines, titles wrapped to their width, the fronts' legend below the panels: no text
covers another). Axis names, units and ticks: :mod:`hwsim.plot_axes`; labels and titles: :mod:`hwsim.plot_labels`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import HwsimError
from hwsim.plot_axes import (  # noqa: F401 (quantity and MAX_TICKS re-exported: hwsim.plot.quantity is public)
    MAX_TICKS,
    _colors,
    _design_columns,
    _formatter,
    _log_ok,
    _prefix,
    _quantity_axis,
    _unit_axis,
    _value_text,
    quantity,
)
from hwsim.plot_labels import REFERENCE_GID, declutter_labels, fit_titles, label_points

__all__ = ["pareto", "layer_bars", "roofline", "heatmap", "exits", "quantity"]

FRONT_LABELS_MAX = 30  # a Pareto panel names the design parameters of its front points up to this many points


def _figure(figsize=(6.4, 4.8), nrows: int = 1, ncols: int = 1, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)  # an Agg canvas (no GUI): fig.canvas.draw() and text extents work before saving
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw) if (nrows, ncols) != (1, 1) else fig.subplots(**kw)
    return fig, axes


def _save(fig, save: str | os.PathLike | None):
    if save is not None:
        fig.savefig(save, dpi=120)
    return fig


def _need(df, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise HwsimError(f"column(s) {missing} not in the table; columns: {list(df.columns)}")


def _ok_rows(df):
    return df[df["error"].fillna("").astype(str) == ""] if "error" in df.columns else df

# ----------------------------------------------------------------------------- Pareto
def pareto(df, x: str = "latency_s", y: str = "energy_j", *, directions: tuple[str, str] = ("min", "min"),
           hue: str | None = None, by: str | None = "net", labels: str | Sequence[str] | None = "auto",
           log: bool = True, title: str | None = None, save=None, floor: Mapping[str, float] | None = None,
           also: Mapping[str, str] | None = None):
    """Scatter of every successful row with one Pareto front of (x, y) per value of ``by`` (per net), each drawn as
    a step line over its front points.

    hue: the column that colours the points (legend titled with its name). With ``hue`` the net (or None) the
        nets share one panel, each in its colour with its own front; with another ``hue`` and several nets, each
        net gets its own panel (same axes), so that fronts and their labels stay apart.
    by: the column whose values each get a front (default ``net``; absent or None: one front over all rows).
    labels: "auto" names, beside each front point, the design parameters that vary on that front (the spec fields
        of a :func:`hwsim.sweep` table; those constant on it go into its legend entry) when a panel's fronts have at
        most :data:`FRONT_LABELS_MAX` points (another table: no labels); a list of columns names those (the ones
        that vary on a front); None draws no labels.
    log: log axes where every value is positive (labelled at round numbers of the unit, see :func:`quantity`;
        accuracy-like fractions stay linear, in percent).
    floor: ``{column: minimum}``, e.g. ``{"accuracy": 0.95}``: designs below a floor are drawn as grey crosses and are
        never on a front (a floor on ``x`` or ``y`` is drawn as a dashed line).
    also: more objectives of the fronts, ``{column: "min"|"max"}`` (e.g. ``{"latency_s": "min"}`` on an energy vs
        accuracy plot): a front point is then non-dominated in all of them, drawn as a ringed point without the
        step line (a front in three objectives is not a staircase in two).
    """
    from hwsim.codesign.pareto import normalize_objectives

    also = normalize_objectives(also) if also else {}
    floor = dict(floor or {})
    every, ok, failed, by = _pareto_rows(df, x, y, hue, by, directions, floor, also)
    lay = _pareto_layout(every, x, y, hue, by, labels)
    fig, axes_list = _panel_axes(len(lay.panels), right_legend=lay.hue is not None and lay.hue != lay.by)
    point_handles: dict[Any, Any] = {}
    front_handles: list[tuple[Any, str]] = []
    objectives = {x: directions[0], y: directions[1], **also}
    for ax, panel in zip(axes_list, lay.panels):
        rows = ok if panel is None else ok[ok[lay.by] == panel]
        grey = failed if panel is None else failed[failed[lay.by] == panel]
        point_handles.update({k: v for k, v in _draw_points(ax, rows, grey, x, y, lay).items()
                              if k not in point_handles})
        front_handles += _draw_fronts(ax, rows, panel, x, y, lay, objectives,
                                      step=None if also else "post" if directions[0] == "min" else "pre")
        if panel is not None:
            ax.set_title(str(panel), fontsize=10)
        for col, lo in floor.items():
            if col in (x, y):
                (ax.axhline if col == y else ax.axvline)(lo, color="0.45", ls="--", lw=0.8, zorder=0,
                                                         gid=REFERENCE_GID)
    n_fronts = len(front_handles)
    if len(failed):
        from matplotlib.lines import Line2D

        what = ", ".join(f"{quantity(c)[0].split(' [')[0]} < {_floor_text(c, v)}" for c, v in floor.items())
        front_handles.append((Line2D([], [], lw=0, marker="x", color="0.65"),
                              f"below the floor ({what}): {len(failed)} design{'s' if len(failed) != 1 else ''}"))
    _pareto_axes(axes_list[:len(lay.panels)], every, x, y, log)
    _pareto_legends(fig, lay, point_handles, front_handles, [x, y, *also] if also else [])
    head = title or f"{len(every)} points, {n_fronts} Pareto front{'s' if n_fronts > 1 else ''}"
    if len(lay.panels) > 1:
        fig.suptitle(head)
    else:
        axes_list[0].set_title(head)
    fit_titles(fig)
    declutter_labels(fig)
    return _save(fig, save)


def _pareto_rows(df, x: str, y: str, hue: str | None, by: str | None, directions: tuple[str, str],
                 floor: Mapping[str, float], also: Mapping[str, str]):
    """(every successful row, those at or above every floor, those below one, ``by`` or None when not a column),
    after checking the columns and directions."""
    _need(df, [x, y] + ([hue] if hue else []) + list(floor) + list(also))
    if by is not None and by not in df.columns:
        by = None
    for d in directions:
        if d not in ("min", "max"):
            raise HwsimError(f"directions must be 'min' or 'max', got {directions!r}")
    every = _ok_rows(df)
    if len(every) == 0:
        raise HwsimError("no successful rows to plot")
    below = np.zeros(len(every), dtype=bool)
    for col, lo in floor.items():
        below |= ~(every[col].astype(float).to_numpy() >= lo)  # NaN is below too
    return every, every[~below], every[below], by


@dataclass(frozen=True)
class _ParetoLayout:
    """What a Pareto figure shows where: the fronts' column ``by`` and its values ``nets`` (one front each), the
    colouring column ``hue`` and its values and colours, the panels (a value of ``by`` each, or one ``None`` panel
    for all), and the design columns named beside front points."""
    by: str | None
    nets: list
    hue: str | None
    hue_values: list
    colors: dict
    panels: list
    design: list


def _pareto_layout(every, x: str, y: str, hue: str | None, by: str | None, labels: Any) -> _ParetoLayout:
    nets = list(dict.fromkeys(every[by].tolist())) if by else [None]
    if hue is None and by is not None and len(nets) > 1:
        hue = by
    panels = nets if (hue is not None and hue != by and len(nets) > 1) else [None]
    if isinstance(labels, str) and labels != "auto":
        labels = [labels]
    design = ([] if labels is None else _design_columns(every, [x, y, by or ""]) if labels == "auto"
              else [c for c in labels if c in every.columns])
    hue_values = sorted(set(every[hue].tolist()), key=_sort_key) if hue else [None]
    colors = _colors(hue_values) if hue else {None: "tab:blue"}
    return _ParetoLayout(by, nets, hue, hue_values, colors, panels, design)


def _panel_axes(n: int, right_legend: bool):
    """A figure with ``n`` panels sharing their axes (3 per row at most), room on the right for a legend when
    ``right_legend`` and below for the fronts' legend; (figure, list of the used axes first)."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure((5.0 * ncols + (2.2 if right_legend else 1.0), 4.6 * nrows + 0.6 if n > 1 else 5.4),
                        nrows, ncols, sharex=True, sharey=True)
    axes_list = list(np.ravel(axes)) if n > 1 else [axes]
    for extra in axes_list[n:]:
        extra.set_visible(False)
    return fig, axes_list


def _draw_points(ax, rows, grey, x: str, y: str, lay: _ParetoLayout) -> dict[Any, Any]:
    """Every point of a panel, by hue (the designs below a floor as grey crosses); the first handle per hue."""
    if len(grey):
        ax.scatter(grey[x], grey[y], s=18, marker="x", color="0.65", linewidths=0.9, zorder=1, gid="hwsim-below-floor")
    handles = {}
    for hv in lay.hue_values:
        g = rows if hv is None else rows[rows[lay.hue] == hv]
        if len(g):
            handles[hv] = ax.scatter(g[x], g[y], s=16, alpha=0.55, color=lay.colors[hv], edgecolors="none",
                                     label=None if hv is None else _value_text(hv))
    return handles


def _draw_fronts(ax, rows, panel: Any, x: str, y: str, lay: _ParetoLayout, objectives: Mapping[str, str],
                 step: str | None) -> list[tuple[Any, str]]:
    """One Pareto front per net of a panel (a panel holds one net, or all): a step line (``where=step``; None for a
    front in more objectives than the axes, which is not a staircase: ringed points only) over ringed front points,
    named by the design parameters that vary on it; its legend handle and text."""
    from matplotlib.lines import Line2D

    from hwsim.codesign.pareto import pareto_front

    fronts = []
    for net in [panel] if panel is not None else lay.nets:
        g = rows if net is None else rows[rows[lay.by] == net]
        if len(g):
            fronts.append((net, pareto_front(g, dict(objectives)).sort_values(x)))
    n_front = sum(len(f) for _, f in fronts)
    out = []
    for net, front in fronts:
        color = lay.colors[net] if (lay.hue == lay.by and net in lay.colors) else "k"
        const = [c for c in lay.design if front[c].astype(str).nunique() == 1 and len(front) > 1]
        vary = [c for c in lay.design if c not in const]
        tag = "" if net is None else f"{net}: "
        legend = f"{tag}{len(front)} point{'s' if len(front) != 1 else ''}"
        if const:
            legend += " (" + ", ".join(f"{c}={_value_text(front[c].iloc[0])}" for c in const) + ")"
        if step is not None:
            ax.step(front[x], front[y], where=step, color=color, lw=1.3, label=f"Pareto front: {legend}")
        else:
            ax.plot([], [], color=color, label=f"Pareto front: {legend}")
        ax.scatter(front[x], front[y], s=46, facecolors="none", edgecolors=color, linewidths=1.2)
        out.append((Line2D([], [], color=color, lw=0 if step is None else 1.3, marker="o", markerfacecolor="none"),
                    legend))
        if vary and n_front <= FRONT_LABELS_MAX:
            label_points(ax, front, x, y, vary, color)
    return out


def _pareto_axes(axes_list: list, every, x: str, y: str, log: bool) -> None:
    """Scales, units and grid of every panel; with shared axes only the outer ones are named."""
    for ax in axes_list:
        xlog = log and _log_ok(every[x], x)
        ylog = log and _log_ok(every[y], y)
        if xlog:
            ax.set_xscale("log")
        if ylog:
            ax.set_yscale("log")
        _quantity_axis(ax.xaxis, x, every[x], xlog)
        _quantity_axis(ax.yaxis, y, every[y], ylog)
        ax.grid(True, which="major", alpha=0.25, lw=0.6)
    for ax in axes_list:
        ss = ax.get_subplotspec()
        if ss.num1 + ss.get_gridspec().ncols < len(axes_list):  # another panel below: it names the x axis
            ax.set_xlabel("")
        else:  # the lowest panel of its column (the one below may be an unused, hidden one)
            ax.xaxis.set_tick_params(labelbottom=True)
        if not ss.is_first_col():
            ax.set_ylabel("")


def _pareto_legends(fig, lay: _ParetoLayout, point_handles: Mapping[Any, Any], front_handles: list[tuple[Any, str]],
                    objectives: Sequence[str]) -> None:
    """The hue legend (when the hue is not the net) outside the panels on the right, and the fronts' legend (wide:
    it names the constant design parameters of each front) below them, in as many columns as fit the figure's
    width: below the panels it can never cover a title, however long."""
    hue, by = lay.hue, lay.by
    if hue is not None and hue != by:
        hue_title, _ = quantity(hue)
        fig.legend([point_handles[v] for v in lay.hue_values if v in point_handles],
                   [_value_text(v) for v in lay.hue_values if v in point_handles], title=hue_title,
                   loc="outside right upper", fontsize=8, title_fontsize=9, frameon=False)
    in_what = f" in {', '.join(quantity(c)[0].split(' [')[0] for c in objectives)}" if objectives else ""
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(front_handles), 3), 0, -1):
        leg = fig.legend([h for h, _ in front_handles], [t for _, t in front_handles], ncols=ncols,
                         title="Pareto front" + in_what + (f" ({'per ' + by})" if by and len(lay.nets) > 1 else ""),
                         loc="outside lower center", fontsize=8, title_fontsize=9, frameon=False)
        if ncols == 1 or leg.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            break
        leg.remove()


def _floor_text(col: str, value: float) -> str:
    """A floor's value as its axis shows it (``accuracy < 95 %``)."""
    label, factor = quantity(col, [value])
    unit = label.split(" [", 1)[1].rstrip("]") if " [" in label else ""
    return f"{_value_text(value / factor)}{' ' + unit if unit else ''}"


def _sort_key(v: Any):
    return (0, float(v), "") if isinstance(v, (int, float, np.integer, np.floating)) else (1, 0.0, str(v))


# ----------------------------------------------------------------------------- per-layer bars
def layer_bars(report, *, max_layers: int = 80, title: str | None = None, save=None):
    """Two stacked bar charts over the layers of a Report: latency (coloured by what bounds the
    layer) and energy (stacked by energy component), in the units that suit the report's totals (ms and mJ
    for a CPU running ResNet-20; µs and µJ for an FPGA engine). Layers beyond ``max_layers`` (largest kept)
    are summed into one ``other`` bar."""
    df = report.to_pandas()
    if len(df) == 0:
        raise HwsimError("the report has no layers to plot")
    comp_cols = [c for c in df.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"]
    if len(df) > max_layers:
        keep = df["latency_s"].nlargest(max_layers - 1).index.sort_values()
        rest = df.drop(keep)
        other = {"name": f"other ({len(rest)})", "latency_s": rest["latency_s"].sum(),
                 "energy_j": rest["energy_j"].sum(), "bound": "mixed"}
        other.update({c: rest[c].sum() for c in comp_cols})
        import pandas as pd

        df = pd.concat([df.loc[keep], pd.DataFrame([other])], ignore_index=True)
    xs = np.arange(len(df))
    fig, axes = _figure((max(6.4, 0.16 * len(df)), 6.4), 2, 1, sharex=True)
    a1, a2 = axes[0, 0], axes[1, 0]
    t_label, t_f = quantity("latency_s", [report.latency_s])
    e_label, e_f = quantity("energy_j", [report.energy_j])
    bounds = df["bound"].fillna("").astype(str).replace("", "-") if "bound" in df else ["-"] * len(df)
    for b in sorted(set(bounds)):
        m = np.asarray([v == b for v in bounds])
        a1.bar(xs[m], df["latency_s"].to_numpy()[m] / t_f, label=b)
    a1.legend(title="bound by", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    bottom = np.zeros(len(df))
    if comp_cols:
        for c in comp_cols:
            v = df[c].fillna(0).to_numpy() / e_f
            a2.bar(xs, v, bottom=bottom, label=c[len("energy_"):-2].replace("_", " "))
            bottom += v
        a2.legend(title="energy component", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    else:
        a2.bar(xs, df["energy_j"].to_numpy() / e_f)
    for a, label in ((a1, t_label), (a2, e_label)):
        _unit_axis(a.yaxis, label, 1.0, False)  # (the bars are drawn in the unit of the label)
        a.set_ylim(bottom=0)
        a.grid(True, axis="y", alpha=0.25, lw=0.6)
    a2.set_xticks(xs)
    a2.set_xticklabels(df["name"], rotation=90, fontsize=6)
    a2.set_xlabel("layer")
    a1.set_title(title or f"{report.network} on {report.spec_name or report.target}: "
                          f"{report.latency_s / t_f:.3g} {t_label.split('[')[1][:-1]}, "
                          f"{report.energy_j / e_f:.3g} {e_label.split('[')[1][:-1]}")
    return _save(fig, save)


# ----------------------------------------------------------------------------- roofline
def roofline(report, spec, *, title: str | None = None, save=None):
    """Layers of a CPU report on the spec's roofline.

    x: arithmetic intensity = FLOPs / main-memory bytes of the layer [FLOP/B]; y: achieved
    FLOP/s = FLOPs / latency (labelled in GFLOP/s or the prefix that suits). Roofs: ``spec.peak_flops``
    (compute) and ``dram_bw_bytes_s`` × x (memory). FLOPs and bytes come from the layer's ``flops`` /
    ``main_memory_bytes`` columns when the target reports them, else 2·MACs and weight + activation bytes."""
    df = report.to_pandas()
    peak = getattr(spec, "peak_flops", None)
    bw = getattr(spec, "dram_bw_bytes_s", None)
    if peak is None or bw is None:
        raise HwsimError(f"roofline needs a spec with peak_flops and dram_bw_bytes_s (a CPU spec), "
                         f"got {type(spec).__name__}")
    flops = df["flops"].astype(float) if "flops" in df else 2.0 * df["macs"].astype(float)
    if "main_memory_bytes" in df:
        nbytes = df["main_memory_bytes"].astype(float)
    else:
        nbytes = (df["weight_bytes"] + df["activation_bytes"]).astype(float)
    m = (flops > 0) & (nbytes > 0) & (df["latency_s"] > 0)
    if not m.any():
        raise HwsimError("no layer with FLOPs, memory traffic and latency to place on the roofline")
    ai = (flops / nbytes)[m].to_numpy()
    perf = (flops / df["latency_s"])[m].to_numpy()
    fig, ax = _figure((7.6, 4.8))
    xs = np.logspace(np.log10(ai.min() / 4), np.log10(max(ai.max() * 4, 4 * peak / bw)), 200)
    ax.plot(xs, np.minimum(peak, bw * xs), "k-", lw=1.5, label=f"roof: {peak / 1e9:.3g} GFLOP/s, {bw / 1e9:.3g} GB/s")
    ops = df["op"][m].astype(str).to_numpy()
    for op in sorted(set(ops)):
        k = ops == op
        ax.scatter(ai[k], perf[k], s=18, label=op)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _unit_axis(ax.xaxis, "arithmetic intensity [FLOP/B of main memory]", 1.0, True)
    y_f, y_p = _prefix(np.append(perf, peak), "si+")
    _unit_axis(ax.yaxis, f"achieved [{y_p}FLOP/s]", y_f, True)
    ax.grid(True, which="major", alpha=0.25, lw=0.6)
    fig.legend(title="layer type", fontsize=7, title_fontsize=8, loc="outside right upper", frameon=False)
    ax.set_title(title or f"{report.network} on {report.spec_name or report.target}")
    return _save(fig, save)


# ----------------------------------------------------------------------------- heat map
def heatmap(df, x: str, y: str, value: str, *, agg: str = "mean", fmt: str = ".3g", cmap: str = "viridis",
            title: str | None = None, save=None):
    """Heat map of ``value`` over two columns of a table (e.g. crossbar utilization over rows × cols
    of a sweep), aggregated with ``agg`` where several rows share a cell; values annotated (in the unit of the
    colour bar's label). One value in every cell: the colour bar is one block labelled with that value alone."""
    from matplotlib.colors import Normalize
    from matplotlib.ticker import NullLocator

    _need(df, [x, y, value])
    ok = _ok_rows(df)
    if len(ok) == 0:
        raise HwsimError("no successful rows to plot")
    table = ok.pivot_table(index=y, columns=x, values=value, aggfunc=agg)
    grid = table.to_numpy(dtype=float)
    v_label, v_f = quantity(value, grid)
    fig, ax = _figure()
    finite = grid[np.isfinite(grid)]
    const = finite.size > 0 and finite.min() == finite.max()
    # one value in every cell: a colour map over [v - 1, v + 1] (any range holding v: only v is drawn, and only v is
    # labelled on the single-block colour bar below), not matplotlib's made-up 90 %..110 % of v
    norm = Normalize(finite[0] - max(abs(finite[0]), 1.0), finite[0] + max(abs(finite[0]), 1.0)) if const else None
    im = ax.imshow(grid, cmap=cmap, aspect="auto", origin="lower", norm=norm)
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels([_value_text(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels([_value_text(v) for v in table.index])
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, format(v / v_f, fmt), ha="center", va="center", fontsize=7,
                    color="k" if v > mid else "w")
    ax.set_xlabel(quantity(x)[0])
    ax.set_ylabel(quantity(y)[0])
    if const:  # a single-valued colour bar: one block, one tick at the value (the range is the value alone)
        cb = fig.colorbar(im, ax=ax, label=v_label, boundaries=[norm.vmin, norm.vmax], values=[finite[0]],
                          ticks=[finite[0]])
        cb.ax.yaxis.set_minor_locator(NullLocator())
    else:
        cb = fig.colorbar(im, ax=ax, label=v_label)
    cb.ax.yaxis.set_major_formatter(_formatter(v_f))
    ax.set_title(title or f"{v_label.split(' [')[0]} ({agg})")
    return _save(fig, save)


# ----------------------------------------------------------------------------- per exit
def exits(reports: Mapping[str, Any], *, legend_title: str = "network", title: str | None = None, save=None):
    """Latency and energy to each exit of multi-exit (anytime) networks: one line per report, exits on x.

    ``reports``: ``{name: Report}``; a report without ``exits`` counts as one exit (its totals)."""
    if not reports:
        raise HwsimError("exits() needs at least one report")
    series = {}
    for name, rep in reports.items():
        ex = list(getattr(rep, "exits", ()) or [])
        lat = [e.latency_s for e in ex] if ex else [rep.latency_s]
        en = [e.energy_j for e in ex] if ex else [rep.energy_j]
        series[str(name)] = (np.asarray(lat, float), np.asarray(en, float))
    all_lat = np.concatenate([s[0] for s in series.values()])
    all_en = np.concatenate([s[1] for s in series.values()])
    fig, axes = _figure((8.4, 3.4), 1, 2)
    a1, a2 = axes[0, 0], axes[0, 1]
    for name, (lat, en) in series.items():
        idx = np.arange(1, len(lat) + 1)
        a1.plot(idx, lat, "o-", label=name)
        a2.plot(idx, en, "o-", label=name)
    n_max = max(len(s[0]) for s in series.values())
    for a, col, vals in ((a1, "latency_s", all_lat), (a2, "energy_j", all_en)):
        _quantity_axis(a.yaxis, col, vals, False)
        a.set_xticks(np.arange(1, n_max + 1))
        a.set_xlabel("exit (after iteration)")
        a.set_ylim(bottom=0)
        a.grid(True, alpha=0.25, lw=0.6)
    a1.set_title("latency to each exit", fontsize=10)
    a2.set_title("energy to each exit", fontsize=10)
    fig.legend(*a1.get_legend_handles_labels(), title=legend_title, loc="outside right upper", fontsize=8,
               title_fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, save)
