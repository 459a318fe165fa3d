"""Leaf modules of :func:`mapping.trace.trace`: what each registered ``torch.nn`` layer becomes in the IR (an op, its
attributes, its parameters), the registry (:func:`register_module`, which other packages extend) and the converters
of the torch.nn layers hwsim ships with. A converter reads the module's hyper-parameters only; what it cannot map
exactly (asymmetric padding, a softmax over the batch, a resampling torch computes differently) it refuses with a
one-line :class:`~hwsim.errors.UnsupportedOpError`."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from hwsim.errors import UnsupportedOpError
from mapping._conv_transpose import conv_transpose_attrs
from mapping.graph import (
    AdaptivePool,
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
    Pad,
    Pool,
    Softmax,
    Softplus,
    Upsample,
)

__all__ = ["ModuleConversion", "ModuleConverter", "register_module", "conv_padding", "upsample_attrs", "torch_pads"]


@dataclass(frozen=True, slots=True)
class ModuleConversion:
    """What a leaf module becomes: an op, its attributes, its parameters (role -> tensor
    attribute name on the module) and annotations."""

    op: Op
    attrs: Any = NoAttrs()
    params: tuple[tuple[str, str], ...] = ()
    meta: tuple[tuple[str, Any], ...] = ()


ModuleConverter = Callable[[nn.Module, tuple[tuple[int, ...], ...], tuple[int, ...]], ModuleConversion]
_MODULES: dict[type, ModuleConverter] = {}


def register_module(cls: type, converter: ModuleConverter) -> None:
    """Make instances of ``cls`` leaf modules converted by ``converter(module, in_shapes, out_shape)``."""
    _MODULES[cls] = converter


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """Integer padding of a conv; "valid" is 0 and "same" the symmetric d(k-1)/2 (torch puts an odd total's extra
    pixel after: refused)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = [dilation[i] * (kernel[i] - 1) for i in range(2)]
        if any(t % 2 for t in total):
            raise UnsupportedOpError("padding='same' with an even kernel (asymmetric padding)")
        return (total[0] // 2, total[1] // 2)
    return _pair(padding)


def _conv(m: nn.Conv2d, ins, out) -> ModuleConversion:
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"padding_mode={m.padding_mode!r}")
    k, d = _pair(m.kernel_size), _pair(m.dilation)
    attrs = Conv2d(m.in_channels, m.out_channels, k, _pair(m.stride), conv_padding(m.padding, k, d), d, m.groups,
                   m.bias is not None)
    params = (("weight", "weight"),) + ((("bias", "bias"),) if m.bias is not None else ())
    return ModuleConversion(Op.CONV2D, attrs, params)


def _conv_transpose(m: nn.ConvTranspose2d, ins, out) -> ModuleConversion:
    """A forward's ``output_size`` (positional; torch's ``_output_padding``) picks the output padding within
    ``[0, max(stride, dilation))``: it is read off the traced output's size, whose excess over the padding-free size
    is exactly the output padding torch applied (``m.output_padding`` when no output_size is given)."""
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"padding_mode={m.padding_mode!r}")
    k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
    base = [(ins[0][-2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1 for i in range(2)]
    extra = tuple(int(out[-2 + i]) - base[i] for i in range(2))
    attrs = conv_transpose_attrs(tuple(m.weight.shape), s, p, extra, d, m.groups, m.bias is not None,
                                 int(ins[0][-3]), "output size " + str(tuple(out[-2:])))
    params = (("weight", "weight"),) + ((("bias", "bias"),) if m.bias is not None else ())
    return ModuleConversion(Op.CONV_TRANSPOSE2D, attrs, params)


def conv_transpose_function(b, n) -> None:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)`` and ATen's
    ``convolution(x, weight, bias, stride, padding, dilation, transposed=True, output_padding, groups)`` (a handler of
    :mod:`mapping._torch_ops`, kept here beside the module converter)."""
    from mapping._torch_moves import _x, arg

    aten = n.target is torch.ops.aten.convolution.default
    names = ("stride", "padding", "output_padding", "groups", "dilation")
    where = (3, 4, 7, 8, 5) if aten else (3, 4, 5, 6, 7)
    hyper = [arg(n, i, name, default) for i, name, default in zip(where, names, (1, 0, 0, 1, 1))]
    w, bias = arg(n, 1, "weight"), arg(n, 2, "bias", None)
    s, p, op, g, d = (b.val(h) for h in hyper)
    x = _x(b, n)
    attrs = conv_transpose_attrs(tuple(b.val(w).shape), s, p, op, d, g, bias is not None, int(b.shapes[x][-3]),
                                 b.what(n))
    params = {"weight": b.param(w, n, "weight")} | ({"bias": b.param(bias, n, "bias")} if bias is not None else {})
    b.emit(n, Op.CONV_TRANSPOSE2D, [x], attrs, params)


def _linear(m: nn.Linear, ins, out) -> ModuleConversion:
    params = (("weight", "weight"),) + ((("bias", "bias"),) if m.bias is not None else ())
    return ModuleConversion(Op.LINEAR, Linear(m.in_features, m.out_features, m.bias is not None), params)


def _bn(m: nn.modules.batchnorm._BatchNorm, ins, out) -> ModuleConversion:
    if not m.track_running_stats or m.running_mean is None:
        raise UnsupportedOpError("BatchNorm without running statistics")
    params = [("mean", "running_mean"), ("var", "running_var")]
    if m.affine:
        params += [("gamma", "weight"), ("beta", "bias")]
    return ModuleConversion(Op.BATCHNORM, BatchNorm(m.num_features, float(m.eps)), tuple(params))


def _maxpool(m: nn.MaxPool2d, ins, out) -> ModuleConversion:
    if m.return_indices:
        raise UnsupportedOpError("MaxPool2d(return_indices=True)")
    stride = m.stride if m.stride is not None else m.kernel_size
    return ModuleConversion(Op.MAXPOOL, Pool(_pair(m.kernel_size), _pair(stride), _pair(m.padding),
                                             _pair(m.dilation), bool(m.ceil_mode)))


def _avgpool(m: nn.AvgPool2d, ins, out) -> ModuleConversion:
    if m.divisor_override is not None:
        raise UnsupportedOpError("AvgPool2d(divisor_override=...)")
    stride = m.stride if m.stride is not None else m.kernel_size
    return ModuleConversion(Op.AVGPOOL, Pool(_pair(m.kernel_size), _pair(stride), _pair(m.padding), (1, 1),
                                             bool(m.ceil_mode), bool(m.count_include_pad)))


def torch_pads(pad: Sequence[int], shape: Sequence[int], mode: str) -> tuple[tuple[int, int], ...]:
    """``F.pad``'s ``pad`` (pairs from the last dim backwards) as the IR's (before, after) pair per dim of ``shape``;
    refused in one line: a pad of the batch, or what :func:`hwsim.kernels.fp32.pad_problem` names."""
    from hwsim.kernels._ops_fp32 import pad_problem  # the kernel's rules (imported here: it loads Numba)

    pads = [(0, 0)] * len(shape)
    for j in range(len(pad) // 2):
        pads[len(shape) - 1 - j] = (int(pad[2 * j]), int(pad[2 * j + 1]))
    if pads[0] != (0, 0):
        raise UnsupportedOpError("pads the batch dimension")
    problem = pad_problem(shape, pads, mode)
    if problem is not None:
        raise UnsupportedOpError(problem)
    return tuple(pads)


def _pad_module(mode: str) -> ModuleConverter:
    """nn.ReflectionPad*d, ReplicationPad*d, CircularPad*d, ZeroPad / ConstantPad 1d and 3d -> PAD (a negative
    amount crops inside the PAD, as torch does: hwsim.kernels.fp32.pad)."""
    return lambda m, ins, out: ModuleConversion(Op.PAD, Pad(torch_pads(m.padding, ins[0], mode),
                                                            float(getattr(m, "value", 0.0)), mode))


def _adaptive(m: nn.AdaptiveAvgPool2d, ins, out) -> ModuleConversion:
    return ModuleConversion(Op.ADAPTIVE_AVGPOOL, AdaptivePool((out[2], out[3])))


def _simple(op: Op, attrs: Callable[[nn.Module], Any] | None = None) -> ModuleConverter:
    """An activation module; ``inplace=True`` is recorded as ``meta["inplace"]`` (the runtime overwrites its
    input instead of writing a new buffer: cost models count the traffic of one buffer)."""
    return lambda m, ins, out: ModuleConversion(op, attrs(m) if attrs else NoAttrs(),
                                                meta=(("inplace", True),) if getattr(m, "inplace", False) else ())


def _hardtanh(m: nn.Hardtanh, ins, out) -> ModuleConversion:
    if (float(m.min_val), float(m.max_val)) == (0.0, 6.0):
        return _simple(Op.RELU6)(m, ins, out)
    return _simple(Op.CLAMP, lambda m: Clamp(float(m.min_val), float(m.max_val)))(m, ins, out)


def _layernorm(m: nn.LayerNorm, ins, out) -> ModuleConversion:
    if len(m.normalized_shape) >= len(ins[0]):
        raise UnsupportedOpError("LayerNorm over the batch dimension")
    params = (("gamma", "weight"),) if m.weight is not None else ()
    params += (("beta", "bias"),) if m.bias is not None else ()
    return ModuleConversion(Op.LAYERNORM, LayerNorm(tuple(m.normalized_shape), float(m.eps)), params)


def _groupnorm(m: nn.GroupNorm, ins, out) -> ModuleConversion:
    params = (("gamma", "weight"), ("beta", "bias")) if m.affine else ()
    return ModuleConversion(Op.GROUPNORM, GroupNorm(int(m.num_groups), float(m.eps)), params)


def _instancenorm(rank: int) -> ModuleConverter:
    """InstanceNorm1d/2d of a batch-first value: GROUPNORM with one channel per group; with
    ``track_running_stats`` (computed in eval) the running statistics make it a per-channel affine: BATCHNORM."""
    def convert(m: nn.modules.instancenorm._InstanceNorm, ins, out) -> ModuleConversion:
        if len(ins[0]) != rank:
            raise UnsupportedOpError(f"a {len(ins[0])}-d input (a batch-first {rank}-d one is supported)")
        params = (("gamma", "weight"), ("beta", "bias")) if m.affine else ()
        if m.track_running_stats:
            return ModuleConversion(Op.BATCHNORM, BatchNorm(int(ins[0][1]), float(m.eps)),
                                    (("mean", "running_mean"), ("var", "running_var")) + params)
        return ModuleConversion(Op.GROUPNORM, GroupNorm(int(ins[0][1]), float(m.eps)), params)
    return convert


def _softmax(log: bool) -> ModuleConverter:
    def convert(m, ins, out) -> ModuleConversion:
        if m.dim is None:
            raise UnsupportedOpError("softmax without dim")
        d = m.dim % len(ins[0])
        if d == 0:
            raise UnsupportedOpError("softmax along the batch dimension")
        return ModuleConversion(Op.SOFTMAX, Softmax(d, log))
    return convert


def _upsample_mod(m: nn.Upsample, ins, out) -> ModuleConversion:
    scale = None if m.recompute_scale_factor else m.scale_factor
    return ModuleConversion(Op.UPSAMPLE, upsample_attrs(m.mode, m.align_corners, out, ins[0], scale))


def upsample_attrs(mode: str, align_corners: bool | None, out, ins=None, scale=None) -> Upsample:
    """The IR's resampling maps output pixels to input pixels by the size ratio; torch maps them by
    ``1/scale_factor`` when one is given (without ``recompute_scale_factor``): refused when the two differ.
    ``nearest-exact`` (index floor((i + 0.5)·in/out)) is ``nearest`` (floor(i·in/out)) when each output size is a
    whole multiple of the input's (i = k·s + r, r < s: both give k); other sizes are refused."""
    if mode not in ("nearest", "bilinear", "nearest-exact"):
        raise UnsupportedOpError(f"interpolate mode {mode!r} (nearest, nearest-exact and bilinear are supported)")
    if len(out) != 4:
        raise UnsupportedOpError(f"interpolate of a {len(out)}-d tensor")
    if mode == "nearest-exact":
        if ins is None or any(o % i for o, i in zip(out[-2:], ins[-2:])):
            raise UnsupportedOpError(f"interpolate mode 'nearest-exact' from {None if ins is None else tuple(ins[-2:])} "
                                     f"to {tuple(out[-2:])}: only whole upscaling factors (where it equals nearest)")
        mode = "nearest"
    if scale is not None and ins is not None and not (mode == "bilinear" and align_corners):
        s = [float(v) for v in (scale if isinstance(scale, (tuple, list)) else (scale, scale))]
        if any(abs(ins[-2 + i] * s[i] - out[-2 + i]) > 1e-9 * out[-2 + i] for i in range(2)):
            raise UnsupportedOpError(f"interpolate by scale_factor {scale} from {tuple(ins[-2:])} to {tuple(out[-2:])}: "
                                     "torch maps pixels by 1/scale_factor, not by the size ratio (pass size= or "
                                     "recompute_scale_factor=True)")
    return Upsample((out[2], out[3]), mode, bool(align_corners))


for _cls, _fn in [
    (nn.Conv2d, _conv), (nn.ConvTranspose2d, _conv_transpose), (nn.Linear, _linear), (nn.BatchNorm2d, _bn), (nn.BatchNorm1d, _bn),
    (nn.MaxPool2d, _maxpool), (nn.AvgPool2d, _avgpool), (nn.AdaptiveAvgPool2d, _adaptive),
    (nn.ReLU, _simple(Op.RELU)), (nn.ReLU6, _simple(Op.RELU6)), (nn.Hardswish, _simple(Op.HARDSWISH)),
    (nn.Sigmoid, _simple(Op.SIGMOID)), (nn.Hardsigmoid, _simple(Op.HARDSIGMOID)), (nn.SiLU, _simple(Op.SILU)),
    (nn.Tanh, _simple(Op.TANH)), (nn.Upsample, _upsample_mod),
    (nn.GELU, _simple(Op.GELU, lambda m: Gelu(m.approximate))),
    (nn.LeakyReLU, _simple(Op.LEAKY_RELU, lambda m: LeakyRelu(float(m.negative_slope)))),
    (nn.ELU, _simple(Op.ELU, lambda m: Elu(float(m.alpha)))), (nn.Mish, _simple(Op.MISH)),
    (nn.Softplus, _simple(Op.SOFTPLUS, lambda m: Softplus(float(m.beta), float(m.threshold)))),
    (nn.PReLU, lambda m, ins, out: ModuleConversion(Op.PRELU, params=(("weight", "weight"),))),
    (nn.Hardtanh, _hardtanh), (nn.LayerNorm, _layernorm), (nn.GroupNorm, _groupnorm),
    (nn.Softmax, _softmax(False)), (nn.LogSoftmax, _softmax(True)),
    (nn.InstanceNorm1d, _instancenorm(3)), (nn.InstanceNorm2d, _instancenorm(4)),
    # logsigmoid(x) = -log(1 + exp(-x)): softplus with beta -1 (mapping._torch_composite._logsigmoid)
    (nn.LogSigmoid, _simple(Op.SOFTPLUS, lambda m: Softplus(-1.0, 20.0))),
    *[(getattr(nn, f"{kind}Pad{d}d"), _pad_module(mode)) for kind, mode in (
        ("Reflection", "reflect"), ("Replication", "replicate"), ("Circular", "circular")) for d in (1, 2, 3)],
    *[(getattr(nn, f"{kind}Pad{d}d"), _pad_module("constant")) for kind in ("Zero", "Constant") for d in (1, 3)],
]:
    if _fn is not None:
        register_module(_cls, _fn)
