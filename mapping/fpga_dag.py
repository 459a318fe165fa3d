"""Layers of the XNOR engine beyond a chain of MVAUs: residual adds, concatenations, re-quantization of a code
stream, max and average (accumulating) pools. Each builder checks that the engine can stream the node exactly and
refuses it in one line otherwise; the semantics are stated in :mod:`mapping.fpga`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hwsim.errors import MappingError, UnsupportedOpError
from mapping.fpga_program import (
    AccPoolLayer,
    AddLayer,
    ConcatLayer,
    Enc,
    Encoding,
    PoolLayer,
    ThresholdLayer,
    sum_encoding,
)
from mapping.fpga_streamline import BIG, integer_thresholds, multithreshold_encoding
from mapping.graph import AdaptivePool, Node, Op, Pool, quant_levels

__all__ = ["add_layer", "concat_layer", "pool_layer", "threshold_layer", "add_encoding", "code_affine",
           "multithreshold_layer", "trunc_pool", "clamp_pool",
           "same_grid", "no_layer", "product_refused"]


def _what(n: Node) -> str:
    return f"{n.op.value} {n.name!r} ({n.module or 'no module'})"


def add_encoding(a: Encoding, b: Encoding) -> Encoding:
    """The encoding of ``qa + qb`` for two streams of one scale (see :class:`~mapping.fpga_program.AddLayer`)."""
    if a.kind == b.kind == Enc.BINARY:
        return sum_encoding(a, 2)
    top = (a.n_levels - 1) + (b.n_levels - 1)
    bits = max(1, top.bit_length())
    return Encoding(Enc.CODES, bits, a.scale, a.offset + b.offset, 0 if top + 1 == 2**bits else top + 1)


def add_layer(n: Node, srcs) -> AddLayer:
    """AddStreams of two quantized streams ``[(value name, _Val), (value name, _Val)]`` with one scale."""
    (na, a), (nb, b) = srcs
    if a.shape != b.shape:
        raise UnsupportedOpError(f"{_what(n)} adds shapes {a.shape} and {b.shape}: the XNOR engine adds equal "
                                 "shapes (no broadcasting)")
    if Enc.RAW in (a.enc.kind, b.enc.kind) or a.enc.kind != b.enc.kind:
        raise UnsupportedOpError(f"{_what(n)} adds a {a.enc} stream ({na!r}) and a {b.enc} stream ({nb!r}): the XNOR "
                                 "engine adds two k-bit code streams or two bipolar streams")
    if a.enc.scale != b.enc.scale:
        raise MappingError(f"residual {_what(n)} adds branches of different scales ({na!r}: {a.enc.scale:g}, "
                           f"{nb!r}: {b.enc.scale:g}): quantize both branches with one shared quantizer so the "
                           "integer codes add exactly")
    return AddLayer(n.name, (a.layer, b.layer), tuple(n.shape[1:]), add_encoding(a.enc, b.enc))


def concat_layer(n: Node, srcs) -> ConcatLayer:
    """StreamingConcat of quantized streams with one kind, scale and offset along the channels."""
    if n.attrs.dim not in (1, -3 if len(n.shape) == 4 else 1):
        raise UnsupportedOpError(f"{_what(n)} concatenates along dim {n.attrs.dim}: the XNOR engine concatenates "
                                 "channels (dim 1)")
    encs = [v.enc for _, v in srcs]
    first = encs[0]
    for name, v in srcs:
        e = v.enc
        if e.kind == Enc.RAW or e.kind != first.kind or e.scale != first.scale or e.offset != first.offset:
            raise MappingError(f"{_what(n)} concatenates {first} (scale {first.scale:g}) and {name!r} {e} (scale "
                               f"{e.scale:g}): the streams must share one quantizer grid")
    out = max(encs, key=lambda e: e.n_levels)
    return ConcatLayer(n.name, tuple(v.layer for _, v in srcs), tuple(n.shape[1:]), out)


def code_affine(enc: Encoding, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) with value ``= gain * q + offset`` of a code stream (bipolar bits: ``(2b - 1) scale``)."""
    if enc.kind == Enc.BINARY:
        return np.full(channels, 2 * enc.scale), np.full(channels, -enc.scale)
    return np.full(channels, enc.scale), np.full(channels, -enc.offset * enc.scale)


_ROUND = {  # qonnx's rounding modes on float32 values (numpy's rint is half to even)
    "ROUND": np.rint, "FLOOR": np.floor, "CEIL": np.ceil, "DOWN": np.trunc,
    "UP": lambda u: np.sign(u) * np.ceil(np.abs(u)),
    "HALF_UP": lambda u: np.sign(u) * np.floor(np.abs(u) + np.float32(0.5)),
    "HALF_DOWN": lambda u: np.sign(u) * np.ceil(np.abs(u) - np.float32(0.5)),
}


def _table_thresholds(n: Node, src_enc: Encoding, out: Encoding, relu: bool, channels: int) -> np.ndarray:
    """Thresholds of a quantizer on a stream with few codes, from the quantizer evaluated on every input code as
    qonnx / torch evaluate it in float32 (``round(z / scale)``: a non-dyadic scale rounds the quotient, which a
    threshold computed in exact arithmetic could decide differently at a tie)."""
    gain, offset = code_affine(src_enc, 1)
    q = np.arange(src_enc.n_levels, dtype=np.float64)
    z = (gain[0] * q + offset[0]).astype(np.float32)  # the value, correctly rounded to float32
    if relu:
        z = np.maximum(z, np.float32(0))
    a = n.attrs
    u = z / np.float32(a.scale) + np.float32(a.zero_point)
    v = np.clip(_ROUND[a.rounding](u), *quant_levels(a.bits, a.signed, a.narrow)).astype(np.int64)
    codes = v + out.offset  # non-decreasing in q
    cols = [np.searchsorted(codes, j, side="left") for j in range(1, out.n_levels)]  # first q with code >= j
    thr = np.array([c if c < len(q) else BIG for c in cols], dtype=np.int64)
    return np.broadcast_to(thr, (channels, len(cols))).copy()


def threshold_layer(n: Node, src, out: Encoding, relu: bool = False) -> ThresholdLayer:
    """Thresholding of a code stream by the quantizer ``n`` (after an add, a pool, or a wider activation), through a
    ReLU when ``relu``. A k-bit quantizer on a stream of at most 2^16 codes gets its thresholds from a table of the
    quantizer's float32 output on every code (exactly what the reference computes); otherwise, and for a sign,
    from :func:`~mapping.fpga_streamline.integer_thresholds`."""
    channels = src.shape[0]
    if out.kind == Enc.CODES and n.op == Op.QUANTIZE and src.enc.n_levels <= 2**16:
        thr = _table_thresholds(n, src.enc, out, relu, channels)
    else:
        gain, offset = code_affine(src.enc, channels)
        thr = integer_thresholds(gain, offset, out, relu=relu)
    return ThresholdLayer(n.name, (src.layer,), tuple(n.shape[1:]), src.enc, thr, out)


def _avg_window(n: Node, shape: tuple[int, ...]) -> Pool:
    """The window of an average pool with no padding, or of an adaptive one that divides the map evenly."""
    if len(shape) != 3:
        raise UnsupportedOpError(f"{_what(n)} on a {len(shape) + 1}-d tensor")
    _, h, w = shape
    a = n.attrs
    if isinstance(a, AdaptivePool):
        oh, ow = a.output_size
        if h % oh or w % ow:
            raise UnsupportedOpError(f"{_what(n)}: output {a.output_size} does not divide the {h}x{w} map")
        return Pool((h // oh, w // ow), (h // oh, w // ow))
    if any(a.padding) or a.ceil_mode or a.dilation != (1, 1):
        raise UnsupportedOpError(f"{_what(n)}: the accumulating pool takes no padding, ceil_mode or dilation")
    return a


def pool_layer(n: Node, src):
    """Max pool (OR on bits, max on codes) or average pool (a sum of codes, the 1/window folded into the scale)."""
    if src.enc.kind == Enc.RAW:
        raise UnsupportedOpError(f"{_what(n)} before the activation: put it after the sign/QuantAct (the engine "
                                 "pools bits with an OR and codes with a max or a sum)")
    if n.op == Op.MAXPOOL:
        return PoolLayer(n.name, n.attrs, src.shape, tuple(n.shape[1:]), src.enc, (src.layer,))
    win = _avg_window(n, src.shape)
    terms = win.kernel[0] * win.kernel[1]
    if src.enc.kind == Enc.BINARY and terms % 2:
        raise UnsupportedOpError(f"{_what(n)} averages {terms} bipolar values (an odd count has no integer offset); "
                                 "quantize to codes first")
    enc = sum_encoding(src.enc, terms)
    enc = Encoding(enc.kind, enc.bits, enc.scale / terms, enc.offset, enc.levels)
    return AccPoolLayer(n.name, (src.layer,), win, src.shape, tuple(n.shape[1:]), src.enc, enc)



def multithreshold_layer(n: Node, src, t: np.ndarray) -> ThresholdLayer:
    """A standalone MultiThreshold (thresholds ``t`` (C or 1, T)) on a code stream: a Thresholding unit whose
    thresholds on the codes come from the stream's float32 value of every code (what qonnx compares)."""
    if src.enc.kind == Enc.RAW:
        raise UnsupportedOpError(f"{_what(n)} on a float value the XNOR engine does not stream (the network input or "
                                 "a float layer output)")
    if src.enc.n_levels > 2**16:
        raise UnsupportedOpError(f"{_what(n)} on a stream of {src.enc.n_levels} codes (at most 2^16 are tabulated)")
    out = multithreshold_encoding(n, t.shape[1])
    channels = src.shape[0]
    gain, offset = code_affine(src.enc, 1)
    z = (gain[0] * np.arange(src.enc.n_levels, dtype=np.float64) + offset[0]).astype(np.float32)  # non-decreasing
    rows = np.broadcast_to(t.astype(np.float32), (channels, t.shape[1]))
    thr = np.array([[np.searchsorted(z, v, side="left") for v in row] for row in rows], dtype=np.int64)
    thr = np.where(thr < len(z), thr, BIG)  # first code whose value reaches the threshold; never: BIG
    return ThresholdLayer(n.name, (src.layer,), tuple(n.shape[1:]), src.enc, thr, out)


def _round_shift(v: int, k: int, rounding: str) -> int:
    """``v / 2^k`` rounded as the Trunc's ``rounding`` ("FLOOR", or "ROUND": half to even), exact on integers."""
    q, r = v >> k, v & ((1 << k) - 1)
    if rounding == "ROUND" and k and (r > 1 << (k - 1) or (r == 1 << (k - 1) and q & 1)):
        q += 1
    return q


def trunc_pool(n: Node, pool: AccPoolLayer, enc: Encoding) -> AccPoolLayer:
    """A QONNX Trunc of an accumulating pool's output ``enc`` (the pool's codes, rescaled by a MUL): the pool's
    output right shift (see :class:`~mapping.fpga_program.AccPoolLayer`), rounding down (FLOOR) or half to even
    (ROUND). Exact when the Trunc's scale is the stream's and its zero point 0."""
    a = n.attrs
    rounding = {"HALF_EVEN": "ROUND"}.get(a.rounding, a.rounding)
    if rounding not in ("FLOOR", "ROUND"):
        raise UnsupportedOpError(f"{_what(n)} rounds {a.rounding}: the XNOR engine implements Trunc as a right shift "
                                 "rounding down (FLOOR) or half to even (ROUND)")
    if a.zero_point != 0:
        raise UnsupportedOpError(f"{_what(n)} has zero point {a.zero_point}: the XNOR engine maps zero point 0")
    top = max(enc.offset, enc.n_levels - 1 - enc.offset)  # largest |integer| on the stream
    if abs(a.scale / enc.scale - 1) * top >= 0.25 or pool.shift:
        raise MappingError(f"{_what(n)} has scale {a.scale:g} on a sum of scale {enc.scale:g}: the integers it "
                           "truncates are not the pool's sums")
    k = a.in_bits - a.out_bits
    off = -_round_shift(-enc.offset, k, rounding)  # the code of the lowest sum's truncated value is 0
    top_code = _round_shift(enc.n_levels - 1 - enc.offset, k, rounding) + off
    bits = max(1, top_code.bit_length())
    out = Encoding(Enc.CODES, bits, float(a.scale), off, 0 if top_code + 1 == 2**bits else top_code + 1)
    return dataclasses.replace(pool, out=out, shift=k, shift_add=off * 2**k - enc.offset, rounding=rounding)


def clamp_pool(n: Node, pool: AccPoolLayer, enc: Encoding) -> AccPoolLayer:
    """A CLAMP of an accumulating pool's (truncated) output ``enc`` (QONNX Trunc version 2 clamps to its output
    bit width): the codes the clamp keeps, saturating the others (``pool.clamp``); bounds must lie on the codes'
    grid (a bound between two levels is not a code). A clamp that keeps every code is no layer at all (None)."""
    lo_c, hi_c = 0, enc.n_levels - 1
    bounds = []
    for bound, default in ((n.attrs.lo, lo_c), (n.attrs.hi, hi_c)):
        if bound is None:
            bounds.append(default)
            continue
        steps = bound / enc.scale
        if abs(steps - round(steps)) > 1e-4 * max(1.0, abs(steps)):
            raise UnsupportedOpError(f"{_what(n)} clamps at {bound:g}, between two levels of the stream's scale "
                                     f"{enc.scale:g}: not a code the XNOR engine can saturate to")
        bounds.append(min(max(round(steps) + enc.offset, lo_c), hi_c))
    lo, hi = bounds
    if (lo, hi) == (lo_c, hi_c):
        return None
    if pool.clamp is not None or lo > hi:
        raise MappingError(f"{_what(n)}: a second clamp, or an empty range, on pool {pool.name!r}")
    levels = hi - lo + 1
    bits = max(1, (levels - 1).bit_length())
    out = Encoding(Enc.CODES, bits, enc.scale, enc.offset - lo, 0 if levels == 2**bits else levels)
    return dataclasses.replace(pool, out=out, clamp=(lo, hi))


def same_grid(enc: Encoding, out: Encoding) -> bool:
    """Does quantizer ``out`` reproduce every value of ``enc`` exactly (same kind and scale, range covered)?"""
    if enc.kind != out.kind or enc.scale != out.scale:
        return False
    if enc.kind == Enc.BINARY:
        return True
    return -out.offset <= -enc.offset and enc.n_levels - 1 - enc.offset <= out.n_levels - 1 - out.offset


def no_layer(n: Node) -> UnsupportedOpError:
    """The refusal of an op the engine has no layer for."""
    if n.op == Op.PAD and n.attrs.mode != "constant":
        return UnsupportedOpError(f"{n.attrs.mode} pad {n.name!r} (module {n.module!r}): the XNOR engine pads only "
                                  "with a constant, inside a conv (its FMPadding unit, hwsim.fpga.cost FMPAD)")
    return UnsupportedOpError(f"op {n.op.value!r} (node {n.name!r}, module {n.module!r}) has no XNOR engine layer "
                              "(supported: binary/quantized conv, depthwise conv and linear, batchnorm, scale/bias "
                              "constants, sign, quantize, max / average pool, residual add, concat, flatten)")


def product_refused(n: Node, producers: dict) -> UnsupportedOpError:
    """The refusal of a MATMUL / ATTENTION: the engine's MVAUs multiply activations by stored weights only."""
    what = "attention" if n.op == Op.ATTENTION else "matmul of two activations"
    binary = all(src in producers and producers[src].op == Op.SIGN for src in n.inputs)
    kind = "binary" if binary else "non-binary"
    return UnsupportedOpError(f"the XNOR engine computes binary/k-bit weight layers; {kind} {what} (node {n.name!r}, "
                              f"op {n.op.value}, module {n.module!r}) is not supported"
                              + (" (it has no activation x activation unit)" if binary else ""))
