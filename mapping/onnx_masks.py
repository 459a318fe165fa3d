"""ONNX comparisons and boolean masks (Greater, Less, GreaterOrEqual, LessOrEqual, Equal, Not, And, Or, Xor,
Where) as IR nodes: a bool tensor is held as float 0 / 1, with the exact rules of :mod:`mapping._torch_mask`
(``ge(a, b) = relu(sign(a - b))``, Where a WHERE select).
A Cast of a mask to float is the mask itself (:mod:`mapping.onnx_moves`); every value is verified against
onnxruntime at import.
"""
from __future__ import annotations

import numpy as np

from mapping.graph import Clamp, Op, Scalar
from mapping.onnx_importer import registrar

__all__ = ["CONVERTERS"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)

_ONE_MINUS = Scalar(1.0, reverse=True)


def _number(imp, name: str) -> float | None:
    """A one-element constant operand (numeric or bool) as a float; None for anything else."""
    if not imp.is_const(name) or imp.const(name).size != 1:
        return None
    return float(imp.const(name).reshape(()))


def _operands(imp, n, names) -> tuple[list, tuple[int, ...]]:
    """Each operand as ``(ir_value, None)`` or ``(None, number)``, and the IR shape they broadcast to."""
    rank = len(imp.shape(n.output[0]))
    ops = [(None, _number(imp, a)) if _number(imp, a) is not None else (imp.operand(a, n, rank), None)
           for a in names]
    tensors = [imp.shapes[v] for v, _ in ops if v is not None]
    if not tensors:
        imp.refuse(n, "all operands constant")
    return ops, tuple(np.broadcast_shapes(*tensors))


def _diff(imp, n, x, y, shape, tag: str) -> str:
    (vx, sx), (vy, sy) = x, y
    if vy is None:
        return imp.emit(n, Op.SUB, [vx], Scalar(sy), name=imp.fresh(n, tag), shape=shape)
    if vx is None:
        return imp.emit(n, Op.SUB, [vy], Scalar(sx, reverse=True), name=imp.fresh(n, tag), shape=shape)
    return imp.emit(n, Op.SUB, [vx, vy], name=imp.fresh(n, tag), shape=shape)


def _ge(imp, n, x, y, shape, last: bool = False) -> str:
    """``float(x >= y)`` = relu(sign(x - y)); ``n``'s output when ``last``."""
    s = imp.emit(n, Op.SIGN, [_diff(imp, n, x, y, shape, "diff")], name=imp.fresh(n, "sign"), shape=shape)
    return imp.emit_as(n, Op.RELU, [s], None, shape) if last else \
        imp.emit(n, Op.RELU, [s], name=imp.fresh(n, "ge"), shape=shape)


@converts("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal")
def compare(imp, n) -> None:
    """Comparisons -> SUB, SIGN, RELU (+ SUB from 1 / MUL): the rules of :mod:`mapping._torch_mask`."""
    (x, y), shape = _operands(imp, n, n.input[:2])
    kind = n.op_type
    if kind in ("Less", "LessOrEqual"):
        x, y, kind = y, x, {"Less": "Greater", "LessOrEqual": "GreaterOrEqual"}[kind]
    if kind == "GreaterOrEqual":
        _ge(imp, n, x, y, shape, last=True)
    elif kind == "Greater":  # ge(x, y) · (1 - ge(y, x)): 0 at a NaN (mapping._torch_mask)
        not_le = imp.emit(n, Op.SUB, [_ge(imp, n, y, x, shape)], _ONE_MINUS, name=imp.fresh(n, "notle"), shape=shape)
        imp.emit_as(n, Op.MUL, [_ge(imp, n, x, y, shape), not_le], None, shape)
    else:
        imp.emit_as(n, Op.MUL, [_ge(imp, n, x, y, shape), _ge(imp, n, y, x, shape)], None, shape)


def _mask(imp, n, name: str) -> str:
    v = imp.values.get(name)
    if v is None or np.asarray(v).dtype != np.bool_:
        imp.refuse(n, f"operand '{name}' is not a bool tensor")
    return imp.operand(name, n, len(imp.shape(n.output[0])))


@converts("Not", "And", "Or", "Xor")
def logical(imp, n) -> None:
    """Not -> 1 - c; And -> MUL; Or -> min(a + b, 1) (ADD, CLAMP); Xor -> |a - b| (SUB, ABS)."""
    masks = [_mask(imp, n, a) for a in n.input]
    shape = tuple(np.broadcast_shapes(*(imp.shapes[m] for m in masks)))
    if n.op_type == "Not":
        imp.emit_as(n, Op.SUB, masks, _ONE_MINUS, shape)
    elif n.op_type == "And":
        imp.emit_as(n, Op.MUL, masks, None, shape)
    elif n.op_type == "Or":
        s = imp.emit(n, Op.ADD, masks, name=imp.fresh(n, "sum"), shape=shape)
        imp.emit_as(n, Op.CLAMP, [s], Clamp(None, 1.0), shape)
    else:
        d = imp.emit(n, Op.SUB, masks, name=imp.fresh(n, "diff"), shape=shape)
        imp.emit_as(n, Op.ABS, [d], None, shape)


@converts("Where")
def where(imp, n) -> None:
    """Where(c, a, b) -> WHERE (a select); a one-element constant branch is its Scalar; two constant branches select
    between ``c · 0 + a`` and ``b``."""
    cond = _mask(imp, n, n.input[0])
    (a, b), shape = _operands(imp, n, n.input[1:3]) if any(_number(imp, v) is None for v in n.input[1:3]) else \
        ([(None, _number(imp, v)) for v in n.input[1:3]], imp.shapes[cond])
    shape = tuple(np.broadcast_shapes(shape, imp.shapes[cond]))
    (va, sa), (vb, sb) = a, b
    if va is None and vb is None:
        zero = imp.emit(n, Op.MUL, [cond], Scalar(0.0), name=imp.fresh(n, "zero"), shape=shape)
        ins, attrs = [cond, imp.emit(n, Op.ADD, [zero], Scalar(sa), name=imp.fresh(n, "a"), shape=shape)], Scalar(sb)
    elif va is None:
        ins, attrs = [cond, vb], Scalar(sa, reverse=True)
    elif vb is None:
        ins, attrs = [cond, va], Scalar(sb)
    else:
        ins, attrs = [cond, va, vb], None
    imp.emit_as(n, Op.WHERE, ins, attrs, shape)
