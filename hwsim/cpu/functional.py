"""Run an :class:`~hwsim.cpu.int8.Int8Program`: TFLite's int8 kernels, bit for bit (NCHW arrays).

Per step kind (TFLite reference kernels, tensorflow/lite/kernels/internal/reference/integer_ops/):

- conv / depthwise (conv.h, depthwise_conv.h): ``acc = Σ w · (x - zp_in)`` over in-bounds taps (a padded tap adds
  nothing), in int32 — computed exactly by :func:`hwsim.kernels.int8.conv2d_int` with the input zero point; then
  ``acc + bias[c]``, ``MultiplyByQuantizedMultiplier`` by ``s_in · s_w[c] / s_out``, ``+ zp_out``, clamp to the
  fused activation's range;
- fc (fully_connected.h, per-channel): the same over ``x`` [N, K] (:func:`hwsim.kernels.int8.gemm_int`);
- add, maxpool, avgpool, mean, requantize, relu: :mod:`hwsim.kernels._int8_tflite` (a mean, TFLite's MEAN over H
  and W or over L, takes the output shape of its node: N x C x 1 x 1 or N x C from a REDUCE_MEAN without keepdim);
- concat and reshape move int8 values (the concat's inputs already share its scale); pad (kernels/pad.cc, a zero
  pad) writes the input's zero point, the int8 code of 0.0, around the input; softmax dequantizes its input and
  runs the fp32 kernel.

An int32 intermediate that would overflow (TFLite would wrap) raises :class:`~hwsim.cpu.int8.Int8OverflowError`
naming the node.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hwsim.cpu.int8 import Int8OverflowError, Int8Program, Step
from hwsim.kernels import _int8_tflite as T
from hwsim.kernels.int8 import conv2d_int, gemm_int

__all__ = ["run_int8"]


def _checked(step: Step, res: tuple[np.ndarray, int]) -> np.ndarray:
    y, bad = res
    if bad:
        raise Int8OverflowError(f"int8 {step.kind} {step.node or step.output!r}: {bad} int32 intermediates "
                                "overflowed (TFLite would wrap them)")
    return y


def _requant(step: Step, acc: np.ndarray) -> np.ndarray:
    lo, hi = step.act_range
    return _checked(step, T.requantize_acc(acc, step.bias, step.multiplier, step.shift, step.out_q.zero_point,
                                           lo, hi))


def _conv(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    a = step.attrs
    acc = conv2d_int(xs[0], step.weight, a.stride, a.padding, a.dilation, a.groups,
                     x_zero_point=step.in_q[0].zero_point)
    return _requant(step, acc)


def _fc(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    acc = gemm_int(np.ascontiguousarray(xs[0]), step.weight, x_zero_point=step.in_q[0].zero_point)
    return _requant(step, acc)


def _add(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    m, s = step.multiplier, step.shift
    qa, qb = step.in_q
    lo, hi = step.act_range
    return _checked(step, T.add_int8(xs[0], xs[1], qa.zero_point, qb.zero_point, m[0], s[0], m[1], s[1], m[2], s[2],
                                     step.out_q.zero_point, lo, hi))


def _rescale(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    lo, hi = step.act_range
    return _checked(step, T.requantize_int8(xs[0], step.in_q[0].zero_point, step.multiplier[0], step.shift[0],
                                            step.out_q.zero_point, lo, hi))


def _mean(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    return _checked(step, T.mean_hw_int8(xs[0], step.in_q[0].zero_point, step.multiplier[0], step.shift[0],
                                         step.out_q.zero_point))


def _pool(step: Step, xs: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
    a, hw = step.attrs, out_shape[2:]
    if step.kind == "maxpool":
        return T.max_pool_int8(xs[0], a.kernel, a.stride, a.padding, a.dilation, hw)
    return T.avg_pool_int8(xs[0], a.kernel, a.stride, a.padding, hw)


def _pad(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    """TFLite PAD on int8: the pads filled with the output's zero point (= the input's; the IR pad's value is 0.0);
    MIRROR_PAD (a reflect pad): the int8 values reflected (numpy's "reflect" is torch's)."""
    if step.attrs.mode == "reflect":
        return np.pad(xs[0], step.attrs.pads, mode="reflect")
    return np.pad(xs[0], step.attrs.pads, mode="constant", constant_values=np.int8(step.out_q.zero_point))


def _softmax(step: Step, xs: list[np.ndarray]) -> np.ndarray:
    from hwsim.kernels import fp32 as K

    return K.softmax(step.in_q[0].dequantize(xs[0]), step.attrs.dim, step.attrs.log)


_EXEC: Mapping[str, Callable[[Step, list[np.ndarray]], np.ndarray]] = {
    "conv": _conv, "depthwise": _conv, "fc": _fc, "add": _add, "requantize": _rescale, "relu": _rescale,
    "softmax": _softmax, "pad": _pad,
    "concat": lambda step, xs: np.concatenate(xs, axis=step.attrs.dim),
}


def run_int8(program: Int8Program, x: np.ndarray, keep: bool = False):
    """Execute ``program`` on the float input ``x`` (any batch). Returns the list of float32 outputs, or
    ``(outputs, values)`` with every int8 tensor (and the input's int8 codes) when ``keep``."""
    from hwsim.functional import check_values

    x = check_values(x)
    want = program.shapes[program.input]
    if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(want[1:]):
        from hwsim.errors import ShapeError

        raise ShapeError(f"input of shape {tuple(x.shape)} does not match the int8 program's input "
                         f"(N, {', '.join(map(str, want[1:]))})")
    n = x.shape[0]
    values: dict[str, np.ndarray] = {program.input: program.input_q.quantize(x)}
    for step in program.steps:
        xs = [values[i] for i in step.inputs]
        shape = (n,) + tuple(program.shapes[step.output][1:])
        if step.kind in ("maxpool", "avgpool"):
            y = _pool(step, xs, shape)
        elif step.kind == "reshape":
            y = xs[0].reshape(shape)
        elif step.kind == "mean":  # N x C x 1 x 1 from the kernel; (N, C) or (N, C, 1) for a REDUCE_MEAN
            y = _mean(step, xs).reshape(shape)
        else:
            y = _EXEC[step.kind](step, xs)
        values[step.output] = y
    outs = []
    for o in program.outputs:
        v = values[o]
        outs.append(v if v.dtype == np.float32 else program.qparams[o].dequantize(v))
    return (outs, values) if keep else outs
