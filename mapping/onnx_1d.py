"""ONNX 1-D Conv, MaxPool and AveragePool on ``(N, C, L)`` as the IR's 2-D ops on a unit height (as
:mod:`mapping._torch_1d` does for torch): the input is viewed as ``(N, C, 1, L)``, the op runs with kernel
``(1, k)``, stride ``(1, s)``, pads ``(0, p)``, dilation ``(1, d)``, and its output is viewed back; a Conv weight
``(Cout, Cin/group, k)`` is stored as ``(Cout, Cin/group, 1, k)``. Asymmetric pads are refused."""
from __future__ import annotations

from mapping.graph import Conv2d, Op, Pool, Reshape
from mapping.onnx_importer import window_pads

__all__ = ["conv1d", "pool1d"]


def _pads(imp, n, size: int, k: int, s: int, d: int) -> int:
    """The symmetric pad of a 1-D window op from ``pads`` or ``auto_pad`` (asymmetric: refused)."""
    ((begin, end),) = window_pads(imp, n, [size], [k], [s], [d])
    if begin != end:
        imp.refuse(n, f"asymmetric pads {(begin, end)} of a 1-D {n.op_type}")
    return begin


def _window(imp, n, k: int) -> tuple[int, int, int]:
    """stride, dilation, pad of a 1-D window op of kernel ``k``."""
    s = int(imp.attr(n, "strides", [1])[0])
    d = int(imp.attr(n, "dilations", [1])[0])
    return s, d, _pads(imp, n, imp.shape(n.input[0])[2], k, s, d)


def _as_2d(imp, n, op: Op, attrs, params=None, meta=None) -> None:
    x = imp.act(n.input[0], n)
    shape, out = imp.shapes[x], imp.out_shape(n, n.output[0])
    if len(shape) != 3 or len(out) != 3:
        imp.refuse(n, f"a 1-D {n.op_type} of a value of shape {imp.shape(n.input[0])} (hwsim maps (N, C, L))")
    v = imp.reshape_to(n, x, (shape[0], shape[1], 1, shape[2]), "as2d")
    y = imp.emit(n, op, [v], attrs, params, meta, name=imp.fresh(n, op.value), shape=(out[0], out[1], 1, out[2]))
    imp.emit(n, Op.RESHAPE, [y], Reshape(out[1:]), shape=out)


def conv1d(imp, n, weight, meta=None) -> None:
    """Conv with a constant 3-D weight -> RESHAPE, CONV2D (1 x k), RESHAPE."""
    imp.batched(n, n.input[0])
    bias = imp.const_input(n, 2, "bias")
    group, k = int(imp.attr(n, "group", 1)), int(weight.shape[2])
    s, d, p = _window(imp, n, k)
    params = {"weight": imp.add_param(n.input[1], weight[:, :, None, :], n, "weight")}
    if bias is not None:
        params["bias"] = imp.add_param(n.input[2], bias, n, "bias")
    attrs = Conv2d(int(weight.shape[1]) * group, int(weight.shape[0]), (1, k), (1, s), (0, p), (1, d), group,
                   bias is not None)
    _as_2d(imp, n, Op.CONV2D, attrs, params, meta)


def pool1d(imp, n, op: Op) -> None:
    """MaxPool / AveragePool with a 1-D kernel -> RESHAPE, MAXPOOL / AVGPOOL (1 x k), RESHAPE."""
    imp.batched(n, n.input[0])
    k = int(imp.attr(n, "kernel_shape")[0])
    s, d, p = _window(imp, n, k)
    if op == Op.AVGPOOL and d != 1:
        imp.refuse(n, "dilated average pooling")
    _as_2d(imp, n, op, Pool((1, k), (1, s), (0, p), (1, d), bool(imp.attr(n, "ceil_mode", 0)),
                            bool(imp.attr(n, "count_include_pad", 0))))
