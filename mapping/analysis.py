"""Target-independent counts over a :class:`Graph`: MACs, parameters, activations, liveness.

Conventions (the ones the papers' tables use):
- MACs count conv2d, conv_transpose2d and linear only: conv ``OH·OW·Cout·(Cin/groups)·kh·kw``, transposed conv
  ``H·W·Cin·(Cout/groups)·kh·kw`` over its input's H×W (each input pixel times each tap: the GEMM of the
  GEMM + col2im algorithm, the taps that land in the cropped padding included), linear ``in·out``, per sample. Batch norm, activations and pooling are not MACs (they are ``elementwise_ops``).
- Products of two activations are MACs too (a transformer's attention is most of its arithmetic):
  MATMUL ``(…, M, K) @ (…, K, P)`` counts ``M·K·P`` per leading (broadcast) element, ATTENTION of
  q ``(…, L, E)``, k ``(…, S, E)``, v ``(…, S, Ev)`` counts ``L·S·E + L·S·Ev`` (q k^T, then the weights
  times v) per head / leading element; its softmax over the ``L·S`` scores is ``elementwise_ops``.
  Their operand shapes are not in the node, so these two need the graph: ``node_macs(node, graph)``.
- ``elementwise_ops`` counts one op per output element (activations, elementwise math and arithmetic,
  normalisations and softmax: the target's cost model multiplies by its own instructions per element),
  one per window tap of a pooling kernel, one per *input* element of a reduction (REDUCE_*, a global
  average pool), one per (element, threshold) of a MULTITHRESHOLD, and none for data movement
  (RESHAPE, SLICE, CONCAT, CHANNEL_SHUFFLE, PERMUTE, PAD, CONSTANT) or MAC ops (conv, linear, MATMUL).
  ``function_ops`` gives the arithmetic ops per counted element of the ops evaluated as functions (exp-, log-,
  erf-based activations and math, division, square roots, normalisations, softmax): the targets' vector and
  digital units share this table.
- Parameters are counted per distinct key (a block executed T times counts once).
- Activation sizes are elements per sample; bytes are elements × ``bytes_per_element``.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from hwsim.cache import identity_cache
from mapping.graph import Graph, Node, Op

__all__ = ["layer_share", "node_macs", "conv_transpose_in_hw", "node_params", "elementwise_ops", "function_ops", "FUNCTION_OPS", "PRODUCT_OPS", "MOVE_ONLY",
           "LayerStats", "layer_table", "Totals", "totals", "peak_live_elements", "reshape_free", "activation_fusions"]

WEIGHT_OPS = frozenset({Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR})
PRODUCT_OPS = frozenset({Op.MATMUL, Op.ATTENTION})  # products of two (three) activations: MACs without weights
# ops that move data and compute nothing (CONSTANT reads its parameter; its input only gives the batch size)
MOVE_ONLY = frozenset({Op.RESHAPE, Op.SLICE, Op.CONCAT, Op.CHANNEL_SHUFFLE, Op.PERMUTE, Op.PAD, Op.CONSTANT})


# Arithmetic ops per element (per op counted by ``elementwise_ops``) of the ops computed by function evaluation, as
# a vector unit (hwsim.cpu) or a digital unit (hwsim.imc, in fp32 multiply-adds) runs them. A vectorised exp is a
# range reduction, a degree-5 polynomial and the exponent reconstruction, ~10 ops (the exp inside XNNPACK's f32
# sigmoid / silu / elu micro-kernels; hwsim.cpu counts SIGMOID as 12 = exp + add + divide); a log (exponent
# extraction + polynomial) and erf (polynomial / rational approximation) are assumed as long.
EXP_OPS = 10
# Division and square roots: reciprocal (square-root) estimate + two Newton-Raphson steps, ~5 ops (NEON
# frecpe/frecps, frsqrte/frsqrts; a hardware divider's multi-cycle issue interval costs about as much).
RECIP_OPS = 5
FUNCTION_OPS = {
    # GELU, tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): tanh (12, as TANH) + cube (2 mul) + FMA + add +
    # 2 mul = 17; the erf form's polynomial counted the same (erf ~ exp)
    Op.GELU: 17,
    Op.ELU: EXP_OPS + 3,  # alpha·(exp(x) - 1) on the negative side: exp + sub + mul + select (XNNPACK f32-velu)
    # mish x·tanh(softplus(x)) = x·((1 + e^x)² - 1) / ((1 + e^x)² + 1): exp; add, square, sub, add; divide; mul
    Op.MISH: EXP_OPS + 4 + RECIP_OPS + 1,
    # softplus log(1 + exp(βx)) / β, x itself above the threshold: mul, exp, add, log, mul, compare + select
    Op.SOFTPLUS: 2 * EXP_OPS + 5,
    Op.EXP: EXP_OPS,
    Op.LOG: EXP_OPS,
    Op.ERF: EXP_OPS + 2,  # polynomial as long as exp + the sign handling (as TANH: 12)
    Op.SQRT: RECIP_OPS + 1,  # x · rsqrt(x)
    Op.RSQRT: RECIP_OPS,
    Op.POW: 2 * EXP_OPS + 1,  # exp(y · log x) for a general exponent; the special ones: function_ops
    Op.DIV: RECIP_OPS,  # reciprocal, the multiply folded into the last Newton step
    # layer / group norm of a row: pass 1 sums for the mean (1 add), pass 2 sums (x - mean)² (sub + FMA = 2), pass 3
    # normalises (sub + mul by the row's rsqrt = 2) and applies gamma·y + beta (1 FMA) = 6 (per row: one rsqrt)
    Op.LAYERNORM: 6,
    Op.GROUPNORM: 6,
    # softmax of a row: max pass (1), x - max and exp (1 + EXP_OPS), the sum (1), multiply by the row's reciprocal
    # (1) = 14; log-softmax subtracts the row's log instead: the same count
    Op.SOFTMAX: EXP_OPS + 4,
    Op.ATTENTION: EXP_OPS + 5,  # its softmax over the scores (elementwise_ops counts L·S) + the scale multiply
}


def function_ops(node: Node) -> int:
    """Arithmetic ops per counted element of a node in :data:`FUNCTION_OPS` (0 for the others). POW by 1 or 2 is one
    copy or multiply, by 3 two multiplies, by 0.5 a square root, by -1 a reciprocal, a constant base ``c ** x`` an
    exp and a multiply."""
    if node.op == Op.POW and hasattr(node.attrs, "value"):
        if getattr(node.attrs, "reverse", False):  # value ** x = exp(x · log value), log value a constant
            return EXP_OPS + 1
        special = {1.0: 1, 2.0: 1, 3.0: 2, 0.5: FUNCTION_OPS[Op.SQRT], -1.0: RECIP_OPS}
        return special.get(float(node.attrs.value), FUNCTION_OPS[Op.POW])
    return FUNCTION_OPS.get(node.op, 0)


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def node_macs(node: Node, graph: Graph | None = None) -> int:
    """Multiply-accumulates of one execution of ``node`` for one sample (MATMUL / ATTENTION need ``graph``
    for their operand shapes)."""
    if node.op in PRODUCT_OPS:
        if graph is None:
            raise ValueError(f"node_macs of {node.op.value} node {node.name!r} needs the graph (its operand shapes)")
        lead = _prod(node.shape[1:-2])  # leading (broadcast) dims of the output, batch excluded
        if node.op == Op.MATMUL:  # (…, M, K) @ (…, K, P) -> (…, M, P): M·K·P per leading element
            return _prod(node.shape[1:]) * int(graph.shape_of(node.inputs[0])[-1])
        q, k = graph.shape_of(node.inputs[0]), graph.shape_of(node.inputs[1])
        L, ev, s, e = node.shape[-2], node.shape[-1], k[-2], q[-1]
        return lead * L * s * (e + ev)  # q k^T: L·S·E, then (L, S) @ v: L·S·Ev
    if node.op == Op.CONV2D:
        a = node.attrs
        return int(np.prod(node.shape[2:], dtype=np.int64)) * a.out_channels * a.rows
    if node.op == Op.CONV_TRANSPOSE2D:
        a = node.attrs
        return _prod(conv_transpose_in_hw(node)) * a.in_channels * a.out_channels // a.groups * _prod(a.kernel)
    if node.op == Op.LINEAR:
        a = node.attrs
        rows = int(np.prod(node.shape[1:-1], dtype=np.int64)) if len(node.shape) > 2 else 1
        return rows * a.in_features * a.out_features
    return 0


def conv_transpose_in_hw(node: Node) -> tuple[int, int]:
    """The input (H, W) of a CONV_TRANSPOSE2D node, from its output size: ``OH = (H − 1)·s − 2p + d(k − 1) + op + 1``
    solved for H."""
    a = node.attrs
    return tuple((node.shape[2 + i] + 2 * a.padding[i] - a.dilation[i] * (a.kernel[i] - 1) - a.output_padding[i] - 1)
                 // a.stride[i] + 1 for i in range(2))


def node_params(graph: Graph, node: Node) -> int:
    """Number of parameter elements referenced by ``node`` (shared or not)."""
    return int(sum(graph.params[k].size for k in node.params.values()))


def elementwise_ops(graph: Graph, node: Node) -> int:
    """Scalar operations of a node per sample besides its MACs (see the module docstring): one per output
    element, window tap, reduced input element or (element, threshold); 0 for data movement and MAC ops;
    ATTENTION: its softmax, one per score (``L·S`` per head / leading element)."""
    if node.op in WEIGHT_OPS or node.op in MOVE_ONLY or node.op == Op.MATMUL:
        return 0
    if node.op in (Op.MAXPOOL, Op.AVGPOOL):
        k = node.attrs.kernel
        return node.numel * k[0] * k[1]
    if node.op in (Op.ADAPTIVE_AVGPOOL, Op.REDUCE_MEAN, Op.REDUCE_SUM, Op.REDUCE_MAX):
        return _prod(graph.shape_of(node.inputs[0])[1:])  # a streaming reduction: one op per input element
    if node.op == Op.ATTENTION:  # softmax over the (…, L, S) scores
        return _prod(node.shape[1:-1]) * int(graph.shape_of(node.inputs[1])[-2])
    if node.op == Op.MULTITHRESHOLD:  # one comparison per threshold: thresholds[C or 1, T]
        return node.numel * int(graph.param(node, "thresholds").shape[-1])
    return node.numel


@dataclass(frozen=True, slots=True)
class LayerStats:
    name: str
    op: str
    module: str
    macs: int
    params: int
    param_keys: tuple[str, ...]
    in_elements: int
    out_elements: int
    out_shape: tuple[int, ...]


def layer_table(graph: Graph) -> list[LayerStats]:
    """One row per node, per sample."""
    rows = []
    for n in graph.nodes:
        ins = sum(int(np.prod(graph.shape_of(i)[1:], dtype=np.int64)) for i in n.inputs)
        rows.append(LayerStats(n.name, n.op.value, n.module, node_macs(n, graph), node_params(graph, n),
                               tuple(n.params.values()), ins, n.numel, n.shape))
    return rows


@dataclass(frozen=True, slots=True)
class Totals:
    macs: int
    params: int
    weight_layers: int
    executions_of_shared_weights: int
    peak_activation_elements: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def totals(graph: Graph) -> Totals:
    """Whole-network counts per sample; shared parameters counted once."""
    weight_nodes = [n for n in graph.nodes if n.op in WEIGHT_OPS]
    keys = [n.params.get("weight") for n in weight_nodes]
    return Totals(
        macs=int(sum(node_macs(n, graph) for n in graph.nodes)),
        params=graph.param_count,
        weight_layers=len(set(keys)),
        executions_of_shared_weights=len(keys) - len(set(keys)),
        peak_activation_elements=peak_live_elements(graph),
    )


@identity_cache(maxsize=16)
def _recurrent_heads(graph: Graph) -> frozenset[str]:
    heads: dict[str, str] = {}
    for n in graph.nodes:
        if "recurrent" in n.meta:
            heads.setdefault(n.meta["recurrent"], n.name)
    return frozenset(heads.values())


def layer_share(graph: Graph, node: Node) -> float:
    """``node``'s share of its runtime layer's fixed cost: an unrolled recurrent layer (``meta["recurrent"]``) is one
    fused op on a runtime (ncnn's LSTM / GRU / RNN layers, TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM), so its first node
    carries it (1) and the others nothing (0); any other node 1."""
    return 1.0 if "recurrent" not in node.meta or node.name in _recurrent_heads(graph) else 0.0


def reshape_free(op: Op) -> bool:
    """Ops that only re-index memory (no buffer of their own on a real runtime)."""
    return op in (Op.RESHAPE,)


def peak_live_elements(graph: Graph, in_place: Collection[str] = ()) -> int:
    """Peak of simultaneously live activation elements per sample over the node order.

    A value is live from the node that produces it until its last reader runs (graph outputs until
    the end; the input until its last reader). While a node runs, its inputs and its output are
    live together. Reshapes alias their input (no extra buffer), as do the nodes named in ``in_place`` (an
    activation a runtime fuses into the layer that produces its input). A CONSTANT does not read its input (it
    only gives the batch size). This is the buffer a runtime that frees each tensor after its last use
    needs, without other in-place reuse.
    """
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for src in (() if n.op == Op.CONSTANT else n.inputs):
            last_use[src] = i
    end = len(graph.nodes)
    for o in graph.outputs:
        last_use[o] = end
    size: dict[str, int] = {i.name: int(np.prod(i.shape[1:], dtype=np.int64)) for i in graph.inputs}
    alias: dict[str, str] = {}
    live: dict[str, int] = {i.name: size[i.name] for i in graph.inputs if i.name in last_use}
    root = lambda v: alias.get(v, v)  # noqa: E731
    # extend an aliased buffer's life to its alias's last use
    free = {n.name for n in graph.nodes if reshape_free(n.op)} | set(in_place)
    for n in graph.nodes:
        if n.name in free:
            alias[n.name] = root(n.inputs[0])
            r = root(n.inputs[0])
            last_use[r] = max(last_use.get(r, -1), last_use.get(n.name, -1))
    peak = sum(live.values())
    for i, n in enumerate(graph.nodes):
        if n.name not in free:
            live[n.name] = n.numel
        peak = max(peak, sum(live.values()))
        for v in list(live):
            if last_use.get(v, -1) <= i:
                del live[v]
    return int(peak)


def activation_fusions(graph: Graph, producers: Collection[Op], is_activation: Callable[[Node], bool],
                       exclude_outputs: bool = False) -> dict[str, Node]:
    """Producer name -> the activation node a runtime fuses into it: a one-input node ``is_activation`` accepts,
    whose input is made by an op in ``producers`` that no other node reads (nor, with ``exclude_outputs``, is a
    graph output)."""
    readers = graph.consumers()
    outs = set(graph.outputs) if exclude_outputs else set()
    found = {}
    for n in graph.nodes:
        if is_activation(n) and len(n.inputs) == 1:
            src = n.inputs[0]
            if src in graph and graph[src].op in producers and len(readers.get(src, ())) == 1 and src not in outs:
                found[src] = n
    return found
