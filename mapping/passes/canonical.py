"""Canonical forms of idioms an importer sees as several generic ops (a pure pass).

* **channel shuffle**: ``view(N, g, C/g, H, W) -> transpose(1, 2) -> view(N, C, H, W)`` (ShuffleNet's
  ``channel_shuffle``, as torch and ONNX write it) becomes one CHANNEL_SHUFFLE node, named after the final view
  (the value it produces is the same), when the two intermediate values have no other reader.
* **identity arithmetic**: ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1`` of a python scalar (timm's MobileOne /
  FastViT training-form blocks add a literal 0) are dropped, their readers reading ``x``: exact in float32 (up to
  the sign of a zero), and no runtime executes them. A graph output keeps its node (its name is the output's).
"""
from __future__ import annotations

import dataclasses

from mapping.graph import ChannelShuffle, Graph, Node, Op, Scalar

__all__ = ["canonical"]


def _shuffle_groups(first: Node, perm: Node, last: Node, in_shape: tuple[int, ...]) -> int | None:
    if len(in_shape) != 4 or len(first.shape) != 5 or tuple(last.shape) != tuple(in_shape):
        return None
    n, c, h, w = in_shape
    _, g, cg, h2, w2 = first.shape
    if g * cg != c or (h2, w2) != (h, w) or tuple(perm.attrs.perm) != (0, 2, 1, 3, 4):
        return None
    return int(g)


def _identity_arith(n: Node) -> bool:
    a = n.attrs
    if not isinstance(a, Scalar) or len(n.inputs) != 1:
        return False
    return (n.op == Op.ADD and a.value == 0.0 or n.op == Op.SUB and a.value == 0.0 and not a.reverse
            or n.op == Op.MUL and a.value == 1.0 or n.op == Op.DIV and a.value == 1.0 and not a.reverse)


def _drop_identity_arith(graph: Graph) -> Graph:
    outputs = set(graph.outputs)
    alias: dict[str, str] = {}
    for n in graph.nodes:
        if _identity_arith(n) and n.name not in outputs and tuple(n.shape) == tuple(graph.shape_of(n.inputs[0])):
            alias[n.name] = alias.get(n.inputs[0], n.inputs[0])
    if not alias:
        return graph
    nodes = tuple(dataclasses.replace(n, inputs=tuple(alias.get(i, i) for i in n.inputs))
                  for n in graph.nodes if n.name not in alias)
    return graph.replace(nodes=nodes)


def canonical(graph: Graph) -> Graph:
    """Fuse the channel-shuffle idiom and drop identity arithmetic; any other graph comes back unchanged."""
    graph = _drop_identity_arith(graph)
    readers = graph.consumers()
    outputs = set(graph.outputs)
    drop: set[str] = set()
    fused: dict[str, Node] = {}
    for perm in graph.nodes:
        if perm.op != Op.PERMUTE or perm.name in outputs or len(readers[perm.name]) != 1:
            continue
        first = graph[perm.inputs[0]] if perm.inputs[0] in graph else None
        last = readers[perm.name][0]
        if first is None or first.op != Op.RESHAPE or last.op != Op.RESHAPE or first.name in outputs \
                or len(readers[first.name]) != 1:
            continue
        groups = _shuffle_groups(first, perm, last, graph.shape_of(first.inputs[0]))
        if groups is None:
            continue
        drop |= {first.name, perm.name}
        fused[last.name] = Node(last.name, Op.CHANNEL_SHUFFLE, first.inputs, last.shape, ChannelShuffle(groups), {},
                                perm.module or last.module, {})
    if not fused:
        return graph
    nodes = tuple(fused.get(n.name, n) for n in graph.nodes if n.name not in drop)
    return graph.replace(nodes=nodes)
