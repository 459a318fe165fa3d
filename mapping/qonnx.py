"""QONNX custom ops (domain ``qonnx.custom_op.general`` / ``finn.custom_op.general``, as Brevitas's
``export_qonnx`` writes them) as IR nodes, with qonnx 1.0's semantics (``qonnx/custom_op/general``).

A quantizer of a constant (a weight) has been folded by the importer: the weight is its output, the quantized
values; :func:`weight_meta` records its bits and scale on the conv/linear that reads it. On activations:

* ``Quant`` -> QUANTIZE(bits, scale, signed, zero_point, narrow, rounding), one-element scale / zero point / bits;
* ``BipolarQuant`` -> SIGN (sign(0) = +1), then MUL by a Scalar when its scale is not 1;
* ``Trunc`` -> TRUNC (version 1); version 2 (an output scale and range) -> TRUNC, MUL, CLAMP;
* ``MultiThreshold`` -> MULTITHRESHOLD with params ``thresholds``.
"""
from __future__ import annotations

import math

import numpy as np

from mapping.graph import Clamp, MultiThreshold, Op, Quantize, Scalar, Trunc, quant_levels
from mapping.onnx_importer import registrar

__all__ = ["CONVERTERS", "weight_meta", "input_levels"]

CONVERTERS: dict = {}
# qonnx intquant.py resolve_rounding_mode (HALF_EVEN is ROUND: numpy's half to even)
_ROUNDING = {"ROUND": "ROUND", "HALF_EVEN": "ROUND", "CEIL": "CEIL", "FLOOR": "FLOOR", "UP": "UP", "DOWN": "DOWN",
             "HALF_UP": "HALF_UP", "HALF_DOWN": "HALF_DOWN"}
_THROUGH = ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten")  # weight layout changes


converts = registrar(CONVERTERS)


def _scalar(imp, n, index: int, what: str) -> float:
    v = imp.const_input(n, index, what, required=True)
    if v.size != 1:
        imp.refuse(n, f"{what} of shape {v.shape}: hwsim maps one {what} per tensor")
    return float(v.reshape(()))


def _bits(imp, n, index: int) -> int:
    b = _scalar(imp, n, index, "bit width")
    if b != int(b) or b < 1:
        imp.refuse(n, f"bit width {b} (a positive integer is mapped)")
    return int(b)


def _rounding(imp, n, default: str) -> str:
    mode = str(imp.attr(n, "rounding_mode", default)).upper()
    if mode not in _ROUNDING:
        imp.refuse(n, f"rounding_mode {mode!r}")
    return _ROUNDING[mode]


@converts("Quant")
def quant(imp, n) -> None:
    """Quant of an activation with one-element scale, zero point, bit width -> QUANTIZE(bits, scale, signed,
    zero_point, narrow, rounding) (qonnx's int_quant: a 1-bit signed Quant is bipolar)."""
    scale, zp, bits = _scalar(imp, n, 1, "scale"), _scalar(imp, n, 2, "zero point"), _bits(imp, n, 3)
    if not scale > 0:
        imp.refuse(n, f"scale {scale} (a positive scale is mapped)")
    attrs = Quantize(bits, scale, bool(imp.attr(n, "signed", 1)), zp, bool(imp.attr(n, "narrow", 0)),
                     _rounding(imp, n, "ROUND"))
    imp.emit(n, Op.QUANTIZE, [imp.act(n.input[0], n)], attrs)


@converts("BipolarQuant")
def bipolar_quant(imp, n) -> None:
    """BipolarQuant of an activation -> SIGN (+1 where x >= 0, else -1), then MUL by its one-element scale if not 1."""
    scale = _scalar(imp, n, 1, "scale")
    src = imp.producer(n.input[0])
    if src is not None and src.op_type == "Relu":
        imp.refuse(n, "a BipolarQuant of a Relu's output is the constant +scale (Brevitas exports QuantReLU("
                      "bit_width=1), which computes {0, scale}, this way): use bit_width >= 2, or a +-1 activation "
                      "(brevitas.quant.SignedBinaryActPerTensorConst) without the ReLU")
    x = imp.act(n.input[0], n)
    if scale == 1.0:
        imp.emit(n, Op.SIGN, [x])
        return
    s = imp.emit(n, Op.SIGN, [x], name=imp.fresh(n, "sign"), shape=imp.shape(n.output[0]))
    imp.emit(n, Op.MUL, [s], Scalar(scale))


@converts("Trunc")
def trunc(imp, n) -> None:
    """Trunc version 1 -> TRUNC(in_bits, out_bits, scale, zero_point, rounding). Version 2 (inputs scale, zero point,
    in bits, output scale, out bits) with zero point 0 and output scale = scale * 2^k -> TRUNC(in_bits, in_bits - k,
    scale), MUL by 2^k, CLAMP to the output range of its signed/narrow attributes."""
    x = imp.act(n.input[0], n)
    scale, zp, in_bits = _scalar(imp, n, 1, "scale"), _scalar(imp, n, 2, "zero point"), _bits(imp, n, 3)
    rounding = _rounding(imp, n, "FLOOR")
    if not scale > 0:
        imp.refuse(n, f"scale {scale} (a positive scale is mapped)")
    if imp.opset(n.domain) < 2:
        out_bits = _bits(imp, n, 4)
        if out_bits > in_bits:
            imp.refuse(n, f"output bits {out_bits} above input bits {in_bits}")
        imp.emit(n, Op.TRUNC, [x], Trunc(in_bits, out_bits, scale, zp, rounding))
        return
    out_scale, out_bits = _scalar(imp, n, 4, "output scale"), _bits(imp, n, 5)
    ratio = out_scale / scale
    k = round(math.log2(ratio)) if ratio > 0 else -1
    if zp != 0.0 or k < 0 or k >= in_bits or np.float32(scale) * np.float32(2.0**k) != np.float32(out_scale):
        imp.refuse(n, f"Trunc v2 with zero point {zp}, scale {scale}, output scale {out_scale} (zero point 0 and a "
                      "power-of-two ratio of the scales are mapped)")
    shape = imp.shape(n.output[0])
    y = imp.emit(n, Op.TRUNC, [x], Trunc(in_bits, in_bits - k, scale, 0.0, rounding), name=imp.fresh(n, "trunc"),
                 shape=shape)
    if k:
        y = imp.emit(n, Op.MUL, [y], Scalar(2.0**k), name=imp.fresh(n, "shift"), shape=shape)
    lo, hi = quant_levels(out_bits, bool(imp.attr(n, "signed", 1)), bool(imp.attr(n, "narrow", 0)))
    imp.emit(n, Op.CLAMP, [y], Clamp(float(np.float32(lo) * np.float32(out_scale)),
                                     float(np.float32(hi) * np.float32(out_scale))))


@converts("MultiThreshold")
def multithreshold(imp, n) -> None:
    """MultiThreshold with constant thresholds[C or 1, T], channels on dim 1 -> MULTITHRESHOLD(out_scale, out_bias),
    params thresholds sorted per row (the count of thresholds <= x does not depend on their order)."""
    shape = imp.shape(n.input[0])
    t = imp.const_input(n, 1, "thresholds", required=True)
    if t.ndim == 2 and t.shape[0] != 1:
        imp.batched(n, n.input[0])
    if t.ndim != 2 or t.shape[0] not in (1, shape[1] if len(shape) > 1 else -1):
        imp.refuse(n, f"thresholds of shape {t.shape} for an input of shape {shape}")
    layout = str(imp.attr(n, "data_layout", "") or "")
    cdim = (layout.index("C") if "C" in layout else 1) if layout else (len(shape) - 1 if len(shape) == 3 else 1)
    if cdim != 1 and t.shape[0] != 1:
        imp.refuse(n, f"channels on dim {cdim} (layout {layout or 'NWC, qonnx default for rank 3'}); hwsim reads "
                      "them on dim 1")
    attrs = MultiThreshold(float(imp.attr(n, "out_scale", 1.0)), float(imp.attr(n, "out_bias", 0.0)))
    key = imp.add_param(n.input[1], np.sort(t.astype(np.float32), axis=1), n, "thresholds")
    imp.emit(n, Op.MULTITHRESHOLD, [imp.act(n.input[0], n)], attrs, {"thresholds": key})


def weight_meta(imp, name: str) -> dict:
    """``weight_bits``, ``weight_scale``, ``weight_levels`` of a conv/linear weight that a QONNX quantizer of a
    constant produced (through layout changes), when its zero point is 0 and its scale is one value or one per
    output channel (a scale of shape (Cout, 1, ...) as Brevitas's per-channel weight quantizers export it:
    ``weight_scale`` is then a tuple); else {}. Levels: "odd" for a bipolar weight (+-1), "int" for a k-bit Quant
    (integers of the signed/narrow range)."""
    p = imp.producer(name)
    for _ in range(4):
        if p is None or p.op_type not in _THROUGH or p.domain not in ("", "ai.onnx"):
            break
        p = imp.producer(p.input[0])
    if p is None or p.op_type not in ("Quant", "BipolarQuant") or p.domain in ("", "ai.onnx"):
        return {}
    scale = imp.consts.get(p.input[1])
    weight = imp.consts.get(p.input[0])
    if scale is None:
        return {}
    if scale.size == 1:
        ws = float(scale.reshape(()))
    elif weight is not None and scale.ndim == weight.ndim and \
            scale.shape[0] == weight.shape[0] == scale.size:
        ws = tuple(float(v) for v in scale.reshape(-1))  # one scale per output channel (dim 0 of the weight)
    else:
        return {}
    if p.op_type == "BipolarQuant":
        return {"weight_bits": 1, "weight_scale": ws, "weight_levels": "odd"}
    zp, bits = imp.consts.get(p.input[2]), imp.consts.get(p.input[3])
    if zp is None or bits is None or bits.size != 1 or np.any(zp != 0) or float(bits.reshape(())) % 1:
        return {}
    b = int(bits.reshape(()))
    signed = bool(imp.attr(p, "signed", 1))
    levels = "odd" if b == 1 and signed else "int"
    return {"weight_bits": b, "weight_scale": ws, "weight_levels": levels}


def input_levels(proto, input_name: str) -> tuple[int, int, float, float] | None:
    """(lo, hi, scale, zero point) of the integer Quant that reads the model's input directly, if there is one with
    constant one-element parameters (a sample of its levels exercises every code)."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.output and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    users = [n for n in proto.graph.node if input_name in n.input]
    if len(users) != 1 or users[0].op_type != "Quant" or users[0].input[0] != input_name:
        return None
    q = users[0]
    vals = [consts.get(i) for i in q.input[1:4]]
    if any(v is None or v.size != 1 for v in vals):
        return None
    scale, zp, bits = (float(v.reshape(())) for v in vals)
    if bits != int(bits) or not 1 < bits <= 16 or not scale > 0:
        return None
    attrs = {a.name: a.i for a in q.attribute if a.name in ("signed", "narrow")}
    lo, hi = quant_levels(int(bits), bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0)))
    return lo, hi, scale, zp
