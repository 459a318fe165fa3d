"""Every plot of the notebooks is readable: each notebook's code cells run headless (Agg) in this process, and every
figure a cell makes (pyplot's or hwsim.plot's) is inspected with the checks of tests/_figures.py: axis labels with
[units] wherever they name a quantity, legends with titles, a title on every figure, tick labels and figure-level
texts apart (by their rendered text extents). The IMC notebooks also show every design with its accuracy (or top-1
agreement with the fp32 model for untrained nets): their Pareto plots name it on an axis. (05 and 07 draw no figure.)"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
from _figures import assert_readable
from matplotlib.figure import Figure

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# how many figures each notebook draws (None: at least one); every axis label naming a quantity must carry its
# [unit] (see _figures). 05 and 07 draw none.
EXPECTED = {
    "01_itnet_fits_on_chip": 3,
    "02_imc_sweep": 3,
    "03_bitexact_binary": None,
    "04_netcut_deadlines": 1,
    "06_pareto_search": 3,
    "08_accuracy_on_chip": None,
}
ACCURACY_AXIS = ("accuracy [%]", "top-1 agreement [%]")


def code_cells(path: Path) -> list[str]:
    """The notebook's code cells, IPython magics (``%matplotlib inline``) and shell lines left out."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return ["\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in nb.cells if c.cell_type == "code"]


def run_notebook(path: Path, monkeypatch) -> list[tuple[int, Figure]]:
    """Run the code cells in one namespace (the notebook's folder as working directory); returns (cell index,
    figure) for every figure created, in order."""
    made: list[Figure] = []
    init = Figure.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Figure, "__init__", recording_init)
    monkeypatch.chdir(path.parent)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    ns: dict = {"__name__": "__main__"}
    found = []
    with torch.random.fork_rng(devices=[]):  # a notebook's torch.manual_seed stays in the notebook
        for i, src in enumerate(code_cells(path)):
            before = len(made)
            exec(compile(src, f"{path.name}, code cell {i}", "exec"), ns)  # noqa: S102 - the repo's own notebooks
            found += [(i, f) for f in made[before:]]
    plt.close("all")
    return found


def titled(fig: Figure) -> bool:
    sup = getattr(fig, "_suptitle", None)
    return bool(sup is not None and sup.get_text()) or any(ax.get_title() for ax in fig.axes)


@pytest.mark.slow  # each notebook runs its cells (10-60 s)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_plots_are_readable(name, monkeypatch, tmp_path):
    figs = run_notebook(NOTEBOOKS / f"{name}.ipynb", monkeypatch)
    assert len(figs) == EXPECTED[name] if EXPECTED[name] else figs, [cell for cell, _ in figs]
    keep = os.environ.get("HWSIM_NOTEBOOK_FIGURES")  # a folder: the figures are saved there to look at
    for k, (cell, fig) in enumerate(figs):
        assert titled(fig), f"{name}, cell {cell}: a figure without a title"
        assert_readable(fig, unit_labels=0)
        if keep:
            fig.savefig(Path(keep) / f"{name}-{k}.png", dpi=100)
    if name.startswith(("01", "02", "06")):  # IMC designs: a Pareto plot of accuracy (or agreement) vs energy
        fronts = [ax for _, f in figs for ax in f.axes
                  if ax.get_ylabel() in ACCURACY_AXIS and ax.get_xlabel().startswith("energy [")]
        assert fronts, f"{name}: no plot of accuracy vs energy"
        for ax in fronts:  # in percent on a linear axis, with the accuracy floor drawn (a dashed line)
            assert ax.get_yscale() == "linear"
            assert any(line.get_linestyle() == "--" for line in ax.lines), f"{name}: no accuracy floor drawn"


def test_code_cells_leave_magics_out(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("%matplotlib inline\nx = 1\n!ls"),
                                         nbformat.v4.new_code_cell("y = x + 1")])
    p = tmp_path / "t.ipynb"
    nbformat.write(nb, p)
    assert code_cells(p) == ["x = 1", "y = x + 1"]


def _fig(xlabel="latency [ms]", ylabel="energy [µJ]", legend_title="design", ticks=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label="a")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="t")
    ax.legend(title=legend_title)
    if ticks is not None:
        ax.set_xticks(ticks, labels=[f"{t:.6f}" for t in ticks])
    return fig


def test_the_checks_catch_what_a_reader_cannot_read():
    assert_readable(_fig(), unit_labels=2)
    for bad in (dict(xlabel="latency (us)"),  # unit in parentheses
                dict(ylabel="energy"),  # a quantity without its unit
                dict(xlabel="latency_s [s]"),  # a raw column name
                dict(legend_title=""),  # an untitled legend
                dict(ticks=[1.0, 1.05, 1.1, 1.15])):  # tick labels on top of each other
        with pytest.raises(AssertionError):
            assert_readable(_fig(**bad), unit_labels=0)
    fig = _fig()
    fig.suptitle("a long figure title " * 3, x=0.9, y=0.8)  # over the legend
    with pytest.raises(AssertionError):
        assert_readable(fig, unit_labels=0)
