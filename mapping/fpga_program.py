"""The target data of the XNOR engine: value encodings and the layers of an :class:`XnorProgram`.

Plain frozen dataclasses of numpy arrays (``mapping.fpga`` builds them; ``hwsim.fpga.functional`` runs them and
``hwsim.fpga.cost`` costs them). The semantics are stated in :mod:`mapping.fpga`.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mapping.graph import Conv2d, Pool, Quantize

__all__ = ["Enc", "Encoding", "MVAULayer", "InputLayer", "PoolLayer", "ReshapeLayer", "AddLayer", "ConcatLayer",
           "ThresholdLayer", "AccPoolLayer", "XnorProgram", "acc_bits", "out_encoding", "sum_encoding"]


class Enc(str, enum.Enum):
    BINARY = "binary"  # bits, 1 = +scale, 0 = -scale
    CODES = "codes"  # unsigned k-bit codes, value = (q - offset) * scale
    RAW = "raw"  # the network input as given (float32)


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a value travels on a stream.

    kind / bits: binary (1 bit), k-bit codes, or raw (the network input; bits assumed 8).
    scale: value of one code step (codes) or of a bit (binary: ±scale).
    offset: codes only: ``value = (q - offset) * scale``; a signed quantizer's integers ``q - offset`` are sent as
        the unsigned codes ``q`` (offset binary), so the hardware handles unsigned codes only.
    levels: codes only: how many codes occur (``0``: all ``2**bits``; a narrow-range quantizer has one fewer).
    rounding: the rounding of the quantizer that produced the codes (its thresholds' tie rule).
    """

    kind: Enc
    bits: int = 1
    scale: float = 1.0
    offset: int = 0
    levels: int = 0
    rounding: str = "ROUND"

    @property
    def n_levels(self) -> int:
        """Number of distinct codes (2 for binary)."""
        return 2 if self.kind == Enc.BINARY else (self.levels or 2**self.bits)

    def __str__(self) -> str:
        if self.kind == Enc.CODES:
            return f"{'int' if self.offset else 'uint'}{self.bits}"
        return {"binary": "bipolar", "raw": "raw"}[self.kind.value]


@dataclass(frozen=True, slots=True)
class InputLayer:
    """Thresholding of the raw input (a SIGN or QUANTIZE node applied to the network input), done by the host
    driver. ``quant``: the quantizer's attributes (None for SIGN). ``pre``: the float32 preprocessing the network
    does before its input quantizer (BNN-PYNQ's ``2 x - 1``), replayed by the host first, in graph order:
    ``("mul" | "div" | "add" | "sub" | "rsub" | "rdiv", c)`` with ``c`` a Scalar value or a constant array."""

    name: str
    shape: tuple[int, ...]  # per sample
    out: Encoding
    quant: Quantize | None = None
    src: tuple[str, ...] = ()  # the layers it reads (empty: the previous layer, or the network input)
    pre: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class MVAULayer:
    """One matrix-vector-activation unit (conv: sliding window + MVAU; linear: MVAU).

    ``weight`` holds integers, rows of flipped channels negated: odd levels (``weight_levels="odd"``: sums of
    ``weight_bits`` {-1,+1} branches) or the integers of a signed ``weight_bits``-bit quantizer
    (``weight_levels="int"``, Brevitas's weights). ``float_out`` lists the float32 operations that turn the exact
    accumulator into the output of a layer without activation, in graph order: ``("scale", s)``,
    ``("bias", b)``, ``("bn", (mean, var, gamma, beta, eps))``, ``("mul" | "add" | "sub" | "rsub" | "div", c)``.
    """

    name: str
    module: str
    nodes: tuple[str, ...]  # IR nodes fused into it
    conv: Conv2d | None  # None for a fully connected layer
    in_shape: tuple[int, ...]  # per sample: (C, H, W) or (F,)
    out_shape: tuple[int, ...]
    weight: np.ndarray  # int64; (Cout, Cin/g, kh, kw) or (Cout, K)
    flip: np.ndarray  # bool (Cout,): channel negated (g < 0)
    weight_bits: int
    in_enc: Encoding
    pad_value: float
    gain: np.ndarray  # float64 (Cout,), >= 0: z = gain * acc + offset (acc on the flipped weights)
    offset: np.ndarray  # float64 (Cout,)
    thresholds: np.ndarray | None  # int64 (Cout, T); None: no activation (float output)
    out_enc: Encoding | None  # encoding of the thresholded output; None: float output
    float_out: tuple[Any, ...] = ()
    weight_levels: str = "odd"
    src: tuple[str, ...] = ()

    @property
    def depthwise(self) -> bool:
        """A depthwise conv (groups = Cin = Cout > 1): FINN's vector-vector unit (VVAU)."""
        return self.conv is not None and self.conv.depthwise

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
    src: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReshapeLayer:
    name: str
    out_shape: tuple[int, ...]
    src: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddLayer:
    """FINN's AddStreams: the sum of two streams of integer codes of one scale, ``q = qa + qb`` (value
    ``(q - oa - ob) * scale``; two bipolar streams: ``q = ba + bb``, value ``(q - 1) * 2 scale``)."""

    name: str
    src: tuple[str, str]
    shape: tuple[int, ...]
    out: Encoding


@dataclass(frozen=True, slots=True)
class ConcatLayer:
    """FINN's StreamingConcat along the channels of streams with one encoding."""

    name: str
    src: tuple[str, ...]
    shape: tuple[int, ...]
    out: Encoding


@dataclass(frozen=True, slots=True)
class ThresholdLayer:
    """FINN's Thresholding of a code stream (re-quantization after an add, a pool, ...): ``z = gain * q + offset``
    per channel on the input codes ``q``, output code = number of ``thresholds`` (C, T) that ``q`` reaches."""

    name: str
    src: tuple[str]
    shape: tuple[int, ...]
    in_enc: Encoding
    thresholds: np.ndarray  # int64 (C, T)
    out: Encoding


@dataclass(frozen=True, slots=True)
class AccPoolLayer:
    """Average pooling as FINN streams it: an accumulating pool that sums the codes of each window (exact
    integers); the division by the window size is a scale of the output encoding (folded downstream). A QONNX
    ``Trunc`` after the pool is its output right shift: code ``(sum + shift_add) >> shift`` (the constant
    preloads the accumulator: with sum offset ``O`` and output offset ``O'``, ``shift_add = O' 2^shift - O``
    makes the code ``floor((sum - O) / 2^shift) + O'``); with ``rounding="ROUND"`` (Brevitas's TruncAvgPool2d
    default) the shift rounds half to even: one more if the dropped bits exceed half, or equal half and the
    floored value is odd. A Trunc version 2 clamps its output to its bit width (``signed``/``narrow``): codes
    outside ``clamp`` = (lowest, highest code kept) saturate there, and the output code is ``code - lowest``."""

    name: str
    src: tuple[str]
    attrs: Pool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_enc: Encoding
    out: Encoding
    shift: int = 0  # bits dropped by a following Trunc
    shift_add: int = 0  # the accumulator's initial value, so the shifted codes stay unsigned (see above)
    rounding: str = "FLOOR"  # of the shift: "FLOOR" or "ROUND" (half to even)
    clamp: tuple[int, int] | None = None  # (lowest, highest) code a Trunc version 2 keeps; None: no clamp


Layer = InputLayer | MVAULayer | PoolLayer | ReshapeLayer | AddLayer | ConcatLayer | ThresholdLayer | AccPoolLayer


def out_encoding(layer) -> Encoding | None:
    """The encoding of a layer's output (None: a float output, or a reshape, which keeps its input's)."""
    if isinstance(layer, MVAULayer):
        return layer.out_enc
    if isinstance(layer, PoolLayer):
        return layer.enc
    return getattr(layer, "out", None)


def sum_encoding(enc: Encoding, terms: int) -> Encoding:
    """The encoding of the sum of ``terms`` codes of ``enc`` (codes: offset and levels add up; bipolar bits
    ``b`` sum to codes with offset ``terms / 2`` and step ``2 * scale``, so ``terms`` must be even unless 1)."""
    if enc.kind == Enc.BINARY:
        offset2 = terms  # twice the offset
        top, scale = terms, 2 * enc.scale
    else:
        offset2 = 2 * terms * enc.offset
        top, scale = terms * (enc.n_levels - 1), enc.scale
    if offset2 % 2:
        raise ValueError("odd number of bipolar terms")
    bits = max(1, top.bit_length())
    return Encoding(Enc.CODES, bits, scale, offset2 // 2, 0 if top + 1 == 2**bits else top + 1)


@dataclass(frozen=True)
class XnorProgram:
    name: str
    input_shape: tuple[int, ...]  # per sample
    layers: tuple[Layer, ...]
    output: str  # IR name of the value the program returns
    output_layer: str = ""  # the layer whose value is returned ("": the last one)

    @property
    def mvaus(self) -> tuple[MVAULayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, MVAULayer))

    def sources(self) -> list[tuple[str, ...]]:
        """The layers (or ``"input"``) each layer reads, in layer order; a layer without ``src`` reads the previous
        one (the network input for the first)."""
        out, prev = [], "input"
        for layer in self.layers:
            out.append(tuple(layer.src) if layer.src else (prev,))
            prev = layer.name
        return out


def acc_bits(layer: MVAULayer) -> int:
    """Accumulator width in bits (signed) that holds every possible ``acc`` of the layer (on the unsigned codes
    the hardware receives)."""
    x_max = {Enc.BINARY: 1, Enc.CODES: 2**layer.in_enc.bits - 1, Enc.RAW: 2**layer.in_enc.bits - 1}[layer.in_enc.kind]
    bound = layer.mw * (2**layer.weight_bits - 1) * x_max
    return int(math.ceil(math.log2(bound + 1))) + 1
