"""Recurrent layers unrolled over time, and ONNX ``LSTM`` / ``GRU`` / ``RNN`` as such unrolled IR.

The IR has no loop; a recurrent layer over a sequence of known length L (the traced or exported input's) is L
copies of its cell, each reading the same parameter keys: the weights are stored once and computed L times, as
any weight-shared iterative net (``mapping.graph``). One step of one direction, in torch's equations
(https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html, ``nn.GRU``, ``nn.RNN``) and gate order::

    a  = LINEAR(x_t; W_ih, b_ih) + LINEAR(h; W_hh, b_hh)            (one matrix of all gates each)
    LSTM (gates i f g o):  c' = sig(f) * c + sig(i) * tanh(g),   h' = sig(o) * tanh(c')
    GRU  (gates r z n):    n = tanh(a_x[n] + sig(r) * a_h[n]),   h' = n + sig(z) * (h - n)
                           (r, z from a[r], a[z]; a_x, a_h the two LINEARs before the sum)
    GRU, ONNX's linear_before_reset=0:  n = tanh(a_x[n] + LINEAR(sig(r) * h; W_hn, b_hn))
    RNN:                   h' = tanh(a) or relu(a)

The reverse direction runs the same cell over the steps from last to first; its output at step t is the state
after reading step t. A zero initial state (none given) is ``CLAMP(a_x[0:H], 0, 0)`` of the first step: exact
zeros that store no tensor, so the parameter count stays the layer's own (and ``W_hh`` runs at every step, as in
torch: ``L·G·H·(F + H)`` MACs per layer and direction for G gates). A constant initial state is a CONSTANT node.
The time axis may not be the batch dimension: hwsim keeps each sample's computation separate. Every node of one
unrolled layer carries ``meta["recurrent"]`` (the layer call's name): a runtime that runs the layer as one fused op
pays its fixed per-layer cost once, on its first node (:func:`mapping.analysis.layer_share`).

ONNX (opset 14+, https://onnx.ai/onnx/operators/onnx__LSTM.html): gates iofc (LSTM) and zrh (GRU) are reordered to
torch's ifgo and rzn; ``layout`` 0 and 1, directions forward / reverse / bidirectional, default activations (RNN:
Tanh or Relu), GRU ``linear_before_reset`` 1 (torch's cell, the one torch exports) and 0 (ONNX's default: the
hidden matrix's n rows, ``W_hn``, apply to ``r * h``). Refused in one line: ``clip``, other activations,
``input_forget``, peepholes, ``sequence_lens`` shorter than the sequence, initial states computed from the input.
torch's export of a batch-first layer (Transposes around layout-0 nodes) runs batch first at any batch: the pattern
in ``mapping.onnx_patterns`` converts each node with a :class:`BatchFirst`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mapping.graph import Clamp, Concat, Linear, Op, Reshape, Slice
from mapping.onnx_importer import registrar

__all__ = ["CONVERTERS", "BatchFirst", "Weights", "GATES", "time_steps", "unroll", "assemble"]

CONVERTERS: dict = {}
converts = registrar(CONVERTERS)

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}  # torch's RNNBase.mode -> gate matrices per weight
# emit(op, inputs, attrs, params, tag=..., shape=..., name=None) -> the new IR value's name
Emit = Callable[..., str]


@dataclass(frozen=True, slots=True)
class Weights:
    """One direction of one layer: parameter keys (gates in torch's order) and initial-state IR values (None:
    zeros)."""

    w_ih: str
    w_hh: str
    b_ih: str | None = None
    b_hh: str | None = None
    h0: str | None = None
    c0: str | None = None
    w_hn: str | None = None  # GRU with linear_before_reset=0: W_hh holds the r, z rows, W_hn the n rows
    b_hn: str | None = None


def _linear(emit: Emit, x: str, w: str, b: str | None, n_in: int, n_out: int, lead: tuple, tag: str) -> str:
    params = {"weight": w} | ({"bias": b} if b is not None else {})
    return emit(Op.LINEAR, [x], Linear(n_in, n_out, b is not None), params, tag=tag, shape=lead + (n_out,))


def _cut(emit: Emit, v: str, lo: int, hi: int, lead: tuple, tag: str) -> str:
    """``v[..., lo:hi]``."""
    return emit(Op.SLICE, [v], Slice(len(lead), lo, hi), tag=tag, shape=lead + (hi - lo,))


def _step(emit: Emit, mode: str, w: Weights, x: str, h: str | None, c: str | None, n_in: int, hidden: int,
          lead: tuple, tag: str) -> tuple[str, str | None]:
    """One cell step (module docstring): the new ``(h, c)`` (c None but for LSTM)."""
    gates = GATES[mode]
    hs = lead + (hidden,)

    def op(o, ins, t, attrs=None):
        return emit(o, ins, attrs, tag=f"{tag}_{t}", shape=hs)

    ax = _linear(emit, x, w.w_ih, w.b_ih, n_in, gates * hidden, lead, f"{tag}_ax")
    if h is None:  # the zero initial state: exact zeros, no stored tensor
        h = op(Op.CLAMP, [_cut(emit, ax, 0, hidden, lead, f"{tag}_h0src")], "h0", Clamp(0.0, 0.0))
    if c is None and mode == "LSTM":
        c = h if w.h0 is None else op(Op.CLAMP, [_cut(emit, ax, 0, hidden, lead, f"{tag}_c0src")], "c0",
                                      Clamp(0.0, 0.0))
    ah = _linear(emit, h, w.w_hh, w.b_hh, hidden, (gates - (w.w_hn is not None)) * hidden, lead, f"{tag}_ah")
    if mode == "GRU":
        both = lead + (2 * hidden,)
        rz = emit(Op.ADD, [_cut(emit, ax, 0, 2 * hidden, lead, f"{tag}_axrz"),
                           _cut(emit, ah, 0, 2 * hidden, lead, f"{tag}_ahrz")], None, tag=f"{tag}_rz", shape=both)
        rz = emit(Op.SIGMOID, [rz], None, tag=f"{tag}_rzs", shape=both)
        r, z = _cut(emit, rz, 0, hidden, lead, f"{tag}_r"), _cut(emit, rz, hidden, 2 * hidden, lead, f"{tag}_z")
        if w.w_hn is None:
            rn = op(Op.MUL, [r, _cut(emit, ah, 2 * hidden, 3 * hidden, lead, f"{tag}_ahn")], "rn")
        else:  # linear_before_reset=0
            rn = _linear(emit, op(Op.MUL, [r, h], "rh"), w.w_hn, w.b_hn, hidden, hidden, lead, f"{tag}_rn")
        n = op(Op.TANH, [op(Op.ADD, [_cut(emit, ax, 2 * hidden, 3 * hidden, lead, f"{tag}_axn"), rn], "npre")], "n")
        return op(Op.ADD, [n, op(Op.MUL, [z, op(Op.SUB, [h, n], "hn")], "zhn")], "h"), None
    a = emit(Op.ADD, [ax, ah], None, tag=f"{tag}_a", shape=lead + (gates * hidden,))
    if mode != "LSTM":
        return op(Op.TANH if mode == "RNN_TANH" else Op.RELU, [a], "h"), None
    i, f, g, o = (_cut(emit, a, k * hidden, (k + 1) * hidden, lead, f"{tag}_{k}") for k in range(4))
    i, f, o = (op(Op.SIGMOID, [v], f"{t}s") for v, t in ((i, "i"), (f, "f"), (o, "o")))
    g = op(Op.TANH, [g], "gt")
    c = op(Op.ADD, [op(Op.MUL, [f, c], "fc"), op(Op.MUL, [i, g], "ig")], "c")
    return op(Op.MUL, [o, op(Op.TANH, [c], "ct")], "h"), c


def time_steps(emit: Emit, x: str, shape: tuple[int, ...], tdim: int, tag: str) -> list[str]:
    """IR value ``x`` of IR ``shape`` cut along IR dim ``tdim`` (never 0, the batch) into steps without that dim."""
    assert tdim > 0
    one = shape[:tdim] + (1,) + shape[tdim + 1:]
    step = shape[:tdim] + shape[tdim + 1:]
    out = []
    for t in range(shape[tdim]):
        s = x if shape[tdim] == 1 else emit(Op.SLICE, [x], Slice(tdim, t, t + 1), tag=f"{tag}_t{t}", shape=one)
        out.append(emit(Op.RESHAPE, [s], Reshape(step[1:]), tag=f"{tag}_x{t}", shape=step))
    return out


def unroll(emit: Emit, mode: str, hidden: int, layers: Sequence[Sequence[Weights]], xs: list[str], n_in: int,
           lead: tuple[int, ...]) -> tuple[list[list[str]], list[str], list[str]]:
    """The unrolled layers over steps ``xs`` (IR values of shape ``lead + (n_in,)``): the last layer's outputs
    ``outs[t][d]`` per step and direction, and the final h and c of each layer and direction in torch's order
    (``h_n[2 * layer + d]``; c empty but for LSTM). A layer after the first reads the directions' outputs of the
    step before it concatenated along the last dim."""
    finals_h: list[str] = []
    finals_c: list[str] = []
    outs: list[list[str]] = []
    for li, dirs in enumerate(layers):
        if li:
            xs = [o[0] if len(o) == 1 else emit(Op.CONCAT, o, Concat(len(lead)), tag=f"l{li}_in{t}",
                                                shape=lead + (len(o) * hidden,)) for t, o in enumerate(outs)]
            n_in = len(layers[li - 1]) * hidden
        outs = [[""] * len(dirs) for _ in xs]
        for d, w in enumerate(dirs):
            h, c = w.h0, w.c0
            order = range(len(xs)) if d == 0 else range(len(xs) - 1, -1, -1)
            for t in order:
                h, c = _step(emit, mode, w, xs[t], h, c, n_in, hidden, lead, f"l{li}{'r' if d else ''}_t{t}")
                outs[t][d] = h
            finals_h.append(h)
            if c is not None:
                finals_c.append(c)
    return outs, finals_h, finals_c


def assemble(emit: Emit, values: Sequence[str], shapes: Sequence[tuple[int, ...]], target: tuple[int, ...],
             tag: str, name: str | None = None) -> str:
    """One IR value of shape ``target`` holding ``values`` one after another within each sample (each flattened,
    dim 0 kept): how torch and ONNX lay out a sequence of states, ``(N, L, D·H)``, ``(L, D, N, H)`` at batch 1, ...
    Returns ``values[0]`` itself when it already has that shape (and no ``name`` is asked for)."""
    b0 = shapes[0][0]
    assert all(s[0] == b0 for s in shapes) and target[0] == b0
    assert sum(int(np.prod(s)) for s in shapes) == int(np.prod(target)), (shapes, target)
    if len(values) == 1:
        if shapes[0] == tuple(target) and name is None:
            return values[0]
        return emit(Op.RESHAPE, list(values), Reshape(tuple(target[1:])), tag=tag, shape=tuple(target), name=name)
    flat = []
    for k, (v, s) in enumerate(zip(values, shapes)):
        f = (b0, 1, int(np.prod(s[1:])))
        flat.append(v if s == f else emit(Op.RESHAPE, [v], Reshape(f[1:]), tag=f"{tag}_f{k}", shape=f))
    assert len(set(shapes)) == 1, shapes
    cat = (b0, len(values), int(np.prod(shapes[0][1:])))
    if cat == tuple(target):
        return emit(Op.CONCAT, flat, Concat(1), tag=tag, shape=cat, name=name)
    joined = emit(Op.CONCAT, flat, Concat(1), tag=f"{tag}_cat", shape=cat)
    return emit(Op.RESHAPE, [joined], Reshape(tuple(target[1:])), tag=tag, shape=tuple(target), name=name)


# ------------------------------------------------------------------------------------------------- ONNX
_ONNX_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}  # torch's gate k is ONNX's gate _ONNX_ORDER[k]
_DEFAULT_ACTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh")}


def _torch_order(m: np.ndarray, op: str, hidden: int) -> np.ndarray:
    """ONNX gate blocks (rows) of one direction's matrix or bias reordered to torch's."""
    return np.concatenate([m[k * hidden:(k + 1) * hidden] for k in _ONNX_ORDER[op]], axis=0)


def _onnx_mode(imp, n) -> str:
    """torch's mode name for ``n``'s cell; refuses what the unrolled cell does not compute."""
    op, dirs = n.op_type, 2 if imp.attr(n, "direction", "forward") == "bidirectional" else 1
    if imp.attr(n, "clip") is not None:
        imp.refuse(n, "cell clipping (clip) is not supported")
    if imp.attr(n, "activation_alpha") or imp.attr(n, "activation_beta"):
        imp.refuse(n, "activation_alpha / activation_beta are not supported")
    acts = tuple(imp.attr(n, "activations", []) or [])
    if op == "RNN":
        kinds = set(acts) or {"Tanh"}
        if kinds not in ({"Tanh"}, {"Relu"}):
            imp.refuse(n, f"activations {list(acts)} (hwsim unrolls Tanh or Relu RNN cells)")
        return "RNN_TANH" if kinds == {"Tanh"} else "RNN_RELU"
    if acts and acts != _DEFAULT_ACTS[op] * dirs:
        imp.refuse(n, f"activations {list(acts)} (only the defaults {list(_DEFAULT_ACTS[op])} are supported)")
    if op == "LSTM" and int(imp.attr(n, "input_forget", 0)):
        imp.refuse(n, "input_forget=1 (coupled input and forget gates) is not supported")
    return op


def _onnx_state(imp, n, index: int, d: int, layout: int, lead: tuple, what: str) -> str | None:
    """Initial state input ``index`` of direction ``d`` as a CONSTANT node (None: absent or all zeros)."""
    v = imp.const_input(n, index, what)
    if v is None or not np.any(v):
        return None
    s = np.asarray(v[d] if layout == 0 else v[:, d], np.float32)  # (N, H)
    if len(lead) == 1:  # the state keeps the batch first: one row for every sample
        if not np.all(s == s[:1]):
            imp.refuse(n, f"its {what} differs between the samples of the batch")
        s = s[:1]
    else:
        s = s[None]
    return imp.constant(n, s, s.ndim, f"{n.input[index]}/d{d}")


def _direction(imp, n, d: int, hidden: int, layout: int, lead: tuple) -> Weights:
    """Direction ``d``'s parameters in torch's gate order, one key each, and its initial states; a GRU with
    ``linear_before_reset=0`` gets its hidden matrix's n rows (and bias) as ``W_hn`` (``b_hn``)."""
    op = n.op_type
    gates, split = _ONNX_ORDER[op], op == "GRU" and not int(imp.attr(n, "linear_before_reset", 0))
    rz = 2 * hidden

    def key(i: int, value: np.ndarray, role: str) -> str:
        return imp.add_param(f"{n.input[i]}/{role}/d{d}", value, n, f"{role}_d{d}")

    w = _torch_order(imp.const_input(n, 1, "W", required=True)[d], op, hidden)
    r = _torch_order(imp.const_input(n, 2, "R", required=True)[d], op, hidden)
    b = imp.const_input(n, 3, "B")
    b_ih = b_hh = b_hn = None
    if b is not None:
        b_ih = key(3, _torch_order(b[d, :len(gates) * hidden], op, hidden), "bias_ih")
        bh = _torch_order(b[d, len(gates) * hidden:], op, hidden)
        b_hh = key(3, bh[:rz] if split else bh, "bias_hh")
        b_hn = key(3, bh[rz:], "bias_hn") if split else None
    return Weights(key(1, w, "weight_ih"), key(2, r[:rz] if split else r, "weight_hh"), b_ih, b_hh,
                   h0=_onnx_state(imp, n, 5, d, layout, lead, "initial_h"),
                   c0=_onnx_state(imp, n, 6, d, layout, lead, "initial_c") if op == "LSTM" else None,
                   w_hn=key(2, r[rz:], "weight_hn") if split else None, b_hn=b_hn)


@dataclass(frozen=True, slots=True)
class BatchFirst:
    """How ``mapping.onnx_patterns`` has a sequence-first (layout 0) node between the Transposes of a batch-first
    export run batch first: ``x`` the IR value ``(N, L, F)`` it reads (the Transpose's input), ``y`` the name of its
    ``(N, L, D·H)`` output (the closing Transpose's; None: a fresh one), ``states`` the final states read one at a
    time, ``(output index 1 = Y_h or 2 = Y_c, index into that output's dim 0, value name)`` each ``(N, H)``;
    ``taken`` the node's outputs whose every reader the pattern computes (not emitted as ONNX lays them out);
    ``read`` whether the sequence is read."""

    x: str
    y: str | None = None
    states: tuple[tuple[int, int, str], ...] = ()
    taken: frozenset[str] = frozenset()
    read: bool = True


@converts("LSTM", "GRU", "RNN")
def rnn(imp, n, bf: BatchFirst | None = None) -> str | None:
    """LSTM / GRU / RNN -> the unrolled cell (module docstring), one set of parameter keys per direction. With
    ``bf`` the node runs batch first (:class:`BatchFirst`); returns the IR value of its sequence output."""
    op, mode = n.op_type, _onnx_mode(imp, n)
    hidden, layout = int(imp.attr(n, "hidden_size")), int(imp.attr(n, "layout", 0))
    direction = imp.attr(n, "direction", "forward")
    x = n.input[0]
    xshape = imp.shape(x) if bf is None else imp.shapes[bf.x]
    steps = xshape[1 if layout or bf else 0]
    lens = imp.const_input(n, 4, "sequence_lens")
    if lens is not None and not np.all(lens == steps):
        imp.refuse(n, "sequence_lens shorter than the sequence are not supported")
    if op == "LSTM" and len(n.input) > 7 and n.input[7] and np.any(imp.const_input(n, 7, "peepholes")):
        imp.refuse(n, "peephole weights (P) are not supported")
    if bf is None and (1 if layout else 0) + imp.offset(x) == 0:
        imp.refuse(n, "its time axis is the first dim of its input, which hwsim takes as the batch: export a "
                   "batch-first model (batch_first=True) with batch 1")
    tdim = 1 if bf else imp.dim(n, x, 1 if layout else 0, "time axis")
    xv = bf.x if bf else imp.act(x, n)

    def emit(o, ins, attrs=None, params=None, *, tag, shape, name=None):
        return imp.emit(n, o, ins, attrs, params, {"recurrent": n.name or n.output[0]}, name=name or imp.fresh(n, tag),
                        shape=shape)

    xs = time_steps(emit, xv, imp.shapes[xv], tdim, "x")
    lead = imp.shapes[xs[0]][:-1]
    dirs = [_direction(imp, n, d, hidden, layout, lead) for d in range(2 if direction == "bidirectional" else 1)]
    if direction == "reverse":
        xs = xs[::-1]
    outs, hs, cs = unroll(emit, mode, hidden, [dirs], xs, xshape[-1], lead)
    if direction == "reverse":
        outs = outs[::-1]
    seq = [s for o in outs for s in o]
    y = None
    if bf is not None and bf.read:  # the (N, L, D·H) sequence
        y = assemble(emit, seq, [imp.shapes[s] for s in seq], lead[:1] + (steps, len(dirs) * hidden), "seq",
                     name=bf.y)
    for k, d, name in bf.states if bf is not None else ():  # each final state read alone
        v = (hs, cs)[k - 1][d]
        assemble(emit, [v], [imp.shapes[v]], imp.shapes[v], "state", name=name)
    for i, (out, states) in enumerate(zip(n.output, (seq, hs, cs))):
        if out and (bf is None or (i and out not in bf.taken)) and (imp.consumers(out) or out in imp.graph_outputs):
            v = assemble(emit, states, [imp.shapes[s] for s in states], imp.out_shape(n, out), "out", name=out)
            imp.ir[out] = v
    return y
