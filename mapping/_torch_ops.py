"""torch functions, tensor methods and ATen ops -> IR nodes (the handlers of :class:`mapping._builder.Builder`).

One handler per operation, shared by its functional form (``F.max_pool2d``), its method form (``x.mean``), its
operator form (``x @ y``) and its ATen op (``aten.max_pool2d``, from ``torch.export``): their positional arguments
come in the same order, so :func:`arg` reads them alike. Anything not listed here is refused with the op and its
module path. Data movement lives in :mod:`mapping._torch_moves`, ``torch.einsum`` in :mod:`mapping._torch_einsum`,
ops made of several IR ops (instance norm, var, addcmul, ...) in :mod:`mapping._torch_composite`.
"""
from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_1d import conv1d_function, one_d_functions
from mapping._torch_3d import conv3d_function, three_d_functions
from mapping._torch_composite import composite
from mapping._torch_einsum import einsum
from mapping._torch_mask import masks
from mapping._torch_moves import MISSING as _MISSING
from mapping._torch_moves import Handler, _first_only, _inplace, _pair, _x, arg, moves
from mapping._trace_modules import conv_transpose_function
from mapping.graph import (
    AdaptivePool,
    Attention,
    BatchNorm,
    Clamp,
    Conv2d,
    Elu,
    Gelu,
    GroupNorm,
    LayerNorm,
    LeakyRelu,
    Linear,
    NoAttrs,
    Op,
    Pool,
    Reduce,
    Reshape,
    Scalar,
    Softmax,
    Softplus,
)

__all__ = ["handle"]

# ---------------------------------------------------------------------------------------------- elementwise
def _unary(op: Op, attrs: Callable[[fx.Node], object] | None = None) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        b.emit(n, op, [_x(b, n)], attrs(n) if attrs else NoAttrs(), meta=_inplace(n))
    return h


def _hardtanh(b: Builder, n: fx.Node) -> None:
    lo, hi = float(arg(n, 1, "min_val", -1.0)), float(arg(n, 2, "max_val", 1.0))
    if (lo, hi) == (0.0, 6.0):
        b.emit(n, Op.RELU6, [_x(b, n)], meta=_inplace(n))
    else:
        b.emit(n, Op.CLAMP, [_x(b, n)], Clamp(lo, hi), meta=_inplace(n))


def _clamp(lo_default, hi_default) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        lo = arg(n, 1, "min", lo_default) if lo_default is not _MISSING else None
        hi = arg(n, 2 if lo_default is not _MISSING else 1, "max", hi_default) if hi_default is not _MISSING else None
        if any(isinstance(v, fx.Node) for v in (lo, hi)):
            raise UnsupportedOpError(f"{b.what(n)} with tensor bounds")
        b.emit(n, Op.CLAMP, [_x(b, n)], Clamp(None if lo is None else float(lo), None if hi is None else float(hi)),
               meta=_inplace(n))
    return h


def _prelu(b: Builder, n: fx.Node) -> None:
    params = {"weight": b.param(arg(n, 1, "weight"), n, "weight")}
    if b.offset(n.args[0]) == 1 and b.val(arg(n, 1, "weight")).numel() > 1:  # channels behind a merged batch
        from mapping.trace import channel_last
        channel_last(b, n, Op.PRELU, _x(b, n), NoAttrs(), params, {}, "")
        return
    b.emit(n, Op.PRELU, [_x(b, n)], params=params)


def _elu(b: Builder, n: fx.Node) -> None:
    if float(arg(n, 2, "scale", 1.0)) != 1.0 or float(arg(n, 3, "input_scale", 1.0)) != 1.0:
        raise UnsupportedOpError(f"{b.what(n)} with a scale (SELU/CELU)")
    b.emit(n, Op.ELU, [_x(b, n)], Elu(float(arg(n, 1, "alpha", 1.0))), meta=_inplace(n))


def _scalar(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _arith(op: Op, reverse: bool = False) -> Handler:
    """ADD/SUB/MUL/DIV of two tensors (numpy broadcasting) or of a tensor and a python scalar."""
    def h(b: Builder, n: fx.Node) -> None:
        a, c = n.args[0], (n.args[1] if len(n.args) > 1 else n.kwargs.get("other"))
        if reverse:
            a, c = c, a
        alpha = n.kwargs.get("alpha", n.args[2] if len(n.args) > 2 and op in (Op.ADD, Op.SUB) else 1)
        if n.kwargs.get("rounding_mode") is not None:
            raise UnsupportedOpError(f"{b.what(n)} with rounding_mode={n.kwargs['rounding_mode']!r}")
        if _scalar(alpha) != 1.0:
            if b.kind(c) == "python":
                c = float(c) * float(alpha)
            else:
                raise UnsupportedOpError(f"{b.what(n)} with alpha={alpha}")
        sa, sc = _scalar(a) if b.kind(a) == "python" else None, _scalar(c) if b.kind(c) == "python" else None
        if sa is None and sc is None:
            rank = len(b.tshape(n))
            ins = [b.ref(a, n, rank), b.ref(c, n, rank)]
            _broadcast_emit(b, n, op, ins)
        elif sc is not None and sa is None:
            b.emit(n, op, [b.ref(a, n)], Scalar(sc), meta=_inplace(n))
        elif sa is not None and sc is None:
            b.emit(n, op, [b.ref(c, n)], Scalar(sa, reverse=True))
        else:
            raise UnsupportedOpError(f"{b.what(n)} on two constants")
    return h


def _broadcast_emit(b: Builder, n: fx.Node, op: Op, ins: list[str]) -> None:
    out = b.out_shape(n)
    got = tuple(np.broadcast_shapes(*(b.shapes[i] for i in ins)))
    if got == out:
        b.emit(n, op, ins, meta=_inplace(n))
    else:  # operands with a leading unit batch dim broadcast to one more dim than the torch value has
        mid = b.emit(n, op, ins, name=f"{n.name}_bc", shape=got)
        b.emit(n, Op.RESHAPE, [mid], Reshape(out[1:]))


def _pow(b: Builder, n: fx.Node) -> None:
    x, e = n.args[0], n.args[1]
    if b.kind(x) == "data" and b.kind(e) == "python":
        b.emit(n, Op.POW, [b.ref(x, n)], Scalar(float(e)))
    elif b.kind(x) == "python" and b.kind(e) == "data":
        b.emit(n, Op.POW, [b.ref(e, n)], Scalar(float(x), reverse=True))
    else:
        raise UnsupportedOpError(f"{b.what(n)}: a tensor to a tensor power")


def _square(b: Builder, n: fx.Node) -> None:
    b.emit(n, Op.POW, [_x(b, n)], Scalar(2.0))


# ---------------------------------------------------------------------------------------------- layers
def _conv(b: Builder, n: fx.Node) -> None:
    from mapping.trace import conv_padding
    if n.target is torch.ops.aten.convolution.default and (arg(n, 6, "transposed") or False):
        return conv_transpose_function(b, n)
    w = b.val(arg(n, 1, "weight"))
    if w.dim() in (3, 5):  # 1-d (mapping._torch_1d) and 3-d (mapping._torch_3d) convolutions
        return (conv1d_function if w.dim() == 3 else conv3d_function)(b, n)
    if w.dim() != 4:
        raise UnsupportedOpError(f"{b.what(n)}: only 1-d to 3-d convolutions are supported (weight rank {w.dim()})")
    bias = arg(n, 2, "bias", None)
    stride, padding, dilation = (arg(n, 3, "stride", 1), arg(n, 4, "padding", 0), arg(n, 5, "dilation", 1))
    groups = arg(n, 8 if n.target is torch.ops.aten.convolution.default else 6, "groups", 1)
    k = (int(w.shape[2]), int(w.shape[3]))
    try:
        padding = conv_padding(padding, k, _pair(dilation))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)}: {e}") from None
    cin = int(w.shape[1]) * int(groups)
    attrs = Conv2d(cin, int(w.shape[0]), k, _pair(stride), padding, _pair(dilation), int(groups),
                   bias is not None)
    params = {"weight": b.param(arg(n, 1, "weight"), n, "weight")}
    if bias is not None:
        params["bias"] = b.param(bias, n, "bias")
    b.emit(n, Op.CONV2D, [_x(b, n)], attrs, params)


def _linear(b: Builder, n: fx.Node) -> None:
    w = b.val(arg(n, 1, "weight"))
    bias = arg(n, 2, "bias", None)
    params = {"weight": b.param(arg(n, 1, "weight"), n, "weight")}
    if bias is not None:
        params["bias"] = b.param(bias, n, "bias")
    b.emit(n, Op.LINEAR, [_x(b, n)], Linear(int(w.shape[1]), int(w.shape[0]), bias is not None), params)


def _matmul(b: Builder, n: fx.Node) -> None:
    a, c = n.args[0], n.args[1]
    if b.kind(a) == "data" and b.kind(c) == "const" and b.val(c).dim() == 2:
        w = b.val(c)  # x @ W == linear(x, W^T)
        key = b.add_param(f"{n.name}.weight", w.detach().t().contiguous())
        b.emit(n, Op.LINEAR, [b.ref(a, n)], Linear(int(w.shape[0]), int(w.shape[1]), False), {"weight": key})
        return
    ins = [b.ref(a, n, len(b.tshape(n))), b.ref(c, n, len(b.tshape(n)))]
    if any(len(b.shapes[i]) < 3 for i in ins):
        raise UnsupportedOpError(f"{b.what(n)}: a matrix product of operands with fewer than 2 dims per sample")
    b.emit(n, Op.MATMUL, ins)


def _batch_norm(order: str) -> Handler:
    """order: positions of (mean, var, weight, bias, training, eps) in the call."""
    pos = {"functional": (1, 2, 3, 4, 5, 7), "aten": (3, 4, 1, 2, 5, 7), "legit": (3, 4, 1, 2, None, 6)}[order]

    def h(b: Builder, n: fx.Node) -> None:
        names = ("running_mean", "running_var", "weight", "bias", "training", "eps")
        vals = [arg(n, p, nm, None) if p is not None else False for p, nm in zip(pos, names)]
        mean, var, w, bias, training, eps = vals
        if training or mean is None:
            raise UnsupportedOpError(f"{b.what(n)} uses the batch's statistics (no running statistics in eval)")
        params = {"mean": b.param(mean, n, "mean"), "var": b.param(var, n, "var")}
        if w is not None:
            params["gamma"] = b.param(w, n, "gamma")
        if bias is not None:
            params["beta"] = b.param(bias, n, "beta")
        if "gamma" in params and "beta" not in params or "beta" in params and "gamma" not in params:
            raise UnsupportedOpError(f"{b.what(n)} with only one of weight and bias")
        c = b.tshape(n.args[0])[1]
        if b.offset(n.args[0]) == 1:
            from mapping.trace import channel_last
            if order == "legit":
                b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
            channel_last(b, n, Op.BATCHNORM, _x(b, n), BatchNorm(c, float(eps if eps is not None else 1e-5)), params,
                         {}, "")
            return
        if order == "legit":
            b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
            b.emit(n, Op.BATCHNORM, [_x(b, n)], BatchNorm(c, float(eps if eps is not None else 1e-5)), params,
                   shape=b.out_shape(n, b.values[n.name][0].shape))
        else:
            b.emit(n, Op.BATCHNORM, [_x(b, n)], BatchNorm(c, float(eps if eps is not None else 1e-5)), params)
    return h


def _norm_params(b: Builder, n: fx.Node, wi: int, bi: int) -> dict[str, str]:
    params = {}
    for pos, nm, role in ((wi, "weight", "gamma"), (bi, "bias", "beta")):
        t = arg(n, pos, nm, None)
        if t is not None:
            params[role] = b.param(t, n, role)
    return params


def _layer_norm(b: Builder, n: fx.Node) -> None:
    shape = tuple(int(s) for s in arg(n, 1, "normalized_shape"))
    if len(shape) >= len(b.ishape(n.args[0])):
        raise UnsupportedOpError(f"{b.what(n)} normalizes over the batch dimension")
    b.emit(n, Op.LAYERNORM, [_x(b, n)], LayerNorm(shape, float(arg(n, 4, "eps", 1e-5))), _norm_params(b, n, 2, 3))


def _group_norm(b: Builder, n: fx.Node) -> None:
    if b.offset(n.args[0]) != 0:
        raise UnsupportedOpError(f"{b.what(n)} on a tensor without a batch dimension")
    b.emit(n, Op.GROUPNORM, [_x(b, n)], GroupNorm(int(arg(n, 1, "num_groups")), float(arg(n, 4, "eps", 1e-5))),
           _norm_params(b, n, 2, 3))


def _softmax(log: bool) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        d = arg(n, 1, "dim", None)
        if d is None:
            raise UnsupportedOpError(f"{b.what(n)} without dim")
        b.emit(n, Op.SOFTMAX, [_x(b, n)], Softmax(b.dim(n.args[0], int(d), n), log))
    return h


def _attention(b: Builder, n: fx.Node) -> None:
    mask = arg(n, 3, "attn_mask", None)
    mask = None if b.val(mask) is None else mask
    if arg(n, 7, "enable_gqa", False):
        raise UnsupportedOpError(f"{b.what(n)} with grouped-query attention")
    if mask is not None and b.val(mask).dtype == torch.bool and b.kind(mask) == "const":  # keep where True
        ins_mask = b.constant(mask, len(b.tshape(n)), np.where(b.val(mask).numpy(), 0.0, -np.inf), "additive")
    elif mask is not None and b.val(mask).dtype != torch.float32:
        raise UnsupportedOpError(f"{b.what(n)} with a {b.val(mask).dtype} attention mask (float masks are supported)")
    if float(arg(n, 4, "dropout_p", 0.0)) != 0.0:
        raise UnsupportedOpError(f"{b.what(n)} with dropout_p > 0")
    scale = arg(n, 6, "scale", None)
    ins = [b.ref(arg(n, i, nm), n) for i, nm in enumerate(("query", "key", "value"))]
    if mask is not None:
        ins.append(ins_mask if b.val(mask).dtype == torch.bool else b.ref(mask, n, len(b.tshape(n))))
    if any(len(b.shapes[i]) < 3 for i in ins[:3]):
        raise UnsupportedOpError(f"{b.what(n)} on operands with fewer than 2 dims per sample")
    b.emit(n, Op.ATTENTION, ins, Attention(None if scale is None else float(scale), bool(arg(n, 5, "is_causal", False))))


# ---------------------------------------------------------------------------------------------- pooling
def _maxpool(b: Builder, n: fx.Node) -> None:
    if arg(n, 6, "return_indices", False):
        raise UnsupportedOpError(f"{b.what(n)} with return_indices=True")
    k = _pair(arg(n, 1, "kernel_size"))
    s = arg(n, 2, "stride", None)
    attrs = Pool(k, _pair(s) if s not in (None, [], ()) else k, _pair(arg(n, 3, "padding", 0)),
                 _pair(arg(n, 4, "dilation", 1)), bool(arg(n, 5, "ceil_mode", False)))
    if n.target is torch.ops.aten.max_pool2d_with_indices.default:
        b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
        b.emit(n, Op.MAXPOOL, [_x(b, n)], attrs, shape=b.out_shape(n, b.values[n.name][0].shape))
    else:
        b.emit(n, Op.MAXPOOL, [_x(b, n)], attrs)


def _avgpool(b: Builder, n: fx.Node) -> None:
    if arg(n, 6, "divisor_override", None) is not None:
        raise UnsupportedOpError(f"{b.what(n)} with divisor_override")
    k = _pair(arg(n, 1, "kernel_size"))
    s = arg(n, 2, "stride", None)
    b.emit(n, Op.AVGPOOL, [_x(b, n)], Pool(k, _pair(s) if s not in (None, [], ()) else k,
                                           _pair(arg(n, 3, "padding", 0)), (1, 1), bool(arg(n, 4, "ceil_mode", False)),
                                           bool(arg(n, 5, "count_include_pad", True))))


def _adaptive_avg(b: Builder, n: fx.Node) -> None:
    out = b.out_shape(n)
    if len(out) != 4:
        raise UnsupportedOpError(f"{b.what(n)} of a {len(out)}-d tensor")
    b.emit(n, Op.ADAPTIVE_AVGPOOL, [_x(b, n)], AdaptivePool((out[2], out[3])))


def _adaptive_max(b: Builder, n: fx.Node) -> None:
    out = b.out_shape(n, b.values[n.name][0].shape if isinstance(b.values[n.name], tuple) else None)
    if len(out) != 4 or out[2:] != (1, 1):
        raise UnsupportedOpError(f"{b.what(n)}: only a global (1x1) adaptive max pool is supported")
    if isinstance(b.values[n.name], tuple):
        b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
    b.emit(n, Op.REDUCE_MAX, [_x(b, n)], Reduce((2, 3), True), shape=out)


# ---------------------------------------------------------------------------------------------- reductions
def _reduce(op: Op) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        dims = arg(n, 1, "dim", None)
        if dims is None or dims == []:
            raise UnsupportedOpError(f"{b.what(n)} over all dimensions (the batch included)")
        if n.kwargs.get("dtype") is not None:
            raise UnsupportedOpError(f"{b.what(n)} with dtype")
        if isinstance(dims, fx.Node):  # torch.max(x, y)
            raise UnsupportedOpError(f"{b.what(n)}: the elementwise maximum of two tensors is not supported")
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        ir = tuple(sorted(b.dim(n.args[0], int(d), n) for d in dims))
        keep = bool(arg(n, 2, "keepdim", False))
        if isinstance(b.values[n.name], tuple):  # max(dim) -> (values, indices)
            b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
            shape = b.out_shape(n, b.values[n.name][0].shape)
        else:
            shape = None
        b.emit(n, op, [_x(b, n)], Reduce(ir, keep), shape=shape)
    return h


def _normalize(b: Builder, n: fx.Node) -> None:
    """F.normalize(x, p=2, dim, eps) = x / max(||x||_2 along dim, eps): square, sum, sqrt, clamp, divide."""
    if float(arg(n, 1, "p", 2.0)) != 2.0:
        raise UnsupportedOpError(f"{b.what(n)} with p != 2")
    x = n.args[0]
    d = b.dim(x, int(arg(n, 2, "dim", 1)), n)
    src, shape = b.ref(x, n), b.ishape(x)
    red = shape[:d] + (1,) + shape[d + 1:]
    sq = b.emit(n, Op.POW, [src], Scalar(2.0), name=f"{n.name}_sq", shape=shape)
    ss = b.emit(n, Op.REDUCE_SUM, [sq], Reduce((d,), True), name=f"{n.name}_ss", shape=red)
    nrm = b.emit(n, Op.SQRT, [ss], name=f"{n.name}_norm", shape=red)
    cl = b.emit(n, Op.CLAMP, [nrm], Clamp(float(arg(n, 3, "eps", 1e-12)), None), name=f"{n.name}_clamp", shape=red)
    b.emit(n, Op.DIV, [src, cl])


def _vector_norm(b: Builder, n: fx.Node) -> None:
    """The 2-norm along given dims (``torch.linalg.vector_norm``, ``x.norm(dim=...)``): square, sum, sqrt."""
    p = n.kwargs.get("ord", n.kwargs.get("p", n.args[1] if len(n.args) > 1 else 2))
    dims = arg(n, 2, "dim", None)
    if p not in (2, 2.0, "fro", None) or dims is None or n.kwargs.get("dtype") is not None:
        raise UnsupportedOpError(f"{b.what(n)}: only the 2-norm along given dims is supported")
    x = n.args[0]
    dims = tuple(sorted(b.dim(x, int(d), n) for d in ((dims,) if isinstance(dims, int) else dims)))
    keep = bool(arg(n, 3, "keepdim", False))
    src, shape = b.ref(x, n), b.ishape(x)
    red = tuple(1 if i in dims else s for i, s in enumerate(shape)) if keep else b.out_shape(n)
    sq = b.emit(n, Op.POW, [src], Scalar(2.0), name=f"{n.name}_sq", shape=shape)
    ss = b.emit(n, Op.REDUCE_SUM, [sq], Reduce(dims, keep), name=f"{n.name}_ss", shape=red)
    b.emit(n, Op.SQRT, [ss])


def _reciprocal(b: Builder, n: fx.Node) -> None:
    b.emit(n, Op.DIV, [_x(b, n)], Scalar(1.0, reverse=True))


def _refuse(why: str) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        raise UnsupportedOpError(f"{b.what(n)}: {why}")
    return h


def _gelu_attrs(n):
    return Gelu(str(arg(n, 1, "approximate", "none")))


_ACT = {  # op, attrs (None: NoAttrs); function, method and ATen names
    "relu": (Op.RELU, None), "relu6": (Op.RELU6, None), "hardswish": (Op.HARDSWISH, None),
    "hardsigmoid": (Op.HARDSIGMOID, None), "sigmoid": (Op.SIGMOID, None), "silu": (Op.SILU, None),
    "tanh": (Op.TANH, None), "mish": (Op.MISH, None), "gelu": (Op.GELU, _gelu_attrs),
    "leaky_relu": (Op.LEAKY_RELU, lambda n: LeakyRelu(float(arg(n, 1, "negative_slope", 0.01)))),
    "softplus": (Op.SOFTPLUS, lambda n: Softplus(float(arg(n, 1, "beta", 1.0)), float(arg(n, 2, "threshold", 20.0)))),
    "exp": (Op.EXP, None), "log": (Op.LOG, None), "sqrt": (Op.SQRT, None), "rsqrt": (Op.RSQRT, None),
    "erf": (Op.ERF, None), "abs": (Op.ABS, None), "neg": (Op.NEG, None),
}


def _handlers() -> dict[str, Handler]:
    h: dict[str, Handler] = {name: _unary(op, attrs) if attrs else _unary(op) for name, (op, attrs) in _ACT.items()}
    h.update({
        "hardtanh": _hardtanh, "clamp": _clamp(None, None), "clip": _clamp(None, None),
        "clamp_min": _clamp(None, _MISSING), "clamp_max": _clamp(_MISSING, None), "prelu": _prelu, "elu": _elu,
        "add": _arith(Op.ADD), "sub": _arith(Op.SUB), "mul": _arith(Op.MUL), "div": _arith(Op.DIV),
        "true_divide": _arith(Op.DIV), "rsub": _arith(Op.SUB, reverse=True), "pow": _pow, "square": _square,
        "conv2d": _conv, "convolution": _conv, "linear": _linear, "matmul": _matmul, "mm": _matmul, "bmm": _matmul,
        "batch_norm": _batch_norm("functional"), "layer_norm": _layer_norm, "group_norm": _group_norm,
        "softmax": _softmax(False), "_softmax": _softmax(False), "log_softmax": _softmax(True),
        "_log_softmax": _softmax(True), "scaled_dot_product_attention": _attention,
        "max_pool2d": _maxpool, "max_pool2d_with_indices": _maxpool, "avg_pool2d": _avgpool,
        "adaptive_avg_pool2d": _adaptive_avg, "_adaptive_avg_pool2d": _adaptive_avg,
        "adaptive_max_pool2d": _adaptive_max,
        "mean": _reduce(Op.REDUCE_MEAN), "sum": _reduce(Op.REDUCE_SUM), "amax": _reduce(Op.REDUCE_MAX),
        "max": _reduce(Op.REDUCE_MAX),
        "normalize": _normalize, "linalg_vector_norm": _vector_norm, "vector_norm": _vector_norm,
        "norm": _vector_norm, "reciprocal": _reciprocal,
        "conv_transpose2d": conv_transpose_function,
        "floor_divide": _refuse("integer division is not supported"),
    })
    h.update(moves())
    h.update(composite())
    h.update(masks() | one_d_functions() | three_d_functions())
    h["einsum"] = einsum
    bn_aten = _batch_norm("aten")
    h["_native_batch_norm_legit_no_training"] = _batch_norm("legit")
    return h, bn_aten


_BY_NAME, _BN_ATEN = _handlers()
_OPERATORS = {operator.add: "add", operator.iadd: "add", operator.sub: "sub", operator.isub: "sub",
              operator.mul: "mul", operator.imul: "mul", operator.truediv: "div", operator.itruediv: "div",
              operator.matmul: "matmul", operator.pow: "pow", operator.neg: "neg", operator.getitem: "getitem",
              operator.floordiv: "floor_divide"}


def _name_of(n: fx.Node) -> str:
    """The operation's name: method names, function names, ATen packet names (trailing '_' of in-place dropped)."""
    t = n.target
    if n.op == "call_method":
        name = str(t)
    elif t in _OPERATORS:
        name = _OPERATORS[t]
    elif isinstance(t, torch._ops.OpOverload):
        name = t.overloadpacket.__name__
        if name == "batch_norm":
            return "aten.batch_norm"
    else:
        name = getattr(t, "__name__", str(t))
    if name.endswith("_") and not name.endswith("__") and name.rstrip("_") in _BY_NAME:
        name = name.rstrip("_")
    return name


def _python_values(b: Builder, a):
    if isinstance(a, fx.Node):
        return b.values[a.name] if b.kind(a) == "python" else a
    if isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
        return type(a)(_python_values(b, x) for x in a)
    if isinstance(a, dict):
        return {k: _python_values(b, v) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(_python_values(b, a.start), _python_values(b, a.stop), _python_values(b, a.step))
    return a


def handle(b: Builder, n: fx.Node) -> None:
    """Convert one call_function / call_method fx node of kind data."""
    if n.op == "call_module":
        from mapping.trace import convert_module
        convert_module(b, n)
        return
    n.args, n.kwargs = _python_values(b, n.args), _python_values(b, n.kwargs)  # sizes, flags: their values
    name = _name_of(n)
    h = _BN_ATEN if name == "aten.batch_norm" else _BY_NAME.get(name)
    if h is None or (n.op == "call_function" and not _known_function(n.target, name)):
        raise UnsupportedOpError(f"unsupported {b.what(n)}")
    h(b, n)


_MODULES_OK = ("torch", "torch.nn.functional", "torch._C._nn", "torch._C._VariableFunctions", "_operator",
               "torchvision.ops.stochastic_depth", "timm.layers.drop", "torch.functional", "torch._tensor")


def _known_function(t, name: str) -> bool:
    """Functions are matched by name only when they come from torch itself (or a known drop-path helper)."""
    if isinstance(t, torch._ops.OpOverload) or t in _OPERATORS or t is getattr:  # getattr: a tensor's attribute
        return True
    mod = getattr(t, "__module__", None) or ""
    return mod in _MODULES_OK or mod.startswith("torch") or t in (F.pad, torch.flatten) or name == "drop_path" and \
        "timm" in mod

