"""ONNX 3-D Conv, MaxPool and AveragePool on ``(N, C, D, H, W)`` as exact compositions of the IR's 2-D ops, the
decompositions :mod:`mapping._torch_3d` documents and builds (:func:`~mapping._torch_3d.conv3d_nodes`: a CONV2D per
output depth and depth tap, tap ``t``'s weight ``W[:, :, t]`` stored once; :func:`~mapping._torch_3d.pool3d_nodes`:
a 2-D pool over (H, W), then one over the depth). Pads must be symmetric in H and W (and, for pools, in D); a
Conv's depth pads may differ (a PAD node adds them)."""
from __future__ import annotations

from mapping._torch_3d import Emit, conv3d_nodes, pool3d_nodes
from mapping.graph import Conv2d, Op, Pool
from mapping.onnx_importer import window_pads

__all__ = ["conv3d", "pool3d"]


def _window(imp, n, kernel) -> tuple[tuple, tuple, list[tuple[int, int]]]:
    """strides, dilations, pads of a 3-D window op of ``kernel`` (kd, kh, kw); asymmetric H/W pads refused."""
    s = tuple(int(v) for v in imp.attr(n, "strides", [1, 1, 1]))
    d = tuple(int(v) for v in imp.attr(n, "dilations", [1, 1, 1]))
    pads = window_pads(imp, n, imp.shape(n.input[0])[2:], kernel, s, d)
    if any(a != b for a, b in pads[1:]):
        imp.refuse(n, f"asymmetric pads {pads} in H or W of a 3-D {n.op_type}")
    return s, d, pads


def _emitter(imp, n, meta=None) -> Emit:
    def emit(op, inputs, attrs, params, suffix, shape):
        return imp.emit(n, op, inputs, attrs, params, meta if op == Op.CONV2D else None,
                        name=imp.fresh(n, suffix) if suffix else None, shape=shape)
    return emit


def _input(imp, n) -> tuple[str, tuple, tuple]:
    imp.batched(n, n.input[0])
    x = imp.act(n.input[0], n)
    return x, imp.shapes[x], imp.out_shape(n, n.output[0])


def conv3d(imp, n, weight, meta=None) -> None:
    """Conv with a constant 5-D weight (Cout, Cin/group, kd, kh, kw) -> :func:`mapping._torch_3d.conv3d_nodes`."""
    bias = imp.const_input(n, 2, "bias")
    group, k = int(imp.attr(n, "group", 1)), tuple(int(v) for v in weight.shape[2:])
    s, d, pads = _window(imp, n, k)
    x, shape, out = _input(imp, n)
    taps = [imp.add_param(f"{n.input[1]}.t{t}", weight[:, :, t], n, f"weight.t{t}") for t in range(k[0])]
    b = imp.add_param(n.input[2], bias, n, "bias") if bias is not None else None
    attrs = Conv2d(int(weight.shape[1]) * group, int(weight.shape[0]), k[1:], s[1:], (pads[1][0], pads[2][0]),
                   d[1:], group, False)
    conv3d_nodes(_emitter(imp, n, meta), x, shape, out, taps, b, attrs, (k[0], s[0], *pads[0], d[0]),
                 f"{n.op_type} '{imp.node_name(n)}'")


def pool3d(imp, n, op: Op) -> None:
    """MaxPool / AveragePool with a 3-D kernel -> :func:`mapping._torch_3d.pool3d_nodes`: the (kh, kw) pool of the
    (N, C·D, H, W) view, then the (kd, 1) pool of the (N, C, D, H'·W') view."""
    k = tuple(int(v) for v in imp.attr(n, "kernel_shape"))
    s, d, pads = _window(imp, n, k)
    if pads[0][0] != pads[0][1]:
        imp.refuse(n, f"asymmetric depth pads {pads[0]} of a 3-D {n.op_type}")
    if op == Op.AVGPOOL and d != (1, 1, 1):
        imp.refuse(n, "dilated average pooling")
    ceil, cip = bool(imp.attr(n, "ceil_mode", 0)), bool(imp.attr(n, "count_include_pad", 0))
    plane = Pool(k[1:], s[1:], (pads[1][0], pads[2][0]), d[1:], ceil, cip)
    depth = Pool((k[0], 1), (s[0], 1), (pads[0][0], 0), (d[0], 1), ceil, cip)
    x, shape, out = _input(imp, n)
    pool3d_nodes(_emitter(imp, n), x, shape, out, op, plane, depth, f"{n.op_type} '{imp.node_name(n)}'")
