"""What an import may change in a user's model, and putting it back: each submodule's attributes, parameters,
submodules, buffer values and train/eval flag (:func:`mapping.trace.trace` snapshots them before tracing and restores
them after, done or refused); :func:`copy_module` and :func:`eval_mode` for the other places that copy or run a
user's model."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["copy_module", "eval_mode"]


def _module_state(model: nn.Module) -> list[tuple]:
    """What tracing may change in ``model``: each submodule's attributes, parameters and submodules (a forward that
    assigns ``self.x = ...`` leaves a torch.fx Proxy there when tracing runs it) and its buffers' values (a forward
    that updates a buffer in place); :func:`_restore` puts them back, so an import, done or refused, leaves the
    model as it was."""
    return [(m, dict(m.__dict__), dict(m._parameters), dict(m._modules),
             {k: (b, None if b is None else b.detach().clone()) for k, b in m._buffers.items()},
             _containers(m)) for m in model.modules()]  # (trace refuses TorchScript modules before this)


_MODULE_DICTS = frozenset({"_parameters", "_buffers", "_modules"})


def _containers(m: nn.Module) -> list[tuple]:
    """The plain dicts and lists a module holds (a cache a forward fills in place: timm's LeViT keeps its attention
    biases in ``self.attention_bias_cache``, where tracing leaves a torch.fx Proxy) with a copy of their contents."""
    return [(v, dict(v) if isinstance(v, dict) else list(v)) for k, v in m.__dict__.items()
            if type(v) in (dict, list) and k not in _MODULE_DICTS]


def _changed_buffers(state: list[tuple]) -> list[str]:
    """Buffers whose values the import's forward passes changed in place (a stateful forward)."""
    names = {id(m): k for k, m in state[0][0].named_modules()}
    return [f"{names[id(m)] + '.' if names[id(m)] else ''}{k}" for m, *_, buffers, _ in state
            for k, (b, value) in buffers.items() if b is not None and not torch.equal(b, value)]


def copy_module(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``. A tensor attribute autograd computed (the ``weight`` torch.nn.utils.prune recomputes
    from ``weight_orig`` and its mask) is copied detached: ``copy.deepcopy`` refuses tensors that are no graph
    leaves."""
    import copy

    memo = {id(t): t.detach().clone() for m in model.modules() for t in m.__dict__.values()
            if isinstance(t, torch.Tensor) and t.grad_fn is not None}
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``model`` in eval mode for the block, then each submodule's own train/eval flag back (``model.train(was)``
    would give every submodule the root's: a frozen batch norm of a model in training would start updating)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


def _restore(state: list[tuple]) -> None:
    for m, attrs, params, modules, buffers, containers in state:
        for v, items in containers:  # the same dict / list objects, their contents before the import
            v.clear()
            v.update(items) if isinstance(v, dict) else v.extend(items)
        m.__dict__.clear()
        m.__dict__.update(attrs)
        m._parameters.clear()
        m._parameters.update(params)
        m._modules.clear()
        m._modules.update(modules)
        m._buffers.clear()
        for k, (b, value) in buffers.items():
            if b is not None:
                b.copy_(value)  # the same tensor object, its value before the import
            m._buffers[k] = b
