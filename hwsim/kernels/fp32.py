"""fp32 inference kernels: numpy in, numpy out, NCHW, batch N >= 1, PyTorch semantics.

Convolution is a register-blocked implicit GEMM in Numba (``_conv.py``, ``_microkernel.py``);
pooling and resampling are Numba loops (``_pool_fp32.py``); activations, batch norm and nearest
upsampling are single-pass Numba loops (``_elementwise.py``); ``linear`` is one BLAS sgemm.
The transformer-era and QONNX ops (GELU ... attention, quantize/trunc/multithreshold) are defined in
``_ops_fp32.py`` over the Numba loops of ``_nn_fp32.py`` and re-exported here.

Every function validates its arguments and raises ``ValueError`` naming the offending argument.
Inputs of other real dtypes are converted to float32; outputs are new float32 arrays.
"""
from __future__ import annotations

import numpy as np

from hwsim.kernels import _checks as chk
from hwsim.kernels import _elementwise as ew
from hwsim.kernels import _pool_fp32 as pool
from hwsim.kernels._conv import conv2d_gemm
from hwsim.kernels._ops_fp32 import (
    attention,
    binary,
    clamp,
    elu,
    gelu,
    group_norm,
    layer_norm,
    leaky_relu,
    matmul,
    mish,
    multithreshold,
    pad,
    permute,
    power,
    prelu,
    quantize,
    reduce,
    softmax,
    softplus,
    trunc,
    unary,
)

__all__ = [
    "conv2d", "linear", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm",
    "relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "silu",
    "upsample_nearest", "upsample_bilinear", "channel_shuffle",
    "gelu", "leaky_relu", "prelu", "elu", "mish", "softplus", "clamp", "unary", "power", "binary",
    "layer_norm", "group_norm", "softmax", "reduce", "permute", "pad", "matmul", "attention",
    "quantize", "trunc", "multithreshold",
]


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           parallel: bool = False) -> np.ndarray:
    """2-D convolution (cross-correlation), ``F.conv2d`` semantics with zero padding.

    x: f32[N, C, H, W]; w: f32[O, C/groups, kh, kw]; b: f32[O] or None.
    stride/padding/dilation: int or (h, w). ``parallel=True`` runs the separately compiled
    prange variant (Numba's thread count); the default is single-threaded.
    Returns f32[N, O, OH, OW] with ``OH = (H + 2p - d(kh-1) - 1)//s + 1``.
    """
    x = chk.nchw("x", x)
    w = chk.f32("w", w)
    s, p, d, groups, _, _ = chk.conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None:
        b = chk.f32("b", b, 1)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"bias has {b.shape[0]} entries, expected {w.shape[0]} "
                             "(output channels)")
    return conv2d_gemm(x, w, b, s, p, d, groups, bool(parallel))


def linear(x, w, b=None) -> np.ndarray:
    """``x @ w.T + b``: x f32[N, K], w f32[O, K], b f32[O] or None -> f32[N, O] (BLAS sgemm)."""
    x = chk.f32("x", x, 2)
    w = chk.f32("w", w, 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"linear: x has {x.shape[1]} features but w expects {w.shape[1]}")
    y = x @ w.T
    if b is not None:
        b = chk.f32("b", b, 1)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"bias has {b.shape[0]} entries, expected {w.shape[0]}")
        y += b
    return np.ascontiguousarray(y, dtype=np.float32)


def _pool_args(x, kernel, stride, padding, dilation):
    x = chk.nchw("x", x)
    k = chk.pair("kernel", kernel, 1)
    s = k if stride is None else chk.pair("stride", stride, 1)
    p = chk.pair("padding", padding, 0)
    d = chk.pair("dilation", dilation, 1)
    return x, k, s, p, d


def max_pool2d(x, kernel, stride=None, padding=(0, 0), dilation=(1, 1),
               ceil_mode: bool = False) -> np.ndarray:
    """``F.max_pool2d``: padding counts as -inf, NaN propagates; stride defaults to kernel."""
    x, k, s, p, d = _pool_args(x, kernel, stride, padding, dilation)
    for axis in range(2):
        if p[axis] > (d[axis] * (k[axis] - 1) + 1) // 2:
            raise ValueError(f"max_pool2d: padding {p} must be at most half the effective "
                             f"kernel size {tuple(di * (ki - 1) + 1 for di, ki in zip(d, k))}")
    oh = pool.pool_out_size(x.shape[2], k[0], s[0], p[0], d[0], ceil_mode)
    ow = pool.pool_out_size(x.shape[3], k[1], s[1], p[1], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"max_pool2d: output size {oh}x{ow} is too small for input {x.shape}")
    out = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=np.float32)
    pool.max_pool(x, out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    return out


def avg_pool2d(x, kernel, stride=None, padding=(0, 0), ceil_mode: bool = False,
               count_include_pad: bool = True) -> np.ndarray:
    """``F.avg_pool2d`` (no divisor override); stride defaults to kernel."""
    x, k, s, p, _ = _pool_args(x, kernel, stride, padding, 1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"avg_pool2d: padding {p} must be at most half the kernel size {k}")
    oh = pool.pool_out_size(x.shape[2], k[0], s[0], p[0], 1, ceil_mode)
    ow = pool.pool_out_size(x.shape[3], k[1], s[1], p[1], 1, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"avg_pool2d: output size {oh}x{ow} is too small for input {x.shape}")
    out = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=np.float32)
    pool.avg_pool(x, out, k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad))
    return out


def adaptive_avg_pool2d(x, out_hw) -> np.ndarray:
    """``F.adaptive_avg_pool2d`` to ``out_hw = (oh, ow)`` (an int means square)."""
    x = chk.nchw("x", x)
    oh, ow = chk.out_hw(out_hw)
    out = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=np.float32)
    pool.adaptive_avg_pool(x, out)
    return out


def _per_channel(name: str, v, c: int) -> np.ndarray:
    arr = chk.f32(name, v, 1)
    if arr.shape[0] != c:
        raise ValueError(f"batch_norm: {name} has {arr.shape[0]} entries, expected {c} channels")
    return arr.reshape(1, c, 1, 1)


def batch_norm(x, mean, var, gamma=None, beta=None, eps: float = 1e-5) -> np.ndarray:
    """Inference batch norm over axis 1: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    x: f32[N, C, ...] (rank >= 2); gamma/beta None mean 1/0 (``affine=False``). Evaluated as
    ``x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` formed in float64.
    """
    x = chk.f32("x", x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: x must be at least 2-D [N, C, ...], got shape {x.shape}")
    if not eps >= 0:
        raise ValueError(f"batch_norm: eps must be >= 0, got {eps}")
    c = x.shape[1]
    mean = _per_channel("mean", mean, c).reshape(c).astype(np.float64)
    var = _per_channel("var", var, c).reshape(c).astype(np.float64)
    scale = 1.0 / np.sqrt(var + eps)
    if gamma is not None:
        scale = scale * _per_channel("gamma", gamma, c).reshape(c)
    shift = -mean * scale
    if beta is not None:
        shift = shift + _per_channel("beta", beta, c).reshape(c)
    out = np.empty_like(x)
    x3 = x.reshape(x.shape[0], c, -1)
    ew.channel_affine(x3, scale.astype(np.float32), shift.astype(np.float32),
                      out.reshape(x3.shape))
    return out


def _activation(x, op: int) -> np.ndarray:
    x = chk.f32("x", x)
    out = np.empty_like(x)
    ew.activation(x.reshape(-1), out.reshape(-1), op)
    return out


def relu(x) -> np.ndarray:
    """``max(x, 0)``."""
    return _activation(x, ew.RELU)


def relu6(x) -> np.ndarray:
    """``min(max(x, 0), 6)``."""
    return _activation(x, ew.RELU6)


def hardsigmoid(x) -> np.ndarray:
    """``relu6(x + 3) / 6``."""
    return _activation(x, ew.HARDSIGMOID)


def hardswish(x) -> np.ndarray:
    """``x * relu6(x + 3) / 6``."""
    return _activation(x, ew.HARDSWISH)


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))`` with a vectorised exp approximation (see ``_elementwise``): absolute
    error below 1e-7 (2 float32 ulps of 1); for x < -87 it returns ~6e-39 instead of a smaller
    value."""
    return _activation(x, ew.SIGMOID)


def silu(x) -> np.ndarray:
    """``x * sigmoid(x)``."""
    return _activation(x, ew.SILU)


def upsample_nearest(x, out_hw) -> np.ndarray:
    """``F.interpolate(x, size=out_hw, mode="nearest")`` (PyTorch's float32 index rule)."""
    x = chk.nchw("x", x)
    oh, ow = chk.out_hw(out_hw)
    out = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=np.float32)
    ew.gather2d(x, pool.nearest_index(x.shape[2], oh), pool.nearest_index(x.shape[3], ow), out)
    return out


def upsample_bilinear(x, out_hw, align_corners: bool = False) -> np.ndarray:
    """``F.interpolate(x, size=out_hw, mode="bilinear", align_corners=...)``."""
    x = chk.nchw("x", x)
    oh, ow = chk.out_hw(out_hw)
    h0, h1, hl = pool.linear_index(x.shape[2], oh, bool(align_corners))
    w0, w1, wl = pool.linear_index(x.shape[3], ow, bool(align_corners))
    out = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=np.float32)
    pool.bilinear(x, out, h0, h1, hl, w0, w1, wl)
    return out


def channel_shuffle(x, groups: int) -> np.ndarray:
    """ShuffleNet channel shuffle: view C as (groups, C/groups), transpose, flatten."""
    x = chk.nchw("x", x)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"channel_shuffle: groups must be a positive int, got {groups!r}")
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: groups={groups} must divide the {c} channels")
    y = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(y).reshape(n, c, h, w)
