"""The standard ONNX pooling, reduction and resizing ops (opsets 13-21) as IR nodes: MaxPool, AveragePool,
GlobalAveragePool, GlobalMaxPool, ReduceMean/Sum/Max/Min/L1/L2/SumSquare, Resize; and the 2-D window helpers
(pads, kernel, strides) the convolution shares. Pooling and resizing read NCHW with the batch first; reductions
translate their axes by the operand's offset (a value that moved the batch, with batch 1).
"""
from __future__ import annotations

import numpy as np

from mapping.graph import AdaptivePool, Op, Pool, Reduce, Scalar, Upsample
from mapping.onnx_1d import pool1d
from mapping.onnx_3d import pool3d
from mapping.onnx_importer import registrar, window_pads

__all__ = ["CONVERTERS", "pads2d", "window"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)


def pads2d(imp, n, in_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (:func:`mapping.onnx_importer.window_pads`)."""
    (t, b), (left, r) = window_pads(imp, n, in_hw, kernel, strides, dilations)
    return t, left, b, r


def window(imp, n, what: str):
    """kernel, strides, dilations of a 2-D window op (``kernel_shape`` or the weight's)."""
    kernel = tuple(int(k) for k in imp.attr(n, "kernel_shape", []))
    if len(kernel) != 2:
        imp.refuse(n, f"{len(kernel)}-D {what} (hwsim maps 2-D {what}s on NCHW)")
    return kernel, tuple(int(s) for s in imp.attr(n, "strides", [1, 1])), \
        tuple(int(d) for d in imp.attr(n, "dilations", [1, 1]))


# ----------------------------------------------------------------------------- pooling
def _pool(imp, n) -> Pool:
    imp.batched(n, n.input[0])
    kernel, strides, dil = window(imp, n, "pool")
    if len(imp.shape(n.input[0])) != 4:
        imp.refuse(n, "pooling of a tensor that is not NCHW")
    t, left, bottom, right = pads2d(imp, n, imp.shape(n.input[0])[2:], kernel, strides, dil)
    if (t, left) != (bottom, right):
        imp.refuse(n, f"asymmetric pads {(t, left, bottom, right)}")
    return Pool(kernel, strides, (t, left), dil, bool(imp.attr(n, "ceil_mode", 0)),
                bool(imp.attr(n, "count_include_pad", 0)))


@converts("MaxPool")
def maxpool(imp, n) -> None:
    """MaxPool 2-D with symmetric pads -> MAXPOOL (the Indices output is refused); 1-D / 3-D: :mod:`mapping.onnx_1d` /
    :mod:`mapping.onnx_3d`."""
    if len(n.output) > 1 and n.output[1] and imp.consumers(n.output[1]):
        imp.refuse(n, "its Indices output is used")
    if len(imp.attr(n, "kernel_shape", [])) in (1, 3):
        return (pool1d if len(imp.attr(n, "kernel_shape")) == 1 else pool3d)(imp, n, Op.MAXPOOL)
    imp.emit(n, Op.MAXPOOL, [imp.act(n.input[0], n)], _pool(imp, n))


@converts("AveragePool")
def avgpool(imp, n) -> None:
    """AveragePool 2-D with symmetric pads, no dilation -> AVGPOOL (count_include_pad as given)."""
    if len(imp.attr(n, "kernel_shape", [])) in (1, 3):
        return (pool1d if len(imp.attr(n, "kernel_shape")) == 1 else pool3d)(imp, n, Op.AVGPOOL)
    p = _pool(imp, n)
    if p.dilation != (1, 1):
        imp.refuse(n, "dilated average pooling")
    imp.emit(n, Op.AVGPOOL, [imp.act(n.input[0], n)], p)


@converts("GlobalAveragePool", "GlobalMaxPool")
def global_pool(imp, n) -> None:
    """GlobalAveragePool of NCHW -> ADAPTIVE_AVGPOOL to 1x1; of other ranks -> REDUCE_MEAN; GlobalMaxPool ->
    REDUCE_MAX over the spatial dims, keeping them."""
    imp.batched(n, n.input[0])
    rank = len(imp.shape(n.input[0]))
    x = imp.act(n.input[0], n)
    if n.op_type == "GlobalAveragePool" and rank == 4:
        imp.emit(n, Op.ADAPTIVE_AVGPOOL, [x], AdaptivePool((1, 1)))
    else:
        op = Op.REDUCE_MEAN if n.op_type == "GlobalAveragePool" else Op.REDUCE_MAX
        imp.emit(n, op, [x], Reduce(tuple(range(2, rank)), True))


# ----------------------------------------------------------------------------- reductions, resizing
_REDUCE = {"ReduceMean": Op.REDUCE_MEAN, "ReduceSum": Op.REDUCE_SUM, "ReduceMax": Op.REDUCE_MAX}
# composed reductions: (elementwise op before and its Scalar, reduction, elementwise op after)
_COMPOSED = {"ReduceL2": ((Op.POW, 2.0), Op.REDUCE_SUM, Op.SQRT),
             "ReduceSumSquare": ((Op.POW, 2.0), Op.REDUCE_SUM, None),
             "ReduceL1": ((Op.ABS, None), Op.REDUCE_SUM, None), "ReduceMin": ((Op.NEG, None), Op.REDUCE_MAX, Op.NEG)}


@converts(*_REDUCE, *_COMPOSED)
def reduce(imp, n) -> None:
    """ReduceMean/Sum/Max over constant non-batch axes -> REDUCE_MEAN/SUM/MAX(dims, keepdim); ReduceMean over H, W of
    NCHW keeping dims -> ADAPTIVE_AVGPOOL to 1x1 (the same function, the op hwsim's targets know). ReduceL2 -> POW 2,
    REDUCE_SUM, SQRT; ReduceSumSquare -> POW 2, REDUCE_SUM; ReduceL1 -> ABS, REDUCE_SUM; ReduceMin -> NEG,
    REDUCE_MAX, NEG. A reduction that drops dims of a value with a leading unit batch dim is viewed as its
    output's IR shape."""
    axes = imp.const_input(n, 1, "axes")
    axes = imp.attr(n, "axes", []) if axes is None else axes.reshape(-1).tolist()
    x = imp.act(n.input[0], n)
    if not axes:
        if imp.attr(n, "noop_with_empty_axes", 0) and n.op_type in _REDUCE:
            imp.alias(n, n.input[0])
            return
        imp.refuse(n, "reduces over every dim, the batch included")
    dims = tuple(sorted({imp.dim(n, n.input[0], a, "reduced axis") for a in axes}))
    keep = bool(imp.attr(n, "keepdims", 1))
    shape = imp.shapes[x]
    if n.op_type == "ReduceMean" and len(shape) == 4 and dims == (2, 3) and keep and not imp.offset(n.input[0]):
        imp.emit(n, Op.ADAPTIVE_AVGPOOL, [x], AdaptivePool((1, 1)))
        return
    natural = tuple(1 if d in dims else s for d, s in enumerate(shape) if keep or d not in dims)
    if n.op_type in _REDUCE:
        imp.emit_as(n, _REDUCE[n.op_type], [x], Reduce(dims, keep), natural)
        return
    (before, value), op, after = _COMPOSED[n.op_type]
    x = imp.emit(n, before, [x], None if value is None else Scalar(value), name=imp.fresh(n, before.value),
                 shape=shape)
    if after is None:
        imp.emit_as(n, op, [x], Reduce(dims, keep), natural)
        return
    y = imp.emit(n, op, [x], Reduce(dims, keep), name=imp.fresh(n, op.value), shape=natural)
    imp.emit_as(n, after, [y], None, natural)


# torch's nearest-exact, input index floor((i + 0.5) / s) for output index i and scale s: ONNX's half_pixel
# coordinates (i + 0.5) / s - 0.5 rounded half up, or tf_half_pixel_for_nn's (i + 0.5) / s floored; rounded half
# down, half_pixel agrees with it at whole factors (no ties there). half_pixel with floor is neither (onnxruntime:
# output 2 of a 2x upscale reads input 0).
_NEAREST_EXACT = {("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel", "round_prefer_ceil"),
                  ("half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_floor"),
                  ("tf_half_pixel_for_nn", "floor")}


def _nearest_exact(imp, n, src: tuple[int, ...], out: tuple[int, ...]) -> Upsample:
    """A nearest-exact Resize (``_NEAREST_EXACT``) as UPSAMPLE nearest: at whole upscaling factors s (output i = k·s
    + r, r < s) every form reads input k, as nearest (floor(i / s)) does; other factors are refused. A ``scales``
    input must be those factors exactly (ONNX maps pixels by it, not by the size ratio)."""
    factors = [o / i for o, i in zip(out[2:], src[2:])]
    if any(o % i for o, i in zip(out[2:], src[2:])):
        imp.refuse(n, f"nearest-exact resizing (coordinate_transformation_mode "
                      f"{imp.attr(n, 'coordinate_transformation_mode')!r}) by factors {factors[0]:g} x {factors[1]:g} "
                      f"from {src[2:]} to {out[2:]}: only whole upscaling factors (where it equals nearest)")
    scales = imp.const_input(n, 2, "scales") if len(n.input) > 2 and n.input[2] else None
    if scales is not None and np.size(scales) and [float(v) for v in np.ravel(scales)[-2:]] != factors:
        imp.refuse(n, f"nearest-exact resizing by scales {', '.join(f'{float(v):g}' for v in np.ravel(scales))}: "
                      f"ONNX maps pixels by them, not by the size ratio {factors[0]:g} x {factors[1]:g}")
    return Upsample(out[2:], "nearest")


@converts("Resize")
def resize(imp, n) -> None:
    """Resize of H, W of NCHW -> UPSAMPLE to the output's size: mode nearest with coordinates asymmetric and
    nearest_mode floor (torch's nearest); linear with half_pixel / pytorch_half_pixel (bilinear) or align_corners;
    torch's nearest-exact (:func:`_nearest_exact`) at whole factors."""
    imp.batched(n, n.input[0])
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
    elif mode == "nearest" and (coords, imp.attr(n, "nearest_mode", "round_prefer_floor")) in _NEAREST_EXACT:
        attrs = _nearest_exact(imp, n, src, out)
    elif mode == "nearest" and coords == "asymmetric":
        imp.refuse(n, f"nearest_mode {imp.attr(n, 'nearest_mode', 'round_prefer_floor')!r} (hwsim maps torch's "
                      "nearest: nearest_mode 'floor' with coordinate_transformation_mode 'asymmetric')")
    else:
        imp.refuse(n, f"mode {mode!r} with coordinate_transformation_mode {coords!r} (hwsim maps torch's nearest "
                      "and bilinear)")
    imp.emit(n, Op.UPSAMPLE, [imp.act(n.input[0], n)], attrs)
