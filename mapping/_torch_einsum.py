"""``torch.einsum`` of two activations as one MATMUL between permutes and reshapes (torchvision's MaxViT writes
its attention this way: ``"B G H I D, B G H J D -> B G H I J"``).

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
from mapping.graph import Linear, Op, Permute, Reshape

__all__ = ["einsum"]


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
    if len(xs) != 2:
        raise UnsupportedOpError(f"{b.what(n)}: only the product of two tensors is supported")
    try:
        letters = list(_parse(str(eq), (len(b.tshape(xs[0])), len(b.tshape(xs[1])))))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)} '{eq}': {e}") from None
    lo = letters.pop()
    data = [b.kind(x) == "data" for x in xs]
    if data == [True, False] and _as_linear(b, n, xs, *letters, lo):
        return
    sizes = {ch: s for x, ls in zip(xs, letters) for ch, s in zip(ls, b.tshape(x))}
    # a weight operand: a CONSTANT of shape (N, *its shape), read as having the output's batch letter first
    srcs = [b.ref(x, n) if d else b.constant(x, None, b.val(x).numpy()[None], "einsum") for x, d in zip(xs, data)]
    offs = [b.offset(x) if d else 1 for x, d in zip(xs, data)]
    keeps_batch = all(o == 0 and ls[0] == lo[0] or not d and lo[0] not in ls
                      for o, ls, d in zip(offs, letters, data))
    if keeps_batch:
        letters, offs = [ls if d else lo[0] + ls for ls, d in zip(letters, data)], [0, 0]
    elif offs != [1, 1]:
        if b.batch != 1:
            raise UnsupportedOpError(f"{b.what(n)} '{eq}' moves or merges the batch dimension; trace such a model "
                                     "with batch 1")
        for i, x in enumerate(xs):  # batch 1: every operand behind a leading unit dim
            if offs[i] == 0:
                shape = (1,) + b.tshape(x)
                srcs[i] = b.emit(n, Op.RESHAPE, [srcs[i]], Reshape(shape[1:]), name=f"{n.name}_in{i}", shape=shape)
        offs, b.batch_fixed = [1, 1], True
    la, lb = letters
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
