"""ONNX and QONNX models -> :class:`~mapping.graph.Graph`, verified against the source's own executor.

``from_onnx(path_or_model, input_shape=None, *, verify=True)``:

1. **Load**: a path to an ``.onnx`` file or an ``onnx.ModelProto``; the default-domain opset must be 13-21; the
   model must have exactly one input that is not an initializer (Brevitas lists its initializers as inputs too).
2. **Shape**: the input's shape is the model's own, with the batch from ``input_shape`` when given; a model with
   symbolic dims needs ``input_shape``. The importer works on a copy whose input has exactly that shape. A file
   whose Reshape carries its export batch as a constant (torch.export folds ``x.size(0)``) runs at that batch only:
   it is imported and verified there, and the graph is then given the batch asked for (refused when it computes
   one sample). A file with ``Shape`` nodes is imported once more at one more sample: a graph that differs (the batch
   size used as a number) is ``batch_fixed`` at batch 1 and refused at a larger batch (:func:`_batch_checked`).
3. **Run the source once** on a seeded sample (standard normal; for a QONNX model whose input feeds a quantizer,
   integers of its range times its scale): onnxruntime for plain ONNX (a copy of the model with every node
   output exposed as a graph output), qonnx's executor for QONNX (``execute_onnx(...,
   return_full_exec_context=True)``). Every value's shape and every constant come from this run: anything
   computed only from initializers, ``Constant`` nodes and shapes (``Shape`` subgraphs, a Quant of a weight) is
   taken from it as a constant, as the tracer takes torch's shapes from one forward pass.
4. **Build** (:class:`mapping.onnx_importer.Importer`): every other ONNX node becomes IR nodes
   (``mapping.onnx_ops``, ``mapping.onnx_moves``, ``mapping.onnx_pools``, ``mapping.onnx_patterns``,
   ``mapping.qonnx``), named by the ONNX node's (first) output, so each IR value has the source's value under the
   same name. Anything the IR cannot express is refused naming the op and the ONNX node. With batch 1, a value
   whose first dim is not the batch (a model that moves or merges it, as ViT attention does) keeps a leading unit
   dim and the graph is ``batch_fixed``; with a larger batch such a model is refused (export and import it with
   batch 1).
5. **Verify** (``verify=True``): :func:`mapping.verify.verify` runs every IR node with hwsim's reference kernels on
   the source's values of its inputs and raises :class:`~hwsim.errors.ConversionError` at the first divergence.

Nothing here is imported by ``import hwsim`` or ``import mapping``: onnx, onnxruntime and qonnx load on first use.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, ShapeError, UnsupportedOpError
from mapping.graph import Graph
from mapping.onnx_importer import DEFAULT_DOMAINS as _DEFAULT_DOMAINS
from mapping.onnx_importer import QONNX_DOMAINS, Importer
from mapping.onnx_importer import first_line as _first_line

__all__ = ["from_onnx", "reference_outputs", "source_values", "OPSETS", "QONNX_DOMAINS"]

OPSETS = range(13, 22)  # default-domain opsets whose semantics the converters follow (Softmax, Split, Squeeze ...)
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
    own, fixed_batch = _static_dims(inp), _batch_reshapes(proto, inp, shape)
    if fixed_batch:  # the file runs at its export batch only: import it there, then take the graph to this batch
        return _rebatched(_import(proto, name, inp, own, verify), shape[0], fixed_batch, own[0])
    return _import(proto, name, inp, shape, verify)


def _import(proto, name: str, inp, shape: tuple[int, ...], verify: bool) -> Graph:
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
    graph = _batch_checked(graph, proto, name, inp, {o: np.shape(values[v.name]) for o, v in
                                                     zip(graph.outputs, fixed.graph.output)})
    from mapping.verify import check_finite_params

    check_finite_params(graph)
    if verify:
        from mapping.verify import verify as check

        reference = {n.name: values[n.name] for n in graph.nodes if n.name in values}
        check(graph, x, reference, source="qonnx's executor" if qonnx else "onnxruntime")
    return graph


def _batch_checked(graph: Graph, proto, name: str, inp, sources: dict[str, tuple[int, ...]]) -> Graph:
    """``graph`` checked against the graph of the same file imported at one more sample: a model that computes with
    its batch size (``Shape`` of the input in arithmetic: ``y / x.shape[0]`` exported with a dynamic batch) gives
    attributes or constants that differ, and its graph is right at this batch only: ``batch_fixed`` at batch 1 (one
    sample per call), refused at a larger batch (as :func:`mapping._builder.batch_checked` does for torch). Only a
    file with ``Shape`` / ``Size`` nodes can carry the batch into a constant; one that does not run at the larger
    batch is left as it is."""
    if graph.batch_fixed or not any(n.op_type in ("Shape", "Size") for n in proto.graph.node):
        return graph
    from mapping._batch_check import batch_number_verdict, graph_difference

    bigger = (graph.batch + 1,) + tuple(graph.input_shape[1:])
    fixed = _with_input_shape(proto, inp.name, bigger)
    qonnx = _is_qonnx(fixed)
    x = _sample(fixed, inp.name, bigger, qonnx)
    try:
        values = _run_qonnx(fixed, inp.name, x) if qonnx else _run_onnxruntime(fixed, inp.name, x, name)
    except HwsimError:
        return graph
    try:
        diff = graph_difference(graph, Importer(fixed, values, inp.name, bigger[0], name, qonnx=qonnx).build())
    except HwsimError as e:
        diff = f"the model at batch {bigger[0]} is not converted as at {graph.batch} ({_first_line(e)})"
    return batch_number_verdict(graph, diff, sources, "the Shape of a value", "import it")


def source_values(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's value on ``x`` (batch and dynamic dims from ``x``) as the model's own executor computes it:
    onnxruntime, or qonnx's for a QONNX model."""
    return _source_run(model, x)[1]


def reference_outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The model's outputs on ``x`` as its own executor computes them (onnxruntime, or qonnx's for QONNX). A model
    that runs at its export batch only (:func:`_batch_reshapes`) runs on ``x`` in pieces of that batch (the last
    one filled up with its first sample)."""
    proto = _check_opset(_load(model)[0])
    own = _static_dims(_graph_input(proto))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if own is None or not _batch_reshapes(proto, _graph_input(proto), x.shape):
        proto, values = _source_run(proto, x)
        return [values[o.name] for o in proto.graph.output]
    pieces = []
    for i in range(0, len(x), own[0]):
        xi = x[i:i + own[0]]
        xi = np.concatenate([xi, np.repeat(xi[:1], own[0] - len(xi), 0)])
        fixed, values = _source_run(proto, xi)
        outs = [values[o.name] for o in fixed.graph.output]
        if any(np.ndim(y) == 0 or np.shape(y)[0] != own[0] for y in outs):
            raise ShapeError(f"the ONNX model runs at its export batch {own[0]} only and its outputs "
                             f"{[np.shape(y) for y in outs]} do not keep the batch first: run it with batch {own[0]}")
        pieces.append([y[:len(x) - i] for y in outs])
    return [np.concatenate(ys) for ys in zip(*pieces)]


def _source_run(model: Any, x: np.ndarray):
    proto, name = _load(model)
    proto = _check_opset(proto)
    inp = _graph_input(proto)
    x = np.ascontiguousarray(x, dtype=np.float32)
    shape = _input_shape(inp, x.shape)
    fixed_batch = _batch_reshapes(proto, inp, shape)
    if fixed_batch:
        raise ShapeError(_fixed_message(fixed_batch, _static_dims(inp)[0], len(x)))
    fixed = _with_input_shape(proto, inp.name, shape)
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


def _batch_reshapes(proto, inp, shape: tuple[int, ...]) -> list[tuple[str, list[int]]]:
    """The Reshape nodes (name, target shape) whose target shape is a constant starting with the model's own batch,
    when ``shape`` asks for another: an exporter that constant-folds ``x.size(0)`` (torch.export, so Brevitas's
    export_qonnx, of a net with nn.Flatten) writes the export batch there, and the file runs at that batch only."""
    from onnx import helper, numpy_helper

    own = _static_dims(inp)
    if own is None or own[0] == shape[0]:
        return []
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name in ("value", "value_ints"):
            v = helper.get_attribute_value(n.attribute[0])
            consts[n.output[0]] = numpy_helper.to_array(v) if n.attribute[0].name == "value" else np.asarray(v)
    found = []
    for n in proto.graph.node:
        target = consts.get(n.input[1]) if n.op_type == "Reshape" and len(n.input) > 1 else None
        if target is not None and target.ndim == 1 and target.size > 1 and int(target[0]) == own[0]:
            found.append((n.name or n.output[0], [int(v) for v in target]))
    return found


def _fixed_message(reshapes: list[tuple[str, list[int]]], export_batch: int, batch: int) -> str:
    name, target = reshapes[0]
    return (f"ONNX Reshape node '{name}' has the constant shape {target}, made for the export batch {export_batch}: "
            f"the model cannot run a batch of {batch}; run it with batch {export_batch}, or re-export it with a "
            "dynamic batch (or at batch 1)")


def _rebatched(graph: Graph, batch: int, reshapes: list[tuple[str, list[int]]], export_batch: int) -> Graph:
    """``graph``, imported and verified at the file's export batch, for ``batch`` samples (each shape's first dim,
    as hwsim rebatches any graph); refused when the graph computes one sample (it moves the batch)."""
    from mapping._batch_check import rebatch

    if graph.batch_fixed:
        raise ShapeError(_fixed_message(reshapes, export_batch, batch) + ", and it moves or merges the batch")
    return rebatch(graph, batch)


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
    so.log_severity_level = 4  # fatal only: errors hwsim handles itself (a refused batch) print nothing
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
