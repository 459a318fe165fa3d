"""Magnitude pruning (Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015; filters: Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

Unstructured: the smallest-|w| weights of every conv2d/linear are zeroed through
``torch.nn.utils.prune`` masks (``weight = weight_orig * weight_mask``), so the zeros stay zero
during fine-tuning; :func:`make_permanent` folds the masks into plain weights. The network keeps
its shape: what a target gains from the zeros is stated in :data:`SPARSITY_SUPPORT`.

Structured: a filter's importance is its mean absolute weight ``Σ|W[o]| / numel(W[o])`` (the L1
norm of Li et al. over the fan-in); a channel class produced by several layers (a residual stage)
scores the mean over its producing filters. For the global ranking the scores are divided by their
group's mean: raw magnitudes scale like 1/sqrt(fan-in) after standard initialisation, so without it a
global threshold empties the wide late layers first (measured on the digits demo: 50 % of the
channels removed that way left 54.5 % accuracy after fine-tuning). The least important classes are removed physically (:mod:`nets.compress.surgery`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import prune as tprune

from mapping.trace import copy_module
from nets.compress.deps import DependencyGraph, analyze
from nets.compress.errors import CompressError, check_ratio
from nets.compress.select import SCOPES, prune_by_scores

__all__ = ["SPARSITY_SUPPORT", "prune_unstructured", "make_permanent", "weight_sparsity", "filter_scores",
           "prune_filters"]

# What each simulated target does with unstructured zeros (checked by tests/test_compress_magnitude.py
# for the targets present): none of hwsim's cost models skips zero weights, so unstructured
# sparsity changes accuracy but not simulated latency/energy/memory.
SPARSITY_SUPPORT: dict[str, str] = {
    "cpu": "ignored: dense kernels; latency, energy and weight bytes are those of the dense layer",
    "imc": "ignored: a zero weight still occupies its crossbar cells and is read by every MVM",
    "fpga": "ignored: binary weights are ±1 (no zero level); masks are lost when binarizing",
}

_WEIGHTED = (nn.Conv2d, nn.Linear)


def _layers(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    if layers is None:
        return found
    named = dict(found)
    missing = [n for n in layers if n not in named]
    if missing:
        raise CompressError(f"not conv2d/linear layers of the model: {missing}")
    return [(n, named[n]) for n in layers]


def prune_unstructured(model: nn.Module, sparsity: float, scope: str = "global",
                       layers: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with the fraction ``sparsity`` of conv/linear weights zeroed (masked).

    scope ``"global"``: one |w| threshold over all chosen layers; ``"layer"``: each layer loses
    ``round(sparsity·numel)`` of its own smallest weights. ``layers``: qualified names (default all).
    Existing masks are respected (already-zero weights count as the smallest).
    """
    sparsity = check_ratio(sparsity, "sparsity")
    if scope not in SCOPES:
        raise CompressError(f"scope must be one of {SCOPES}, got {scope!r}")
    out = copy_module(model)
    chosen = _layers(out, layers)
    if not chosen:
        raise CompressError("the model has no conv2d/linear layer to prune")
    weights = [m.weight.detach().abs().flatten() for _, m in chosen]
    if scope == "global":
        flat = torch.cat(weights)
        k = int(round(sparsity * flat.numel()))
        order = torch.argsort(flat, stable=True)
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[order[:k]] = False
        masks, start = [], 0
        for w in weights:
            masks.append(keep[start:start + w.numel()])
            start += w.numel()
    else:
        masks = []
        for w in weights:
            keep = torch.ones_like(w, dtype=torch.bool)
            keep[torch.argsort(w, stable=True)[:int(round(sparsity * w.numel()))]] = False
            masks.append(keep)
    for (_, m), mask in zip(chosen, masks):
        tprune.custom_from_mask(m, "weight", mask.reshape(m.weight.shape).to(m.weight.dtype))
    return out


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold ``torch.nn.utils.prune`` masks into plain weights (in place); returns ``model``."""
    for m in model.modules():
        if tprune.is_pruned(m) and hasattr(m, "weight_mask"):
            tprune.remove(m, "weight")
    return model


def weight_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights of every conv2d/linear layer (masked or not)."""
    return {n: float((m.weight.detach() == 0).float().mean()) for n, m in _layers(model, None)}


def filter_scores(model: nn.Module, deps: DependencyGraph) -> dict[int, float]:
    """Mean |w| of the filters producing each prunable channel class (mean over producers), divided
    by the mean of its group (a per-layer ranking is unchanged by that; a global one becomes fair)."""
    mods = dict(model.named_modules())
    scores = {}
    for g in deps.groups:
        raw = {}
        for c in g.classes:
            vals = [float(mods[name].weight.detach()[row].abs().mean()) for name, row in deps.producers[c]]
            raw[c] = sum(vals) / len(vals)
        mean = sum(raw.values()) / len(raw)
        for c, v in raw.items():
            scores[c] = v / mean if mean > 0 else 0.0
    return scores


def prune_filters(model: nn.Module, input_shape: Sequence[int], ratio: float, scope: str = "global",
                  min_channels: int = 1) -> fx.GraphModule:
    """Remove the fraction ``ratio`` of channels with the smallest filter magnitude (physically)."""
    check_ratio(ratio)
    deps = analyze(model, input_shape)
    return prune_by_scores(model, deps, filter_scores(model, deps), ratio, scope, min_channels)
