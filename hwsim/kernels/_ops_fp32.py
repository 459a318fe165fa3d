"""Public fp32 wrappers of the transformer-era and QONNX ops (re-exported by ``hwsim.kernels.fp32``).

Each validates its arguments (``ValueError`` naming the argument), converts inputs to C-contiguous
float32, and returns a new C-contiguous float32 array. Pointwise activations, normalisation,
softmax, reductions and thresholding are Numba loops (``_nn_fp32``); matrix products are BLAS
(``np.matmul``); data movement and the cheap elementwise ops are numpy. Semantics are PyTorch's,
and QONNX's (qonnx 1.0 ``custom_op/general``) for ``quantize``, ``trunc`` and ``multithreshold``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hwsim.kernels import _checks as chk
from hwsim.kernels import _nn_fp32 as nn

__all__ = [
    "gelu", "leaky_relu", "prelu", "elu", "mish", "softplus", "clamp", "unary", "power", "binary",
    "layer_norm", "group_norm", "softmax", "reduce", "permute", "pad", "matmul", "attention",
    "quantize", "trunc", "multithreshold",
]

# qonnx intquant.py resolve_rounding_mode (the same table serves Quant and Trunc)
_ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor, "DOWN": np.fix,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)),
    "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - np.float32(0.5)),
}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}
_REDUCE = {"sum": nn.SUM, "mean": nn.MEAN, "max": nn.MAX}


# ----------------------------------------------------------------------------- argument checks
def _real(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {v!r}")
    return float(v)


def _int(name: str, v, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def _dim(name: str, d, ndim: int) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not -ndim <= d < ndim:
        raise ValueError(f"{name} must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {d!r}")
    return int(d) % ndim


def _rank(name: str, a, minimum: int) -> np.ndarray:
    arr = chk.f32(name, a)
    if arr.ndim < minimum:
        raise ValueError(f"{name} must be at least {minimum}-D, got shape {arr.shape}")
    return arr


def _vector(name: str, v, n: int, default: float) -> np.ndarray:
    """A flat float32 vector of ``n`` entries (``default`` everywhere when ``v`` is None)."""
    if v is None:
        return np.full(n, default, dtype=np.float32)
    arr = chk.f32(name, v).reshape(-1)
    if arr.size != n:
        raise ValueError(f"{name} has {arr.size} entries, expected {n}")
    return arr


def _rounding(name: str, mode) -> Callable[[np.ndarray], np.ndarray]:
    fn = _ROUNDING.get(str(mode).upper())
    if fn is None:
        raise ValueError(f"{name} must be one of {sorted(_ROUNDING)}, got {mode!r}")
    return fn


def _broadcast(names: str, *shapes) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{names} of shapes {', '.join(map(str, shapes))} do not broadcast") from None


# ----------------------------------------------------------------------------- elementwise
def _pointwise(x, op: int, a: float = 0.0, b: float = 0.0) -> np.ndarray:
    x = chk.f32("x", x)
    out = np.empty_like(x)
    nn.pointwise(x.reshape(-1), out.reshape(-1), op, a, b)
    return out


def gelu(x, approximate: str = "none") -> np.ndarray:
    """``F.gelu``: ``x * Phi(x)`` with the exact erf, or its tanh approximation (``approximate="tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _pointwise(x, nn.GELU if approximate == "none" else nn.GELU_TANH)


def leaky_relu(x, negative_slope: float = 0.01) -> np.ndarray:
    """``F.leaky_relu``: ``x if x > 0 else negative_slope * x``."""
    return _pointwise(x, nn.LEAKY_RELU, _real("negative_slope", negative_slope))


def elu(x, alpha: float = 1.0) -> np.ndarray:
    """``F.elu``: ``x if x > 0 else alpha * (exp(x) - 1)``."""
    return _pointwise(x, nn.ELU, _real("alpha", alpha))


def mish(x) -> np.ndarray:
    """``F.mish``: ``x * tanh(softplus(x))``."""
    return _pointwise(x, nn.MISH)


def softplus(x, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    """``F.softplus``: ``log(1 + exp(beta x)) / beta``, ``x`` itself where ``beta x > threshold``."""
    beta = _real("beta", beta)
    if beta == 0:
        raise ValueError("beta must be nonzero")
    return _pointwise(x, nn.SOFTPLUS, beta, _real("threshold", threshold))


def prelu(x, weight) -> np.ndarray:
    """``F.prelu``: ``x if x > 0 else w * x`` with ``weight`` of 1 entry or one per channel (dim 1)."""
    x = chk.f32("x", x)
    w = chk.f32("weight", weight).reshape(-1)
    if w.size != 1 and (x.ndim < 2 or w.size != x.shape[1]):
        raise ValueError(f"weight has {w.size} entries, expected 1 or one per channel (dim 1) of x {x.shape}")
    out = np.empty_like(x)
    shape3 = (1, 1, x.size) if w.size == 1 else (x.shape[0], x.shape[1], -1)
    nn.prelu(x.reshape(shape3), w, out.reshape(shape3))
    return out


def clamp(x, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``torch.clamp``: ``min(max(x, lo), hi)`` (``hi`` wins when ``lo > hi``; NaN propagates); None
    leaves a side open."""
    x = chk.f32("x", x)
    lo = None if lo is None else np.float32(_real("lo", lo))
    hi = None if hi is None else np.float32(_real("hi", hi))
    if lo is None and hi is None:
        return x.copy()
    return np.clip(x, lo, hi, out=np.empty_like(x))


def unary(x, fn: str) -> np.ndarray:
    """Elementwise math named as the IR ops: "exp", "log", "sqrt", "rsqrt", "erf", "abs", "neg", "round" (half to
    even), "floor", "ceil" (torch semantics: NaN / inf results, no warnings)."""
    libm = {"exp": nn.EXP, "log": nn.LOG, "erf": nn.ERF}  # float64 libm in Numba
    if fn in libm:
        return _pointwise(x, libm[fn])
    x = chk.f32("x", x)
    out = np.empty_like(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        if fn == "sqrt":
            np.sqrt(x, out=out)
        elif fn == "rsqrt":  # torch.rsqrt: 1 / sqrt(x)
            np.divide(np.float32(1.0), np.sqrt(x, out=out), out=out)
        elif fn == "abs":
            np.abs(x, out=out)
        elif fn == "neg":
            np.negative(x, out=out)
        elif fn in ("round", "floor", "ceil"):  # torch.round is half to even, as np.rint
            {"round": np.rint, "floor": np.floor, "ceil": np.ceil}[fn](x, out=out)
        else:
            raise ValueError(f"fn must be one of exp, log, sqrt, rsqrt, erf, abs, neg, round, floor, ceil; got {fn!r}")
    return out


def power(x, exponent: float, reverse: bool = False) -> np.ndarray:
    """``torch.pow(x, exponent)``, or ``torch.pow(exponent, x)`` when ``reverse``."""
    return _pointwise(x, nn.RPOW if reverse else nn.POW, _real("exponent", exponent))


def binary(x, y, op: str) -> np.ndarray:
    """``x op y`` for op in "add", "sub", "mul", "div" with numpy broadcasting (either may be a
    scalar); division by zero gives inf/NaN as in torch."""
    fn = _BINARY.get(op)
    if fn is None:
        raise ValueError(f"op must be one of {sorted(_BINARY)}, got {op!r}")
    x, y = chk.f32("x", x), chk.f32("y", y)
    out = np.empty(_broadcast("x and y", x.shape, y.shape), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return fn(x, y, out=out)


# ----------------------------------------------------------------------------- normalisation, softmax, reductions
def layer_norm(x, normalized_shape, gamma=None, beta=None, eps: float = 1e-5) -> np.ndarray:
    """``F.layer_norm`` over the last ``len(normalized_shape)`` dims (biased variance); ``gamma``/``beta``
    of ``prod(normalized_shape)`` entries or None (1 / 0)."""
    x = chk.f32("x", x)
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if not shape or len(shape) > x.ndim or shape != x.shape[x.ndim - len(shape):]:
        raise ValueError(f"normalized_shape {shape} must be the trailing dims of x {x.shape}")
    eps = _real("eps", eps)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    d = math.prod(shape)
    out = np.empty_like(x)
    nn.layer_norm(x.reshape(-1, d), _vector("gamma", gamma, d, 1.0), _vector("beta", beta, d, 0.0), eps,
                  out.reshape(-1, d))
    return out


def group_norm(x, groups: int, gamma=None, beta=None, eps: float = 1e-5) -> np.ndarray:
    """``F.group_norm`` on x[N, C, ...]: ``groups`` groups of C/groups channels, each normalised over its
    channels and all following dims; ``gamma``/``beta`` of C entries or None (1 / 0)."""
    x = _rank("x", x, 2)
    groups = _int("groups", groups, 1)
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"groups={groups} must divide the {c} channels of x")
    eps = _real("eps", eps)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    out = np.empty_like(x)
    shape3 = (x.shape[0], c, -1)
    nn.group_norm(x.reshape(shape3), groups, _vector("gamma", gamma, c, 1.0), _vector("beta", beta, c, 0.0),
                  eps, out.reshape(shape3))
    return out


def _around(shape: tuple[int, ...], d0: int, d1: int) -> tuple[int, int, int]:
    """``shape`` viewed as ``[A, R, B]`` with R the dims d0..d1 (inclusive)."""
    return math.prod(shape[:d0]), math.prod(shape[d0:d1 + 1]), math.prod(shape[d1 + 1:])


def softmax(x, dim: int, log: bool = False) -> np.ndarray:
    """``torch.softmax(x, dim)``, or ``torch.log_softmax`` when ``log``."""
    x = _rank("x", x, 1)
    d = _dim("dim", dim, x.ndim)
    out = np.empty_like(x)
    if x.size:
        shape3 = _around(x.shape, d, d)
        nn.softmax(x.reshape(shape3), out.reshape(shape3), bool(log))
    return out


def reduce(x, dims, op: str = "mean", keepdim: bool = False) -> np.ndarray:
    """``torch.sum`` / ``torch.mean`` / ``torch.amax`` over ``dims`` (a non-empty sequence of distinct
    dims, negative ones counted from the end)."""
    if op not in _REDUCE:
        raise ValueError(f"op must be one of {sorted(_REDUCE)}, got {op!r}")
    x = _rank("x", x, 1)
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    red = sorted({_dim("dims", d, x.ndim) for d in dims})
    if not red or len(red) != len(dims):
        raise ValueError(f"dims must be non-empty and distinct, got {dims!r}")
    kept = [d for d in range(x.ndim) if d not in red]
    if red == list(range(red[0], red[-1] + 1)):  # one run of dims: a view, no copy
        x3 = x.reshape(_around(x.shape, red[0], red[-1]))
    else:
        x3 = np.ascontiguousarray(x.transpose(kept + red)).reshape(-1, math.prod(x.shape[d] for d in red), 1)
    if x3.shape[1] == 0 and op == "max":
        raise ValueError(f"dims {tuple(dims)} of x {x.shape} are empty: max has no identity")
    out = np.empty((x3.shape[0], x3.shape[2]), dtype=np.float32)
    nn.reduce(x3, _REDUCE[op], out)
    return out.reshape(tuple(1 if d in red else x.shape[d] for d in range(x.ndim)) if keepdim
                       else tuple(x.shape[d] for d in kept))


# ----------------------------------------------------------------------------- data movement and products
def permute(x, perm) -> np.ndarray:
    """``x.permute(perm)`` made contiguous (negative entries counted from the end)."""
    x = chk.f32("x", x)
    p = [_dim("perm", d, x.ndim) for d in perm]
    if sorted(p) != list(range(x.ndim)):
        raise ValueError(f"perm must be a permutation of the {x.ndim} dims of x, got {tuple(perm)!r}")
    return np.ascontiguousarray(x.transpose(p))


# torch's padding modes -> np.pad's: "reflect" mirrors without repeating the edge in both, "edge" repeats the edge
# (torch's replicate), "wrap" continues from the far side (torch's circular) (tests/test_pad_modes.py checks them)
PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_problem(shape, pads, mode: str) -> str | None:
    """Why ``pads`` (one (before, after) pair per dim, < 0 crops) cannot pad an array of ``shape`` in ``mode``, or
    None. torch's rules: the output keeps >= 0 elements per dim; reflect pads < the dim's size (one mirror image);
    replicate needs an element to repeat; circular crops first, then wraps at most once (pad <= what is left)."""
    if mode not in PAD_MODES:
        return f"padding mode {mode!r} (one of {', '.join(PAD_MODES)})"
    for d, (s, (b, a)) in enumerate(zip(shape, pads)):
        grow, kept = max(b, a, 0), s + min(b, 0) + min(a, 0)
        if s + b + a < 0:
            return f"pads {(b, a)} crop more than dim {d} of size {s} holds"
        if mode == "reflect" and grow and grow >= s:
            return f"reflect pad {(b, a)} of dim {d} of size {s}: a reflect pad must be smaller than the size"
        if mode == "replicate" and grow and s == 0:
            return f"replicate pad {(b, a)} of the empty dim {d}"
        if mode == "circular" and grow > kept:
            return f"circular pad {(b, a)} of dim {d} of size {kept} (after crops): it may wrap around at most once"
    return None


def pad_plan(shape, pads, mode: str) -> list[tuple]:
    """``F.pad`` as steps with amounts >= 0, each ``(kind, what, shape after it)``: ``("pad", pairs, ...)`` and
    ``("crop", (dim, start, stop), ...)`` for every dim a negative amount cuts. torch crops after padding in
    constant, reflect and replicate mode (the mirror and the edge are those of the whole input) and before in
    circular mode (the wrap reads the cropped input). No steps when every amount is 0. ``pad_problem`` first."""
    grow = tuple((max(b, 0), max(a, 0)) for b, a in pads)
    padded = tuple(s + b + a for s, (b, a) in zip(shape, grow))
    first = [("pad", grow, padded)] if mode != "circular" and padded != tuple(shape) else []
    cur = list(padded if first else shape)
    for d, (b, a) in enumerate(pads):
        if min(b, a) < 0:
            start, stop = max(-b, 0), cur[d] - max(-a, 0)
            cur[d] = stop - start
            first.append(("crop", (d, start, stop), tuple(cur)))
    if mode == "circular" and any(g != (0, 0) for g in grow):
        first.append(("pad", grow, tuple(s + b + a for s, (b, a) in zip(cur, grow))))
    return first


def pad(x, pads, value: float = 0.0, mode: str = "constant") -> np.ndarray:
    """``F.pad(mode=mode)`` with ``pads[d] = (before, after)`` for every dim d of x, first dim first; ``value``
    fills a "constant" pad (ignored by the other modes); negative amounts crop, as in torch (:func:`pad_plan`).
    Refused (ValueError): :func:`pad_problem`."""
    x = chk.f32("x", x)
    try:
        pairs = [(int(b), int(a)) for b, a in pads]
    except (TypeError, ValueError):
        raise ValueError(f"pads must be one (before, after) pair of ints per dim, got {pads!r}") from None
    if len(pairs) != x.ndim:
        raise ValueError(f"pads has {len(pairs)} pairs, expected one per dim of x {x.shape}")
    problem = pad_problem(x.shape, pairs, mode)
    if problem is not None:
        raise ValueError(f"x {x.shape}: {problem}")
    fill = {"constant_values": np.float32(_real("value", value))} if mode == "constant" else {}
    y = x
    for kind, what, _ in pad_plan(x.shape, pairs, mode):
        if kind == "pad":
            y = np.pad(y, what, mode=PAD_MODES[mode], **fill)
        else:
            y = y[(slice(None),) * what[0] + (slice(what[1], what[2]),)]
    return np.ascontiguousarray(y)


def matmul(a, b) -> np.ndarray:
    """``torch.matmul`` of a[..., M, K] and b[..., K, P], leading dims broadcast (BLAS sgemm per matrix)."""
    a, b = _rank("a", a, 2), _rank("b", b, 2)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"a has {a.shape[-1]} columns but b has {b.shape[-2]} rows")
    _broadcast("leading dims of a and b", a.shape[:-2], b.shape[:-2])
    return np.matmul(a, b)


def attention(q, k, v, scale: float | None = None, causal: bool = False, mask=None) -> np.ndarray:
    """``F.scaled_dot_product_attention`` of q[..., L, E], k[..., S, E], v[..., S, Ev] (leading dims
    broadcast): ``softmax(q k^T * scale + mask) v``, ``scale`` None meaning ``1/sqrt(E)``; ``causal`` masks
    keys after the query's index (torch's top-left-aligned ``is_causal``); ``mask`` an additive float mask
    broadcast to [..., L, S] (torch's float ``attn_mask``)."""
    q, k, v = _rank("q", q, 2), _rank("k", k, 2), _rank("v", v, 2)
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k has {k.shape[-1]} features per key, q has {q.shape[-1]}")
    if v.shape[-2] != k.shape[-2] or k.shape[-2] < 1:
        raise ValueError(f"v has {v.shape[-2]} keys, k has {k.shape[-2]} (both must match, >= 1)")
    _broadcast("leading dims of q, k and v", q.shape[:-2], k.shape[:-2], v.shape[:-2])
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else _real("scale", scale)
    s = np.matmul(q, np.ascontiguousarray(np.swapaxes(k, -1, -2)))  # numpy's matmul skips BLAS on a transposed view
    s *= np.float32(sc)
    if mask is not None:
        s = np.ascontiguousarray(s + chk.f32("mask", mask), dtype=np.float32)
    nn.attention_softmax(s.reshape(-1, s.shape[-2], s.shape[-1]), bool(causal))
    return np.matmul(s, v)


# ----------------------------------------------------------------------------- QONNX quantization
def quantize(x, bits: int, scale: float, signed: bool = False, zero_point: float = 0.0, narrow: bool = False,
             rounding: str = "ROUND") -> np.ndarray:
    """QONNX Quant (qonnx intquant.py ``int_quant``): ``q = x / scale + zero_point`` clipped to the integer
    range of ``bits`` (signed ``[-2^(b-1) + narrow, 2^(b-1) - 1]``, unsigned ``[0, 2^b - 1 - narrow]``),
    rounded by ``rounding``, then ``(q - zero_point) * scale``. A 1-bit signed quantizer is bipolar there:
    ``q = +1 if q >= 0 else -1``. Float32 arithmetic in qonnx's order."""
    x = chk.f32("x", x)
    bits = _int("bits", bits, 1)
    if not _real("scale", scale) > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    rnd = _rounding("rounding", rounding)
    s, zp = np.float32(scale), np.float32(_real("zero_point", zero_point))
    q = x / s
    q += zp
    if bits == 1 and signed:
        q = np.where(q >= 0, np.float32(1), np.float32(-1))
    else:
        lo = -(2 ** (bits - 1)) + int(bool(narrow)) if signed else 0
        hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - int(bool(narrow))
        q = rnd(np.clip(q, np.float32(lo), np.float32(hi), out=q))
    q -= zp
    q *= s
    return q


def trunc(x, in_bits: int, out_bits: int, scale: float, zero_point: float = 0.0,
          rounding: str = "FLOOR") -> np.ndarray:
    """QONNX Trunc (qonnx trunc.py ``trunc_v1``): ``(rnd(round(x / scale + zero_point) / 2^(in_bits -
    out_bits)) - zero_point) * scale``, ``round`` half to even, ``rnd`` the rounding mode. The result
    keeps the input ``scale`` and subtracts the unshifted ``zero_point``, as qonnx does."""
    x = chk.f32("x", x)
    out_bits = _int("out_bits", out_bits, 1)
    in_bits = _int("in_bits", in_bits, out_bits)
    if not _real("scale", scale) > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    rnd = _rounding("rounding", rounding)
    s, zp = np.float32(scale), np.float32(_real("zero_point", zero_point))
    y = np.round(x / s + zp)
    y = rnd(y / np.float32(2.0 ** (in_bits - out_bits)))
    y -= zp
    y *= s
    return y


def multithreshold(x, thresholds, out_scale: float = 1.0, out_bias: float = 0.0) -> np.ndarray:
    """QONNX/FINN MultiThreshold (qonnx multithreshold.py): ``out_scale * #{t in thresholds[c] : x >= t}
    + out_bias`` for x[N, C, ...] with channels on dim 1 and ``thresholds`` f32[C or 1, T]."""
    x = _rank("x", x, 2)
    t = chk.f32("thresholds", thresholds, 2)
    if t.shape[0] not in (1, x.shape[1]):
        raise ValueError(f"thresholds has {t.shape[0]} rows, expected 1 or the {x.shape[1]} channels of x")
    out = np.empty_like(x)
    shape3 = (x.shape[0], x.shape[1], -1)
    nn.multithreshold(x.reshape(shape3), t, _real("out_scale", out_scale), _real("out_bias", out_bias),
                      out.reshape(shape3))
    return out
