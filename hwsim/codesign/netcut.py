"""NetCut: trim a trained network to meet a latency deadline on a target (Zandigohar, Erdoğmuş,
Schirner, "NetCut: Real-Time DNN Inference Using Layer Removal", DATE'21, arXiv 2101.05363).

The paper's loop, as implemented here:

1. **Enumerate TRimmed Networks (TRNs).** The network is read as an ordered list of blocks (its
   top-level children, nested ``nn.Sequential`` stages expanded one level, the classifier tail
   removed). TRN *k* keeps blocks ``0..k`` and adds a new head: global average pool + linear
   (``head_fn(channels, num_classes)`` to change it; each TRN is run once and must give
   (N, num_classes) logits). A cut never separates a layer from the batch norm or activation that
   follows it: the default cuts skip such points and an explicit ``cut_points`` entry there is
   refused. The blocks must reproduce the model's forward pass followed by its classifier tail,
   where a feature map may reach the first linear layer as is, flattened (``torch.flatten(x, 1)``,
   VGG/LeNet style) or globally averaged (ResNet style).
2. **Estimate latency before any training.** Each TRN is traced and costed by the target's
   simulator (``hwsim.simulate`` without an input); with ``measure=True`` its torch forward is also
   timed on this machine (median of repeats), the paper's empirical estimator.
3. **Propose only TRNs that meet the deadline** (estimated latency ≤ ``deadline_s``).
4. **Fine-tune the proposals** through the user's ``train_fn(model) -> accuracy`` (or a dict with
   an ``"accuracy"`` key) and rank them: by accuracy when trained, else deepest first (the paper's
   heuristic: the TRN that keeps the most of the pretrained network).

The result says how long exploration took (estimation + fine-tuning of proposals); with
``train_all=True`` every TRN is fine-tuned too, which is what exploring without an estimator costs.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwsim.codesign._netcut_checks import (
    TrainFnError,
    as_model,
    check_decomposition,
    check_num_classes,
    check_trn_output,
    train,
)
from hwsim.codesign.points import torch_threads
from hwsim.errors import HwsimError, ShapeError
from hwsim.specs import is_integer, is_real

__all__ = ["netcut", "NetCutResult", "TrainFnError", "trn_blocks", "default_head", "build_trn"]

_FOLLOWERS = ("BatchNorm", "ReLU", "ReLU6", "Hardswish", "Sigmoid", "Hardsigmoid", "SiLU", "Tanh", "GELU",
              "LeakyReLU", "Dropout", "Identity")


@dataclass(frozen=True)
class NetCutResult:
    """``table``: the TRNs meeting the deadline, ranked (``rank`` 1 is the proposal); empty when
    none does, and ``message`` says why. ``candidates``: every TRN with its estimate."""

    table: Any  # pandas.DataFrame
    candidates: Any  # pandas.DataFrame
    deadline_s: float
    target: str
    estimate_s: float  # wall time of enumerating and costing every TRN
    train_s: float  # wall time of fine-tuning the proposed TRNs
    train_all_s: float | None  # wall time of fine-tuning every TRN (train_all=True), else None
    message: str
    models: dict = field(default_factory=dict, repr=False)  # cut name -> (trained) TRN module

    @property
    def exploration_s(self) -> float:
        """NetCut's exploration time: estimation plus fine-tuning of the proposals only."""
        return self.estimate_s + self.train_s

    @property
    def best(self):
        """The top-ranked TRN's row (a pandas Series), or None when no TRN meets the deadline."""
        return None if len(self.table) == 0 else self.table.iloc[0]

    def __str__(self) -> str:
        return self.message


# ----------------------------------------------------------------------------- blocks and TRNs
def _is_tail(m) -> bool:
    from torch import nn

    if isinstance(m, (nn.Linear, nn.Flatten, nn.Dropout, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity)):
        return True
    return isinstance(m, nn.Sequential) and any(isinstance(c, nn.Linear) for c in m.modules())


def trn_blocks(model) -> list[tuple[str, Any]]:
    """The ordered blocks of ``model`` (name, module): top-level children with ``nn.Sequential``
    stages expanded one level, minus the classifier tail (linear, pooling, flatten, dropout)."""
    from torch import nn

    blocks: list[tuple[str, Any]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and not _is_tail(child):
            blocks.extend((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            blocks.append((name, child))
    while blocks and _is_tail(blocks[-1][1]):
        blocks.pop()
    if not blocks:
        raise HwsimError(f"{type(model).__name__}: no blocks to cut (pass blocks=[...] explicitly)")
    return blocks


def _cut_allowed(blocks: list[tuple[str, Any]], k: int) -> bool:
    """A cut after block k may not separate a layer from its batch norm or activation."""
    if k + 1 >= len(blocks):
        return True
    return not type(blocks[k + 1][1]).__name__.startswith(_FOLLOWERS)


def default_head(channels: int, num_classes: int):
    """The TRN head of the paper: global average pooling and one linear layer."""
    from torch import nn

    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def build_trn(blocks: list[tuple[str, Any]], k: int, head) -> Any:
    """TRN k: a deep copy of blocks 0..k followed by ``head`` (an ``nn.Sequential``)."""
    from torch import nn

    from mapping.trace import copy_module

    body = [(n.replace(".", "_"), copy_module(m)) for n, m in blocks[: k + 1]]
    return nn.Sequential(OrderedDict(body + [("head", head)]))


def _num_classes(model) -> int:
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise HwsimError(f"{type(model).__name__} has no linear classifier: pass num_classes=")
    return linears[-1].out_features


def _measure_host(model, input_shape, repeats: int) -> tuple[float, float]:
    """(median, minimum) wall time in s of the torch forward pass after 3 warm-up runs; on a shared
    machine the minimum is the least disturbed run, the median the typical one."""
    import torch

    x = torch.zeros(*input_shape)
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0]


# ----------------------------------------------------------------------------- the loop
def netcut(model, spec, deadline_s: float, *, cut_points: Sequence[int | str] | None = None,
           head_fn: Callable[[int, int], Any] | None = None, train_fn: Callable[[Any], Any] | None = None,
           input_shape: Sequence[int] | None = None, measure: bool | None = None, measure_repeats: int = 15,
           num_classes: int | None = None, blocks: Sequence[tuple[str, Any]] | None = None,
           train_all: bool = False, seed: int = 0, **target_options) -> NetCutResult:
    """Propose trimmed versions of ``model`` (a torch module or a zoo name) that meet ``deadline_s``
    (seconds) on ``spec``.

    cut_points: block indices or names to cut after (default: every allowed cut; a cut between a
    layer and its batch norm or activation is refused); head_fn: ``(channels, num_classes) ->
    nn.Module`` returning (N, num_classes) logits from an (N, C, H, W) map (default: pool + linear;
    another output shape is refused); num_classes: an integer >= 1 (default: the last linear
    layer's outputs); train_fn: fine-tunes a TRN in place and returns its accuracy (an exception in
    it stops netcut with a :class:`TrainFnError`); input_shape: (1, C, H, W) (default: the zoo shape);
    measure: also time each TRN's torch forward on this machine with the spec's cores as torch
    threads (columns ``measured_latency_s`` = median and ``measured_min_s`` = minimum of
    ``measure_repeats`` runs; None: only for a ``host`` preset, the spec of this machine); blocks: an explicit
    decomposition for models whose children are not a plain chain; train_all: fine-tune every TRN
    as well (to compare exploration cost); seed: initialises each new head (under
    ``torch.manual_seed(seed + k)``, the caller's RNG untouched), so results repeat across calls.
    Returns a :class:`NetCutResult`.
    """
    import pandas as pd

    from hwsim.api import as_spec
    from hwsim.specs import spec_target

    if not (is_real(deadline_s) and deadline_s > 0 and math.isfinite(deadline_s)):
        raise HwsimError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
    deadline_s = float(deadline_s)
    spec = as_spec(spec)
    if measure is None:
        measure = str(getattr(spec, "name", "")).rsplit("/", 1)[-1] == "host"
    model = as_model(model)
    check_num_classes(num_classes)
    for fn_arg, fn in (("train_fn", train_fn), ("head_fn", head_fn)):
        if fn is not None and not callable(fn):
            raise HwsimError(f"netcut: {fn_arg} must be callable, got {type(fn).__name__}")
    input_shape = tuple(input_shape or getattr(model, "hwsim_input_shape", None) or ())
    if len(input_shape) != 4:
        raise ShapeError(f"netcut needs input_shape=(1, C, H, W) for {type(model).__name__}, got {input_shape or None}")
    explicit = blocks is not None
    blocks = list(blocks) if explicit else trn_blocks(model)
    n_cls = int(num_classes) if num_classes is not None else _num_classes(model)
    head_fn = head_fn or default_head

    import torch

    threads = int(getattr(spec, "cores", 0) or torch.get_num_threads())  # a measurement uses the spec's cores
    t0 = time.perf_counter()
    with torch_threads(1):  # tiny forward passes (decomposition check, tracing): one thread is fastest
        shapes = check_decomposition(model, blocks, input_shape, explicit)
        rows, models = _estimate(blocks, shapes, input_shape, cut_points, head_fn, n_cls, spec, measure,
                                 measure_repeats, threads, deadline_s, seed, target_options)
    estimate_s = time.perf_counter() - t0
    cand = pd.DataFrame(rows)

    train_s, train_all_s = 0.0, None
    if train_fn is not None:
        acc, tt = {}, {}
        for r in rows:
            if r["meets_deadline"] or train_all:
                acc[r["cut"]], tt[r["cut"]] = train(train_fn, models[r["cut"]], r["cut"])
        cand["accuracy"] = cand["cut"].map(acc)
        cand["train_s"] = cand["cut"].map(tt)
        train_s = float(sum(tt[c] for c in cand.loc[cand["meets_deadline"], "cut"]))
        train_all_s = float(sum(tt.values())) if train_all else None

    table = cand[cand["meets_deadline"]].copy()
    by = (["accuracy", "depth", "est_latency_s"], [False, False, True]) if train_fn is not None else \
        (["depth", "est_latency_s"], [False, True])
    table = table.sort_values(by[0], ascending=by[1], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    sname = str(getattr(spec, "name", "") or type(spec).__name__)
    target = sname if sname.startswith(spec_target(spec) + "/") else f"{spec_target(spec)}/{sname}"
    message = _message(table, cand, deadline_s, target)
    keep = {c: models[c] for c in table["cut"]} if len(table) else {}
    return NetCutResult(table, cand, float(deadline_s), target, estimate_s, train_s, train_all_s, message, keep)


def _estimate(blocks, shapes, input_shape, cut_points, head_fn, n_cls, spec, measure, measure_repeats, threads,
              deadline_s, seed, target_options):
    """(rows, {cut: TRN}): every selected TRN built, its output checked, costed (and timed with ``measure``)."""
    import torch

    from hwsim.api import simulate

    ks = _select_cuts(blocks, shapes, cut_points)
    rows, models = [], {}
    for k in ks:
        name = blocks[k][0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            head = head_fn(shapes[k][1], n_cls)
        trn = build_trn(blocks, k, head)
        check_trn_output(trn, input_shape, n_cls, head_fn, name)
        rep = simulate(trn, spec, input_shape=input_shape, **target_options).report
        row = {"cut": name, "depth": k + 1, "blocks_total": len(blocks), "channels": shapes[k][1],
               "params": sum(p.numel() for p in trn.parameters()), "macs": rep.macs,
               "est_latency_s": rep.latency_s, "est_energy_j": rep.energy_j}
        if measure:
            with torch_threads(threads):
                row["measured_latency_s"], row["measured_min_s"] = _measure_host(trn, input_shape, measure_repeats)
        row["meets_deadline"] = rep.latency_s <= deadline_s
        rows.append(row)
        models[name] = trn
    return rows, models


def _select_cuts(blocks, shapes, cut_points) -> list[int]:
    names = [n for n, _ in blocks]
    if cut_points is None:
        ks = [k for k in range(len(blocks)) if _cut_allowed(blocks, k)]
    else:
        if isinstance(cut_points, (str, bytes)) or not list(cut_points):
            raise HwsimError(f"cut_points must be a non-empty list of block indices or names, got {cut_points!r}; "
                             f"blocks: {names}")
        ks = []
        for c in cut_points:
            if isinstance(c, str):
                if c not in names:
                    raise HwsimError(f"cut point {c!r} is not a block; blocks: {names}")
                c = names.index(c)
            if not is_integer(c):
                raise HwsimError(f"cut point {c!r} must be a block index (an integer) or a block name; blocks: {names}")
            if not 0 <= c < len(blocks):
                raise HwsimError(f"cut point {c!r} out of range 0..{len(blocks) - 1}; blocks: {names}")
            if not _cut_allowed(blocks, int(c)):
                raise HwsimError(f"cut point {c!r} (after {names[int(c)]!r}) separates that layer from the "
                                 f"{type(blocks[int(c) + 1][1]).__name__} {names[int(c) + 1]!r} that follows it: cut "
                                 f"after the last batch norm / activation of the layer; blocks: {names}")
            ks.append(int(c))
    ks = [k for k in ks if len(shapes[k]) == 4]  # the pool + linear head needs feature maps
    if not ks:
        raise HwsimError(f"no cut point yields a feature map (N, C, H, W); blocks: {names}")
    return sorted(set(ks))


def _message(table, cand, deadline_s: float, target: str) -> str:
    if len(table) == 0:
        fastest = cand.loc[cand["est_latency_s"].idxmin()]
        return (f"no trimmed network meets the deadline of {deadline_s:.3g} s on {target}: the fastest, cut after "
                f"{fastest['cut']!r} ({fastest['depth']} of {fastest['blocks_total']} blocks), takes "
                f"{fastest['est_latency_s']:.3g} s; relax the deadline or choose faster hardware")
    best = table.iloc[0]
    acc = f", accuracy {best['accuracy']:.3f}" if "accuracy" in table and best["accuracy"] == best["accuracy"] else ""
    return (f"{len(table)} of {len(cand)} trimmed networks meet {deadline_s:.3g} s on {target}; best: cut after "
            f"{best['cut']!r} ({best['depth']} of {best['blocks_total']} blocks, {best['est_latency_s']:.3g} s{acc})")
