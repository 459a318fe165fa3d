"""int8 as deployed on embedded CPUs: an IR graph turned into the integer program TFLite's post-training
quantization produces (TFLite / TFLite Micro with CMSIS-NN, XNNPACK; ncnn int8 follows the same scheme).

The scheme (TFLite's quantization spec, tensorflow/lite/g3doc/performance/quantization_spec.md; the parameter
arithmetic of tensorflow/lite/tools/optimize/quantization_utils.cc, in float32 as there):

- weights of conv / depthwise conv / fully connected: int8, symmetric per output channel, zero point 0, narrow range
  [-127, 127]: ``s_w[c] = max|W[c]| / 127``, ``q = round(W · (127 / max|W[c]|))`` (float32, ``std::round``: half away
  from zero), the range widened where the bias would not fit in int32 (``AdjustWeightsForBiasScale``). An all-zero
  channel gets ``s_w = 1`` (its weights are 0 whatever the scale; TFLite would store 0);
- activations: int8 per tensor, asymmetric: the calibration range (min, max) over the calibration batch of the
  *float* network, widened to include 0, ``s = (max - min) / 255``, ``zp = round(-128 - min / s)`` clamped to
  [-128, 127] (``GetAsymmetricQuantizationParams``); a tensor that is 0 on the whole calibration batch gets s = 1;
- bias: int32, scale ``s_in · s_w[c]``, zero point 0 (``SymmetricPerChannelBiasQuantize``);
- max/avg pooling, reshape and a constant-zero pad keep their input's scale and zero point (the spec's "same scale"
  restriction; TFLite's PAD fills with the input's zero point, the exact int8 code of 0.0: kernels/pad.cc); a
  concat's inputs whose (scale, zero point) differ from the concat's are requantized first (the QUANTIZE int8->int8
  op the converter inserts); ReLU/ReLU6 right after a conv, fully connected or add are fused into it as the clamp
  of its output range (``CalculateActivationRangeQuantized``); a ReLU that cannot be fused is TFLite's RELU kernel
  (a requantization to its own range, then the clamp); global average pooling (``AdaptiveAvgPool2d(1)``, or a
  REDUCE_MEAN over exactly the spatial dims: :func:`hwsim.cpu.int8_checks.is_global_mean`) is TFLite's MEAN over H
  and W;
- a softmax that ends the network stays in float32 (its int8 input is dequantized); TFLite Micro would run an int8
  softmax whose 1/256 output grid this does not model.

The graph's input is quantized with its calibration (scale, zero point) as TFLite's QUANTIZE float->int8 does, and
every output is dequantized, so :func:`hwsim.cpu.functional.run_int8` takes and returns float32 like the fp32 path.
What the program computes, step by step, is in :mod:`hwsim.cpu.functional` and :mod:`hwsim.kernels._int8_tflite`.

Entry points: :func:`check_int8` (refuses what the path cannot run, before any work), :func:`quantize_int8`
(calibrate and build the :class:`Int8Program`), :func:`fused_activations` (which ReLUs fold into their producer; the
arena planner uses it too).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.cpu.int8_checks import batchnorm_problem, is_global_mean, range_problem
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.kernels._int8_tflite import quantize_multiplier
from mapping.graph import Graph, Node, Op
from mapping.passes.fold_bn import fold_bn_cached

__all__ = ["Int8UnsupportedError", "Int8OverflowError", "QParams", "Step", "Int8Program", "check_int8",
           "activation_kind", "fused_activations", "quantize_int8", "asymmetric_qparams", "quantize_weights_tflite", "round_away"]

QMIN, QMAX = -128, 127  # int8 activations
W_QMAX = 127  # int8 weights, narrow range [-127, 127]
_I32 = (-(2**31), 2**31 - 1)
_FUSABLE = {Op.CONV2D, Op.LINEAR, Op.ADD}
_ACT = {Op.RELU: "relu", Op.RELU6: "relu6"}


class Int8UnsupportedError(UnsupportedOpError):
    """A node the int8 (TFLite) path cannot run, named with its op, node and module."""


class Int8OverflowError(HwsimError):
    """An int32 intermediate of the int8 program left int32 (TFLite would wrap), or a calibrated range, weight or
    bias has no finite int8 scale (TFLite's float32 parameter arithmetic would give inf or NaN): names the node."""


def _refuse(n: Node, why: str) -> Int8UnsupportedError:
    return Int8UnsupportedError(f"int8 path cannot run op {n.op.value!r} (node {n.name!r}, module {n.module!r}): "
                                f"{why}")


def round_away(x) -> np.ndarray:
    """``std::round``: nearest integer, halves away from zero (float64 out; exact for float32 inputs)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


@dataclass(frozen=True, slots=True)
class QParams:
    """Per-tensor affine quantization: ``real = scale · (q - zero_point)``."""

    scale: float  # real units per integer step (a float32 value, as a .tflite file stores it)
    zero_point: int  # the int8 value that represents real 0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """TFLite QUANTIZE float->int8 (``AffineQuantize``): ``clamp(round(x / scale) + zp)``, float32 division."""
        v = np.asarray(x, np.float32) / np.float32(self.scale)
        return np.clip(round_away(v) + self.zero_point, QMIN, QMAX).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """TFLite DEQUANTIZE: ``scale · (q - zp)`` in float32."""
        return (np.asarray(q, np.int32) - self.zero_point).astype(np.float32) * np.float32(self.scale)


def asymmetric_qparams(lo: float, hi: float, tensor: str = "") -> QParams:
    """TFLite's ``GetAsymmetricQuantizationParams`` for int8 over the range [lo, hi] (widened to include 0).
    A range with a non-finite end, or wider than float32 holds (``max - min`` overflows: the scale would be inf),
    raises :class:`Int8OverflowError` naming ``tensor`` (a description: its name, op and module)."""
    problem = range_problem(float(lo), float(hi))
    if problem is not None:
        raise Int8OverflowError(f"int8 tensor {tensor}: {problem}")
    lo, hi = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    scale = np.float32((hi - lo) / np.float32(QMAX - QMIN))
    if scale == 0:  # the tensor is 0 on the whole calibration batch: any scale represents it
        return QParams(1.0, 0)
    zp_from_min = np.float32(np.float32(QMIN) - lo / scale)
    zp = QMIN if zp_from_min < QMIN else QMAX if zp_from_min > QMAX else int(round_away(zp_from_min))
    return QParams(float(scale), zp)


def quantize_weights_tflite(w: np.ndarray, bias: np.ndarray | None = None, input_scale: float | None = None,
                            layer: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights (narrow range) and their float32 scales, as TFLite's
    ``SymmetricPerChannelQuantization`` computes them (axis 0 of ``w``). With ``bias`` and ``input_scale``, a channel
    whose bias would not fit in half the int32 range at scale ``input_scale · s_w`` gets its weight range widened
    first (``AdjustWeightsForBiasScale``: ``max|W| = 2·|b| / (2^31 - 1) · 127 / input_scale``). Non-finite weights,
    or a channel so small (0 < max|W| < 127 / 3.4e38) that ``127 / max|W|`` overflows float32, raise
    :class:`Int8OverflowError` naming ``layer``."""
    w32 = np.asarray(w, np.float32).reshape(w.shape[0], -1)
    if not np.isfinite(w32).all():
        raise Int8OverflowError(f"int8 layer {layer!r}: its weights hold inf or NaN")
    half = np.maximum(np.abs(w32.min(axis=1)), np.abs(w32.max(axis=1))).astype(np.float32)
    if bias is not None and input_scale is not None:
        b = np.abs(np.asarray(bias, np.float64))
        k = float(_I32[1])
        big = b >= 0.5 * input_scale * (half.astype(np.float64) / W_QMAX) * k
        half = np.where(big, (2.0 * b / k * (W_QMAX / input_scale)).astype(np.float32), half)
    safe = np.where(half > 0, half, np.float32(1))
    with np.errstate(over="ignore"):
        inv = np.where(half > 0, np.float32(W_QMAX) / safe, np.float32(0)).astype(np.float32)
    if not np.isfinite(inv).all():
        c = int(np.flatnonzero(~np.isfinite(inv))[0])
        raise Int8OverflowError(f"int8 layer {layer!r}: output channel {c}'s weights (max |w| = {half[c]:g}) are "
                                "too small for a float32 int8 scale (127 / max|w| overflows)")
    q = np.clip(round_away(w32 * inv[:, None]), -W_QMAX, W_QMAX).astype(np.int8).reshape(w.shape)
    scale = np.where(half > 0, half / np.float32(W_QMAX), np.float32(1)).astype(np.float32)
    return q, scale


def _quantize_bias(b: np.ndarray | None, s_in: float, s_w: np.ndarray, layer: str = "") -> np.ndarray:
    """int32 bias of scale ``s_in · s_w[c]`` (``SymmetricPerChannelBiasQuantize``; zeros when there is no bias). A
    bias scale that underflows float32 (``1 / scale`` is inf) or a non-finite bias raises
    :class:`Int8OverflowError` naming ``layer``: TFLite's arithmetic would give NaN codes."""
    if b is None:
        return np.zeros(len(s_w), np.int32)
    scale = (np.float32(s_in) * s_w).astype(np.float32)
    with np.errstate(divide="ignore", over="ignore"):
        inv = (1.0 / scale.astype(np.float64)).astype(np.float32)
    b32 = np.asarray(b, np.float32)
    if not (np.isfinite(inv).all() and np.isfinite(b32).all()):
        raise Int8OverflowError(f"int8 layer {layer!r}: its bias (or its scale s_in · s_w = {scale.min():g}) has no "
                                "finite int32 code (the scale underflows float32, or the bias is inf/NaN)")
    q = round_away(b32 * inv)
    return np.clip(q, *_I32).astype(np.int32)


def _multipliers(real: np.ndarray, node: str = "") -> tuple[np.ndarray, np.ndarray]:
    if not np.isfinite(real).all():  # a scale ratio beyond float64: no fixed-point multiplier represents it
        raise Int8OverflowError(f"int8 step {node!r}: its requantization multiplier is not finite")
    qs = [quantize_multiplier(float(m)) for m in np.atleast_1d(real)]
    return np.array([q for q, _ in qs], np.int64), np.array([s for _, s in qs], np.int64)


@dataclass(frozen=True, eq=False)
class Step:
    """One int8 kernel call. ``kind`` is one of :data:`KINDS`; ``node`` the IR node it implements (a fused
    activation's producer; ``""`` for a requantization the converter inserts); tensors are named by IR value names.

    ``multiplier``/``shift``: TFLite fixed-point multipliers — per output channel for conv/depthwise/fc; ``(a, b,
    out)`` for add; one for requantize/relu/mean. ``act_range``: the int8 clamp of the output (fused activation)."""

    kind: str
    node: str
    inputs: tuple[str, ...]
    output: str
    in_q: tuple[QParams, ...]
    out_q: QParams | None  # None: a float32 output (softmax)
    attrs: Any = None  # the IR node's attributes (Conv2d, Linear, Pool, ...)
    weight: np.ndarray | None = None  # int8: conv [O, C/groups, kh, kw], fc [O, K]
    weight_scale: np.ndarray | None = None  # float32 [O]
    bias: np.ndarray | None = None  # int32 [O]
    multiplier: np.ndarray | None = None  # int64 holding int32 q31 values
    shift: np.ndarray | None = None  # int64: > 0 left, < 0 right
    act: str = "none"  # fused activation: "none", "relu", "relu6"
    act_range: tuple[int, int] = (QMIN, QMAX)


KINDS = ("conv", "depthwise", "fc", "add", "maxpool", "avgpool", "mean", "concat", "requantize", "relu", "reshape",
         "pad", "softmax")


@dataclass(frozen=True, eq=False)
class Int8Program:
    """The integer program of a graph: quantize the input, run ``steps`` in order, dequantize ``outputs``."""

    name: str
    input: str
    input_q: QParams
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]
    qparams: Mapping[str, QParams]  # every int8 tensor (the input, every step's int8 output)
    shapes: Mapping[str, tuple[int, ...]]  # of every tensor, batch first (the graph's batch)


# ----------------------------------------------------------------------------- what the path can run
def activation_kind(n: Node) -> str | None:
    """"relu" / "relu6" for a ReLU, a ReLU6 or a clamp to [0, inf) / [0, 6]; None for any other node."""
    if n.op in _ACT:
        return _ACT[n.op]
    if n.op == Op.CLAMP and n.attrs.lo == 0:
        return "relu" if n.attrs.hi is None else "relu6" if n.attrs.hi == 6 else None
    return None


def fused_activations(graph: Graph) -> dict[str, Node]:
    """Producer name -> the ReLU/ReLU6 node fused into it: the producer is a conv, fully connected or add whose only
    reader is that activation and which is not itself a graph output (TFLite's fused activation)."""
    from mapping.analysis import activation_fusions

    return activation_fusions(graph, _FUSABLE, lambda n: activation_kind(n) is not None, exclude_outputs=True)


def _check_conv(n: Node) -> None:
    a = n.attrs
    if a.groups != 1 and not (a.groups == a.in_channels and a.out_channels % a.groups == 0):
        raise _refuse(n, f"grouped conv (groups={a.groups} of {a.in_channels} channels) is neither a dense nor a "
                         "depthwise TFLite kernel")
    pad_value = float(n.meta.get("pad_value", 0.0))
    if pad_value != 0.0 and any(a.padding):
        # TFLite runs it as PADV2 (constant = pad_value, stored as an int8 code of the input's scale and zero point:
        # kernels/pad.cc requires both to match) then a VALID conv; this program's PAD fills with the zero point only
        raise _refuse(n, f"conv padded with {pad_value:+g} (pad_value; TFLite's PADV2 then a VALID conv): the int8 "
                         "program pads with the input's zero point (0.0) only")


def _check_pool(n: Node, shape_in: tuple[int, ...]) -> None:
    a = n.attrs
    if a.dilation != (1, 1):
        raise _refuse(n, f"dilated pooling {a.dilation} has no TFLite kernel")
    floor = tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip(shape_in[2:], a.kernel, a.stride, a.padding))
    if n.op == Op.AVGPOOL and a.ceil_mode and floor != tuple(n.shape[2:]):  # ceil_mode that adds a partial window
        raise _refuse(n, "ceil_mode average pooling divides by torch's count, not TFLite's")
    if n.op == Op.AVGPOOL and a.count_include_pad and any(a.padding):
        raise _refuse(n, "padded average pooling with count_include_pad=True: TFLite divides by the in-bounds taps")


def _check_pad(n: Node) -> None:
    """A zero pad is TFLite's PAD; a reflect pad of the non-batch dims its MIRROR_PAD (mode REFLECT: tflite-micro
    ``kernels/mirror_pad.cc`` copies int8 values); replicate and circular pads have no TFLite op."""
    from hwsim.cpu.runtime.algorithms import zero_pad_problem

    a = n.attrs
    if a.mode == "reflect" and tuple(a.pads[0]) == (0, 0) and min(p for pair in a.pads for p in pair) >= 0:
        return
    problem = zero_pad_problem(n) if a.mode in ("constant", "reflect") else \
        f"{a.mode} pad (TFLite has PAD and MIRROR_PAD: zero, reflect and symmetric pads only)"
    if problem is not None:
        raise _refuse(n, problem)


def _check_node(g: Graph, n: Node, outs: set[str], readers: Mapping[str, list[Node]]) -> None:
    shape_in = [g.shape_of(i) for i in n.inputs]
    if n.op == Op.CONV2D:
        _check_conv(n)
    elif n.op == Op.LINEAR and len(shape_in[0]) != 2:
        raise _refuse(n, f"fully connected over a rank-{len(shape_in[0])} input (TFLite's takes N x K)")
    elif n.op == Op.ADD and (len(n.inputs) != 2 or shape_in[0] != shape_in[1]):
        raise _refuse(n, "int8 add takes two tensors of one shape (no scalar operand, no broadcasting)")
    elif n.op in (Op.MAXPOOL, Op.AVGPOOL):
        _check_pool(n, shape_in[0])
    elif n.op == Op.PAD:
        _check_pad(n)
    elif n.op == Op.ADAPTIVE_AVGPOOL and tuple(n.attrs.output_size) != (1, 1):
        raise _refuse(n, f"adaptive pooling to {n.attrs.output_size} (only global pooling, TFLite's MEAN)")
    elif n.op == Op.CONCAT and (n.attrs.dim != 1 or len(shape_in[0]) not in (2, 4)):
        raise _refuse(n, f"concat along dim {n.attrs.dim} (channels only)")
    elif n.op == Op.SOFTMAX and (n.name not in outs or readers[n.name] or n.attrs.log
                                 or n.attrs.dim not in (-1, len(n.shape) - 1)):
        raise _refuse(n, "softmax only as the last op of the network, over the last dim (kept in float)")
    elif n.op == Op.BATCHNORM:
        raise _refuse(*batchnorm_problem(g, n, readers))
    elif n.op == Op.REDUCE_MEAN and not is_global_mean(g, n):
        raise _refuse(n, f"mean over dims {n.attrs.dims} of a {shape_in[0]} tensor (only over the spatial dims, "
                         "H and W of N x C x H x W or L of N x C x L: TFLite's MEAN as global average pooling)")
    elif n.op not in (Op.CONV2D, Op.LINEAR, Op.ADD, Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL, Op.CONCAT, Op.PAD,
                      Op.SOFTMAX, Op.RESHAPE, Op.REDUCE_MEAN) and activation_kind(n) is None:
        raise _refuse(n, "no int8 kernel for it in this model (supported: conv2d, depthwise, linear, add, relu, "
                         "relu6 (or a clamp to [0, 6]), max/avg pool, global avg pool (or a mean over H and W), "
                         "concat, reshape, zero pad, a final softmax)")


def check_int8(graph: Graph) -> None:
    """Raise :class:`Int8UnsupportedError` (one line, naming the op, node and module) for the first node the int8
    path cannot run; batch norm must be folded first (:func:`mapping.passes.fold_bn.fold_bn`)."""
    if len(graph.inputs) != 1:
        raise Int8UnsupportedError(f"int8 path takes one graph input, {graph.name!r} has {len(graph.inputs)}")
    if len(graph.input_shape) not in (2, 3, 4):
        raise Int8UnsupportedError(f"int8 path takes N x C x H x W, N x C x L or N x F inputs, got {graph.input_shape}")
    outs, readers = set(graph.outputs), graph.consumers()
    for n in graph.nodes:
        _check_node(graph, n, outs, readers)


# ----------------------------------------------------------------------------- calibration and the program
def _ranges(g: Graph, calib: np.ndarray) -> dict[str, tuple[float, float]]:
    from hwsim.functional import run

    _, values = run(g, calib, keep=True)
    values[g.inputs[0].name] = np.asarray(calib, np.float32)
    return {k: (float(v.min()), float(v.max())) for k, v in values.items()}


def _act_range(act: str, q: QParams) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized``: the int8 clamp of a fused ReLU / ReLU6."""
    if act == "none":
        return QMIN, QMAX
    lo = max(QMIN, q.zero_point)  # quantize(0.0)
    if act == "relu":
        return lo, QMAX
    six = round_away(np.float32(6.0) / np.float32(q.scale))
    return lo, int(min(QMAX, q.zero_point + six))


class _Builder:
    """Accumulates the steps of one program (the state of :func:`quantize_int8`)."""

    def __init__(self, g: Graph, ranges: Mapping[str, tuple[float, float]]):
        self.g, self.ranges = g, ranges
        name = g.inputs[0].name
        self.q: dict[str, QParams] = {name: asymmetric_qparams(*ranges[name], f"{name!r} (the graph input)")}
        self.shapes: dict[str, tuple[int, ...]] = {g.inputs[0].name: g.input_shape}
        self.steps: list[Step] = []

    def add(self, step: Step, shape: tuple[int, ...]) -> None:
        if step.out_q is not None:
            self.q[step.output] = step.out_q
        self.shapes[step.output] = shape
        self.steps.append(step)

    def own(self, name: str) -> QParams:
        n = self.g[name] if name in self.g else None
        where = f" (output of {n.op.value}, module {n.module!r})" if n is not None else ""
        return asymmetric_qparams(*self.ranges[name], f"{name!r}{where}")


def _weighted(b: _Builder, n: Node, out: str, act: str) -> Step:
    g, s_in = b.g, b.q[n.inputs[0]]
    b_f = g.param(n, "bias") if "bias" in n.params else None
    w_q, s_w = quantize_weights_tflite(g.param(n, "weight"), b_f, s_in.scale, n.name)
    bias = _quantize_bias(b_f, s_in.scale, s_w, n.name)
    oq = b.own(out)
    m, sh = _multipliers(np.float64(s_in.scale) * s_w.astype(np.float64) / np.float64(oq.scale), n.name)
    kind = "fc" if n.op == Op.LINEAR else ("conv" if n.attrs.groups == 1 else "depthwise")
    return Step(kind, n.name, n.inputs, out, (s_in,), oq, n.attrs, w_q, s_w, bias, m, sh, act, _act_range(act, oq))


def _add(b: _Builder, n: Node, out: str, act: str) -> Step:
    qa, qb, oq = b.q[n.inputs[0]], b.q[n.inputs[1]], b.own(out)
    twice = 2.0 * max(qa.scale, qb.scale)
    real = np.array([qa.scale / twice, qb.scale / twice, twice / (2.0**20 * oq.scale)])
    if not real[2] < 1.0:  # TFLite: QuantizeMultiplierSmallerThanOneExp checks multiplier < 1
        raise Int8OverflowError(f"int8 add {n.name!r}: output scale {oq.scale:g} is too small for TFLite's add "
                                "(output multiplier >= 1)")
    m, sh = _multipliers(real, n.name)
    return Step("add", n.name, n.inputs, out, (qa, qb), oq, None, multiplier=m, shift=sh, act=act,
                act_range=_act_range(act, oq))


def _rescale(b: _Builder, kind: str, node: str, src: str, out: str, oq: QParams, act: str = "none",
             attrs: Any = None) -> Step:
    m, sh = _multipliers(np.float64(b.q[src].scale) / np.float64(oq.scale), node or out)
    return Step(kind, node, (src,), out, (b.q[src],), oq, attrs, multiplier=m, shift=sh, act=act,
                act_range=_act_range(act, oq))


def _concat(b: _Builder, n: Node) -> None:
    oq = b.own(n.name)
    srcs = []
    for i, src in enumerate(n.inputs):
        if b.q[src] != oq:  # the converter's QUANTIZE int8->int8 before a same-scale op
            name = f"{n.name}/requantize{i}"
            b.add(_rescale(b, "requantize", "", src, name, oq), b.shapes[src])
            src = name
        srcs.append(src)
    b.add(Step("concat", n.name, tuple(srcs), n.name, tuple(b.q[s] for s in srcs), oq, n.attrs), n.shape)


def _same_scale(b: _Builder, n: Node, kind: str) -> None:
    q = b.q[n.inputs[0]]
    b.add(Step(kind, n.name, n.inputs, n.name, (q,), q, n.attrs), n.shape)


def _build_node(b: _Builder, n: Node, fused: Mapping[str, Node], skip: set[str]) -> None:
    if n.name in skip:
        return
    act_node = fused.get(n.name)
    out, act = (act_node.name, activation_kind(act_node)) if act_node is not None else (n.name, "none")
    shape = act_node.shape if act_node is not None else n.shape
    if n.op in (Op.CONV2D, Op.LINEAR):
        b.add(_weighted(b, n, out, act), shape)
    elif n.op == Op.ADD:
        b.add(_add(b, n, out, act), shape)
    elif activation_kind(n) is not None:
        b.add(_rescale(b, "relu", n.name, n.inputs[0], n.name, b.own(n.name), activation_kind(n)), n.shape)
    elif n.op in (Op.MAXPOOL, Op.AVGPOOL, Op.RESHAPE, Op.PAD):
        _same_scale(b, n, {Op.MAXPOOL: "maxpool", Op.AVGPOOL: "avgpool", Op.RESHAPE: "reshape", Op.PAD: "pad"}[n.op])
    elif n.op in (Op.ADAPTIVE_AVGPOOL, Op.REDUCE_MEAN):  # global pooling: TFLite's MEAN over H and W
        b.add(_rescale(b, "mean", n.name, n.inputs[0], n.name, b.own(n.name), attrs=n.attrs), n.shape)
    elif n.op == Op.CONCAT:
        _concat(b, n)
    elif n.op == Op.SOFTMAX:
        b.add(Step("softmax", n.name, n.inputs, n.name, (b.q[n.inputs[0]],), None, n.attrs), n.shape)


def quantize_int8(graph: Graph, calib: np.ndarray, *, fold_bn: bool = True) -> Int8Program:
    """The int8 program of ``graph`` (batch norm folded first when ``fold_bn``), its activations calibrated on the
    float network's values over ``calib`` (N x input dims, float). Refuses unsupported ops before calibrating."""
    g = fold_bn_cached(graph) if fold_bn else graph
    check_int8(g)
    from hwsim.functional import check_input

    calib = check_input(g, calib)
    b = _Builder(g, _ranges(g, calib))
    fused = fused_activations(g)
    skip = {a.name for a in fused.values()}
    for n in g.nodes:
        _build_node(b, n, fused, skip)
    return Int8Program(name=g.name, input=g.inputs[0].name, input_q=b.q[g.inputs[0].name], steps=tuple(b.steps),
                       outputs=tuple(g.outputs), qparams=dict(b.q), shapes=dict(b.shapes))

