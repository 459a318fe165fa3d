"""The public entry points: ``simulate`` and ``fit``.

The path of a network: a torch module (or a zoo name) is traced into a Graph; the spec's target
package maps it onto its hardware and simulates it. Each target package ``hwsim.<target>`` implements the target
contract (:class:`hwsim.target.Target`: ``SPEC``, ``simulate(graph, spec, x, *, seed, **options) -> Result``,
``cost_model_version()``, optionally ``fit``), checked by :func:`hwsim.target.load_target` before it is used.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwsim.cache import identity_cache
from hwsim.errors import ConversionError, HwsimError, ShapeError, SpecError
from hwsim.report import Result
from hwsim.specs import is_integer, is_real, load_preset, spec_target
from hwsim.target import Target, load_target
from mapping._batch_check import rebatch
from mapping.graph import Graph

__all__ = ["as_graph", "as_spec", "simulate", "fit", "is_onnx"]


def as_spec(spec: Any) -> Any:
    """A spec object, or a preset name / YAML path to load one from."""
    if isinstance(spec, str) or hasattr(spec, "__fspath__"):
        return load_preset(spec)
    spec_target(spec)
    return spec


def is_onnx(model: Any) -> bool:
    """A path to an ``.onnx`` file (str ending in .onnx, or any os.PathLike) or an ``onnx.ModelProto``."""
    if isinstance(model, str):
        return model.lower().endswith(".onnx")
    if isinstance(model, os.PathLike):
        return True
    onnx = sys.modules.get("onnx")  # a ModelProto exists only once onnx is imported
    return onnx is not None and isinstance(model, onnx.ModelProto)


def as_graph(model: Any, input_shape: Sequence[int] | None = None, *, verify: bool = True) -> Graph:
    """A Graph from a Graph, a torch module, a zoo name (``"resnet18"``), or an ONNX / QONNX model (a path to an
    ``.onnx`` file or an ``onnx.ModelProto``).

    For a module, ``input_shape`` is required unless the module came from ``nets.get`` (the zoo's
    default input shape is then used). For an ONNX model it is required when the model's input has
    dynamic dims, and otherwise may only change the batch. For a Graph, ``input_shape`` may only change the batch.
    ``verify``: check every imported node against the source (torch, onnxruntime, qonnx's executor);
    a divergence raises :class:`~hwsim.errors.ConversionError` naming the node. A parameter holding NaN or inf is a
    one-line :class:`~hwsim.errors.ShapeError` (no target computes a meaningful number from it).
    """
    if isinstance(model, Graph):
        _finite_params(model)  # (a traced or imported model is checked on import, before its verification)
        if input_shape is not None and tuple(input_shape)[1:] != model.input_shape[1:]:
            raise ShapeError(f"input_shape {tuple(input_shape)} does not match the traced graph's "
                             f"input {model.input_shape}; trace the model again for another size")
        if input_shape is not None and tuple(input_shape)[0] != model.batch:
            model = _rebatch(model, int(input_shape[0]))
        return model
    if is_onnx(model):
        from mapping.onnx import from_onnx

        return from_onnx(model, input_shape, verify=verify)
    import torch

    import nets
    from mapping.trace import trace

    if not isinstance(model, (str, torch.nn.Module)):
        raise HwsimError(f"cannot simulate a model given as {type(model).__name__}: pass a zoo name, a torch "
                         "nn.Module, a traced Graph or an ONNX / QONNX model (.onnx path or onnx.ModelProto)")
    name = None
    if isinstance(model, str):
        name = model
        model = nets.get(model)
    if input_shape is None:
        input_shape = getattr(model, "hwsim_input_shape", None)
        if input_shape is None and name is not None:
            input_shape = nets.info(name).input_shape
        if input_shape is None:
            raise ShapeError("input_shape is required for a torch module that does not come from the zoo")
    return trace(model, input_shape, name=name or getattr(model, "hwsim_name", None), verify=verify)


@identity_cache(maxsize=32)
def _finite_params(graph: Graph) -> bool:
    """:func:`mapping.verify.check_finite_params` once per graph object (sweeps pass the same graph per point)."""
    from mapping.verify import check_finite_params

    check_finite_params(graph)
    return True


def _rebatch(graph: Graph, batch: int) -> Graph:
    """The same graph for another batch size (every shape's first dimension)."""
    if graph.batch_fixed and batch != 1:
        raise ShapeError(f"{graph.name} moves or merges the batch dimension (or uses its batch size as a number), so its graph computes one sample: "
                         f"simulate it with batch 1 (got a batch of {batch})")
    return rebatch(graph, batch)


def _target_module(spec: Any) -> Target:
    """The package of ``spec``'s target, checked against the target contract (:func:`hwsim.target.load_target`)."""
    return load_target(spec_target(spec))


def _shape_arg(shape: Any) -> tuple[int, ...] | None:
    """``input_shape`` as a tuple of positive ints, or a one-line :class:`ShapeError` naming it."""
    if shape is None:
        return None
    ok = not isinstance(shape, (str, bytes)) and isinstance(shape, Sequence | np.ndarray)
    items = list(shape) if ok else []
    if not items or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in items):
        raise ShapeError(f"input_shape must be a sequence of positive integers like (1, 3, 32, 32), got {shape!r}")
    return tuple(int(s) for s in items)


def keeps_torch_threads(fn):
    """``fn`` leaves the thread count set in torch as it found it: Numba's OpenMP threading layer, started by the
    first parallel kernel after torch's own pool, leaves torch at the machine's count (``torch.set_num_threads(1)``
    then an IMC simulation: 2). Not at import (a process with OpenMP threads must not fork: the sweep workers
    fork from a server that imports hwsim)."""
    @functools.wraps(fn)
    def kept(*args, **kwargs):
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            return fn(*args, **kwargs)
        finally:
            if torch is not None and torch.get_num_threads() != before:
                torch.set_num_threads(before)
    return kept


@keeps_torch_threads
def simulate(model_or_graph: Any, spec: Any, x: np.ndarray | None = None, input_shape: Sequence[int] | None = None,
             seed: int = 0, *, verify: bool = True, **target_options: Any) -> Result:
    """Map a network onto ``spec``'s hardware and simulate it.

    ``x`` (numpy, N×C×H×W or N×F): when given, the outputs the hardware computes are returned in
    ``Result.outputs`` (an array, or a list for a multi-output net); when None, only the cost model
    runs and ``outputs`` is None. ``seed`` drives every random choice (non-idealities).
    ``model_or_graph``: anything :func:`as_graph` takes (a torch module, a zoo name, a Graph, an ``.onnx`` path
    or ``onnx.ModelProto``); ``verify`` checks the import against its source (see :func:`as_graph`).
    ``target_options`` are passed to the target (e.g. ``folding=`` for the XNOR engine).

    Inputs are checked before any work: ``x`` with NaN or ±inf values is refused on every target with a
    one-line :class:`~hwsim.errors.ShapeError` naming the first offending index ("x contains NaN/inf at index
    (0, 1, 4, 7)") — hwsim never returns outputs computed from non-finite inputs; complex, boolean and non-numeric
    dtypes are refused likewise (integer inputs are converted to float32).
    """
    spec = as_spec(spec)
    input_shape = _shape_arg(input_shape)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HwsimError(f"seed must be a non-negative integer, got {seed!r}")
    if x is not None:
        from hwsim.functional import check_values

        x = check_values(x)
        if x.ndim < 2:
            raise ShapeError(f"x must have a batch dimension first (N x C x H x W or N x F), got shape {x.shape}")
        if input_shape is not None and tuple(input_shape) != tuple(x.shape):
            raise ShapeError(f"x has shape {tuple(x.shape)} but input_shape={tuple(input_shape)}")
        input_shape = tuple(x.shape)
    target = _target_module(spec)
    check_options(target.simulate, spec_target(spec), target_options)
    graph = as_graph(model_or_graph, input_shape, verify=verify)
    return _source_shaped(graph, target.simulate(graph, spec, x, seed=seed, **target_options))


def _source_shaped(graph, res):
    """A graph of one sample whose outputs do not keep the batch first: each output in the source model's shape
    (``meta["source_shape"]``; the IR holds a leading unit dim)."""
    if not graph.batch_fixed or res.outputs is None:
        return res
    shapes = [graph[o].meta.get("source_shape") if o in graph else None for o in graph.outputs]
    outs = res.outputs if isinstance(res.outputs, list) else [res.outputs]
    if any(s is not None and np.size(y) != int(np.prod(s)) for y, s in zip(outs, shapes)):
        raise ConversionError(f"{graph.name}: the target's outputs {[np.shape(y) for y in outs]} do not hold the "
                              f"source model's {shapes}")
    outs = [y if s is None else np.reshape(y, s) for y, s in zip(outs, shapes)]
    return dataclasses.replace(res, outputs=outs if isinstance(res.outputs, list) else outs[0])


def check_options(simulate_fn: Any, target: str, options: Mapping[str, Any]) -> None:
    """A one-line :class:`~hwsim.errors.SpecError` naming any option ``simulate_fn`` (a target's ``simulate``) does
    not take, before any work (a TypeError raised inside a simulation is a bug, never read as a user's typo)."""
    import inspect

    params = inspect.signature(simulate_fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "seed"]
    unknown = [k for k in options if k not in takes]
    if unknown:
        raise SpecError(f"{target} target: unknown option{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))}; it takes {', '.join(takes) or 'none'}")
    for k, v in options.items():
        want = _SCALAR_OPTIONS.get(annotation_key(params[k].annotation))
        if want is not None and not want[0](v):
            raise SpecError(f"{target} target: option {k}={v!r} must be {want[1]} (on the command line a JSON "
                            "value: true, false, 3, 0.5, null)")


def annotation_key(annotation: Any) -> str:
    """A target option's annotation as :data:`_SCALAR_OPTIONS` names it: the string of a postponed annotation
    (``from __future__ import annotations``) or a type's name, spaces dropped, ``Optional[X]`` as ``X|None``."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" ", "").replace("typing.", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1] + "|None"
    return text


# target options whose annotation is one of these scalar types: (check, what the message asks for); an option of
# another type is its target's to check (tests/test_api_options.py holds the list)
_SCALAR_OPTIONS = {
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), "true or false"),
    "int": (is_integer, "an integer"),
    "int|None": (lambda v: v is None or is_integer(v), "an integer or null"),
    "float": (is_real, "a number"),
    "float|None": (lambda v: v is None or is_real(v), "a number or null"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def fit(model_or_graph: Any, spec: Any, input_shape: Sequence[int] | None = None, *, verify: bool = True) -> Any:
    """Does the network's weights fit the on-chip memory of ``spec``? (IMC: crossbars.) ``model_or_graph`` and
    ``verify`` as for :func:`simulate`."""
    spec = as_spec(spec)
    input_shape = _shape_arg(input_shape)
    mod = _target_module(spec)
    if not hasattr(mod, "fit"):
        raise HwsimError(f"fit() is defined for IMC specs; got a {spec_target(spec)} spec "
                         "(use simulate(...).report.fits_on_chip)")
    return mod.fit(as_graph(model_or_graph, input_shape, verify=verify), spec)
