"""Similarity-of-feature-maps pruning (after Wang et al., "QSFM: Model Pruning Based on Quantified
Similarity Between Feature Maps for AI on Edge", IEEE IoT Journal 2022, arXiv 2105.06052). The paper's
exact similarity measure was not available offline; we use the cosine similarity below.

A filter whose output feature map (almost) repeats another filter's carries little new
information. On a few calibration batches we record every prunable channel's feature map where the
network consumes it: the output of the first BatchNorm of the channel followed by the activation
after it (or the producing conv's output when there is no BatchNorm). The similarity of two
channels of a group is the cosine of their maps flattened over batch and space,
``s(i, j) = <f_i, f_j> / (|f_i|·|f_j|)``. Per group, channels are removed greedily: take the most
similar remaining pair and drop the one with the smaller map energy ``|f|²``; the class's score is
``1 − s`` at the moment it is dropped (made non-decreasing along the removal order, so the global
ranking keeps each group's greedy order). The last channel of a group scores 2 (never chosen).
By default each removed map is folded into its most similar kept map in the layers that read it
directly (:func:`compensate`), so a duplicated filter is removed without changing the output.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mapping.graph import Op
from mapping.trace import copy_module, eval_mode
from nets.compress.calib import as_batches
from nets.compress.deps import DependencyGraph, analyze
from nets.compress.errors import check_ratio
from nets.compress.select import select_channels
from nets.compress.surgery import remove_channels

__all__ = ["feature_maps", "greedy_order", "similarity_scores", "compensate", "prune_similar"]

_ACT = {Op.RELU: F.relu, Op.RELU6: F.relu6, Op.HARDSWISH: F.hardswish, Op.SIGMOID: torch.sigmoid,
        Op.HARDSIGMOID: F.hardsigmoid, Op.SILU: F.silu, Op.TANH: torch.tanh}


def _probes(deps: DependencyGraph) -> dict[int, tuple[str, int, Op | None]]:
    probes = {}
    for c in deps.prunable:
        bns = deps.producer_bns(c)
        probes[c] = bns[0] if bns else (deps.producers[c][0][0], deps.producers[c][0][1], None)
    return probes


def feature_maps(model: nn.Module, deps: DependencyGraph, calib) -> dict[int, np.ndarray]:
    """class -> its probed feature map, flattened over all calibration samples and positions (float64)."""
    batches = as_batches(calib, deps.input_shape)
    probes = _probes(deps)
    mods = dict(model.named_modules())
    wanted = {m for m, _, _ in probes.values()}
    seen: dict[str, list[torch.Tensor]] = {m: [] for m in wanted}
    calls: dict[str, int] = {}

    def hook(name):
        def fn(mod, inp, out):
            if calls.get(name, 0) == 0:  # a shared module: its first execution per forward pass
                seen[name].append(out.detach())
            calls[name] = calls.get(name, 0) + 1
        return fn

    handles = [mods[m].register_forward_hook(hook(m)) for m in wanted]
    try:
        with eval_mode(model), torch.no_grad():
            for b in batches:
                calls.clear()
                model(b)
    finally:
        for h in handles:
            h.remove()
    outs = {m: torch.cat(v) for m, v in seen.items()}
    maps = {}
    for c, (m, j, act) in probes.items():
        f = outs[m][:, j]
        if act in _ACT:
            f = _ACT[act](f)
        maps[c] = f.reshape(-1).double().numpy()
    return maps


def greedy_order(feats: np.ndarray) -> tuple[list[int], list[float]]:
    """Greedy redundancy order of the rows of ``feats`` (n × D): (removal order of n-1 rows, the
    cosine similarity to the closest remaining row at each removal)."""
    n = feats.shape[0]
    energy = (feats * feats).sum(axis=1)
    norms = np.sqrt(energy)
    safe = np.where(norms > 0, norms, 1.0)
    unit = feats / safe[:, None]
    sim = unit @ unit.T
    dead = norms == 0  # an all-zero map duplicates everything
    sim[dead, :] = 1.0
    sim[:, dead] = 1.0
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(n, bool)
    best_j = np.argmax(sim, axis=1) if n > 1 else np.zeros(n, np.int64)
    best = sim[np.arange(n), best_j] if n > 1 else np.full(n, -np.inf)
    order, sims = [], []
    for _ in range(n - 1):  # O(n^2) overall: only rows whose best partner was dropped are rescanned
        i = int(np.argmax(np.where(alive, best, -np.inf)))
        j = int(best_j[i])
        drop = i if (energy[i], -i) < (energy[j], -j) else j
        order.append(drop)
        sims.append(float(best[i]))
        alive[drop] = False
        sim[:, drop] = -np.inf
        best[drop] = -np.inf
        for k in np.flatnonzero(alive & (best_j == drop)):
            best_j[k] = int(np.argmax(sim[k]))
            best[k] = sim[k, best_j[k]]
    return order, sims


def similarity_scores(model: nn.Module, deps: DependencyGraph, calib, maps: dict[int, np.ndarray] | None = None
                      ) -> dict[int, float]:
    """Redundancy score of every prunable class (low = redundant), see module doc."""
    maps = feature_maps(model, deps, calib) if maps is None else maps
    scores: dict[int, float] = {}
    for g in deps.groups:
        feats = np.stack([maps[c] for c in g.classes])
        order, sims = greedy_order(feats)
        level = -np.inf
        for idx, s in zip(order, sims):
            level = max(level, 1.0 - s)
            scores[g.classes[idx]] = float(level)
        last = set(range(g.size)) - set(order)
        for idx in last:
            scores[g.classes[idx]] = 2.0
    return scores


def _direct_readers(deps: DependencyGraph, module: str, act: Op | None) -> list[tuple[str, str]]:
    """(IR value, reading module) pairs: conv (groups 1) layers that read the probed map of BN/conv
    ``module`` directly (right after it, or after the one activation that follows it)."""
    g = deps.graph
    users = g.consumers()
    out = []
    for n in g.nodes:
        if n.module != module:
            continue
        value = n.name
        if act is not None:
            nxt = users.get(n.name, [])
            if len(nxt) != 1 or nxt[0].op != act:
                continue
            value = nxt[0].name
        for u in users.get(value, []):
            if u.op == Op.CONV2D and u.attrs.groups == 1:
                out.append((value, u.module))
    return out


def compensate(model: nn.Module, deps: DependencyGraph, maps: dict[int, np.ndarray], remove) -> nn.Module:
    """A copy of ``model`` where each removed channel's contribution is folded into its most similar
    kept channel of the same group: for a reader conv W, ``W[:, k] += a·W[:, c]`` with the
    least-squares factor ``a = <f_c, f_k> / <f_k, f_k>`` (f: probed feature maps), for the convs that
    read the probed map directly. A removed map that is an exact multiple of a kept one is then
    reproduced exactly; other readers of the channel (e.g. across a residual add) are left as they are.
    """
    rm = set(int(c) for c in remove)
    out = copy_module(model)
    mods = dict(out.named_modules())
    probes = _probes(deps)
    with torch.no_grad():
        for grp in deps.groups:
            kept = [c for c in grp.classes if c not in rm]
            gone = [c for c in grp.classes if c in rm]
            if not gone or not kept:
                continue
            fk = np.stack([maps[c] for c in kept])
            nk = (fk * fk).sum(axis=1)
            for c in gone:
                fc = maps[c]
                dots = fk @ fc
                cos = dots / np.sqrt(np.maximum(nk * (fc @ fc), 1e-300))
                i = int(np.argmax(cos))
                if nk[i] <= 0:
                    continue
                a = float(dots[i] / nk[i])
                k = kept[i]
                m, _, act = probes[c]
                if probes[k][0] != m:
                    continue  # partner probed on another layer (a residual group): no direct reader
                for value, reader in _direct_readers(deps, m, act):
                    cls = deps.value_classes[value]
                    pc, pk = np.flatnonzero(cls == c), np.flatnonzero(cls == k)
                    if len(pc) == 1 and len(pk) == 1:
                        w = mods[reader].weight
                        w[:, int(pk[0])] += a * w[:, int(pc[0])]
    return out


def prune_similar(model: nn.Module, input_shape: Sequence[int], calib, ratio: float, scope: str = "layer",
                  min_channels: int = 1, compensate_removed: bool = True) -> fx.GraphModule:
    """Remove the fraction ``ratio`` of channels whose feature maps repeat others' on ``calib``; with
    ``compensate_removed``, fold each removed map into its most similar kept one (:func:`compensate`)."""
    check_ratio(ratio)
    deps = analyze(model, input_shape)
    maps = feature_maps(model, deps, calib)
    remove = select_channels(deps, similarity_scores(model, deps, calib, maps), ratio, scope, min_channels)
    base = compensate(model, deps, maps, remove) if compensate_removed else model
    return remove_channels(base, deps, remove)
