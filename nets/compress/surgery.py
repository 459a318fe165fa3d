"""Physical channel removal, its masked reference, and the counts it predicts.

:func:`remove_channels` returns a torch.fx ``GraphModule`` (same module names, trainable) in which
every removed channel class is gone from every layer it touches: conv/linear output rows and input
columns, depthwise convs (channels and ``groups``), batch norms, channel slices (bounds rewritten),
and reshapes that spell out a feature count. :func:`mask_channels` is the reference it must equal:
the original network with the weight columns that *read* a removed channel set to zero (a channel
class reaches the output only through those columns, since pinned classes are never removed).
"""
from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from mapping.graph import BUFFER_ROLES, Op
from mapping.trace import copy_module
from nets.compress.deps import DependencyGraph, fx_trace
from nets.compress.errors import CompressError, UnprunableError

__all__ = ["remove_channels", "mask_channels", "predicted_counts", "check_removal"]

_CONV_KEYS = {"weight", "bias"}
_BN_KEYS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def check_removal(deps: DependencyGraph, remove: Iterable[int]) -> frozenset[int]:
    """Validate a set of class ids: all prunable, and every group keeps at least one channel."""
    rm = frozenset(int(c) for c in remove)
    bad = rm - set(deps.prunable)
    if bad:
        c = min(bad)
        why = deps.pinned.get(c, "not a channel class of this network")
        raise UnprunableError(f"channel class {c} cannot be removed: {why}")
    for g in deps.groups:
        if all(c in rm for c in g.classes):
            raise UnprunableError(f"removing every channel of layer group '{g.name}' would disconnect the network")
    return rm


def _keep(deps: DependencyGraph, value: str, rm: frozenset[int]) -> np.ndarray:
    return np.array([int(c) not in rm for c in deps.value_classes[value]], dtype=bool)


def _layer_keeps(deps: DependencyGraph, rm: frozenset[int]) -> dict[str, tuple[Op, np.ndarray, np.ndarray]]:
    """module -> (op, keep_out, keep_in) for every conv/linear/bn touched by the removal."""
    out: dict[str, tuple[Op, np.ndarray, np.ndarray]] = {}
    for n in deps.graph.nodes:
        if n.op not in (Op.CONV2D, Op.LINEAR, Op.BATCHNORM):
            continue
        ko, ki = _keep(deps, n.name, rm), _keep(deps, n.inputs[0], rm)
        if n.module in out:
            _, ko0, ki0 = out[n.module]
            if not (np.array_equal(ko0, ko) and np.array_equal(ki0, ki)):  # pragma: no cover - union-find merges these
                raise CompressError(f"shared layer '{n.module}' would be pruned differently in two executions")
            continue
        out[n.module] = (n.op, ko, ki)
    return out


def _check_plain(mod: nn.Module, name: str, allowed: set[str]) -> None:
    names = {k for k, _ in mod.named_parameters(recurse=False)} | {k for k, _ in mod.named_buffers(recurse=False)}
    extra = names - allowed
    if extra or list(mod.children()) or getattr(mod, "parametrizations", None) is not None:
        raise UnprunableError(f"layer '{name}' ({type(mod).__name__}) carries per-channel state "
                              f"{sorted(extra) or 'in submodules/parametrizations'} that channel removal cannot "
                              "rewrite; prune before quantizing or masking, or finalize masks first")


def _index(t: torch.Tensor, rows: np.ndarray | None, cols: np.ndarray | None) -> torch.Tensor:
    t = t.detach()
    if rows is not None:
        t = t[torch.as_tensor(np.flatnonzero(rows))]
    if cols is not None:
        t = t[:, torch.as_tensor(np.flatnonzero(cols))]
    return t.clone()


def _new_layer(mod: nn.Module, name: str, op: Op, ko: np.ndarray, ki: np.ndarray) -> nn.Module:
    """A copy of ``mod`` keeping output rows ``ko`` and input columns ``ki``."""
    new = copy_module(mod)
    if op == Op.BATCHNORM:
        if not isinstance(mod, nn.modules.batchnorm._BatchNorm):
            raise UnprunableError(f"layer '{name}' is a {type(mod).__name__}, not a torch BatchNorm")
        _check_plain(mod, name, _BN_KEYS)
        for attr in ("weight", "bias"):
            if getattr(mod, attr) is not None:
                setattr(new, attr, nn.Parameter(_index(getattr(mod, attr), ko, None)))
        for attr in ("running_mean", "running_var"):
            if getattr(mod, attr) is not None:
                setattr(new, attr, _index(getattr(mod, attr), ko, None))
        new.num_features = int(ko.sum())
        return new
    _check_plain(mod, name, _CONV_KEYS)
    if op == Op.CONV2D:
        if not isinstance(mod, nn.Conv2d):
            raise UnprunableError(f"layer '{name}' is a {type(mod).__name__}, not a torch Conv2d")
        g = mod.groups
        if g == 1:
            new.weight = nn.Parameter(_index(mod.weight, ko, ki))
            new.in_channels = int(ki.sum())
        else:  # depthwise: one input channel per group; the classes of rows and groups agree
            new.weight = nn.Parameter(_index(mod.weight, ko, None))
            new.in_channels = new.groups = int(ki.sum())
        new.out_channels = int(ko.sum())
    else:
        if not isinstance(mod, nn.Linear):
            raise UnprunableError(f"layer '{name}' is a {type(mod).__name__}, not a torch Linear")
        new.weight = nn.Parameter(_index(mod.weight, ko, ki))
        new.in_features, new.out_features = int(ki.sum()), int(ko.sum())
    if mod.bias is not None:
        new.bias = nn.Parameter(_index(mod.bias, ko, None))
    return new


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _rewrite_slice(node: fx.Node, lo: int, hi: int, what: str) -> None:
    if node.target is operator.getitem and isinstance(node.args[1], tuple) and len(node.args[1]) >= 2 \
            and isinstance(node.args[1][1], slice):
        idx = list(node.args[1])
        idx[1] = slice(lo, hi, None)
        node.args = (node.args[0], tuple(idx))
        return
    raise UnprunableError(f"channel slice {what} is not written as x[:, a:b]; its bounds cannot be rewritten")


def _rewrite_reshape(node: fx.Node, new_shape: tuple[int, ...], what: str) -> None:
    if node.op == "call_method" and node.target in ("view", "reshape"):
        node.args = (node.args[0], -1, *new_shape)
        node.kwargs = {}
    elif node.op == "call_function" and node.target is torch.reshape:
        node.args = (node.args[0], (-1, *new_shape))
        node.kwargs = {}
    elif not (node.op == "call_function" and node.target is torch.flatten) and not node.op == "call_module":
        raise UnprunableError(f"reshape {what} ({node.op} {node.target}) cannot be rewritten for fewer channels")


def remove_channels(model: nn.Module, deps: DependencyGraph, remove: Iterable[int]) -> fx.GraphModule:
    """A physically smaller copy of ``model`` without the channel classes ``remove`` (ids of ``deps``).

    The result is a ``torch.fx.GraphModule`` with the original module names, in the original
    train/eval mode, and carries ``hwsim_input_shape`` / ``hwsim_name`` when the original did.
    """
    rm = check_removal(deps, remove)
    gm = fx_trace(copy_module(model))
    fx_nodes = {n.name: n for n in gm.graph.nodes}
    for n in deps.graph.nodes:
        if n.name not in fx_nodes:  # pragma: no cover - both traces use the same tracer
            raise CompressError(f"internal: traced node '{n.name}' not found in the fx graph")
    for name, (op, ko, ki) in _layer_keeps(deps, rm).items():
        if ko.all() and ki.all():
            continue
        _set_module(gm, name, _new_layer(gm.get_submodule(name), name, op, ko, ki))
    for n in deps.graph.nodes:
        if n.op == Op.SLICE and n.attrs.dim == 1:
            ki = _keep(deps, n.inputs[0], rm)
            if not ki.all():
                lo, hi = int(ki[:n.attrs.start].sum()), int(ki[:n.attrs.stop].sum())
                _rewrite_slice(fx_nodes[n.name], lo, hi, f"'{n.module or n.name}'")
        elif n.op == Op.RESHAPE and len(n.shape) in (2, 4):
            ko = _keep(deps, n.name, rm)
            if not ko.all():
                new_shape = (int(ko.sum()),) + tuple(n.shape[2:])
                _rewrite_reshape(fx_nodes[n.name], new_shape, f"'{n.name}'")
    gm.graph.lint()
    gm.recompile()
    for attr in ("hwsim_input_shape", "hwsim_name"):
        if hasattr(model, attr):
            setattr(gm, attr, getattr(model, attr))
    return gm.train(model.training)


def mask_channels(model: nn.Module, deps: DependencyGraph, remove: Iterable[int]) -> nn.Module:
    """Reference for :func:`remove_channels`: a copy of ``model`` whose weight columns reading a
    removed channel (conv groups 1, linear) are zero. Its outputs equal the pruned network's."""
    rm = check_removal(deps, remove)
    masked = copy_module(model)
    with torch.no_grad():
        for c in rm:
            for module, col in deps.consumers.get(c, ()):
                masked.get_submodule(module).weight[:, col] = 0.0
    return masked


def predicted_counts(deps: DependencyGraph, remove: Iterable[int]) -> tuple[int, int]:
    """(parameters, MACs per sample) the pruned network will have, from the traced shapes.

    Parameters: every distinct parameter key of the IR, its kept size (conv weight ko·ki/g·kh·kw,
    linear ko·ki, bias / BN affine vectors ko; BN running statistics are buffers, as in
    :attr:`mapping.graph.Graph.param_count`). MACs: conv OH·OW·ko·(ki/g)·kh·kw, linear ko·ki.
    """
    rm = check_removal(deps, remove)
    sizes: dict[str, int] = {}
    macs = 0
    for n in deps.graph.nodes:
        if not n.params:
            continue
        ko, ki = int(_keep(deps, n.name, rm).sum()), int(_keep(deps, n.inputs[0], rm).sum())
        if n.op == Op.CONV2D:
            a = n.attrs
            g = a.groups if a.groups == 1 or a.groups != a.in_channels else ki
            rows = ki // g * a.kernel[0] * a.kernel[1]
            macs += int(np.prod(n.shape[2:])) * ko * rows
            sizes[n.params["weight"]] = ko * rows
            if "bias" in n.params:
                sizes[n.params["bias"]] = ko
        elif n.op == Op.LINEAR:
            macs += ko * ki
            sizes[n.params["weight"]] = ko * ki
            if "bias" in n.params:
                sizes[n.params["bias"]] = ko
        else:
            for role, key in n.params.items():
                if role not in BUFFER_ROLES:  # running statistics are buffers, not parameters
                    sizes[key] = ko
    return int(sum(sizes.values())), int(macs)
