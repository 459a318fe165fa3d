"""Multi-node ONNX patterns converted as one IR node: the erf-form GELU and torch's thresholded softplus.

A pattern finder ``find(importer)`` runs before the walk: it marks the pattern's later nodes absorbed and
installs, for its first node, a converter emitting the fused IR node under the last node's output name.
"""
from __future__ import annotations

import math

from mapping.graph import Gelu, Op, Softplus

__all__ = ["PATTERNS"]

_SQRT2 = math.sqrt(2.0)


def _only_user(imp, name: str, op_type: str):
    users = imp.consumers(name)
    if len(users) == 1 and name not in imp.graph_outputs and users[0].op_type == op_type:
        return users[0]
    return None


def _split_scalar(imp, node):
    """(activation operand, value of the one-element constant operand, its index) of a binary node, else None."""
    for i in (0, 1):
        v = imp.scalar(node.input[i])
        if v is not None and not imp.is_const(node.input[1 - i]):
            return node.input[1 - i], v, i
    return None


def _match_gelu(imp, erf):
    """The nodes of ``x * 0.5 * (1 + erf(x / sqrt 2))`` around ``erf`` (any association of the two products):
    (x, the nodes, the last node), else None."""
    d = imp.producer(erf.input[0])
    s = _split_scalar(imp, d) if d is not None and d.op_type in ("Div", "Mul") else None
    if s is None or _only_user(imp, d.output[0], "Erf") is not erf:
        return None
    x, c, i = s
    if not ((d.op_type == "Div" and i == 1 and abs(c - _SQRT2) < 1e-4)
            or (d.op_type == "Mul" and abs(c - 1 / _SQRT2) < 1e-4)):
        return None
    add = _only_user(imp, erf.output[0], "Add")
    s = _split_scalar(imp, add) if add is not None else None
    m1 = _only_user(imp, add.output[0], "Mul") if s is not None and abs(s[1] - 1.0) < 1e-6 else None
    if m1 is None:
        return None
    other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
    half = _split_scalar(imp, m1)
    if other == x:  # (x * (1 + erf)) * 0.5
        m2 = _only_user(imp, m1.output[0], "Mul")
        s = _split_scalar(imp, m2) if m2 is not None else None
        return (x, [d, erf, add, m1, m2], m2) if s is not None and abs(s[1] - 0.5) < 1e-6 else None
    if half is not None and abs(half[1] - 0.5) < 1e-6:  # x * ((1 + erf) * 0.5)
        m2 = _only_user(imp, m1.output[0], "Mul")
        ok = m2 is not None and sorted(m2.input) == sorted([x, m1.output[0]])
        return (x, [d, erf, add, m1, m2], m2) if ok else None
    h = imp.producer(other)  # (x * 0.5) * (1 + erf)
    s = _split_scalar(imp, h) if h is not None and h.op_type == "Mul" else None
    if s is not None and s[0] == x and abs(s[1] - 0.5) < 1e-6 and _only_user(imp, h.output[0], "Mul") is m1:
        return x, [h, d, erf, add, m1], m1
    return None


def _gelu_patterns(imp) -> None:
    """Erf-form GELU, ``x * 0.5 * (1 + Erf(x / sqrt 2))`` (torch's export before opset 20) -> one GELU node, named by
    the last product, emitted where the pattern's first node was."""
    order = {id(m): k for k, m in enumerate(imp.onnx_nodes)}
    for erf in imp.onnx_nodes:
        if erf.op_type != "Erf" or erf.domain not in ("", "ai.onnx") or id(erf) in imp.overrides:
            continue
        m = _match_gelu(imp, erf)
        if m is None:
            continue
        x, nodes, last = m
        first = min(nodes, key=lambda k: order[id(k)])
        imp.absorb(*(k for k in nodes if k is not first))
        imp.overrides[id(first)] = lambda imp, n, x=x, last=last: imp.emit(
            n, Op.GELU, [imp.act(x, n)], Gelu("none"), name=last.output[0])


def _softplus_patterns(imp) -> None:
    """torch's thresholded softplus, ``Where(Greater(x, t), x, Softplus(x))`` (the dynamo export of F.softplus) ->
    one SOFTPLUS(beta 1, threshold t), named by the Where."""
    order = {id(m): k for k, m in enumerate(imp.onnx_nodes)}
    for w in imp.onnx_nodes:
        if w.op_type != "Where" or w.domain not in ("", "ai.onnx") or len(w.input) != 3:
            continue
        gt, sp = imp.producer(w.input[0]), imp.producer(w.input[2])
        if gt is None or sp is None or gt.op_type != "Greater" or sp.op_type != "Softplus":
            continue
        x = w.input[1]
        t = imp.scalar(gt.input[1])
        if (t is None or gt.input[0] != x or sp.input[0] != x or _only_user(imp, gt.output[0], "Where") is not w
                or _only_user(imp, sp.output[0], "Where") is not w or id(gt) in imp.overrides
                or id(sp) in imp.overrides):
            continue
        first, second = sorted((gt, sp), key=lambda k: order[id(k)])
        imp.absorb(second, w)
        imp.overrides[id(first)] = lambda imp, n, x=x, t=t, w=w: imp.emit(
            n, Op.SOFTPLUS, [imp.act(x, n)], Softplus(1.0, t), name=w.output[0])


PATTERNS = (_gelu_patterns, _softplus_patterns)
