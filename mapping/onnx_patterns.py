"""Multi-node ONNX patterns converted as one IR node: the erf-form GELU and torch's thresholded softplus; and
batch-first recurrent layers exported sequence first (:func:`_batch_first_rnns`).

A pattern finder ``find(importer)`` runs before the walk: it marks the pattern's later nodes absorbed and
installs, for its first node, a converter emitting the fused IR node under the last node's output name (the
recurrent pattern installs a converter for each of its nodes instead: it decides at its first node, when the IR
shapes are known, whether it applies, and otherwise converts each node as itself).
"""
from __future__ import annotations

import math

import numpy as np

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


def _unclaimed(imp, op_type: str):
    """The standard-domain ``op_type`` nodes of the file that no pattern has claimed yet, in file order."""
    return (n for n in imp.onnx_nodes
            if n.op_type == op_type and n.domain in ("", "ai.onnx") and id(n) not in imp.overrides)


def _gelu_patterns(imp) -> None:
    """Erf-form GELU, ``x * 0.5 * (1 + Erf(x / sqrt 2))`` (torch's export before opset 20) -> one GELU node, named by
    the last product, emitted where the pattern's first node was."""
    order = {id(m): k for k, m in enumerate(imp.onnx_nodes)}
    for erf in _unclaimed(imp, "Erf"):
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
    for w in _unclaimed(imp, "Where"):
        if len(w.input) != 3:
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


_RECURRENT = ("LSTM", "GRU", "RNN")


def _ints(imp, n, name: str, index: int) -> list[int] | None:
    """Integer list attribute ``name`` of ``n``, or its constant operand ``index`` (newer opsets)."""
    if len(n.input) > index and n.input[index]:
        return [int(v) for v in np.ravel(imp.const(n.input[index]))] if imp.is_const(n.input[index]) else None
    v = imp.attr(n, name)
    return None if v is None else [int(a) for a in v]


def _readers(imp, name: str) -> list:
    """The nodes reading ``name`` but those the import folds into constants (a Shape)."""
    return [u for u in imp.consumers(name) if not all(o in imp.consts for o in u.output if o)]


def _sole(imp, name: str, *op_types: str):
    """The one reader of ``name`` (:func:`_readers`) when it is of ``op_types`` and ``name`` is no graph output, else
    None."""
    users = _readers(imp, name)
    ok = len(users) == 1 and name not in imp.graph_outputs and users[0].op_type in op_types
    return users[0] if ok and users[0].domain in ("", "ai.onnx") else None


def _seq_tail(imp, r) -> list | None:
    """The nodes turning sequence-first ``r``'s Y ``(L, D, N, H)`` into ``(L, N, D·H)``: a Squeeze of axis 1 (D 1)
    or Transpose(0, 2, 1, 3) then Reshape, as torch exports them; else None."""
    y = r.output[0]
    u = _sole(imp, y, "Squeeze", "Transpose")
    if u is None:
        return None
    steps, dirs, batch, hidden = imp.shape(y)
    if u.op_type == "Squeeze":
        return [u] if dirs == 1 and _ints(imp, u, "axes", 1) == [1] else None
    v = _sole(imp, u.output[0], "Reshape") if _ints(imp, u, "perm", 99) == [0, 2, 1, 3] else None
    return [u, v] if v is not None and imp.shape(v.output[0]) == (steps, batch, dirs * hidden) else None


def _rnn_chain(imp, t0):
    """The recurrent layers torch exports for a ``batch_first=True`` module, from Transpose ``t0`` (perm 1, 0, 2)
    on: ``([(layer node, the node reading its batch-first sequence or None)], the nodes between them)``, where the
    last reader is the Transpose back to batch first (or None: the sequence is not read); else None."""
    if _ints(imp, t0, "perm", 99) != [1, 0, 2]:
        return None
    r = _sole(imp, t0.output[0], *_RECURRENT)
    chain, between = [], [t0]
    while r is not None and r.input[0] == between[-1].output[0] and not int(imp.attr(r, "layout", 0)):
        if not imp.consumers(r.output[0]) and r.output[0] not in imp.graph_outputs:
            return chain + [(r, None)], between
        tail = _seq_tail(imp, r)
        u = None if tail is None else _sole(imp, tail[-1].output[0], "Transpose", *_RECURRENT)
        if u is None:
            return None
        between += tail
        if u.op_type == "Transpose":
            return (chain + [(r, u)], between + [u]) if _ints(imp, u, "perm", 99) == [1, 0, 2] else None
        chain.append((r, u))
        r = u
    return None


def _state_reads(imp, layers) -> tuple[dict, list]:
    """The final states read one at a time: Gather(axis 0, a scalar index) of a layer's Y_h / Y_c, or of the
    Concat(axis 0) of all layers' (torch's ``h_n[-1]``). ``({id(layer): [(output index, direction, name)]}, the
    nodes read so)``."""
    reads: dict = {id(r): [] for r in layers}
    taken: list = []

    def pick(g) -> int | None:
        idx = imp.const(g.input[1]) if g.op_type == "Gather" and imp.is_const(g.input[1]) else None
        return int(idx) if idx is not None and np.ndim(idx) == 0 and int(imp.attr(g, "axis", 0)) == 0 else None

    for k in (1, 2):
        outs = [r.output[k] if len(r.output) > k else "" for r in layers]
        if not all(outs):
            continue
        dirs = imp.shape(outs[0])[0]
        for r, o in zip(layers, outs):
            for g in imp.consumers(o):
                if pick(g) is not None and o not in imp.graph_outputs:
                    reads[id(r)].append((k, pick(g) % dirs, g.output[0]))
                    taken.append(g)
        cat = imp.consumers(outs[0])
        cat = cat[0] if len(cat) == 1 and cat[0].op_type == "Concat" else None
        if (cat is None or list(cat.input) != outs or int(imp.attr(cat, "axis", 0)) != 0
                or cat.output[0] in imp.graph_outputs or any(pick(g) is None for g in imp.consumers(cat.output[0]))):
            continue
        for g in imp.consumers(cat.output[0]):
            i = pick(g) % (dirs * len(layers))
            reads[id(layers[i // dirs])].append((k, i % dirs, g.output[0]))
            taken.append(g)
        taken.append(cat)
    return reads, taken


def _batch_first_rnns(imp) -> None:
    """torch's export of ``nn.LSTM / GRU / RNN(batch_first=True)``: Transpose(1, 0, 2) -> layers in ONNX's
    sequence-first layout (between them a Squeeze, or a Transpose and Reshape joining the directions) ->
    Transpose(1, 0, 2) moves the batch twice; the layers run batch first instead (the module's own layout, at any
    batch), the transposes between them absorbed, and a final state read by index (``h_n[-1]``) is that state.
    Other reads of Y_h / Y_c keep ONNX's layout (batch 1 only). The values between layers get fresh names (the
    source's are sequence first); the last sequence and the states read are verified under their own names. When
    the input is not batch first in the IR (batch 1, a model that moved the batch before), nothing changes."""
    from mapping.onnx_ops import CONVERTERS
    from mapping.onnx_rnn import BatchFirst, rnn

    for t0 in _unclaimed(imp, "Transpose"):
        found = _rnn_chain(imp, t0)
        if found is None:
            continue
        chain, between = found
        reads, taken = _state_reads(imp, [r for r, _ in chain])
        nodes = between + taken + [r for r, _ in chain]
        if any(id(m) in imp.overrides for m in nodes):
            continue
        state: dict = {}

        def quiet(imp, n, state=state):  # a node the layers compute, or (state["plain"]) converted as itself
            if state["plain"]:
                CONVERTERS[n.op_type](imp, n)

        def first(imp, n, state=state):
            x = n.input[0]
            state["plain"] = imp.offset(x) != 0 or len(imp.ishape(x)) != 3
            state["x"] = None if state["plain"] else imp.act(x, n)
            quiet(imp, n)

        taken_ids = frozenset(id(m) for m in taken)

        def layer(imp, n, nxt, reads, state=state, taken=taken_ids):
            if state["plain"]:
                return CONVERTERS[n.op_type](imp, n)
            outs = frozenset(o for o in n.output[1:] if o and o not in imp.graph_outputs
                             and all(id(g) in taken for g in _readers(imp, o)))
            y = nxt.output[0] if nxt is not None and nxt.op_type == "Transpose" else None
            state["x"] = rnn(imp, n, BatchFirst(state["x"], y, tuple(reads), outs, nxt is not None))

        for m in nodes:
            imp.overrides[id(m)] = quiet
        imp.overrides[id(t0)] = first
        for r, nxt in chain:
            imp.overrides[id(r)] = _bind(layer, nxt, reads[id(r)])


def _bind(fn, *args):
    """A converter ``(imp, n)`` calling ``fn(imp, n, *args)``."""
    return lambda imp, n: fn(imp, n, *args)


PATTERNS = (_gelu_patterns, _softplus_patterns, _batch_first_rnns)
