"""Channel-dependency analysis: which channels of a network must be removed together.

The network is traced with torch.fx into hwsim's IR (:func:`mapping.trace`). Every channel position
of every tensor (dim 1 of an NCHW tensor, the feature of an (N, F) tensor) gets an id; ids that
must disappear together are merged (union-find) into a *channel class*:

- conv2d (groups 1) and linear *produce* fresh classes (one per output channel / feature) and
  *consume* their input classes (weight columns);
- a depthwise conv (groups = Cin, Cout = m·Cin) passes class j through to its outputs j·m..j·m+m-1;
- batch norm, activations, pooling, upsampling pass classes through;
- add / mul of two tensors merge the classes position by position (a residual add or an SE gate
  forces the channels of both operands to be pruned identically);
- concat along channels concatenates the class lists (DenseNet), a channel slice selects from it;
- flatten (N, C, H, W) -> (N, C·H·W) repeats class c over its H·W features;
- one module executed several times (shared blocks) merges the classes of the same weight row /
  column across executions.

A class is *pinned* (never pruned) when it touches the network input or output, a grouped conv
that is not depthwise, a channel shuffle, a torch.split/chunk, or an op whose channel semantics the
analysis does not model; the reason names the layer. Unpinned classes are grouped by the set of
layers that produce them: a :class:`ChannelGroup` ("the filters of conv X", or for a residual
stage "the shared channels of conv1 + layer1.0.conv2 + ..."), the unit of per-layer pruning.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch.fx as fx
from torch import nn

from hwsim.errors import HwsimError
from mapping._torch_1d import ONE_D_MODULES
from mapping.graph import ACTIVATIONS, Graph, Op
from mapping.trace import trace
from nets.compress.errors import CompressError, UnprunableError

__all__ = ["ChannelGroup", "DependencyGraph", "analyze", "fx_trace"]

_PASS = ACTIVATIONS | {Op.BATCHNORM, Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL, Op.UPSAMPLE, Op.SIGN, Op.QUANTIZE}
_SPLITS = {"split", "chunk"}


@dataclass(frozen=True, slots=True)
class ChannelGroup:
    """Prunable channel classes produced by the same set of layers.

    name: the producing modules joined by ``+``; producers: their qualified module names;
    classes: the class ids, ordered by the output row of the first producer.
    """

    name: str
    producers: tuple[str, ...]
    classes: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.classes)


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """Result of :func:`analyze`.

    graph: the traced IR; value_classes: IR value name -> class id of each channel position;
    groups: prunable :class:`ChannelGroup` s in network order; pinned: class id -> reason;
    producers: class -> ((module, output row), ...) of conv/linear filters making it;
    consumers: class -> ((module, input column), ...) of conv (groups 1) / linear columns reading it
    (a flattened channel has several columns); bns: class -> ((bn module, index, activation op after
    it or None), ...); depthwise: class -> ((module, input channel), ...); bn_direct: the BatchNorm
    modules that read a conv (groups 1) / linear output directly (the producer's own BN).
    """

    graph: Graph
    input_shape: tuple[int, ...]
    value_classes: Mapping[str, np.ndarray]
    groups: tuple[ChannelGroup, ...]
    pinned: Mapping[int, str]
    producers: Mapping[int, tuple[tuple[str, int], ...]]
    consumers: Mapping[int, tuple[tuple[str, int], ...]]
    bns: Mapping[int, tuple[tuple[str, int, Op | None], ...]]
    depthwise: Mapping[int, tuple[tuple[str, int], ...]]
    bn_direct: frozenset[str] = frozenset()

    def producer_bns(self, c: int) -> tuple[tuple[str, int, Op | None], ...]:
        """The BatchNorm entries of class ``c`` right after its producing layers; when it has none
        (pre-activation nets such as DenseNet-BC), all of its BatchNorm entries."""
        entries = self.bns.get(c, ())
        direct = tuple(e for e in entries if e[0] in self.bn_direct)
        return direct or entries

    @property
    def prunable(self) -> tuple[int, ...]:
        return tuple(c for g in self.groups for c in g.classes)

    def group_of(self, module: str) -> ChannelGroup:
        """The group whose producers include ``module``; :class:`UnprunableError` (with the reason) if none."""
        for g in self.groups:
            if module in g.producers:
                return g
        for c, reason in self.pinned.items():
            if any(m == module for m, _ in self.producers.get(c, ())):
                raise UnprunableError(f"the output channels of layer '{module}' cannot be pruned: {reason}")
        raise UnprunableError(f"'{module}' is not a conv2d/linear layer producing channels of this network")


class _UF:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, k: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + k))
        return np.arange(start, start + k, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def fx_trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx trace of ``model`` with the leaf-module rules of :func:`mapping.trace` (same node names)."""
    from mapping.trace import Tracer  # the IR's tracer: identical leaf decisions give identical node names

    try:
        return fx.GraphModule(model, Tracer().trace(model))
    except HwsimError:
        raise
    except Exception as e:  # pragma: no cover - mapping.trace refuses first with a better message
        raise CompressError(f"torch.fx cannot trace {type(model).__name__}: {e}") from e


def _channels(shape: Sequence[int]) -> int | None:
    """Length of the channel axis of a value: C of (N, C, H, W), F of (N, F); None for other ranks."""
    return int(shape[1]) if len(shape) in (2, 4) else None


def analyze(model: nn.Module, input_shape: Sequence[int]) -> DependencyGraph:
    """Trace ``model`` at ``input_shape`` and build its channel classes and prunable groups."""
    shape = tuple(int(s) for s in input_shape)
    one_d = next((k for k, m in model.named_modules() if isinstance(m, ONE_D_MODULES)), None)
    if one_d is not None:
        raise UnprunableError(f"{type(model.get_submodule(one_d)).__name__} '{one_d}': channel surgery follows 2-d "
                              "convs and linears (a 1-d layer is imported as a 2-d one between views)")
    graph = trace(model, shape)
    fx_nodes = {n.name: n for n in fx_trace(model).graph.nodes}
    missing = next((n for n in graph.nodes if n.name not in fx_nodes), None)
    if missing is not None:
        raise UnprunableError(_unfollowed(graph, missing, fx_nodes))
    st = _Classes(graph)
    for i in graph.inputs:
        st.vc[i.name] = st.fresh(i.name, "network input")
    for n in graph.nodes:
        st.vc[n.name] = _node_classes(st, n, fx_nodes)
    for o in graph.outputs:
        st.pin_all(st.vc[o], f"network output '{o}'")
    return _finish(graph, shape, st.uf, st.vc, st.pin, st.prod, st.cons, st.dw, st.bn, graph.consumers())


def _unfollowed(graph: Graph, missing, fx_nodes: Mapping[str, fx.Node]) -> str:
    """Why IR node ``missing`` has no torch.fx node of its name. A torch.fx import names each module call's node by
    the fx node (a torch.export import, which mapping.trace falls back to when the fx graph has an op it cannot
    convert, names nodes by ATen ops: no module call's fx name is an IR name); a composite op's helper nodes are
    named ``<fx node>_<suffix>`` (mapping._torch_composite, _torch_mask, _torch_activations, _torch_rnn)."""
    names = {n.name for n in graph.nodes}
    calls = [m.name for m in fx_nodes.values() if m.op == "call_module"]
    if calls and not any(c in names for c in calls):
        return (f"{missing.op.value} '{missing.module or missing.name}' was imported through torch.export, not "
                "torch.fx: channel surgery follows torch.fx's graph only")
    owner = max((k for k in fx_nodes if missing.name.startswith(k + "_")), key=len, default=None)
    if owner is None:
        return (f"{missing.op.value} '{missing.name}' has no torch.fx node of its name: channel surgery follows one "
                "IR node per torch.fx node")
    m = fx_nodes[owner]
    what = type(m.graph.owning_module.get_submodule(m.target)).__name__ if m.op == "call_module" else \
        getattr(m.target, "__name__", str(m.target))
    return (f"'{owner}' (a {what}) is imported as several IR ops ('{missing.name}' among them); channel surgery "
            "follows one IR node per torch.fx node")


class _Classes:
    """The analysis's state while it walks the graph: the union-find of channel ids, each value's ids (``vc``), the
    pinned ids and why, and the ids of each (module, row/column) of the producers, consumers, depthwise convs and
    batch norms (merged across executions of one module)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.uf = _UF()
        self.vc: dict[str, np.ndarray] = {}
        self.pin: dict[int, str] = {}
        self.prod: dict[tuple[str, int], int] = {}  # (module, row) -> class id (merged across executions)
        self.cons: dict[tuple[str, int], int] = {}
        self.dw: dict[tuple[str, int], int] = {}
        self.bn: dict[tuple[str, int], int] = {}

    def fresh(self, name: str, reason: str | None = None, k: int | None = None) -> np.ndarray:
        ids = self.uf.new(k if k is not None else _channels(self.graph.shape_of(name)) or 0)
        if reason:
            for i in ids:
                self.pin[int(i)] = reason
        return ids

    def pin_all(self, ids: np.ndarray, reason: str) -> None:
        for i in ids:
            self.pin.setdefault(int(i), reason)

    def keyed(self, table: dict, key: tuple[str, int], cid: int) -> None:
        if key in table:
            self.uf.union(table[key], cid)
        else:
            table[key] = int(cid)

    def dense(self, n, x: np.ndarray) -> np.ndarray:
        """A conv (groups 1) or linear layer: fresh classes for its outputs; it consumes its input classes."""
        out = self.fresh(n.name)
        for col, cid in enumerate(x):
            self.keyed(self.cons, (n.module, col), cid)
        for row, cid in enumerate(out):
            self.keyed(self.prod, (n.module, row), cid)
        return out


def _node_classes(st: _Classes, n, fx_nodes: Mapping[str, fx.Node]) -> np.ndarray:
    """The channel classes of node ``n``'s output (merging or pinning its inputs' classes as its op requires)."""
    where = f"{n.op.value} '{n.module or n.name}'"
    ins = [st.vc.get(i) for i in n.inputs]
    out_c = _channels(n.shape)
    if out_c is None:
        for a in ins:
            if a is not None:
                st.pin_all(a, f"{where} has a {len(n.shape)}-d output")
        return np.zeros(0, np.int64)
    x = ins[0] if ins else None
    if n.op == Op.CONV2D:
        return _conv_classes(st, n, x)
    if n.op == Op.LINEAR:
        if len(st.graph.shape_of(n.inputs[0])) == 2:
            return st.dense(n, x)
        st.pin_all(x, f"linear '{n.module}' on a tensor of rank > 2")
        return st.fresh(n.name, f"linear '{n.module}' on a tensor of rank > 2")
    if n.op in _PASS:
        if n.op == Op.BATCHNORM:
            for j, cid in enumerate(x):
                st.keyed(st.bn, (n.module, j), cid)
        return x.copy()
    if n.op == Op.PAD and tuple(n.attrs.pads[1]) == (0, 0):  # a pad of the spatial dims, in any mode, per channel
        return x.copy()
    if n.op in (Op.ADD, Op.MUL):
        if len(ins) == 1:
            return x.copy()
        if len(ins[0]) == len(ins[1]) == out_c:
            for p, q in zip(ins[0], ins[1]):
                st.uf.union(p, q)
            return ins[0].copy()
        for a in ins:
            st.pin_all(a, f"{where} broadcasts over channels")
        return st.fresh(n.name, f"{where} broadcasts over channels")
    if n.op == Op.CONCAT and n.attrs.dim == 1:
        return np.concatenate(ins)
    if n.op == Op.SLICE and n.attrs.dim == 1:
        return _slice_classes(st, n, x, fx_nodes)
    if n.op == Op.RESHAPE:
        return _reshape_classes(st, n, x)
    for a in ins:
        if a is not None:
            st.pin_all(a, f"{where}: channel dependencies through this op are not modelled")
    return st.fresh(n.name, f"{where}: channel dependencies through this op are not modelled")


def _conv_classes(st: _Classes, n, x: np.ndarray) -> np.ndarray:
    a = n.attrs
    if a.groups == 1:
        return st.dense(n, x)
    if a.groups == a.in_channels and a.out_channels % a.in_channels == 0:  # depthwise: class j -> outputs j·m..
        m = a.out_channels // a.in_channels
        for j, cid in enumerate(x):
            st.keyed(st.dw, (n.module, j), cid)
        return x[np.arange(a.out_channels) // m].copy()
    st.pin_all(x, f"grouped conv '{n.module}' (groups={a.groups}) cannot lose single channels")
    return st.fresh(n.name, f"output of grouped conv '{n.module}' (groups={a.groups})")


def _slice_classes(st: _Classes, n, x: np.ndarray, fx_nodes: Mapping[str, fx.Node]) -> np.ndarray:
    """A channel slice selects from its input's classes; one made by torch.split/chunk pins them (its sizes are not
    rewritten)."""
    src = fx_nodes.get(n.name)
    base = src.args[0] if src is not None and src.args else None
    if isinstance(base, fx.Node) and base.op in ("call_method", "call_function") and (
            getattr(base.target, "__name__", base.target) in _SPLITS):
        st.pin_all(x, f"torch.split/chunk at '{n.module or n.name}' (its sizes are not rewritten)")
        return st.fresh(n.name, f"torch.split/chunk at '{n.module or n.name}'")
    return x[n.attrs.start:n.attrs.stop].copy()


def _reshape_classes(st: _Classes, n, x: np.ndarray) -> np.ndarray:
    """Flatten (N, C, H, W) -> (N, C·H·W) repeats class c over its H·W features; (N, C) -> (N, C, 1, 1) and a reshape
    to the same shape keep them; any other reshape mixes channels with other axes (pinned)."""
    sin = st.graph.shape_of(n.inputs[0])
    if len(sin) == 4 and len(n.shape) == 2 and n.shape[1] == sin[1] * sin[2] * sin[3]:
        return np.repeat(x, sin[2] * sin[3])
    if len(sin) == 2 and len(n.shape) == 4 and n.shape[1] == sin[1] and n.shape[2] * n.shape[3] == 1:
        return x.copy()
    if tuple(sin) == tuple(n.shape):
        return x.copy()
    st.pin_all(x, f"reshape '{n.name}' {tuple(sin)} -> {tuple(n.shape)} mixes channels with other axes")
    return st.fresh(n.name, f"reshape '{n.name}' mixes channels with other axes")


def _finish(graph, shape, uf, vc, pin, prod, cons, dw, bn, consumers) -> DependencyGraph:
    find = uf.find
    roots = {k: np.array([find(int(c)) for c in v], np.int64) for k, v in vc.items()}
    pinned: dict[int, str] = {}
    for c, reason in pin.items():
        pinned.setdefault(find(c), reason)

    def collect(table: dict[tuple[str, int], int]) -> dict[int, list[tuple[str, int]]]:
        out: dict[int, list[tuple[str, int]]] = {}
        for key, c in table.items():
            out.setdefault(find(c), []).append(key)
        return out

    producers, consumers_, depthwise = collect(prod), collect(cons), collect(dw)
    act_after: dict[str, Op | None] = {}
    direct: set[str] = set()
    for n in graph.nodes:
        if n.op == Op.BATCHNORM:
            src = graph[n.inputs[0]] if n.inputs[0] in graph else None
            if src is not None and (src.op == Op.LINEAR or (src.op == Op.CONV2D and src.attrs.groups == 1)):
                direct.add(n.module)
            users = consumers.get(n.name, [])
            act_after[n.module] = users[0].op if len(users) == 1 and users[0].op in ACTIVATIONS else None
    bns: dict[int, list] = {}
    for (m, j), c in bn.items():
        bns.setdefault(find(c), []).append((m, j, act_after.get(m)))
    order = {n.module: i for i, n in reversed(list(enumerate(graph.nodes)))}
    buckets: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for c, rows in producers.items():
        if c in pinned:
            continue
        mods = tuple(sorted({m for m, _ in rows}, key=lambda m: order.get(m, 0)))
        first = min((r for m, r in rows if m == mods[0]))
        buckets.setdefault(mods, []).append((first, c))
    groups = [ChannelGroup("+".join(mods), mods, tuple(c for _, c in sorted(items)))
              for mods, items in buckets.items()]
    groups.sort(key=lambda g: order.get(g.producers[0], 0))
    freeze = lambda d: {k: tuple(v) for k, v in d.items()}  # noqa: E731
    return DependencyGraph(graph, shape, roots, tuple(groups), pinned, freeze(producers), freeze(consumers_),
                           freeze(bns), freeze(depthwise), frozenset(direct))
