"""Texts of hwsim's plots placed by their rendered extents: design labels beside Pareto front points, moved so that
none covers another, a reference line (an accuracy floor) or leaves its axes (:func:`declutter_labels`), and titles
wrapped to the width they may use (:func:`fit_titles`), so that a long title never runs over a legend beside the
axes or out of the figure. Used by :mod:`hwsim.plot`; the figures must have an Agg canvas (``fig.canvas.draw``)."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from hwsim.plot_axes import _value_text

FRONT_LABEL_GID = "hwsim-front-label"  # the gid of a front point's design label
REFERENCE_GID = "hwsim-reference-line"  # the gid of a floor line: labels keep off it

# (dx, dy) in points from the point, horizontal and vertical alignment: the nearest positions first, then rings
# further out; the first one free is taken
_NEAR = ((6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"), (-6, -4, "right", "top"),
         (6, 14, "left", "bottom"), (-6, -14, "right", "top"), (6, -14, "left", "top"), (-6, 14, "right", "bottom"),
         (14, 0, "left", "center"), (-14, 0, "right", "center"))
OFFSETS = _NEAR + tuple((dx * k, dy * k, ha, va) for k in (2, 3) for dx, dy, ha, va in _NEAR[:8])
_LINE_PAD_PX = 2.0  # a label keeps this far from a reference line [display pixels]


def label_points(ax, front, x: str, y: str, cols: Sequence[str], color) -> None:
    """Each front point named by its design parameters, beside it; :func:`declutter_labels` moves them apart."""
    for _, r in front.iterrows():
        text = ", ".join(f"{c}={_value_text(r[c])}" for c in cols)
        ax.annotate(text, (r[x], r[y]), xytext=(6, 4), textcoords="offset points", fontsize=6.5, color=color,
                    ha="left", va="bottom", gid=FRONT_LABEL_GID,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75}
                    ).set_in_layout(False)  # inside its axes: the layout does not move when the labels do


def reference_boxes(ax, renderer) -> list:
    """Display extents of the reference lines of ``ax`` (gid :data:`REFERENCE_GID`), padded by a few pixels."""
    return [ln.get_window_extent(renderer).padded(_LINE_PAD_PX) for ln in ax.get_lines()
            if ln.get_gid() == REFERENCE_GID and ln.get_visible()]


def declutter_labels(fig) -> None:
    """Place the front labels so that none overlaps another, a reference line or leaves its axes: for each (in
    order), the first of :data:`OFFSETS` around its point that is free; a label with no free position is dropped
    (its point keeps its marker, the front its legend entry)."""
    labels = [t for ax in fig.axes for t in ax.texts if t.get_gid() == FRONT_LABEL_GID]
    if not labels:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed: dict[Any, list] = {}
    for t in labels:
        ax = t.axes
        box_ax = ax.get_window_extent(renderer)
        if ax not in placed:
            placed[ax] = reference_boxes(ax, renderer)
        taken = placed[ax]
        for dx, dy, ha, va in OFFSETS:
            t.set_position((dx, dy))
            t.set_ha(ha)
            t.set_va(va)
            bb = t.get_window_extent(renderer).padded(1)
            inside = (bb.x0 >= box_ax.x0 and bb.x1 <= box_ax.x1 and bb.y0 >= box_ax.y0 and bb.y1 <= box_ax.y1)
            if inside and not any(bb.overlaps(o) for o in taken):
                taken.append(bb)
                break
        else:
            t.set_visible(False)


def _wrap_to(text_artist, width_px: float, renderer) -> None:
    """Wrap a text (at spaces) to at most ``width_px`` display pixels wide, by its rendered width per character."""
    text = " ".join(text_artist.get_text().split())
    wide = text_artist.get_window_extent(renderer).width
    if not text or wide <= width_px:
        return
    chars = max(10, int(len(text) * width_px / wide) - 1)
    while chars > 10:
        text_artist.set_text(textwrap.fill(text, chars, break_long_words=False))
        if text_artist.get_window_extent(renderer).width <= width_px:
            return
        chars -= max(1, chars // 10)
    text_artist.set_text(textwrap.fill(text, chars, break_long_words=False))


def _suptitle_width(fig, renderer) -> float:
    """The width [display pixels] a suptitle (centred on the figure) may take: the figure's, less what the figure's
    legends beside it (at the figure's top, left or right of its centre) take."""
    mid = fig.bbox.x0 + fig.bbox.width / 2
    half = 0.48 * fig.bbox.width
    for leg in fig.legends:
        bb = leg.get_window_extent(renderer)
        if bb.y1 < fig.bbox.y1 - 0.25 * fig.bbox.height:  # a legend lower down: the suptitle is above it
            continue
        half = min(half, bb.x0 - mid - 4 if bb.x0 > mid else mid - bb.x1 - 4 if bb.x1 < mid else half)
    return 2 * max(half, 0.1 * fig.bbox.width)


def fit_titles(fig) -> None:
    """Wrap each axes title to its axes' width and the suptitle to the figure's (less the legends beside it), after
    the layout is made: a title never runs over a legend beside the axes, nor out of the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        _wrap_to(sup, _suptitle_width(fig, renderer), renderer)
    for ax in fig.axes:
        if ax.get_visible() and ax.title.get_text():
            _wrap_to(ax.title, ax.get_window_extent(renderer).width, renderer)
