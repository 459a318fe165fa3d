"""Canonical forms of idioms an importer sees as several generic ops (a pure pass).

* **channel shuffle**: ``view(N, g, C/g, H, W) -> transpose(1, 2) -> view(N, C, H, W)`` (ShuffleNet's
  ``channel_shuffle``, as torch and ONNX write it) becomes one CHANNEL_SHUFFLE node, named after the final view
  (the value it produces is the same), when the two intermediate values have no other reader.
"""
from __future__ import annotations

from mapping.graph import ChannelShuffle, Graph, Node, Op

__all__ = ["canonical"]


def _shuffle_groups(first: Node, perm: Node, last: Node, in_shape: tuple[int, ...]) -> int | None:
    if len(in_shape) != 4 or len(first.shape) != 5 or tuple(last.shape) != tuple(in_shape):
        return None
    n, c, h, w = in_shape
    _, g, cg, h2, w2 = first.shape
    if g * cg != c or (h2, w2) != (h, w) or tuple(perm.attrs.perm) != (0, 2, 1, 3, 4):
        return None
    return int(g)


def canonical(graph: Graph) -> Graph:
    """Fuse the channel-shuffle idiom; any other graph comes back unchanged."""
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
