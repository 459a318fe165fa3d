"""torch activations the IR computes exactly with ops it already has (handlers of :class:`mapping._builder.Builder`,
merged into :mod:`mapping._torch_ops`' table through :func:`mapping._torch_composite.composite`): ``selu``,
``celu``, ``elu`` with a scale, ``hardshrink``, ``softshrink``, ``threshold``, ``sign``. Their modules
(``nn.SELU``, ``nn.CELU``, ``nn.Hardshrink``, ``nn.Softshrink``, ``nn.Threshold``) reach these handlers through
torch.export's ATen ops. ``nn.Tanhshrink``, ``nn.Softsign``, ``nn.LogSigmoid`` and ``nn.Hardtanh`` were already
supported.

A threshold is compared exactly: ``relu(x - t)`` is nonzero exactly where ``x > t`` (IEEE subtraction of two
finite float32 values is zero only when they are equal and keeps the sign of the difference; ``t`` is rounded to
float32 first, as torch compares it), and the IR's WHERE selects ``x`` itself or the constant there, so the result
is exactly torch's, ties included. Every value is verified against torch at import (:mod:`mapping.verify`).
"""
from __future__ import annotations

import math

import numpy as np
import torch.fx as fx

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_moves import Handler, _inplace, _x, arg
from mapping.graph import Clamp, Elu, NoAttrs, Op, Scalar

__all__ = ["activations", "SELU_ALPHA", "SELU_SCALE"]

# torch's constants (aten/src/ATen/native/Activation.cpp: SELU_ALPHA, SELU_SCALE), as F.selu applies them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def f32(v: float) -> float:
    """``v`` rounded to float32, the precision torch and onnxruntime compare a float32 tensor with it in."""
    return float(np.float32(v))


def _number(b: Builder, n: fx.Node, v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UnsupportedOpError(f"{b.what(n)} with {what}={v!r} (a Python number is supported)")
    if not math.isfinite(float(v)):
        raise UnsupportedOpError(f"{b.what(n)} with {what}={v!r} (a finite number is supported)")
    return float(v)


def _step(b: Builder, n: fx.Node, tag: str, op: Op, ins: list[str], attrs=NoAttrs()) -> str:
    """An intermediate node of ``n`` of the shape of its first input."""
    return b.emit(n, op, ins, attrs, name=f"{n.name}_{tag}", shape=b.shapes[ins[0]])


def _last(b: Builder, n: fx.Node, op: Op, ins: list[str], attrs=NoAttrs()) -> None:
    """The final node of ``n`` (elementwise: the IR shape of ``n``'s value)."""
    b.emit(n, op, ins, attrs)


def scaled_elu(b: Builder, n: fx.Node, alpha: float, scale: float, input_scale: float) -> None:
    """``elu(x, alpha, scale, input_scale)`` = ``scale·x`` where x > 0, else ``alpha·scale·(exp(input_scale·x) - 1)``
    (ATen's ``elu``): with ``input_scale`` 1 -> ELU(alpha), then MUL Scalar(scale) unless it is 1 (SELU); else
    (CELU: ``input_scale`` = 1/alpha) WHERE(RELU(x), [MUL(x, scale)], ELU(MUL(x, input_scale), alpha·scale)): the
    select keeps ``x`` exact where x > 0, which ``alpha · elu(x / alpha)`` would round."""
    src = _x(b, n)
    if input_scale == 1.0:
        if scale == 1.0:
            b.emit(n, Op.ELU, [src], Elu(alpha), meta=_inplace(n))
            return
        _last(b, n, Op.MUL, [_step(b, n, "elu", Op.ELU, [src], Elu(alpha))], Scalar(scale))
        return
    if input_scale <= 0.0:
        raise UnsupportedOpError(f"{b.what(n)} with input_scale {input_scale:g} (a positive one, alpha > 0, is "
                                 "supported)")
    pos = src if scale == 1.0 else _step(b, n, "pos", Op.MUL, [src], Scalar(scale))
    inner = _step(b, n, "in", Op.MUL, [src], Scalar(input_scale))
    neg = _step(b, n, "neg", Op.ELU, [inner], Elu(alpha * scale))
    _last(b, n, Op.WHERE, [_step(b, n, "mask", Op.RELU, [src]), pos, neg])


def _elu(b: Builder, n: fx.Node) -> None:
    """``F.elu(x, alpha)`` -> ELU; ATen's ``elu(x, alpha, scale, input_scale)`` (SELU and CELU decomposed) ->
    :func:`scaled_elu`."""
    alpha = _number(b, n, arg(n, 1, "alpha", 1.0), "alpha")
    scaled_elu(b, n, alpha, _number(b, n, arg(n, 2, "scale", 1.0), "scale"),
               _number(b, n, arg(n, 3, "input_scale", 1.0), "input_scale"))


def _selu(b: Builder, n: fx.Node) -> None:
    """``F.selu`` / ``nn.SELU`` = SELU_SCALE · elu(x, SELU_ALPHA): ELU, MUL Scalar."""
    scaled_elu(b, n, SELU_ALPHA, SELU_SCALE, 1.0)


def _celu(b: Builder, n: fx.Node) -> None:
    """``F.celu(x, alpha)`` / ``nn.CELU`` = max(0, x) + min(0, alpha·(exp(x/alpha) - 1)): ELU when alpha is 1,
    else :func:`scaled_elu` with input_scale 1/alpha (alpha > 0)."""
    alpha = _number(b, n, arg(n, 1, "alpha", 1.0), "alpha")
    if alpha <= 0.0:
        raise UnsupportedOpError(f"{b.what(n)} with alpha={alpha:g} (a positive alpha is supported)")
    scaled_elu(b, n, alpha, 1.0, 1.0 / alpha)


def _above(b: Builder, n: fx.Node, src: str, t: float, tag: str = "mask") -> str:
    """A value nonzero exactly where ``src > f32(t)``: RELU(SUB(src, t)) (RELU alone when t is 0)."""
    d = src if f32(t) == 0.0 else _step(b, n, f"{tag}d", Op.SUB, [src], Scalar(f32(t)))
    return _step(b, n, tag, Op.RELU, [d])


def _hardshrink(b: Builder, n: fx.Node) -> None:
    """``F.hardshrink(x, lambd)`` = x where |x| > lambd else 0 (0 at ±lambd, as torch): WHERE(RELU(|x| - lambd), x)
    with Scalar 0 — exactly x and exactly 0."""
    lam = _number(b, n, arg(n, 1, "lambd", 0.5), "lambd")
    src = _x(b, n)
    _last(b, n, Op.WHERE, [_above(b, n, _step(b, n, "abs", Op.ABS, [src]), lam), src], Scalar(0.0))


def _softshrink(b: Builder, n: fx.Node) -> None:
    """``F.softshrink(x, lambd)`` = x - lambd where x > lambd, x + lambd where x < -lambd, else 0:
    SUB(x, CLAMP(x, -lambd, lambd)) — the clamp is x itself inside the band (x - x = 0 exactly) and ±lambd
    outside (torch's own x ∓ lambd)."""
    lam = _number(b, n, arg(n, 1, "lambd", 0.5), "lambd")
    if lam < 0:
        raise UnsupportedOpError(f"{b.what(n)} with lambd={lam:g} (torch requires lambd >= 0)")
    src = _x(b, n)
    band = _step(b, n, "band", Op.CLAMP, [src], Clamp(-f32(lam), f32(lam)))
    _last(b, n, Op.SUB, [src, band])


def _threshold(b: Builder, n: fx.Node) -> None:
    """``F.threshold(x, threshold, value)`` / ``nn.Threshold`` = x where x > threshold else value:
    WHERE(RELU(x - threshold), x) with Scalar value."""
    t = _number(b, n, arg(n, 1, "threshold"), "threshold")
    v = arg(n, 2, "value")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UnsupportedOpError(f"{b.what(n)} with value={v!r} (a Python number is supported)")
    src = _x(b, n)
    _last(b, n, Op.WHERE, [_above(b, n, src, t), src], Scalar(float(v)))


def _sign(b: Builder, n: fx.Node) -> None:
    """``torch.sign`` (0 at 0, unlike the IR's SIGN, +1 at 0): WHERE(x, SIGN(x)) with Scalar 0 (NaN gives -1)."""
    src = _x(b, n)
    _last(b, n, Op.WHERE, [src, _step(b, n, "pm1", Op.SIGN, [src])], Scalar(0.0))


def _rounding(op: Op) -> Handler:
    """``torch.round`` (half to even; ``decimals=0`` only), ``torch.floor``, ``torch.ceil``: the IR's ROUND, FLOOR, CEIL
    (a fake quantizer ``round(x / s).clamp(lo, hi) * s`` imports as DIV, ROUND, CLAMP, MUL)."""
    def h(b: Builder, n: fx.Node) -> None:
        decimals = arg(n, 1, "decimals", 0)
        if decimals != 0:
            raise UnsupportedOpError(f"{b.what(n)} with decimals={decimals!r} (rounding to an integer is supported)")
        _last(b, n, op, [_x(b, n)])
    return h


def activations() -> dict[str, Handler]:
    """The handlers of this module by function, method and ATen name."""
    return {"elu": _elu, "selu": _selu, "celu": _celu, "hardshrink": _hardshrink, "softshrink": _softshrink,
            "threshold": _threshold, "_threshold": _threshold, "sign": _sign, "sgn": _sign,
            "round": _rounding(Op.ROUND), "floor": _rounding(Op.FLOOR), "ceil": _rounding(Op.CEIL)}
