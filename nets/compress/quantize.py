"""Post-training k-bit quantization and binarization of torch modules.

:func:`quantize_ptq` — the integer scheme of :mod:`mapping.passes.quantize` (the one the IMC and
int8 CPU targets execute), applied to the torch module so its accuracy can be measured and it can
be fine-tuned (quantization-aware, straight-through):
- weights: symmetric, per output channel (or per tensor), ``s_w = max|W[o]| / (2^(b-1) - 1)``,
  replaced in place by ``rint(W / s_w) · s_w`` (:func:`mapping.passes.quantize.quantize_weights`,
  so re-quantizing on a target at the same bits is the identity);
- activations: the input of every conv2d/linear, per tensor, calibrated as the (min, max) over the
  calibration batches, sequentially (each layer sees the already-quantized layers before it, as the
  integer hardware does); unsigned ``[0, 2^b - 1]`` when min >= 0, else signed
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, ``s_x = max(|min|, |max|) / qmax``; applied in torch by a
  forward pre-hook (straight-through gradient). ``PTQResult.input_ranges`` (IR node name ->
  (min, max)) hands the same calibration to :func:`mapping.passes.quantize.quantize`; ``PTQResult.graph()``
  also carries each layer's weight grid (``meta["weight_scale"]``), which the IMC target keeps the weights on.

:func:`binarize` / :func:`quantize_xnor` — layers for the XNOR engine (``nets.layers``):
conv2d/linear become ``BinaryConv2d``/``BinaryLinear`` (±1 weights, sign(0) = +1) fed by a
``BinarySign`` of their input, or ``QuantConv2d``/``QuantLinear`` (k-bit odd levels) fed by a
``QuantAct`` (unsigned k-bit codes). When a layer's input comes from a ReLU/ReLU6 (possibly
through max pools, flattens, identities and dropouts, which commute with these monotone maps), the sign / quantizer takes
the ReLU's input instead (sign after a ReLU would be constant +1; ``QuantAct`` clamps at 0 itself). For
``binarize``, concatenations and slices of ReLU outputs commute as well (each ReLU's input gets the sign). A layer whose input is never negative
otherwise (a ReLU through an average pool, which does not commute with the sign: a squeeze-excitation's reduce conv,
or ReLU -> global average pool -> fc with ``keep_last=False``) stays in float, as ``quantize_xnor`` keeps every layer
not fed by a ReLU: ``quantize_xnor`` returns their names, ``binarize`` names them in a warning. The first and last
layers stay in float by default (FINN / BNN practice:
Hubara et al., NeurIPS 2016, Sec. 2.5); with ``keep_first=False`` the first layer gets binary/k-bit
weights but reads the raw network input (no sign/quantizer on it), which is what the XNOR engine
expects of a first layer (an all-binary/quantized network maps onto it). BatchNorm statistics should be re-estimated afterwards
(:func:`nets.compress.calib.recalibrate_bn`).
"""
from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mapping.graph import Graph, Op
from mapping.passes.quantize import input_qmax, quantize_weights
from mapping.passes.quantize import quantize as quantize_graph
from mapping.trace import copy_module, eval_mode, trace
from nets.compress.calib import as_batches
from nets.compress.deps import fx_trace
from nets.compress.errors import CompressError
from nets.layers import BinaryConv2d, BinaryLinear, BinarySign, QuantAct, QuantConv2d, QuantLinear

__all__ = ["PTQResult", "quantize_ptq", "binarize", "quantize_xnor"]


def _bits(v, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CompressError(f"{what} must be an int in [{lo}, {hi}], got {v!r}")
    return v


class _InputQuant:
    """Forward pre-hook: per-tensor fake quantization of a layer's input (straight-through).

    While ``calibrating``, each call first widens (min, max) with the incoming tensor, so a layer is
    calibrated on what the already-quantized layers before it produce (sequential calibration)."""

    def __init__(self, bits: int):
        self.bits = bits
        self.lo, self.hi = math.inf, -math.inf
        self.calibrating = True

    def _params(self) -> tuple[float, int, int]:
        signed = self.lo < 0
        qmax = input_qmax(self.bits, signed)
        m = max(abs(self.lo), abs(self.hi))
        return (m / qmax if m > 0 else 1.0), (-qmax if signed else 0), qmax

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self.calibrating:
            self.lo = min(self.lo, float(x.detach().min()))
            self.hi = max(self.hi, float(x.detach().max()))
        scale, qmin, qmax = self._params()
        # x / scale in float64, as mapping.passes.quantize.quantize_input rounds it: the integer codes of the IMC
        # target (float32 rounds some exact .5 ties, e.g. digits' k/16 pixels, to the other side)
        q = (torch.clamp(torch.round(x.double() / scale), qmin, qmax) * scale).to(x.dtype)
        return (x + (q - x).detach(),) + tuple(args[1:])


@dataclass(frozen=True, slots=True)
class PTQResult:
    """A fake-quantized copy of the model and the calibration that produced it.

    input_ranges: IR node name (of ``trace(model, input_shape)``) -> (min, max) of that layer's
    input over the calibration data; a module executed several times has one range for all.
    """

    model: nn.Module
    weight_bits: int
    act_bits: int
    per_channel: bool
    input_shape: tuple[int, ...]
    input_ranges: Mapping[str, tuple[float, float]]

    def graph(self) -> Graph:
        """The traced model annotated by :func:`mapping.passes.quantize.quantize` with this calibration."""
        # the model's input-quantizing hooks are what quantize_graph adds to the graph: trace without them
        g = trace(self.model, self.input_shape, verify=False)
        g = quantize_graph(g, self.weight_bits, self.act_bits, self.per_channel, dict(self.input_ranges))
        return g.replace(nodes=tuple(_with_grid(n) for n in g.nodes))


def _with_grid(node):
    """``node`` with ``meta["weight_scale"]``: the grid its weights lie on (the PTQ scale, per tensor or per
    channel), which ``mapping.passes.fold_bn`` carries through a folded BN and the IMC target keeps its weights on
    (:func:`mapping.passes.quantize.weight_grid`) instead of re-quantizing them per channel."""
    qp = node.meta.get("quant")
    if qp is None or node.op not in (Op.CONV2D, Op.LINEAR):
        return node
    return node.replace(meta={**node.meta, "weight_scale": tuple(qp.weight_scale)})


def quantize_ptq(model: nn.Module, calib, input_shape: Sequence[int], weight_bits: int = 8, act_bits: int = 8,
                 per_channel: bool = True) -> PTQResult:
    """Post-training quantization of every conv (1-d, 2-d) / linear of a copy of ``model`` (see module doc); a
    transposed conv and a 3-d conv stay float (the CPU's int8 path refuses them; the IMC target quantizes a
    transposed conv itself and runs a 3-d conv's 2-d taps with dynamic scales).

    calib: an (N, C, H, W) array/tensor or a list of them (a few batches are enough).
    """
    _bits(weight_bits, 2, 16, "weight_bits")
    _bits(act_bits, 2, 16, "act_bits")
    shape = tuple(int(s) for s in input_shape)
    batches = as_batches(calib, shape)
    out = copy_module(model).eval()
    layers = {n: m for n, m in out.named_modules() if type(m) in (nn.Conv2d, nn.Conv1d, nn.Linear)}
    if not layers:
        raise CompressError(f"{type(model).__name__} has no plain conv2d/linear layer to quantize")
    with torch.no_grad():  # weights first, so that activations are calibrated on the quantized layers
        for m in layers.values():
            q, s = quantize_weights(m.weight.detach().double().numpy(), weight_bits, per_channel)
            sw = s.reshape((-1,) + (1,) * (q.ndim - 1)) if per_channel else s[0]
            m.weight.copy_(torch.from_numpy(q * sw).float())
    hooks = {n: _InputQuant(act_bits) for n in layers}
    for n, m in layers.items():
        m.register_forward_pre_hook(hooks[n])
    with torch.no_grad():
        for b in batches:
            out(b)
    for h in hooks.values():
        h.calibrating = False
    ranges = {n: (h.lo, h.hi) for n, h in hooks.items() if h.lo <= h.hi}
    graph = trace(out, shape, verify=False)  # for node names only (the hooks are not in the graph)
    node_ranges = {nd.name: tuple(ranges[nd.module]) for nd in graph.nodes
                   if nd.op in (Op.CONV2D, Op.LINEAR) and nd.module in ranges}
    return PTQResult(out, weight_bits, act_bits, per_channel, shape, node_ranges)


# ----------------------------------------------------------------------------- XNOR-engine layers
_RELUS_MOD = (nn.ReLU, nn.ReLU6)
_RELUS_FN = {F.relu, torch.relu, F.relu6}


def _is_relu(gm: fx.GraphModule, n) -> bool:
    if not isinstance(n, fx.Node):
        return False
    if n.op == "call_module":
        return isinstance(gm.get_submodule(n.target), _RELUS_MOD)
    if n.op == "call_function":
        return n.target in _RELUS_FN
    return n.op == "call_method" and n.target in ("relu", "relu_")


def _is_through(gm: fx.GraphModule, n) -> bool:
    """Max pool, flatten/reshape, identity or dropout: ops a sign or an unsigned quantizer commutes with (dropout is
    the identity at inference; in training it scales the ±1 / k-bit values as it would any activation)."""
    if not isinstance(n, fx.Node):
        return False
    if n.op == "call_module":
        return isinstance(gm.get_submodule(n.target), (nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout))
    if n.op == "call_function":
        return n.target in (torch.flatten, F.max_pool2d, F.dropout)
    return n.op == "call_method" and n.target in ("view", "reshape", "flatten", "contiguous")


# ops whose output is >= 0 for every input, and ops whose output is >= 0 when all their tensor inputs are
_NONNEG_MOD = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)
_NONNEG_FN = {F.relu, torch.relu, F.relu6, torch.sigmoid, F.sigmoid, F.hardsigmoid, F.softmax, torch.softmax,
              torch.abs}
_KEEPS_SIGN_MOD = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
_KEEPS_SIGN_FN = {torch.flatten, torch.reshape, torch.cat, torch.add, torch.mul, torch.mean, torch.sum,
                  F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
                  F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.dropout,
                  operator.add, operator.mul, operator.getitem}
_KEEPS_SIGN_METHOD = {"view", "reshape", "flatten", "contiguous", "mean", "sum", "squeeze", "unsqueeze", "permute",
                      "transpose", "add", "mul"}


def _nonneg_source(gm: fx.GraphModule, n) -> str | None:
    """The name of the non-negative op (ReLU, sigmoid, ...) that makes ``n``'s value >= 0 for every input, through
    pools (average ones included), flattens, reshapes, identities, dropouts, and sums / products / concatenations of
    such values; None when ``n`` can be negative (or cannot be told)."""
    if not isinstance(n, fx.Node):
        return None
    if n.op == "call_module":
        mod = gm.get_submodule(n.target)
        if isinstance(mod, _NONNEG_MOD):
            return n.target
        keeps = isinstance(mod, _KEEPS_SIGN_MOD)
    elif n.op == "call_function":
        if n.target in _NONNEG_FN:
            return n.name
        keeps = n.target in _KEEPS_SIGN_FN
    elif n.op == "call_method":
        if n.target in ("relu", "relu_", "sigmoid", "abs"):
            return n.name
        keeps = n.target in _KEEPS_SIGN_METHOD
    else:
        return None
    if not keeps:
        return None
    arith = n.op != "call_module" and n.target in (operator.add, operator.mul, torch.add, torch.mul, "add", "mul")
    if arith and ("alpha" in n.kwargs or any(not isinstance(v, fx.Node) and not (isinstance(v, (int, float))
                                                                               and v >= 0) for v in n.args)):
        return None  # a negative constant (or alpha) can make the result negative
    data = n.args[:1] or [n.kwargs.get("input")]  # the data (not shapes, dims, indices)
    args = _flat_nodes((n.args, n.kwargs) if arith else data)
    srcs = [_nonneg_source(gm, v) for v in args]
    return srcs[0] if srcs and all(srcs) else None


def _flat_nodes(tree) -> list:
    """The fx nodes in a nested args/kwargs structure, in order."""
    out: list = []
    fx.node.map_arg(tree, out.append)
    return out


def _not_inplace(gm: fx.GraphModule, n: fx.Node) -> None:
    if n.op == "call_module":
        mod = gm.get_submodule(n.target)
        if getattr(mod, "inplace", False):
            mod.inplace = False
    elif n.op == "call_function" and n.kwargs.get("inplace", False):
        n.kwargs = {**n.kwargs, "inplace": False}
    elif n.op == "call_method" and n.target == "relu_":
        n.target = "relu"


def _convert(model: nn.Module, input_shape: Sequence[int], make_layer, make_act, keep_first: bool,
             keep_last: bool, relu_only: bool) -> tuple[fx.GraphModule, list[str]]:
    shape = tuple(int(s) for s in input_shape)
    graph = trace(model, shape)
    order = [n.module for n in graph.nodes if n.op in (Op.CONV2D, Op.LINEAR)]
    order = list(dict.fromkeys(order))
    skip = set()
    if keep_first and order:
        skip.add(order[0])
    if keep_last and order:
        skip.add(order[-1])
    gm = fx_trace(copy_module(model))
    acts: dict[str, str] = {}
    kept_float, constant = [], []
    converted = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target not in order or node.target in skip:
            continue
        mod = gm.get_submodule(node.target)
        if type(mod) not in (nn.Conv2d, nn.Linear):
            kept_float.append(node.target)
            continue
        # walk back through max pools / flattens (they commute with the monotone sign / quantizer)
        reader, cur = node, node.args[0]
        while _is_through(gm, cur) and len(cur.users) == 1:
            reader, cur = cur, cur.args[0]
        after_relu = _is_relu(gm, cur)
        if relu_only and not after_relu and cur.op != "placeholder":
            kept_float.append(node.target)
            continue
        if after_relu:
            _not_inplace(gm, cur)  # the sign/quantizer keeps the ReLU's input for its backward pass
            cur = cur.args[0]
        elif reader is not node:  # no ReLU behind the pools: quantize right at the layer's input
            reader, cur = node, node.args[0]
        signed = not after_relu and not relu_only and cur.op != "placeholder"
        if signed and _relus_only(gm, cur):
            # ReLUs joined by concatenations / slices or read by other layers too: a sign copy of that chain
            reader, cur = node, _signed_copy(gm, cur, lambda src: _act(gm, src, acts, make_act))
        elif signed and (src := _nonneg_source(gm, cur)):  # its sign would be +1 for every input: kept float
            constant.append(f"{node.target} ({src} through {cur.name})")
            kept_float.append(node.target)
            continue
        elif cur.op != "placeholder":  # the network input stays raw (the engine takes e.g. 8-bit pixels)
            cur = _act(gm, cur, acts, make_act)
        if cur.op != "placeholder":
            reader.args = (cur,) + tuple(reader.args[1:])
        parent, _, leaf = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, make_layer(mod))
        converted += 1
    if constant:
        warnings.warn(f"binarize kept {len(constant)} layer(s) in float: their input is never negative (a ReLU / "
                      "sigmoid output through an average pool, a product or a sum), so its sign would be +1 for every "
                      f"input: {'; '.join(constant)}", stacklevel=3)
    if not converted:
        why = f"; never-negative inputs: {'; '.join(constant)}" if constant else ""
        raise CompressError("no conv2d/linear layer could be converted (all kept in float: "
                            f"{kept_float or 'first/last only'}{why})")
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    for attr in ("hwsim_input_shape", "hwsim_name"):
        if hasattr(model, attr):
            setattr(gm, attr, getattr(model, attr))
    return gm.train(model.training), kept_float


def _act(gm: fx.GraphModule, src: fx.Node, acts: dict, make_act) -> fx.Node:
    """The sign / quantizer node of ``src`` (one per source, inserted right after it)."""
    if src.name not in acts:
        name = f"xnor_act_{len(acts)}"
        gm.add_submodule(name, make_act(src))
        with gm.graph.inserting_after(src):
            acts[src.name] = gm.graph.call_module(name, (src,))
    return acts[src.name]


def _is_view(gm: fx.GraphModule, n) -> bool:
    """An op an elementwise sign commutes with, whatever its other readers: :func:`_is_through`, a concatenation,
    an indexing (slice) of a tensor."""
    return _is_through(gm, n) or (n.op == "call_function" and n.target in (torch.cat, operator.getitem))


def _relus_only(gm: fx.GraphModule, n) -> bool:
    """``n`` is ReLUs' outputs seen through :func:`_is_view` ops only (so a sign of it is the same view of the signs
    of the ReLUs' inputs, moved before them as for a single ReLU)."""
    if _is_relu(gm, n):
        return True
    data = _flat_nodes(n.args[:1]) if isinstance(n, fx.Node) and _is_view(gm, n) else []
    return bool(data) and all(_relus_only(gm, d) for d in data)


def _signed_copy(gm: fx.GraphModule, n: fx.Node, act_of) -> fx.Node:
    """A copy of the :func:`_relus_only` chain ending at ``n`` that reads ``act_of(ReLU input)`` instead of each
    ReLU (the original chain is left to its other readers)."""
    if _is_relu(gm, n):
        _not_inplace(gm, n)
        return act_of(n.args[0])
    copies = {d: _signed_copy(gm, d, act_of) for d in _flat_nodes(n.args[:1])}
    with gm.graph.inserting_after(n):
        return gm.graph.node_copy(n, lambda a: copies.get(a, a))


def _geometry(mod: nn.Module) -> dict:
    if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":  # the binary / quantized convs pad with zeros
        raise CompressError(f"{type(mod).__name__} with padding_mode={mod.padding_mode!r}: the quantized conv layers "
                            "pad with zeros only")
    if isinstance(mod, nn.Conv2d):
        return dict(in_channels=mod.in_channels, out_channels=mod.out_channels, kernel_size=mod.kernel_size,
                    stride=mod.stride, padding=mod.padding, dilation=mod.dilation, groups=mod.groups,
                    bias=mod.bias is not None)
    return dict(in_features=mod.in_features, out_features=mod.out_features, bias=mod.bias is not None)


def _copy_params(new: nn.Module, old: nn.Module) -> nn.Module:
    with torch.no_grad():
        new.weight.copy_(old.weight.detach())
        if old.bias is not None:
            new.bias.copy_(old.bias.detach())
    return new


def binarize(model: nn.Module, input_shape: Sequence[int], keep_first: bool = True,
             keep_last: bool = True) -> fx.GraphModule:
    """±1 weights and ±1 inputs for every conv2d/linear except the first/last and those whose input is never negative
    (kept in float, named in a UserWarning: their sign would be +1 for every input; see module doc)."""
    def layer(mod):
        cls = BinaryConv2d if isinstance(mod, nn.Conv2d) else BinaryLinear
        return _copy_params(cls(**_geometry(mod)), mod)

    gm, _ = _convert(model, input_shape, layer, lambda src: BinarySign(), keep_first, keep_last, relu_only=False)
    return gm


def quantize_xnor(model: nn.Module, input_shape: Sequence[int], bits: int = 2, calib=None,
                  keep_first: bool = True, keep_last: bool = True) -> tuple[fx.GraphModule, list[str]]:
    """k-bit odd-level weights (``QuantConv2d``/``QuantLinear``) and unsigned k-bit inputs (``QuantAct``)
    for every conv2d/linear whose input follows a ReLU (or is the raw network input, when
    ``keep_first=False``); returns (model, layers kept in float).

    The ``QuantAct`` step is a power of two: ``2^ceil(log2(max / (2^k - 1)))`` with ``max`` the
    largest calibrated pre-ReLU input (``calib`` given), else ``QuantAct``'s default 2^-k.
    """
    bits = _bits(bits, 1, 8, "bits")
    shape = tuple(int(s) for s in input_shape)
    peaks: dict[str, float] = {}
    if calib is not None:
        batches = as_batches(calib, shape)
        gm0 = fx_trace(model)
        interp_vals: dict[str, float] = {}

        class _Peak(fx.Interpreter):
            def run_node(self, n):
                v = super().run_node(n)
                if isinstance(v, torch.Tensor):
                    interp_vals[n.name] = max(interp_vals.get(n.name, 0.0), float(v.detach().max()))
                return v

        with eval_mode(model), torch.no_grad():
            for b in batches:
                _Peak(gm0).run(b)
        peaks = interp_vals

    def act(src):
        top = peaks.get(src.name)
        if top is None or top <= 0:
            return QuantAct(bits)
        return QuantAct(bits, 2.0 ** math.ceil(math.log2(top / (2**bits - 1))))

    def layer(mod):
        geo = _geometry(mod)
        cls = QuantConv2d if isinstance(mod, nn.Conv2d) else QuantLinear
        return _copy_params(cls(**geo, bits=bits), mod)

    return _convert(model, shape, layer, act, keep_first, keep_last, relu_only=True)
