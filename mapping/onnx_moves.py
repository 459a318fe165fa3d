"""The standard ONNX ops that move data or change shapes (opsets 13-21) as IR nodes: Identity, Dropout, Cast,
Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Concat, Split, Slice, Gather, Pad.

Every IR value's first dim is the batch. With batch 1, a value whose ONNX first dim is not the batch carries a
leading unit dim (``mapping.onnx_importer``): these converters translate ONNX axes by the operand's
:meth:`~mapping.onnx_importer.Importer.offset` and view their results in the IR shape of their outputs, so
transposes, reshapes, splits, slices, gathers and concats of ONNX axis 0 work as ``mapping.trace`` does them.
With a larger batch, one that moves or merges the batch is refused.
"""
from __future__ import annotations

import numpy as np

from mapping.graph import Concat, Op, Pad, Permute, Reshape, Slice
from mapping.onnx_importer import BATCH_ONE, registrar

__all__ = ["CONVERTERS"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)


def _view(imp, n, src: str, name: str) -> None:
    """ONNX value ``name`` is IR value ``src`` viewed as its IR shape: no node when ``src`` has it, else a RESHAPE."""
    out = imp.out_shape(n, name)
    if imp.shapes[src] == out:
        imp.ir[name] = src
    else:
        imp.emit(n, Op.RESHAPE, [src], Reshape(out[1:]), name=name, shape=out)


@converts("Identity", "Dropout")
def identity(imp, n) -> None:
    """Identity, and Dropout at inference -> no node: the output is the input's IR value."""
    if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
        training = imp.const_input(n, 2, "training_mode")  # a bool tensor; refused when computed
        if bool(np.asarray(training).reshape(-1)[0]):
            imp.refuse(n, "in training mode (training_mode=True zeroes random values at every run); export the "
                          "model in eval mode")
    if len(n.output) > 1 and n.output[1] and imp.consumers(n.output[1]):
        imp.refuse(n, "its mask output is used")
    imp.alias(n, n.input[0])


@converts("Cast")
def cast(imp, n) -> None:
    """Cast of a float32 activation to float32, of a bool mask (held as float 0 / 1: :mod:`mapping.onnx_masks`) to
    float32 or bool -> no node; any other cast of an activation is refused."""
    to, src = int(imp.attr(n, "to", 0)), imp.values[n.input[0]].dtype  # TensorProto: 1 FLOAT, 9 BOOL
    if not (to == 1 and src in (np.float32, np.bool_) or to == 9 and src == np.bool_):
        imp.refuse(n, "casts an activation to another type (hwsim's IR computes float32)")
    imp.alias(n, n.input[0])


@converts("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(imp, n) -> None:
    """Reshape/Flatten/Squeeze/Unsqueeze -> RESHAPE to the output's IR shape (no node when the IR shapes agree).
    With batch 1 any reshape keeps the memory layout; with a larger batch one that merges the batch into another
    dim (or moves it) is refused."""
    src, out = imp.shape(n.input[0]), imp.shape(n.output[0])
    if imp.batch != 1 and (not out or out[0] != src[0]):
        imp.refuse(n, f"reshapes {src} to {out}, merging the batch into another dim or moving it (hwsim keeps the "
                      f"batch first); {BATCH_ONE}")
    _view(imp, n, imp.act(n.input[0], n), n.output[0])


def _perm(imp, n, rank: int) -> tuple[int, ...]:
    perm = tuple(int(p) % max(rank, 1) for p in imp.attr(n, "perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        imp.refuse(n, f"perm {perm} is not a permutation of {rank} dims")
    return perm


@converts("Transpose")
def transpose(imp, n) -> None:
    """Transpose keeping dim 0 first -> PERMUTE(perm). With batch 1, one that moves ONNX dim 0 permutes the ONNX
    dims behind a leading unit dim (a RESHAPE adds it to a batch-first operand) and views the result as the
    output's IR shape (a transpose that moves only unit dims is a RESHAPE); with a larger batch it is refused."""
    x = n.input[0]
    rank = len(imp.shape(x))
    perm = _perm(imp, n, rank)
    if perm == tuple(range(rank)):
        imp.alias(n, x)
        return
    src, off = imp.act(x, n), imp.offset(x)
    if off == 0 and perm[0] == 0:
        imp.emit(n, Op.PERMUTE, [src], Permute(perm))
        return
    if imp.batch != 1:
        imp.refuse(n, f"perm {perm} moves the batch dimension; {BATCH_ONE}")
    shape = imp.shape(x)
    if [p for p in perm if shape[p] != 1] == [d for d in range(rank) if shape[d] != 1]:  # moves unit dims only
        imp.emit(n, Op.RESHAPE, [src], Reshape(imp.out_shape(n, n.output[0])[1:]))
        return
    src = imp.reshape_to(n, src, (1,) + shape, "unit")
    imp.emit_as(n, Op.PERMUTE, [src], Permute((0,) + tuple(p + 1 for p in perm)), (1,) + imp.shape(n.output[0]))


@converts("Expand")
def expand(imp, n) -> None:
    """Expand that keeps the shape -> no node; Expand read only by Add/Sub/Mul/Div whose other operand is an
    activation of the expanded shape (``x * y.expand_as(x)``) -> no node: the arithmetic broadcasts it as numpy
    does. Any other broadcast of an activation to a larger shape is refused."""
    x, y = n.input[0], n.output[0]
    out = imp.shape(y)
    if imp.shape(x) == out:
        imp.alias(n, x)
        return
    users = imp.consumers(y)
    ok = bool(users) and y not in imp.graph_outputs and len(imp.shape(x)) <= len(out)
    for u in users:
        other = [i for i in u.input[:2] if i != y]
        ok = ok and u.op_type in ("Add", "Sub", "Mul", "Div") and len(other) == 1 and not imp.is_const(other[0]) \
            and imp.shape(other[0]) == out
    if not ok:
        imp.refuse(n, f"broadcasts an activation of shape {imp.shape(x)} to {out} (only for an Add/Sub/Mul/Div with "
                      "an activation of that shape)")
    if imp.batch != 1 and len(imp.shape(x)) != len(out):
        imp.refuse(n, f"raises the rank of {imp.shape(x)} to {out} (numpy would align the batch with another dim)")
    imp.alias(n, x)


@converts("Concat")
def concat(imp, n) -> None:
    """Concat along a non-batch axis -> CONCAT (constant inputs become CONSTANT nodes; empty ones are dropped). With
    batch 1, operands whose first dim is not the batch (or a concat along ONNX axis 0) are concatenated behind a
    leading unit dim, the result viewed as the output's IR shape."""
    out = imp.shape(n.output[0])
    rank = len(out)
    axis = int(imp.attr(n, "axis"))
    if not -rank <= axis < rank:
        imp.refuse(n, f"axis {axis} out of range for rank {rank}")
    axis %= rank
    names = [i for i in n.input if i and imp.values[i].size]
    acts = [i for i in names if not imp.is_const(i)]
    if axis and all(imp.offset(i) == 0 for i in acts) and imp.out_shape(n, n.output[0]) == out:
        imp.emit(n, Op.CONCAT, [imp.operand(i, n, rank) for i in names], Concat(axis))
        return
    if imp.batch != 1:
        imp.refuse(n, f"axis 0 is the batch dimension; hwsim keeps the batch first and whole ({BATCH_ONE} when the "
                      "model concatenates along it)")
    ins = [imp.reshape_to(n, imp.act(i, n), (1,) + imp.shape(i), "unit") if i in acts
           else imp.constant(n, np.asarray(imp.const(i))[None], rank + 1, i) for i in names]
    imp.emit_as(n, Op.CONCAT, ins, Concat(axis + 1), (1,) + out)


@converts("Split")
def split(imp, n) -> None:
    """Split along a non-batch axis -> one SLICE per output (the sizes are the outputs' own), each viewed as its
    output's IR shape. With batch 1 a split of the unit batch dim itself has one output: the input."""
    x = n.input[0]
    d = imp.dim(n, x, imp.attr(n, "axis", 0), batch_ok=True)
    src, shape = imp.act(x, n), imp.ishape(x)
    if d == 0:  # batch 1, ONNX axis 0 of a batch-first value: one output of size 1, the others empty
        for o in n.output:
            if o and imp.values[o].size:
                _view(imp, n, src, o)
        return
    start = 0
    for o in n.output:
        size = imp.shape(o)[d - imp.offset(x)] if o else 0
        if o:
            natural = shape[:d] + (size,) + shape[d + 1:]
            imp.emit_as(n, Op.SLICE, [src], Slice(d, start, start + size), natural, name=o)
        start += size


@converts("Slice")
def slice_(imp, n) -> None:
    """Slice with constant starts/ends/axes/steps -> one SLICE per non-batch axis it cuts (positive steps); the batch
    axis only in full; a slice that cuts nothing -> no node."""
    x = n.input[0]
    src_shape, off = imp.shape(x), imp.offset(x)
    starts = imp.const_input(n, 1, "starts", required=True).tolist()
    ends = imp.const_input(n, 2, "ends", required=True).tolist()
    axes = imp.const_input(n, 3, "axes", np.arange(len(starts))).tolist()
    steps = imp.const_input(n, 4, "steps", np.ones(len(starts), np.int64)).tolist()
    cuts = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % len(src_shape)
        if st <= 0:
            imp.refuse(n, f"step {st} (only positive steps are mapped)")
        lo, hi, st = slice(int(s), int(e), int(st)).indices(src_shape[a])
        if (lo, hi, st) == (0, src_shape[a], 1):
            continue
        if a + off == 0:
            imp.refuse(n, "slices the batch dimension" + (f"; {BATCH_ONE}" if imp.batch != 1 else ""))
        if len(range(lo, hi, st)) == 0:
            imp.refuse(n, "an empty slice")
        cuts.append((a + off, lo, hi, st))
    y = imp.act(x, n)
    if not cuts:
        _view(imp, n, y, n.output[0])
        return
    shape = list(imp.ishape(x))
    for i, (d, lo, hi, st) in enumerate(cuts):
        shape[d] = len(range(lo, hi, st))
        if i == len(cuts) - 1:
            imp.emit_as(n, Op.SLICE, [y], Slice(d, lo, hi, st), tuple(shape))
        else:
            y = imp.emit(n, Op.SLICE, [y], Slice(d, lo, hi, st), name=imp.fresh(n, "slice"), shape=tuple(shape))


@converts("Gather")
def gather(imp, n) -> None:
    """Gather with constant indices along a non-batch axis whose flattened indices form an increasing evenly spaced
    run -> SLICE(start, stop, step) (none when it takes the whole axis), viewed as the output's IR shape: a scalar
    index drops the axis (``x[:, i]``, or ``qkv[0]`` of a value that moved the batch), indices of any shape
    reshape it. With batch 1, index 0 of the unit batch dim -> a view of the input."""
    x = n.input[0]
    shape, src = imp.shape(x), imp.act(x, n)
    d = imp.dim(n, x, imp.attr(n, "axis", 0), batch_ok=True)
    axis = d - imp.offset(x)
    idx = imp.const_input(n, 1, "indices", required=True).astype(np.int64)
    flat = [int(i) % shape[axis] for i in idx.reshape(-1)]
    step = flat[1] - flat[0] if len(flat) > 1 else 1
    if not flat or step <= 0 or flat != list(range(flat[0], flat[0] + step * len(flat), step)):
        imp.refuse(n, f"indices of shape {idx.shape} that are not one index or an increasing evenly spaced run")
    if d == 0 or flat == list(range(shape[axis])):  # the unit batch dim, or the whole axis in order
        _view(imp, n, src, n.output[0])
        return
    kept = list(imp.ishape(x))
    kept[d] = len(flat)
    imp.emit_as(n, Op.SLICE, [src], Slice(d, flat[0], flat[-1] + 1, step), tuple(kept))


# ONNX Pad's modes as the IR's (torch's names)
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@converts("Pad")
def pad(imp, n) -> None:
    """Pad with constant pads (none on the batch), value and axes -> PAD in mode constant, reflect, edge (the IR's
    replicate) or wrap (circular); negative pads (crops) -> SLICEs placed as torch crops (onnxruntime's values
    agree wherever it runs the model, which it does before this converter; the node check compares them)."""
    from hwsim.kernels._ops_fp32 import pad_plan, pad_problem  # the kernel's rules (imported here: loads Numba)

    mode = imp.attr(n, "mode", "constant")
    if mode not in _PAD_MODES:
        imp.refuse(n, f"mode {mode!r} (one of {', '.join(_PAD_MODES)})")
    x = n.input[0]
    rank, off = len(imp.shape(x)), imp.offset(x)
    p = [int(v) for v in imp.const_input(n, 1, "pads", required=True).reshape(-1)]
    value = imp.const_input(n, 2, "value", np.zeros(1))
    axes = [int(a) % rank for a in imp.const_input(n, 3, "axes", np.arange(rank)).reshape(-1)]
    if value.size != 1 or len(p) != 2 * len(axes):
        imp.refuse(n, f"pads {p} / value of shape {value.shape} do not match its {len(axes)} axes")
    pads = [(0, 0)] * (rank + off)
    for i, a in enumerate(axes):
        pads[a + off] = (p[i], p[i + len(axes)])
    if pads[0] != (0, 0):
        imp.refuse(n, "pads the batch dimension")
    mode, fill = _PAD_MODES[mode], float(value.reshape(()))
    problem = pad_problem(imp.ishape(x), pads, mode)
    if problem is not None:
        imp.refuse(n, problem)
    steps, cur = pad_plan(imp.ishape(x), pads, mode) or [("pad", tuple(pads), None)], imp.act(x, n)
    for i, (kind, what, out) in enumerate(steps):
        last = i == len(steps) - 1
        cur = imp.emit(n, Op.PAD if kind == "pad" else Op.SLICE, [cur], Pad(what, fill, mode) if kind == "pad"
                       else Slice(*what), name=None if last else imp.fresh(n, kind), shape=None if last else out)
