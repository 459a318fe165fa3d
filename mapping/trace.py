"""torch.nn.Module -> :class:`~mapping.graph.Graph` through torch.fx.

Leaf modules (Conv2d, Linear, BatchNorm, activations, pools, ...) become one node each; functional
calls (``F.relu``, ``+``, ``torch.cat``, ``x.view``) are converted by small converters. Shapes come
from running the traced module once on a zero input (so every shape is the one torch computes).
Anything else is refused here, with the op and module path, never later inside a kernel.

Other packages extend the tracer with :func:`register_module` (e.g. binary layers map onto conv2d
with a ``weight_binary`` annotation).
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from hwsim.errors import ShapeError, UnsupportedOpError
from mapping.graph import (
    AdaptivePool, BatchNorm, ChannelShuffle, Concat, Conv2d, Graph, Input, Linear, NoAttrs, Node, Op,
    Pool, Reshape, Scalar, Slice, Upsample,
)

__all__ = ["trace", "register_module", "ModuleConversion", "Tracer"]


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


def _conv(m: nn.Conv2d, ins, out) -> ModuleConversion:
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"padding_mode={m.padding_mode!r}")
    if isinstance(m.padding, str):
        raise UnsupportedOpError(f"string padding {m.padding!r} (use integers)")
    attrs = Conv2d(m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride), _pair(m.padding),
                   _pair(m.dilation), m.groups, m.bias is not None)
    params = (("weight", "weight"),) + ((("bias", "bias"),) if m.bias is not None else ())
    return ModuleConversion(Op.CONV2D, attrs, params)


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


def _adaptive(m: nn.AdaptiveAvgPool2d, ins, out) -> ModuleConversion:
    return ModuleConversion(Op.ADAPTIVE_AVGPOOL, AdaptivePool((out[2], out[3])))


def _simple(op: Op) -> ModuleConverter:
    """An activation module; ``inplace=True`` is recorded as ``meta["inplace"]`` (the runtime overwrites its
    input instead of writing a new buffer: cost models count the traffic of one buffer)."""
    return lambda m, ins, out: ModuleConversion(op, meta=(("inplace", True),) if getattr(m, "inplace", False) else ())


def _upsample_mod(m: nn.Upsample, ins, out) -> ModuleConversion:
    return ModuleConversion(Op.UPSAMPLE, _upsample_attrs(m.mode, m.align_corners, out))


def _upsample_attrs(mode: str, align_corners: bool | None, out) -> Upsample:
    if mode not in ("nearest", "bilinear"):
        raise UnsupportedOpError(f"interpolate mode {mode!r} (nearest and bilinear are supported)")
    if len(out) != 4:
        raise UnsupportedOpError(f"interpolate of a {len(out)}-d tensor")
    return Upsample((out[2], out[3]), mode, bool(align_corners))


for _cls, _fn in [
    (nn.Conv2d, _conv), (nn.Linear, _linear), (nn.BatchNorm2d, _bn), (nn.BatchNorm1d, _bn),
    (nn.MaxPool2d, _maxpool), (nn.AvgPool2d, _avgpool), (nn.AdaptiveAvgPool2d, _adaptive),
    (nn.ReLU, _simple(Op.RELU)), (nn.ReLU6, _simple(Op.RELU6)), (nn.Hardswish, _simple(Op.HARDSWISH)),
    (nn.Sigmoid, _simple(Op.SIGMOID)), (nn.Hardsigmoid, _simple(Op.HARDSIGMOID)), (nn.SiLU, _simple(Op.SILU)),
    (nn.Tanh, _simple(Op.TANH)), (nn.Upsample, _upsample_mod), (nn.Flatten, None),
    (nn.Dropout, None), (nn.Identity, None), (nn.ChannelShuffle, None),
]:
    if _fn is not None:
        register_module(_cls, _fn)

_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Dropout2d)
_FUNC_ACT = {
    F.relu: Op.RELU, torch.relu: Op.RELU, F.relu6: Op.RELU6, F.hardswish: Op.HARDSWISH,
    torch.sigmoid: Op.SIGMOID, F.sigmoid: Op.SIGMOID, F.hardsigmoid: Op.HARDSIGMOID, F.silu: Op.SILU,
    torch.tanh: Op.TANH, F.tanh: Op.TANH,
}
_METHOD_ACT = {"relu": Op.RELU, "sigmoid": Op.SIGMOID, "tanh": Op.TANH}
_ADD = {operator.add, torch.add, operator.iadd}
_MUL = {operator.mul, torch.mul, operator.imul}


class Tracer(fx.Tracer):
    """torch.fx tracer whose leaf modules are exactly the ones the IR converts (use it to get the
    same fx node names as :func:`trace`)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m) in _MODULES or isinstance(m, _PASS_THROUGH) or isinstance(m, (nn.Flatten, nn.ChannelShuffle)):
            return True
        return any(isinstance(m, c) for c in _MODULES) or super().is_leaf_module(m, qualname)


class _Recorder(fx.Interpreter):
    """Runs the traced module once, keeping every node's concrete value (tensor or python value)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        v = super().run_node(n)
        self.values[n.name] = v
        return v


def _converter_for(m: nn.Module) -> ModuleConverter | None:
    conv = _MODULES.get(type(m))
    if conv is None:
        for cls, c in _MODULES.items():
            if isinstance(m, cls):
                return c
    return conv


def _module_path(n: fx.Node) -> str:
    stack = n.meta.get("nn_module_stack")
    if stack:
        return list(stack.values())[-1][0] if isinstance(list(stack.values())[-1], tuple) else str(list(stack)[-1])
    return str(n.target) if n.op == "call_module" else ""


def trace(model: nn.Module, input_shape: Sequence[int], name: str | None = None) -> Graph:
    """Trace ``model`` on an input of ``input_shape`` (N, C, H, W) or (N, F) into a :class:`Graph`.

    Raises :class:`UnsupportedOpError` naming the op and the module path for anything the IR does
    not represent, and :class:`ShapeError` when the model cannot take an input of that shape.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (2, 4) or any(s <= 0 for s in shape):
        raise ShapeError(f"input_shape must be positive (N, C, H, W) or (N, F), got {tuple(input_shape)}")
    if _converter_for(model) is not None:  # a bare layer: trace it as a one-layer network ("0")
        model = nn.Sequential(model)
    was_training = model.training
    model.eval()
    try:
        try:
            fx_graph = Tracer().trace(model)
        except UnsupportedOpError:
            raise
        except Exception as e:  # data-dependent control flow and friends
            raise UnsupportedOpError(f"torch.fx cannot trace {type(model).__name__}: {e}") from e
        gm = fx.GraphModule(model, fx_graph)
        _check_modules(gm)
        rec = _Recorder(gm)
        with torch.no_grad():
            try:
                rec.run(torch.zeros(shape))
            except Exception as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ShapeError(f"{type(model).__name__} cannot take an input of shape {shape}: {msg}") from e
        return _Builder(gm, rec.values, shape, name or type(model).__name__).build()
    finally:
        model.train(was_training)


def _check_modules(gm: fx.GraphModule) -> None:
    """Refuse leaf modules the IR has no conversion for, before anything runs."""
    modules = dict(gm.named_modules())
    for n in gm.graph.nodes:
        if n.op != "call_module":
            continue
        m = modules[n.target]
        if isinstance(m, _PASS_THROUGH + (nn.Flatten, nn.ChannelShuffle)) or _converter_for(m) is not None:
            continue
        raise UnsupportedOpError(f"unsupported layer {type(m).__name__} at module '{n.target}'")


class _Builder:
    def __init__(self, gm: fx.GraphModule, values: dict[str, Any], shape: tuple[int, ...], name: str):
        self.gm, self.values, self.name = gm, values, name
        self.modules = dict(gm.named_modules())
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}  # fx node name -> IR value name (pass-through ops)
        self.input_shape = shape
        self.batch = shape[0]

    # -- helpers
    def _shape(self, n: fx.Node) -> tuple[int, ...]:
        v = self.values[n.name]
        if not isinstance(v, torch.Tensor):
            raise UnsupportedOpError(f"{n.op} {n.target} produces a {type(v).__name__}, not a tensor")
        return tuple(v.shape)

    def _ref(self, a: Any, where: fx.Node) -> str:
        if not isinstance(a, fx.Node):
            raise UnsupportedOpError(f"{self._what(where)} with a non-tensor operand {a!r}")
        return self.alias.get(a.name, a.name)

    def _what(self, n: fx.Node) -> str:
        target = getattr(n.target, "__name__", str(n.target))
        path = _module_path(n)
        return f"{n.op} '{target}'" + (f" in module '{path}'" if path else "")

    def _emit(self, n: fx.Node, op: Op, inputs: Sequence[str], attrs: Any = NoAttrs(),
              params: dict[str, str] | None = None, module: str = "", meta: dict | None = None) -> None:
        out = self._shape(n)
        if out[0] != self.batch:
            raise UnsupportedOpError(f"{self._what(n)} mixes the batch dimension (output {out})")
        self.nodes.append(Node(n.name, op, tuple(inputs), out, attrs, params or {}, module or _module_path(n),
                               meta or {}))

    def _add_param(self, key: str, t: torch.Tensor) -> str:
        if key not in self.params:
            self.params[key] = t.detach().cpu().numpy().astype(np.float32, copy=True)
        return key

    # -- conversion
    def build(self) -> Graph:
        inputs: list[Input] = []
        outputs: list[str] = []
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if inputs:
                    raise UnsupportedOpError("models with more than one input are not supported")
                inputs.append(Input(n.name, self.input_shape))
            elif n.op == "output":
                outs = n.args[0]
                flat = list(outs) if isinstance(outs, (tuple, list)) else [outs]
                for o in flat:
                    if not isinstance(o, fx.Node):
                        raise UnsupportedOpError(f"model output {o!r} is not a tensor")
                    outputs.append(self.alias.get(o.name, o.name))
            elif n.op == "call_module":
                self._module(n)
            elif n.op in ("call_function", "call_method") and self._is_python_value(n):
                continue  # sizes and arithmetic on sizes: consumed by reshapes whose shapes we know
            elif n.op == "call_function":
                self._function(n)
            elif n.op == "call_method":
                self._method(n)
            elif n.op == "get_attr":
                raise UnsupportedOpError(f"direct use of parameter/buffer '{n.target}' outside a supported layer")
        return Graph(tuple(self.nodes), tuple(inputs), tuple(outputs), self.params, self.name)

    def _is_python_value(self, n: fx.Node) -> bool:
        v = self.values.get(n.name)
        if isinstance(v, torch.Tensor):
            return False
        if isinstance(v, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in v):
            return False  # split/chunk results are handled by their getitem users
        return True

    def _module(self, n: fx.Node) -> None:
        m = self.modules[n.target]
        if isinstance(m, _PASS_THROUGH):
            self.alias[n.name] = self._ref(n.args[0], n)
            return
        x = self._ref(n.args[0], n)
        if isinstance(m, nn.Flatten):
            self._reshape(n, x)
            return
        if isinstance(m, nn.ChannelShuffle):
            self._emit(n, Op.CHANNEL_SHUFFLE, [x], ChannelShuffle(int(m.groups)), module=str(n.target))
            return
        conv = _converter_for(m)
        if conv is None:  # pragma: no cover - is_leaf_module keeps this unreachable
            raise UnsupportedOpError(f"module {type(m).__name__} at '{n.target}'")
        in_shapes = tuple(self._shape(a) for a in n.args if isinstance(a, fx.Node))
        try:
            c = conv(m, in_shapes, self._shape(n))
        except UnsupportedOpError as e:
            raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}': {e}") from None
        params = {}
        for role, attr in c.params:
            t = getattr(m, attr)
            params[role] = self._add_param(f"{n.target}.{attr}", t)
        self._emit(n, c.op, [x], c.attrs, params, module=str(n.target), meta=dict(c.meta))

    def _reshape(self, n: fx.Node, x: str) -> None:
        out = self._shape(n)
        self._emit(n, Op.RESHAPE, [x], Reshape(tuple(out[1:])))

    def _binary(self, n: fx.Node, op: Op) -> None:
        a, b = n.args[0], n.args[1]
        if len(n.args) > 2 or n.kwargs.get("alpha", 1) != 1:
            raise UnsupportedOpError(f"{self._what(n)} with alpha")
        if isinstance(a, fx.Node) and isinstance(b, fx.Node):
            sa, sb = self._shape(a), self._shape(b)
            out = self._shape(n)
            if sa != out and sb != out:
                raise UnsupportedOpError(f"{self._what(n)}: broadcast of {sa} and {sb} to {out} where neither "
                                         "operand has the output shape")
            self._emit(n, op, [self._ref(a, n), self._ref(b, n)])
        elif isinstance(a, fx.Node) or isinstance(b, fx.Node):
            x, s, rev = (a, b, False) if isinstance(a, fx.Node) else (b, a, True)
            if not isinstance(s, (int, float)):
                raise UnsupportedOpError(f"{self._what(n)} with operand {s!r}")
            self._emit(n, op, [self._ref(x, n)], Scalar(float(s), rev))
        else:
            raise UnsupportedOpError(f"{self._what(n)} on constants")

    def _function(self, n: fx.Node) -> None:
        f = n.target
        if f in _FUNC_ACT:
            self._emit(n, _FUNC_ACT[f], [self._ref(n.args[0], n)],
                       meta={"inplace": True} if n.kwargs.get("inplace", False) else None)
        elif f in _ADD:
            self._binary(n, Op.ADD)
        elif f in _MUL:
            self._binary(n, Op.MUL)
        elif f in (operator.sub, torch.sub, operator.truediv, torch.div):
            self._scalar_arith(n)
        elif f in (torch.cat, torch.concat):
            tensors = n.args[0]
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            rank = len(self._shape(n))
            dim = dim % rank
            if dim == 0:
                raise UnsupportedOpError(f"{self._what(n)} along the batch dimension")
            self._emit(n, Op.CONCAT, [self._ref(t, n) for t in tensors], Concat(dim))
        elif f in (torch.flatten,):
            self._reshape(n, self._ref(n.args[0], n))
        elif f is F.interpolate:
            mode = n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest")
            ac = n.kwargs.get("align_corners", n.args[4] if len(n.args) > 4 else None)
            self._emit(n, Op.UPSAMPLE, [self._ref(n.args[0], n)], _upsample_attrs(mode, ac, self._shape(n)))
        elif f in (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.batch_norm):
            raise UnsupportedOpError(f"{self._what(n)}: use the nn.Module form (nn.MaxPool2d, ...) so the "
                                     "IR sees its parameters")
        elif f in (F.channel_shuffle, torch.channel_shuffle):
            g = n.args[1] if len(n.args) > 1 else n.kwargs["groups"]
            self._emit(n, Op.CHANNEL_SHUFFLE, [self._ref(n.args[0], n)], ChannelShuffle(int(g)))
        elif f in (F.dropout, F.dropout2d):
            self.alias[n.name] = self._ref(n.args[0], n)
        elif f in (torch.split, torch.chunk, torch.Tensor.split, torch.Tensor.chunk):
            self._split(n)
        elif f is operator.getitem:
            self._getitem(n)
        elif f is getattr or f in (torch.Tensor.size,):
            self._constant(n)
        else:
            raise UnsupportedOpError(f"unsupported {self._what(n)}")

    def _scalar_arith(self, n: fx.Node) -> None:
        a, b = n.args[0], n.args[1]
        sub = n.target in (operator.sub, torch.sub)
        if isinstance(a, fx.Node) and isinstance(b, (int, float)):
            # x - c == x + (-c); x / c == x * (1/c)
            self._emit(n, Op.ADD if sub else Op.MUL, [self._ref(a, n)], Scalar(-float(b) if sub else 1.0 / float(b)))
        else:
            raise UnsupportedOpError(f"{self._what(n)}: only tensor-minus/divided-by-constant is supported")

    def _method(self, n: fx.Node) -> None:
        m = n.target
        if m in ("view", "reshape", "flatten"):
            self._reshape(n, self._ref(n.args[0], n))
        elif m in _METHOD_ACT:
            self._emit(n, _METHOD_ACT[m], [self._ref(n.args[0], n)])
        elif m in ("size", "dim"):
            self._constant(n)
        elif m in ("contiguous", "clone", "detach"):
            self.alias[n.name] = self._ref(n.args[0], n)
        elif m in ("add", "add_"):
            self._binary(n, Op.ADD)
        elif m in ("mul", "mul_"):
            self._binary(n, Op.MUL)
        elif m in ("split", "chunk"):
            self._split(n)
        elif m == "transpose" or m == "permute":
            self._shuffle_pattern(n)
        else:
            raise UnsupportedOpError(f"unsupported {self._what(n)}")

    def _constant(self, n: fx.Node) -> None:
        if isinstance(self.values[n.name], torch.Tensor):
            raise UnsupportedOpError(f"unsupported {self._what(n)}")
        # python values (sizes) are consumed by reshape/view whose output shape we already know

    def _split(self, n: fx.Node) -> None:
        # converted lazily: each getitem becomes a Slice of the input
        parts = self.values[n.name]
        x = n.args[0]
        dim = n.kwargs.get("dim", n.args[2] if len(n.args) > 2 else 0)
        rank = len(self._shape(x))
        dim = dim % rank
        if dim == 0:
            raise UnsupportedOpError(f"{self._what(n)} along the batch dimension")
        bounds, start = [], 0
        for p in parts:
            bounds.append((start, start + p.shape[dim]))
            start += p.shape[dim]
        self.values[n.name] = ("split", x, dim, bounds)

    def _getitem(self, n: fx.Node) -> None:
        src, idx = n.args
        v = self.values.get(src.name) if isinstance(src, fx.Node) else None
        if isinstance(v, tuple) and len(v) == 4 and v[0] == "split":
            _, x, dim, bounds = v
            lo, hi = bounds[idx]
            self._emit(n, Op.SLICE, [self._ref(x, n)], Slice(dim, lo, hi))
        elif isinstance(v, torch.Tensor):
            self._tensor_index(n, src, idx)
        else:
            self._constant(n)

    def _tensor_index(self, n: fx.Node, src: fx.Node, idx: Any) -> None:
        idx = idx if isinstance(idx, tuple) else (idx,)
        shape = self._shape(src)
        dims = [(d, s) for d, s in enumerate(idx) if not (isinstance(s, slice) and s == slice(None))]
        if len(dims) == 1 and isinstance(dims[0][1], slice) and dims[0][0] > 0 and dims[0][1].step in (None, 1):
            d, s = dims[0]
            lo, hi, _ = s.indices(shape[d])
            self._emit(n, Op.SLICE, [self._ref(src, n)], Slice(d, lo, hi))
        else:
            raise UnsupportedOpError(f"{self._what(n)}: only a contiguous slice along one non-batch dimension "
                                     f"is supported, got {idx!r}")

    def _shuffle_pattern(self, n: fx.Node) -> None:
        """Recognise view(N, g, C/g, H, W) -> transpose(1, 2) -> view(N, C, H, W) as a channel shuffle.

        The transpose itself is emitted as a marker; the reshape that follows turns it into one
        CHANNEL_SHUFFLE node. Any other transpose/permute is refused."""
        src = n.args[0]
        dims = tuple(a for a in n.args[1:])
        prev = self.nodes[-1] if self.nodes else None
        shape = self._shape(src)
        if (len(shape) == 5 and prev is not None and prev.name == self.alias.get(src.name, src.name)
                and prev.op == Op.RESHAPE and sorted(dims) == [1, 2] and n.target == "transpose"):
            groups = shape[1]
            base = prev.inputs[0]
            self.nodes.pop()  # drop the 5-d view
            self._shuffle_users(n, base, groups)
            return
        raise UnsupportedOpError(f"unsupported {self._what(n)} (only the channel-shuffle view/transpose/view "
                                 "pattern is recognised)")

    def _shuffle_users(self, n: fx.Node, base: str, groups: int) -> None:
        users = list(n.users)
        ok = all((u.op == "call_method" and u.target in ("contiguous", "view", "reshape", "flatten"))
                 or (u.op == "call_function" and u.target is torch.flatten) for u in users)
        if not ok:
            raise UnsupportedOpError(f"unsupported {self._what(n)}: transpose not followed by a reshape")
        # emit the shuffle as the transpose node; following contiguous/view then reshape 4-d -> 4-d
        cshape = self.values[n.args[0].name].shape
        out = (cshape[0], cshape[1] * cshape[2], cshape[3], cshape[4])
        self.nodes.append(Node(n.name, Op.CHANNEL_SHUFFLE, (base,), out, ChannelShuffle(groups), {},
                               _module_path(n)))
        self.values[n.name] = torch.zeros(out)  # shape stand-in for the following reshape

