"""When each node runs: layer-by-layer (a sum) or layer-pipelined (a SimPy event simulation).

Layer-by-layer: nodes run one after the other in graph order; a node starts when the previous one
ends. Layer-pipelined (ISAAC's inter-layer pipeline): every node is a SimPy process that computes
its output in row chunks (at most ``max_chunks`` per node). Chunk i of a node starts when each of
its inputs has produced the rows that chunk needs (for a conv or pool the receptive field
``r·stride - pad + dilation·(k-1) + 1``; for a linear layer or global pooling the whole input, and
so for every node whose output rows each depend on all rows of an input: attention's keys and values,
a permute moving the rows, a softmax or reduction over them, a group norm, :func:`_mixes_rows`) and
its crossbars are free: each weight key's crossbars are one SimPy ``Resource``, so the T
executions of a shared block queue on the same crossbars, and all spilled layers share one "swap"
region. Tiles are resources too: a tile shared by several weight keys has one buffer port, which
each chunk of those layers holds for its share of the activation traffic (its buffer time over its
tiles) while its crossbars compute, so layers packed on the same tile contend for its buffer. The
DRAM interface is one more resource: a chunk's share of its node's DRAM time (weight reloads,
feature maps beyond the buffers) holds it, so off-chip transfers of overlapping layers queue. A
digital node that is the only reader of its producer (ReLU after a conv) runs fused
with it. Events are per (node chain, chunk), never per cycle. Finer chunks overlap layers more:
ResNet-18 on imc/isaac gives 26.7 ms with 8 chunks, 23.8 ms with 16, 21.3 ms with 64 (vs 48.4 ms
layer-by-layer).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

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
    if node.op == Op.ADAPTIVE_AVGPOOL:
        return hin
    return min(hin, math.ceil(out_rows_done * hin / hout))


def schedule(graph: Graph, costs: Sequence[NodeCost], mode: str = "pipelined",
             max_chunks: int = 8) -> tuple[dict[str, float], dict[str, float]]:
    """Start and finish time (s) of every node."""
    if mode == "layer":
        start, finish, t = {}, {}, 0.0
        for c in costs:
            start[c.name] = t
            t += c.latency_s
            finish[c.name] = t
        return start, finish
    env = simpy.Environment()
    total = {i.name: _rows(i.shape) for i in graph.inputs}
    produced = {i.name: total[i.name] for i in graph.inputs}
    waiters: dict[str, list[tuple[int, simpy.Event]]] = {}
    resources: dict[str, simpy.Resource] = {}
    start: dict[str, float] = {}
    finish: dict[str, float] = {}

    def advance(name: str, rows: int) -> None:
        produced[name] = rows
        keep = []
        for need, ev in waiters.get(name, []):
            if need <= rows:
                ev.succeed()
            else:
                keep.append((need, ev))
        waiters[name] = keep

    def buffer_phase(tiles: list, hold: float):
        """Hold the buffer ports of the shared tiles (in tile order: no deadlock) for ``hold`` s."""
        reqs = []
        for t in tiles:
            r = tile_ports[t].request()
            yield r
            reqs.append((t, r))
        yield env.timeout(hold)
        for t, r in reqs:
            tile_ports[t].release(r)

    dram = simpy.Resource(env, capacity=1)  # the off-chip interface: one transfer at a time

    def process(node: Node, members: list[str], latency: float, resource: str, plan: list,
                shared_tiles: list, buffer_s: float, dram_s: float):
        dt = (latency - dram_s) / len(plan)
        dt_dram = dram_s / len(plan)
        dt_buf = buffer_s / len(plan)
        res = None
        if resource:
            res = resources.setdefault(resource, simpy.Resource(env, capacity=1))
        first = True
        for done, needs in plan:
            for src, need in needs:
                if produced[src] < need:
                    ev = env.event()
                    waiters.setdefault(src, []).append((need, ev))
                    yield ev
            if res is not None:
                req = res.request()
                yield req
            if first:
                for name in members:
                    start[name] = env.now
                first = False
            if dt_dram > 0:  # its DRAM traffic (weight reloads, feature maps) holds the off-chip interface
                dreq = dram.request()
                yield dreq
                yield env.timeout(dt_dram)
                dram.release(dreq)
            if shared_tiles and dt_buf > 0:  # its activation traffic contends for shared tile buffers
                buf = env.process(buffer_phase(shared_tiles, dt_buf))
                yield env.timeout(dt) & buf
            else:
                yield env.timeout(dt)
            if res is not None:
                res.release(req)
            advance(members[-1], done)
        for name in members:
            finish[name] = env.now

    def chunk_plan(node: Node) -> list:
        """[(output rows done after chunk i, [(input, rows needed), ...]), ...], computed before the run."""
        rows = _rows(node.shape)
        chunks = max(1, min(max_chunks, rows))
        shapes = [(src, graph.shape_of(src)) for src in node.inputs]
        plan = []
        for i in range(chunks):
            done = math.ceil((i + 1) * rows / chunks)
            plan.append((done, [(src, _needed(node, done, shp, j)) for j, (src, shp) in enumerate(shapes)]))
        return plan

    # fuse each digital node into its producer when it is that producer's only reader and has the
    # same rows (ReLU after a conv, ...): one process per chain, fewer events, same dependencies
    consumers = graph.consumers()
    cost_of = {c.name: c for c in costs}
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
    # tiles holding the crossbars of more than one weight key: their buffer port is a shared resource
    users: dict[int, set[str]] = {}
    for c in costs:
        for t in c.tiles:
            users.setdefault(t, set()).add(c.resource)
    tile_ports = {t: simpy.Resource(env, capacity=1) for t, keys in users.items() if len(keys) > 1}
    for grp in groups:
        for node in grp:
            produced[node.name] = 0
        head = grp[0]
        hc = cost_of[head.name]
        env.process(process(head, [n.name for n in grp], sum(cost_of[n.name].latency_s for n in grp),
                            hc.resource, chunk_plan(head), sorted(t for t in hc.tiles if t in tile_ports),
                            hc.buffer_s, sum(cost_of[n.name].extra.get("dram_s", 0.0) for n in grp)))
    env.run()
    return start, finish
