"""Map a traced or QONNX-imported binary / k-bit network onto a FINN-style XNOR/popcount dataflow engine.

``map_xnor(graph) -> XnorProgram``: the graph is a dataflow graph (walked in topological order) of

    [MUL | DIV | ADD | SUB by constants]* [SIGN | QUANTIZE on the input] [MUL by a positive scalar]
                                                  (preprocessing and input quantization, done by the host driver)
    CONV2D | LINEAR with ``meta["weight_bits"]``  (a ``nets.layers`` Binary*/Quant* layer, or a QONNX conv/linear
                                                  whose weight a Quant / BipolarQuant produced; one weight scale
                                                  per tensor or per output channel)
        [BATCHNORM | MUL/DIV/ADD/SUB by a scalar or per-channel constant]* [RELU]
        [SIGN | QUANTIZE | MULTITHRESHOLD] [MUL by a positive scalar]  -> one MVAU with its activation fused as
                                                  thresholds (a QONNX MultiThreshold's own, moved onto the accumulator)
                                                  (a depthwise conv, groups = Cin = Cout: FINN's VVAU)
    MAXPOOL (after an activation)                     -> a streaming max-pool (OR on bits)
    AVGPOOL / ADAPTIVE_AVGPOOL (after an activation)  -> an accumulating pool (:class:`AccPoolLayer`)
        [MUL by a positive scalar] TRUNC (FLOOR|ROUND) [MUL] [CLAMP]
                                                      -> that pool's output right shift (Brevitas's TruncAvgPool2d;
                                                         a QONNX Trunc version 2 adds the MUL and the CLAMP)
    ADD of two quantized streams of one scale         -> AddStreams (:class:`AddLayer`); a value read by several
                                                         layers is FINN's DuplicateStreams
    CONCAT (channels) of streams on one grid          -> StreamingConcat (:class:`ConcatLayer`)
    SIGN | QUANTIZE | MULTITHRESHOLD of a quantized stream -> Thresholding (:class:`ThresholdLayer`)
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
  ``hwsim.fpga.cost``.
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
* **Residual adds** (FINN's DuplicateStreams + AddStreams + Thresholding, as streamlining leaves a quantized
  residual): both operands are code streams of **one scale** ``s`` (a shared quantizer); the hardware adds the
  codes, ``q = qa + qb``, value ``(q - oa - ob) * s`` — exact, one bit wider (two bipolar streams: ``q = ba + bb``,
  value ``(q - 1) * 2s``). A quantizer after the add (through a ReLU, as Brevitas's QuantReLU exports it, or
  not) becomes a Thresholding unit on ``q``; its thresholds come from the quantizer evaluated in float32 on every
  possible ``q``, as qonnx and torch evaluate it (``round(z / scale)`` with a non-dyadic scale rounds the quotient
  in float32, which decides some ties differently from exact arithmetic).
  Operands of different scales are refused (:class:`~hwsim.errors.MappingError`): their codes do not add.
* **Concatenation** along the channels of streams with one kind, scale and offset (a shared quantizer).
* **Average pooling** sums the codes of each window exactly (bits: the count of +1s, offset = window / 2, so an
  even window); the 1/window factor joins the output scale and folds into the next layer's gain or thresholds.
  qonnx / torch compute the average in float32: a following quantizer could decide differently only for an
  average within one float32 ulp of a decision level.
* Anything else is refused with :class:`~hwsim.errors.UnsupportedOpError` naming the node, its op and module:
  GELU and other float activations, an add / concat / pool reading a float MVAU output (quantize every branch
  first), products of two activations (MATMUL, ATTENTION: the MVAUs multiply by stored weights only), a
  quantizer with a non-zero zero point, a conv/linear without ``weight_bits`` (float, or a weight quantizer the
  importer did not fold), a QONNX Trunc that does not follow an average pool or rounds other than FLOOR, a
  MultiThreshold whose ``out_bias`` is not minus an integer multiple of a positive ``out_scale``.
* **MultiThreshold** ``y = out_scale * #{t : z >= t} + out_bias``: codes ``#{...}`` with scale ``out_scale`` and
  offset ``-out_bias / out_scale`` (one threshold with ``out_bias = -out_scale / 2``: bipolar bits). After an MVAU
  its thresholds move onto the accumulator, ``acc >= ceil((t - c) / g)``; on a code stream they become thresholds
  on the codes, the first code whose float32 value reaches ``t`` (what qonnx compares).
* **Trunc** (version 1, zero point 0, FLOOR) of an average pool's sums (rescaled back to sums by a MUL, with the
  Trunc's scale the sums' scale): ``floor(v / 2^k)`` with ``k = in_bits - out_bits`` is the pool's output right
  shift; the codes stay unsigned by preloading the accumulator (see :class:`AccPoolLayer`).
* A first layer fed the raw input computes ``sum w * x`` exactly in integers when the input is integer-valued
  (an 8-bit image), otherwise in float64.

The program is target data (:mod:`mapping.fpga_program`); the functional engine is ``hwsim.fpga.functional`` and
the cost model ``hwsim.fpga.cost``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwsim.errors import MappingError, UnsupportedOpError
from mapping.fpga_dag import (
    add_layer,
    clamp_pool,
    concat_layer,
    multithreshold_layer,
    no_layer,
    pool_layer,
    product_refused,
    same_grid,
    threshold_layer,
    trunc_pool,
)
from mapping.fpga_program import (
    AccPoolLayer,
    AddLayer,
    ConcatLayer,
    Enc,
    Encoding,
    InputLayer,
    Layer,
    MVAULayer,
    PoolLayer,
    ReshapeLayer,
    ThresholdLayer,
    XnorProgram,
    acc_bits,
    out_encoding,
)
from mapping.fpga_streamline import (
    Affine,
    act_encoding,
    arith_name,
    integer_thresholds,
    layer_weights,
    multithreshold_encoding,
    multithreshold_thresholds,
)
from mapping.graph import Graph, Node, Op, Scalar

__all__ = ["Enc", "Encoding", "MVAULayer", "InputLayer", "PoolLayer", "ReshapeLayer", "AddLayer", "ConcatLayer",
           "ThresholdLayer", "AccPoolLayer", "XnorProgram", "map_xnor", "integer_thresholds", "annotate_encodings",
           "acc_bits"]

_XNOR_OPS = frozenset({Op.CONV2D, Op.LINEAR, Op.BATCHNORM, Op.RELU, Op.SIGN, Op.QUANTIZE, Op.MAXPOOL, Op.RESHAPE,
                       Op.MUL, Op.DIV, Op.ADD, Op.SUB, Op.CONCAT, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL,
                       Op.MULTITHRESHOLD, Op.TRUNC, Op.CLAMP})
_ARITH = frozenset({Op.MUL, Op.DIV, Op.ADD, Op.SUB})
_FUSED = frozenset({Op.BATCHNORM, Op.RELU, Op.SIGN, Op.QUANTIZE, Op.MULTITHRESHOLD})  # ops an open MVAU absorbs


def map_xnor(graph: Graph) -> XnorProgram:
    """Fuse the graph into MVAUs with thresholds, pools, adds, concats and reshapes (see the module docstring)."""
    if len(graph.outputs) != 1:
        raise UnsupportedOpError(f"the XNOR engine maps single-output networks; {graph.name} has "
                                 f"{len(graph.outputs)} outputs")
    return _Walk(graph).run()


# a sign (BipolarQuant) of a ReLU's output: what a QONNX graph says, and where such graphs come from
_RELU_SIGN = ("(the graph's output would be constant +1; Brevitas exports QuantReLU(bit_width=1), which computes "
              "{0, scale}, as Relu + BipolarQuant: use bit_width >= 2, or a +-1 activation (brevitas.quant."
              "SignedBinaryActPerTensorConst) without the ReLU)")


class _Pending:
    """An MVAU being assembled: its conv/linear node, fields, fused nodes and affine map."""

    def __init__(self, node: Node, layer: dict, affine: Affine):
        self.node, self.layer, self.affine, self.nodes = node, layer, affine, [node.name]
        self.thresholds: np.ndarray | None = None  # a MultiThreshold's (C or 1, T) on z, when one closes the MVAU


@dataclasses.dataclass(frozen=True)
class _Val:
    """A value on a stream: the layer producing it ("input": the network input), its encoding and shape."""

    layer: str
    enc: Encoding
    shape: tuple[int, ...]


class _Walk:
    """One pass over the graph in topological order. ``vals``: IR value -> stream; ``pending``: IR value -> the
    open MVAU whose float pre-activation it is."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.layers: list[Layer] = []
        x = graph.inputs[0].name
        self.vals: dict[str, _Val] = {x: _Val("input", Encoding(Enc.RAW, 8), tuple(graph.input_shape[1:]))}
        self.host = {x}  # the network input and reshapes of it: quantized by the host driver
        self.pre: dict[str, tuple] = {}  # a host value -> the float ops since the input (InputLayer.pre)
        self.relu_of: dict[str, str] = {}  # a ReLU of a signed code stream -> its input: fused into the next quantizer
        self.pending: dict[str, _Pending] = {}
        self.consts: dict[str, Node] = {}
        self.producers = {m.name: m for m in graph.nodes}
        self.users = graph.consumers()

    def run(self) -> XnorProgram:
        for n in self.g.nodes:
            self.step(n)
        out = self.g.outputs[0]
        if out in self.pending:
            self.vals[out] = self._close(self.pending.pop(out), None, out)
        for name, p in self.pending.items():  # pragma: no cover - every fused value has a consumer or is the output
            raise UnsupportedOpError(f"layer {p.node.name!r} ({p.node.module}): its output {name!r} is never used")
        if not any(isinstance(x, MVAULayer) for x in self.layers):
            raise UnsupportedOpError(f"{self.g.name} has no binary/quantized layer to map onto the XNOR engine")
        if out not in self.vals or out in self.host:
            raise UnsupportedOpError(f"the output {out!r} of {self.g.name} is not computed by the XNOR engine")
        return XnorProgram(self.g.name, tuple(self.g.input_shape[1:]), tuple(self.layers), out,
                           self.vals[out].layer)

    # ------------------------------------------------------------------ dispatch
    def step(self, n: Node) -> None:
        if n.op == Op.CONSTANT:  # the operand of a scale / bias: checked where it is used
            users = self.users.get(n.name, [])
            if not users or any(u.op not in _ARITH for u in users) or n.name in self.g.outputs:
                raise no_layer(n)
            self.consts[n.name] = n
            return
        if n.op in (Op.MATMUL, Op.ATTENTION):
            raise product_refused(n, self.producers)
        if n.op not in _XNOR_OPS:
            raise no_layer(n)
        operand = self._operand(n) if n.op in _ARITH else None
        data = [i for i in n.inputs if i not in self.consts]
        fused = [i for i in data if i in self.pending]
        if fused:
            self._fuse(n, fused, data, operand)
            return
        if any(i in self.relu_of for i in data):
            self._after_relu(n, data)
            return
        missing = [i for i in data if i not in self.vals]
        if missing:  # pragma: no cover - the graph is topologically ordered
            raise UnsupportedOpError(f"node {n.name!r} reads {missing}, which the XNOR engine did not compute")
        srcs = [self.vals[i] for i in data]
        if self.pre.get(data[0]) and n.op not in (Op.SIGN, Op.QUANTIZE, Op.RESHAPE) + tuple(_ARITH):
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) reads the preprocessed network input "
                                     "without an input quantizer: the host replays preprocessing only before one")
        if n.op in (Op.CONV2D, Op.LINEAR):
            self.pending[n.name] = _start_mvau(self.g, n, srcs[0].enc, srcs[0].shape, (srcs[0].layer,))
        elif n.op in (Op.SIGN, Op.QUANTIZE):
            self._requantize(n, srcs[0])
        elif n.op == Op.MULTITHRESHOLD:
            self._emit(n, multithreshold_layer(n, srcs[0], self.g.param(n, "thresholds")))
        elif n.op in (Op.TRUNC, Op.CLAMP):
            self._trunc(n, srcs[0])
        elif n.op in _ARITH:
            self._stream_arith(n, srcs, operand)
        elif n.op == Op.CONCAT:
            self._emit(n, concat_layer(n, [(i, self.vals[i]) for i in data]))
        elif n.op in (Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL):
            self._emit(n, pool_layer(n, srcs[0]))
        elif n.op == Op.RESHAPE:
            self._emit(n, ReshapeLayer(n.name, tuple(n.shape[1:]), (srcs[0].layer,)), srcs[0].enc)
            if data[0] in self.host:
                self._host_reshape(n, data[0])
        elif n.op == Op.RELU and srcs[0].enc.kind == Enc.CODES and srcs[0].enc.offset == 0:
            self.vals[n.name] = srcs[0]  # ReLU of non-negative codes changes nothing
        elif n.op == Op.RELU and srcs[0].enc.kind in (Enc.CODES, Enc.BINARY):
            self.relu_of[n.name] = data[0]  # e.g. QuantReLU after a residual add: thresholds of the next quantizer
        else:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) on a quantized stream: "
                                     + ("BatchNorm must follow a binary/quantized conv or linear layer directly"
                                        if n.op == Op.BATCHNORM else "only an MVAU's activation can be fused"))

    def _after_relu(self, n: Node, data: list[str]) -> None:
        """A quantizer after a ReLU of a signed code stream: one Thresholding unit with the ReLU folded in."""
        src = self.relu_of[data[0]] if data[0] in self.relu_of else None
        if n.op not in (Op.SIGN, Op.QUANTIZE) or src is None or len(data) != 1:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) reads a ReLU of a signed code stream: "
                                     "only a quantizer may follow it (the ReLU folds into its thresholds)")
        out = act_encoding(n)
        if out.kind == Enc.BINARY:
            raise UnsupportedOpError(f"ReLU before sign in {n.module!r} {_RELU_SIGN}")
        self._emit(n, threshold_layer(n, self.vals[src], out, relu=True))

    def _emit(self, n: Node, layer: Layer, enc: Encoding | None = None) -> None:
        self.layers.append(layer)
        self.vals[n.name] = _Val(layer.name, enc if enc is not None else out_encoding(layer), tuple(n.shape[1:]))

    def _operand(self, n: Node):
        """(operand, reverse) of an arithmetic node with a Scalar or a CONSTANT node; None for two activations."""
        if isinstance(n.attrs, Scalar):
            return n.attrs.value, n.attrs.reverse
        if len(n.inputs) == 2:
            consts = [i for i in n.inputs if i in self.consts]
            if len(consts) == 1:
                return self.g.param(self.consts[consts[0]], "value"), n.inputs[0] == consts[0]
        return None

    # ------------------------------------------------------------------ an open MVAU
    def _fuse(self, n: Node, fused: list[str], data: list[str], operand) -> None:
        src = fused[0]
        p = self.pending[src]
        if n.op == Op.RESHAPE and len(data) == 1:  # e.g. the view of a 1-d conv's output lowered to 2-d
            raise UnsupportedOpError(f"reshape {n.name!r} ({n.module}) of the accumulator of layer {p.node.name!r}: "
                                     "the XNOR engine streams no reshape between a layer and its quantizer (1-d "
                                     "convolutions, lowered to 2-d with such reshapes, are not mapped)")
        if len(data) != 1 or n.op not in _FUSED | _ARITH or (n.op in _ARITH and operand is None):
            raise UnsupportedOpError(
                f"{n.op.value} {n.name!r} ({n.module}) reads the un-quantized output of layer {p.node.name!r} "
                f"({p.node.module}): quantize every branch (sign / QuantAct) before an add, concat or pool")
        if len(self.users.get(src, [])) != 1:
            raise UnsupportedOpError(f"the float output {src!r} of layer {p.node.name!r} ({p.node.module}) is read by "
                                     f"{len(self.users[src])} nodes: quantize it before it branches")
        del self.pending[src]
        if n.op == Op.MULTITHRESHOLD:  # FINN: the thresholds of the MVAU itself
            p.thresholds = self.g.param(n, "thresholds")
            p.nodes.append(n.name)
            self.vals[n.name] = self._close(p, multithreshold_encoding(n, p.thresholds.shape[1]), n.name)
            return
        if n.op in (Op.SIGN, Op.QUANTIZE):
            out = act_encoding(n)
            if p.affine.relu and out.kind == Enc.BINARY:
                raise UnsupportedOpError(f"ReLU before sign in {n.module!r} {_RELU_SIGN}")
            p.nodes.append(n.name)
            self.vals[n.name] = self._close(p, out, n.name)
            return
        if n.op == Op.BATCHNORM:
            if p.affine.relu:
                raise UnsupportedOpError(f"BatchNorm {n.name!r} ({n.module}) after a ReLU: it cannot fold")
            p.affine.add_bn(self.g, n)
        elif n.op == Op.RELU:
            p.affine.relu = True
            p.affine.post.append(("relu", None))
        else:
            if p.affine.relu:
                raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) after a ReLU: put scales and biases "
                                         "before it (they fold into the thresholds)")
            p.affine.add_arith(n, *operand)
        p.nodes.append(n.name)
        self.pending[n.name] = p

    def _close(self, p: _Pending, out: Encoding | None, value: str) -> _Val:
        layer = _finish(p, out)
        self.layers.append(layer)
        return _Val(layer.name, out if out is not None else Encoding(Enc.RAW, 32), tuple(self.g.shape_of(value)[1:]))

    # ------------------------------------------------------------------ streams
    def _requantize(self, n: Node, src: _Val) -> None:
        out = act_encoding(n)
        if n.inputs[0] in self.host:
            self._emit(n, InputLayer(n.name, src.shape, out, n.attrs if n.op == Op.QUANTIZE else None, (src.layer,),
                                     self.pre.get(n.inputs[0], ())))
        elif same_grid(src.enc, out):  # a quantizer that keeps every value (Brevitas re-quantizing): a no-op
            self.vals[n.name] = src
        elif src.enc.kind in (Enc.CODES, Enc.BINARY):
            self._emit(n, threshold_layer(n, src, out))
        else:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) quantizes a float value the XNOR engine "
                                     "does not stream")

    def _trunc(self, n: Node, src: _Val) -> None:
        """A Trunc after an accumulating pool (through a rescaling MUL): the pool's output right shift; a CLAMP after
        that (a Trunc version 2): the pool's output saturation."""
        idx = next((i for i, x in enumerate(self.layers) if x.name == src.layer), None)
        if idx is None or not isinstance(self.layers[idx], AccPoolLayer) or \
                len(self.users.get(n.inputs[0], [])) != 1:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) does not follow an average pool: the XNOR "
                                     "engine maps a Trunc (and its clamp) as the right shift (and saturation) of an "
                                     "accumulating pool's sums")
        fn = trunc_pool if n.op == Op.TRUNC else clamp_pool
        layer = fn(n, self.layers[idx], src.enc)
        if layer is None:  # a clamp that keeps every code
            self.vals[n.name] = src
            return
        self.layers[idx] = layer
        self.vals[n.name] = _Val(layer.name, layer.out, src.shape)

    def _host_arith(self, n: Node, operand) -> None:
        """A float op on the network input before its quantizer (preprocessing): the host driver replays it."""
        src = next(i for i in n.inputs if i not in self.consts)
        if src not in self.host:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) on a float value the XNOR engine does not "
                                     "stream")
        self.pre[n.name] = self.pre.get(src, ()) + ((arith_name(n.op, operand[1]), operand[0]),)
        self.host.add(n.name)
        self.vals[n.name] = dataclasses.replace(self.vals[src], shape=tuple(n.shape[1:]))

    def _host_reshape(self, n: Node, src: str) -> None:
        """A reshape of the (preprocessed) network input: still the host's; scalar preprocessing commutes with it."""
        ops = self.pre.get(src, ())
        if any(np.size(c) != 1 for _, c in ops):
            raise UnsupportedOpError(f"reshape {n.name!r} ({n.module}) after preprocessing the input with a "
                                     "per-element constant: preprocess after the reshape, or before hwsim.simulate")
        self.host.add(n.name)
        if ops:
            self.pre[n.name] = ops

    def _stream_arith(self, n: Node, srcs: list[_Val], operand) -> None:
        if operand is None:
            if n.op != Op.ADD or len(srcs) != 2:
                raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) of two activations: the XNOR engine "
                                         "adds two quantized streams (a residual) and nothing else")
            self._emit(n, add_layer(n, [(i, self.vals[i]) for i in n.inputs]))
            return
        src = srcs[0]
        value = np.asarray(operand[0], dtype=np.float64)
        rescales = n.op in (Op.MUL, Op.DIV) and not operand[1] and value.size == 1 and float(value.reshape(())) > 0
        if src.enc.kind == Enc.RAW:
            self._host_arith(n, operand)
            return
        idx = next((i for i, x in enumerate(self.layers) if x.name == src.layer), None)
        producer = self.layers[idx] if idx is not None else None
        if not rescales or producer is None or len(self.users.get(n.inputs[0], [])) != 1 \
                or isinstance(producer, ReshapeLayer):
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) on a quantized value: the XNOR engine "
                                     "folds scales and biases before an activation, and a positive scalar scale "
                                     "right after one")
        c = float(value.reshape(()))
        enc = dataclasses.replace(src.enc, scale=src.enc.scale * c if n.op == Op.MUL else src.enc.scale / c)
        self.layers[idx] = _with_out(producer, enc, n.name)
        self.vals[n.name] = _Val(src.layer, enc, src.shape)


def _with_out(layer: Layer, enc: Encoding, node: str) -> Layer:
    """``layer`` with its output encoding rescaled (a positive scalar MUL / DIV after it)."""
    if isinstance(layer, MVAULayer):
        return dataclasses.replace(layer, out_enc=enc, nodes=layer.nodes + (node,))
    if isinstance(layer, PoolLayer):
        return dataclasses.replace(layer, enc=enc)
    return dataclasses.replace(layer, out=enc)


def _start_mvau(graph: Graph, n: Node, enc: Encoding, shape: tuple[int, ...], src: tuple[str, ...]) -> _Pending:
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
                 levels=levels, src=src)
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
        thresholds = (integer_thresholds(gain, offset, out, relu=a.relu) if p.thresholds is None
                      else multithreshold_thresholds(gain, offset, p.thresholds, relu=a.relu))
    w = np.where(flip.reshape((-1,) + (1,) * (L["w_int"].ndim - 1)), -L["w_int"], L["w_int"])
    return MVAULayer(
        name=L["name"], module=L["module"], nodes=tuple(p.nodes), conv=L["conv"], in_shape=L["in_shape"],
        out_shape=L["out_shape"], weight=w, flip=flip, weight_bits=L["weight_bits"], in_enc=L["in_enc"],
        pad_value=L["pad_value"], gain=gain, offset=offset, thresholds=thresholds, out_enc=out,
        float_out=tuple(a.post), weight_levels=L["levels"], src=L["src"])


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
