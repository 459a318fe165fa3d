"""The check that a traced or imported graph does not hold its batch size as a number: the graph built again from a
run at batch B + 1 must differ from the one at B in the batch dim only (:func:`batch_checked` for torch's tracer,
``mapping.onnx`` for ONNX files; one verdict, :func:`batch_number_verdict`)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.errors import HwsimError, first_line
from mapping.graph import Graph, Input, with_source_shapes

if TYPE_CHECKING:  # mapping._builder imports torch: this module stays importable without it (hwsim.api's rebatch)
    from mapping._builder import Builder, Rerun

__all__ = ["batch_checked", "batch_number_verdict", "graph_difference", "rebatch"]


def batch_checked(graph: Graph, b: Builder, rerun: Rerun | None, handle) -> Graph:
    """``graph``, built by ``b`` at batch ``B``, checked against the graph built the same way from the run at batch
    ``B + 1`` (:func:`batch_rerun`). A forward that uses the batch size as a number (``y / x.shape[0]``,
    ``y + torch.arange(x.size(0))``) gives attributes or constants that differ between the two: its graph computes
    the model only at the traced batch. At batch 1 it is then marked ``batch_fixed`` (one sample per call, as
    :func:`hwsim.evaluate` runs such a graph); at a larger batch it is refused (:class:`BatchMoved`). Sizes used as
    shapes (``x.view(x.size(0), -1)``, ``torch.zeros(x.size(0), 4)``) give the same graph and pass."""
    from mapping._builder import Builder, _first

    if graph.batch_fixed or rerun is None or (rerun.gm is b.gm and "python" not in b.kinds.values()):
        return graph  # the same fx graph with no size or flag read from a tensor: no number can hold the batch
        # (a graph torch.export traced again at B + 1 may hold the batch as a literal: always rebuilt)
    values = rerun.values
    not_batch = frozenset(k for k, v in values.items() if _first(v) == b.batch + 1 and (
        _first(b.values.get(k)) != b.batch or k in b.not_batch))
    rerun.restore()  # the sizes and flags as fx nodes again (the build at B wrote their values into the nodes)
    try:
        diff = graph_difference(graph, Builder(rerun.gm, values, b.batch + 1, b.name, not_batch).build(handle))
    except HwsimError as e:
        diff = f"the model at batch {b.batch + 1} is not converted as at {b.batch} ({first_line(e)})"
    finally:
        rerun.restore()
    out = batch_number_verdict(graph, diff, b.sources, "x.shape[0] or x.size(0)", "trace such a model")
    b.batch_fixed = out.batch_fixed
    return out


def batch_number_verdict(graph: Graph, diff: str | None, sources: dict[str, tuple[int, ...]], how: str,
                         redo: str) -> Graph:
    """The graph of a model whose graphs at batches B and B + 1 differ by ``diff`` (None: they do not): computed at
    batch 1 it is one sample's graph (``batch_fixed``, its outputs in their ``sources`` shapes); at a larger batch it
    holds that batch as a number and is refused (:class:`BatchMoved`). Torch's tracer and the ONNX importer share it."""
    from mapping._builder import BatchMoved

    if diff is None:
        return graph
    if graph.batch != 1:
        raise BatchMoved(f"{diff}: the model computes with its batch size as a number ({how} in arithmetic or in a "
                         f"constant), so its graph holds the batch of {graph.batch}; {redo} with batch 1 (a graph of "
                         "one sample)")
    return with_source_shapes(graph.replace(batch_fixed=True), sources)


def graph_difference(a: Graph, b: Graph) -> str | None:
    """Where two graphs of one model, built at batches B and B + 1, differ beyond the batch dim (None: nowhere)."""
    if len(a.nodes) != len(b.nodes) or a.outputs != b.outputs:
        return f"the model's graph at batch {b.batch} has other nodes than at {a.batch}"
    for m, n in zip(a.nodes, b.nodes):
        where = f"node '{m.name}' ({m.op.value}" + (f" in module '{m.module}')" if m.module else ")")
        meta = ({k: v for k, v in x.meta.items() if k != "source_shape"} for x in (m, n))
        if (m.name, m.op, m.inputs, m.shape[1:], m.params.keys()) != (n.name, n.op, n.inputs, n.shape[1:],
                                                                       n.params.keys()) or \
                not _same(m.attrs, n.attrs) or not _same(*meta):
            return f"{where} differs between batches {a.batch} and {b.batch}"
        for role, key in m.params.items():
            if n.params[role] != key or not _same(a.params[key], b.params[key]):
                return f"the {role} of {where} differs between batches {a.batch} and {b.batch}"
    return None


def _same(x: Any, y: Any) -> bool:
    """Equal attributes / meta / parameters (NaN equal to NaN, arrays by value)."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        return x.shape == y.shape and x.dtype == y.dtype and bool(np.all((x == y) | ((x != x) & (y != y))))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return type(x) is type(y) and all(_same(getattr(x, f.name), getattr(y, f.name))
                                          for f in dataclasses.fields(x))
    if isinstance(x, (tuple, list)):
        return type(x) is type(y) and len(x) == len(y) and all(map(_same, x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, float) and isinstance(y, float) and x != x and y != y:
        return True
    try:
        return bool(x == y)
    except Exception:  # noqa: BLE001 - values that do not compare: treated as different (the safe side)
        return False


def rebatch(graph: Graph, batch: int) -> Graph:
    """The same graph for ``batch`` samples: every input's and node's first dimension (callers refuse a
    ``batch_fixed`` graph first: it computes one sample)."""
    inputs = tuple(Input(i.name, (batch,) + tuple(i.shape[1:])) for i in graph.inputs)
    return graph.replace(inputs=inputs, nodes=tuple(n.replace(shape=(batch,) + tuple(n.shape[1:])) for n in graph.nodes))
