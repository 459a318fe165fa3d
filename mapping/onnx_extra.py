"""More standard ONNX ops as IR nodes, each with the rule of its torch counterpart
(:mod:`mapping._torch_activations`, :mod:`mapping._torch_composite`): the activations Selu, Celu, Shrink, Softsign,
ThresholdedRelu and Sign; Slice with negative steps (torch's flip), DepthToSpace and SpaceToDepth (torch's
pixel_shuffle rule), Tile (torch's ``repeat`` rule), Einsum (torch's einsum rule; the only converter here that loads
torch). A threshold is compared exactly: ``relu(x - t)`` is nonzero exactly where ``x > t`` (``t`` rounded to
float32, as onnxruntime compares it) and the IR's WHERE selects ``x`` itself or the constant. Every value is
verified against onnxruntime at import.
"""
from __future__ import annotations

import math

import numpy as np

from mapping.graph import Clamp, Concat, Elu, Linear, Op, Permute, Reduce, Reshape, Scalar, Slice
from mapping.onnx_importer import registrar
from mapping.onnx_moves import slice_ as _positive_slice

__all__ = ["CONVERTERS"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)

# ONNX Selu's default attributes (the float32 values of the operator's definition)
_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def f32(v: float) -> float:
    """``v`` rounded to float32, the precision onnxruntime compares a float32 tensor with it in (this module does not
    import torch: :func:`mapping._torch_activations.f32` is the same rule)."""
    return float(np.float32(v))


def _step(imp, n, tag: str, op: Op, ins: list[str], attrs=None) -> str:
    """An intermediate node of ``n`` of the IR shape of its first input."""
    return imp.emit(n, op, ins, attrs, name=imp.fresh(n, tag), shape=imp.shapes[ins[0]])


def _above(imp, n, src: str, t: float) -> str:
    """A value nonzero exactly where ``src > f32(t)``: RELU(SUB(src, t)) (RELU alone when t is 0)."""
    d = src if f32(t) == 0.0 else _step(imp, n, "diff", Op.SUB, [src], Scalar(f32(t)))
    return _step(imp, n, "mask", Op.RELU, [d])


@converts("Selu")
def selu(imp, n) -> None:
    """Selu(alpha, gamma) = gamma · elu(x, alpha): ELU, MUL Scalar(gamma)."""
    x = imp.act(n.input[0], n)
    alpha, gamma = float(imp.attr(n, "alpha", _SELU_ALPHA)), float(imp.attr(n, "gamma", _SELU_GAMMA))
    imp.emit(n, Op.MUL, [_step(imp, n, "elu", Op.ELU, [x], Elu(alpha))], Scalar(gamma))


@converts("Celu")
def celu(imp, n) -> None:
    """Celu(alpha) = max(0, x) + min(0, alpha·(exp(x/alpha) - 1)): ELU when alpha is 1, else
    WHERE(RELU(x), x, ELU(MUL(x, 1/alpha), alpha)) (x exact where x > 0; alpha > 0)."""
    x = imp.act(n.input[0], n)
    alpha = float(imp.attr(n, "alpha", 1.0))
    if alpha == 1.0:
        imp.emit(n, Op.ELU, [x], Elu(1.0))
        return
    if not alpha > 0.0:
        imp.refuse(n, f"alpha {alpha:g} (a positive alpha is supported)")
    neg = _step(imp, n, "elu", Op.ELU, [_step(imp, n, "in", Op.MUL, [x], Scalar(1.0 / alpha))], Elu(alpha))
    imp.emit(n, Op.WHERE, [_step(imp, n, "pos", Op.RELU, [x]), x, neg])


@converts("Shrink")
def shrink(imp, n) -> None:
    """Shrink(lambd, bias) = x - bias where x > lambd, x + bias where x < -lambd, else 0 (lambd >= 0): bias 0 ->
    WHERE(RELU(|x| - lambd), x) with Scalar 0 (hardshrink); bias = lambd -> SUB(x, CLAMP(x, -lambd, lambd))
    (softshrink); any other bias -> WHERE(RELU(|x| - lambd), x - bias·SIGN(x)) with Scalar 0."""
    x = imp.act(n.input[0], n)
    lam, bias = f32(imp.attr(n, "lambd", 0.5)), f32(imp.attr(n, "bias", 0.0))
    if lam < 0:
        imp.refuse(n, f"lambd {lam:g} (a non-negative lambd is supported)")
    if bias == lam:
        imp.emit(n, Op.SUB, [x, _step(imp, n, "band", Op.CLAMP, [x], Clamp(-lam, lam))])
        return
    mask = _above(imp, n, _step(imp, n, "abs", Op.ABS, [x]), lam)
    kept = x
    if bias != 0.0:  # sign(x) is ±1 wherever the mask is nonzero (|x| > lambd >= 0)
        sb = _step(imp, n, "sb", Op.MUL, [_step(imp, n, "sign", Op.SIGN, [x])], Scalar(bias))
        kept = _step(imp, n, "kept", Op.SUB, [x, sb])
    imp.emit(n, Op.WHERE, [mask, kept], Scalar(0.0))


@converts("Softsign")
def softsign(imp, n) -> None:
    """Softsign = x / (1 + |x|): ABS, ADD Scalar 1, DIV."""
    x = imp.act(n.input[0], n)
    imp.emit(n, Op.DIV, [x, _step(imp, n, "den", Op.ADD, [_step(imp, n, "abs", Op.ABS, [x])], Scalar(1.0))])


@converts("ThresholdedRelu")
def thresholded_relu(imp, n) -> None:
    """ThresholdedRelu(alpha) = x where x > alpha else 0: WHERE(RELU(x - alpha), x) with Scalar 0."""
    x = imp.act(n.input[0], n)
    imp.emit(n, Op.WHERE, [_above(imp, n, x, float(imp.attr(n, "alpha", 1.0))), x], Scalar(0.0))


@converts("Sign")
def sign(imp, n) -> None:
    """Sign (0 at 0, unlike the IR's SIGN, +1 at 0): WHERE(x, SIGN(x)) with Scalar 0."""
    x = imp.act(n.input[0], n)
    imp.emit(n, Op.WHERE, [x, _step(imp, n, "pm1", Op.SIGN, [x])], Scalar(0.0))


# the most elements a negative-step Slice picks along one axis (one unit SLICE each), as mapping._torch_composite's
# FLIP_MAX: each SLICE is a layer's fixed cost on a CPU
_PICK_MAX = 64


@converts("Slice")
def slice_negative(imp, n) -> None:
    """Slice with a negative step on an axis (torch's flip exports ``Slice(starts=-1, ends=INT64_MIN, steps=-1)``):
    per axis, the picked indices (numpy's slice rule, which ONNX's clamping follows) -> a SLICE when they increase
    evenly, else one unit SLICE per index in order and a CONCAT (at most ``_PICK_MAX``). A Slice with positive steps
    only -> :func:`mapping.onnx_moves.slice_`."""
    steps = imp.const_input(n, 4, "steps")
    if steps is None or all(int(s) > 0 for s in np.asarray(steps).reshape(-1)):
        _positive_slice(imp, n)
        return
    x = n.input[0]
    shape, off = imp.shape(x), imp.offset(x)
    starts = imp.const_input(n, 1, "starts", required=True).reshape(-1).tolist()
    ends = imp.const_input(n, 2, "ends", required=True).reshape(-1).tolist()
    axes = imp.const_input(n, 3, "axes", np.arange(len(starts))).reshape(-1).tolist()
    picks = []
    for s, e, a, st in zip(starts, ends, axes, np.asarray(steps).reshape(-1).tolist()):
        a = int(a) % len(shape)
        if int(st) == 0:
            imp.refuse(n, "step 0")
        idx = list(range(shape[a])[slice(int(s), int(e), int(st))])
        if idx == list(range(shape[a])):
            continue
        if a + off == 0:
            imp.refuse(n, "slices the batch dimension")
        if not idx:
            imp.refuse(n, "an empty slice")
        if int(st) < 0 and len(idx) > _PICK_MAX:
            imp.refuse(n, f"picks {len(idx)} elements of axis {a} in reverse: hwsim's IR has no reversing op and builds "
                          f"one from one slice per element, up to {_PICK_MAX}")
        picks.append((a + off, idx, int(st)))
    y = imp.act(x, n)
    for j, (d, idx, st) in enumerate(picks):
        shape = imp.shapes[y][:d] + (len(idx),) + imp.shapes[y][d + 1:]
        if st > 0:
            op, ins, attrs = Op.SLICE, [y], Slice(d, idx[0], idx[-1] + 1, st)
        else:
            one = shape[:d] + (1,) + shape[d + 1:]
            op, ins, attrs = Op.CONCAT, [imp.emit(n, Op.SLICE, [y], Slice(d, i, i + 1), name=imp.fresh(n, f"s{j}_{i}"),
                                                  shape=one) for i in idx], Concat(d)
        if j == len(picks) - 1:
            imp.emit_as(n, op, ins, attrs, shape)
        else:
            y = imp.emit(n, op, ins, attrs, name=imp.fresh(n, f"pick{j}"), shape=shape)
    if not picks:
        imp.alias(n, x)


@converts("DepthToSpace", "SpaceToDepth")
def depth_to_space(imp, n) -> None:
    """DepthToSpace(blocksize b) / SpaceToDepth of a batch-first (N, C, H, W) value: RESHAPE, PERMUTE, RESHAPE (as
    torch's pixel_shuffle / pixel_unshuffle). DCR mode views C as (b, b, C/b²) and CRD mode (= pixel_shuffle) as
    (C/b², b, b); SpaceToDepth gathers each b x b block into (b, b, C)."""
    x = n.input[0]
    imp.batched(n, x)
    shape = imp.ishape(x)
    bs = int(imp.attr(n, "blocksize", 0))
    if len(shape) != 4 or bs < 1:
        imp.refuse(n, f"an input of shape {imp.shape(x)} with blocksize {bs} (a 4-d input, blocksize >= 1)")
    nb, c, h, w = shape
    if n.op_type == "SpaceToDepth":
        mid, perm = (nb, c, h // bs, bs, w // bs, bs), (0, 3, 5, 1, 2, 4)
    elif str(imp.attr(n, "mode", "DCR")) == "CRD":
        mid, perm = (nb, c // (bs * bs), bs, bs, h, w), (0, 1, 4, 2, 5, 3)
    else:
        mid, perm = (nb, bs, bs, c // (bs * bs), h, w), (0, 3, 4, 1, 5, 2)
    v = imp.emit(n, Op.RESHAPE, [imp.act(x, n)], Reshape(mid[1:]), name=imp.fresh(n, "view"), shape=mid)
    p = imp.emit(n, Op.PERMUTE, [v], Permute(perm), name=imp.fresh(n, "perm"), shape=tuple(mid[i] for i in perm))
    imp.emit(n, Op.RESHAPE, [p], Reshape(imp.out_shape(n, n.output[0])[1:]))


@converts("Tile")
def tile(imp, n) -> None:
    """Tile with constant repeats (1 on the batch) -> per repeated axis, a CONCAT of that many copies (as torch's
    ``x.repeat``)."""
    x = n.input[0]
    reps = [int(r) for r in imp.const_input(n, 1, "repeats", required=True).reshape(-1)]
    if len(reps) != len(imp.shape(x)) or min(reps, default=1) < 1:
        imp.refuse(n, f"repeats {reps} for an input of shape {imp.shape(x)}")
    reps = [1] * imp.offset(x) + reps
    if reps[0] != 1:
        imp.refuse(n, "repeats along the batch dimension")
    y = imp.act(x, n)
    todo = [d for d, r in enumerate(reps) if r > 1]
    if not todo:
        imp.alias(n, x)
    for j, d in enumerate(todo):
        shape = imp.shapes[y][:d] + (imp.shapes[y][d] * reps[d],) + imp.shapes[y][d + 1:]
        if j == len(todo) - 1:
            imp.emit_as(n, Op.CONCAT, [y] * reps[d], Concat(d), shape)
        else:
            y = imp.emit(n, Op.CONCAT, [y] * reps[d], Concat(d), name=imp.fresh(n, f"tile{d}"), shape=shape)


def _letters(imp, n, eq: str, ranks: tuple[int, ...]) -> tuple[list[str], str]:
    """The operands' letters and the output's, by :func:`mapping._torch_einsum.letters`'s rules (imported here: it
    loads torch, which only a model with an Einsum needs)."""
    from hwsim.errors import UnsupportedOpError
    from mapping._torch_einsum import letters

    try:
        return letters(eq, ranks)
    except UnsupportedOpError as e:
        imp.refuse(n, f"equation '{eq.replace(' ', '')}': {e}")


def _chain(imp, n, ins: list[str], steps: list) -> None:
    """Emit ``steps`` ((op, attrs, IR shape, tag), each reading the one before, the first reading ``ins``), the last
    as ``n``'s output; no steps: ``n``'s output is ``ins[0]``."""
    if not steps:
        imp.ir[n.output[0]] = ins[0]
        return
    for i, (op, attrs, shape, tag) in enumerate(steps):
        if i == len(steps) - 1:
            imp.emit_as(n, op, ins, attrs, shape)
        else:
            ins = [imp.emit(n, op, ins, attrs, name=imp.fresh(n, tag), shape=shape)]


def _einsum_one(imp, n, x: str, la: str, lo: str) -> None:
    """One operand: REDUCE_SUM over the letters the output drops, then PERMUTE into the output's order
    (:func:`mapping._torch_einsum.sum_then_permute`)."""
    from mapping._torch_einsum import sum_then_permute

    summed, perm = sum_then_permute(la, lo)
    y, steps = imp.act(x, n), []
    if 0 in summed:
        imp.refuse(n, "sums over the batch dimension")
    shape = imp.shapes[y]
    if summed:
        shape = tuple(s for i, s in enumerate(shape) if i not in summed)
        steps.append((Op.REDUCE_SUM, Reduce(summed, False), shape, "sum"))
    if perm[0] != 0:
        imp.refuse(n, "moves the batch dimension")
    if perm != tuple(range(len(perm))):
        steps.append((Op.PERMUTE, Permute(perm), tuple(shape[i] for i in perm), "perm"))
    _chain(imp, n, [y], steps)


def _einsum_operand(imp, n, src: str, letters: str, order: list[str], groups, sizes, tag: str) -> str:
    """Permute ``src`` into ``order`` and merge the letters of each of the two trailing ``groups``."""
    perm = tuple(letters.index(ch) for ch in order)
    if perm != tuple(range(len(perm))):
        src = imp.emit(n, Op.PERMUTE, [src], Permute(perm), name=imp.fresh(n, f"{tag}p"),
                       shape=tuple(imp.shapes[src][i] for i in perm))
    lead = len(order) - len(groups[0]) - len(groups[1])
    merged = imp.shapes[src][:lead] + tuple(math.prod(sizes[ch] for ch in g) for g in groups)
    return src if merged == imp.shapes[src] else \
        imp.emit(n, Op.RESHAPE, [src], Reshape(merged[1:]), name=imp.fresh(n, f"{tag}r"), shape=merged)


@converts("Einsum")
def einsum(imp, n) -> None:
    """Einsum of one activation (sums and a permutation: REDUCE_SUM, PERMUTE), of an activation and a constant 2-d
    weight contracting its last index (a LINEAR), or of two batch-first activations (the letters shared by both
    and the output, the batch first, lead a MATMUL of each operand permuted to (shared, free, contracted) and
    reshaped: :mod:`mapping._torch_einsum`'s rule)."""
    eq = str(imp.attr(n, "equation", ""))
    names = list(n.input)
    ops, lo = _letters(imp, n, eq, tuple(len(imp.shape(x)) for x in names))
    if len(names) == 1:
        imp.batched(n, names[0])
        _einsum_one(imp, n, names[0], ops[0], lo)
        return
    (la, lb), (xa, xb) = ops, names
    if imp.is_const(xb) and not imp.is_const(xa) and len(lb) == 2 and la[-1] in lb and \
            lo == la[:-1] + lb.replace(la[-1], ""):
        w = np.asarray(imp.const(xb), np.float32)
        w = w.T if lb[0] == la[-1] else w  # LINEAR's weight is (out, in)
        key = imp.add_param(xb, np.ascontiguousarray(w), n, "weight")
        imp.emit(n, Op.LINEAR, [imp.act(xa, n)], Linear(int(w.shape[1]), int(w.shape[0]), False), {"weight": key})
        return
    if any(imp.is_const(x) for x in names):
        imp.refuse(n, "a constant operand other than a 2-d weight contracted with the last index")
    for x in names:
        imp.batched(n, x)
    if not la[0] == lb[0] == lo[0]:
        imp.refuse(n, f"equation '{eq}' does not keep the batch (the operands' first index) first")
    sizes = {ch: s for x, ls in zip(names, ops) for ch, s in zip(ls, imp.ishape(x))}
    shared = [ch for ch in lo if ch in la and ch in lb]
    free_a = [ch for ch in la if ch in lo and ch not in lb]
    free_b = [ch for ch in lb if ch in lo and ch not in la]
    contr = [ch for ch in la if ch in lb and ch not in lo]
    ya = _einsum_operand(imp, n, imp.act(xa, n), la, shared + free_a + contr, (free_a, contr), sizes, "a")
    yb = _einsum_operand(imp, n, imp.act(xb, n), lb, shared + contr + free_b, (contr, free_b), sizes, "b")
    shape = imp.shapes[ya][:-1] + imp.shapes[yb][-1:]
    cur = shared + free_a + free_b
    full = tuple(sizes[ch] for ch in cur)
    perm = tuple(cur.index(ch) for ch in lo)
    steps = [(Op.MATMUL, None, shape, "mm")]
    if full != shape:
        steps.append((Op.RESHAPE, Reshape(full[1:]), full, "split"))
    if perm != tuple(range(len(perm))):
        steps.append((Op.PERMUTE, Permute(perm), tuple(full[i] for i in perm), "perm"))
    _chain(imp, n, [ya, yb], steps)
