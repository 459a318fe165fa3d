"""The ONNX -> IR walk: :class:`Importer` converts the ONNX nodes of one model, in order, given every tensor's
value from one run of the source (``mapping.onnx`` loads, checks and runs the model; ``mapping.onnx_ops``,
``mapping.onnx_moves``, ``mapping.onnx_pools``, ``mapping.onnx_patterns`` and ``mapping.qonnx`` hold the
converters).

The batch dimension: every IR value's first dimension is the batch N. An ONNX value whose first dimension is
not N (a model that moves or merges the batch, as attention code that permutes ``(B, L, 3, H, d)`` to
``(3, B, H, L, d)`` does, or torch's sequence-first ``MultiheadAttention`` internals) is kept with a leading unit
dimension when N = 1: its IR dims are the ONNX dims + 1, the same memory layout (:meth:`Importer.offset` is 1).
The graph is then marked ``batch_fixed`` (it computes one sample per call), as ``mapping.trace`` marks it. With
N > 1 such a model is refused: export and import it with batch 1.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, UnsupportedOpError, first_line
from mapping.graph import Graph, with_source_shapes

__all__ = ["BATCH_ONE", "DEFAULT_DOMAINS", "QONNX_DOMAINS", "Importer", "first_line", "registrar"]

QONNX_DOMAINS = frozenset({"qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"})
DEFAULT_DOMAINS = ("", "ai.onnx")
_ANONYMOUS = re.compile(r"onnx::.*|val_\d+|\d+")  # the names torch's exporters generate
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                     "Multinomial"})
BATCH_ONE = "export and import with batch 1"


def registrar(table: dict):
    """A decorator ``converts(*ops)`` that registers a converter for ``ops`` in ``table``."""
    def converts(*ops: str):
        def register(fn):
            for op in ops:
                table[op] = fn
            return fn

        return register

    return converts


class Importer:
    """Converts the ONNX nodes of one model, in order, given every tensor's value from one run of the source.

    Converters (``mapping.onnx_ops.CONVERTERS``, ``mapping.qonnx.CONVERTERS``) are ``fn(importer, node)``; they
    read operands with :meth:`act` / :meth:`const`, emit IR nodes with :meth:`emit` and refuse with
    :meth:`refuse`. A pattern converter may :meth:`absorb` later nodes it has already computed. :meth:`shape` is
    a value's ONNX shape, :meth:`ishape` its IR shape, :meth:`dim` translates an ONNX axis to the IR's.
    """

    def __init__(self, proto, values: dict[str, np.ndarray], input_name: str, batch: int, name: str, *,
                 qonnx: bool = False):
        from onnx import numpy_helper

        self.g, self.values, self.batch, self.name, self.qonnx = proto.graph, values, batch, name, qonnx
        self.opsets = {o.domain or "": o.version for o in proto.opset_import}
        self.onnx_nodes = list(self.g.node)  # one Python object per node: nodes are keyed by id() below
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self.input_name = input_name
        self.ir: dict[str, str] = {input_name: input_name}  # ONNX activation -> IR value name
        self.shapes: dict[str, tuple[int, ...]] = {input_name: self.shape(input_name)}  # IR value -> IR shape
        self.batch_fixed = False
        self.nodes: list = []
        self.params: dict[str, np.ndarray] = {}
        self._producer = {o: n for n in self.onnx_nodes for o in n.output if o}
        self._consumers: dict[str, list] = {}
        for n in self.onnx_nodes:
            for i in n.input:
                if i:
                    self._consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in self.g.output}
        self._absorbed: set[int] = set()
        self.overrides: dict[int, Any] = {}  # id(ONNX node) -> converter of the pattern that starts there
        self._taken = set(values) | set(self._producer) | set(self.consts) | {input_name}
        self._initializers = set(self.consts)
        self._keys: dict[str, str] = {}  # tensor -> parameter key given at its first use

    # -- the walk
    def build(self) -> Graph:
        from mapping.graph import Input
        from mapping.onnx_ops import CONVERTERS
        from mapping.onnx_patterns import PATTERNS
        from mapping.qonnx import CONVERTERS as Q_CONVERTERS

        live = self._live()
        folded = set()
        for n in self.onnx_nodes:  # constants first: the patterns read them
            if id(n) in live and self._foldable(n):
                folded.add(id(n))
                for o in n.output:
                    if o:
                        self.consts[o] = np.asarray(self.values[o])
        for find in PATTERNS:
            find(self)
        for n in self.onnx_nodes:
            if id(n) not in live or id(n) in folded or id(n) in self._absorbed:
                continue
            table = Q_CONVERTERS if n.domain in QONNX_DOMAINS else CONVERTERS
            fn = self.overrides.get(id(n)) or table.get(n.op_type)
            if fn is None:
                raise UnsupportedOpError(f"unsupported ONNX op {n.op_type} at node '{self.node_name(n)}'"
                                         + _WHY.get(n.op_type, ""))
            try:
                fn(self, n)
            except HwsimError:
                raise
            except Exception as e:  # an attribute or operand the converter did not expect
                raise UnsupportedOpError(f"{self.where(n)} cannot be converted: {type(e).__name__}: "
                                         f"{first_line(e)}") from e
        outputs = tuple(self._output(o.name) for o in self.g.output)
        graph = Graph(tuple(self.nodes), (Input(self.input_name, self.shape(self.input_name)),), outputs,
                      self.params, self.name, batch_fixed=self.batch_fixed)
        return with_source_shapes(graph, {ir: self.shape(o.name) for ir, o in zip(outputs, self.g.output)})

    def _live(self) -> set[int]:
        """The nodes the graph outputs depend on (a node nothing reads is neither converted nor refused)."""
        needed, live = set(self.graph_outputs), set()
        for n in reversed(self.onnx_nodes):
            if any(o in needed for o in n.output if o):
                live.add(id(n))
                needed.update(i for i in n.input if i)
        return live

    def _foldable(self, n) -> bool:
        """Computed from constants (or shapes) alone: the source's value becomes a constant."""
        if n.op_type in _RANDOM or any(a.type in (5, 10) for a in n.attribute):  # GRAPH / GRAPHS: control flow
            return False
        if n.op_type in ("Shape", "Size"):
            return all(o in self.values for o in n.output if o)
        return all(i in self.consts for i in n.input if i) and all(o in self.values for o in n.output if o)

    def _output(self, name: str) -> str:
        if name in self.ir and self.ir[name] != self.input_name:
            return self.ir[name]
        if name == self.input_name or self.ir.get(name) == self.input_name:
            raise UnsupportedOpError(f"graph output '{name}' is the model's input itself")
        raise UnsupportedOpError(f"graph output '{name}' is a constant (it does not depend on the input)")

    # -- reading operands
    @staticmethod
    def node_name(n) -> str:
        return n.name or n.output[0]

    def where(self, n) -> str:
        return f"ONNX node '{self.node_name(n)}' ({n.op_type})"

    def refuse(self, n, why: str):
        raise UnsupportedOpError(f"{self.where(n)}: {why}")

    def attr(self, n, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in n.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    return v.decode()
                return [b.decode() if isinstance(b, bytes) else b for b in v] if isinstance(v, list) else v
        return default

    def opset(self, domain: str = "") -> int:
        """The model's opset of ``domain`` (a custom domain it does not import counts as version 1, as in qonnx)."""
        if domain in DEFAULT_DOMAINS:
            return self.opsets.get("", self.opsets.get("ai.onnx", 0))
        return self.opsets.get(domain, 1)

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray:
        return self.consts[name]

    def scalar(self, name: str) -> float | None:
        """The value of a one-element numeric constant, None for anything else."""
        if not self.is_const(name):
            return None
        v = self.const(name)
        return float(v.reshape(())) if v.size == 1 and np.issubdtype(v.dtype, np.number) else None

    def const_input(self, n, index: int, what: str, default: Any = None, required: bool = False) -> Any:
        """The constant operand ``index`` of ``n`` (``default`` when absent); refused when it is computed."""
        if index >= len(n.input) or not n.input[index]:
            if required:
                self.refuse(n, f"has no {what}")
            return default
        name = n.input[index]
        if name not in self.consts:
            self.refuse(n, f"its {what} '{name}' is computed from the input; hwsim needs it constant")
        return self.consts[name]

    def act(self, name: str, n) -> str:
        """The IR value of activation operand ``name`` of ``n``."""
        if name in self.ir:
            return self.ir[name]
        if name in self.consts:
            self.refuse(n, f"operand '{name}' is a constant where hwsim expects a value computed from the input")
        self.refuse(n, f"operand '{name}' has no value")

    def operand(self, name: str, n, rank: int) -> str:
        """An activation, or a CONSTANT node broadcasting a constant over the batch (``rank``: see :meth:`constant`)."""
        return self.constant(n, self.consts[name], rank, name) if name in self.consts else self.act(name, n)

    def producer(self, name: str):
        return self._producer.get(name)

    def consumers(self, name: str) -> list:
        return self._consumers.get(name, [])

    def absorb(self, *nodes) -> None:
        """Mark later nodes as computed by the node being converted (a fused pattern)."""
        self._absorbed.update(id(m) for m in nodes)

    # -- shapes and the batch
    def shape(self, name: str) -> tuple[int, ...]:
        """The ONNX (source) shape of tensor ``name``."""
        return tuple(int(s) for s in np.shape(self.values[name]))

    def ishape(self, name: str) -> tuple[int, ...]:
        """The IR shape of activation ``name`` (its ONNX shape, or that with a leading unit batch dim)."""
        return self.shapes[self.ir[name]]

    def offset(self, name: str) -> int:
        """IR dims minus ONNX dims of activation ``name`` (1 when it carries a leading unit batch dim)."""
        return len(self.ishape(name)) - len(self.shape(name))

    def dim(self, n, name: str, axis: int, what: str = "axis", batch_ok: bool = False) -> int:
        """The IR dim of ONNX axis ``axis`` of activation ``name``; refuses the batch dim unless ``batch_ok`` (and
        with a batch above 1 always)."""
        rank = len(self.shape(name))
        a = int(axis)
        if not -rank <= a < rank:
            self.refuse(n, f"{what} {axis} out of range for rank {rank}")
        d = a % rank + self.offset(name)
        if d == 0 and not (batch_ok and self.batch == 1):
            self.refuse(n, f"{what} {axis} is the batch dimension; hwsim keeps the batch first and whole"
                        + (f" ({BATCH_ONE} when the model moves it)" if self.batch != 1 else ""))
        return d

    def out_shape(self, n, name: str, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The IR shape of ``n``'s output ``name`` (ONNX shape ``shape``, by default the source's): the same when
        its first dim is the batch; with batch 1 otherwise a leading unit dim (the graph becomes batch_fixed)."""
        shape = self.shape(name) if shape is None else tuple(int(s) for s in shape)
        if shape and shape[0] == self.batch:
            return shape
        if self.batch != 1:
            self.refuse(n, f"output '{name}' of shape {shape} does not keep the batch ({self.batch}) as its first "
                           f"dim: the model moves or merges the batch dimension; {BATCH_ONE}")
        self.batch_fixed = True
        return (1,) + shape

    def batched(self, n, name: str) -> None:
        """Refuse an op that reads dim 1 as channels on a value whose first dim is not the batch."""
        if self.offset(name):
            self.refuse(n, f"operand '{name}' of shape {self.shape(name)} does not have the batch as its first dim "
                           "(the model merged or moved it); hwsim reads channels on dim 1 of a batch-first value")

    # -- writing IR
    def fresh(self, n, suffix: str) -> str:
        """A new value name for a helper node of ``n`` (no ONNX tensor has it)."""
        base = f"{n.output[0]}/{suffix}"
        name, k = base, 1
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    def emit(self, n, op, inputs, attrs=None, params=None, meta=None, *, name: str | None = None,
             shape: tuple[int, ...] | None = None) -> str:
        """Append an IR node for ``n`` (named by its first output unless ``name``); returns its name. ``shape`` is
        the IR shape; by default that of the source's value (:meth:`out_shape`)."""
        from mapping.graph import NoAttrs, Node

        name = n.output[0] if name is None else name
        if shape is None:
            v = self.values.get(name)
            if v is None:
                self.refuse(n, f"output '{name}' has no value in the source's run")
            if not np.issubdtype(v.dtype, np.floating):
                self.refuse(n, f"output '{name}' is {v.dtype}; hwsim's IR computes float32 tensors")
            shape = self.out_shape(n, name)
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.batch:
            self.refuse(n, f"output '{name}' of shape {shape} does not keep the batch ({self.batch}) as its first "
                           "dim")
        self.nodes.append(Node(name, op, tuple(inputs), shape, NoAttrs() if attrs is None else attrs,
                               params or {}, self.node_name(n), meta or {}))
        self.ir[name] = name
        self.shapes[name] = shape
        self._taken.add(name)
        return name

    def emit_as(self, n, op, inputs, attrs, natural: tuple[int, ...], *, name: str | None = None) -> str:
        """Emit ``op`` whose IR output has shape ``natural``; when the output's IR shape (:meth:`out_shape`) differs
        (a unit batch dim gained or lost), the op is a helper node followed by a RESHAPE named ``name``."""
        from mapping.graph import Op, Reshape

        name = n.output[0] if name is None else name
        out = self.out_shape(n, name)
        if tuple(natural) == out:
            return self.emit(n, op, inputs, attrs, name=name, shape=out)
        y = self.emit(n, op, inputs, attrs, name=self.fresh(n, str(getattr(op, "value", op))), shape=natural)
        return self.emit(n, Op.RESHAPE, [y], Reshape(out[1:]), name=name, shape=out)

    def reshape_to(self, n, src: str, shape: tuple[int, ...], suffix: str = "view") -> str:
        """IR value ``src`` viewed as IR shape ``shape`` (a helper RESHAPE, or ``src`` itself when it has it)."""
        from mapping.graph import Op, Reshape

        if self.shapes[src] == tuple(shape):
            return src
        return self.emit(n, Op.RESHAPE, [src], Reshape(tuple(shape[1:])), name=self.fresh(n, suffix), shape=shape)

    def alias(self, n, src: str, out: str | None = None) -> None:
        """``n``'s output is its operand ``src`` unchanged (Identity, Dropout, a no-op Cast or Slice)."""
        self.ir[out or n.output[0]] = self.act(src, n)

    def add_param(self, tensor: str, value: np.ndarray, n=None, role: str = "value") -> str:
        """A parameter for ONNX tensor ``tensor``, keyed by its name when it is a named initializer, else (an
        exporter's anonymous or a folded tensor) by ``n``'s node name and ``role``; one tensor keeps one key, so a
        weight read by several nodes is stored once (also through an Identity: torch's exporter reads a weight tied
        between two modules as the initializer and an Identity of it). Another value under a taken key gets a
        suffix."""
        while (p := self._producer.get(tensor)) is not None and p.op_type == "Identity" and p.input[0] in self.consts:
            tensor = p.input[0]
        key = tensor
        if n is not None and (tensor not in self._initializers or _ANONYMOUS.fullmatch(tensor)):
            key = self._keys.setdefault(tensor, f"{self.node_name(n)}.{role}")
        value = np.ascontiguousarray(value, dtype=np.float32)
        k, i = key, 1
        while k in self.params and not (self.params[k].shape == value.shape and np.array_equal(self.params[k], value)):
            k, i = f"{key}#{i}", i + 1
        self.params[k] = value
        return k

    def constant(self, n, value: np.ndarray, rank: int, key: str) -> str:
        """A CONSTANT node broadcasting ``value`` (aligned to ``rank`` dims) over the batch: params "value" of shape
        (1, *rest). Its dim 0 must be 1 or constant along the batch; with batch 1 a constant whose dim 0 is not 1
        gets a leading unit dim (an IR rank of ``rank`` + 1), as a value that moved the batch does."""
        from mapping.graph import Op

        v = np.asarray(value, dtype=np.float32)
        if v.ndim > rank:
            self.refuse(n, f"constant '{key}' of shape {v.shape} has more dims than the value it meets")
        v = v.reshape((1,) * (rank - v.ndim) + v.shape)
        if v.shape[0] != 1:
            if self.batch == 1:
                v = v[None]
            elif v.shape[0] != self.batch or not np.all(v == v[:1]):
                self.refuse(n, f"constant '{key}' of shape {v.shape} differs along the batch dimension")
            else:
                v = v[:1]
        pk = self.add_param(key, v, n, "value")
        return self.emit(n, Op.CONSTANT, [self.input_name], params={"value": pk}, name=self.fresh(n, "const"),
                         shape=(self.batch,) + v.shape[1:])


_WHY = {
    "If": ": control flow is not in hwsim's IR", "Loop": ": control flow is not in hwsim's IR",
    "Scan": ": control flow is not in hwsim's IR",
    "QuantizeLinear": ": integer (QDQ) activations are not in hwsim's IR; export QONNX (Quant nodes) instead",
    "DequantizeLinear": ": integer (QDQ) activations are not in hwsim's IR; export QONNX (Quant nodes) instead",
}


def window_pads(imp, n, sizes, kernels, strides, dilations) -> list[tuple[int, int]]:
    """(begin, end) per spatial axis of an ONNX window op (Conv, MaxPool, AveragePool; 1-D to 3-D) from ``pads``
    (all begins, then all ends) or ``auto_pad`` (SAME_UPPER puts an odd total's extra pixel after, SAME_LOWER
    before)."""
    k = len(kernels)
    auto = imp.attr(n, "auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = [int(v) for v in imp.attr(n, "pads", [0] * 2 * k)]
        return [(p[i], p[i + k]) for i in range(k)]
    if auto == "VALID":
        return [(0, 0)] * k
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        imp.refuse(n, f"auto_pad {auto!r}")
    out = []
    for x, kk, s, d in zip(sizes, kernels, strides, dilations):
        total = max((math.ceil(x / s) - 1) * s + (kk - 1) * d + 1 - x, 0)
        out.append((total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2))
    return out
