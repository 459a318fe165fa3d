"""Verified import: the IR an importer built computes what its source computes, node by node.

Every importer (``mapping.trace`` for torch, ``mapping.from_onnx`` for ONNX and QONNX) runs the source once on a
sample input and keeps the value of every tensor it can name; :func:`verify` then executes each IR node with
hwsim's reference fp32 kernels **on the source's values of its inputs** (teacher forcing) and compares the
result with the source's value of that node. A node computes the wrong function exactly when its own check
fails, so the first failing node in topological order is the one to name: rounding differences cannot
accumulate across nodes, and a discontinuous op (sign, quantizer, threshold) sees the very inputs the source
saw. Nodes the source has no value for (helpers an importer adds) are computed from their inputs and checked
where a later node is. The cost is one pass of the reference kernels beside the source's own forward pass.

A node passes when ``max|y - ref| <= rtol * max|ref| + atol * max|inputs|`` (NaN where the reference has NaN),
with ``rtol`` and ``atol`` a few hundred fp32 ulps: a wrong op, attribute, parameter or layout moves a value by
far more than that; summation order does not.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hwsim.errors import ConversionError, ShapeError
from mapping.graph import Graph, Node, Op

__all__ = ["verify", "RTOL", "ATOL"]

RTOL = 1e-4  # relative to the largest magnitude of the reference value (fp32 eps = 1.2e-7)
ATOL = 1e-5  # relative to the largest input magnitude (cancellation: x - mean(x), a sum of +-terms)


def _scale(arrays) -> float:
    m = 0.0
    for a in arrays:
        if a.size:
            finite = a[np.isfinite(a)]
            if finite.size:
                m = max(m, float(np.max(np.abs(finite))))
    return m


def _mismatch(y: np.ndarray, ref: np.ndarray, ins, rtol: float, atol: float) -> str | None:
    """None when ``y`` matches ``ref``, else a short description of the difference."""
    if y.shape != ref.shape:
        if y.size != ref.size:
            return f"shape {tuple(y.shape)}, the source computes {tuple(ref.shape)}"
        ref = ref.reshape(y.shape)  # the same values in the IR's batch-first layout
    y = y.astype(np.float64)
    ref = ref.astype(np.float64)
    nan_ref, nan_y = np.isnan(ref), np.isnan(y)
    if np.any(nan_ref != nan_y):
        return "NaN where the source has a number" if np.any(nan_y & ~nan_ref) else "a number where the source has NaN"
    ok = ~nan_ref
    if not np.array_equal(np.isinf(y[ok]), np.isinf(ref[ok])) or not np.array_equal(
            y[ok][np.isinf(y[ok])], ref[ok][np.isinf(ref[ok])]):
        return "an infinity where the source has none (or the other way round)"
    fin = ok & np.isfinite(ref)
    if not np.any(fin):
        return None
    diff = float(np.max(np.abs(y[fin] - ref[fin])))
    bound = rtol * _scale([ref]) + atol * _scale(ins)
    if diff <= bound:
        return None
    rel = diff / max(_scale([ref]), 1e-30)
    return f"max |difference| {diff:.3g} ({rel:.2g} of the largest value; allowed {bound:.2g})"


def _describe(node: Node) -> str:
    where = f", module '{node.module}'" if node.module else ""
    return f"node '{node.name}' (op {node.op.value}{where})"


_LEARNED = frozenset({Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR, Op.BATCHNORM, Op.LAYERNORM, Op.GROUPNORM, Op.PRELU})  # ops whose parameters are trained


def check_finite_params(graph: Graph) -> None:
    """A one-line :class:`~hwsim.errors.ShapeError` naming the first weight, bias or normalization parameter of
    ``graph`` that holds a NaN or an inf: no target computes a meaningful number from it (checked on import, before
    verification). Other constants may be infinite on purpose (an additive attention mask of -inf)."""
    keys = dict.fromkeys(k for n in graph.nodes if n.op in _LEARNED for k in n.params.values())
    for key in keys:
        a = np.asarray(graph.params[key])
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ShapeError(f"{graph.name}: parameter {key!r} holds NaN/inf values")


def verify(graph: Graph, x: np.ndarray, reference: Mapping[str, np.ndarray], *, source: str,
           rtol: float = RTOL, atol: float = ATOL) -> None:
    """Check every node of ``graph`` against ``reference`` (node name -> the source's value on input ``x``).

    Raises :class:`~hwsim.errors.ConversionError` naming the first node whose value diverges from ``source``'s
    (e.g. "torch", "onnxruntime"), with its op and module path. Graph outputs must have a reference value.
    """
    from hwsim.functional import FP32_KERNELS  # the reference kernels (imported here: hwsim depends on mapping)

    returned = [o for o in graph.outputs if o in {i.name for i in graph.inputs}]
    if returned:
        raise ConversionError(f"the model returns its input {returned} unchanged as an output: hwsim simulates "
                              "values computed from the input (leave the input out of the returned values)")
    missing = [o for o in graph.outputs if o not in reference]
    if missing:
        raise ConversionError(f"cannot verify the import: the source gives no value for output(s) {missing}")
    values: dict[str, np.ndarray] = {graph.inputs[0].name: np.ascontiguousarray(x, dtype=np.float32)}
    last_use = {s: i for i, n in enumerate(graph.nodes) for s in n.inputs}
    for i, n in enumerate(graph.nodes):
        fn = FP32_KERNELS.get(n.op)
        if fn is None:
            raise ConversionError(f"cannot verify {_describe(n)}: hwsim has no reference kernel for it")
        ins = [values[s] for s in n.inputs]
        try:
            y = np.asarray(fn(graph, n, ins))
        except Exception as e:  # a kernel refusing its operands is a conversion error as well
            raise ConversionError(f"{_describe(n)} cannot be computed on the values {source} gives its inputs: "
                                  f"{type(e).__name__}: {e}") from e
        ref = reference.get(n.name)
        if ref is not None:
            ref = np.asarray(ref)
            why = _mismatch(y, ref, ins, rtol, atol)
            if why is not None:
                raise ConversionError(f"the imported graph diverges from {source} at {_describe(n)}: {why}")
            y = np.ascontiguousarray(ref.reshape(y.shape), dtype=np.float32)  # teacher forcing
        values[n.name] = y
        for s in n.inputs:
            if last_use.get(s) == i and s not in graph.outputs:
                values.pop(s, None)
