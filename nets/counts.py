"""Parameter and MAC counts of zoo nets, independent of the IR.

MACs count only Conv2d and Linear, per image (batch 1):
    conv:   OH * OW * Cout * (Cin / groups) * kh * kw
    linear: in_features * out_features (times the number of positions if applied to a >2-D tensor)
A module executed several times (an iterated block) is counted once per execution. Parameters are
counted once per distinct ``nn.Parameter`` (``model.parameters()`` de-duplicates shared ones).
Subclasses of Conv2d/Linear (e.g. the binary/quantized layers of ``nets.layers``) count the same.

The forward pass used for counting runs on the ``meta`` device (shapes only, no arithmetic), so
counting a 224x224 ImageNet net costs milliseconds. A model that cannot run on ``meta`` (e.g. one
that calls ``Tensor.item()``) is counted from one real forward pass on zeros instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mapping.trace import copy_module, eval_mode

__all__ = ["count_params", "count_macs", "layer_macs", "count_ops_condensenet_convention", "Call", "module_calls"]


@dataclass(frozen=True, slots=True)
class Call:
    """One execution of a module during the counting pass (shapes include the batch dimension)."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def count_params(model: nn.Module) -> int:
    """Number of distinct parameter elements (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


def _hooked_pass(model: nn.Module, input_shape: tuple[int, ...], types: tuple[type, ...], device: str) -> list[Call]:
    calls: list[Call] = []

    def hook(name):
        def fn(mod, inp, out):
            calls.append(Call(name, mod, tuple(inp[0].shape), tuple(out.shape)))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, types)]
    try:
        with torch.no_grad():
            if device == "meta":
                model(torch.empty(input_shape, device="meta"))
            else:
                model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return calls


def module_calls(model: nn.Module, input_shape: tuple[int, ...], types: tuple[type, ...]) -> list[Call]:
    """Every execution of a module of ``types`` in one forward pass at ``input_shape``, in order."""
    try:
        return _hooked_pass(copy_module(model).to("meta").eval(), input_shape, types, "meta")
    except (RuntimeError, NotImplementedError):
        pass  # not runnable on meta: count from a real pass on the model itself
    with eval_mode(model):  # each submodule's own flag back after (model.train(was) gave them all the root's)
        return _hooked_pass(model, input_shape, types, "cpu")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, int]]:
    """(qualified module name, MACs per image) for every Conv2d/Linear call, in execution order."""
    batch = int(input_shape[0])
    rows = []
    for c in module_calls(model, input_shape, (nn.Conv2d, nn.Linear)):
        m = c.module
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs = _numel(c.out_shape) // batch * (m.in_channels // m.groups) * kh * kw
        else:
            macs = _numel(c.out_shape) // batch * m.in_features
        rows.append((c.name, int(macs)))
    return rows


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Total conv + linear MACs per image at ``input_shape`` (batch included in the shape)."""
    return sum(m for _, m in layer_macs(model, input_shape))


def count_ops_condensenet_convention(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Operation count under the convention of CondenseNet's official counter (utils.measure_model).

    = conv/linear MACs + one op per ReLU input element + kh*kw per AvgPool2d output element + one op
    per AdaptiveAvgPool2d input element + the linear biases. Only used to compare against figures
    published with that counter (CondenseNet's FLOPs tables).
    """
    batch = int(input_shape[0])
    extra = 0
    for c in module_calls(model, input_shape, (nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Linear)):
        m = c.module
        if isinstance(m, (nn.ReLU, nn.AdaptiveAvgPool2d)):
            extra += _numel(c.in_shape) // batch
        elif isinstance(m, nn.AvgPool2d):
            kh, kw = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) else m.kernel_size
            extra += _numel(c.out_shape) // batch * kh * kw
        elif m.bias is not None:
            extra += m.bias.numel()
    return count_macs(model, input_shape) + extra
