"""Checks that a figure is readable, shared by the tests of hwsim's plots (tests/test_progress_plots.py) and of the
notebooks' plots (tests/test_notebook_plots.py): tick labels apart (by their rendered text extents), every legend
titled, axis labels with units in square brackets (``latency [ms]``, not ``latency (ms)`` nor a raw column name
``latency_s``), figure-level texts (suptitle, legends, axes titles) apart and inside the figure, design labels on
fronts apart and off reference lines (a dashed floor line), and a colour bar of constant data showing that value
alone (no made-up range)."""
from __future__ import annotations

import re

UNIT = re.compile(r"\[[^\]]+\]")
RAW_COLUMN = re.compile(r"\w+_(s|j|js|mm2|us|uj|ms|mj|kib)\b")  # a table's column name used as an axis label
PAREN_UNIT = re.compile(r"\((s|ms|us|µs|ns|J|mJ|uJ|µJ|nJ|mm²|mm2|B|KiB|MiB|W|mW|%|bits?|Hz|MHz|days?)\)")
# an axis label naming one of these is a physical quantity or a percentage: it must carry its [unit]
QUANTITY = re.compile(r"\b(latency|energy|area|power|throughput|buffer|memory|accuracy|frequency|time)\b", re.I)


def tick_label_boxes(axis, renderer):
    """(text, window extent) of every visible, non-empty major and minor tick label inside the axis' view."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * (hi - lo)
    boxes = []
    for ticks, locs in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                        (axis.get_minor_ticks(), axis.get_minorticklocs())):
        for tick, loc in zip(ticks, locs):
            for lab in (tick.label1, tick.label2):
                if lo - eps <= loc <= hi + eps and lab.get_visible() and lab.get_text():
                    boxes.append((lab.get_text(), lab.get_window_extent(renderer)))
    return boxes


def overlapping(boxes):
    """The pairs of (name, box) whose boxes overlap."""
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def legends_of(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def figure_text_boxes(fig, renderer):
    """(name, extent) of the suptitle, each legend and each visible axes title: texts that must not cover each
    other."""
    boxes = []
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_visible() and sup.get_text():
        boxes.append((f"suptitle {sup.get_text()!r}", sup.get_window_extent(renderer)))
    for leg in legends_of(fig):
        boxes.append((f"legend {leg.get_title().get_text()!r}", leg.get_window_extent(renderer)))
    for ax in fig.axes:
        if ax.get_visible() and ax.title.get_text():
            boxes.append((f"title {ax.title.get_text()!r}", ax.title.get_window_extent(renderer)))
    return boxes


def outside_figure(fig, renderer):
    """The names of the figure-level texts (suptitle, legends, axes titles) that run out of the figure."""
    fb = fig.bbox.padded(1)
    return [name for name, bb in figure_text_boxes(fig, renderer)
            if bb.x0 < fb.x0 or bb.x1 > fb.x1 or bb.y0 < fb.y0 or bb.y1 > fb.y1]


def reference_lines(ax):
    """The dashed straight horizontal or vertical lines of ``ax`` (a floor drawn with axhline/axvline)."""
    out = []
    for ln in ax.get_lines():
        xs, ys = ln.get_xdata(), ln.get_ydata()
        if (ln.get_visible() and ln.get_linestyle() == "--" and len(xs) == 2
                and (xs[0] == xs[1] or ys[0] == ys[1])):
            out.append(ln)
    return out


def labels_on_lines(ax, renderer):
    """(label text, line) pairs where a visible front label of ``ax`` (a design point's parameters) covers one of its
    reference lines."""
    lines = [(ln, ln.get_window_extent(renderer).padded(1)) for ln in reference_lines(ax)]
    return [(t.get_text(), ln.get_gid() or ln.get_label()) for t in ax.texts
            if t.get_visible() and t.get_text() and t.get_gid() == "hwsim-front-label"
            for ln, lb in lines if t.get_window_extent(renderer).overlaps(lb)]


def colorbar_range_problems(fig):
    """For each image drawn with a colour bar whose finite data are one value: the colour-bar tick values that are
    not that value (a made-up range, e.g. 90 % to 110 % of it). Empty when every colour bar is honest."""
    import numpy as np

    problems = []
    for ax in fig.axes:
        for im in ax.images:
            cb = getattr(im, "colorbar", None)
            data = np.ma.masked_invalid(np.ma.asarray(im.get_array(), dtype=float)).compressed()
            if cb is None or not data.size or data.min() != data.max():
                continue
            axis = cb.ax.yaxis if cb.orientation == "vertical" else cb.ax.xaxis
            lo, hi = sorted(axis.get_view_interval())
            for loc, tick in zip(axis.get_majorticklocs(), axis.get_major_ticks()):
                shown = lo <= loc <= hi and any(lab.get_visible() and lab.get_text()
                                                for lab in (tick.label1, tick.label2))  # label2: the right side
                if shown and not np.isclose(loc, data[0], rtol=1e-9, atol=1e-300):
                    problems.append((float(data[0]), float(loc)))
    return problems


def axis_labels(fig):
    return [a.get_label_text() for ax in fig.axes if ax.get_visible() for a in (ax.xaxis, ax.yaxis)]


def assert_readable(fig, unit_labels: int):
    """Tick labels of every axis apart, every legend titled, at least ``unit_labels`` axis labels with a [unit]
    (every label naming a quantity such as latency or energy has one), no unit in parentheses, no raw column name,
    suptitle/legends/axes titles apart and inside the figure, front labels apart and off the reference lines, colour
    bars of constant data without a made-up range. Returns the figure's legends."""
    if not hasattr(fig.canvas, "get_renderer"):  # a pyplot figure after plt.close: back on an Agg canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            boxes = tick_label_boxes(axis, renderer)
            assert not overlapping(boxes), (ax.get_title(), axis.get_label_text(), overlapping(boxes))
        texts = [t for t in ax.texts if t.get_visible() and t.get_gid() == "hwsim-front-label"]
        tboxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        assert not overlapping(tboxes), overlapping(tboxes)
        assert not labels_on_lines(ax, renderer), labels_on_lines(ax, renderer)
    assert not overlapping(figure_text_boxes(fig, renderer)), overlapping(figure_text_boxes(fig, renderer))
    assert not outside_figure(fig, renderer), outside_figure(fig, renderer)
    assert not colorbar_range_problems(fig), colorbar_range_problems(fig)
    legends = legends_of(fig)
    for leg in legends:
        assert leg.get_title().get_text(), "a legend without a title"
    labels = axis_labels(fig)
    with_unit = [lab for lab in labels if UNIT.search(lab)]
    assert len(with_unit) >= unit_labels, labels
    assert not any(RAW_COLUMN.search(lab) for lab in labels), labels  # no raw column names
    assert not any(PAREN_UNIT.search(lab) for lab in labels), labels  # units in [ ], as hwsim.plot writes them
    assert all(UNIT.search(lab) for lab in labels if QUANTITY.search(lab)), labels
    return legends
