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


def batchnorm_problem(g: Graph, n: Node, readers: Mapping[str, list[Node]]) -> tuple[Node, str]:
    """Why the batch norm ``n`` is still in the (folded) graph, as ``(node to blame, reason)``: the fold pass's own
    verdict (:func:`mapping.passes.fold_bn.fold_target`). TFLite int8 has no batch norm kernel, so each reason is a
    refusal; a sign reading the batch norm is blamed on the sign, the op int8 cannot run."""
    from mapping.passes.fold_bn import fold_target

    signs = [r for r in readers[n.name] if r.op == Op.SIGN]
    if signs:
        return signs[0], ("sign (a binary network's activation, here after batch norm "
                          f"{n.name!r}) has no TFLite int8 kernel: run binary nets on an fp32 CPU spec "
                          "(xnor-popcount kernels) or an FPGA target")
    why = fold_target(g, n, readers)
    if isinstance(why, str):
        return n, f"{why} (TFLite int8 has no batch norm kernel)"
    return n, f"not folded into {why[0].op.value} {why[0].name!r}: run with fold_bn=True (the default)"


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
