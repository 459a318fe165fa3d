"""When each node runs: layer-by-layer (a sum) or layer-pipelined (a SimPy event simulation).

Layer-by-layer: nodes run one after the other in graph order; a node starts when the previous one
ends. Layer-pipelined (ISAAC's inter-layer pipeline): every node is a SimPy process that computes
its output in row chunks (at most ``max_chunks`` per node). Chunk i of a node starts when each of its inputs has
produced the rows that chunk needs (for a conv or pool the receptive field ``r·stride - pad + dilation·(k-1) + 1``;
for a transposed conv the input rows up to ``(r + pad) // stride``, those that reach output row r; for a linear
layer or global pooling the whole input, and so for every node whose output rows each depend on all
rows of an input: attention's keys and values, a permute moving the rows, a softmax or reduction over them, a group
norm, :func:`_mixes_rows`; a reflect or replicate pad the rows it copies, a circular pad of the top rows the whole
input) and its crossbars are free: each weight key's crossbars are one SimPy ``Resource``, so the T executions of a
shared block queue on the same crossbars, and all spilled layers share one "swap" region. Tiles are resources too:
a tile shared by several weight keys has one buffer port, which each chunk of those layers holds for its share of
the activation traffic (its buffer time over its tiles) while its crossbars compute, so layers packed on the same
tile contend for its buffer. The DRAM interface is one more resource: a chunk's share of its node's DRAM time
(weight reloads, feature maps beyond the buffers) holds it, so off-chip transfers of overlapping layers queue. A
digital node that is the only reader of its producer (ReLU after a conv) runs fused with it. Events are per (node
chain, chunk), never per cycle. Finer chunks overlap layers more: ResNet-18 on imc/isaac gives 26.7 ms with 8
chunks, 23.8 ms with 16, 21.3 ms with 64 (vs 48.4 ms layer-by-layer).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import simpy

from hwsim.imc.cost import NodeCost
from mapping.graph import Graph, Node, Op

__all__ = ["schedule"]


def _rows(shape: Sequence[int]) -> int:
    return int(shape[2]) if len(shape) == 4 else 1


def _mixes_rows(node: Node, index: int) -> bool:
    """Does every output row of a 4-d ``node`` depend on all rows (dim 2) of its input number ``index``? A permute
    moving dim 2, a softmax / reduction over dim 2, a layer norm over the last two dims, a group norm, and the
    second operand of a MATMUL (its rows are the reduced dim K) or the keys and values of an ATTENTION."""
    a = node.attrs
    if node.op in (Op.MATMUL, Op.ATTENTION):
        return index > 0
    if node.op == Op.PERMUTE:
        return a.perm[2] != 2
    if node.op == Op.SOFTMAX:
        return a.dim % 4 == 2
    if node.op in (Op.REDUCE_MEAN, Op.REDUCE_SUM, Op.REDUCE_MAX):
        return any(d % 4 == 2 for d in a.dims)
    if node.op == Op.LAYERNORM:
        return len(a.normalized_shape) >= 2
    return node.op == Op.GROUPNORM


def _needed(node: Node, out_rows_done: int, in_shape: Sequence[int], index: int = 0) -> int:
    """Input rows needed to produce the first ``out_rows_done`` output rows of ``node`` from its input ``index``."""
    hin, hout = _rows(in_shape), _rows(node.shape)
    if hin == 1 or hout == 1 or len(node.shape) != 4 or _mixes_rows(node, index):
        return hin
    a = node.attrs
    if node.op == Op.SLICE and a.dim % 4 == 2:  # rows start, start + step, ...
        return min(hin, a.start + (out_rows_done - 1) * a.step + 1)
    if node.op in (Op.CONV2D, Op.MAXPOOL, Op.AVGPOOL):
        r = out_rows_done - 1
        return max(1, min(hin, r * a.stride[0] - a.padding[0] + a.dilation[0] * (a.kernel[0] - 1) + 1))
    if node.op == Op.CONV_TRANSPOSE2D:  # input row iy reaches output rows iy·s − p + ky·d, ky >= 0: row r needs
        r = out_rows_done - 1           # input rows up to (r + p) // s (those with ky = 0 land lowest)
        return max(1, min(hin, (r + a.padding[0]) // a.stride[0] + 1))
    if node.op == Op.ADAPTIVE_AVGPOOL:
        return hin
    if node.op == Op.PAD and a.mode != "constant":  # output row r copies row r - top, mirrored / clamped / wrapped
        top = a.pads[2][0]
        if a.mode == "circular":  # the first `top` rows are the last input rows
            return min(hin, out_rows_done - top + (hin if top > 0 else 0))
        return min(hin, max(top + 1, out_rows_done - top) if a.mode == "reflect" else max(1, out_rows_done - top))
    return min(hin, math.ceil(out_rows_done * hin / hout))


def _layer_by_layer(costs: Sequence[NodeCost]) -> tuple[dict[str, float], dict[str, float]]:
    """Nodes one after the other in graph order: a node starts when the previous one ends."""
    start, finish, t = {}, {}, 0.0
    for c in costs:
        start[c.name] = t
        t += c.latency_s
        finish[c.name] = t
    return start, finish


def _fused_groups(graph: Graph, cost_of: dict[str, NodeCost]) -> list[list[Node]]:
    """Chains of nodes run as one process: each digital node joins its producer's chain when it is that producer's
    only reader and has the same rows (ReLU after a conv, ...): fewer events, same dependencies."""
    consumers = graph.consumers()
    groups: list[list[Node]] = []
    group_of: dict[str, int] = {}
    for node in graph.nodes:
        src = node.inputs[0] if len(node.inputs) == 1 else None
        if (src is not None and src in group_of and not cost_of[node.name].resource and len(consumers[src]) == 1
                and _rows(node.shape) == _rows(graph[src].shape) and src not in graph.outputs):
            groups[group_of[src]].append(node)
            group_of[node.name] = group_of[src]
        else:
            group_of[node.name] = len(groups)
            groups.append([node])
    return groups


def _shared_tiles(costs: Sequence[NodeCost]) -> list[int]:
    """Tiles holding the crossbars of more than one weight key: their buffer port is a shared resource."""
    users: dict[int, set[str]] = {}
    for c in costs:
        for t in c.tiles:
            users.setdefault(t, set()).add(c.resource)
    return [t for t, keys in users.items() if len(keys) > 1]


def _chunk_plan(graph: Graph, node: Node, max_chunks: int) -> list[tuple[int, list[tuple[str, int]]]]:
    """[(output rows done after chunk i, [(input, rows needed), ...]), ...], computed before the run."""
    rows = _rows(node.shape)
    chunks = max(1, min(max_chunks, rows))
    shapes = [(src, graph.shape_of(src)) for src in node.inputs]
    plan = []
    for i in range(chunks):
        done = math.ceil((i + 1) * rows / chunks)
        plan.append((done, [(src, _needed(node, done, shp, j)) for j, (src, shp) in enumerate(shapes)]))
    return plan


@dataclass(frozen=True, slots=True)
class _Chain:
    """One SimPy process: a chain of fused nodes, costed as a whole."""

    members: tuple[str, ...]  # node names, producer first
    latency_s: float  # busy time of all members, s
    resource: str  # the head's crossbars (a weight key, "swap"), "" for digital
    plan: list  # _chunk_plan of the head
    shared_tiles: tuple[int, ...]  # the head's tiles whose buffer port is shared, in tile order
    buffer_s: float  # the head's activation traffic time in the buffers, s
    dram_s: float  # DRAM time of all members, s


class _Pipeline:
    """The SimPy state of a pipelined schedule: rows produced per node, waiting chunks, and the resources
    (crossbars per weight key, shared tile buffer ports, the DRAM interface)."""

    def __init__(self, graph: Graph, shared_tiles: Sequence[int]):
        self.env = simpy.Environment()
        self.produced = {i.name: _rows(i.shape) for i in graph.inputs}
        self.waiters: dict[str, list[tuple[int, simpy.Event]]] = {}
        self.resources: dict[str, simpy.Resource] = {}
        self.tile_ports = {t: simpy.Resource(self.env, capacity=1) for t in shared_tiles}
        self.dram = simpy.Resource(self.env, capacity=1)  # the off-chip interface: one transfer at a time
        self.start: dict[str, float] = {}
        self.finish: dict[str, float] = {}

    def advance(self, name: str, rows: int) -> None:
        """``name`` has produced ``rows`` rows: wake the chunks waiting for no more."""
        self.produced[name] = rows
        keep = []
        for need, ev in self.waiters.get(name, []):
            if need <= rows:
                ev.succeed()
            else:
                keep.append((need, ev))
        self.waiters[name] = keep

    def buffer_phase(self, tiles: Sequence[int], hold: float):
        """Hold the buffer ports of the shared tiles (in tile order: no deadlock) for ``hold`` s."""
        reqs = []
        for t in tiles:
            r = self.tile_ports[t].request()
            yield r
            reqs.append((t, r))
        yield self.env.timeout(hold)
        for t, r in reqs:
            self.tile_ports[t].release(r)

    def wait_inputs(self, needs: Sequence[tuple[str, int]]):
        """Until each input has produced the rows this chunk needs."""
        for src, need in needs:
            if self.produced[src] < need:
                ev = self.env.event()
                self.waiters.setdefault(src, []).append((need, ev))
                yield ev

    def run_chunk(self, chain: _Chain, dt: float, dt_dram: float, dt_buf: float):
        """One chunk's work once its crossbars are held: its DRAM share, then its compute (with its share of the
        shared tile buffers)."""
        env = self.env
        if dt_dram > 0:  # its DRAM traffic (weight reloads, feature maps) holds the off-chip interface
            dreq = self.dram.request()
            yield dreq
            yield env.timeout(dt_dram)
            self.dram.release(dreq)
        if chain.shared_tiles and dt_buf > 0:  # its activation traffic contends for shared tile buffers
            buf = env.process(self.buffer_phase(chain.shared_tiles, dt_buf))
            yield env.timeout(dt) & buf
        else:
            yield env.timeout(dt)

    def process(self, chain: _Chain):
        """The SimPy process of one chain, chunk after chunk."""
        n = len(chain.plan)
        dt, dt_dram, dt_buf = (chain.latency_s - chain.dram_s) / n, chain.dram_s / n, chain.buffer_s / n
        res = None
        if chain.resource:
            res = self.resources.setdefault(chain.resource, simpy.Resource(self.env, capacity=1))
        first = True
        for done, needs in chain.plan:
            yield from self.wait_inputs(needs)
            if res is not None:
                req = res.request()
                yield req
            if first:
                for name in chain.members:
                    self.start[name] = self.env.now
                first = False
            yield from self.run_chunk(chain, dt, dt_dram, dt_buf)
            if res is not None:
                res.release(req)
            self.advance(chain.members[-1], done)
        for name in chain.members:
            self.finish[name] = self.env.now


def schedule(graph: Graph, costs: Sequence[NodeCost], mode: str = "pipelined",
             max_chunks: int = 8) -> tuple[dict[str, float], dict[str, float]]:
    """Start and finish time (s) of every node."""
    if mode == "layer":
        return _layer_by_layer(costs)
    cost_of = {c.name: c for c in costs}
    pipe = _Pipeline(graph, _shared_tiles(costs))
    for grp in _fused_groups(graph, cost_of):
        for node in grp:
            pipe.produced[node.name] = 0
        hc = cost_of[grp[0].name]
        chain = _Chain(tuple(n.name for n in grp), sum(cost_of[n.name].latency_s for n in grp), hc.resource,
                       _chunk_plan(graph, grp[0], max_chunks),
                       tuple(sorted(t for t in hc.tiles if t in pipe.tile_ports)), hc.buffer_s,
                       sum(cost_of[n.name].dram_s for n in grp))
        pipe.env.process(pipe.process(chain))
    pipe.env.run()
    return pipe.start, pipe.finish
