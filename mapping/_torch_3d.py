"""3-d convolutions and pools (``nn.Conv3d``, ``F.conv3d``, ``nn.MaxPool3d`` / ``AvgPool3d`` /
``AdaptiveAvgPool3d``, ``nn.BatchNorm3d`` and their functions) as exact compositions of the IR's 2-d ops, as
:mod:`mapping._torch_1d` does for 1-d ones; :mod:`mapping.onnx_3d` shares the decompositions (:func:`conv3d_nodes`,
:func:`pool3d_nodes`) through an ``emit`` callable.

Conv3d on ``(N, C, D, H, W)``, kernel ``(kd, kh, kw)``: the input is zero-padded along the depth (a PAD node,
``pd`` before and after) and output depth slice ``o`` is ``Σ_t CONV2D(x[:, :, o·sd + t·dd], W[:, :, t])`` (SLICE
of one depth, RESHAPE to 4-d, CONV2D with the 2-d padding/stride/dilation, ADD over the ``kd`` taps, the bias added
once by tap 0); the ``D'`` slices are RESHAPEd to ``(N, C', 1, H', W')`` and CONCATenated along the depth. Tap
``t``'s weight ``W[:, :, t]`` is stored once under ``<key>.t<t>`` and read by every output depth (memory once,
compute per use), so the parameter count is torch's. Taps on the depth padding run on zero slices: the MACs are
``N·Cout·D'·H'·W'·(Cin/g)·kd·kh·kw``, padded taps included, as hwsim counts its 2-d convolutions and as
``torch.utils.flop_counter.FlopCounterMode`` counts conv3d (its FLOPs are 2x these MACs). ``D'·kd`` CONV2D nodes
per layer: above :data:`MAX_TAPS` the layer is refused.

Pools are separable: a 3-d max / average window is the 2-d window over (H, W) followed by a window over the depth,
and the divisor of an average (torch's ``count_include_pad`` and ``ceil_mode`` rules) is the product of the
per-axis ones. So ``(N, C, D, H, W)`` is viewed as ``(N, C·D, H, W)``, pooled over (H, W) with kernel ``(kh, kw)``,
viewed as ``(N, C, D, H'·W')``, pooled with kernel ``(kd, 1)`` (stride ``(sd, 1)``, padding ``(pd, 0)``, dilation
``(dd, 1)``), and viewed as ``(N, C, D', H', W')``: five nodes, whatever the depth. Adaptive average pools the same
way (an adaptive window of output size equal to the input size is the identity). BatchNorm3d is BATCHNORM on the
5-d value (channels on dim 1); it follows a CONCAT, so ``fold_bn`` leaves it unfolded.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping._torch_moves import Handler, _first_only, _x, arg
from mapping.graph import AdaptivePool, BatchNorm, Concat, Conv2d, NoAttrs, Op, Pad, Pool, Reshape, Slice

__all__ = ["THREE_D_MODULES", "MAX_TAPS", "three_d_module", "three_d_functions", "conv3d_function",
           "conv3d_nodes", "pool3d_nodes", "Emit"]

THREE_D_MODULES = (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.BatchNorm3d)
MAX_TAPS = 512  # D'·kd CONV2D nodes of one unrolled Conv3d at most (the graph grows by ~2 nodes per tap)

# emit(op, inputs, attrs, params, suffix, shape) -> the new value's name; suffix "" names the op's own output
Emit = Callable[[Op, list, Any, "dict[str, str] | None", str, tuple], str]


def _triple(v: Any) -> tuple[int, int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]),) * 3 if len(v) == 1 else tuple(int(a) for a in v)
    return (int(v),) * 3


def conv3d_nodes(emit: Emit, x: str, shape: tuple, out: tuple, taps: list[str], bias: str | None, attrs: Conv2d,
                 depth: tuple[int, int, int, int, int], where: str) -> str:
    """The nodes of a 3-d convolution of IR value ``x`` (``shape`` (N, C, D, H, W)) to ``out`` (N, C', D', H', W'):
    ``taps[t]`` the parameter key of ``W[:, :, t]``, ``attrs`` the 2-d convolution over (H, W), ``depth`` = (kd,
    sd, pad before, pad after, dd)."""
    kd, sd, lo, hi, dd = depth
    if len(shape) != 5 or len(out) != 5:
        raise UnsupportedOpError(f"{where} of a value of shape {shape} (hwsim maps (N, C, D, H, W))")
    if out[2] * kd > MAX_TAPS:
        raise UnsupportedOpError(f"{where}: {out[2]} output depths x {kd} depth taps = {out[2] * kd} 2-d "
                                 f"convolutions when unrolled (at most {MAX_TAPS} per layer)")
    if lo or hi:
        shape = shape[:2] + (shape[2] + lo + hi,) + shape[3:]
        x = emit(Op.PAD, [x], Pad(((0, 0), (0, 0), (lo, hi), (0, 0), (0, 0))), None, "dpad", shape)
    plane, slices, parts = out[:2] + out[3:], {}, []
    for o in range(out[2]):
        acc = None
        for t in range(kd):
            i = o * sd + t * dd
            if i not in slices:
                s = emit(Op.SLICE, [x], Slice(2, i, i + 1), None, f"d{i}", shape[:2] + (1,) + shape[3:])
                slices[i] = emit(Op.RESHAPE, [s], Reshape(shape[1:2] + shape[3:]), None, f"d{i}_2d",
                                 shape[:2] + shape[3:])
            params = {"weight": taps[t]} | ({"bias": bias} if bias is not None and t == 0 else {})
            a = Conv2d(attrs.in_channels, attrs.out_channels, attrs.kernel, attrs.stride, attrs.padding,
                       attrs.dilation, attrs.groups, "bias" in params)
            y = emit(Op.CONV2D, [slices[i]], a, params, f"o{o}_t{t}", plane)
            acc = y if acc is None else emit(Op.ADD, [acc, y], NoAttrs(), None, f"o{o}_sum{t}", plane)
        last = out[2] == 1
        one = out[:2] + (1,) + out[3:]
        parts.append(emit(Op.RESHAPE, [acc], Reshape(one[1:]), None, "" if last else f"o{o}", one))
    return parts[0] if len(parts) == 1 else emit(Op.CONCAT, parts, Concat(2), None, "", out)


def pool3d_nodes(emit: Emit, x: str, shape: tuple, out: tuple, op: Op, plane: Any, depth: Any, where: str) -> str:
    """A separable 3-d pool of IR value ``x`` (``shape`` (N, C, D, H, W)) to ``out``: ``op`` (MAXPOOL, AVGPOOL or
    ADAPTIVE_AVGPOOL) with attributes ``plane`` over (H, W) of the (N, C·D, H, W) view, then with ``depth`` (a
    ``(kd, 1)`` window, or an adaptive output size ``(D', H'·W')``) over (D, H'·W') of the (N, C, D, H'·W') view."""
    if len(shape) != 5 or len(out) != 5:
        raise UnsupportedOpError(f"{where} of a value of shape {shape} (hwsim maps (N, C, D, H, W))")
    n, c, d = shape[:3]
    hw = out[3] * out[4]
    v = emit(Op.RESHAPE, [x], Reshape((c * d,) + shape[3:]), None, "cd", (n, c * d) + shape[3:])
    v = emit(op, [v], plane, None, "hw", (n, c * d) + out[3:])
    v = emit(Op.RESHAPE, [v], Reshape((c, d, hw)), None, "d_hw", (n, c, d, hw))
    v = emit(op, [v], depth, None, "depth", (n, c, out[2], hw))
    return emit(Op.RESHAPE, [v], Reshape(out[1:]), None, "", out)


# ---------------------------------------------------------------------------------------------- torch
def _emitter(b: Builder, n: fx.Node, module: str | None = None) -> Emit:
    def emit(op, inputs, attrs, params, suffix, shape):
        return b.emit(n, op, inputs, attrs, params, name=f"{n.name}_{suffix}" if suffix else None, shape=shape,
                      module=module)
    return emit


def _conv(b: Builder, n: fx.Node, w: torch.Tensor, key: str, bias: str | None, stride, padding, dilation,
          groups: int, module: str | None = None) -> None:
    """Conv3d of fx node ``n``'s input by constant weight ``w`` (Cout, Cin/g, kd, kh, kw) stored under ``key``."""
    from mapping.trace import conv_padding

    where, k, s, d = b.what(n), tuple(int(v) for v in w.shape[2:]), _triple(stride), _triple(dilation)
    if isinstance(padding, str):
        total = d[0] * (k[0] - 1) if padding == "same" else 0
        lo, hi = total // 2, total - total // 2
    else:
        lo = hi = _triple(padding)[0]
    try:
        p2 = conv_padding(padding if isinstance(padding, str) else _triple(padding)[1:], k[1:], d[1:])
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{where}: {e}") from None
    src = _x(b, n)
    if b.offset(n.args[0]):
        raise UnsupportedOpError(f"{where} of a value whose first dimension is not the batch")
    taps = [b.add_param(f"{key}.t{t}", w.detach()[:, :, t].contiguous()) for t in range(k[0])]
    attrs = Conv2d(int(w.shape[1]) * int(groups), int(w.shape[0]), k[1:], s[1:], p2, d[1:], int(groups), False)
    conv3d_nodes(_emitter(b, n, module), src, b.shapes[src], b.out_shape(n), taps, bias, attrs,
                 (k[0], s[0], lo, hi, d[0]), where)


def _max_attrs(kernel, stride, padding, dilation, ceil: bool) -> tuple[Pool, Pool]:
    k, p, d = _triple(kernel), _triple(padding), _triple(dilation)
    s = k if stride in (None, [], ()) else _triple(stride)
    return (Pool(k[1:], s[1:], p[1:], d[1:], bool(ceil)),
            Pool((k[0], 1), (s[0], 1), (p[0], 0), (d[0], 1), bool(ceil)))


def _avg_attrs(kernel, stride, padding, ceil: bool, count_include_pad: bool) -> tuple[Pool, Pool]:
    k, p = _triple(kernel), _triple(padding)
    s = k if stride in (None, [], ()) else _triple(stride)
    return (Pool(k[1:], s[1:], p[1:], (1, 1), bool(ceil), bool(count_include_pad)),
            Pool((k[0], 1), (s[0], 1), (p[0], 0), (1, 1), bool(ceil), bool(count_include_pad)))


def _adaptive_attrs(out: tuple) -> tuple[AdaptivePool, AdaptivePool]:
    return AdaptivePool((out[3], out[4])), AdaptivePool((out[2], out[3] * out[4]))


def _pool(b: Builder, n: fx.Node, op: Op, attrs: tuple, module: str | None = None, out: tuple | None = None) -> None:
    src = _x(b, n)
    if b.offset(n.args[0]):
        raise UnsupportedOpError(f"{b.what(n)} of a value whose first dimension is not the batch")
    pool3d_nodes(_emitter(b, n, module), src, b.shapes[src], out or b.out_shape(n), op, *attrs, b.what(n))


def three_d_module(b: Builder, n: fx.Node, m: nn.Module) -> None:
    """A call of a ``THREE_D_MODULES`` layer."""
    path, what = str(n.target), f"{type(m).__name__} at '{n.target}'"
    if isinstance(m, nn.Conv3d):
        if m.padding_mode != "zeros":
            raise UnsupportedOpError(f"{what}: padding_mode={m.padding_mode!r}")
        bias = b.add_param(f"{path}.bias", m.bias) if m.bias is not None else None
        _conv(b, n, m.weight, f"{path}.weight", bias, m.stride, m.padding, m.dilation, m.groups, path)
    elif isinstance(m, nn.MaxPool3d):
        if m.return_indices:
            raise UnsupportedOpError(f"{what}: return_indices=True")
        _pool(b, n, Op.MAXPOOL, _max_attrs(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode), path)
    elif isinstance(m, nn.AvgPool3d):
        if m.divisor_override is not None:
            raise UnsupportedOpError(f"{what}: divisor_override")
        _pool(b, n, Op.AVGPOOL, _avg_attrs(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad),
              path)
    elif isinstance(m, nn.AdaptiveAvgPool3d):
        _pool(b, n, Op.ADAPTIVE_AVGPOOL, _adaptive_attrs(b.out_shape(n)), path)
    else:
        _batch_norm_3d(b, n, m, path, what)


def _batch_norm_3d(b: Builder, n: fx.Node, m: nn.BatchNorm3d, path: str, what: str) -> None:
    if not m.track_running_stats or m.running_mean is None:
        raise UnsupportedOpError(f"{what}: BatchNorm without running statistics")
    if b.offset(n.args[0]) or len(b.tshape(n.args[0])) != 5:
        raise UnsupportedOpError(f"{what} of a value of shape {b.tshape(n.args[0])} (hwsim maps (N, C, D, H, W))")
    roles = [("mean", "running_mean"), ("var", "running_var")] + \
        ([("gamma", "weight"), ("beta", "bias")] if m.affine else [])
    params = {role: b.add_param(f"{path}.{attr}", getattr(m, attr)) for role, attr in roles}
    b.emit(n, Op.BATCHNORM, [_x(b, n)], BatchNorm(m.num_features, float(m.eps)), params, module=path)


def conv3d_function(b: Builder, n: fx.Node) -> None:
    """``F.conv3d(x, weight, bias, stride, padding, dilation, groups)`` (and ATen's convolution with a 5-d weight:
    ``convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)``)."""
    aten = n.target is torch.ops.aten.convolution.default
    w, bias = arg(n, 1, "weight"), arg(n, 2, "bias", None)
    wv = b.val(w)
    if b.kind(w) != "const":
        raise UnsupportedOpError(f"{b.what(n)}: its weight is computed from the input")
    if wv.dim() != 5:
        raise UnsupportedOpError(f"{b.what(n)}: a weight of rank {wv.dim()} (3-d convolutions take rank 5)")
    key = str(w.target) if isinstance(w, fx.Node) and w.op == "get_attr" else f"{n.name}.weight"
    _conv(b, n, wv, key, b.param(bias, n, "bias") if bias is not None else None, arg(n, 3, "stride", 1),
          arg(n, 4, "padding", 0), arg(n, 5, "dilation", 1), int(arg(n, 8 if aten else 6, "groups", 1)))


def _max_pool3d(b: Builder, n: fx.Node) -> None:
    out = None
    if n.target is torch.ops.aten.max_pool3d_with_indices.default:
        b.parts[n.name] = lambda i, g: _first_only(b, g, i, n)
        out = b.out_shape(n, b.values[n.name][0].shape)
    elif arg(n, 6, "return_indices", False):
        raise UnsupportedOpError(f"{b.what(n)} with return_indices=True")
    _pool(b, n, Op.MAXPOOL, _max_attrs(arg(n, 1, "kernel_size"), arg(n, 2, "stride", None), arg(n, 3, "padding", 0),
                                       arg(n, 4, "dilation", 1), arg(n, 5, "ceil_mode", False)), out=out)


def _avg_pool3d(b: Builder, n: fx.Node) -> None:
    if arg(n, 6, "divisor_override", None) is not None:
        raise UnsupportedOpError(f"{b.what(n)} with divisor_override")
    _pool(b, n, Op.AVGPOOL, _avg_attrs(arg(n, 1, "kernel_size"), arg(n, 2, "stride", None), arg(n, 3, "padding", 0),
                                       arg(n, 4, "ceil_mode", False), arg(n, 5, "count_include_pad", True)))


def _adaptive_avg_pool3d(b: Builder, n: fx.Node) -> None:
    _pool(b, n, Op.ADAPTIVE_AVGPOOL, _adaptive_attrs(b.out_shape(n)))


def three_d_functions() -> dict[str, Handler]:
    """The handlers of this module by function name."""
    return {"conv3d": conv3d_function, "max_pool3d": _max_pool3d, "max_pool3d_with_indices": _max_pool3d,
            "avg_pool3d": _avg_pool3d, "adaptive_avg_pool3d": _adaptive_avg_pool3d,
            "_adaptive_avg_pool3d": _adaptive_avg_pool3d}
