"""torch.nn.Module -> :class:`~mapping.graph.Graph`, verified against torch.

1. **Trace**: ``torch.fx`` symbolic tracing, whose leaf modules are the registered layers (Conv2d, Linear,
   BatchNorm, activations, pools, ... and what other packages add with :func:`register_module`; their converters
   are in ``mapping._trace_modules``). A subclass of a registered layer is converted as that layer only when it
   overrides none of its methods; otherwise it is traced through (its forward must be made of supported ops) —
   never converted as its base. When fx cannot
   trace the model (Python control flow on values), ``torch.export`` (ATen ops) is tried before refusing.
2. **Record**: the traced module runs once on a sample input (seeded standard normal), keeping every value as
   computed; a returned value that an in-place op changed afterwards (``y.add_(1); return y``) is refused, as is
   a pass-through (dropout, identity, clone) whose value differs from its input (``verify``).
3. **Build**: every fx node becomes IR nodes (``mapping._builder``, ``mapping._torch_ops``); anything else is
   refused with the op and its module path, never later inside a kernel. A tensor shared by several layers (a tied
   weight) is one parameter; a model that uses its batch size as a number gives a graph of one sample (batch 1).
4. **Verify** (``verify=True``, the default): every IR node is executed with hwsim's reference fp32 kernels on
   torch's values of its inputs and compared with torch's value (``mapping.verify``); a divergence raises
   :class:`~hwsim.errors.ConversionError` naming the node. The cost is one pass of the kernels.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from hwsim.errors import ConversionError, HwsimError, ShapeError, UnsupportedOpError, first_line
from mapping._batch_check import batch_checked
from mapping._builder import BatchMoved, Builder, batch_rerun, module_path
from mapping._call_check import check_calls
from mapping._model_state import _changed_buffers, _module_state, _restore, copy_module, eval_mode
from mapping._torch_1d import ONE_D_MODULES, one_d_module
from mapping._torch_3d import THREE_D_MODULES, three_d_module
from mapping._trace_modules import (  # noqa: F401 (the leaf modules' converters; re-exported, as before the split)
    _MODULES,
    ModuleConversion,
    ModuleConverter,
    conv_padding,
    register_module,
    upsample_attrs,
)
from mapping.graph import (
    Attention,
    ChannelShuffle,
    Graph,
    Linear,
    Op,
    Permute,
    Reshape,
)

__all__ = ["trace", "register_module", "ModuleConversion", "Tracer", "copy_module", "eval_mode"]




_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                 nn.Identity)
_RESHAPES = (nn.Flatten, nn.Unflatten)
# torch.nn modules whose forward is one supported functional call: traced through rather than converted
_TRACE_THROUGH = (nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.Softmax2d, nn.GLU, nn.InstanceNorm3d,
                  nn.SELU, nn.CELU, nn.Hardshrink, nn.Softshrink, nn.Threshold)
# methods a subclass may define without changing what the layer computes
_HARMLESS = frozenset({"__init__", "extra_repr", "reset_parameters", "__repr__", "__setstate__", "_load_from_state_dict",
                       "__constants__", "__annotations__", "__doc__", "__module__", "__qualname__", "__dict__",
                       "__weakref__", "__firstlineno__", "__static_attributes__", "_version", "__slotnames__"})


def _overrides(cls: type, base: type) -> list[str]:
    """Methods of ``base`` (or its torch.nn ancestors) that ``cls`` or a class between them redefines."""
    names = []
    for k in cls.__mro__:
        if k is base:
            break
        for attr, v in vars(k).items():
            if attr in _HARMLESS or not (callable(v) or isinstance(v, (property, staticmethod, classmethod))):
                continue
            if hasattr(base, attr):
                names.append(f"{k.__name__}.{attr}")
    return names


def _converter_for(m: nn.Module) -> ModuleConverter | None:
    """The converter of ``m``'s class, or of the registered base it subclasses without overriding any method."""
    conv = _MODULES.get(type(m))
    if conv is not None:
        return conv
    for k in type(m).__mro__[1:]:
        if k in _MODULES and isinstance(m, k) and not _overrides(type(m), k):
            return _MODULES[k]
    return None


def _leaf_kind(m: nn.Module) -> str | None:
    """"convert", "pass", "reshape", "mha", "rnn", "1d", "3d", "refuse" (an unsupported torch.nn layer), or None (trace
    through)."""
    if isinstance(m, _PASS_THROUGH) and type(m).forward in {c.forward for c in _PASS_THROUGH}:
        return "pass"
    if type(m) in _RESHAPES:
        return "reshape"
    if type(m) is nn.ChannelShuffle:
        return "convert"
    if type(m) is nn.MultiheadAttention:
        return "mha"
    if type(m) in (nn.LSTM, nn.GRU, nn.RNN):  # unrolled over time (mapping._torch_rnn)
        return "rnn"
    if type(m) in ONE_D_MODULES:
        return "1d"
    if type(m) in THREE_D_MODULES:  # unrolled over the depth (mapping._torch_3d)
        return "3d"
    if _converter_for(m) is not None:
        return "convert"
    if type(m) in _TRACE_THROUGH or isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return None
    if type(m).__module__.startswith("torch.nn"):
        return "refuse"
    return None


class _CpuProxy(fx.Proxy):
    """A traced value whose ``device`` is the CPU, where the traced module is recorded (code such as timm's
    ``if x.device.type != 'meta':`` then traces instead of stopping at a proxy used as a condition)."""

    def __getattr__(self, k: str):
        if k == "device":
            return torch.device("cpu")
        return super().__getattr__(k)


class Tracer(fx.Tracer):
    """torch.fx tracer whose leaf modules are exactly the ones the IR converts (use it to get the
    same fx node names as :func:`trace`)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _leaf_kind(m) is not None

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _CpuProxy(node, self)


def _rnn_module(b: Builder, n: fx.Node, m: nn.Module) -> None:
    from mapping._torch_rnn import rnn_module

    rnn_module(b, n, m)


def convert_module(b: Builder, n: fx.Node) -> None:
    """A call of a leaf module."""
    m = b.modules[n.target]
    kind = _leaf_kind(m)
    if kind == "pass":
        b.alias(n, n.args[0])
        return
    if kind == "reshape":
        b.emit(n, Op.RESHAPE, [b.ref(n.args[0], n)], Reshape(b.out_shape(n)[1:]))
        return
    if kind in _LAYER_CONVERTERS:  # layers that become several IR nodes
        _LAYER_CONVERTERS[kind](b, n, m)
        return
    if type(m) is nn.ChannelShuffle:
        b.emit(n, Op.CHANNEL_SHUFFLE, [b.ref(n.args[0], n)], ChannelShuffle(int(m.groups)), module=str(n.target))
        return
    if kind != "convert":
        raise UnsupportedOpError(f"unsupported layer {type(m).__name__} at module '{n.target}'")
    if len([a for a in n.args if isinstance(a, fx.Node)]) != 1 or n.kwargs:
        raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}' called with more than one input")
    if not isinstance(b.values[n.name], torch.Tensor):
        raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}' returns a {type(b.values[n.name]).__name__}, "
                                 "not one tensor (return_indices=True?)")
    x = n.args[0]
    try:
        c = _converter_for(m)(m, (b.ishape(x),), b.out_shape(n))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}': {e}") from None
    params = {role: b.add_param(f"{n.target}.{attr}", getattr(m, attr)) for role, attr in c.params}
    if c.op in (Op.BATCHNORM, Op.PRELU) and b.offset(x) == 1:
        channel_last(b, n, c.op, b.ref(x, n), c.attrs, params, dict(c.meta), str(n.target))
        return
    b.emit(n, c.op, [b.ref(x, n)], c.attrs, params, dict(c.meta), module=str(n.target))


def channel_last(b: Builder, n: fx.Node, op: Op, src: str, attrs: Any, params: dict, meta: dict, path: str) -> None:
    """A per-channel op (channels on torch dim 1) on a value kept behind a leading unit batch dim (IR shape
    (1, M, C, ...), a model that merged the batch): swap C to IR dim 1, apply, swap back."""
    shape, path = b.shapes[src], path or module_path(n)
    if len(shape) < 3:
        raise UnsupportedOpError(f"{b.what(n)}: a per-channel op on a value of shape {b.tshape(n.args[0])} "
                                 "whose first dimension is not the batch")
    perm = (0, 2, 1) + tuple(range(3, len(shape)))
    swapped = tuple(shape[i] for i in perm)
    t = b.emit(n, Op.PERMUTE, [src], Permute(perm), name=f"{n.name}_cf", shape=swapped, module=path)
    y = b.emit(n, op, [t], attrs, params, meta, name=f"{n.name}_c", shape=swapped, module=path)
    b.emit(n, Op.PERMUTE, [y], Permute(perm), shape=shape, module=path)


def _mha(b: Builder, n: fx.Node, m: nn.MultiheadAttention) -> None:
    """nn.MultiheadAttention (eval, batch_first, no masks) -> Q/K/V linear, heads, ATTENTION, output linear."""
    q, k, v = (n.args + (None,) * 3)[:3]
    kw = dict(n.kwargs)
    if not m.batch_first:
        raise UnsupportedOpError(f"MultiheadAttention at '{n.target}' with batch_first=False (use batch_first=True)")
    if any(kw.get(a) is not None for a in ("key_padding_mask", "attn_mask")) or kw.get("is_causal") or \
            m.bias_k is not None or m.add_zero_attn:
        raise UnsupportedOpError(f"MultiheadAttention at '{n.target}' with masks, bias_k/v or add_zero_attn")
    e, h = m.embed_dim, m.num_heads
    d = e // h
    path = str(n.target)
    names = []
    for i, (src, role) in enumerate(((q, "q"), (k, "k"), (v, "v"))):
        w = m.in_proj_weight[i * e:(i + 1) * e] if m.in_proj_weight is not None else getattr(m, f"{role}_proj_weight")
        wkey = b.add_param(f"{path}.{role}_proj.weight", w)
        params = {"weight": wkey}
        if m.in_proj_bias is not None:
            params["bias"] = b.add_param(f"{path}.{role}_proj.bias", m.in_proj_bias[i * e:(i + 1) * e])
        shape = b.ishape(src)
        if len(shape) != 3:
            raise UnsupportedOpError(f"MultiheadAttention at '{path}' on an input of shape {b.tshape(src)}")
        lin = b.emit(n, Op.LINEAR, [b.ref(src, n)], Linear(shape[2], e, "bias" in params), params,
                     name=f"{n.name}_{role}", shape=shape[:2] + (e,), module=path)
        heads = b.emit(n, Op.RESHAPE, [lin], Reshape((shape[1], h, d)), name=f"{n.name}_{role}_heads",
                       shape=(shape[0], shape[1], h, d), module=path)
        names.append(b.emit(n, Op.PERMUTE, [heads], Permute((0, 2, 1, 3)), name=f"{n.name}_{role}_t",
                            shape=(shape[0], h, shape[1], d), module=path))
    nb, lq = b.ishape(q)[0], b.ishape(q)[1]
    att = b.emit(n, Op.ATTENTION, names, Attention(None, False), name=f"{n.name}_attention",
                 shape=(nb, h, lq, d), module=path)
    back = b.emit(n, Op.PERMUTE, [att], Permute((0, 2, 1, 3)), name=f"{n.name}_merge", shape=(nb, lq, h, d), module=path)
    flat = b.emit(n, Op.RESHAPE, [back], Reshape((lq, e)), name=f"{n.name}_flat", shape=(nb, lq, e), module=path)
    params = {"weight": b.add_param(f"{path}.out_proj.weight", m.out_proj.weight)}
    if m.out_proj.bias is not None:
        params["bias"] = b.add_param(f"{path}.out_proj.bias", m.out_proj.bias)
    out = b.emit(n, Op.LINEAR, [flat], Linear(e, e, "bias" in params), params, name=f"{n.name}_out",
                 shape=(nb, lq, e), module=path)

    def part(i: int, g: fx.Node) -> None:
        if i != 0:
            raise UnsupportedOpError(f"MultiheadAttention at '{path}': its attention weights (output 1) are not "
                                     "supported (call it with need_weights=False or ignore them)")
        b.ir[g.name] = out

    b.parts[n.name] = part


_LAYER_CONVERTERS = {"mha": _mha, "rnn": _rnn_module, "1d": one_d_module, "3d": three_d_module}


class _Recorder(fx.Interpreter):
    """Runs the traced module once, keeping a copy of every node's value (in-place ops cannot rewrite it), and the
    names of the returned values that an in-place op changed after they were computed (``changed``)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}
        self.changed: list[str] = []

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "output":  # what forward() returns is each value as it is now, after every in-place op
            for a in _arg_nodes(n.args):
                live, then = self.env.get(a), self.values.get(a.name)
                if isinstance(live, torch.Tensor) and isinstance(then, torch.Tensor) and not _same(live, then):
                    self.changed.append(a.name)
        v = super().run_node(n)
        self.values[n.name] = _copy(v)
        return v


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and values (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a, b) or (a.is_floating_point() and ((a == b) | (a.isnan() & b.isnan())).all()))


def _arg_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, found.append)
    return found


def _copy(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (tuple, list)):
        return type(v)(_copy(x) for x in v) if not hasattr(v, "_fields") else v
    return v


def _fx_module(model: nn.Module) -> fx.GraphModule:
    """``model``'s forward traced by torch.fx; arguments after the input that have defaults (``mask=None``) are
    traced at their defaults, as hwsim calls the model with the input alone."""
    import inspect

    extra = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in extra if p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD}
    return fx.GraphModule(model, Tracer().trace(model, concrete_args=concrete or None))


def _export_module(model: nn.Module, x: torch.Tensor) -> fx.GraphModule:
    """ATen graph of ``model`` specialised to ``x``'s shape (parameters as get_attr nodes)."""
    import io
    import logging
    import warnings

    quiet = [logging.getLogger(n) for n in ("torch", "torch.fx", "torch._dynamo", "torch.export")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # export prints graphs on failure
            warnings.simplefilter("ignore")
            ep = torch.export.export(model, (x,), strict=False)
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
    return ep.module()


def _graph_module(model: nn.Module, x: torch.Tensor) -> tuple[fx.GraphModule, str]:
    try:
        return _fx_module(model), "torch.fx"
    except HwsimError:
        raise
    except Exception as e_fx:  # data-dependent Python control flow and friends
        try:
            return _export_module(model, x), "torch.export"
        except Exception as e_ex:
            raise UnsupportedOpError(f"cannot trace {type(model).__name__}: torch.fx: {first_line(e_fx)}; "
                                     f"torch.export: {first_line(e_ex)}") from e_ex


def trace(model: nn.Module, input_shape: Sequence[int], name: str | None = None, *, verify: bool = True,
          sample: np.ndarray | None = None) -> Graph:
    """Trace ``model`` on an input of ``input_shape`` (batch first, e.g. (N, C, H, W) or (N, F)) into a Graph.

    Raises :class:`UnsupportedOpError` naming the op and the module path for anything the IR does not represent,
    :class:`ShapeError` when the model cannot take an input of that shape, and, with ``verify`` (the default),
    :class:`~hwsim.errors.ConversionError` when the graph does not compute what torch computes on ``sample``
    (default: a seeded standard-normal input).
    """
    shape = tuple(int(s) for s in input_shape)
    if not 2 <= len(shape) <= 5 or any(s <= 0 for s in shape):
        raise ShapeError(f"input_shape must be positive and batch first, (N, C, H, W) or (N, F), got {tuple(input_shape)}")
    _refuse_brevitas(model)
    script = next((k for k, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)), None)
    if script is not None:
        what = f"{type(model).__name__} is" if not script else f"module {script!r} of {type(model).__name__} is"
        raise UnsupportedOpError(f"{what} a TorchScript module (torch.jit.script / trace), which hwsim cannot trace: "
                                 "pass the nn.Module it was made from, or export the model to ONNX")
    wide = next((p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32), None)
    if wide is not None:
        raise UnsupportedOpError(f"{type(model).__name__} has {wide} parameters; hwsim imports float32 models: pass "
                                 "model.float() (the target's own precision is the spec's)")
    if _converter_for(model) is not None:  # a bare layer: trace it as a one-layer network ("0")
        model = nn.Sequential(model)
    if _leaf_kind(model) == "rnn":  # a bare recurrent layer: its outputs (output, h_n[, c_n]) flattened
        from mapping._torch_rnn import Flat

        name, model = name or type(model).__name__, Flat(model)
    _warn_if_training(model)
    if sample is None:
        sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    state = _module_state(model)  # each submodule's attributes, its train/eval flag among them
    model.eval()
    try:
        with torch.no_grad():
            gm, how = _graph_module(model, x)
            try:
                graph, b = _build(model, gm, x, name, how == "torch.export")
            except UnsupportedOpError as e_fx:  # an op fx leaves opaque may decompose into supported ATen ops
                if how != "torch.fx" or isinstance(e_fx, BatchMoved):  # a batch move is one in any graph
                    raise
                try:
                    gm = _export_module(model, x)
                    graph, b = _build(model, gm, x, name, True)
                except BatchMoved:  # past fx's opaque op, the ATen graph met a batch move: that is the reason
                    if str(e_fx).startswith("unsupported call_"):  # (a refusal of a named layer says more)
                        raise
                    raise e_fx from None
                except Exception:
                    raise e_fx from None
        from mapping.verify import check_finite_params

        changed = _changed_buffers(state)
        if changed:
            raise UnsupportedOpError(f"{type(model).__name__}.forward changes buffer {changed[0]!r} in place: each call "
                                     "computes something else, so no one graph is the model (the buffer is restored)")
        check_finite_params(graph)
        if verify:
            from mapping.verify import verify as check

            try:
                check(graph, sample, b.references(), source="torch")
            except ConversionError as e:
                hooked = [k for k, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
                if hooked:
                    raise ConversionError(f"{e}; modules {hooked[:3]} have forward hooks, which tracing does not "
                                          "see") from None
                raise
            with torch.no_grad():
                _restore(state)  # the model as the user has it (tracing may have filled its caches with proxies)
            check_calls(model, gm, x)
        return graph
    finally:
        with torch.no_grad():
            _restore(state)


def _refuse_brevitas(model: nn.Module) -> None:
    """Brevitas layers carry quantizers torch.fx cannot trace: their graph comes in through QONNX."""
    layer = next((m for m in model.modules() if type(m).__module__.startswith("brevitas.")), None)
    if layer is not None:
        raise UnsupportedOpError(f"{type(model).__name__} has Brevitas layers ({type(layer).__name__}): export it "
                                 "with brevitas.export.export_qonnx(model, input_t=x, export_path='model.onnx') and "
                                 "simulate 'model.onnx'" + _brevitas_one_bit(model))


def _brevitas_one_bit(model: nn.Module) -> str:
    """A note on the first 1-bit *integer* activation quantizer of a Brevitas model: Brevitas computes {-1, 0} or
    {0, 1} times the scale but exports a BipolarQuant (+-scale), so the exported file computes another function."""
    for name, m in model.named_modules():
        proxy = getattr(getattr(m, "act_quant", None), "fused_activation_quant_proxy", None)
        tq = getattr(proxy, "tensor_quant", None)
        if tq is None or "IntQuant" not in type(tq).__name__:
            continue
        try:
            bits = float(m.act_quant.bit_width())
        except Exception:  # noqa: BLE001 - a quantizer whose width needs an input: nothing to say
            continue
        if bits == 1:
            return (f"; note: {type(m).__name__} {name!r} is a 1-bit integer quantizer, whose QONNX export (a "
                    "BipolarQuant, +-scale) computes another function than Brevitas's {-1, 0} / {0, 1}: use a "
                    "binary quantizer (brevitas.quant.SignedBinaryActPerTensorConst) or bit_width >= 2")
    return ""


def _warn_if_training(model: nn.Module) -> None:
    """hwsim computes a model as in eval mode; say so when that changes what a batch norm or dropout does."""
    moving = [k for k, m in model.named_modules() if m.training and (isinstance(
        m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)) or isinstance(
        m, nn.modules.instancenorm._InstanceNorm) and m.track_running_stats)]
    if moving:
        import warnings

        warnings.warn(f"{type(model).__name__} is in training mode: hwsim computes it in eval mode (batch norm with "
                      f"its running statistics, dropout off), e.g. module {moving[0]!r}; call model.eval() first",
                      stacklevel=4)


def _build(model: nn.Module, gm: fx.GraphModule, x: torch.Tensor, name: str | None,
           exported: bool = False) -> tuple[Graph, Builder]:
    """Record every value of ``gm`` on ``x`` and convert it (see the module docstring, steps 2-3); ``exported``:
    ``gm`` is torch.export's, specialised to ``x``'s batch."""
    from mapping._torch_ops import handle
    from mapping.passes.canonical import canonical

    _check_modules(gm)
    rec = _Recorder(gm)
    try:
        rec.run(x)
    except Exception as e:
        raise ShapeError(f"{type(model).__name__} cannot take an input of shape {tuple(x.shape)}: "
                         f"{first_line(e)}") from e
    if rec.changed:  # the graph would hold each value as computed, torch returns it as changed later
        raise ConversionError(f"{type(model).__name__} returns value(s) {rec.changed} changed in place after they "
                              "were computed (an in-place op such as relu_(), add_(), nn.ReLU(inplace=True) or out= "
                              "whose result is not used); return the in-place op's result instead")
    not_batch, rerun = batch_rerun(gm, rec.values, x, (lambda x2: _export_module(model, x2)) if exported else None)
    b = Builder(gm, rec.values, int(x.shape[0]), name or type(model).__name__, not_batch=not_batch)
    return canonical(batch_checked(b.build(handle), b, rerun, handle)), b


def _check_modules(gm: fx.GraphModule) -> None:
    """Refuse leaf modules the IR has no conversion for, before anything runs."""
    modules = dict(gm.named_modules())
    for n in gm.graph.nodes:
        if n.op == "call_module" and n.target in modules and _leaf_kind(modules[n.target]) == "refuse":
            raise UnsupportedOpError(f"unsupported layer {type(modules[n.target]).__name__} at module '{n.target}'")
