"""Fold inference-mode batch norm into the preceding conv2d / conv_transpose2d / linear.

For y = γ·(Wx + b − μ)/√(σ² + ε) + β:  W' = W·s,  b' = (b − μ)·s + β  with s = γ/√(σ² + ε) per output
channel. The result equals the unfolded graph up to fp32 rounding. A transposed conv's weight is
(Cin, Cout/groups, kh, kw): output channel ``g·Cout/groups + c`` is ``weight[g·Cin/groups:(g + 1)·Cin/groups, c]``,
scaled along that second axis.

A batch norm is folded only when its input is a conv/linear read by nothing else (or that layer's view adding or
dropping unit dims after the channels: a 1-d conv run as 2-d), and not when a sign reads it: a binary layer's pre-activation is an integer sum that is often exactly the batch norm's mean, where the
unfolded batch norm gives exactly 0 (sign +1) and the folded weights give ±(fp32 rounding) — a flipped
activation, not a rounding difference. Parameter keys
of folded layers are ``"<weight key>+<bn key>"``: a shared conv followed by the same shared BN at
every execution keeps one key (memory counted once); followed by distinct BNs it gets one folded
copy per BN, which is what the hardware would have to store. A k-bit layer's ``weight_scale`` annotation becomes one
scale per output channel (its folded weights' grid).
"""
from __future__ import annotations

import numpy as np

from hwsim.cache import identity_cache
from mapping.graph import Graph, Node, Op

__all__ = ["fold_bn", "fold_bn_cached", "fold_target"]


@identity_cache(maxsize=16)
def fold_bn_cached(graph: Graph) -> Graph:
    """:func:`fold_bn` of ``graph``, remembered per graph object (the last 16; :func:`hwsim.cache.clear_caches`
    empties it): a sweep that costs one graph on many specs folds it once. Graphs are not modified after tracing;
    the result must not be either."""
    return fold_bn(graph)


def _scale_outputs(prod: Node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``w`` with each output channel's weights multiplied by its ``s`` (module docstring)."""
    if prod.op == Op.CONV_TRANSPOSE2D:
        g = prod.attrs.groups
        return (w.reshape((g, -1) + w.shape[1:]) * s.reshape(g, 1, -1, 1, 1)).reshape(w.shape)
    return w * s.reshape((-1,) + (1,) * (w.ndim - 1))


def _grid(prod: Node, s: np.ndarray) -> dict:
    """A k-bit layer's weights ``w_int · weight_scale`` (meta) are ``w_int · |weight_scale · s_c|`` once folded: the
    scale carried per output channel, so the annotation still describes the weights (``mapping.passes.quantize.
    quantize_weights`` keeps such weights on their own grid)."""
    if "weight_scale" not in prod.meta or prod.op == Op.CONV_TRANSPOSE2D:
        return {}
    ws = np.abs(np.ravel(np.asarray(prod.meta["weight_scale"], dtype=np.float64)) * s)
    return {"weight_scale": tuple(float(v) for v in ws)}


def _unit_view(graph: Graph, node: Node, consumers) -> bool:
    """``node`` is a RESHAPE read only by the batch norm that only adds or drops unit dims after the channels (the
    view back of a 1-d conv run as 2-d, :mod:`mapping._torch_1d`): per-channel scaling commutes with it."""
    if node.op != Op.RESHAPE or len(consumers[node.name]) != 1 or node.name in graph.outputs:
        return False
    a, b = graph.shape_of(node.inputs[0]), node.shape
    return a[:2] == b[:2] and [d for d in a[2:] if d != 1] == [d for d in b[2:] if d != 1]


def fold_target(graph: Graph, n: Node, consumers) -> tuple[Node, Node | None] | str:
    """The layer the batch norm ``n`` folds into and the 1-d conv's unit view between them (or None), or, as a
    string, why it is not folded (the module docstring's conditions, in this order)."""
    if n.inputs[0] not in graph:
        return "batch norm of the graph input: no conv/linear before it to fold into"
    prod, view = graph[n.inputs[0]], None
    if _unit_view(graph, prod, consumers) and prod.inputs[0] in graph:  # a 1-d conv's (N, C, 1, L) viewed 3-d
        prod, view = graph[prod.inputs[0]], prod
    if prod.op not in (Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR):
        return f"its input is {prod.op.value} {prod.name!r}, not a conv/linear to fold into"
    others = [c.name for c in consumers[prod.name] if c.name not in (n.name, getattr(view, "name", None))]
    if prod.name in graph.outputs or others:
        users = ", ".join(repr(o) for o in others[:3]) + (" and more" if len(others) > 3 else "")
        what = ("is also a graph output" + (f" and read by {users}" if others else "")) if prod.name in \
            graph.outputs else f"is also read by {users}"
        return f"the output of {prod.op.value} {prod.name!r} before this batch norm {what}, so it cannot be folded"
    if prod.op == Op.LINEAR and len(prod.shape) != 2:
        return f"after a fully connected over a rank-{len(prod.shape)} tensor, which does not fold"
    if any(c.op == Op.SIGN for c in consumers[n.name]):
        return "a sign reads it (exact ties at the sign's threshold: the module docstring)"
    return prod, view


def fold_bn(graph: Graph) -> Graph:
    consumers = graph.consumers()
    params = dict(graph.params)
    folded: dict[str, Node] = {}  # producer name -> folded replacement
    drop: dict[str, str] = {}  # bn name -> producer name
    for n in graph.nodes:
        target = fold_target(graph, n, consumers) if n.op == Op.BATCHNORM else "not a batch norm"
        if isinstance(target, str):
            continue
        prod, view = target
        w = graph.param(prod, "weight").astype(np.float64)
        mean = graph.param(n, "mean").astype(np.float64)
        b = graph.param(prod, "bias").astype(np.float64) if "bias" in prod.params else np.zeros_like(mean)
        var = graph.param(n, "var").astype(np.float64)
        gamma = graph.param(n, "gamma").astype(np.float64) if "gamma" in n.params else np.ones_like(mean)
        beta = graph.param(n, "beta").astype(np.float64) if "beta" in n.params else np.zeros_like(mean)
        s = gamma / np.sqrt(var + n.attrs.eps)
        wkey = f"{prod.params['weight']}+{n.module or n.name}"
        bkey = f"{wkey}.bias"
        params[wkey] = _scale_outputs(prod, w, s).astype(np.float32)
        params[bkey] = ((b - mean) * s + beta).astype(np.float32)
        attrs = prod.attrs.__class__(**{**{f: getattr(prod.attrs, f) for f in prod.attrs.__slots__}, "bias": True})
        folded[prod.name] = prod.replace(attrs=attrs, params={"weight": wkey, "bias": bkey},
                                         shape=n.shape if view is None else prod.shape,
                                         meta={**prod.meta, "folded_bn": n.module or n.name, **_grid(prod, s)})
        drop[n.name] = prod.name if view is None else view.name
    nodes = []
    for n in graph.nodes:
        if n.name in drop:
            continue
        n = folded.get(n.name, n)
        if any(i in drop for i in n.inputs):
            n = n.replace(inputs=tuple(drop.get(i, i) for i in n.inputs))
        nodes.append(n)
    outputs = tuple(drop.get(o, o) for o in graph.outputs)
    used = {k for n in nodes for k in n.params.values()}
    return graph.replace(nodes=tuple(nodes), outputs=outputs, params={k: v for k, v in params.items() if k in used})
