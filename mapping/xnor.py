"""Map a traced or QONNX-imported binary / k-bit network onto a FINN-style XNOR/popcount dataflow engine.

``map_xnor(graph) -> XnorProgram``: the graph must be a feed-forward chain of

    [SIGN | QUANTIZE on the input] [MUL by a positive scalar]   (input quantization, done by the host driver)
    CONV2D | LINEAR with ``meta["weight_bits"]``  (a ``nets.layers`` Binary*/Quant* layer, or a QONNX conv/linear
                                                  whose weight a Quant / BipolarQuant produced)
        [BATCHNORM | MUL/DIV/ADD/SUB by a scalar or per-channel constant]* [RELU]
        [SIGN | QUANTIZE] [MUL by a positive scalar]  -> one MVAU with its activation fused as thresholds
    MAXPOOL (after an activation)                     -> a streaming max-pool (OR on bits)
    RESHAPE (flatten)
    a last MVAU may have no activation: its exact integer accumulator goes through its float ops (scale, bias,
    BatchNorm, scale/bias constants) in float32.

Semantics, stated once:

* **Encoding.** Binary values are bits, **bit 1 = +s, bit 0 = -s** (s = 1 for SIGN, a BipolarQuant's or 1-bit
  signed Quant's scale otherwise); k-bit activations are unsigned codes ``q`` with value ``(q - offset) * scale``:
  a signed quantizer's integers ``v`` in ``[lo, hi]`` travel as ``q = v - lo`` (offset binary, offset ``-lo``:
  128 for a signed 8-bit input quantizer, 2 for a signed 2-bit one), so every stream and every MVAU input is an
  unsigned code. Weights are integers ``w_int`` (value ``w_int * weight_scale``, one scale per tensor or one per
  output channel: it folds into the per-channel gain below).
* **Weight decomposition into {-1,+1} branches** (``kbit="decomposed"``). Odd levels (``nets.layers``:
  ``w = sum_k 2^k t_k``, t in {-1,+1}) are k_w binary planes. The integers of a signed k-bit quantizer (Brevitas,
  ``weight_levels="int"``: narrow range ``[-(2^(k-1)-1), 2^(k-1)-1]`` or full range) are not sums of ±1 planes;
  they are mapped to the odd levels ``o = 2w + 1`` (``o`` lies in ``[-(2^k-1), 2^k-1]``: still k planes, the bits
  of w's two's complement with the sign bit inverted, read as ±1), and ``sum w x = (sum o x - sum x) / 2``. The
  window sum ``sum x`` does not depend on the output channel: one extra popcount adder tree per MVAU computes it
  on the SIMD input lanes (shared by the PEs) while the first weight plane streams, and each PE subtracts it — no
  extra cycles; its LUTs (one more adder tree and accumulator, plus a subtractor per PE) are counted in
  ``hwsim.xnor.dataflow``.
  A channel whose weight row is negated (below) uses ``o = 2w - 1`` and adds the window sum instead. Natively
  (``kbit="native"``) the integers multiply as they are.
* **Offset codes in an MVAU.** The hardware accumulates ``acc_u = sum w q`` on the unsigned codes (zero padding
  pads with the code of value 0, i.e. ``offset``); the true accumulator is ``acc = acc_u - offset * sum w`` with
  ``sum w`` over the channel's whole window, a per-output-channel constant that FINN folds into the thresholds
  (or the bias of a final layer): no cost. Here thresholds are stated on ``acc``.
* **Streamlining (FINN's: BN + quantizer -> thresholds, scale folding).** The MVAU computes the integer
  accumulator ``acc``; every float op between it and the activation folds into one affine map per channel,
  ``z = g * acc + c``: the input and weight scales (``g = s_in * s_w``), the layer bias, a BatchNorm
  (``g = gamma g / sigma``, ``c = gamma (c - mean) / sigma + beta``, ``sigma = sqrt(var + eps)``) and any MUL / DIV
  / ADD / SUB by a scalar or per-channel constant. A channel with ``g < 0`` has its weight row negated (``acc``
  flips sign, ``g`` becomes positive) — exactly what FINN does. Then:

  - sign -> one threshold ``acc >= T``, ``T = ceil(-c / g)`` (comparator **>=**, sign(0) = +1);
  - a quantizer with integers ``[lo, hi]`` and scale ``s`` -> ``hi - lo`` thresholds: the integer is ``>= v`` iff
    ``z >= level_v`` (inclusive) or ``z > level_v`` with, per rounding mode, ROUND (half to even) ``(v - 1/2) s``,
    inclusive iff v is even; FLOOR ``v s`` inclusive; CEIL ``(v - 1) s`` strict (UP, DOWN, HALF_UP, HALF_DOWN: the
    same by the sign of v). ``T = ceil(t)`` (inclusive) or ``floor(t) + 1`` (strict), ``t = (level - c) / g``;
  - a ReLU before the quantizer makes the levels ``<= 0`` always reached (a QuantReLU's ReLU changes nothing);
  - a MUL by a positive scalar after an activation only rescales its encoding.

  The thresholds are computed in float64 from the float32 parameters: a pre-activation that torch / qonnx
  round in float32 to within one ulp of a decision level may decide differently (never seen in the tests, which
  compare against torch, Brevitas and qonnx's executor).
* **Padding, per layer.** ``pad_value`` of a Binary conv: 0 (torch zero padding; the engine masks the border
  taps out of the popcount), +1 (Larq "one padding": border bits 1) or -1 (daBNN: bits 0). k-bit inputs pad with
  the code of value 0, which is exact without a mask (see ``hwsim.kernels.binary``).
* **Max-pool on bits is an OR** (max of ±s); on codes it is the max of the codes (offset binary keeps the
  order). Pooling is only supported after the activation (where FINN's streamlining puts it).
* Anything else is refused with :class:`~hwsim.errors.UnsupportedOpError` naming the node, its op and module:
  GELU and other float activations, residual adds and concatenations (a node reading two activations),
  products of two activations (MATMUL, ATTENTION: the MVAUs multiply by stored weights only), a quantizer with
  a non-zero zero point, a conv/linear without ``weight_bits`` (float, or a weight quantizer the importer did not
  fold).
* A first layer fed the raw input computes ``sum w * x`` exactly in integers when the input is integer-valued
  (an 8-bit image), otherwise in float64.

The program is target data (:mod:`mapping.xnor_program`); the functional engine is ``hwsim.xnor.engine`` and
the cost model ``hwsim.xnor.dataflow``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwsim.errors import MappingError, UnsupportedOpError
from mapping.graph import Graph, Node, Op, Scalar
from mapping.xnor_program import (
    Enc,
    Encoding,
    InputLayer,
    Layer,
    MVAULayer,
    PoolLayer,
    ReshapeLayer,
    XnorProgram,
    acc_bits,
)
from mapping.xnor_streamline import Affine, act_encoding, integer_thresholds, layer_weights

__all__ = ["Enc", "Encoding", "MVAULayer", "InputLayer", "PoolLayer", "ReshapeLayer", "XnorProgram", "map_xnor",
           "integer_thresholds", "annotate_encodings", "acc_bits"]

_XNOR_OPS = frozenset({Op.CONV2D, Op.LINEAR, Op.BATCHNORM, Op.RELU, Op.SIGN, Op.QUANTIZE, Op.MAXPOOL, Op.RESHAPE,
                       Op.MUL, Op.DIV, Op.ADD, Op.SUB})
_ARITH = frozenset({Op.MUL, Op.DIV, Op.ADD, Op.SUB})


def map_xnor(graph: Graph) -> XnorProgram:
    """Fuse the graph into MVAUs with thresholds, pools and reshapes (see the module docstring)."""
    if len(graph.outputs) != 1:
        raise UnsupportedOpError(f"the XNOR engine maps single-output networks; {graph.name} has "
                                 f"{len(graph.outputs)} outputs")
    return _Walk(graph).run()


class _Pending:
    """An MVAU being assembled: its conv/linear node, fields, fused nodes and affine map."""

    def __init__(self, node: Node, layer: dict, affine: Affine):
        self.node, self.layer, self.affine, self.nodes = node, layer, affine, [node.name]


class _Walk:
    """One pass over the chain: ``enc`` is the encoding of the value ``prev``, ``pending`` the open MVAU."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.layers: list[Layer] = []
        self.enc = Encoding(Enc.RAW, 8)
        self.prev = graph.inputs[0].name
        self.shape = tuple(graph.input_shape[1:])
        self.pending: _Pending | None = None
        self.consts: dict[str, Node] = {}
        self.producers = {m.name: m for m in graph.nodes}
        self.users = graph.consumers()

    def run(self) -> XnorProgram:
        for n in self.g.nodes:
            self.step(n)
        if self.pending is not None:
            self.layers.append(_finish(self.pending, None))
        if not any(isinstance(x, MVAULayer) for x in self.layers):
            raise UnsupportedOpError(f"{self.g.name} has no binary/quantized layer to map onto the XNOR engine")
        return XnorProgram(self.g.name, tuple(self.g.input_shape[1:]), tuple(self.layers), self.g.outputs[0])

    def step(self, n: Node) -> None:
        if n.op == Op.CONSTANT:  # the operand of a scale / bias: checked where it is used
            users = self.users.get(n.name, [])
            if not users or any(u.op not in _ARITH for u in users) or n.name in self.g.outputs:
                raise _no_layer(n)
            self.consts[n.name] = n
            return
        if n.op in (Op.MATMUL, Op.ATTENTION):
            raise _product_refused(n, self.producers)
        if n.op not in _XNOR_OPS and len(n.inputs) == 1:  # a layer the engine lacks (several inputs: a chain error)
            raise _no_layer(n)
        operand = self._operand(n) if n.op in _ARITH else None
        if n.inputs != (self.prev,) and operand is None:
            raise UnsupportedOpError(f"node {n.name!r} ({n.op.value}, module {n.module!r}) reads {list(n.inputs)}: "
                                     "the XNOR engine maps feed-forward chains (no residual adds or concats)")
        self.prev = n.name
        if n.op in (Op.CONV2D, Op.LINEAR):
            self._mvau(n)
        elif n.op == Op.BATCHNORM:
            if self.pending is None or self.pending.affine.relu:
                raise UnsupportedOpError(f"BatchNorm {n.name!r} ({n.module}) must follow a binary/quantized "
                                         "conv or linear layer directly")
            self.pending.affine.add_bn(self.g, n)
            self.pending.nodes.append(n.name)
        elif n.op == Op.RELU:
            if self.pending is None:
                raise UnsupportedOpError(f"ReLU {n.name!r} ({n.module}) outside an MVAU")
            self.pending.affine.relu = True
            self.pending.affine.post.append(("relu", None))
            self.pending.nodes.append(n.name)
        elif n.op in (Op.SIGN, Op.QUANTIZE):
            self._activation(n)
        elif n.op in _ARITH:
            self._arith(n, *operand)
        elif n.op == Op.MAXPOOL:
            if self.pending is not None or self.enc.kind == Enc.RAW:
                raise UnsupportedOpError(f"MaxPool {n.name!r} ({n.module}) before the activation: put it after "
                                         "the sign/QuantAct (the engine pools bits with an OR)")
            self.layers.append(PoolLayer(n.name, n.attrs, self.shape, tuple(n.shape[1:]), self.enc))
        elif n.op == Op.RESHAPE:
            if self.pending is not None:
                raise UnsupportedOpError(f"reshape {n.name!r} between an MVAU and its activation")
            self.layers.append(ReshapeLayer(n.name, tuple(n.shape[1:])))
        self.shape = tuple(n.shape[1:])

    def _operand(self, n: Node):
        """(operand, reverse) of an arithmetic node on ``prev`` with a Scalar or a CONSTANT node; None otherwise."""
        if isinstance(n.attrs, Scalar):
            return (n.attrs.value, n.attrs.reverse) if n.inputs == (self.prev,) else None
        if len(n.inputs) == 2 and self.prev in n.inputs:
            other = n.inputs[1] if n.inputs[0] == self.prev else n.inputs[0]
            if other in self.consts and other != self.prev:
                return self.g.param(self.consts[other], "value"), n.inputs[0] == other
        return None

    def _mvau(self, n: Node) -> None:
        if self.pending is not None:
            self.layers.append(_finish(self.pending, None))
            self.enc = Encoding(Enc.RAW, 32)
            self.pending = None
        self.pending = _start_mvau(self.g, n, self.enc, self.shape)

    def _activation(self, n: Node) -> None:
        out = act_encoding(n)
        p = self.pending
        if p is not None:
            if p.affine.relu and out.kind == Enc.BINARY:
                raise UnsupportedOpError(f"ReLU before sign in {n.module!r} (the output would be constant +1)")
            p.nodes.append(n.name)
            self.layers.append(_finish(p, out))
            self.pending = None
        elif self.enc.kind == Enc.RAW:
            self.layers.append(InputLayer(n.name, self.shape, out, n.attrs if n.op == Op.QUANTIZE else None))
        elif _same_grid(self.enc, out):  # a quantizer that keeps every value (Brevitas re-quantizing): a no-op
            return
        else:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) re-quantizes an already "
                                     "quantized value; only the input or an MVAU output can be thresholded")
        self.enc = out

    def _arith(self, n: Node, operand, reverse: bool) -> None:
        p = self.pending
        if p is not None:
            if p.affine.relu:
                raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) after a ReLU: put scales and biases "
                                         "before it (they fold into the thresholds)")
            p.affine.add_arith(n, operand, reverse)
            p.nodes.append(n.name)
            return
        value = np.asarray(operand, dtype=np.float64)
        last = self.layers[-1] if self.layers else None
        rescales = n.op in (Op.MUL, Op.DIV) and not reverse and value.size == 1 and float(value.reshape(())) > 0
        if self.enc.kind == Enc.RAW:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) on the network input before its quantizer: "
                                     "input preprocessing is not mapped (do it before hwsim.simulate)")
        if not rescales or not isinstance(last, (InputLayer, MVAULayer)):
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) on a quantized value: the XNOR engine "
                                     "folds scales and biases before an activation, and a positive scalar scale "
                                     "right after one")
        c = float(value.reshape(()))
        enc = dataclasses.replace(self.enc, scale=self.enc.scale * c if n.op == Op.MUL else self.enc.scale / c)
        self.layers[-1] = (dataclasses.replace(last, out=enc) if isinstance(last, InputLayer)
                           else dataclasses.replace(last, out_enc=enc, nodes=last.nodes + (n.name,)))
        self.enc = enc


def _same_grid(enc: Encoding, out: Encoding) -> bool:
    """Does quantizer ``out`` reproduce every value of ``enc`` exactly (same kind and scale, range covered)?"""
    if enc.kind != out.kind or enc.scale != out.scale:
        return False
    if enc.kind == Enc.BINARY:
        return True
    return -out.offset <= -enc.offset and enc.n_levels - 1 - enc.offset <= out.n_levels - 1 - out.offset


def _no_layer(n: Node) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {n.op.value!r} (node {n.name!r}, module {n.module!r}) has no XNOR engine layer "
                              "(supported: binary/quantized conv and linear, batchnorm, scale/bias constants, sign, "
                              "quantize, maxpool, flatten)")


def _product_refused(n: Node, producers: dict) -> UnsupportedOpError:
    """The refusal of a MATMUL / ATTENTION: the engine's MVAUs multiply activations by stored weights only."""
    what = "attention" if n.op == Op.ATTENTION else "matmul of two activations"
    binary = all(src in producers and producers[src].op == Op.SIGN for src in n.inputs)
    kind = "binary" if binary else "non-binary"
    return UnsupportedOpError(f"the XNOR engine computes binary/k-bit weight layers; {kind} {what} (node {n.name!r}, "
                              f"op {n.op.value}, module {n.module!r}) is not supported"
                              + (" (it has no activation x activation unit)" if binary else ""))


def _start_mvau(graph: Graph, n: Node, enc: Encoding, shape: tuple[int, ...]) -> _Pending:
    if "weight_bits" not in n.meta:
        raise UnsupportedOpError(f"layer {n.name!r} ({n.module}) is a float {n.op.value}: the XNOR engine "
                                 "runs binary/quantized layers (nets.layers.BinaryConv2d, QuantLinear, ..., or a "
                                 "QONNX weight quantizer with one scale per tensor)")
    w_int, bits, w_scale, levels = layer_weights(graph, n)
    in_scale = enc.scale if enc.kind in (Enc.BINARY, Enc.CODES) else 1.0
    pad_value = float(n.meta.get("pad_value", 0.0))
    if n.op == Op.CONV2D and pad_value != 0 and enc.kind == Enc.CODES and any(n.attrs.padding):
        raise MappingError(f"layer {n.name!r}: pad_value {pad_value} is not a code of its k-bit input")
    if n.op == Op.LINEAR and len(shape) != 1:
        raise UnsupportedOpError(f"linear {n.name!r} on a {len(shape) + 1}-d tensor (flatten first)")
    bias = graph.param(n, "bias") if "bias" in n.params else None
    s = in_scale * w_scale
    post = [("scale", s)] + ([("bias", bias)] if bias is not None else [])
    offset = bias.astype(np.float64) if bias is not None else np.zeros(w_int.shape[0])
    affine = Affine(np.broadcast_to(np.asarray(s, np.float64), (w_int.shape[0],)).copy(), offset.copy(), post)
    layer = dict(name=n.name, module=n.module, conv=n.attrs if n.op == Op.CONV2D else None, in_shape=tuple(shape),
                 out_shape=tuple(n.shape[1:]), w_int=w_int, weight_bits=bits, in_enc=enc, pad_value=pad_value,
                 levels=levels)
    return _Pending(n, layer, affine)


def _finish(p: _Pending, out: Encoding | None) -> MVAULayer:
    L, a = p.layer, p.affine
    gain, offset = a.gain, a.offset
    if out is None:  # float output: no flip, the accumulator is returned as computed
        flip = np.zeros(gain.shape, dtype=bool)
        thresholds = None
    else:
        flip = gain < 0
        gain = np.where(flip, -gain, gain)
        thresholds = integer_thresholds(gain, offset, out, relu=a.relu)
    w = np.where(flip.reshape((-1,) + (1,) * (L["w_int"].ndim - 1)), -L["w_int"], L["w_int"])
    return MVAULayer(
        name=L["name"], module=L["module"], nodes=tuple(p.nodes), conv=L["conv"], in_shape=L["in_shape"],
        out_shape=L["out_shape"], weight=w, flip=flip, weight_bits=L["weight_bits"], in_enc=L["in_enc"],
        pad_value=L["pad_value"], gain=gain, offset=offset, thresholds=thresholds, out_enc=out,
        float_out=tuple(a.post), weight_levels=L["levels"])


def annotate_encodings(graph: Graph) -> Graph:
    """A new graph whose binary/quantized conv and linear nodes carry, besides their weight
    annotations, the encoding of their input and output: ``meta["input_kind"]`` ("binary" for ±1
    bits, "codes" for unsigned k-bit codes, "raw" for the network input), ``meta["input_bits"]``,
    ``meta["output_kind"]`` ("binary", "codes" or "float") and ``meta["output_bits"]``."""
    program = map_xnor(graph)
    enc = {m.name: m for m in program.mvaus}
    nodes = []
    for n in graph.nodes:
        m = enc.get(n.name)
        if m is not None:
            meta = dict(n.meta)
            meta.update(input_kind=m.in_enc.kind.value, input_bits=m.in_enc.bits,
                        output_kind=m.out_enc.kind.value if m.out_enc else "float",
                        output_bits=m.out_enc.bits if m.out_enc else 32)
            n = n.replace(meta=meta)
        nodes.append(n)
    return graph.replace(nodes=tuple(nodes))
