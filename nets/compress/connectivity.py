"""Learned sparse connectivity (after Tang et al., "Automatic Sparse Connectivity Learning for
Neural Networks", IEEE TNNLS 2022, arXiv 2201.05020).

Every chosen conv2d/linear weight is multiplied by a binary mask ``m = step(s)`` (1 where the
trainable score ``s > 0``). The step has no useful derivative, so the backward pass uses the
straight-through estimator ``∂m/∂s := 1`` (Bengio et al., arXiv 1308.3432). The regulariser is the
number of active connections, ``count = Σ m`` (each mask entry weighted by the weights it gates:
1 for ``granularity="weight"``, the filter's fan-in·kh·kw for ``"filter"``), normalised by the
total; its STE gradient pushes every score down at the rate ``λ / total`` while the task loss
pushes up the scores of useful connections (``∂L/∂s = Σ ∂L/∂w_eff · w``).

Masks are ``torch.nn.utils.parametrize`` parametrizations, so the network traces and trains as
usual (``model.parameters()`` includes the scores). :meth:`SparseConnectivity.finalize` turns the
learned masks into fixed ``torch.nn.utils.prune`` masks; with ``granularity="filter"``,
:func:`remove_dead_filters` then removes the fully masked channels physically.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as tprune

from mapping.trace import copy_module
from nets.compress.deps import analyze
from nets.compress.errors import CompressError
from nets.compress.surgery import remove_channels

__all__ = ["GRANULARITIES", "SparseConnectivity", "remove_dead_filters"]

GRANULARITIES = ("weight", "filter")


class _StepSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return (s > 0).to(s.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return g


class _Mask(nn.Module):
    """Parametrization ``w -> w · step(scores)`` (scores broadcast over a filter for ``"filter"``)."""

    def __init__(self, shape: tuple[int, ...], granularity: str, init: float):
        super().__init__()
        sshape = shape if granularity == "weight" else (shape[0],) + (1,) * (len(shape) - 1)
        self.scores = nn.Parameter(torch.full(sshape, float(init)))
        self.weight_per_entry = 1 if granularity == "weight" else int(torch.tensor(shape[1:]).prod())

    def mask(self) -> torch.Tensor:
        return _StepSTE.apply(self.scores)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask()


class SparseConnectivity:
    """Attach learnable binary masks to the conv2d/linear layers of ``model`` (in place).

    layers: qualified names (default: every conv2d/linear); granularity: ``"weight"`` or
    ``"filter"``; init: initial score (> 0: every connection starts active).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, granularity: str = "weight",
                 init: float = 0.1):
        if granularity not in GRANULARITIES:
            raise CompressError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if not init > 0:
            raise CompressError(f"init must be > 0 (connections start active), got {init!r}")
        mods = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        names = list(mods) if layers is None else list(layers)
        missing = [n for n in names if n not in mods]
        if missing:
            raise CompressError(f"not conv2d/linear layers of the model: {missing}")
        if not names:
            raise CompressError("the model has no conv2d/linear layer")
        self.model, self.granularity = model, granularity
        self.masks: dict[str, _Mask] = {}
        for n in names:
            m = mods[n]
            if parametrize.is_parametrized(m, "weight") or tprune.is_pruned(m):
                raise CompressError(f"layer '{n}' already carries a mask or parametrization")
            mask = _Mask(tuple(m.weight.shape), granularity, init)
            parametrize.register_parametrization(m, "weight", mask)
            self.masks[n] = mask
        self.total = sum(mk.scores.numel() * mk.weight_per_entry for mk in self.masks.values())

    def scores(self) -> list[nn.Parameter]:
        """The mask scores (also in ``model.parameters()``)."""
        return [mk.scores for mk in self.masks.values()]

    def connections(self) -> torch.Tensor:
        """Active connections Σ m (weight-weighted), differentiable through the STE."""
        return sum(mk.mask().sum() * mk.weight_per_entry for mk in self.masks.values())

    def penalty(self, lam: float) -> torch.Tensor:
        """``lam · connections / total`` (add it to the loss)."""
        return lam * self.connections() / self.total

    def density(self) -> float:
        """Fraction of connections still active."""
        with torch.no_grad():
            return float(self.connections()) / self.total

    def finalize(self) -> nn.Module:
        """Remove the parametrizations, keep the learned masks as fixed prune masks; returns the model."""
        for name, mk in self.masks.items():
            m = self.model.get_submodule(name)
            with torch.no_grad():
                mask = mk.mask().detach().expand_as(m.parametrizations.weight.original).clone()
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            tprune.custom_from_mask(m, "weight", mask)
        self.masks = {}
        return self.model


def remove_dead_filters(model: nn.Module, input_shape: Sequence[int]) -> fx.GraphModule:
    """Physically remove every prunable channel class whose producing filters are all zero.

    (A BatchNorm after a zero filter still outputs its constant shift; the removal drops that
    constant too, i.e. the result equals :func:`~nets.compress.surgery.mask_channels` of the classes.)
    """
    deps = analyze(model, input_shape)
    mods = dict(model.named_modules())
    dead = [c for c in deps.prunable
            if all(bool((mods[m].weight.detach()[r] == 0).all()) for m, r in deps.producers[c])]
    keep_one = set()
    for g in deps.groups:  # never empty a group: keep its strongest filter
        if all(c in dead for c in g.classes):
            keep_one.add(g.classes[0])
    plain = model
    if any(tprune.is_pruned(m) for m in model.modules()):
        from nets.compress.magnitude import make_permanent
        plain = make_permanent(copy_module(model))
    return remove_channels(plain, deps, [c for c in dead if c not in keep_one])
