"""Checks of the int8 (TFLite) path that need more than one node to explain: why a batch norm is still in the graph,
which REDUCE_MEAN is TFLite's MEAN over H and W, and whether a calibrated range gives a usable scale.

Kept apart from :mod:`hwsim.cpu.int8` (which raises the errors) so that module stays one screenful per concept.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mapping.graph import Graph, Node, Op

__all__ = ["batchnorm_problem", "is_global_mean", "range_problem"]


def _producer(g: Graph, n: Node, readers: Mapping[str, list[Node]]) -> Node | None:
    """The node a batch norm would fold into, looking through a 1-d conv's unit-dim view as
    :func:`mapping.passes.fold_bn.fold_bn` does; None when the batch norm reads the graph input."""
    from mapping.passes.fold_bn import _unit_view

    if n.inputs[0] not in g:
        return None
    prod = g[n.inputs[0]]
    if _unit_view(g, prod, readers) and prod.inputs[0] in g:
        prod = g[prod.inputs[0]]
    return prod


def batchnorm_problem(g: Graph, n: Node, outs: set[str], readers: Mapping[str, list[Node]]) -> tuple[Node, str]:
    """Why the batch norm ``n`` is still in the (folded) graph, as ``(node to blame, reason)``: the fold pass's own
    conditions (:func:`mapping.passes.fold_bn.fold_bn`) checked in its order. TFLite int8 has no batch norm kernel,
    so each of them is a refusal; a sign reading the batch norm is blamed on the sign, the op int8 cannot run."""
    signs = [r for r in readers[n.name] if r.op == Op.SIGN]
    if signs:
        return signs[0], ("sign (a binary network's activation, here after batch norm "
                          f"{n.name!r}) has no TFLite int8 kernel: run binary nets on an fp32 CPU spec "
                          "(xnor-popcount kernels) or an FPGA target")
    no_kernel = "TFLite int8 has no batch norm kernel"
    prod = _producer(g, n, readers)
    if prod is None:
        return n, f"batch norm of the graph input: no conv/linear before it to fold into ({no_kernel})"
    if prod.op not in (Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR):
        return n, f"its input is {prod.op.value} {prod.name!r}, not a conv/linear to fold into ({no_kernel})"
    others = [r.name for r in readers[prod.name] if r.name not in (n.name, n.inputs[0])]  # n.inputs[0]: the view
    if prod.name in outs or others:
        users = ", ".join(repr(o) for o in others[:3]) + (" and more" if len(others) > 3 else "")
        what = ("is also a graph output" + (f" and read by {users}" if others else "")) if prod.name in outs \
            else f"is also read by {users}"
        return n, (f"the output of {prod.op.value} {prod.name!r} before this batch norm {what}, so the batch norm "
                   f"cannot be folded into it ({no_kernel})")
    if prod.op == Op.LINEAR and len(prod.shape) != 2:
        return n, f"after a fully connected over a rank-{len(prod.shape)} tensor, which does not fold ({no_kernel})"
    return n, f"not folded into {prod.op.value} {prod.name!r}: run with fold_bn=True (the default)"


def is_global_mean(g: Graph, n: Node) -> bool:
    """``n`` is a REDUCE_MEAN over exactly the spatial dims, TFLite's MEAN over H and W: dims {2, 3} of an
    N x C x H x W tensor (``y.mean((2, 3))``, ``(-1, -2)``, keepdim or not) or dim 2 of an N x C x L tensor
    (``y.flatten(2).mean(-1)``, a 1-d net's global pooling: the same mean with H = 1)."""
    if n.op != Op.REDUCE_MEAN:
        return False
    rank = len(g.shape_of(n.inputs[0]))
    dims = {d % rank for d in n.attrs.dims}
    return (rank == 4 and dims == {2, 3}) or (rank == 3 and dims == {2})


def range_problem(lo: float, hi: float) -> str | None:
    """Why a calibrated range [lo, hi] gives no usable int8 scale, or None: a non-finite end (the float network
    itself overflowed or produced NaN on the calibration batch), or a width ``max(hi, 0) - min(lo, 0)`` that
    overflows float32, so TFLite's ``(max - min) / 255``, computed in float32, is inf."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"its calibrated range [{lo:g}, {hi:g}] is not finite (the float network overflowed or gave NaN)"
    with np.errstate(over="ignore"):
        width = np.float32(max(hi, 0.0)) - np.float32(min(lo, 0.0))  # as hwsim.cpu.int8.asymmetric_qparams
    if not np.isfinite(width):
        return (f"its calibrated range [{lo:g}, {hi:g}] is wider than float32 holds: TFLite's scale "
                "(max - min) / 255, computed in float32, would be inf")
    return None
