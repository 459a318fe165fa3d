"""torch ops the IR computes with ops it already has (handlers of :class:`mapping._builder.Builder`, dispatched by
:mod:`mapping._torch_ops`): instance norm, ``addcmul``, ``var``/``std``, ``glu``, ``logsigmoid``, ``min`` along
dims, the transposing tensor attributes ``.T`` / ``.mT``, ``flip``, ``tile``, ATen's nearest-exact upsampling, and
the activations of :mod:`mapping._torch_activations`. Each handler's docstring states its rule; the ONNX importer
maps the same ops onto the same IR ops (``InstanceNormalization`` -> GROUPNORM, ``ReduceMin`` -> NEG, REDUCE_MAX,
NEG, torch's ONNX export of ``var`` -> mean, subtract, square, reduce; :mod:`mapping.onnx_extra`). Every result is
verified against torch at import (:mod:`mapping.verify`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.fx as fx

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_activations import activations
from mapping._torch_moves import Handler, _first_only, _inplace, _interpolate, _permute, _tile, _x, arg
from mapping._trace_modules import upsample_attrs
from mapping.graph import BatchNorm, Concat, GroupNorm, NoAttrs, Op, Reduce, Reshape, Scalar, Slice, Softplus

__all__ = ["composite"]


def _finish(b: Builder, n: fx.Node, op: Op, ins: list[str], attrs=NoAttrs(), natural: tuple[int, ...] | None = None,
            params: dict | None = None, meta: dict | None = None) -> str:
    """Emit the last node of ``n`` (IR shape ``natural``, default: the inputs broadcast); when that is not the IR
    shape of ``n``'s torch value (a leading unit batch dim more or less), emit it under a helper name and RESHAPE."""
    natural = natural if natural is not None else tuple(np.broadcast_shapes(*(b.shapes[i] for i in ins)))
    out = b.out_shape(n, b.values[n.name][0].shape if isinstance(b.values[n.name], tuple) else None)
    if natural == out:
        return b.emit(n, op, ins, attrs, params, meta, shape=out)
    mid = b.emit(n, op, ins, attrs, params, name=f"{n.name}_nat", shape=natural)
    return b.emit(n, Op.RESHAPE, [mid], Reshape(out[1:]), shape=out)


def _dims(b: Builder, n: fx.Node, dims, what: str) -> tuple[int, ...]:
    """The sorted IR dims of a reduction's ``dim`` argument; all dims (None, []) or the batch dim are refused."""
    if dims is None or isinstance(dims, bool) or dims == [] or dims == ():
        raise UnsupportedOpError(f"{b.what(n)} over all dimensions (the batch included); give the dims to reduce")
    if isinstance(dims, fx.Node):
        raise UnsupportedOpError(f"{b.what(n)}: the elementwise {what} of two tensors is not supported")
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return tuple(sorted({b.dim(n.args[0], int(d), n) for d in dims}))


def _reduced(shape: tuple[int, ...], dims: tuple[int, ...], keep: bool) -> tuple[int, ...]:
    return tuple(1 if i in dims else s for i, s in enumerate(shape) if keep or i not in dims)


# ---------------------------------------------------------------------------------------------- normalisation
def _instance_norm(b: Builder, n: fx.Node) -> None:
    """``F.instance_norm`` / ``aten.instance_norm`` of a batch-first (N, C, ...) value: with the input's statistics
    -> GROUPNORM with one channel per group (5-d values viewed as (N, C, D*H*W) around it); with running statistics
    (``use_input_stats=False``, an ``nn.InstanceNorm*d(track_running_stats=True)`` in eval) -> BATCHNORM (a
    per-channel affine)."""
    aten = isinstance(n.target, torch._ops.OpOverload)  # aten: (input, weight, bias, mean, var, use_input_stats, ..)
    pos = (3, 4, 1, 2, 5, 7) if aten else (1, 2, 3, 4, 5, 7)
    names = ("running_mean", "running_var", "weight", "bias", "use_input_stats", "eps")
    mean, var, w, bias, use_input, eps = (arg(n, p, nm, d) for p, nm, d in zip(pos, names, (None,) * 4 + (True, 1e-5)))
    x = n.args[0]
    rank = len(b.tshape(x))
    if b.offset(x) != 0 or rank not in (3, 4, 5):
        raise UnsupportedOpError(f"{b.what(n)} of a value of shape {b.tshape(x)}: instance norm of a batch-first "
                                 "(N, C, ...) value of 3 to 5 dims is supported")
    params = {role: b.param(t, n, role) for t, role in ((w, "gamma"), (bias, "beta")) if t is not None}
    shape = b.ishape(x)
    c = shape[1]
    if use_input and rank == 5:  # (N, C, D, H, W) as (N, C, D*H*W): the same statistics per channel
        flat = shape[:2] + (math.prod(shape[2:]),)
        src = b.emit(n, Op.RESHAPE, [_x(b, n)], Reshape(flat[1:]), name=f"{n.name}_flat", shape=flat)
        y = b.emit(n, Op.GROUPNORM, [src], GroupNorm(c, float(eps)), params, name=f"{n.name}_norm", shape=flat)
        b.emit(n, Op.RESHAPE, [y], Reshape(shape[1:]))
        return
    if use_input:
        b.emit(n, Op.GROUPNORM, [_x(b, n)], GroupNorm(c, float(eps)), params)
        return
    if mean is None or var is None:
        raise UnsupportedOpError(f"{b.what(n)} with use_input_stats=False and no running statistics")
    if len(params) == 1:
        raise UnsupportedOpError(f"{b.what(n)} with running statistics and only one of weight and bias")
    params.update({"mean": b.param(mean, n, "mean"), "var": b.param(var, n, "var")})
    b.emit(n, Op.BATCHNORM, [_x(b, n)], BatchNorm(c, float(eps)), params)


def _var(std: bool) -> Handler:
    def h(b: Builder, n: fx.Node) -> None:
        """``var``/``std`` along non-batch dims with correction c (``unbiased`` True: 1) over N reduced elements:
        REDUCE_MEAN (kept dims), SUB, POW 2, REDUCE_SUM, DIV by N - c (then SQRT for ``std``)."""
        x = n.args[0]
        dims = _dims(b, n, arg(n, 1, "dim", None), "var/std")
        if "correction" in n.kwargs:
            c = n.kwargs["correction"]
            c = 1.0 if c is None else float(c)
        else:
            c = 1.0 if bool(arg(n, 2, "unbiased", True)) else 0.0
        keep = bool(arg(n, 3, "keepdim", False))
        src, shape = _x(b, n), b.ishape(x)
        count = math.prod(shape[d] for d in dims)
        if count - c <= 0:
            raise UnsupportedOpError(f"{b.what(n)} of {count} element(s) with correction {c:g} (divides by <= 0)")
        kept = _reduced(shape, dims, True)
        mean = b.emit(n, Op.REDUCE_MEAN, [src], Reduce(dims, True), name=f"{n.name}_mean", shape=kept)
        d = b.emit(n, Op.SUB, [src, mean], name=f"{n.name}_dev", shape=shape)
        sq = b.emit(n, Op.POW, [d], Scalar(2.0), name=f"{n.name}_sq", shape=shape)
        red = _reduced(shape, dims, keep)
        ss = b.emit(n, Op.REDUCE_SUM, [sq], Reduce(dims, keep), name=f"{n.name}_ss", shape=red)
        if std:
            v = b.emit(n, Op.DIV, [ss], Scalar(count - c), name=f"{n.name}_var", shape=red)
            _finish(b, n, Op.SQRT, [v], natural=red)
        else:
            _finish(b, n, Op.DIV, [ss], Scalar(count - c), natural=red)
    return h


# ---------------------------------------------------------------------------------------------- elementwise
def _addcmul(b: Builder, n: fx.Node) -> None:
    """``addcmul(a, t1, t2, value=v)`` = a + v * t1 * t2: MUL(t1, t2), MUL Scalar(v) unless v is 1, ADD (numpy
    broadcasting; constant operands become CONSTANT nodes)."""
    v = n.kwargs.get("value", 1)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UnsupportedOpError(f"{b.what(n)} with value={v!r} (a Python number is supported)")
    rank = len(b.tshape(n))
    a, t1, t2 = (b.ref(arg(n, i, nm), n, rank) for i, nm in enumerate(("input", "tensor1", "tensor2")))
    shape = tuple(np.broadcast_shapes(b.shapes[t1], b.shapes[t2]))
    prod = b.emit(n, Op.MUL, [t1, t2], name=f"{n.name}_prod", shape=shape)
    if float(v) != 1.0:
        prod = b.emit(n, Op.MUL, [prod], Scalar(float(v)), name=f"{n.name}_scaled", shape=shape)
    _finish(b, n, Op.ADD, [a, prod], meta=_inplace(n))


def _glu(b: Builder, n: fx.Node) -> None:
    """``F.glu(x, dim)`` = first half * sigmoid(second half) along ``dim``: two SLICEs, SIGMOID, MUL."""
    d = b.dim(n.args[0], int(arg(n, 1, "dim", -1)), n)
    src, shape = _x(b, n), b.ishape(n.args[0])
    if shape[d] % 2:
        raise UnsupportedOpError(f"{b.what(n)} along a dimension of odd size {shape[d]}")
    h = shape[d] // 2
    half = shape[:d] + (h,) + shape[d + 1:]
    a = b.emit(n, Op.SLICE, [src], Slice(d, 0, h), name=f"{n.name}_a", shape=half)
    g = b.emit(n, Op.SLICE, [src], Slice(d, h, 2 * h), name=f"{n.name}_b", shape=half)
    s = b.emit(n, Op.SIGMOID, [g], name=f"{n.name}_gate", shape=half)
    _finish(b, n, Op.MUL, [a, s], natural=half)


def _logsigmoid(b: Builder, n: fx.Node) -> None:
    """``F.logsigmoid(x)`` = -log(1 + exp(-x)) = SOFTPLUS(beta=-1, threshold=20): x itself where -x > 20, where
    torch's x - log1p(exp(x)) differs from x by under 2.1e-9 (a Log of a Sigmoid would give -inf below x = -88)."""
    b.emit(n, Op.SOFTPLUS, [_x(b, n)], Softplus(-1.0, 20.0))


def _min(b: Builder, n: fx.Node) -> None:
    """``x.min(dim, keepdim)`` values / ``amin``: NEG, REDUCE_MAX, NEG (the ONNX importer's ReduceMin); the
    indices output is refused."""
    dims = _dims(b, n, arg(n, 1, "dim", None), "minimum")
    keep = bool(arg(n, 2, "keepdim", False))
    src, shape = _x(b, n), b.ishape(n.args[0])
    if isinstance(b.values[n.name], tuple):  # min(dim) -> (values, indices)
        b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
    red = _reduced(shape, dims, keep)
    neg = b.emit(n, Op.NEG, [src], name=f"{n.name}_neg", shape=shape)
    mx = b.emit(n, Op.REDUCE_MAX, [neg], Reduce(dims, keep), name=f"{n.name}_max", shape=red)
    _finish(b, n, Op.NEG, [mx], natural=red)


def _tensor_attribute(b: Builder, n: fx.Node) -> None:
    """``x.T`` / ``x.H`` (all dims reversed, as ``x.t()`` and ``permute(reversed dims)``), ``x.mT`` / ``x.mH`` (the
    last two dims swapped, as ``x.transpose(-2, -1)``): the node is rewritten as that method call (real tensors:
    ``H`` = ``T``) and converted as a permutation; ``x.data`` is ``x``; any other attribute is refused by name."""
    x, attr = n.args[0], str(n.args[1])
    if attr == "data":
        b.alias(n, x)
        return
    if attr not in ("T", "H", "mT", "mH"):
        raise UnsupportedOpError(f"{b.what(n)}: the tensor attribute {attr!r} is not supported")
    n.op, n.target = "call_method", ("t" if attr in ("T", "H") else "transpose")
    n.args = (x,) if attr in ("T", "H") else (x, -2, -1)
    _permute(b, n)


# ---------------------------------------------------------------------------------------------- data movement
FLIP_MAX = 64  # the longest dim a flip reverses: one unit SLICE per element (each a layer's fixed cost on a CPU)


def _reverse(what: str, size: int) -> range:
    """The unit slices, last first, that reverse a dim of ``size`` elements (``FLIP_MAX`` at most)."""
    if size > FLIP_MAX:
        raise UnsupportedOpError(f"{what} reverses a dimension of {size} elements: hwsim's IR has no reversing op and "
                                 f"builds a flip from one slice per element, up to {FLIP_MAX}")
    return range(size - 1, -1, -1)


def _flip(b: Builder, n: fx.Node) -> None:
    """``torch.flip(x, dims)`` / ``x.flip(*dims)`` / ``fliplr`` (dim 1) / ``flipud`` (dim 0) along non-batch dims:
    per flipped dim of size s > 1, s unit SLICEs taken last first and a CONCAT (exact: only copies; s <=
    ``FLIP_MAX``)."""
    name = _name(n)
    x = n.args[0]
    if name in ("fliplr", "flipud"):
        dims = [1 if name == "fliplr" else 0]
    else:
        dims = arg(n, 1, "dims")
        dims = list(n.args[1:]) if isinstance(dims, int) else list(dims)
    todo = sorted({b.dim(x, int(d), n) for d in dims})
    cur = _x(b, n)
    todo = [d for d in todo if b.shapes[cur][d] > 1]
    for j, d in enumerate(todo):
        shape = b.shapes[cur]
        one = shape[:d] + (1,) + shape[d + 1:]
        parts = [b.emit(n, Op.SLICE, [cur], Slice(d, i, i + 1), name=f"{n.name}_{j}_{i}", shape=one)
                 for i in _reverse(b.what(n), shape[d])]
        cur = b.emit(n, Op.CONCAT, parts, Concat(d), name=None if j == len(todo) - 1 else f"{n.name}_{j}", shape=shape)
    if cur != n.name:
        b.ir[n.name] = cur


def _tile_method(b: Builder, n: fx.Node) -> None:
    """``x.tile(dims)`` / ``torch.tile``: ``x.repeat`` with ``dims`` left-padded with 1s to the rank — per repeated
    non-batch dim, a CONCAT of that many copies."""
    dims = arg(n, 1, "dims")
    reps = [int(r) for r in ([dims] if isinstance(dims, int) else dims)]
    x, src = n.args[0], _x(b, n)
    rank, shape = len(b.tshape(x)), b.shapes[src]
    if len(reps) > rank:
        raise UnsupportedOpError(f"{b.what(n)} with {len(reps)} repeats for a value of rank {rank} (new leading dims)")
    _tile(b, n, src, [1] * (len(shape) - len(reps)) + reps)  # refuses a repeat of the batch


def _upsample_nearest_exact(b: Builder, n: fx.Node) -> None:
    """ATen's ``_upsample_nearest_exact2d`` (torch.export's ``F.interpolate(mode="nearest-exact")``): UPSAMPLE
    nearest when each output size is a whole multiple of the input's (:func:`mapping._trace_modules.upsample_attrs`:
    the two index rules agree there), else refused."""
    try:
        upsample_attrs("nearest-exact", None, b.out_shape(n), b.tshape(n.args[0]))  # refuses other sizes
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)}: {e}") from None
    _interpolate(b, n)  # reads the ATen name as nearest's


def _name(n: fx.Node) -> str:
    t = n.target
    if isinstance(t, torch._ops.OpOverload):
        return t.overloadpacket.__name__
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def composite() -> dict[str, Handler]:
    """The handlers of this module by function, method and ATen name."""
    return {"instance_norm": _instance_norm, "var": _var(False), "std": _var(True), "addcmul": _addcmul,
            "glu": _glu, "log_sigmoid": _logsigmoid, "logsigmoid": _logsigmoid, "min": _min, "amin": _min,
            "getattr": _tensor_attribute, "flip": _flip, "fliplr": _flip, "flipud": _flip,
            "tile": _tile_method, "_upsample_nearest_exact2d": _upsample_nearest_exact} | activations()
