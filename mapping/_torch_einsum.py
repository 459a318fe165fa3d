"""``torch.einsum`` of two activations as one MATMUL between permutes and reshapes (torchvision's MaxViT writes
its attention this way: ``"B G H I D, B G H J D -> B G H I J"``), of one activation as sums and a permutation.
The equation rules (:func:`letters`, :func:`sum_then_permute`) are ONNX Einsum's too (``mapping.onnx_extra``).

One operand (``"nchw->nhwc"``, ``"bij->b"``): REDUCE_SUM over the letters the output drops, then PERMUTE of the
rest into the output's order. A repeated letter (a diagonal, ``"bii->bi"``) is refused: the IR has no gather of a
diagonal, and a mask-and-sum would turn an inf off the diagonal into NaN.

The letters of the equation fall into four groups: batch (in both operands and the output), the free letters of
each operand (in it and the output only) and the contracted ones (in both operands, not the output). Each operand
is permuted to (batch, free, contracted) or (batch, contracted, free) and reshaped to (batch, M, K) / (batch, K, N);
the product is reshaped to (batch, free A, free B) and permuted into the output's order. The IR's batch dimension
stays first: the operands' first letter must be the output's first (the batch), or the batch must be 1.
"""
from __future__ import annotations

import math

import torch.fx as fx

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping.graph import Linear, Op, Permute, Reduce, Reshape

__all__ = ["einsum", "letters", "sum_then_permute"]


def _parse(eq: str, ranks: tuple[int, int]) -> tuple[str, str, str]:
    eq = eq.replace(" ", "")
    if "..." in eq:
        raise UnsupportedOpError("an ellipsis ('...')")
    lhs, out = eq.split("->") if "->" in eq else (eq, None)
    ops = lhs.split(",")
    if len(ops) != 2:
        raise UnsupportedOpError(f"{len(ops)} operands (two are supported)")
    a, b = ops
    if out is None:  # implicit output: the letters seen once, in alphabetical order
        out = "".join(sorted(ch for ch in set(a + b) if (a + b).count(ch) == 1))
    if (len(a), len(b)) != ranks or any(len(set(s)) != len(s) for s in (a, b, out)):
        raise UnsupportedOpError("a repeated index (a diagonal) or operands of other ranks than the equation's")
    if any(ch not in a + b for ch in out) or any(ch not in b + out for ch in a) or any(ch not in a + out for ch in b):
        raise UnsupportedOpError("an index summed within one operand")
    return a, b, out


def letters(eq: str, ranks: tuple[int, ...]) -> tuple[list[str], str]:
    """The operands' letters and the output's for operands of ``ranks`` (one or two operands); an implicit output
    is the letters seen once, in alphabetical order (torch's and numpy's rule). Raises UnsupportedOpError."""
    eq = eq.replace(" ", "")
    lhs = eq.split("->")[0]
    if lhs.count(",") + 1 != len(ranks):
        raise UnsupportedOpError(f"{lhs.count(',') + 1} operands in the equation for {len(ranks)} tensors")
    if len(ranks) != 1:
        *ops, out = _parse(eq, ranks)
        return list(ops), out
    if "..." in eq:
        raise UnsupportedOpError("an ellipsis ('...')")
    out = eq.split("->")[1] if "->" in eq else "".join(sorted(ch for ch in set(lhs) if lhs.count(ch) == 1))
    if len(set(lhs)) != len(lhs) or len(set(out)) != len(out):
        raise UnsupportedOpError("a repeated index (a diagonal)")
    if len(lhs) != ranks[0] or any(ch not in lhs for ch in out):
        raise UnsupportedOpError(f"an operand of rank {ranks[0]} for '{lhs}', or an output index not in it")
    return [lhs], out


def sum_then_permute(la: str, lo: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """One operand of letters ``la`` to output ``lo``: the dims of ``la`` summed (the letters ``lo`` drops), then the
    permutation taking the remaining dims into ``lo``'s order."""
    summed = tuple(i for i, ch in enumerate(la) if ch not in lo)
    kept = [ch for ch in la if ch in lo]
    return summed, tuple(kept.index(ch) for ch in lo)


def _einsum_one(b: Builder, n: fx.Node, x: fx.Node, la: str, lo: str) -> None:
    """One operand (module docstring); a value behind a leading unit batch dim (batch 1) has its dims shifted."""
    summed, perm = sum_then_permute(la, lo)
    src, o = b.ref(x, n), b.offset(x)
    if o == 0 and (0 in summed or perm[:1] not in ((), (0,))):
        if b.batch != 1:
            raise UnsupportedOpError(f"{b.what(n)} sums or moves the batch dimension; trace such a model with batch 1")
        shape = (1,) + b.tshape(x)
        src, o, b.batch_fixed = b.emit(n, Op.RESHAPE, [src], Reshape(shape[1:]), name=f"{n.name}_in", shape=shape), 1, True
    shape = b.shapes[src]
    if summed:
        shape = tuple(s for i, s in enumerate(shape) if i - o not in summed)
        src = b.emit(n, Op.REDUCE_SUM, [src], Reduce(tuple(d + o for d in summed), False), name=f"{n.name}_sum",
                     shape=shape)
    ir_perm = tuple(perm) if o == 0 else (0,) + tuple(p + 1 for p in perm)
    if ir_perm != tuple(range(len(ir_perm))):
        shape = tuple(shape[i] for i in ir_perm)
        src = b.emit(n, Op.PERMUTE, [src], Permute(ir_perm), name=f"{n.name}_perm", shape=shape)
    out = b.out_shape(n)
    if out != shape or src == b.ref(x, n):  # the IR shape torch's value has, or a node of its own
        src = b.emit(n, Op.RESHAPE, [src], Reshape(out[1:]), shape=out)
    b.ir[n.name] = src


def _operand(b: Builder, n: fx.Node, src: str, letters: str, order: list[str], o: int, sizes: dict, tag: str,
             groups: tuple[list[str], list[str]]) -> str:
    """Permute operand ``src`` (letters ``letters``, IR offset ``o``) into ``order`` and merge each of ``groups``."""
    perm = [letters.index(ch) for ch in order]
    ir_perm = tuple(p + o for p in perm) if o == 0 else (0,) + tuple(p + 1 for p in perm)
    shape = b.shapes[src]
    if ir_perm != tuple(range(len(ir_perm))):
        shape = tuple(shape[i] for i in ir_perm)
        src = b.emit(n, Op.PERMUTE, [src], Permute(ir_perm), name=f"{n.name}_{tag}p", shape=shape)
    lead = len(shape) - len(groups[0]) - len(groups[1])
    merged = shape[:lead] + tuple(math.prod(sizes[ch] for ch in g) for g in groups)
    if merged != shape:
        src = b.emit(n, Op.RESHAPE, [src], Reshape(merged[1:]), name=f"{n.name}_{tag}r", shape=merged)
    return src


def _as_linear(b: Builder, n: fx.Node, xs: list, la: str, lb: str, lo: str) -> bool:
    """``x W`` contracting x's last index with a 2-d weight, the output in x's order: a LINEAR node."""
    if len(lb) != 2 or la[-1] not in lb or lo != la[:-1] + lb.replace(la[-1], ""):
        return False
    w = b.val(xs[1]).detach()
    w = w.t() if lb[0] == la[-1] else w  # LINEAR's weight is (out, in)
    key = b.add_param(f"{n.name}.weight", w.contiguous())
    b.emit(n, Op.LINEAR, [b.ref(xs[0], n)], Linear(int(w.shape[1]), int(w.shape[0]), False), {"weight": key})
    return True


def einsum(b: Builder, n: fx.Node) -> None:
    eq, xs = n.args[0], n.args[1:]
    xs = list(xs[0]) if len(xs) == 1 and isinstance(xs[0], (list, tuple)) else list(xs)
    if len(xs) not in (1, 2) or b.kind(xs[0]) != "data" and len(xs) == 1:
        raise UnsupportedOpError(f"{b.what(n)}: only one activation or the product of two tensors is supported")
    try:
        ops, lo = letters(str(eq), tuple(len(b.tshape(x)) for x in xs))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)} '{eq}': {e}") from None
    if len(xs) == 1:
        _einsum_one(b, n, xs[0], ops[0], lo)
        return
    lets = list(ops)
    data = [b.kind(x) == "data" for x in xs]
    if data == [True, False] and _as_linear(b, n, xs, *lets, lo):
        return
    sizes = {ch: s for x, ls in zip(xs, lets) for ch, s in zip(ls, b.tshape(x))}
    # a weight operand: a CONSTANT of shape (N, *its shape), read as having the output's batch letter first
    srcs = [b.ref(x, n) if d else b.constant(x, None, b.val(x).numpy()[None], "einsum") for x, d in zip(xs, data)]
    offs = [b.offset(x) if d else 1 for x, d in zip(xs, data)]
    keeps_batch = all(o == 0 and ls[0] == lo[0] or not d and lo[0] not in ls
                      for o, ls, d in zip(offs, lets, data))
    if keeps_batch:
        lets, offs = [ls if d else lo[0] + ls for ls, d in zip(lets, data)], [0, 0]
    elif offs != [1, 1]:
        if b.batch != 1:
            raise UnsupportedOpError(f"{b.what(n)} '{eq}' moves or merges the batch dimension; trace such a model "
                                     "with batch 1")
        for i, x in enumerate(xs):  # batch 1: every operand behind a leading unit dim
            if offs[i] == 0:
                shape = (1,) + b.tshape(x)
                srcs[i] = b.emit(n, Op.RESHAPE, [srcs[i]], Reshape(shape[1:]), name=f"{n.name}_in{i}", shape=shape)
        offs, b.batch_fixed = [1, 1], True
    la, lb = lets
    o = offs[0]
    batch = [ch for ch in lo if ch in la and ch in lb]
    free_a = [ch for ch in la if ch in lo and ch not in lb]
    free_b = [ch for ch in lb if ch in lo and ch not in la]
    contr = [ch for ch in la if ch in lb and ch not in lo]
    if o == 0:
        batch.remove(la[0])
        batch.insert(0, la[0])
    lead = batch[1:] if o == 0 else batch
    xa = _operand(b, n, srcs[0], la, batch + free_a + contr, o, sizes, "a", (free_a, contr))
    xb = _operand(b, n, srcs[1], lb, batch + contr + free_b, o, sizes, "b", (contr, free_b))
    shape = b.shapes[xa][:-1] + b.shapes[xb][-1:]
    y = b.emit(n, Op.MATMUL, [xa, xb], name=f"{n.name}_mm", shape=shape)
    full = shape[:len(shape) - 2] + tuple(sizes[ch] for ch in free_a + free_b)
    if full != shape:
        y = b.emit(n, Op.RESHAPE, [y], Reshape(full[1:]), name=f"{n.name}_split", shape=full)
    cur = ([la[0]] if o == 0 else []) + lead + free_a + free_b
    perm = [cur.index(ch) for ch in lo]
    ir_perm = tuple(perm) if o == 0 else (0,) + tuple(p + 1 for p in perm)
    if ir_perm != tuple(range(len(ir_perm))):
        full = tuple(full[i] for i in ir_perm)
        y = b.emit(n, Op.PERMUTE, [y], Permute(ir_perm), name=f"{n.name}_out", shape=full)
    out = b.out_shape(n)
    if out != full:
        y = b.emit(n, Op.RESHAPE, [y], Reshape(out[1:]), shape=out)
    b.ir[n.name] = y
