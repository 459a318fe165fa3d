"""Comparisons and boolean masks with the IR's float ops: ``x > t``, ``torch.where``, ``masked_fill``, ``~m``,
``m1 & m2``, ``m.float()``.

A mask is held as float 0.0 / 1.0, the value torch itself gives a bool in arithmetic (``x * mask``,
``mask.float()``), and each rule below is exact in float32 (no rounding can move a value across a threshold):

* ``ge(a, b) = relu(sign(a - b))``: IEEE subtraction of two finite floats is zero only when they are equal and
  keeps the sign of the difference (gradual underflow), and the IR's SIGN gives +1 at 0 (and -1 at NaN: a NaN
  compares false); ``gt(a, b) = ge(a, b) · (1 - ge(b, a))`` (not ``1 - ge(b, a)``, true at a NaN),
  ``le(a, b) = ge(b, a)``, ``lt(a, b) = gt(b, a)``, ``eq = ge(a, b) · ge(b, a)``, ``ne = 1 - eq``. A Python number
  is compared in float32, as torch compares it with a float32 tensor.
* ``where(c, a, b)`` is the IR's WHERE, a select (``0 · inf`` would make a product formula NaN where torch's
  ``where(y != 0, x / y, 0)`` is a number); ``masked_fill(x, m, v) = where(m, v, x)``.
* ``not c = 1 − c``, ``a and b = a · b``, ``a or b = min(a + b, 1)``, ``a xor b = |a − b|`` (bool operands only).

A comparison costs its few elementwise IR ops on every target (a runtime's one compare-and-select: the
elementwise work is counted up to 4x, negligible beside the layers around it). Any other op producing a bool
(``mask.any()``, ``x.bool()``, ``mask + mask``) is refused by the builder's dtype rule, and every node's value is
verified against torch at import (:mod:`mapping.verify`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_composite import _finish
from mapping._torch_moves import Handler, arg
from mapping.graph import Clamp, NoAttrs, Op, Scalar

__all__ = ["masks", "BOOL_RESULTS"]

_COMPARE = {"gt": "gt", "lt": "lt", "ge": "ge", "le": "le", "eq": "eq", "ne": "ne", "greater": "gt", "less": "lt",
            "greater_equal": "ge", "less_equal": "le", "not_equal": "ne", "__gt__": "gt", "__lt__": "lt",
            "__ge__": "ge", "__le__": "le", "__eq__": "eq", "__ne__": "ne"}
_NOT = ("logical_not", "bitwise_not", "invert", "__invert__")
_BINARY = {"logical_and": "and", "bitwise_and": "and", "and_": "and", "__and__": "and",
           "logical_or": "or", "bitwise_or": "or", "or_": "or", "__or__": "or",
           "logical_xor": "xor", "bitwise_xor": "xor", "xor": "xor", "__xor__": "xor"}
BOOL_RESULTS = frozenset(_COMPARE) | frozenset(_NOT) | frozenset(_BINARY)  # ops whose bool value the IR holds


def _number(b: Builder, n: fx.Node, a) -> float | None:
    """A Python number (or a one-element constant tensor) operand as a float; None for a tensor operand."""
    if isinstance(a, fx.Node) and b.kind(a) == "const" and b.val(a).numel() == 1 and b.val(a).dim() == 0:
        return float(b.val(a))
    if isinstance(a, fx.Node):
        return None
    if isinstance(a, (bool, int, float)):
        return float(a)
    raise UnsupportedOpError(f"{b.what(n)} with an operand {a!r}")


def _shape(b: Builder, n: fx.Node, *ops) -> tuple[int, ...]:
    """The IR shape of the operands broadcast (tensor operands referenced at the result's rank)."""
    rank = len(b.tshape(n))
    return tuple(np.broadcast_shapes(*(b.shapes[b.ref(a, n, rank)] for a in ops if _number(b, n, a) is None)))


def _step(b: Builder, n: fx.Node, tag: str, op: Op, ins: list[str], shape, attrs=NoAttrs()) -> str:
    return b.emit(n, op, ins, attrs, name=f"{n.name}_{tag}", shape=shape)


def _diff(b: Builder, n: fx.Node, x, y, shape, tag: str) -> str:
    """The IR value of ``x - y`` (float32; a number operand as a Scalar)."""
    rank = len(b.tshape(n))
    sx, sy = _number(b, n, x), _number(b, n, y)
    if sx is not None and sy is not None:
        raise UnsupportedOpError(f"{b.what(n)} of two numbers")
    if sy is not None:
        return _step(b, n, tag, Op.SUB, [b.ref(x, n, rank)], shape, Scalar(sy))
    if sx is not None:
        return _step(b, n, tag, Op.SUB, [b.ref(y, n, rank)], shape, Scalar(sx, reverse=True))
    return _step(b, n, tag, Op.SUB, [b.ref(x, n, rank), b.ref(y, n, rank)], shape)


def _ge(b: Builder, n: fx.Node, x, y, shape, tag: str, last: bool = False) -> str:
    """``float(x >= y)`` = relu(sign(x - y)); the final node of ``n`` when ``last``."""
    s = _step(b, n, f"{tag}sign", Op.SIGN, [_diff(b, n, x, y, shape, f"{tag}diff")], shape)
    return _finish(b, n, Op.RELU, [s], natural=shape) if last else _step(b, n, f"{tag}ge", Op.RELU, [s], shape)


def _compare(b: Builder, n: fx.Node) -> None:
    kind = _COMPARE[_name(n)]
    x, y = n.args[0], arg(n, 1, "other")
    if kind in ("lt", "le"):
        x, y, kind = y, x, {"lt": "gt", "le": "ge"}[kind]
    shape = _shape(b, n, x, y)
    one_minus = Scalar(1.0, reverse=True)
    if kind == "ge":
        _ge(b, n, x, y, shape, "", last=True)
    elif kind == "gt":  # x > y  <=>  x >= y and not y >= x (a NaN: both 0, so 0, as torch's False)
        not_le = _step(b, n, "notle", Op.SUB, [_ge(b, n, y, x, shape, "b")], shape, one_minus)
        _finish(b, n, Op.MUL, [_ge(b, n, x, y, shape, "a"), not_le], natural=shape)
    else:
        ge_xy, ge_yx = _ge(b, n, x, y, shape, "a"), _ge(b, n, y, x, shape, "b")
        if kind == "eq":
            _finish(b, n, Op.MUL, [ge_xy, ge_yx], natural=shape)
        else:
            eq = _step(b, n, "eq", Op.MUL, [ge_xy, ge_yx], shape)
            _finish(b, n, Op.SUB, [eq], one_minus, natural=shape)


def _mask(b: Builder, n: fx.Node, a, what: str) -> str:
    """The IR value of a bool mask operand (a float 0/1 value; a constant mask becomes a CONSTANT)."""
    if not isinstance(a, fx.Node) or not isinstance(b.val(a), torch.Tensor) or b.val(a).dtype != torch.bool:
        raise UnsupportedOpError(f"{b.what(n)}: {what} is not a bool tensor (comparisons and masks of bools are "
                                 "supported)")
    return b.ref(a, n, len(b.tshape(n)))


def _where(b: Builder, n: fx.Node, c, a, y) -> None:
    """``where(c, a, y)`` -> WHERE (a select: an inf or NaN in the branch not taken never reaches the result); a
    number branch is its Scalar, two number branches select between ``c · 0 + a`` and ``y``."""
    rank = len(b.tshape(n))
    cond = _mask(b, n, c, "the condition")
    sa, sy = _number(b, n, a), _number(b, n, y)
    shape = tuple(np.broadcast_shapes(b.shapes[cond], *(b.shapes[b.ref(v, n, rank)] for v, s in ((a, sa), (y, sy))
                                                          if s is None)))
    if sa is not None and sy is not None:  # a tensor holding a: c · 0 + a (exact, a may be infinite)
        zero = _step(b, n, "zero", Op.MUL, [cond], shape, Scalar(0.0))
        ins, attrs = [cond, _step(b, n, "a", Op.ADD, [zero], shape, Scalar(sa))], Scalar(sy)
    elif sa is not None:
        ins, attrs = [cond, b.ref(y, n, rank)], Scalar(sa, reverse=True)
    elif sy is not None:
        ins, attrs = [cond, b.ref(a, n, rank)], Scalar(sy)
    else:
        ins, attrs = [cond, b.ref(a, n, rank), b.ref(y, n, rank)], NoAttrs()
    _finish(b, n, Op.WHERE, ins, attrs, natural=shape)


def _torch_where(b: Builder, n: fx.Node) -> None:
    if len(n.args) + len(n.kwargs) < 3:
        raise UnsupportedOpError(f"{b.what(n)} with one argument (the indices of a mask)")
    _where(b, n, n.args[0], arg(n, 1, "input"), arg(n, 2, "other"))


def _masked_fill(b: Builder, n: fx.Node) -> None:
    _where(b, n, arg(n, 1, "mask"), arg(n, 2, "value"), n.args[0])


def _logical(b: Builder, n: fx.Node) -> None:
    name = _name(n)
    if name in _NOT:
        c = _mask(b, n, n.args[0], "the operand")
        _finish(b, n, Op.SUB, [c], Scalar(1.0, reverse=True), natural=b.shapes[c])
        return
    p, q = _mask(b, n, n.args[0], "the first operand"), _mask(b, n, arg(n, 1, "other"), "the second operand")
    shape = tuple(np.broadcast_shapes(b.shapes[p], b.shapes[q]))
    kind = _BINARY[name]
    if kind == "and":
        _finish(b, n, Op.MUL, [p, q], natural=shape)
    elif kind == "or":
        _finish(b, n, Op.CLAMP, [_step(b, n, "sum", Op.ADD, [p, q], shape)], Clamp(None, 1.0), natural=shape)
    else:
        _finish(b, n, Op.ABS, [_step(b, n, "diff", Op.SUB, [p, q], shape)], natural=shape)


def _name(n: fx.Node) -> str:
    t = n.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def masks() -> dict[str, Handler]:
    """The handlers of this module by function, method and operator name."""
    h: dict[str, Handler] = {k: _compare for k in _COMPARE}
    h.update({k: _logical for k in (*_NOT, *_BINARY)})
    h.update({"where": _torch_where, "masked_fill": _masked_fill})
    return h
