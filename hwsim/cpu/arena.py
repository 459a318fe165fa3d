"""Memory of an int8 network deployed with TFLite Micro: one activation arena in RAM, the weights in flash.

**Arena** — planned as TFLite Micro's ``GreedyMemoryPlanner`` does
(tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc, with the lifetimes of
tensorflow/lite/micro/micro_allocation_info.cc ``MarkAllocationLifetimes``):

- lifetimes count allocation scopes: the graph input is created at scope 0; op ``i`` (0-based, in execution order)
  is scope ``i + 1``, creates its output there and marks its inputs used there; graph outputs stay live to the last
  scope. Two buffers conflict when their [first, last] scopes intersect (both ends inclusive), so an op's input and
  output never share memory;
- every size is rounded up to 16 bytes (``MicroArenaBufferAlignment()``, micro/micro_arena_constants.h);
- buffers are taken largest first; among equal sizes the later-created first (the planner fills its sort array
  from the tail, then sorts it with a stable descending bubble sort); each goes at the lowest offset where it
  fits between the already-placed buffers that conflict with it, scanning them in offset order (first fit);
- arena = the highest end offset;
- in place (``inplace_reshape=True``, the default): a RESHAPE's output is its input's buffer, so the pair is one
  buffer live from the input's creation to the last read of either. TFLite Micro's reshape kernel skips its copy
  when the two tensors share memory (micro/kernels/reshape.cc), and the usual reshape of these graphs, the flatten
  before a fully connected layer, is not an op at all in a converted model (FULLY_CONNECTED flattens its input
  itself). ``inplace_reshape=False`` plans a reshape as a copy into a buffer of its own.

Not counted: kernel scratch buffers (CMSIS-NN's im2col buffer of a conv), the persistent part of the arena (tensor
structs, per-channel multipliers and shifts) and the interpreter itself.

**Flash** — int8 weights (1 byte each) and int32 biases (4 bytes each) of every conv / fully connected, any other
parameter at 1 byte per element, each parameter counted once however many nodes share it; the model file's
quantization parameters and structure are not counted.

The int8 tensors are those of :mod:`hwsim.cpu.int8`: a ReLU/ReLU6 fused into its producer has no buffer of its own;
the graph's input and outputs are int8 (a deployed model quantizes its input outside the arena).
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mapping.graph import Graph, Op

__all__ = ["ALIGNMENT", "Buffer", "ArenaPlan", "plan_arena", "tensor_buffers", "plan_int8_arena",
           "plan_program_arena", "flash_bytes"]

ALIGNMENT = 16  # bytes; tensorflow/lite/micro/micro_arena_constants.h: MicroArenaBufferAlignment() = 16


@dataclass(frozen=True, slots=True)
class Buffer:
    """One planned buffer: ``size_bytes`` (before alignment), live from scope ``first`` to ``last`` inclusive."""

    name: str
    size_bytes: int
    first: int
    last: int


@dataclass(frozen=True)
class ArenaPlan:
    """``offsets`` (bytes from the arena start) of every buffer; ``aliases`` maps a tensor that shares another's
    buffer (an in-place reshape) to that buffer's name; ``arena_bytes`` the arena size."""

    buffers: tuple[Buffer, ...]
    offsets: Mapping[str, int]
    aliases: Mapping[str, str]
    arena_bytes: int
    alignment: int = ALIGNMENT

    def size(self, name: str) -> int:
        """Aligned size of a buffer."""
        b = next(b for b in self.buffers if b.name == name)
        return _align(b.size_bytes, self.alignment)


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def _conflict(a: Buffer, b: Buffer) -> bool:
    return not (a.first > b.last or b.first > a.last)


def plan_arena(buffers: Sequence[Buffer], alignment: int = ALIGNMENT,
               aliases: Mapping[str, str] | None = None) -> ArenaPlan:
    """Offsets of ``buffers`` (given in creation order) as ``GreedyMemoryPlanner`` places them (module doc)."""
    bufs = [b for b in buffers if b.size_bytes > 0]
    sizes = [_align(b.size_bytes, alignment) for b in bufs]
    order = sorted(reversed(range(len(bufs))), key=lambda i: -sizes[i])  # stable: ties stay later-created first
    placed: list[tuple[int, int]] = []  # (offset, index), in offset order; equal offsets in placement order
    offsets: dict[str, int] = {}
    for i in order:
        active = [(o, j) for o, j in placed if _conflict(bufs[i], bufs[j])]
        cand = 0
        for k, (o, _) in enumerate(active):
            if k > 0:
                po, pj = active[k - 1]
                cand = max(cand, po + sizes[pj])
            if o - cand >= sizes[i]:
                break
        else:
            if active:
                po, pj = active[-1]
                cand = max(cand, po + sizes[pj])
        bisect.insort_right(placed, (cand, i), key=lambda e: e[0])
        offsets[bufs[i].name] = cand
    arena = max((offsets[b.name] + s for b, s in zip(bufs, sizes)), default=0)
    return ArenaPlan(tuple(bufs), offsets, dict(aliases or {}), int(arena), alignment)


def tensor_buffers(inputs: Sequence[tuple[str, int]], ops: Sequence[tuple[str, Sequence[str], int, bool]],
                   outputs: Sequence[str]) -> tuple[list[Buffer], dict[str, str]]:
    """Buffers (creation order) and in-place aliases of graph ``inputs`` ``(name, bytes)`` and a sequence of ops
    ``(output, inputs, output_bytes, in_place)``; ``in_place`` ops (reshape) share their first input's buffer."""
    alias: dict[str, str] = {}
    root = lambda v: alias.get(v, v)  # noqa: E731
    first = {name: 0 for name, _ in inputs}
    last = dict(first)
    size = dict(inputs)
    order = [name for name, _ in inputs]
    for i, (out, ins, nbytes, in_place) in enumerate(ops):
        scope = i + 1
        for v in ins:
            last[root(v)] = max(last[root(v)], scope)
        if in_place:
            alias[out] = root(ins[0])
            continue
        first[out], last[out], size[out] = scope, scope, nbytes
        order.append(out)
    for o in outputs:
        last[root(o)] = len(ops)
    return [Buffer(v, size[v], first[v], last[v]) for v in order], alias


def _graph_ops(graph: Graph, bytes_per_element: int, inplace_reshape: bool, runtime: str | None = None
               ) -> list[tuple[str, tuple[str, ...], int, bool]]:
    from hwsim.cpu.int8 import fused_activations
    from hwsim.cpu.runtime.algorithms import pad_folds_into_conv

    fused = fused_activations(graph)
    skip = {a.name for a in fused.values()}
    ops = []
    for n in graph.nodes:
        if n.name in skip:
            continue
        out = fused[n.name].name if n.name in fused else n.name
        if n.op == Op.CONSTANT:  # a constant tensor lives in flash (flash_bytes), not in the arena
            ops.append((out, (), 0, False))
            continue
        nbytes = int(np.prod(n.shape, dtype=np.int64)) * bytes_per_element
        folded = runtime is not None and pad_folds_into_conv(graph, n, runtime)  # no padded tensor: its input
        ops.append((out, tuple(n.inputs), nbytes, inplace_reshape and n.op == Op.RESHAPE or folded))
    return ops


def plan_int8_arena(graph: Graph, *, bytes_per_element: int = 1, alignment: int = ALIGNMENT,
                    inplace_reshape: bool = True, runtime: str | None = None) -> ArenaPlan:
    """The arena of ``graph`` (batch norm already folded) run as int8 tensors with fused ReLUs, at the graph's batch.
    Any graph (no calibration, no check that the int8 functional path can run it); requantizations the converter
    inserts before a concat are not in it (:func:`plan_program_arena` has them). On a ``runtime`` that folds a zero
    pad into the conv reading it (:func:`hwsim.cpu.runtime.algorithms.pad_folds_into_conv`: the converter's SAME
    padding) the pad has no tensor: the conv reads the unpadded input's buffer."""
    ins = [(i.name, int(np.prod(i.shape, dtype=np.int64)) * bytes_per_element) for i in graph.inputs]
    bufs, alias = tensor_buffers(ins, _graph_ops(graph, bytes_per_element, inplace_reshape, runtime),
                                 graph.outputs)
    return plan_arena(bufs, alignment, alias)


def plan_program_arena(program, *, alignment: int = ALIGNMENT) -> ArenaPlan:
    """The arena of an :class:`~hwsim.cpu.int8.Int8Program` (its requantizations included; a final float softmax
    counted at 1 byte per element, as TFLite Micro's int8 softmax)."""
    size = lambda v: int(np.prod(program.shapes[v], dtype=np.int64))  # noqa: E731
    ops = [(s.output, s.inputs, size(s.output), s.kind == "reshape") for s in program.steps]
    bufs, alias = tensor_buffers([(program.input, size(program.input))], ops, program.outputs)
    return plan_arena(bufs, alignment, alias)


def flash_bytes(graph: Graph) -> int:
    """Bytes of the constants of ``graph`` as int8 deployment stores them: int8 weights plus int32 biases of every
    conv / linear, every other parameter (a PReLU slope, a norm's scale, a CONSTANT's value) at 1 byte per element;
    each parameter key once."""
    seen: set[str] = set()
    total = 0
    for n in graph.nodes:
        for role, key in n.params.items():
            if key in seen:
                continue
            seen.add(key)
            per = 4 if role == "bias" and n.op in (Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR) else 1
            total += int(graph.params[key].size) * per
    return total
