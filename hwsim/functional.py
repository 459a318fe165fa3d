"""Functional execution of a Graph: every node computed by a Numba kernel.

:func:`run` walks the nodes in order and calls one kernel per op. The fp32 kernels of
``hwsim.kernels.fp32`` are the defaults; a target replaces the ops its hardware computes
differently (the IMC target its crossbar conv/linear, the XNOR engine its binary layers) by passing
``kernels={Op.CONV2D: its_conv, ...}``. A kernel is ``fn(graph, node, inputs) -> array``.
Buffers are dropped after their last reader, so peak memory follows the graph's liveness.

Progress: :func:`run` draws a bar over the graph's nodes on stderr when the run lasts more than a second and
:func:`show_progress` says yes (stderr is a terminal, no :func:`progress_default` ``False`` in effect — the CLI's
``--quiet`` — and ``TQDM_DISABLE`` unset). Other long jobs (sweeps, calibration, the CLI's stages) ask the same
function.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from hwsim.errors import ShapeError, UnsupportedOpError
from hwsim.kernels import fp32 as K
from hwsim.kernels._deconv import conv_transpose2d_node
from mapping.graph import Graph, Node, Op

__all__ = ["Kernel", "FP32_KERNELS", "run", "check_input", "check_values", "show_progress", "progress_default",
           "progress_bar"]

Kernel = Callable[[Graph, Node, Sequence[np.ndarray]], np.ndarray]


def _optional(g: Graph, n: Node, role: str) -> np.ndarray | None:
    return g.param(n, role) if role in n.params else None


def _conv(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a = n.attrs
    b = _optional(g, n, "bias")
    x, padding = xs[0], a.padding
    pad_value = float(n.meta.get("pad_value", 0.0))  # binary convs may pad with +1/-1 (nets.layers)
    if pad_value != 0.0 and any(padding):
        (ph, pw) = padding
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=np.float32(pad_value))
        padding = (0, 0)
    return K.conv2d(x, g.param(n, "weight"), b, a.stride, padding, a.dilation, a.groups)


def _linear(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    b = _optional(g, n, "bias")
    x = xs[0]
    if x.ndim != 2:  # linear over the last dimension of a higher-rank tensor
        y = K.linear(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), g.param(n, "weight"), b)
        return y.reshape(x.shape[:-1] + (y.shape[-1],))
    return K.linear(x, g.param(n, "weight"), b)


def _bn(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    mean, var = g.param(n, "mean"), g.param(n, "var")
    gamma = g.param(n, "gamma") if "gamma" in n.params else np.ones_like(mean)
    beta = g.param(n, "beta") if "beta" in n.params else np.zeros_like(mean)
    return K.batch_norm(xs[0], mean, var, gamma, beta, n.attrs.eps)


def _pool(fn: Callable) -> Kernel:
    def run_pool(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        a = n.attrs
        if n.op == Op.MAXPOOL:
            return fn(xs[0], a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode)
        return fn(xs[0], a.kernel, a.stride, a.padding, a.ceil_mode, a.count_include_pad)

    return run_pool


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    return lambda g, n, xs: fn(xs[0])


def _math(name: str) -> Kernel:
    return lambda g, n, xs: K.unary(xs[0], name)


def _arith(op: str) -> Kernel:
    def run_arith(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        if len(xs) == 1:  # constant operand: x op value, or value op x when reversed
            s = n.attrs.value
            return K.binary(s, xs[0], op) if n.attrs.reverse else K.binary(xs[0], s, op)
        return K.binary(xs[0], xs[1], op)

    return run_arith


def _reduce(op: str) -> Kernel:
    return lambda g, n, xs: K.reduce(xs[0], n.attrs.dims, op, n.attrs.keepdim)


def _upsample(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a = n.attrs
    if a.mode == "nearest":
        return K.upsample_nearest(xs[0], a.size)
    return K.upsample_bilinear(xs[0], a.size, a.align_corners)


def _slice(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a = n.attrs
    if a.step < 1:
        raise ValueError(f"slice step must be >= 1, got {a.step} (node {n.name!r})")
    idx = [slice(None)] * xs[0].ndim
    idx[a.dim] = slice(a.start, a.stop, a.step)
    return np.ascontiguousarray(xs[0][tuple(idx)])


def _reshape(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    return xs[0].reshape((xs[0].shape[0],) + n.attrs.shape)


def _sign(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    return np.where(xs[0] >= 0, np.float32(1), np.float32(-1))  # sign(0) = +1 (binary nets)


def _where(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    """x where cond != 0 else y; with a Scalar v: y = v (reverse: x = v). A select: inf / NaN in the branch not
    taken never reach the result."""
    cond, x = xs[0], xs[1]
    y = xs[2] if len(xs) == 3 else np.float32(n.attrs.value)
    x, y = (y, x) if len(xs) == 2 and n.attrs.reverse else (x, y)
    return np.ascontiguousarray(np.broadcast_to(np.where(cond != 0, x, y), n.shape), dtype=np.float32)


def _quantize(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a = n.attrs
    return K.quantize(xs[0], a.bits, a.scale, a.signed, a.zero_point, a.narrow, a.rounding)


def _trunc(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a = n.attrs
    return K.trunc(xs[0], a.in_bits, a.out_bits, a.scale, a.zero_point, a.rounding)


def _norm(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    a, gamma, beta = n.attrs, _optional(g, n, "gamma"), _optional(g, n, "beta")
    if n.op == Op.LAYERNORM:
        return K.layer_norm(xs[0], a.normalized_shape, gamma, beta, a.eps)
    return K.group_norm(xs[0], a.groups, gamma, beta, a.eps)


def _constant(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
    """``params["value"]`` of shape (1, *shape[1:]) repeated over the run's batch (that of inputs[0])."""
    value = np.asarray(g.param(n, "value"), dtype=np.float32)
    shape = (xs[0].shape[0],) + tuple(n.shape[1:])
    if value.shape != (1,) + shape[1:]:
        raise ShapeError(f"constant {n.name!r}: value has shape {value.shape}, expected {(1,) + shape[1:]}")
    return np.ascontiguousarray(np.broadcast_to(value, shape))


FP32_KERNELS: Mapping[Op, Kernel] = {
    Op.CONV2D: _conv,
    Op.CONV_TRANSPOSE2D: conv_transpose2d_node,
    Op.LINEAR: _linear,
    Op.BATCHNORM: _bn,
    Op.RELU: _unary(K.relu),
    Op.RELU6: _unary(K.relu6),
    Op.HARDSWISH: _unary(K.hardswish),
    Op.SIGMOID: _unary(K.sigmoid),
    Op.HARDSIGMOID: _unary(K.hardsigmoid),
    Op.SILU: _unary(K.silu),
    Op.TANH: _unary(lambda x: np.tanh(x).astype(np.float32)),
    Op.MAXPOOL: _pool(K.max_pool2d),
    Op.AVGPOOL: _pool(K.avg_pool2d),
    Op.ADAPTIVE_AVGPOOL: lambda g, n, xs: K.adaptive_avg_pool2d(xs[0], n.attrs.output_size),
    Op.ADD: _arith("add"),
    Op.MUL: _arith("mul"),
    Op.CONCAT: lambda g, n, xs: np.concatenate(xs, axis=n.attrs.dim),
    Op.CHANNEL_SHUFFLE: lambda g, n, xs: K.channel_shuffle(xs[0], n.attrs.groups),
    Op.RESHAPE: _reshape,
    Op.UPSAMPLE: _upsample,
    Op.SLICE: _slice,
    Op.SIGN: _sign,
    Op.WHERE: _where,
    Op.QUANTIZE: _quantize,
    Op.GELU: lambda g, n, xs: K.gelu(xs[0], n.attrs.approximate),
    Op.LEAKY_RELU: lambda g, n, xs: K.leaky_relu(xs[0], n.attrs.negative_slope),
    Op.PRELU: lambda g, n, xs: K.prelu(xs[0], g.param(n, "weight")),
    Op.ELU: lambda g, n, xs: K.elu(xs[0], n.attrs.alpha),
    Op.MISH: _unary(K.mish),
    Op.SOFTPLUS: lambda g, n, xs: K.softplus(xs[0], n.attrs.beta, n.attrs.threshold),
    Op.CLAMP: lambda g, n, xs: K.clamp(xs[0], n.attrs.lo, n.attrs.hi),
    Op.EXP: _math("exp"),
    Op.LOG: _math("log"),
    Op.SQRT: _math("sqrt"),
    Op.RSQRT: _math("rsqrt"),
    Op.ERF: _math("erf"),
    Op.ROUND: _math("round"),
    Op.FLOOR: _math("floor"),
    Op.CEIL: _math("ceil"),
    Op.ABS: _math("abs"),
    Op.NEG: _math("neg"),
    Op.POW: lambda g, n, xs: K.power(xs[0], n.attrs.value, n.attrs.reverse),
    Op.SUB: _arith("sub"),
    Op.DIV: _arith("div"),
    Op.LAYERNORM: _norm,
    Op.GROUPNORM: _norm,
    Op.SOFTMAX: lambda g, n, xs: K.softmax(xs[0], n.attrs.dim, n.attrs.log),
    Op.REDUCE_MEAN: _reduce("mean"),
    Op.REDUCE_SUM: _reduce("sum"),
    Op.REDUCE_MAX: _reduce("max"),
    Op.PERMUTE: lambda g, n, xs: K.permute(xs[0], n.attrs.perm),
    Op.PAD: lambda g, n, xs: K.pad(xs[0], n.attrs.pads, n.attrs.value, n.attrs.mode),
    Op.CONSTANT: _constant,
    Op.MATMUL: lambda g, n, xs: K.matmul(xs[0], xs[1]),
    Op.ATTENTION: lambda g, n, xs: K.attention(xs[0], xs[1], xs[2], n.attrs.scale, n.attrs.causal,
                                                xs[3] if len(xs) > 3 else None),
    Op.TRUNC: _trunc,
    Op.MULTITHRESHOLD: lambda g, n, xs: K.multithreshold(xs[0], g.param(n, "thresholds"), n.attrs.out_scale,
                                                         n.attrs.out_bias),
}


def check_values(x, what: str = "x") -> np.ndarray:
    """``x`` as a float32 C-order array, or a one-line :class:`~hwsim.errors.ShapeError`: hwsim refuses inputs it
    cannot compute faithfully — complex, boolean or non-numeric dtypes, and NaN or ±inf values (also values that
    overflow float32), naming the first offending index. (The hardware targets quantize or binarize their inputs,
    where a NaN has no meaning: refusing it is the one rule on every target.)"""
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged nested lists and the like
        raise ShapeError(f"{what} is not an array of numbers: {e}") from None
    if a.dtype.kind == "c":
        raise ShapeError(f"{what} has complex dtype {a.dtype}: hwsim computes with real numbers only "
                         "(pass x.real or abs(x) explicitly)")
    if a.dtype.kind not in "iuf":
        raise ShapeError(f"{what} must be an array of real numbers (float or int), got dtype {a.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(f)
        if bad.any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), f.shape))
            v = float(a[idx])
            n = int(bad.sum())
            more = f" ({n} values in all)" if n > 1 else ""
            if np.isfinite(v):
                raise ShapeError(f"{what} has a value too large for float32 at index {idx}: {v:g}{more}; hwsim "
                                 "computes in float32 and refuses inputs that would become inf")
            kind = "NaN" if np.isnan(v) else "inf"
            raise ShapeError(f"{what} contains NaN/inf at index {idx}: {kind}{more}; hwsim refuses non-finite "
                             "inputs on every target")
    return f


def check_input(graph: Graph, x: np.ndarray, what: str = "input") -> np.ndarray:
    """Validate an input array (``what``: its name in a message) against the graph's input (any batch size) and
    make it float32 C-order.

    Refused with a one-line :class:`~hwsim.errors.ShapeError`: a shape that does not match, complex, boolean or
    non-numeric dtypes, and NaN/inf values (:func:`check_values`)."""
    if what != "input":
        x = check_values(x, what)  # not an array of numbers at all: say so before its shape
    x = np.asarray(x)
    want = graph.input_shape
    if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(want[1:]):
        raise ShapeError(f"{what} of shape {tuple(x.shape)} does not match the network's input "
                         f"(N, {', '.join(map(str, want[1:]))})")
    if x.shape[0] < 1:
        raise ShapeError(f"{what} of shape {tuple(x.shape)} holds no sample (a batch of at least 1 is needed)")
    if graph.batch_fixed and x.shape[0] != 1:
        raise ShapeError(f"{graph.name} moves or merges the batch dimension (or uses its batch size as a number), so its graph computes one sample: "
                         f"run it with batch 1 (got a batch of {x.shape[0]})")
    return check_values(x) if what == "input" else x  # a named array was checked above


# ----------------------------------------------------------------------------- progress
_PROGRESS: contextvars.ContextVar[bool | None] = contextvars.ContextVar("hwsim_progress", default=None)


def show_progress(progress: bool | None = None, stream=None) -> bool:
    """Whether a long job draws a progress bar: ``progress`` itself when it is True or False; for None (auto) the
    value of the innermost :func:`progress_default` when one is in effect, else False when ``TQDM_DISABLE`` is set
    in the environment, else whether ``stream`` (default ``sys.stderr``) is a terminal. So bars are drawn for a
    person at a terminal and never in a pipe, a log file, a test run or CI."""
    if progress is not None:
        return bool(progress)
    forced = _PROGRESS.get()
    if forced is not None:
        return forced
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def progress_default(value: bool | None) -> Iterator[None]:
    """Within the block, ``progress=None`` (auto) means ``value``: ``False`` turns off every bar hwsim would draw
    (the CLI's ``--quiet``; a sweep's points run inside ``progress_default(False)`` so that a functional run does
    not draw a bar inside the sweep's), ``True`` draws them even off a terminal, ``None`` changes nothing."""
    if value is None:
        yield
        return
    token = _PROGRESS.set(bool(value))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def progress_bar(total: int | None, desc: str, progress: bool | None = None, *, unit: str = "it",
                 delay: float = 0.0, leave: bool = False):
    """A tqdm bar on stderr, or a disabled one (no output, no cost beyond the object) when
    :func:`show_progress` says no. ``delay``: seconds before it first appears (a job that ends sooner shows none)."""
    from tqdm import tqdm

    on = show_progress(progress)
    return tqdm(total=total, desc=desc, unit=unit, disable=not on, delay=delay, leave=leave, file=sys.stderr,
                dynamic_ncols=True)


RUN_PROGRESS_DELAY_S = 1.0  # auto progress of run(): the bar appears once a run has lasted this long


def run(graph: Graph, x: np.ndarray, kernels: Mapping[Op, Kernel] | None = None,
        keep: bool = False, progress: bool | None = None
        ) -> list[np.ndarray] | tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Execute ``graph`` on ``x``; returns the list of outputs (and every value when ``keep``).

    ``progress``: a bar over the nodes on stderr (True), none (False), or None (auto: drawn when
    :func:`show_progress` says yes and the run has lasted :data:`RUN_PROGRESS_DELAY_S`, e.g. VGG-16 on the IMC
    crossbars)."""
    table = dict(FP32_KERNELS)
    if kernels:
        table.update(kernels)
    x = check_input(graph, x)
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for s in n.inputs:
            last_use[s] = i
    values: dict[str, np.ndarray] = {graph.inputs[0].name: x}
    kept: dict[str, np.ndarray] = {}
    outputs = set(graph.outputs)
    bar = None
    if show_progress(progress):
        bar = progress_bar(len(graph.nodes), f"{graph.name or 'graph'} (batch {x.shape[0]})", True, unit="layer",
                           delay=RUN_PROGRESS_DELAY_S if progress is None else 0.0)
    try:
        for i, n in enumerate(graph.nodes):
            fn = table.get(n.op)
            if fn is None:
                raise UnsupportedOpError(f"no kernel for op {n.op.value!r} (node {n.name!r}, module {n.module!r})")
            if bar is not None:
                bar.set_postfix_str(n.name, refresh=False)
            y = fn(graph, n, [values[s] for s in n.inputs])
            values[n.name] = y
            if keep:
                kept[n.name] = y
            for s in n.inputs:
                if last_use.get(s) == i and s not in outputs:
                    values.pop(s, None)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    outs = [values[o] for o in graph.outputs]
    return (outs, kept) if keep else outs
