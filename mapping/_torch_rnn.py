"""``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (tanh, relu) unrolled over the traced sequence length.

The cell equations, the zero initial state and the unroll are :mod:`mapping.onnx_rnn`'s (shared with ONNX's
LSTM / GRU / RNN): every step of a layer and direction reads the module's own parameters (``weight_ih_l0``,
``weight_hh_l0_reverse``, ...), stored once. Supported: ``batch_first`` True or False, any ``num_layers``,
``bidirectional``, ``bias``, dropout (off in eval), no initial state or a constant one (``torch.zeros(...)``
counts as none); refused in one line: ``proj_size``, a packed sequence, an initial state computed from the input,
a time axis that is the traced input's first dim (``batch_first=False`` on the model's input: hwsim takes that
dim as the batch).

Outputs are torch's: ``output`` ``(N, L, D·H)`` / ``(L, N, D·H)``, and ``h_n`` (and ``c_n``) ``(D·layers, N, H)``.
A state ``h_n`` keeps the batch on dim 1: with a batch above 1 it is built only where each reader takes one
layer's state (``h_n[-1]``, a ``(N, H)`` value); anything else on it is traced at batch 1 (``batch_fixed``), as for
any value that moves the batch.
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from hwsim.errors import UnsupportedOpError
from mapping._builder import BatchMoved, Builder
from mapping.graph import Concat, NoAttrs, Op, Reshape
from mapping.onnx_rnn import Weights, assemble, time_steps, unroll

__all__ = ["RNN_MODULES", "rnn_module", "Flat"]

RNN_MODULES = (nn.LSTM, nn.GRU, nn.RNN)


class Flat(nn.Module):
    """A bare recurrent layer traced as a network: its outputs flattened, ``(output, h_n[, c_n])``."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        out, state = self.rnn(x)
        return (out, *state) if isinstance(state, tuple) else (out, state)


def _emitter(b: Builder, n: fx.Node, path: str):
    def emit(op, inputs, attrs=None, params=None, *, tag, shape, name=None):
        return b.emit(n, op, inputs, NoAttrs() if attrs is None else attrs, params, {"recurrent": n.name},
                      name=name or f"{n.name}_{tag}", shape=tuple(shape), module=path)

    return emit


def _initial(b: Builder, n: fx.Node, m: nn.Module, hx, lead: tuple, emit) -> list[tuple[str | None, str | None]]:
    """The initial (h0, c0) IR values of each layer and direction (None: zeros)."""
    count = m.num_layers * (2 if m.bidirectional else 1)
    if hx is None:
        return [(None, None)] * count
    parts = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    if any(b.kind(p) != "const" for p in parts):
        raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}': its initial state is computed from the input; "
                                 "hwsim supports none (zeros) or a constant one")
    states = []
    for i, p in enumerate(parts):
        v = b.val(p).detach().float().numpy()
        col = []
        for k in range(count):
            s = v[k]
            if not np.any(s):
                col.append(None)
                continue
            if len(lead) + 1 == s.ndim:  # the state's first dim is the batch: one row for every sample
                if not np.all(s == s[:1]):
                    raise UnsupportedOpError(f"{type(m).__name__} at '{n.target}': its initial state differs "
                                             "between the samples of the batch")
                s = s[:1]
            else:
                s = s.reshape((1,) + s.shape)
            key = b.add_param(f"{n.target}.{'hc'[i]}0_{k}", s)
            col.append(emit(Op.CONSTANT, [b.input_name], None, {"value": key}, tag=f"{'hc'[i]}0_{k}",
                            shape=(b.batch,) + s.shape[1:]))
        states.append(col)
    return list(zip(states[0], states[1] if len(states) > 1 else [None] * count))


def _weights(b: Builder, m: nn.Module, path: str, layer: int, rev: bool, h0, c0) -> Weights:
    sfx = f"_l{layer}" + ("_reverse" if rev else "")

    def key(name):
        return b.add_param(f"{path}.{name}{sfx}", getattr(m, f"{name}{sfx}")) if m.bias or "weight" in name else None

    return Weights(key("weight_ih"), key("weight_hh"), key("bias_ih"), key("bias_hh"), h0, c0)


def rnn_module(b: Builder, n: fx.Node, m: nn.Module) -> None:
    """A call of nn.LSTM / nn.GRU / nn.RNN -> the unrolled layers; its outputs are read through ``b.parts``."""
    path, what = str(n.target), f"{type(m).__name__} at '{n.target}'"
    if getattr(m, "proj_size", 0):
        raise UnsupportedOpError(f"{what} with proj_size={m.proj_size} (projected LSTM states) is not supported")
    x = n.args[0]
    hx = n.args[1] if len(n.args) > 1 else n.kwargs.get("hx")
    if not isinstance(x, fx.Node) or not isinstance(b.values.get(x.name), torch.Tensor):
        raise UnsupportedOpError(f"{what} on a packed sequence is not supported (pass a padded tensor)")
    rank = len(b.tshape(x))
    tdim = (1 if m.batch_first and rank == 3 else 0) + b.offset(x)
    if tdim == 0:
        raise UnsupportedOpError(f"{what} reads its time steps along the traced input's first dim, which hwsim takes as "
                                 "the batch: use batch_first=True (or feed it x.transpose(0, 1) traced at batch 1)")
    emit = _emitter(b, n, path)
    xv = b.ref(x, n)
    xs = time_steps(emit, xv, b.shapes[xv], tdim, "x")
    lead = b.shapes[xs[0]][:-1]
    init = iter(_initial(b, n, m, hx, lead, emit))
    dirs = 2 if m.bidirectional else 1
    layers = [[_weights(b, m, path, li, bool(d), *next(init)) for d in range(dirs)] for li in range(m.num_layers)]
    outs, hs, cs = unroll(emit, m.mode, m.hidden_size, layers, xs, m.input_size, lead)

    def part(i: int, g: fx.Node) -> None:
        if i == 0:
            emit_g = _emitter(b, g, path)
            steps = [s for o in outs for s in o]
            if dirs == 2 and int(np.prod(lead[1:])) > 1:  # (L, N, 2H) inside one sample: directions joined per row
                steps = [emit_g(Op.CONCAT, o, Concat(len(lead)), tag=f"step{t}", shape=lead + (2 * m.hidden_size,))
                         for t, o in enumerate(outs)]
            b.ir[g.name] = assemble(emit_g, steps, [b.shapes[s] for s in steps], b.out_shape(g), "seq", name=g.name)
        elif m.mode == "LSTM":
            b.parts[g.name] = lambda j, gg: _states(b, gg, (hs, cs)[j], path)
        else:
            _states(b, g, hs, path)

    b.parts[n.name] = part


def _dims(u: fx.Node) -> tuple[int, ...] | None:
    """The dims argument of a squeeze / transpose / permute reader (normalised to rank 3), None for others."""
    rest = [a for a in u.args[1:]] + [v for k, v in u.kwargs.items() if k in ("dim", "dims", "dim0", "dim1")]
    flat = [int(d) % 3 for a in rest for d in (a if isinstance(a, (tuple, list)) else [a]) if isinstance(d, int)]
    return tuple(flat) if len(flat) == sum(len(a) if isinstance(a, (tuple, list)) else 1 for a in rest) else None


def _rewrite_readers(b: Builder, g: fx.Node, count: int) -> None:
    """The idioms that read a batched ``h_n`` (count, N, H) as a batch-first value, written as reads of one state
    each (equal values; the traced graph module is hwsim's copy): ``h_n.squeeze(0)`` of one state is ``h_n[0]``,
    ``h_n.transpose(0, 1)`` / ``.permute(1, 0, 2)`` is ``torch.stack([h_n[0], h_n[1], ...], 1)``."""
    if len(b.tshape(g)) != 3:
        return
    for u in list(g.users):
        name = u.target if u.op == "call_method" else getattr(u.target, "__name__", "")
        if not u.args or u.args[0] is not g or u.op not in ("call_method", "call_function"):
            continue
        dims = _dims(u)
        if name == "squeeze" and count == 1 and dims == (0,):
            u.op, u.target, u.args, u.kwargs = "call_function", operator.getitem, (g, 0), {}
        elif (name in ("transpose", "swapaxes", "swapdims") and dims in ((0, 1), (1, 0))) or \
                (name == "permute" and dims == (1, 0, 2)):
            items = []
            with b.gm.graph.inserting_before(u):
                for k in range(count):
                    item = b.gm.graph.call_function(operator.getitem, (g, k))
                    item.meta.update(g.meta)
                    b.values[item.name] = b.values[g.name][k]
                    items.append(item)
            u.op, u.target, u.args, u.kwargs = "call_function", torch.stack, (items, 1), {}


def _states(b: Builder, g: fx.Node, states: list[str], path: str) -> None:
    """``h_n`` (or ``c_n``) for fx node ``g``: read state by state when every reader indexes one (``h_n[-1]``, and
    the idioms of :func:`_rewrite_readers`), else the whole value (its batch on dim 1: batch 1 only)."""
    _rewrite_readers(b, g, len(states))
    users = list(g.users)
    if users and all(u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int)
                     for u in users):
        b.parts[g.name] = lambda k, gg: _one(b, gg, states[k], path)
        return
    try:
        target = b.out_shape(g)
    except BatchMoved:
        raise BatchMoved(f"the state h_n / c_n of the recurrent layer at '{path}' has the batch on dim 1 (shape "
                         f"{b.tshape(g)} for a batch of {b.batch}): read it as h_n[k], h_n.squeeze(0) or "
                         "h_n.transpose(0, 1), or trace the model with batch 1") from None
    b.ir[g.name] = assemble(_emitter(b, g, path), states, [b.shapes[s] for s in states], target, "state", name=g.name)


def _one(b: Builder, g: fx.Node, state: str, path: str) -> None:
    target = b.out_shape(g)
    if b.shapes[state] == target:
        b.ir[g.name] = state
    else:
        b.emit(g, Op.RESHAPE, [state], Reshape(tuple(target[1:])), shape=target, module=path)
