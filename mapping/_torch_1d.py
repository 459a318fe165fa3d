"""1-d convolutions and pools (``nn.Conv1d``, ``F.conv1d``, ``nn.MaxPool1d`` / ``AvgPool1d`` /
``AdaptiveAvgPool1d`` and their functions) as the IR's 2-d ops on a unit height, as torch itself computes them
(``aten/src/ATen/native/Convolution.cpp`` views a 1-d convolution as 2-d with ``view1d_as_2d``).

``(N, C, L)`` is viewed as ``(N, C, 1, L)`` (a RESHAPE), the op runs with kernel ``(1, k)``, stride ``(1, s)``,
padding ``(0, p)``, dilation ``(1, d)``, and its ``(N, C', 1, L')`` output is viewed back. A Conv1d weight
``(Cout, Cin/g, k)`` is stored as ``(Cout, Cin/g, 1, k)`` under the module's key (the same values and count).
Every target then runs a 2-d layer it knows (a keyword-spotting net's 1-d convs on a Cortex-M run through the
int8 path's conv kernels).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_moves import Handler, _x, arg
from mapping.graph import AdaptivePool, Conv2d, Op, Pool, Reshape

__all__ = ["ONE_D_MODULES", "one_d_module", "one_d_functions", "conv1d_function"]

ONE_D_MODULES = (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)


def _one(v: Any) -> int:
    v = v[0] if isinstance(v, (tuple, list)) else v
    return int(v)


def _as_2d(b: Builder, n: fx.Node, op: Op, attrs: Any, params: dict[str, str] | None = None,
           module: str | None = None) -> None:
    """``op`` on fx node ``n``'s (N, C, L) input viewed as (N, C, 1, L), its output viewed back as (N, C', L')."""
    src = _x(b, n)
    shape, out = b.shapes[src], b.out_shape(n)
    if len(shape) != 3 or len(out) != 3:
        raise UnsupportedOpError(f"{b.what(n)} of a value of shape {b.tshape(n.args[0])} (hwsim maps (N, C, L))")
    mid_in, mid_out = (shape[0], shape[1], 1, shape[2]), (out[0], out[1], 1, out[2])
    v = b.emit(n, Op.RESHAPE, [src], Reshape(mid_in[1:]), name=f"{n.name}_2d", shape=mid_in, module=module)
    y = b.emit(n, op, [v], attrs, params, name=f"{n.name}_1xk", shape=mid_out, module=module)
    b.emit(n, Op.RESHAPE, [y], Reshape(out[1:]), shape=out, module=module)


def _conv_attrs(where: str, weight_shape, stride, padding, dilation, groups: int, bias: bool) -> Conv2d:
    from mapping.trace import conv_padding

    k, d = int(weight_shape[2]), _one(dilation)
    try:
        p = conv_padding(padding if isinstance(padding, str) else (0, _one(padding)), (1, k), (1, d))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{where}: {e}") from None
    return Conv2d(int(weight_shape[1]) * int(groups), int(weight_shape[0]), (1, k), (1, _one(stride)), p, (1, d),
                  int(groups), bias)


def _pool_attrs(where: str, kernel, stride, padding, dilation, ceil: bool, count_include_pad: bool = True) -> Pool:
    k = _one(kernel)
    s = k if stride in (None, [], ()) else _one(stride)
    return Pool((1, k), (1, s), (0, _one(padding)), (1, _one(dilation)), bool(ceil), bool(count_include_pad))


def one_d_module(b: Builder, n: fx.Node, m: nn.Module) -> None:
    """A call of an ``ONE_D_MODULES`` layer."""
    path, what = str(n.target), f"{type(m).__name__} at '{n.target}'"
    if isinstance(m, nn.Conv1d):
        if m.padding_mode != "zeros":
            raise UnsupportedOpError(f"{what}: padding_mode={m.padding_mode!r}")
        attrs = _conv_attrs(what, m.weight.shape, m.stride, m.padding, m.dilation, m.groups, m.bias is not None)
        params = {"weight": b.add_param(f"{path}.weight", m.weight.detach().unsqueeze(2))}
        if m.bias is not None:
            params["bias"] = b.add_param(f"{path}.bias", m.bias)
        _as_2d(b, n, Op.CONV2D, attrs, params, path)
    elif isinstance(m, nn.MaxPool1d):
        if m.return_indices:
            raise UnsupportedOpError(f"{what}: return_indices=True")
        _as_2d(b, n, Op.MAXPOOL, _pool_attrs(what, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode),
               module=path)
    elif isinstance(m, nn.AvgPool1d):
        _as_2d(b, n, Op.AVGPOOL, _pool_attrs(what, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode,
                                             m.count_include_pad), module=path)
    else:
        _as_2d(b, n, Op.ADAPTIVE_AVGPOOL, AdaptivePool((1, int(b.tshape(n)[-1]))), module=path)


def conv1d_function(b: Builder, n: fx.Node) -> None:
    """``F.conv1d(x, weight, bias, stride, padding, dilation, groups)`` (and ATen's convolution with a 3-d weight:
    ``convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)``)."""
    aten = n.target is torch.ops.aten.convolution.default
    w, bias = arg(n, 1, "weight"), arg(n, 2, "bias", None)
    wv = b.val(w)
    if wv.dim() != 3:
        raise UnsupportedOpError(f"{b.what(n)}: a weight of rank {wv.dim()} (1-d convolutions take rank 3)")
    attrs = _conv_attrs(b.what(n), wv.shape, arg(n, 3, "stride", 1), arg(n, 4, "padding", 0), arg(n, 5, "dilation", 1),
                        int(arg(n, 8 if aten else 6, "groups", 1)), bias is not None)
    if b.kind(w) != "const":
        raise UnsupportedOpError(f"{b.what(n)}: its weight is computed from the input")
    key = str(w.target) if isinstance(w, fx.Node) and w.op == "get_attr" else f"{n.name}.weight"
    params = {"weight": b.add_param(key, wv.detach().unsqueeze(2))}
    if bias is not None:
        params["bias"] = b.param(bias, n, "bias")
    _as_2d(b, n, Op.CONV2D, attrs, params)


def _max_pool1d(b: Builder, n: fx.Node) -> None:
    if arg(n, 6, "return_indices", False):
        raise UnsupportedOpError(f"{b.what(n)} with return_indices=True")
    _as_2d(b, n, Op.MAXPOOL, _pool_attrs(b.what(n), arg(n, 1, "kernel_size"), arg(n, 2, "stride", None),
                                         arg(n, 3, "padding", 0), arg(n, 4, "dilation", 1), arg(n, 5, "ceil_mode", False)))


def _avg_pool1d(b: Builder, n: fx.Node) -> None:
    _as_2d(b, n, Op.AVGPOOL, _pool_attrs(b.what(n), arg(n, 1, "kernel_size"), arg(n, 2, "stride", None),
                                         arg(n, 3, "padding", 0), 1, arg(n, 4, "ceil_mode", False),
                                         arg(n, 5, "count_include_pad", True)))


def _adaptive_avg_pool1d(b: Builder, n: fx.Node) -> None:
    _as_2d(b, n, Op.ADAPTIVE_AVGPOOL, AdaptivePool((1, int(b.tshape(n)[-1]))))


def one_d_functions() -> dict[str, Handler]:
    """The handlers of this module by function name."""
    return {"conv1d": conv1d_function, "max_pool1d": _max_pool1d, "avg_pool1d": _avg_pool1d,
            "adaptive_avg_pool1d": _adaptive_avg_pool1d}
