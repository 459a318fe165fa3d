"""Builds a :class:`~mapping.graph.Graph` from a torch.fx graph whose every node's value is known.

The fx graph comes from ``torch.fx`` symbolic tracing or from ``torch.export`` (ATen ops); the values from one
run of it on the sample input (``mapping.trace``). Each fx node is one of three kinds:

* **data**: a float32 tensor computed from the model's input — becomes IR nodes;
* **const**: a tensor not computed from the input (parameters, buffers, anything computed from them alone,
  ``torch.zeros(...)``) — folded: it is a parameter of the op that reads it, or a CONSTANT node;
* **python**: sizes, dims, flags (``x.shape[0]``, ``x.size(1) // 2``) — static for this input shape (handlers write
  their values into the fx nodes' arguments).

The batch dimension: every IR value's first dimension is the batch N. A torch value whose first dimension is
not N (a model that moves or merges the batch, as attention code that permutes ``(B, L, 3, H, d)`` to
``(3, B, H, L, d)`` does) is kept with a leading unit dimension when N = 1 (its IR dims are the torch dims + 1,
the same memory layout), and the graph is then marked ``batch_fixed``: it computes one sample per call. The batch
size used as a number (``y / x.shape[0]``, ``torch.arange(x.size(0))``) is found by building the graph once more from
a run at batch N + 1 (:func:`mapping._batch_check.batch_checked`): its graph is ``batch_fixed`` at N = 1 and refused at N > 1.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from hwsim.errors import ConversionError, UnsupportedOpError
from mapping.graph import Concat, Graph, Input, NoAttrs, Node, Op, Reshape, Slice, with_source_shapes

__all__ = ["Builder", "BatchMoved", "Rerun", "batch_rerun", "module_path", "untuple"]

# ops of (N, C, H, W) values, applied window by window to windows merged into the batch (at most _MAX_WINDOWS)
_IMAGE_OPS = frozenset({Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.MAXPOOL, Op.AVGPOOL, Op.ADAPTIVE_AVGPOOL, Op.UPSAMPLE, Op.GROUPNORM})
_MAX_WINDOWS = 64
# ops whose value depends on their input's shape only: constants for a traced input shape
_SHAPE_ONLY = frozenset({"zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full", "new_tensor"})
# ops that turn a tensor's values into Python numbers (torch.export writes .item() as _local_scalar_dense)
_TO_PYTHON = frozenset({"item", "tolist", "_local_scalar_dense", "__bool__", "__int__", "__float__", "__index__"})


def _target_name(n: fx.Node) -> str:
    t = n.target
    if isinstance(t, str):
        return t
    if isinstance(t, torch._ops.OpOverload):
        return t.overloadpacket.__name__
    return getattr(t, "__name__", "")


def _flat(a: Any) -> list:
    return [y for x in a for y in _flat(x)] if isinstance(a, (tuple, list)) else [a]


def untuple(gm: fx.GraphModule, values: dict[str, Any]) -> None:
    """Make every tensor of a tuple value read through ``getitem(t, int)``: a tuple passed whole to an op
    (``torch.cat(x.chunk(2))``, ``return x.split(3)``) gets one getitem node per element in its place, and
    ``t.values`` / ``t.indices`` of a named tuple (``x.max(1).values``) becomes ``getitem``. Rewrites ``gm``'s
    graph in place and records the new nodes' values."""
    graph = gm.graph
    for n in list(graph.nodes):
        if n.op == "call_function" and n.target is getattr and isinstance(n.args[0], fx.Node):
            v = values.get(n.args[0].name)
            if isinstance(v, tuple) and isinstance(getattr(v, str(n.args[1]), None), torch.Tensor):
                k = next(i for i, t in enumerate(v) if t is getattr(v, n.args[1]))  # torch.return_types.*
                n.target, n.args = operator.getitem, (n.args[0], k)
        if n.op == "call_function" and n.target in (operator.getitem, getattr):
            continue

        def spread(a: Any, n: fx.Node = n) -> Any:
            if isinstance(a, (list, tuple)):
                return type(a)(spread(x) for x in a) if not hasattr(a, "_fields") else a
            v = values.get(a.name) if isinstance(a, fx.Node) else None
            if not isinstance(v, (tuple, list)) or not any(isinstance(t, torch.Tensor) for t in v):
                return a
            items = []
            with graph.inserting_before(n):
                for k in range(len(v)):
                    g = graph.call_function(operator.getitem, (a, k))
                    g.meta.update(a.meta)
                    values[g.name] = v[k]
                    items.append(g)
            return items

        n.args = tuple(spread(a) for a in n.args)
        n.kwargs = {k: spread(a) for k, a in n.kwargs.items()}


def module_path(n: fx.Node) -> str:
    """The qualified name of the innermost module an fx node was traced in ("" at the top level)."""
    stack = n.meta.get("nn_module_stack")
    if stack:
        last = list(stack.values())[-1]
        return last[0] if isinstance(last, tuple) else str(list(stack)[-1])
    return str(n.target) if n.op == "call_module" else ""


def _kept(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
        return type(v)(_kept(t) for t in v)
    return v


class _Values(fx.Interpreter):
    """Runs the traced module, keeping a copy of every value (in-place ops cannot rewrite it)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        v = super().run_node(n)
        self.values[n.name] = _kept(v)
        return v


@dataclass(frozen=True)
class Rerun:
    """The traced module run once more, on the sample input with its first sample appended (batch ``B + 1``)."""

    gm: fx.GraphModule  # the traced module, or torch.export's graph of it at B + 1 (the same node names)
    values: dict[str, Any]  # every node's value at B + 1
    calls: dict[str, tuple]  # every node's (op, target, args, kwargs) before building (handlers rewrite them)

    def restore(self) -> None:
        for n in self.gm.graph.nodes:
            if n.name in self.calls:
                n.op, n.target, n.args, n.kwargs = self.calls[n.name]


def batch_rerun(gm: fx.GraphModule, values: dict[str, Any], x: torch.Tensor,
                retrace=None) -> tuple[frozenset[str] | None, Rerun | None]:
    """Run ``gm`` (first :func:`untuple`'d) once more at batch ``B + 1``: the values whose first dimension equals the
    batch size ``B`` without being the batch (``x.transpose(0, 1)`` with as many channels as samples; at batch 1,
    ``x.reshape(1, -1)``), whose first dimension stays ``B`` there, and the run (for :func:`batch_checked`). A graph
    specialised to ``B`` (torch.export's guards) is traced again at ``B + 1`` by ``retrace(x)`` and read by node
    name. A model that cannot run at ``B + 1``: (None, None) at batch 1 (its graph computes one sample:
    ``batch_fixed``), else (empty, None)."""
    batch = int(x.shape[0])
    bigger = torch.cat([x, x[:1]])
    untuple(gm, values)
    run = _Values(gm)
    try:
        with torch.no_grad():
            run.run(bigger)
    except Exception:
        try:
            other = retrace(bigger) if retrace is not None else None
            if other is None or {n.name for n in other.graph.nodes} != {n.name for n in gm.graph.nodes}:
                return (None if batch == 1 else frozenset()), None
            run = _Values(other)
            with torch.no_grad():
                run.run(bigger)
            untuple(other, run.values)
        except Exception:
            return (None if batch == 1 else frozenset()), None
    not_batch = frozenset(k for k, v in values.items() if _first(v) == batch and _first(run.values.get(k)) != batch + 1)
    calls = {n.name: (n.op, n.target, n.args, n.kwargs) for n in run.module.graph.nodes}
    return not_batch, Rerun(run.module, run.values, calls)


class BatchMoved(UnsupportedOpError):
    """A value moves or merges the batch dimension of a trace at batch > 1 (one graph per sample cannot hold it)."""


class Builder:
    """Converts fx nodes one by one; handlers (``mapping._torch_ops``) call :meth:`emit`, :meth:`ref`, ..."""

    def __init__(self, gm: fx.GraphModule, values: dict[str, Any], batch: int, name: str,
                 not_batch: frozenset[str] | None = frozenset()):
        self.gm, self.values, self.batch, self.name = gm, values, batch, name
        # fx values whose first dim equals the batch size but is not the batch (None: the model runs at this batch only)
        self.not_batch = frozenset() if not_batch is None else not_batch
        self.modules = dict(gm.named_modules())
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.ir: dict[str, str] = {}  # fx data node -> IR value name
        self.shapes: dict[str, tuple[int, ...]] = {}  # IR value name -> IR shape
        self.kinds: dict[str, str] = {}
        self.parts: dict[str, Any] = {}  # tuple-valued data nodes: index -> handler of getitem
        self.constants: dict[tuple[str, int], str] = {}  # (const fx node, rank) -> its CONSTANT IR node
        self.tensors: dict[tuple, tuple[torch.Tensor, str]] = {}  # a tensor's memory and layout -> (it, its key)
        self.input_name = ""
        self.batch_fixed = not_batch is None
        self.sources: dict[str, tuple[int, ...]] = {}  # output -> its torch shape

    # ------------------------------------------------------------------ classification and values
    def kind(self, a: Any) -> str:
        if isinstance(a, fx.Node):
            return self.kinds.get(a.name, "python")
        if isinstance(a, (list, tuple)):
            ks = {self.kind(x) for x in a}
            return "data" if "data" in ks else ("const" if "const" in ks else "python")
        return "const" if isinstance(a, torch.Tensor) else "python"

    def val(self, a: Any) -> Any:
        """The concrete value of an argument (recorded value of an fx node, recursively in lists)."""
        if isinstance(a, fx.Node):
            return self.values[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(x) for x in a)
        return a

    def _classify(self, n: fx.Node) -> str:
        v = self.values.get(n.name)
        if n.op == "placeholder":  # optional extra arguments of forward left at their (non-tensor) defaults
            return "data" if isinstance(v, torch.Tensor) else "python"
        if n.op == "get_attr":
            return "const"
        tensors = isinstance(v, torch.Tensor) or (isinstance(v, (tuple, list)) and any(
            isinstance(t, torch.Tensor) for t in v))
        if not tensors:
            if _target_name(n) in _TO_PYTHON and any(self.kinds.get(i.name) == "data" for i in n.all_input_nodes):
                raise UnsupportedOpError(f"{self.what(n)} takes a Python number from values computed from the input: "
                                         "a graph would freeze it at the check input's value; keep it a tensor "
                                         "(e.g. y / y.abs().amax(dim, keepdim=True), not y / y.abs().max().item())")
            return "python"
        if _target_name(n) in _SHAPE_ONLY:  # torch.zeros_like(x): its value does not depend on x's values
            return "const"
        return "data" if any(self.kinds.get(i.name) == "data" for i in n.all_input_nodes) else "const"

    # ------------------------------------------------------------------ shapes and dims
    def tshape(self, a: fx.Node) -> tuple[int, ...]:
        return tuple(self.values[a.name].shape)

    def ishape(self, a: fx.Node) -> tuple[int, ...]:
        return self.shapes[self.ref(a)]

    def offset(self, a: fx.Node) -> int:
        """IR dims minus torch dims of a data value (1 when it carries a leading unit batch dimension)."""
        return len(self.ishape(a)) - len(self.tshape(a))

    def dim(self, a: fx.Node, d: int, where: fx.Node, batch_ok: bool = False) -> int:
        """The IR dimension of torch dimension ``d`` of data operand ``a``; refuses the batch dimension."""
        rank = len(self.tshape(a))
        if not -rank <= d < max(rank, 1):
            raise UnsupportedOpError(f"{self.what(where)}: dimension {d} out of range for rank {rank}")
        d = d % rank if rank else 0
        ir = d + self.offset(a)
        if ir == 0 and not batch_ok:
            raise UnsupportedOpError(f"{self.what(where)} works along the batch dimension")
        return ir

    def out_shape(self, n: fx.Node, torch_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """The IR shape of fx node ``n``'s tensor value (see the module docstring for the batch rule)."""
        shape = tuple(int(s) for s in (torch_shape if torch_shape is not None else self.values[n.name].shape))
        if shape and shape[0] == self.batch and n.name not in self.not_batch:
            return shape
        if self.batch != 1:
            raise BatchMoved(f"{self.what(n)} moves or merges the batch dimension (its value has shape "
                             f"{shape} for a batch of {self.batch}); trace such a model with batch 1")
        self.batch_fixed = True
        return (1,) + shape

    def what(self, n: fx.Node) -> str:
        target = getattr(n.target, "__name__", str(n.target))
        path = module_path(n)
        return f"{n.op} '{target}'" + (f" in module '{path}'" if path else "")

    # ------------------------------------------------------------------ emitting
    def ref(self, a: Any, where: fx.Node | None = None, rank: int | None = None) -> str:
        """The IR value name of a data operand; a const tensor operand becomes a CONSTANT node (of at least
        ``rank`` torch dims, leading unit dims added as torch's broadcasting adds them)."""
        if isinstance(a, fx.Node) and a.name in self.ir:
            return self.ir[a.name]
        if self.kind(a) == "const" and isinstance(a, fx.Node) and isinstance(self.values[a.name], torch.Tensor):
            return self.constant(a, rank)
        what = self.what(where) if where is not None else "an op"
        raise UnsupportedOpError(f"{what} with a non-tensor operand {a!r}")

    def constant(self, a: fx.Node, rank: int | None = None, value: np.ndarray | None = None, tag: str = "") -> str:
        """A CONSTANT node holding const value ``a`` (or ``value``, a function of it named by ``tag``) broadcast
        over the batch; a value of fewer than ``rank`` dims gets leading unit dims first (it broadcasts against a
        rank-``rank`` torch value)."""
        arr = np.asarray(value if value is not None else self.values[a.name].detach().cpu().to(torch.float32).numpy(),
                         np.float32)
        if rank is not None and arr.ndim < rank:
            arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
        if (a.name + tag, arr.ndim) in self.constants:
            return self.constants[(a.name + tag, arr.ndim)]
        if arr.ndim and arr.shape[0] == self.batch and self.batch > 1 and a.name not in self.not_batch:
            if not np.all(arr == arr[:1]):
                raise UnsupportedOpError(f"constant '{a.name}' differs between the samples of the batch")
            arr = arr[:1]
        shape = (1,) + arr.shape if (arr.ndim == 0 or arr.shape[0] != 1) else arr.shape
        key = (str(a.target) if a.op == "get_attr" else f"{a.name}.value") + (f".{tag}" if tag else "")
        if key in self.params and self.params[key].shape != shape:  # the same tensor at another rank
            key = f"{key}.rank{len(shape)}"
        key = self.add_param(key, arr.reshape(shape))
        name = f"{a.name}_{tag or 'const'}"
        name = name if not any(k[0] == a.name + tag for k in self.constants) else f"{name}{arr.ndim}"
        self.nodes.append(Node(name, Op.CONSTANT, (self.input_name,), (self.batch,) + shape[1:], NoAttrs(),
                               {"value": key}, module_path(a)))
        self.shapes[name] = (self.batch,) + shape[1:]
        self.constants[(a.name + tag, arr.ndim)] = name
        return name

    def param(self, a: Any, where: fx.Node, role: str) -> str:
        """A parameter key for a const tensor operand (a weight, a bias, ...)."""
        if self.kind(a) != "const":
            raise UnsupportedOpError(f"{self.what(where)}: its {role} is computed from the input; only "
                                     "weights that do not depend on the input are supported")
        v = self.val(a)
        if isinstance(a, fx.Node) and a.op == "get_attr":  # the module's own tensor (a tied one keeps its first key)
            live = functools.reduce(getattr, str(a.target).split("."), self.gm)
            same = isinstance(live, torch.Tensor) and isinstance(v, torch.Tensor) and live.dtype == v.dtype and \
                live.shape == v.shape and torch.equal(live.detach(), v)
            return self.add_param(str(a.target), live if same else v)
        return self.add_param(f"{where.name}.{role}", v)

    def add_param(self, key: str, t: Any) -> str:
        """The parameter ``key`` holding ``t``; a tensor given before (a weight tied between two modules:
        ``l2.weight = l1.weight``) keeps its first key, so it is stored and counted once."""
        same = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype) \
            if isinstance(t, torch.Tensor) else None
        if same in self.tensors:
            return self.tensors[same][1]
        if key not in self.params:
            arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
            self.params[key] = arr.astype(np.float32, copy=True)
        if same is not None:
            self.tensors[same] = (t, key)  # t held: its memory holds no other tensor while building
        return key

    def emit(self, n: fx.Node, op: Op, inputs: Sequence[str], attrs: Any = NoAttrs(),
             params: dict[str, str] | None = None, meta: dict | None = None, *, name: str | None = None,
             shape: tuple[int, ...] | None = None, module: str | None = None) -> str:
        """Append one IR node for fx node ``n`` (named after it unless ``name``); returns its name. An image op
        on windows merged into the batch (IR shape (1, W, C, H, W)) is applied to each window in turn."""
        name = name or n.name
        shape = shape if shape is not None else self.out_shape(n)
        v = self.values.get(n.name)  # a 4-d torch value held 5-d in the IR: windows merged into the batch
        if op in _IMAGE_OPS and len(shape) == 5 and inputs and len(self.shapes[inputs[0]]) == 5 and \
                (not isinstance(v, torch.Tensor) or v.dim() == 4):
            return self._per_window(n, op, inputs[0], attrs, params, meta, name, shape, module)
        self.nodes.append(Node(name, op, tuple(inputs), shape, attrs, params or {},
                               module if module is not None else module_path(n), meta or {}))
        self.shapes[name] = shape
        if name == n.name:
            self.ir[n.name] = name
        return name

    def _per_window(self, n: fx.Node, op: Op, src: str, attrs: Any, params, meta, name: str, shape, module) -> str:
        """``op`` on each window of ``src`` (1, W, C, H, W): slice, apply (one node per window referencing the same
        parameters: computed W times, stored once), concatenate."""
        windows = self.shapes[src][1]
        if windows > _MAX_WINDOWS:
            raise UnsupportedOpError(f"{self.what(n)} on {windows} windows merged into the batch dimension (at most "
                                     f"{_MAX_WINDOWS} are unrolled)")
        parts = []
        for i in range(windows):
            one = (1, 1) + self.shapes[src][2:]
            s = self.emit(n, Op.SLICE, [src], Slice(1, i, i + 1), name=f"{name}_w{i}", shape=one, module=module)
            s = self.emit(n, Op.RESHAPE, [s], Reshape(one[2:]), name=f"{name}_w{i}_in", shape=one[1:], module=module)
            y = self.emit(n, op, [s], attrs, params, meta, name=f"{name}_w{i}_op", shape=(1,) + shape[2:],
                          module=module)
            parts.append(self.emit(n, Op.RESHAPE, [y], Reshape((1,) + shape[2:]), name=f"{name}_w{i}_out",
                                   shape=(1, 1) + shape[2:], module=module))
        return self.emit(n, Op.CONCAT, parts, Concat(1), name=name, shape=shape, module=module)

    def alias(self, n: fx.Node, a: Any) -> None:
        """``n`` has the value of data operand ``a`` (dropout in eval, contiguous, ...)."""
        src = self.ref(a, n)
        self.ir[n.name] = src

    # ------------------------------------------------------------------ the walk
    def build(self, handle) -> Graph:
        """Convert every node with ``handle(builder, fx_node)`` (for call_* nodes of kind data)."""
        inputs: list[Input] = []
        outputs: list[str] = []
        sources = self.sources
        from mapping._torch_mask import BOOL_RESULTS  # (imports this module)

        untuple(self.gm, self.values)
        for n in self.gm.graph.nodes:
            self.kinds[n.name] = self._classify(n) if n.op != "output" else "output"
            if n.op == "placeholder" and self.kinds[n.name] == "data":
                if inputs:
                    raise UnsupportedOpError("models with more than one input are not supported")
                shape = tuple(self.values[n.name].shape)
                inputs.append(Input(n.name, shape))
                self.ir[n.name] = self.input_name = n.name
                self.shapes[n.name] = shape
            elif n.op == "output":
                for o in _flat(n.args[0]):
                    if not isinstance(o, fx.Node) or self.kinds.get(o.name) != "data":
                        raise UnsupportedOpError(f"model output {o!r} is not a tensor computed from the input")
                    outputs.append(self.ref(o))
                    sources[self.ref(o)] = tuple(self.values[o.name].shape)
            elif self.kinds[n.name] == "data":
                if not n.users and not _target_name(n).endswith("_"):  # dead (an unused output of a tuple)
                    continue
                v = self.values[n.name]
                if isinstance(v, torch.Tensor) and v.dtype != torch.float32 and not (
                        v.dtype == torch.bool and _target_name(n) in BOOL_RESULTS):  # masks: float 0 / 1
                    raise UnsupportedOpError(f"{self.what(n)} produces a {v.dtype} tensor; hwsim computes float32")
                handle(self, n)
        return with_source_shapes(Graph(tuple(self.nodes), tuple(inputs), tuple(outputs), self.params, self.name,
                                         batch_fixed=self.batch_fixed), sources)

    def references(self) -> dict[str, np.ndarray]:
        """The source's value of every IR value that an fx data node holds (for :func:`mapping.verify.verify`)."""
        refs: dict[str, np.ndarray] = {}
        first: dict[str, str] = {}
        for fx_name, ir_name in self.ir.items():
            v = self.values.get(fx_name)
            if isinstance(v, torch.Tensor) and ir_name in self.shapes and ir_name != self.input_name:
                if int(np.prod(self.shapes[ir_name])) == v.numel():
                    a = v.detach().float().numpy().reshape(self.shapes[ir_name])  # a bool mask: 0 / 1
                    if ir_name not in refs:
                        refs[ir_name], first[ir_name] = a, fx_name
                    elif not np.array_equal(refs[ir_name], a, equal_nan=True):  # a pass-through that is not one
                        raise ConversionError(f"'{fx_name}' is converted as the value of '{first[ir_name]}' (a "
                                              "pass-through: dropout, identity, clone, contiguous, ...), but torch's "
                                              "values differ (a dropout left in training mode, e.g. "
                                              "F.dropout(x, p) without training=self.training?)")
        return refs


def _first(v: Any) -> int | None:
    return int(v.shape[0]) if isinstance(v, torch.Tensor) and v.ndim else None
