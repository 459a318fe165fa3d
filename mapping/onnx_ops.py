"""The standard ONNX ops (opsets 13-21) as IR nodes: one converter per op, whose docstring states its rule.

A converter ``fn(importer, node)`` reads operands through :class:`mapping.onnx.Importer` and emits IR nodes named
by the node's outputs. Every value's first dim is the batch: an op that reads, moves or merges dim 0 is refused.
Operands computed only from constants were folded by the importer; weights, biases, axes, pads and exponents must
be such constants. Output shapes are the source's (read from its run); only helper nodes get computed ones.
"""
from __future__ import annotations

import math

import numpy as np

from mapping.graph import (
    AdaptivePool, BatchNorm, Clamp, Concat, Conv2d, Elu, Gelu, GroupNorm, LayerNorm, LeakyRelu, Linear, Op, Pad,
    Permute, Pool, Reduce, Reshape, Scalar, Slice, Softmax, Softplus, Upsample,
)
from mapping.qonnx import weight_meta

__all__ = ["CONVERTERS", "PATTERNS"]

CONVERTERS: dict = {}


def converts(*ops: str):
    def register(fn):
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return register


def _scalar(imp, name: str) -> float | None:
    """The value of a one-element constant, None for anything else."""
    if not imp.is_const(name):
        return None
    v = imp.const(name)
    return float(v.reshape(())) if v.size == 1 and np.issubdtype(v.dtype, np.number) else None


# ----------------------------------------------------------------------------- layers with weights
def _pads2d(imp, n, in_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad``."""
    auto = imp.attr(n, "auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = [int(v) for v in imp.attr(n, "pads", [0, 0, 0, 0])]
        return p[0], p[1], p[2], p[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        imp.refuse(n, f"auto_pad {auto!r}")
    pads = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2))
    return pads[0][0], pads[1][0], pads[0][1], pads[1][1]


def _window(imp, n, what: str):
    """kernel, strides, dilations of a 2-D window op (``kernel_shape`` or the weight's)."""
    kernel = tuple(int(k) for k in imp.attr(n, "kernel_shape", []))
    if len(kernel) != 2:
        imp.refuse(n, f"{len(kernel)}-D {what} (hwsim maps 2-D {what}s on NCHW)")
    return kernel, tuple(int(s) for s in imp.attr(n, "strides", [1, 1])), \
        tuple(int(d) for d in imp.attr(n, "dilations", [1, 1]))


@converts("Conv")
def conv(imp, n) -> None:
    """Conv with a constant 4-D weight -> CONV2D; asymmetric pads -> PAD, then CONV2D without padding."""
    w = imp.const_input(n, 1, "weight", required=True)
    if w.ndim != 4:
        imp.refuse(n, f"{w.ndim - 2}-D convolution (hwsim maps 2-D convolutions on NCHW)")
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    b = imp.const_input(n, 2, "bias")
    group = int(imp.attr(n, "group", 1))
    kernel = (int(w.shape[2]), int(w.shape[3]))
    strides = tuple(int(s) for s in imp.attr(n, "strides", [1, 1]))
    dil = tuple(int(d) for d in imp.attr(n, "dilations", [1, 1]))
    t, left, bottom, right = _pads2d(imp, n, shape[2:], kernel, strides, dil)
    if (t, left) != (bottom, right):
        x = _pad_node(imp, n, x, shape, ((0, 0), (0, 0), (t, bottom), (left, right)), 0.0)
        t = left = 0
    params = {"weight": imp.add_param(n.input[1], w, n, "weight")}
    if b is not None:
        params["bias"] = imp.add_param(n.input[2], b, n, "bias")
    attrs = Conv2d(int(w.shape[1]) * group, int(w.shape[0]), kernel, strides, (t, left), dil, group, b is not None)
    imp.emit(n, Op.CONV2D, [x], attrs, params, weight_meta(imp, n.input[1]))


def _pad_node(imp, n, x: str, shape, pads, value: float) -> str:
    out = tuple(s + a + b for s, (a, b) in zip(shape, pads))
    return imp.emit(n, Op.PAD, [x], Pad(tuple(pads), float(value)), name=imp.fresh(n, "pad"), shape=out)


@converts("Gemm")
def gemm(imp, n) -> None:
    """Gemm(A, constant B, constant C) -> LINEAR: weight alpha*B (transB) or alpha*B^T as (out, in), bias beta*C."""
    if imp.attr(n, "transA", 0):
        imp.refuse(n, "transA=1 transposes the batch dimension")
    x = imp.act(n.input[0], n)
    b = imp.const_input(n, 1, "weight B", required=True)
    alpha, beta = float(imp.attr(n, "alpha", 1.0)), float(imp.attr(n, "beta", 1.0))
    w = b if imp.attr(n, "transB", 0) else b.T
    if alpha != 1.0:
        w = w * np.float32(alpha)
    c = imp.const_input(n, 2, "bias C")
    params = {"weight": imp.add_param(n.input[1], w, n, "weight")}
    if c is not None and beta != 0.0:
        c = np.asarray(c, dtype=np.float32).reshape((1,) * (2 - c.ndim) + c.shape)
        if c.shape[0] != 1 and not np.all(c == c[:1]):
            imp.refuse(n, f"bias C of shape {c.shape} differs along the batch")
        if c.shape[1] not in (1, w.shape[0]):
            imp.refuse(n, f"bias C of shape {c.shape} for {w.shape[0]} outputs")
        params["bias"] = imp.add_param(n.input[2], np.broadcast_to(c[0], (w.shape[0],)) * np.float32(beta), n,
                                         "bias")
    meta = weight_meta(imp, n.input[1]) if alpha == 1.0 else {}
    imp.emit(n, Op.LINEAR, [x], Linear(int(w.shape[1]), int(w.shape[0]), "bias" in params), params, meta)


@converts("MatMul")
def matmul(imp, n) -> None:
    """MatMul(A, constant 2-D B) -> LINEAR with weight B^T (a following Add of a constant vector becomes its bias,
    the node then named by the Add's output); MatMul of two activations of rank >= 3 -> MATMUL."""
    a, b = n.input[0], n.input[1]
    if not imp.is_const(b):
        if len(imp.shape(a)) < 3 or len(imp.shape(b)) < 3:
            imp.refuse(n, "product of two activations of rank < 3 (the batch would be a matrix dim)")
        imp.emit(n, Op.MATMUL, [imp.act(a, n), imp.act(b, n)])
        return
    w = imp.const(b)
    if w.ndim != 2:
        imp.refuse(n, f"constant right operand of shape {w.shape} (a 2-D weight is mapped)")
    x = imp.act(a, n)
    if len(imp.shape(a)) < 2:
        imp.refuse(n, "1-D left operand")
    params = {"weight": imp.add_param(b, w.T, n, "weight")}
    add, bias_name = _bias_add(imp, n, int(w.shape[1]))
    if add is not None:
        params["bias"] = imp.add_param(bias_name, imp.const(bias_name).reshape(-1), n, "bias")
        imp.absorb(add)
    imp.emit(n, Op.LINEAR, [x], Linear(int(w.shape[0]), int(w.shape[1]), add is not None), params,
             weight_meta(imp, b), name=add.output[0] if add is not None else None)


def _bias_add(imp, n, out: int):
    """The Add of a constant vector of ``out`` entries that alone reads ``n``'s output, and that vector's name."""
    y = n.output[0]
    users = imp.consumers(y)
    if len(users) != 1 or y in imp.graph_outputs or users[0].op_type != "Add" or users[0].domain not in ("", "ai.onnx"):
        return None, None
    add = users[0]
    other = add.input[1] if add.input[0] == y else add.input[0]
    if other == y or not imp.is_const(other):
        return None, None
    c = imp.const(other)
    if c.ndim > len(imp.shape(y)) or c.shape[-1:] != (out,) or c.size != out or not np.issubdtype(c.dtype, np.floating):
        return None, None
    return add, other


@converts("BatchNormalization")
def batchnorm(imp, n) -> None:
    """BatchNormalization at inference with constant scale, bias, mean, var -> BATCHNORM along dim 1."""
    if imp.attr(n, "training_mode", 0) or any(o for o in n.output[1:]):
        imp.refuse(n, "training mode (running statistics outputs)")
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    roles = ("gamma", "beta", "mean", "var")
    vals = [imp.const_input(n, i + 1, r, required=True) for i, r in enumerate(roles)]
    if len(shape) < 2 or any(v.size != shape[1] for v in vals):
        imp.refuse(n, f"parameters do not match the {shape[1] if len(shape) > 1 else 0} channels of its input")
    params = {r: imp.add_param(n.input[i + 1], v.reshape(-1), n, r) for i, (r, v) in enumerate(zip(roles, vals))}
    imp.emit(n, Op.BATCHNORM, [x], BatchNorm(shape[1], float(imp.attr(n, "epsilon", 1e-5))), params)


# ----------------------------------------------------------------------------- activations and math
_UNARY = {  # ONNX op -> the IR op computing the same function
    "Relu": Op.RELU, "Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "HardSwish": Op.HARDSWISH, "Mish": Op.MISH,
    "Erf": Op.ERF, "Exp": Op.EXP, "Log": Op.LOG, "Sqrt": Op.SQRT, "Abs": Op.ABS, "Neg": Op.NEG,
}


@converts(*_UNARY)
def unary(imp, n) -> None:
    """Relu, Sigmoid, Tanh, HardSwish, Mish, Erf, Exp, Log, Sqrt, Abs, Neg -> the IR op of the same name."""
    imp.emit(n, _UNARY[n.op_type], [imp.act(n.input[0], n)])


@converts("Gelu")
def gelu(imp, n) -> None:
    """Gelu(approximate) -> GELU(approximate)."""
    imp.emit(n, Op.GELU, [imp.act(n.input[0], n)], Gelu(imp.attr(n, "approximate", "none")))


@converts("LeakyRelu")
def leaky_relu(imp, n) -> None:
    """LeakyRelu(alpha) -> LEAKY_RELU(negative_slope=alpha)."""
    imp.emit(n, Op.LEAKY_RELU, [imp.act(n.input[0], n)], LeakyRelu(float(imp.attr(n, "alpha", 0.01))))


@converts("Elu")
def elu(imp, n) -> None:
    """Elu(alpha) -> ELU(alpha)."""
    imp.emit(n, Op.ELU, [imp.act(n.input[0], n)], Elu(float(imp.attr(n, "alpha", 1.0))))


@converts("Softplus")
def softplus(imp, n) -> None:
    """Softplus -> SOFTPLUS(beta 1, threshold 20) (above 20, log(1 + e^x) is x within 2e-9)."""
    imp.emit(n, Op.SOFTPLUS, [imp.act(n.input[0], n)], Softplus(1.0, 20.0))


@converts("PRelu")
def prelu(imp, n) -> None:
    """PRelu with a constant slope of one entry or one per channel (dim 1) -> PRELU."""
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    s = imp.const_input(n, 1, "slope", required=True)
    aligned = (1,) * (len(shape) - s.ndim) + s.shape
    if s.size != 1 and (len(aligned) != len(shape) or s.size != shape[1] or aligned[1] != shape[1]):
        imp.refuse(n, f"slope of shape {s.shape} is not one value per channel (dim 1)")
    imp.emit(n, Op.PRELU, [x], params={"weight": imp.add_param(n.input[1], s.reshape(-1), n, "weight")})


@converts("HardSigmoid")
def hard_sigmoid(imp, n) -> None:
    """HardSigmoid(alpha=1/6, beta=1/2) -> HARDSIGMOID; other alpha, beta -> MUL, ADD, CLAMP(0, 1)."""
    x = imp.act(n.input[0], n)
    alpha, beta = float(imp.attr(n, "alpha", 0.2)), float(imp.attr(n, "beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
        imp.emit(n, Op.HARDSIGMOID, [x])
        return
    shape = imp.shape(n.output[0])
    y = imp.emit(n, Op.MUL, [x], Scalar(alpha), name=imp.fresh(n, "mul"), shape=shape)
    y = imp.emit(n, Op.ADD, [y], Scalar(beta), name=imp.fresh(n, "add"), shape=shape)
    imp.emit(n, Op.CLAMP, [y], Clamp(0.0, 1.0))


@converts("Clip")
def clip(imp, n) -> None:
    """Clip(min, max) with constant bounds -> RELU6 for (0, 6), RELU for (0, none), CLAMP(lo, hi) otherwise."""
    x = imp.act(n.input[0], n)
    bounds = []
    for i in (1, 2):
        if i < len(n.input) and n.input[i]:
            v = _scalar(imp, n.input[i])
            if v is None:
                imp.refuse(n, f"bound '{n.input[i]}' is not a one-element constant")
            bounds.append(v)
        else:
            bounds.append(None)
    lo, hi = bounds
    if (lo, hi) == (0.0, 6.0):
        imp.emit(n, Op.RELU6, [x])
    elif (lo, hi) == (0.0, None):
        imp.emit(n, Op.RELU, [x])
    else:
        imp.emit(n, Op.CLAMP, [x], Clamp(lo, hi))


@converts("Max", "Min")
def min_max(imp, n) -> None:
    """Max/Min of an activation and a one-element constant -> CLAMP(lo=c) / CLAMP(hi=c) (Max with 0 -> RELU)."""
    acts = [i for i in n.input if not imp.is_const(i)]
    consts = [_scalar(imp, i) for i in n.input if imp.is_const(i)]
    if len(acts) != 1 or len(consts) != 1 or consts[0] is None or imp.shape(acts[0]) != imp.shape(n.output[0]):
        imp.refuse(n, "only the max/min of one activation and a one-element constant is mapped")
    x, c = imp.act(acts[0], n), consts[0]
    if n.op_type == "Max" and c == 0.0:
        imp.emit(n, Op.RELU, [x])
    else:
        imp.emit(n, Op.CLAMP, [x], Clamp(c, None) if n.op_type == "Max" else Clamp(None, c))


_ARITH = {"Add": Op.ADD, "Sub": Op.SUB, "Mul": Op.MUL, "Div": Op.DIV}


@converts(*_ARITH)
def arithmetic(imp, n) -> None:
    """Add/Sub/Mul/Div -> ADD/SUB/MUL/DIV: two activations of equal rank (numpy broadcasting); with a one-element
    constant a Scalar (reverse when it is the left operand); with a constant tensor a CONSTANT node operand."""
    op, (a, b) = _ARITH[n.op_type], n.input[:2]
    out = imp.shape(n.output[0])
    if not imp.is_const(a) and not imp.is_const(b):
        if len(imp.shape(a)) != len(imp.shape(b)):
            imp.refuse(n, f"operands of rank {len(imp.shape(a))} and {len(imp.shape(b))} (numpy would align the "
                          "batch of one with another dim of the other)")
        imp.emit(n, op, [imp.act(a, n), imp.act(b, n)])
        return
    if imp.is_const(a) and imp.is_const(b):  # pragma: no cover - folded by the importer
        imp.refuse(n, "both operands constant")
    c, x, reverse = (b, a, False) if imp.is_const(b) else (a, b, True)
    value = _scalar(imp, c)
    if value is not None and imp.shape(x) == out:
        imp.emit(n, op, [imp.act(x, n)], Scalar(value, reverse))
        return
    if len(imp.shape(x)) != len(out):
        imp.refuse(n, f"a constant of shape {imp.const(c).shape} raises the rank of {imp.shape(x)} to {out}")
    k = imp.constant(n, imp.const(c), len(out), c)
    imp.emit(n, op, [k, imp.act(x, n)] if reverse else [imp.act(x, n), k])


@converts("Pow")
def power(imp, n) -> None:
    """Pow(x, one-element constant p) -> POW Scalar(p); Pow(one-element constant c, x) -> POW Scalar(c, reverse)."""
    base, exp = n.input[0], n.input[1]
    if not imp.is_const(base) and _scalar(imp, exp) is not None:
        imp.emit(n, Op.POW, [imp.act(base, n)], Scalar(_scalar(imp, exp)))
    elif _scalar(imp, base) is not None and not imp.is_const(exp) and imp.shape(exp) == imp.shape(n.output[0]):
        imp.emit(n, Op.POW, [imp.act(exp, n)], Scalar(_scalar(imp, base), True))
    else:
        imp.refuse(n, "only a power with a one-element constant base or exponent is mapped")


@converts("Reciprocal")
def reciprocal(imp, n) -> None:
    """Reciprocal -> DIV Scalar(1, reverse): 1 / x."""
    imp.emit(n, Op.DIV, [imp.act(n.input[0], n)], Scalar(1.0, True))


@converts("Softmax", "LogSoftmax")
def softmax(imp, n) -> None:
    """Softmax/LogSoftmax along a non-batch axis (opset >= 13: one axis) -> SOFTMAX(dim, log)."""
    rank = len(imp.shape(n.input[0]))
    dim = imp.axis(n, imp.attr(n, "axis", -1), rank)
    imp.emit(n, Op.SOFTMAX, [imp.act(n.input[0], n)], Softmax(dim, n.op_type == "LogSoftmax"))


# ----------------------------------------------------------------------------- normalisation
@converts("LayerNormalization")
def layernorm(imp, n) -> None:
    """LayerNormalization over the dims from axis (> 0) with constant scale, bias -> LAYERNORM (scale and bias
    broadcast to the normalized shape)."""
    if any(o for o in n.output[1:]):
        imp.refuse(n, "its Mean / InvStdDev outputs are used")
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    axis = imp.axis(n, imp.attr(n, "axis", -1), len(shape))
    norm = shape[axis:]
    params = {}
    for i, role in ((1, "gamma"), (2, "beta")):
        v = imp.const_input(n, i, "scale" if i == 1 else "bias", required=(i == 1))
        if v is not None:
            params[role] = imp.add_param(n.input[i], np.broadcast_to(v, norm), n, role)
    imp.emit(n, Op.LAYERNORM, [x], LayerNorm(tuple(norm), float(imp.attr(n, "epsilon", 1e-5))), params)


@converts("InstanceNormalization", "GroupNormalization")
def groupnorm(imp, n) -> None:
    """InstanceNormalization -> GROUPNORM(groups = channels); GroupNormalization(num_groups) -> GROUPNORM (opsets
    18-20 give scale and bias per group: repeated over each group's channels)."""
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    c = shape[1]
    groups = c if n.op_type == "InstanceNormalization" else int(imp.attr(n, "num_groups"))
    if groups <= 0 or c % groups:
        imp.refuse(n, f"{groups} groups do not divide {c} channels")
    params = {}
    for i, role in ((1, "gamma"), (2, "beta")):
        v = imp.const_input(n, i, role, required=True).reshape(-1)
        if v.size == groups and groups != c and n.op_type == "GroupNormalization" and imp.opset() < 21:
            v = np.repeat(v, c // groups)
        if v.size != c:
            imp.refuse(n, f"{role} has {v.size} entries for {c} channels")
        params[role] = imp.add_param(n.input[i], v, n, role)
    imp.emit(n, Op.GROUPNORM, [x], GroupNorm(groups, float(imp.attr(n, "epsilon", 1e-5))), params)


# ----------------------------------------------------------------------------- data movement
@converts("Identity", "Dropout")
def identity(imp, n) -> None:
    """Identity, and Dropout at inference -> no node: the output is the input's IR value."""
    if n.op_type == "Dropout" and (_scalar(imp, n.input[2]) if len(n.input) > 2 and n.input[2] else 0.0):
        imp.refuse(n, "training mode")
    if len(n.output) > 1 and n.output[1] and imp.consumers(n.output[1]):
        imp.refuse(n, "its mask output is used")
    imp.alias(n, n.input[0])


@converts("Cast")
def cast(imp, n) -> None:
    """Cast of a float32 activation to float32 -> no node; any other cast of an activation is refused."""
    if int(imp.attr(n, "to", 0)) != 1 or imp.values[n.input[0]].dtype != np.float32:
        imp.refuse(n, "casts an activation to another type (hwsim's IR computes float32)")
    imp.alias(n, n.input[0])


@converts("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(imp, n) -> None:
    """Reshape/Flatten/Squeeze/Unsqueeze keeping the batch first -> RESHAPE to the output's shape; one that merges
    the batch into another dim (or moves it) is refused."""
    src, out = imp.shape(n.input[0]), imp.shape(n.output[0])
    if out[0] != src[0]:
        imp.refuse(n, f"reshapes {src} to {out}, merging the batch into another dim (hwsim keeps the batch first)")
    if n.op_type in ("Squeeze", "Unsqueeze"):
        axes = imp.const_input(n, 1, "axes")
        axes = imp.attr(n, "axes", []) if axes is None else axes.tolist()
        rank = len(out) if n.op_type == "Unsqueeze" else len(src)
        if any(int(a) % rank == 0 for a in axes) or (n.op_type == "Squeeze" and not axes and src[0] == 1):
            imp.refuse(n, "squeezes or unsqueezes the batch dimension")
    imp.emit(n, Op.RESHAPE, [imp.act(n.input[0], n)], Reshape(out[1:]))


@converts("Transpose")
def transpose(imp, n) -> None:
    """Transpose keeping dim 0 first -> PERMUTE(perm); one that moves the batch is refused."""
    rank = len(imp.shape(n.input[0]))
    perm = tuple(int(p) for p in imp.attr(n, "perm", list(range(rank))[::-1]))
    if perm[0] != 0:
        imp.refuse(n, f"perm {perm} moves the batch dimension")
    imp.emit(n, Op.PERMUTE, [imp.act(n.input[0], n)], Permute(perm))


@converts("Concat")
def concat(imp, n) -> None:
    """Concat along a non-batch axis -> CONCAT (constant inputs become CONSTANT nodes; empty ones are dropped)."""
    rank = len(imp.shape(n.output[0]))
    dim = imp.axis(n, imp.attr(n, "axis"), rank)
    ins = [imp.operand(i, n, rank) for i in n.input if i and imp.values[i].size]
    imp.emit(n, Op.CONCAT, ins, Concat(dim))


@converts("Split")
def split(imp, n) -> None:
    """Split along a non-batch axis -> one SLICE per output (the sizes are the outputs' own)."""
    x, rank = imp.act(n.input[0], n), len(imp.shape(n.input[0]))
    dim = imp.axis(n, imp.attr(n, "axis", 0), rank)
    start = 0
    for o in n.output:
        size = imp.shape(o)[dim] if o else 0
        if o:
            imp.emit(n, Op.SLICE, [x], Slice(dim, start, start + size), name=o)
        start += size


@converts("Slice")
def slice_(imp, n) -> None:
    """Slice with constant starts/ends/axes/steps -> one SLICE per non-batch axis it cuts (positive steps); the batch
    axis only in full; a slice that cuts nothing -> no node."""
    shape = list(imp.shape(n.input[0]))
    starts = imp.const_input(n, 1, "starts", required=True).tolist()
    ends = imp.const_input(n, 2, "ends", required=True).tolist()
    axes = imp.const_input(n, 3, "axes", np.arange(len(starts))).tolist()
    steps = imp.const_input(n, 4, "steps", np.ones(len(starts), np.int64)).tolist()
    cuts = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % len(shape)
        if st <= 0:
            imp.refuse(n, f"step {st} (only positive steps are mapped)")
        lo, hi, st = slice(int(s), int(e), int(st)).indices(shape[a])
        if (lo, hi, st) == (0, shape[a], 1):
            continue
        if a == 0:
            imp.refuse(n, "slices the batch dimension")
        if len(range(lo, hi, st)) == 0:
            imp.refuse(n, "an empty slice")
        cuts.append((a, lo, hi, st))
    if not cuts:
        imp.alias(n, n.input[0])
        return
    x = imp.act(n.input[0], n)
    for i, (a, lo, hi, st) in enumerate(cuts):
        shape[a] = len(range(lo, hi, st))
        last = i == len(cuts) - 1
        x = imp.emit(n, Op.SLICE, [x], Slice(a, lo, hi, st), name=None if last else imp.fresh(n, "slice"),
                     shape=None if last else tuple(shape))


@converts("Gather")
def gather(imp, n) -> None:
    """Gather with constant indices along a non-batch axis: a scalar index -> SLICE of one then RESHAPE dropping the
    axis (``x[:, i]``); 1-D indices forming an increasing evenly spaced run -> SLICE(start, stop, step)."""
    shape = imp.shape(n.input[0])
    axis = imp.axis(n, imp.attr(n, "axis", 0), len(shape))
    idx = imp.const_input(n, 1, "indices", required=True).astype(np.int64)
    flat = [int(i) % shape[axis] for i in idx.reshape(-1)]
    step = flat[1] - flat[0] if len(flat) > 1 else 1
    if idx.ndim > 1 or not flat or step <= 0 or flat != list(range(flat[0], flat[0] + step * len(flat), step)):
        imp.refuse(n, f"indices of shape {idx.shape} that are not one index or an increasing evenly spaced run")
    x = imp.act(n.input[0], n)
    cut = Slice(axis, flat[0], flat[-1] + 1, step)
    if idx.ndim == 1:
        imp.emit(n, Op.SLICE, [x], cut)
        return
    kept = shape[:axis] + (1,) + shape[axis + 1:]
    y = imp.emit(n, Op.SLICE, [x], cut, name=imp.fresh(n, "slice"), shape=kept)
    imp.emit(n, Op.RESHAPE, [y], Reshape(imp.shape(n.output[0])[1:]))


@converts("Pad")
def pad(imp, n) -> None:
    """Pad in mode constant with constant pads (none on the batch), value and axes -> PAD."""
    if imp.attr(n, "mode", "constant") != "constant":
        imp.refuse(n, f"mode {imp.attr(n, 'mode')!r} (constant padding is mapped)")
    shape = imp.shape(n.input[0])
    rank = len(shape)
    p = [int(v) for v in imp.const_input(n, 1, "pads", required=True).reshape(-1)]
    value = imp.const_input(n, 2, "value", np.zeros(1))
    axes = [int(a) % rank for a in imp.const_input(n, 3, "axes", np.arange(rank)).reshape(-1)]
    if value.size != 1 or len(p) != 2 * len(axes):
        imp.refuse(n, f"pads {p} / value of shape {value.shape} do not match its {len(axes)} axes")
    pads = [(0, 0)] * rank
    for i, a in enumerate(axes):
        pads[a] = (p[i], p[i + len(axes)])
    if pads[0] != (0, 0):
        imp.refuse(n, "pads the batch dimension")
    imp.emit(n, Op.PAD, [imp.act(n.input[0], n)], Pad(tuple(pads), float(value.reshape(()))))


# ----------------------------------------------------------------------------- pooling, reductions, resizing
def _pool(imp, n) -> Pool:
    kernel, strides, dil = _window(imp, n, "pool")
    if len(imp.shape(n.input[0])) != 4:
        imp.refuse(n, "pooling of a tensor that is not NCHW")
    t, left, bottom, right = _pads2d(imp, n, imp.shape(n.input[0])[2:], kernel, strides, dil)
    if (t, left) != (bottom, right):
        imp.refuse(n, f"asymmetric pads {(t, left, bottom, right)}")
    return Pool(kernel, strides, (t, left), dil, bool(imp.attr(n, "ceil_mode", 0)),
                bool(imp.attr(n, "count_include_pad", 0)))


@converts("MaxPool")
def maxpool(imp, n) -> None:
    """MaxPool 2-D with symmetric pads -> MAXPOOL (the Indices output is refused)."""
    if len(n.output) > 1 and n.output[1] and imp.consumers(n.output[1]):
        imp.refuse(n, "its Indices output is used")
    imp.emit(n, Op.MAXPOOL, [imp.act(n.input[0], n)], _pool(imp, n))


@converts("AveragePool")
def avgpool(imp, n) -> None:
    """AveragePool 2-D with symmetric pads, no dilation -> AVGPOOL (count_include_pad as given)."""
    p = _pool(imp, n)
    if p.dilation != (1, 1):
        imp.refuse(n, "dilated average pooling")
    imp.emit(n, Op.AVGPOOL, [imp.act(n.input[0], n)], p)


@converts("GlobalAveragePool", "GlobalMaxPool")
def global_pool(imp, n) -> None:
    """GlobalAveragePool of NCHW -> ADAPTIVE_AVGPOOL to 1x1; of other ranks -> REDUCE_MEAN; GlobalMaxPool ->
    REDUCE_MAX over the spatial dims, keeping them."""
    rank = len(imp.shape(n.input[0]))
    x = imp.act(n.input[0], n)
    if n.op_type == "GlobalAveragePool" and rank == 4:
        imp.emit(n, Op.ADAPTIVE_AVGPOOL, [x], AdaptivePool((1, 1)))
    else:
        op = Op.REDUCE_MEAN if n.op_type == "GlobalAveragePool" else Op.REDUCE_MAX
        imp.emit(n, op, [x], Reduce(tuple(range(2, rank)), True))


_REDUCE = {"ReduceMean": Op.REDUCE_MEAN, "ReduceSum": Op.REDUCE_SUM, "ReduceMax": Op.REDUCE_MAX}


@converts(*_REDUCE)
def reduce(imp, n) -> None:
    """ReduceMean/Sum/Max over constant non-batch axes -> REDUCE_MEAN/SUM/MAX(dims, keepdim); ReduceMean over H, W of
    NCHW keeping dims -> ADAPTIVE_AVGPOOL to 1x1 (the same function, the op hwsim's targets know)."""
    rank = len(imp.shape(n.input[0]))
    axes = imp.const_input(n, 1, "axes")
    axes = imp.attr(n, "axes", []) if axes is None else axes.reshape(-1).tolist()
    x = imp.act(n.input[0], n)
    if not axes:
        if imp.attr(n, "noop_with_empty_axes", 0):
            imp.alias(n, n.input[0])
            return
        imp.refuse(n, "reduces over every dim, the batch included")
    dims = tuple(sorted({imp.axis(n, a, rank, "reduced axis") for a in axes}))
    keep = bool(imp.attr(n, "keepdims", 1))
    if n.op_type == "ReduceMean" and rank == 4 and dims == (2, 3) and keep:
        imp.emit(n, Op.ADAPTIVE_AVGPOOL, [x], AdaptivePool((1, 1)))
    else:
        imp.emit(n, _REDUCE[n.op_type], [x], Reduce(dims, keep))


@converts("Resize")
def resize(imp, n) -> None:
    """Resize of H, W of NCHW -> UPSAMPLE to the output's size: mode nearest with coordinates asymmetric and
    nearest_mode floor (torch's nearest); linear with half_pixel / pytorch_half_pixel (bilinear) or align_corners."""
    src, out = imp.shape(n.input[0]), imp.shape(n.output[0])
    if len(src) != 4 or src[:2] != out[:2]:
        imp.refuse(n, f"resizes {src} to {out} (hwsim resizes H, W of NCHW)")
    mode = imp.attr(n, "mode", "nearest")
    coords = imp.attr(n, "coordinate_transformation_mode", "half_pixel")
    if imp.attr(n, "antialias", 0) or imp.attr(n, "exclude_outside", 0):
        imp.refuse(n, "antialias / exclude_outside")
    if mode == "nearest" and coords == "asymmetric" and imp.attr(n, "nearest_mode", "round_prefer_floor") == "floor":
        attrs = Upsample(out[2:], "nearest")
    elif mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        attrs = Upsample(out[2:], "bilinear", coords == "align_corners")
    else:
        imp.refuse(n, f"mode {mode!r} with coordinate_transformation_mode {coords!r} (hwsim maps torch's nearest "
                      "and bilinear)")
    imp.emit(n, Op.UPSAMPLE, [imp.act(n.input[0], n)], attrs)


# ----------------------------------------------------------------------------- patterns
_SQRT2 = math.sqrt(2.0)


def _only_user(imp, name: str, op_type: str):
    users = imp.consumers(name)
    if len(users) == 1 and name not in imp.graph_outputs and users[0].op_type == op_type:
        return users[0]
    return None


def _split_scalar(imp, node):
    """(activation operand, value of the one-element constant operand, its index) of a binary node, else None."""
    for i in (0, 1):
        v = _scalar(imp, node.input[i])
        if v is not None and not imp.is_const(node.input[1 - i]):
            return node.input[1 - i], v, i
    return None


def _match_gelu(imp, erf):
    """The nodes of ``x * 0.5 * (1 + erf(x / sqrt 2))`` around ``erf`` (any association of the two products):
    (x, the nodes, the last node), else None."""
    d = imp.producer(erf.input[0])
    s = _split_scalar(imp, d) if d is not None and d.op_type in ("Div", "Mul") else None
    if s is None or _only_user(imp, d.output[0], "Erf") is not erf:
        return None
    x, c, i = s
    if not ((d.op_type == "Div" and i == 1 and abs(c - _SQRT2) < 1e-4)
            or (d.op_type == "Mul" and abs(c - 1 / _SQRT2) < 1e-4)):
        return None
    add = _only_user(imp, erf.output[0], "Add")
    s = _split_scalar(imp, add) if add is not None else None
    m1 = _only_user(imp, add.output[0], "Mul") if s is not None and abs(s[1] - 1.0) < 1e-6 else None
    if m1 is None:
        return None
    other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
    half = _split_scalar(imp, m1)
    if other == x:  # (x * (1 + erf)) * 0.5
        m2 = _only_user(imp, m1.output[0], "Mul")
        s = _split_scalar(imp, m2) if m2 is not None else None
        return (x, [d, erf, add, m1, m2], m2) if s is not None and abs(s[1] - 0.5) < 1e-6 else None
    if half is not None and abs(half[1] - 0.5) < 1e-6:  # x * ((1 + erf) * 0.5)
        m2 = _only_user(imp, m1.output[0], "Mul")
        ok = m2 is not None and sorted(m2.input) == sorted([x, m1.output[0]])
        return (x, [d, erf, add, m1, m2], m2) if ok else None
    h = imp.producer(other)  # (x * 0.5) * (1 + erf)
    s = _split_scalar(imp, h) if h is not None and h.op_type == "Mul" else None
    if s is not None and s[0] == x and abs(s[1] - 0.5) < 1e-6 and _only_user(imp, h.output[0], "Mul") is m1:
        return x, [h, d, erf, add, m1], m1
    return None


def _gelu_patterns(imp) -> None:
    """Erf-form GELU, ``x * 0.5 * (1 + Erf(x / sqrt 2))`` (torch's export before opset 20) -> one GELU node, named by
    the last product, emitted where the pattern's first node was."""
    order = {id(m): k for k, m in enumerate(imp.onnx_nodes)}
    for erf in imp.onnx_nodes:
        if erf.op_type != "Erf" or erf.domain not in ("", "ai.onnx") or id(erf) in imp.overrides:
            continue
        m = _match_gelu(imp, erf)
        if m is None:
            continue
        x, nodes, last = m
        first = min(nodes, key=lambda k: order[id(k)])
        imp.absorb(*(k for k in nodes if k is not first))
        imp.overrides[id(first)] = lambda imp, n, x=x, last=last: imp.emit(
            n, Op.GELU, [imp.act(x, n)], Gelu("none"), name=last.output[0])


def _softplus_patterns(imp) -> None:
    """torch's thresholded softplus, ``Where(Greater(x, t), x, Softplus(x))`` (the dynamo export of F.softplus) ->
    one SOFTPLUS(beta 1, threshold t), named by the Where."""
    order = {id(m): k for k, m in enumerate(imp.onnx_nodes)}
    for w in imp.onnx_nodes:
        if w.op_type != "Where" or w.domain not in ("", "ai.onnx") or len(w.input) != 3:
            continue
        gt, sp = imp.producer(w.input[0]), imp.producer(w.input[2])
        if gt is None or sp is None or gt.op_type != "Greater" or sp.op_type != "Softplus":
            continue
        x = w.input[1]
        t = _scalar(imp, gt.input[1])
        if (t is None or gt.input[0] != x or sp.input[0] != x or _only_user(imp, gt.output[0], "Where") is not w
                or _only_user(imp, sp.output[0], "Where") is not w or id(gt) in imp.overrides
                or id(sp) in imp.overrides):
            continue
        first, second = sorted((gt, sp), key=lambda k: order[id(k)])
        imp.absorb(second, w)
        imp.overrides[id(first)] = lambda imp, n, x=x, t=t, w=w: imp.emit(
            n, Op.SOFTPLUS, [imp.act(x, n)], Softplus(1.0, t), name=w.output[0])


PATTERNS = (_gelu_patterns, _softplus_patterns)
