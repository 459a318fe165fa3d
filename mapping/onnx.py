"""ONNX and QONNX models -> :class:`~mapping.graph.Graph`, verified against the source's own executor.

``from_onnx(path_or_model, input_shape=None, *, verify=True)``:

1. **Load**: a path to an ``.onnx`` file or an ``onnx.ModelProto``; the default-domain opset must be 13-21; the
   model must have exactly one input that is not an initializer (Brevitas lists its initializers as inputs too).
2. **Shape**: the input's shape is the model's own, with the batch from ``input_shape`` when given; a model with
   symbolic dims needs ``input_shape``. The importer works on a copy whose input has exactly that shape.
3. **Run the source once** on a seeded sample (standard normal; for a QONNX model whose input feeds a quantizer,
   integers of its range times its scale): onnxruntime for plain ONNX (a copy of the model with every node
   output exposed as a graph output), qonnx's executor for QONNX (``execute_onnx(...,
   return_full_exec_context=True)``). Every value's shape and every constant come from this run: anything
   computed only from initializers, ``Constant`` nodes and shapes (``Shape`` subgraphs, a Quant of a weight) is
   taken from it as a constant, as the tracer takes torch's shapes from one forward pass.
4. **Build**: every other ONNX node becomes IR nodes (``mapping.onnx_ops``, ``mapping.qonnx``), named by the ONNX
   node's (first) output, so each IR value has the source's value under the same name. Anything the IR cannot
   express is refused naming the op and the ONNX node.
5. **Verify** (``verify=True``): :func:`mapping.verify.verify` runs every IR node with hwsim's reference kernels on
   the source's values of its inputs and raises :class:`~hwsim.errors.ConversionError` at the first divergence.

Nothing here is imported by ``import hwsim`` or ``import mapping``: onnx, onnxruntime and qonnx load on first use.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, ShapeError, UnsupportedOpError
from mapping.graph import Graph

__all__ = ["from_onnx", "reference_outputs", "source_values", "OPSETS", "QONNX_DOMAINS"]

OPSETS = range(13, 22)  # default-domain opsets whose semantics the converters follow (Softmax, Split, Squeeze ...)
QONNX_DOMAINS = frozenset({"qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"})
_DEFAULT_DOMAINS = ("", "ai.onnx")
SAMPLE_SEED = 0


def from_onnx(model: Any, input_shape: Any = None, *, verify: bool = True) -> Graph:
    """Import an ONNX or QONNX model (a path or an ``onnx.ModelProto``) into a :class:`Graph`.

    ``input_shape`` is required when the model's input has symbolic dims; otherwise it may only change the batch.
    With ``verify`` (the default) every node is checked against onnxruntime / qonnx's executor
    (:class:`~hwsim.errors.ConversionError` names the first divergent node). Raises
    :class:`~hwsim.errors.UnsupportedOpError` naming the op and its ONNX node for anything hwsim cannot map,
    :class:`~hwsim.errors.ShapeError` for a missing or wrong ``input_shape``, and
    :class:`~hwsim.errors.HwsimError` for a file that does not exist or is not ONNX.
    """
    proto, name = _load(model)
    proto = _check_opset(proto)
    inp = _graph_input(proto)
    shape = _input_shape(inp, input_shape)
    fixed = _with_input_shape(proto, inp.name, shape)
    qonnx = _is_qonnx(fixed)
    x = _sample(fixed, inp.name, shape, qonnx)
    try:
        values = _run_qonnx(fixed, inp.name, x) if qonnx else _run_onnxruntime(fixed, inp.name, x, name)
    except HwsimError as e:
        own = _static_dims(inp)
        if own is not None and own != shape:  # e.g. a Reshape to a constant shape that names the exported batch
            raise HwsimError(f"{e} (the model was exported for input {own}; re-export it for {shape} or with a "
                             "dynamic batch)") from None
        raise
    graph = Importer(fixed, values, inp.name, shape[0], name, qonnx=qonnx).build()
    if verify:
        from mapping.verify import verify as check

        reference = {n.name: values[n.name] for n in graph.nodes if n.name in values}
        check(graph, x, reference, source="qonnx's executor" if qonnx else "onnxruntime")
    return graph


def source_values(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's value on ``x`` (batch and dynamic dims from ``x``) as the model's own executor computes it:
    onnxruntime, or qonnx's for a QONNX model."""
    return _source_run(model, x)[1]


def reference_outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The model's outputs on ``x`` as its own executor computes them (onnxruntime, or qonnx's for QONNX)."""
    proto, values = _source_run(model, x)
    return [values[o.name] for o in proto.graph.output]


def _source_run(model: Any, x: np.ndarray):
    proto, name = _load(model)
    proto = _check_opset(proto)
    inp = _graph_input(proto)
    x = np.ascontiguousarray(x, dtype=np.float32)
    fixed = _with_input_shape(proto, inp.name, _input_shape(inp, x.shape))
    run = _run_qonnx if _is_qonnx(fixed) else (lambda p, i, v: _run_onnxruntime(p, i, v, name))
    return fixed, run(fixed, inp.name, x)


# ----------------------------------------------------------------------------- loading and checks
def _load(model: Any):
    """(ModelProto, name) from a path or a ModelProto; one-line HwsimError for a missing or non-ONNX file."""
    _require("onnx")
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "onnx"
    if not isinstance(model, (str, os.PathLike)):
        raise HwsimError(f"cannot import a {type(model).__name__} as ONNX: pass a path to an .onnx file or an "
                         "onnx.ModelProto")
    path = Path(os.fspath(model))
    if not path.is_file():
        raise HwsimError(f"no such ONNX file: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, external data missing, ...
        raise HwsimError(f"{path} is not an ONNX model ({_first_line(e)})") from None
    if not proto.opset_import or not proto.graph.node:
        raise HwsimError(f"{path} is not an ONNX model (no graph nodes or no opset)")
    return proto, path.stem


def _require(package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise HwsimError(f"importing ONNX models needs the {package} package: pip install {package} "
                         "(or the hwsim[onnx] extra)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _check_opset(proto):
    """``proto`` with its local functions inlined; refuses opsets outside 13-21 and ops of unknown domains."""
    if proto.functions:
        import onnx.inliner

        proto = onnx.inliner.inline_local_functions(proto)
    versions = {o.domain: o.version for o in proto.opset_import}
    v = next((versions[d] for d in _DEFAULT_DOMAINS if d in versions), None)
    if v is None:
        raise UnsupportedOpError("the ONNX model imports no standard opset (domain '')")
    if v not in OPSETS:
        raise UnsupportedOpError(f"ONNX opset {v}: hwsim imports opsets {OPSETS.start}-{OPSETS.stop - 1} "
                                 "(convert with onnx.version_converter.convert_version(model, 17))")
    for n in proto.graph.node:
        if n.domain not in _DEFAULT_DOMAINS and n.domain not in QONNX_DOMAINS:
            raise UnsupportedOpError(f"unsupported ONNX op {n.op_type} of domain '{n.domain}' at node "
                                     f"'{n.name or n.output[0]}'")
    return proto


def _graph_input(proto):
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise UnsupportedOpError(f"the ONNX model has {len(inputs)} inputs ({names}): hwsim imports models with "
                                 "exactly one input")
    inp = inputs[0]
    if not inp.type.HasField("tensor_type"):
        raise UnsupportedOpError(f"input '{inp.name}' is not a tensor")
    if inp.type.tensor_type.elem_type != 1:  # TensorProto.FLOAT
        import onnx

        kind = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
        raise UnsupportedOpError(f"input '{inp.name}' is {kind}: hwsim imports models with a float32 input")
    return inp


def _static_dims(inp) -> tuple[int, ...] | None:
    t = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim) if t.HasField("shape") else ()
    return dims if dims and all(d > 0 for d in dims) else None


def _input_shape(inp, input_shape: Any) -> tuple[int, ...]:
    """The input's shape: the model's static dims, the batch from ``input_shape``; ShapeError when unresolvable."""
    t = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim] \
        if t.HasField("shape") else None
    shown = "unknown rank" if dims is None else "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
    if input_shape is None:
        if dims is None or None in dims:
            raise ShapeError(f"the ONNX model's input '{inp.name}' has dynamic dims {shown}: pass input_shape "
                             "(e.g. --input-shape 1,3,224,224)")
        shape = tuple(dims)
    else:
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise ShapeError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
        if dims is not None and (len(shape) != len(dims)
                                 or any(d is not None and d != s for d, s in zip(dims[1:], shape[1:]))):
            raise ShapeError(f"input_shape {shape} does not match the ONNX model's input '{inp.name}' {shown} "
                             "(only the batch and dynamic dims may change)")
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ShapeError(f"input shape must be positive (N, ...) with a batch and at least one more dim, got {shape}")
    return shape


def _with_input_shape(proto, input_name: str, shape: tuple[int, ...]):
    """A copy of ``proto`` whose input has ``shape``, without intermediate shape annotations (they may name
    another batch) and with the outputs' shapes left to inference."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for i in m.graph.input:
        if i.name == input_name:
            i.type.tensor_type.ClearField("shape")
            for s in shape:
                i.type.tensor_type.shape.dim.add().dim_value = int(s)
    del m.graph.value_info[:]
    for o in m.graph.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")
    return m


def _is_qonnx(proto) -> bool:
    return any(n.domain in QONNX_DOMAINS for n in proto.graph.node)


def _sample(proto, input_name: str, shape: tuple[int, ...], qonnx: bool) -> np.ndarray:
    """The seeded sample input: standard normal; for a QONNX input quantizer, its integer levels times its scale
    (an 8-bit image quantizer with scale 1 would otherwise see only a handful of levels)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    if qonnx:
        from mapping.qonnx import input_levels

        levels = input_levels(proto, input_name)
        if levels is not None:
            lo, hi, scale, zp = levels
            return ((rng.integers(lo, hi + 1, size=shape) - zp) * scale).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- running the source
def _run_onnxruntime(proto, input_name: str, x: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Every tensor's value on ``x``: initializers, and every node output (exposed as graph outputs of a copy)."""
    _require("onnxruntime")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    names = list(dict.fromkeys(o for n in m.graph.node for o in n.output if o))
    del m.graph.output[:]
    m.graph.output.extend(onnx.ValueInfoProto(name=o) for o in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # run the model as written
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs = sess.run(names, {input_name: x})
    except Exception as e:
        raise HwsimError(f"onnxruntime cannot run the ONNX model {name!r}: {_first_line(e)}") from None
    values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    values.update(zip(names, (np.asarray(o) for o in outs)))
    values[input_name] = x
    return values


def _run_qonnx(proto, input_name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's value on ``x`` from qonnx's executor (shapes inferred by qonnx first)."""
    _require("qonnx")
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    try:
        with warnings.catch_warnings():  # qonnx renames the finn domain of its own copy, and says so
            warnings.simplefilter("ignore")
            wrapped = ModelWrapper(m).transform(InferShapes())
            ctx = execute_onnx(wrapped, {input_name: x}, return_full_exec_context=True)
    except Exception as e:
        raise HwsimError(f"qonnx's executor cannot run the QONNX model: {_first_line(e)}") from None
    return {k: np.asarray(v) for k, v in ctx.items() if v is not None}


# ----------------------------------------------------------------------------- the importer
_ANONYMOUS = re.compile(r"onnx::.*|val_\d+|\d+")  # the names torch's exporters generate
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                     "Multinomial"})


class Importer:
    """Converts the ONNX nodes of one model, in order, given every tensor's value from one run of the source.

    Converters (``mapping.onnx_ops.CONVERTERS``, ``mapping.qonnx.CONVERTERS``) are ``fn(importer, node)``; they
    read operands with :meth:`act` / :meth:`const`, emit IR nodes with :meth:`emit` and refuse with
    :meth:`refuse`. A pattern converter may :meth:`absorb` later nodes it has already computed.
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
        from mapping.onnx_ops import CONVERTERS, PATTERNS
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
                                         f"{_first_line(e)}") from e
        outputs = tuple(self._output(o.name) for o in self.g.output)
        return Graph(tuple(self.nodes), (Input(self.input_name, tuple(self.values[self.input_name].shape)),),
                     outputs, self.params, self.name)

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
        if domain in _DEFAULT_DOMAINS:
            return self.opsets.get("", self.opsets.get("ai.onnx", 0))
        return self.opsets.get(domain, 1)

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray:
        return self.consts[name]

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
        """An activation, or a CONSTANT node broadcasting a constant of rank <= ``rank`` over the batch."""
        return self.constant(n, self.consts[name], rank, name) if name in self.consts else self.act(name, n)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(s) for s in np.shape(self.values[name]))

    def producer(self, name: str):
        return self._producer.get(name)

    def consumers(self, name: str) -> list:
        return self._consumers.get(name, [])

    def absorb(self, *nodes) -> None:
        """Mark later nodes as computed by the node being converted (a fused pattern)."""
        self._absorbed.update(id(m) for m in nodes)

    def axis(self, n, axis: int, rank: int, what: str = "axis") -> int:
        a = int(axis)
        if not -rank <= a < rank:
            self.refuse(n, f"{what} {axis} out of range for rank {rank}")
        a %= rank
        if a == 0:
            self.refuse(n, f"{what} 0 is the batch dimension; hwsim keeps the batch first and whole")
        return a

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
        """Append an IR node for ``n`` (named by its first output unless ``name``); returns its name."""
        from mapping.graph import NoAttrs, Node

        name = n.output[0] if name is None else name
        if shape is None:
            v = self.values.get(name)
            if v is None:
                self.refuse(n, f"output '{name}' has no value in the source's run")
            if not np.issubdtype(v.dtype, np.floating):
                self.refuse(n, f"output '{name}' is {v.dtype}; hwsim's IR computes float32 tensors")
            shape = self.shape(name)
        if not shape or shape[0] != self.batch:
            self.refuse(n, f"output '{name}' of shape {tuple(shape)} does not keep the batch ({self.batch}) as "
                           "its first dim")
        self.nodes.append(Node(name, op, tuple(inputs), tuple(shape), NoAttrs() if attrs is None else attrs,
                               params or {}, self.node_name(n), meta or {}))
        self.ir[name] = name
        self._taken.add(name)
        return name

    def alias(self, n, src: str, out: str | None = None) -> None:
        """``n``'s output is its operand ``src`` unchanged (Identity, Dropout, a no-op Cast or Slice)."""
        self.ir[out or n.output[0]] = self.act(src, n)

    def add_param(self, tensor: str, value: np.ndarray, n=None, role: str = "value") -> str:
        """A parameter for ONNX tensor ``tensor``, keyed by its name when it is a named initializer, else (an
        exporter's anonymous or a folded tensor) by ``n``'s node name and ``role``; one tensor keeps one key, so a
        weight read by several nodes is stored once. Another value under a taken key gets a suffix."""
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
        """A CONSTANT node broadcasting ``value`` (aligned to ``rank`` dims, its dim 0 of size 1 or constant along
        the batch) over the batch: params "value" of shape (1, *rest)."""
        from mapping.graph import Op

        v = np.asarray(value, dtype=np.float32)
        if v.ndim > rank:
            self.refuse(n, f"constant '{key}' of shape {v.shape} has more dims than the value it meets")
        v = v.reshape((1,) * (rank - v.ndim) + v.shape)
        if v.shape[0] != 1:
            if v.shape[0] != self.batch or not np.all(v == v[:1]):
                self.refuse(n, f"constant '{key}' of shape {v.shape} differs along the batch dimension")
            v = v[:1]
        pk = self.add_param(key, v, n, "value")
        return self.emit(n, Op.CONSTANT, [self.input_name], params={"value": pk}, name=self.fresh(n, "const"),
                         shape=(self.batch,) + v.shape[1:])


_WHY = {
    "ConvTranspose": ": transposed convolution is not in hwsim's IR",
    "LSTM": ": recurrent layers are not in hwsim's IR", "GRU": ": recurrent layers are not in hwsim's IR",
    "RNN": ": recurrent layers are not in hwsim's IR",
    "If": ": control flow is not in hwsim's IR", "Loop": ": control flow is not in hwsim's IR",
    "Scan": ": control flow is not in hwsim's IR",
    "QuantizeLinear": ": integer (QDQ) activations are not in hwsim's IR; export QONNX (Quant nodes) instead",
    "DequantizeLinear": ": integer (QDQ) activations are not in hwsim's IR; export QONNX (Quant nodes) instead",
}
