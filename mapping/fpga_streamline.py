"""FINN-style streamlining for the XNOR engine: weight levels, scale/BN folding and integer thresholds.

The rules are stated in the docstring of :mod:`mapping.fpga`. Everything here works on one MVAU being
assembled (:class:`Affine`: ``z = gain * acc + offset`` per output channel, plus the float32 operations a layer
without activation replays on its exact accumulator).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.errors import MappingError, UnsupportedOpError
from mapping.fpga_program import Enc, Encoding
from mapping.graph import Graph, Node, Op, quant_levels

__all__ = ["integer_thresholds", "decision_levels", "act_encoding", "layer_weights", "Affine", "BIG",
           "multithreshold_encoding", "multithreshold_thresholds", "arith_name"]

BIG = 2**62  # threshold meaning "never" / "always" (beyond any accumulator)

# Per rounding mode (qonnx's names): the quantizer's integer is >= q  iff  u >= level (inclusive) or u > level,
# u = z / scale; (level, inclusive) as a function of q.
_TIE = {
    "ROUND": lambda q: (q - 0.5, q % 2 == 0),  # half to even: the tie u = q - 1/2 goes up iff q is even
    "FLOOR": lambda q: (float(q), True),
    "CEIL": lambda q: (q - 1.0, False),
    "UP": lambda q: (q - 1.0, False) if q > 0 else (float(q), True),  # away from zero
    "DOWN": lambda q: (float(q), True) if q > 0 else (q - 1.0, False),  # toward zero
    "HALF_UP": lambda q: (q - 0.5, q > 0),  # ties away from zero
    "HALF_DOWN": lambda q: (q - 0.5, q <= 0),  # ties toward zero
}


# ----------------------------------------------------------------------------- activations -> encodings
def act_encoding(n: Node) -> Encoding:
    """The encoding an activation quantizer produces: SIGN -> binary; QUANTIZE(bits, scale, signed, narrow,
    rounding) -> a 1-bit signed quantizer is bipolar (binary, ±scale), otherwise codes ``q - lo`` of its integer
    range ``[lo, hi]`` (offset ``-lo``: a signed quantizer's integers sent as unsigned codes)."""
    if n.op == Op.SIGN:
        return Encoding(Enc.BINARY)
    a = n.attrs
    if a.zero_point != 0:
        raise UnsupportedOpError(f"quantizer {n.name!r} ({n.module}) has zero point {a.zero_point}: the XNOR engine "
                                 "maps zero-point-0 activation quantizers")
    if a.rounding not in _TIE:
        raise UnsupportedOpError(f"quantizer {n.name!r} ({n.module}): rounding {a.rounding!r} has no threshold rule")
    if a.bits == 1 and a.signed:
        return Encoding(Enc.BINARY, 1, float(a.scale))
    lo, hi = quant_levels(a.bits, a.signed, a.narrow)
    if hi <= lo:
        raise UnsupportedOpError(f"quantizer {n.name!r} ({n.module}) has a single level")
    levels = hi - lo + 1
    return Encoding(Enc.CODES, max(1, (levels - 1).bit_length()), float(a.scale), -lo,
                    0 if levels == 2**a.bits else levels, a.rounding)


def decision_levels(out: Encoding) -> list[tuple[float, bool]]:
    """(level, inclusive) per threshold of the quantizer producing ``out``: code >= j iff ``z >= level_j``
    (inclusive) or ``z > level_j``, for j = 1 .. levels - 1 (binary: one level, z >= 0)."""
    if out.kind == Enc.BINARY:
        return [(0.0, True)]
    tie = _TIE[out.rounding]
    levels = []
    for j in range(1, out.n_levels):
        u, inclusive = tie(j - out.offset)  # the quantizer's integer at code j
        levels.append((u * out.scale, bool(inclusive)))
    return levels


def _int_threshold(t: np.ndarray, inclusive: bool) -> np.ndarray:
    t = np.clip(t, -BIG, BIG)
    return (np.ceil(t) if inclusive else np.floor(t) + 1).astype(np.int64)


def integer_thresholds(gain: np.ndarray, offset: np.ndarray, out: Encoding, relu: bool = False) -> np.ndarray:
    """Integer thresholds (C, T) on the accumulator for ``z = gain * acc + offset`` (gain >= 0), optionally
    through a ReLU, followed by sign (``out`` binary, T = 1) or a quantizer (T = levels - 1); the output code is
    the number of thresholds ``acc`` reaches (comparator >=)."""
    gain = np.asarray(gain, np.float64)
    offset = np.asarray(offset, np.float64)
    cols = []
    for level, inclusive in decision_levels(out):
        if relu and (level < 0 or (level == 0 and inclusive)):  # relu(z) >= level always holds
            cols.append(np.full(gain.shape, -BIG, dtype=np.int64))
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (level - offset) / gain
        thr = _int_threshold(np.where(gain > 0, t, 0.0), inclusive)
        on = (offset > level) | ((offset == level) & inclusive)  # gain == 0: constant output
        thr = np.where(gain > 0, thr, np.where(on, -BIG, BIG))
        cols.append(thr)
    return np.stack(cols, axis=1)


def multithreshold_encoding(n: Node, count: int) -> Encoding:
    """The encoding of a MultiThreshold with ``count`` thresholds per channel: ``y = out_scale * q + out_bias``
    with ``q`` in [0, count] is codes ``q`` with scale ``out_scale`` and offset ``-out_bias / out_scale`` (an
    integer), or bipolar bits (one threshold, ``out_bias = -out_scale / 2``: FINN's binary activation)."""
    a = n.attrs
    s, b = float(a.out_scale), float(a.out_bias)
    if not s > 0:
        raise UnsupportedOpError(f"MultiThreshold {n.name!r} ({n.module}) has out_scale {s}: the XNOR engine maps a "
                                 "positive output scale")
    if count == 1 and b == -s / 2:
        return Encoding(Enc.BINARY, 1, s / 2)
    off = -b / s
    if off != round(off) or not 0 <= off <= count:
        raise UnsupportedOpError(f"MultiThreshold {n.name!r} ({n.module}): out_bias {b} is not minus an integer "
                                 f"multiple (0 .. {count}) of out_scale {s}, so its outputs are not codes of one grid")
    bits = max(1, count.bit_length())
    return Encoding(Enc.CODES, bits, s, int(off), 0 if count + 1 == 2**bits else count + 1)


def multithreshold_thresholds(gain: np.ndarray, offset: np.ndarray, t: np.ndarray, relu: bool = False) -> np.ndarray:
    """Integer thresholds (C, T) on the accumulator for a MultiThreshold ``t`` (C or 1, T) (comparator >=) of
    ``z = gain * acc + offset`` (gain >= 0), optionally through a ReLU: ``acc >= ceil((t - offset) / gain)``."""
    gain = np.asarray(gain, np.float64)[:, None]
    offset = np.asarray(offset, np.float64)[:, None]
    t = np.broadcast_to(np.asarray(t, np.float64), (gain.shape[0], np.shape(t)[1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        thr = _int_threshold(np.where(gain > 0, (t - offset) / gain, 0.0), True)
    thr = np.where(gain > 0, thr, np.where(offset >= t, -BIG, BIG))  # gain 0: a constant output
    if relu:
        thr = np.where(t <= 0, -BIG, thr)  # relu(z) >= t always holds
    return thr.astype(np.int64)


# ----------------------------------------------------------------------------- weights
def layer_weights(graph: Graph, n: Node) -> tuple[np.ndarray, int, float | np.ndarray, str]:
    """(integer weights, bits, scale, levels) of a binary/quantized conv or linear: ``weight = w_int * scale``
    with odd levels (|w| <= 2^bits - 1, sums of {-1,+1} branches) or, for ``weight_levels="int"``, the integers
    of a signed bits-bit quantizer ([-2^(bits-1), 2^(bits-1) - 1], Brevitas's narrow or full range). ``scale``
    is one number, or one per output channel (a float64 vector) when ``meta["weight_scale"]`` is a sequence."""
    bits = int(n.meta["weight_bits"])
    weight = graph.param(n, "weight").astype(np.float64)
    scale = np.asarray(n.meta.get("weight_scale", 1.0), dtype=np.float64)
    if scale.size != 1 and scale.size != weight.shape[0]:
        raise MappingError(f"layer {n.name!r} ({n.module}): {scale.size} weight scales for {weight.shape[0]} "
                           "output channels")
    scale = float(scale.reshape(())) if scale.size == 1 else scale.reshape(-1)
    levels = str(n.meta.get("weight_levels", "odd"))
    ws = weight / (np.reshape(scale, (-1,) + (1,) * (weight.ndim - 1)) if isinstance(scale, np.ndarray) else scale)
    w_int = np.rint(ws).astype(np.int64)
    # on the grid up to float32 rounding: weight = fl32(w_int * scale) is within 2^-24 |w_int * scale| of the product,
    # so |weight / scale - w_int| <= 2^-24 |w_int| (a 6- to 8-bit level of 127 lies ~7.6e-6 off); 8 ulp of slack
    off_grid = np.abs(w_int - ws) > 1e-6 + 2.0**-21 * np.abs(w_int)
    if levels == "odd":
        if (off_grid | ((w_int & 1) == 0) | (np.abs(w_int) > 2**bits - 1)).any():
            raise MappingError(f"layer {n.name!r} ({n.module}): weights are not odd {bits}-bit levels times "
                               f"{scale} (was BatchNorm folded into them? the XNOR engine folds BN into thresholds)")
    elif levels == "int":
        if (off_grid | (w_int < -(2 ** (bits - 1))) | (w_int > 2 ** (bits - 1) - 1)).any():
            raise MappingError(f"layer {n.name!r} ({n.module}): weights are not integers of a signed {bits}-bit "
                               f"quantizer times {scale} ({_grid_miss(ws, w_int, off_grid, bits)})")
    else:
        raise MappingError(f"layer {n.name!r} ({n.module}): unknown weight_levels {levels!r}")
    return w_int, bits, scale, levels


def _grid_miss(ws: np.ndarray, w_int: np.ndarray, off_grid: np.ndarray, bits: int) -> str:
    """Why signed-integer weights were refused: off the grid (by how much) or outside the signed range."""
    if off_grid.any():
        return f"up to {np.abs(w_int - ws).max():.3g} of a level off the grid"
    return f"levels {int(w_int.min())}..{int(w_int.max())} outside [{-(2 ** (bits - 1))}, {2 ** (bits - 1) - 1}]" \
        " (an unsigned weight quantizer? those are not mapped)"


# ----------------------------------------------------------------------------- affine folding
@dataclass
class Affine:
    """``z = gain * acc + offset`` per output channel of an MVAU being assembled, and the float32 operations
    that compute z from the accumulator (replayed by a layer without activation)."""

    gain: np.ndarray
    offset: np.ndarray
    post: list = field(default_factory=list)
    relu: bool = False

    def add_bn(self, graph: Graph, n: Node) -> None:
        """BatchNorm: ``z' = gamma (z - mean) / sqrt(var + eps) + beta``."""
        mean = graph.param(n, "mean").astype(np.float64)
        var = graph.param(n, "var").astype(np.float64)
        gamma = graph.param(n, "gamma").astype(np.float64) if "gamma" in n.params else np.ones_like(mean)
        beta = graph.param(n, "beta").astype(np.float64) if "beta" in n.params else np.zeros_like(mean)
        sigma = np.sqrt(var + n.attrs.eps)
        self.gain = gamma * self.gain / sigma
        self.offset = gamma * (self.offset - mean) / sigma + beta
        self.post.append(("bn", tuple(graph.param(n, r) if r in n.params else None
                                      for r in ("mean", "var", "gamma", "beta")) + (float(n.attrs.eps),)))

    def add_arith(self, n: Node, operand, reverse: bool) -> None:
        """MUL / DIV / ADD / SUB of z by a scalar or a per-channel constant (``operand`` as the graph holds it)."""
        c = _per_channel(n, operand, self.gain.shape[0])
        if n.op == Op.MUL:
            self.gain, self.offset = self.gain * c, self.offset * c
        elif n.op == Op.DIV and not reverse:
            self.gain, self.offset = self.gain / c, self.offset / c
        elif n.op == Op.ADD:
            self.offset = self.offset + c
        elif n.op == Op.SUB:
            self.gain, self.offset = (-self.gain, c - self.offset) if reverse else (self.gain, self.offset - c)
        else:
            raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) divides a constant by the layer output: "
                                     "not an affine map, it cannot fold into thresholds")
        self.post.append((arith_name(n.op, reverse), operand))


def arith_name(op: Op, reverse: bool) -> str:
    """The name of a float op replayed on a value (``MVAULayer.float_out``, ``InputLayer.pre``): "mul", "add",
    "div" / "rdiv" (the constant over the value), "sub" / "rsub" (the constant minus the value)."""
    return {Op.MUL: "mul", Op.ADD: "add", Op.DIV: "rdiv" if reverse else "div", Op.SUB: "rsub" if reverse else "sub"}[op]


def _per_channel(n: Node, operand, channels: int) -> np.ndarray:
    """float64 (C,) or scalar of a Scalar / constant operand; refuses one that varies over space."""
    v = np.asarray(operand, dtype=np.float64)
    if v.size == 1:
        return np.full(channels, float(v.reshape(())))
    shape = (1,) + tuple(n.shape[1:])
    try:
        full = np.broadcast_to(v, shape).reshape(shape[1], -1) if len(shape) > 1 else None
    except ValueError:
        full = None
    if full is None or full.shape[0] != channels or np.any(full != full[:, :1]):
        raise UnsupportedOpError(f"{n.op.value} {n.name!r} ({n.module}) by a constant of shape {v.shape}: the XNOR "
                                 "engine folds scalars and per-channel constants only")
    return full[:, 0].copy()
