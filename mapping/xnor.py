"""Map a traced binary / k-bit network onto the layers of a FINN-style XNOR/popcount dataflow engine.

``map_xnor(graph) -> XnorProgram``: the graph must be a feed-forward chain of

    [SIGN | QUANTIZE on the input]  (an input thresholding layer)
    CONV2D | LINEAR with ``meta["weight_bits"]`` (a ``nets.layers`` Binary*/Quant* layer)
        [BATCHNORM] [RELU] [SIGN | QUANTIZE]   -> one MVAU with its activation fused as thresholds
    MAXPOOL (after an activation)            -> a streaming max-pool (OR on bits)
    RESHAPE (flatten)

Semantics, stated once:

* **Encoding.** Binary values are bits, **bit 1 = +1, bit 0 = -1**; k-bit activations are unsigned
  codes ``q`` (value ``q * scale``); weights are odd integers ``w_int`` (±1 for binary; value
  ``w_int * weight_scale``).
* **BatchNorm + sign -> one integer threshold per channel.** The MVAU computes the integer
  accumulator ``acc``; the real pre-activation is ``z = g * acc + c`` with ``g = gamma * s / sigma``,
  ``c = gamma * (b - mean) / sigma + beta``, ``sigma = sqrt(var + eps)``, ``s`` the product of the
  input and weight scales and ``b`` the layer bias. A channel with ``g < 0`` has its weight row
  negated (so ``acc`` flips sign and ``g`` becomes positive) — exactly what FINN does. The output
  bit is ``acc >= T`` (comparator **>=**, sign(0) = +1) with ``T = ceil(-c / g)``.
* **BatchNorm + k-bit QuantAct -> 2^k - 1 thresholds.** ``q = clamp(round_half_even(z / s_out))``
  so ``q >= j`` iff ``z >= (j - 1/2) s_out`` (inclusive when j is even, strict when odd: the
  half-even tie rule); ``T_j = ceil(t)`` resp. ``floor(t) + 1`` with ``t = ((j - 1/2) s_out - c) / g``.
  The thresholds are computed in float64 from the float32 parameters: a pre-activation that torch
  rounds in float32 to within one ulp of a decision level may decide differently (never seen in
  the tests; the bit-exactness tests compare against torch).
* **Padding, per layer.** ``pad_value`` of a Binary conv: 0 (torch zero padding; the engine masks
  the border taps out of the popcount), +1 (Larq "one padding": border bits 1) or -1 (daBNN: bits
  0). k-bit inputs pad with code 0, which is exact without a mask (see ``hwsim.kernels.binary``).
* **Max-pool on bits is an OR** (max of ±1); on codes it is the max of the codes. Pooling is only
  supported after the activation (where FINN's streamlining puts it).
* Anything else is refused with :class:`~hwsim.errors.UnsupportedOpError` naming the node, its op and
  module; products of two activations (MATMUL, ATTENTION) too: the engine's MVAUs multiply by stored
  weights only.
* A first layer fed the raw input computes ``sum w * x`` exactly in integers when the input is
  integer-valued (an 8-bit image), otherwise in float64.

The program is target data: plain frozen dataclasses of numpy arrays; the functional engine is
``hwsim.xnor.engine`` and the cost model ``hwsim.xnor.dataflow``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import MappingError, UnsupportedOpError
from mapping.graph import Conv2d, Graph, Node, Op, Pool

__all__ = ["Enc", "Encoding", "MVAULayer", "InputLayer", "PoolLayer", "ReshapeLayer", "XnorProgram", "map_xnor",
           "integer_thresholds", "annotate_encodings"]

_BIG = 2**62  # threshold meaning "never" / "always" (beyond any accumulator)


class Enc(str, enum.Enum):
    BINARY = "binary"  # bits, 1 = +1
    CODES = "codes"  # unsigned k-bit codes, value = q * scale
    RAW = "raw"  # the network input as given (float32)


@dataclass(frozen=True, slots=True)
class Encoding:
    kind: Enc
    bits: int = 1  # 1 for binary, k for codes, 8 (assumed) for a raw image
    scale: float = 1.0  # value of one code step (codes); 1 otherwise

    def __str__(self) -> str:
        return {"binary": "bipolar", "codes": f"uint{self.bits}", "raw": "raw"}[self.kind.value]


@dataclass(frozen=True, slots=True)
class InputLayer:
    """Thresholding of the raw input (a SIGN or QUANTIZE node applied to the network input)."""

    name: str
    shape: tuple[int, ...]  # per sample
    out: Encoding


@dataclass(frozen=True, slots=True)
class MVAULayer:
    """One matrix-vector-activation unit (conv: sliding window + MVAU; linear: MVAU)."""

    name: str
    module: str
    nodes: tuple[str, ...]  # IR nodes fused into it
    conv: Conv2d | None  # None for a fully connected layer
    in_shape: tuple[int, ...]  # per sample: (C, H, W) or (F,)
    out_shape: tuple[int, ...]
    weight: np.ndarray  # int64 odd integers, rows of flipped channels negated; (Cout, Cin/g, kh, kw) or (Cout, K)
    flip: np.ndarray  # bool (Cout,): channel negated (g < 0)
    weight_bits: int
    in_enc: Encoding
    pad_value: float
    gain: np.ndarray  # float64 (Cout,), >= 0: z = gain * acc + offset (acc on the flipped weights)
    offset: np.ndarray  # float64 (Cout,)
    thresholds: np.ndarray | None  # int64 (Cout, T); None: no activation (float output)
    out_enc: Encoding | None  # encoding of the thresholded output; None: float output
    float_out: tuple[Any, ...] = ()  # (scale, bias|None, bn|None) for the float output path

    @property
    def mw(self) -> int:
        """Matrix width: (Cin/groups)·kh·kw, or in_features."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def mh(self) -> int:
        """Matrix height: output channels / features."""
        return int(self.weight.shape[0])

    @property
    def ofm_pixels(self) -> int:
        return int(self.out_shape[1] * self.out_shape[2]) if self.conv is not None else 1


@dataclass(frozen=True, slots=True)
class PoolLayer:
    name: str
    attrs: Pool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    enc: Encoding


@dataclass(frozen=True, slots=True)
class ReshapeLayer:
    name: str
    out_shape: tuple[int, ...]


Layer = InputLayer | MVAULayer | PoolLayer | ReshapeLayer


@dataclass(frozen=True)
class XnorProgram:
    name: str
    input_shape: tuple[int, ...]  # per sample
    layers: tuple[Layer, ...]
    output: str  # IR name of the value the program returns

    @property
    def mvaus(self) -> tuple[MVAULayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, MVAULayer))


# ----------------------------------------------------------------------------- thresholds
def _int_threshold(t: np.ndarray, inclusive: bool) -> np.ndarray:
    t = np.clip(t, -_BIG, _BIG)
    return (np.ceil(t) if inclusive else np.floor(t) + 1).astype(np.int64)


def integer_thresholds(gain: np.ndarray, offset: np.ndarray, out: Encoding) -> np.ndarray:
    """Integer thresholds (C, T) on the accumulator for ``z = gain * acc + offset`` (gain >= 0)
    followed by sign (``out`` binary, T = 1) or a k-bit unsigned quantizer (T = 2^k - 1)."""
    gain = np.asarray(gain, np.float64)
    offset = np.asarray(offset, np.float64)
    if out.kind == Enc.BINARY:
        levels = [(0.0, True)]
    else:
        levels = [((j - 0.5) * out.scale, j % 2 == 0) for j in range(1, 2**out.bits)]
    cols = []
    for level, inclusive in levels:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (level - offset) / gain
        thr = _int_threshold(np.where(gain > 0, t, 0.0), inclusive)
        on = (offset > level) | ((offset == level) & inclusive)  # gain == 0: constant output
        thr = np.where(gain > 0, thr, np.where(on, -_BIG, _BIG))
        cols.append(thr)
    return np.stack(cols, axis=1)


# ----------------------------------------------------------------------------- the walk
@dataclass
class _Pending:
    node: Node
    layer: dict
    nodes: list


def _weights(graph: Graph, n: Node) -> tuple[np.ndarray, int, float]:
    bits = int(n.meta["weight_bits"])
    scale = float(n.meta.get("weight_scale", 1.0))
    ws = graph.param(n, "weight").astype(np.float64) / scale
    w_int = np.rint(ws).astype(np.int64)
    bad = (np.abs(w_int - ws) > 1e-6) | ((w_int & 1) == 0) | (np.abs(w_int) > 2**bits - 1)
    if bad.any():
        raise MappingError(f"layer {n.name!r} ({n.module}): weights are not odd {bits}-bit levels times "
                           f"{scale} (was BatchNorm folded into them? the XNOR engine folds BN into thresholds)")
    return w_int, bits, scale


def map_xnor(graph: Graph) -> XnorProgram:
    """Fuse the graph into MVAUs with thresholds, pools and reshapes (see the module docstring)."""
    if len(graph.outputs) != 1:
        raise UnsupportedOpError(f"the XNOR engine maps single-output networks; {graph.name} has "
                                 f"{len(graph.outputs)} outputs")
    layers: list[Layer] = []
    enc = Encoding(Enc.RAW, 8)
    prev = graph.inputs[0].name
    shape = graph.input_shape[1:]
    pending: _Pending | None = None
    producers = {m.name: m for m in graph.nodes}
    for n in graph.nodes:
        if n.op in (Op.MATMUL, Op.ATTENTION):
            raise _product_refused(n, producers)
        if n.op not in _XNOR_OPS and len(n.inputs) == 1:  # a layer the engine lacks (several inputs: a chain error)
            raise _no_layer(n)
        if n.inputs != (prev,):
            raise UnsupportedOpError(f"node {n.name!r} ({n.op.value}, module {n.module!r}) reads {list(n.inputs)}: "
                                     "the XNOR engine maps feed-forward chains (no residual adds or concats)")
        prev = n.name
        if n.op in (Op.CONV2D, Op.LINEAR):
            if pending is not None:
                layers.append(_finish(pending, None))
                enc = Encoding(Enc.RAW, 32)
                pending = None
            pending = _start_mvau(graph, n, enc, shape)
        elif n.op == Op.BATCHNORM:
            if pending is None or "bn" in pending.layer or "relu" in pending.layer:
                raise UnsupportedOpError(f"BatchNorm {n.name!r} ({n.module}) must follow a binary/quantized "
                                         "conv or linear layer directly")
            _add_bn(graph, n, pending)
        elif n.op == Op.RELU:
            if pending is None:
                raise UnsupportedOpError(f"ReLU {n.name!r} ({n.module}) outside an MVAU")
            pending.layer["relu"] = True
            pending.nodes.append(n.name)
        elif n.op in (Op.SIGN, Op.QUANTIZE):
            out = (Encoding(Enc.BINARY) if n.op == Op.SIGN
                   else Encoding(Enc.CODES, int(n.attrs.bits), float(n.attrs.scale)))
            if n.op == Op.QUANTIZE and n.attrs.signed:
                raise UnsupportedOpError(f"signed QUANTIZE {n.name!r}: the engine uses unsigned codes (QuantAct)")
            if pending is not None:
                if pending.layer.get("relu") and n.op == Op.SIGN:
                    raise UnsupportedOpError(f"ReLU before sign in {n.module!r} (the output would be constant +1)")
                pending.nodes.append(n.name)
                layers.append(_finish(pending, out))
                pending = None
            elif enc.kind == Enc.RAW:
                layers.append(InputLayer(n.name, shape, out))
            else:
                raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) re-quantizes an already "
                                         "quantized value; only the input or an MVAU output can be thresholded")
            enc = out
        elif n.op == Op.MAXPOOL:
            if pending is not None or enc.kind == Enc.RAW:
                raise UnsupportedOpError(f"MaxPool {n.name!r} ({n.module}) before the activation: put it after "
                                         "the sign/QuantAct (the engine pools bits with an OR)")
            layers.append(PoolLayer(n.name, n.attrs, shape, n.shape[1:], enc))
        elif n.op == Op.RESHAPE:
            if pending is not None:
                raise UnsupportedOpError(f"reshape {n.name!r} between an MVAU and its activation")
            layers.append(ReshapeLayer(n.name, n.shape[1:]))
        else:
            raise _no_layer(n)
        shape = n.shape[1:]
    if pending is not None:
        layers.append(_finish(pending, None))
    if not any(isinstance(x, MVAULayer) for x in layers):
        raise UnsupportedOpError(f"{graph.name} has no binary/quantized layer to map onto the XNOR engine")
    return XnorProgram(graph.name, graph.input_shape[1:], tuple(layers), graph.outputs[0])


_XNOR_OPS = frozenset({Op.CONV2D, Op.LINEAR, Op.BATCHNORM, Op.RELU, Op.SIGN, Op.QUANTIZE, Op.MAXPOOL, Op.RESHAPE})


def _no_layer(n: Node) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {n.op.value!r} (node {n.name!r}, module {n.module!r}) has no XNOR engine layer "
                              "(supported: binary/quantized conv and linear, batchnorm, sign, quantize, maxpool, "
                              "flatten)")


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
                                 "runs binary/quantized layers (nets.layers.BinaryConv2d, QuantLinear, ...)")
    w_int, bits, w_scale = _weights(graph, n)
    if enc.kind == Enc.BINARY:
        in_scale = 1.0
    elif enc.kind == Enc.CODES:
        in_scale = enc.scale
    else:
        in_scale = 1.0
    pad_value = float(n.meta.get("pad_value", 0.0))
    if n.op == Op.CONV2D and pad_value != 0 and enc.kind == Enc.CODES and any(n.attrs.padding):
        raise MappingError(f"layer {n.name!r}: pad_value {pad_value} is not a code of its k-bit input")
    if n.op == Op.LINEAR and len(shape) != 1:
        raise UnsupportedOpError(f"linear {n.name!r} on a {len(shape) + 1}-d tensor (flatten first)")
    bias = graph.param(n, "bias").astype(np.float64) if "bias" in n.params else np.zeros(w_int.shape[0])
    s = in_scale * w_scale
    layer = dict(name=n.name, module=n.module, conv=n.attrs if n.op == Op.CONV2D else None, in_shape=tuple(shape),
                 out_shape=tuple(n.shape[1:]), w_int=w_int, weight_bits=bits, in_enc=enc, pad_value=pad_value,
                 gain=np.full(w_int.shape[0], s), offset=bias.copy(), s=s,
                 bias=graph.param(n, "bias") if "bias" in n.params else None)
    return _Pending(n, layer, [n.name])


def _add_bn(graph: Graph, n: Node, p: _Pending) -> None:
    mean = graph.param(n, "mean").astype(np.float64)
    var = graph.param(n, "var").astype(np.float64)
    gamma = graph.param(n, "gamma").astype(np.float64) if "gamma" in n.params else np.ones_like(mean)
    beta = graph.param(n, "beta").astype(np.float64) if "beta" in n.params else np.zeros_like(mean)
    sigma = np.sqrt(var + n.attrs.eps)
    L = p.layer
    L["gain"] = gamma * L["gain"] / sigma
    L["offset"] = gamma * (L["offset"] - mean) / sigma + beta
    L["bn"] = tuple(graph.param(n, r) if r in n.params else None for r in ("mean", "var", "gamma", "beta")) \
        + (float(n.attrs.eps),)
    p.nodes.append(n.name)


def _finish(p: _Pending, out: Encoding | None) -> MVAULayer:
    L = p.layer
    gain, offset = L["gain"], L["offset"]
    if out is None:  # float output: no flip, the accumulator is returned as computed
        flip = np.zeros(gain.shape, dtype=bool)
        thresholds = None
    else:
        flip = gain < 0
        gain = np.where(flip, -gain, gain)
        thresholds = integer_thresholds(gain, offset, out)
    w = np.where(flip.reshape((-1,) + (1,) * (L["w_int"].ndim - 1)), -L["w_int"], L["w_int"])
    return MVAULayer(
        name=L["name"], module=L["module"], nodes=tuple(p.nodes), conv=L["conv"], in_shape=L["in_shape"],
        out_shape=L["out_shape"], weight=w, flip=flip, weight_bits=L["weight_bits"], in_enc=L["in_enc"],
        pad_value=L["pad_value"], gain=gain, offset=offset, thresholds=thresholds, out_enc=out,
        float_out=(L["s"], L["bias"], L.get("bn")))


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


def acc_bits(layer: MVAULayer) -> int:
    """Accumulator width in bits (signed) that holds every possible ``acc`` of the layer."""
    x_max = {Enc.BINARY: 1, Enc.CODES: 2**layer.in_enc.bits - 1, Enc.RAW: 2**layer.in_enc.bits - 1}[layer.in_enc.kind]
    bound = layer.mw * (2**layer.weight_bits - 1) * x_max
    return int(math.ceil(math.log2(bound + 1))) + 1
