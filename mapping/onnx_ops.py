"""The standard ONNX ops (opsets 13-21) as IR nodes: layers with weights, activations and math, normalisation; one
converter per op, whose docstring states its rule. Data movement and shape ops are in ``mapping.onnx_moves``,
pooling, reductions and resizing in ``mapping.onnx_pools`` (their converters join :data:`CONVERTERS`, the table
the importer reads), multi-node patterns in ``mapping.onnx_patterns``.

A converter ``fn(importer, node)`` reads operands through :class:`mapping.onnx_importer.Importer` and emits IR
nodes named by the node's outputs. Every IR value's first dim is the batch: an op along it is refused. With batch
1, a value whose ONNX first dim is not the batch carries a leading unit dim; axes translate by its offset
(:meth:`~mapping.onnx_importer.Importer.dim`), and ops that read dim 1 as channels (conv, pooling, batch and group
norm, PRelu, resize) need a batch-first operand. Operands computed only from constants were folded by the
importer; weights, biases, axes, pads and exponents must be such constants. Output shapes are the source's (read
from its run, with the unit dim where it applies); only helper nodes get computed ones.
"""
from __future__ import annotations

import numpy as np

from hwsim.errors import UnsupportedOpError
from mapping._conv_transpose import conv_transpose_attrs
from mapping.graph import (
    BatchNorm,
    Clamp,
    Conv2d,
    Elu,
    Gelu,
    GroupNorm,
    LayerNorm,
    LeakyRelu,
    Linear,
    Op,
    Pad,
    Permute,
    Scalar,
    Softmax,
    Softplus,
)
from mapping.onnx_1d import conv1d
from mapping.onnx_3d import conv3d
from mapping.onnx_extra import CONVERTERS as _EXTRA
from mapping.onnx_importer import registrar
from mapping.onnx_masks import CONVERTERS as _MASKS
from mapping.onnx_moves import CONVERTERS as _MOVES
from mapping.onnx_pools import CONVERTERS as _POOLS
from mapping.onnx_pools import pads2d
from mapping.onnx_rnn import CONVERTERS as _RNN
from mapping.qonnx import weight_meta

__all__ = ["CONVERTERS"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)


# ----------------------------------------------------------------------------- layers with weights
@converts("Conv")
def conv(imp, n) -> None:
    """Conv with a constant 4-D weight -> CONV2D; asymmetric pads -> PAD, then CONV2D without padding; a 3-D weight
    -> :func:`mapping.onnx_1d.conv1d`; a 5-D weight -> :func:`mapping.onnx_3d.conv3d`."""
    w = imp.const_input(n, 1, "weight", required=True)
    if w.ndim in (3, 5):
        return (conv1d if w.ndim == 3 else conv3d)(imp, n, w, weight_meta(imp, n.input[1]))
    if w.ndim != 4:
        imp.refuse(n, f"{w.ndim - 2}-D convolution (hwsim maps 1-D, 2-D and 3-D convolutions)")
    imp.batched(n, n.input[0])
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    b = imp.const_input(n, 2, "bias")
    group = int(imp.attr(n, "group", 1))
    kernel = (int(w.shape[2]), int(w.shape[3]))
    strides = tuple(int(s) for s in imp.attr(n, "strides", [1, 1]))
    dil = tuple(int(d) for d in imp.attr(n, "dilations", [1, 1]))
    t, left, bottom, right = pads2d(imp, n, shape[2:], kernel, strides, dil)
    if (t, left) != (bottom, right):
        x = _pad_node(imp, n, x, shape, ((0, 0), (0, 0), (t, bottom), (left, right)), 0.0)
        t = left = 0
    params = {"weight": imp.add_param(n.input[1], w, n, "weight")}
    if b is not None:
        params["bias"] = imp.add_param(n.input[2], b, n, "bias")
    attrs = Conv2d(int(w.shape[1]) * group, int(w.shape[0]), kernel, strides, (t, left), dil, group, b is not None)
    imp.emit(n, Op.CONV2D, [x], attrs, params, weight_meta(imp, n.input[1]))


@converts("ConvTranspose")
def conv_transpose(imp, n) -> None:
    """ConvTranspose with a constant 4-D weight (Cin, Cout/group, kh, kw) -> CONV_TRANSPOSE2D: ``pads`` crop the output
    (symmetric only), ``output_padding`` extends it at the end; ``auto_pad`` SAME_* only where its total padding
    ``s·(H − 1) + op + d·(k − 1) + 1 − s·H`` is even and >= 0 (then UPPER and LOWER agree); ``output_shape`` is
    refused (an ONNX-computed padding split)."""
    w = imp.const_input(n, 1, "weight", required=True)
    if w.ndim != 4:
        imp.refuse(n, f"{w.ndim - 2}-D transposed convolution (hwsim maps 2-D convolutions on NCHW)")
    if imp.attr(n, "output_shape", None) is not None:
        imp.refuse(n, "output_shape (give pads and output_padding instead)")
    imp.batched(n, n.input[0])
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    kernel = (int(w.shape[2]), int(w.shape[3]))
    if tuple(int(k) for k in imp.attr(n, "kernel_shape", kernel)) != kernel:
        imp.refuse(n, f"kernel_shape {imp.attr(n, 'kernel_shape', None)} differs from the weight's {kernel}")
    strides = tuple(int(s) for s in imp.attr(n, "strides", [1, 1]))
    dil = tuple(int(d) for d in imp.attr(n, "dilations", [1, 1]))
    out_pad = tuple(int(p) for p in imp.attr(n, "output_padding", [0, 0]))
    auto = imp.attr(n, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [out_pad[i] + dil[i] * (kernel[i] - 1) + 1 - strides[i] for i in range(2)]
        if any(t < 0 or t % 2 for t in total):
            imp.refuse(n, f"auto_pad {auto} with total padding {total} (only an even split is supported)")
        pads = [total[0] // 2, total[1] // 2] * 2
    elif auto in ("NOTSET", "", "VALID"):
        pads = [int(v) for v in imp.attr(n, "pads", [0, 0, 0, 0])] if auto != "VALID" else [0, 0, 0, 0]
    else:
        imp.refuse(n, f"auto_pad {auto!r}")
    if (pads[0], pads[1]) != (pads[2], pads[3]):
        imp.refuse(n, f"asymmetric pads {pads} (only symmetric output crops)")
    b = imp.const_input(n, 2, "bias")
    try:
        attrs = conv_transpose_attrs(w.shape, strides, pads[:2], out_pad, dil, imp.attr(n, "group", 1), b is not None,
                                     int(shape[1]), "attributes")
    except UnsupportedOpError as e:
        imp.refuse(n, str(e))
    out = tuple(imp.out_shape(n, n.output[0])[2:])
    if attrs.out_hw(tuple(shape[2:])) != out:
        imp.refuse(n, f"output size {out} is not the size {attrs.out_hw(tuple(shape[2:]))} its attributes give")
    params = {"weight": imp.add_param(n.input[1], w, n, "weight")}
    if b is not None:
        params["bias"] = imp.add_param(n.input[2], b, n, "bias")
    imp.emit(n, Op.CONV_TRANSPOSE2D, [x], attrs, params, weight_meta(imp, n.input[1]))


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
        _matmul2(imp, n, a, b)
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


def _matmul2(imp, n, a: str, b: str) -> None:
    """MATMUL of two activations of IR rank >= 3 (leading dims broadcast; with batch 1 the IR shapes broadcast and
    the product is viewed as the output's IR shape)."""
    if imp.is_const(a):
        imp.refuse(n, "a constant left operand of a product with an activation")
    sa, sb = imp.ishape(a), imp.ishape(b)
    if len(sa) < 3 or len(sb) < 3:
        imp.refuse(n, "product of two activations of rank < 3 (the batch would be a matrix dim)")
    if imp.batch != 1:
        imp.emit(n, Op.MATMUL, [imp.act(a, n), imp.act(b, n)])
        return
    natural = tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])
    imp.emit_as(n, Op.MATMUL, [imp.act(a, n), imp.act(b, n)], None, natural)


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
    """BatchNormalization at inference with constant scale, bias, mean, var -> BATCHNORM along dim 1. With batch 1, of
    a value whose first dim is not the batch (LeViT's ``bn(x.flatten(0, 1))``): PERMUTE its channels to IR dim 1,
    BATCHNORM, PERMUTE back."""
    if imp.attr(n, "training_mode", 0) or any(o for o in n.output[1:]):
        imp.refuse(n, "training mode (running statistics outputs)")
    x, shape = imp.act(n.input[0], n), imp.shape(n.input[0])
    roles = ("gamma", "beta", "mean", "var")
    vals = [imp.const_input(n, i + 1, r, required=True) for i, r in enumerate(roles)]
    if len(shape) < 2 or any(v.size != shape[1] for v in vals):
        imp.refuse(n, f"parameters do not match the {shape[1] if len(shape) > 1 else 0} channels of its input")
    params = {r: imp.add_param(n.input[i + 1], v.reshape(-1), n, r) for i, (r, v) in enumerate(zip(roles, vals))}
    attrs = BatchNorm(shape[1], float(imp.attr(n, "epsilon", 1e-5)))
    if not imp.offset(n.input[0]):
        imp.emit(n, Op.BATCHNORM, [x], attrs, params)
        return
    ir = imp.shapes[x]  # (1, M, C, ...): channels on IR dim 2
    perm = (0, 2, 1) + tuple(range(3, len(ir)))
    cf = tuple(ir[p] for p in perm)
    t = imp.emit(n, Op.PERMUTE, [x], Permute(perm), name=imp.fresh(n, "cf"), shape=cf)
    y = imp.emit(n, Op.BATCHNORM, [t], attrs, params, name=imp.fresh(n, "bn"), shape=cf)
    imp.emit(n, Op.PERMUTE, [y], Permute(perm))


# ----------------------------------------------------------------------------- activations and math
_UNARY = {  # ONNX op -> the IR op computing the same function
    "Relu": Op.RELU, "Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "HardSwish": Op.HARDSWISH, "Mish": Op.MISH,
    "Erf": Op.ERF, "Exp": Op.EXP, "Log": Op.LOG, "Sqrt": Op.SQRT, "Abs": Op.ABS, "Neg": Op.NEG,
    "Round": Op.ROUND, "Floor": Op.FLOOR, "Ceil": Op.CEIL,  # ONNX Round: half to even, as torch.round
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
    if s.size != 1:
        imp.batched(n, n.input[0])
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
    shape = imp.shapes[x]
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
            v = imp.scalar(n.input[i])
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
    consts = [imp.scalar(i) for i in n.input if imp.is_const(i)]
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
    constant a Scalar (reverse when it is the left operand); with a constant tensor a CONSTANT node operand. With
    batch 1 the operands' IR shapes broadcast (a leading unit dim broadcasts as numpy's does) and the result is
    viewed as the output's IR shape; operands of different ranks are then fine."""
    op, (a, b) = _ARITH[n.op_type], n.input[:2]
    out = imp.shape(n.output[0])
    if imp.is_const(a) and imp.is_const(b):  # pragma: no cover - folded by the importer
        imp.refuse(n, "both operands constant")
    if not imp.is_const(a) and not imp.is_const(b):
        if imp.batch != 1 and len(imp.shape(a)) != len(imp.shape(b)):
            imp.refuse(n, f"operands of rank {len(imp.shape(a))} and {len(imp.shape(b))} (numpy would align the "
                          "batch of one with another dim of the other)")
        ins = [imp.act(a, n), imp.act(b, n)]
    else:
        c, x, reverse = (b, a, False) if imp.is_const(b) else (a, b, True)
        value = imp.scalar(c)
        if value is not None and imp.shape(x) == out:
            imp.emit(n, op, [imp.act(x, n)], Scalar(value, reverse))
            return
        if imp.batch != 1 and len(imp.shape(x)) != len(out):
            imp.refuse(n, f"a constant of shape {imp.const(c).shape} raises the rank of {imp.shape(x)} to {out}")
        k = imp.constant(n, imp.const(c), len(out), c)
        ins = [k, imp.act(x, n)] if reverse else [imp.act(x, n), k]
    imp.emit_as(n, op, ins, None, tuple(np.broadcast_shapes(*(imp.shapes[i] for i in ins))))


@converts("Pow")
def power(imp, n) -> None:
    """Pow(x, one-element constant p) -> POW Scalar(p); Pow(one-element constant c, x) -> POW Scalar(c, reverse)."""
    base, exp = n.input[0], n.input[1]
    if not imp.is_const(base) and imp.scalar(exp) is not None:
        imp.emit(n, Op.POW, [imp.act(base, n)], Scalar(imp.scalar(exp)))
    elif imp.scalar(base) is not None and not imp.is_const(exp) and imp.shape(exp) == imp.shape(n.output[0]):
        imp.emit(n, Op.POW, [imp.act(exp, n)], Scalar(imp.scalar(base), True))
    else:
        imp.refuse(n, "only a power with a one-element constant base or exponent is mapped")


@converts("Reciprocal")
def reciprocal(imp, n) -> None:
    """Reciprocal -> DIV Scalar(1, reverse): 1 / x."""
    imp.emit(n, Op.DIV, [imp.act(n.input[0], n)], Scalar(1.0, True))


@converts("Softmax", "LogSoftmax")
def softmax(imp, n) -> None:
    """Softmax/LogSoftmax along a non-batch axis (opset >= 13: one axis) -> SOFTMAX(dim, log)."""
    dim = imp.dim(n, n.input[0], imp.attr(n, "axis", -1))
    imp.emit(n, Op.SOFTMAX, [imp.act(n.input[0], n)], Softmax(dim, n.op_type == "LogSoftmax"))


# ----------------------------------------------------------------------------- normalisation
@converts("LayerNormalization")
def layernorm(imp, n) -> None:
    """LayerNormalization over the dims from axis (> 0) with constant scale, bias -> LAYERNORM (scale and bias
    broadcast to the normalized shape)."""
    if any(o for o in n.output[1:]):
        imp.refuse(n, "its Mean / InvStdDev outputs are used")
    x = imp.act(n.input[0], n)
    norm = imp.shapes[x][imp.dim(n, n.input[0], imp.attr(n, "axis", -1)):]
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
    imp.batched(n, n.input[0])
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


CONVERTERS.update(_MOVES)
CONVERTERS.update(_POOLS)
CONVERTERS.update(_MASKS)
CONVERTERS.update(_EXTRA)
CONVERTERS.update(_RNN)
