"""Sweep points: networks and hardware specs turned into hashable, picklable evaluation units.

A *net reference* says how a worker obtains the traced :class:`~mapping.graph.Graph` of a network:

* :class:`ZooNet` — a zoo name plus builder keywords; each worker traces it itself, once, and caches
  the graph (nothing large crosses process or machine boundaries);
* :class:`GraphNet` — an already traced graph (from a torch module, a Graph the user passed, or an ONNX /
  QONNX model: a path ending in ``.onnx`` or an ``onnx.ModelProto``, imported and verified here, once); it
  travels with the tasks (one copy per chunk of points) and is cached by its content digest.

A *grid* ``(base, {field: [values, ...]})`` expands into the Cartesian product of the values with
:func:`dataclasses.replace`; a point the spec's own validation rejects stays in the sweep as an
error point (it becomes a row with its error). Every point has a stable key: a hash of the net's
identity, the spec's data, the hwsim version and the target's cost-model version (:func:`cost_model_version`), so a
results file can be resumed and a row computed by another cost model is never reused.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, SpecError
from hwsim.specs import plain_value, spec_to_dict
from hwsim.target import source_digest

__all__ = ["ZooNet", "GraphNet", "SpecPoint", "as_net_refs", "expand_specs", "point_key", "graph_digest",
           "torch_threads", "check_shape", "cost_model_version", "source_digest", "sample_shape"]


class torch_threads:
    """Context manager: run torch with ``n`` intra-op threads, restoring the previous count. Tracing
    runs one forward pass on tiny tensors, where extra threads only contend (measured ~100x slower
    with 2 threads on a loaded 2-core machine)."""

    def __init__(self, n: int = 1):
        self.n = n

    def __enter__(self):
        import torch

        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.prev)
        return False


# ----------------------------------------------------------------------------- networks
@dataclass(frozen=True, slots=True)
class ZooNet:
    """A zoo network: ``nets.get(name, **kwargs)`` traced at ``input_shape`` (zoo default if None)."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    input_shape: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={v}" for k, v in self.kwargs) + ")"

    def identity(self) -> dict[str, Any]:
        return {"zoo": self.name, "kwargs": [[k, plain_value(v)] for k, v in self.kwargs],
                "input_shape": None if self.input_shape is None else list(self.input_shape)}

    def key_identity(self) -> dict[str, Any]:
        """The identity plus a digest of the zoo's source (``nets/``): a row of a net whose definition changed is
        recomputed."""
        return {**self.identity(), "zoo_source": source_digest("nets")}

    def build_graph(self):
        import nets
        from hwsim.api import as_graph

        model = nets.get(self.name, **dict(self.kwargs))
        shape = self.input_shape or nets.info(self.name).input_shape
        with torch_threads(1):
            return as_graph(model.eval(), shape).replace(name=self.label)


@dataclass(frozen=True, slots=True)
class GraphNet:
    """A traced graph carried to the workers; ``digest`` identifies its structure and weights."""

    label: str
    digest: str
    graph: Any = field(repr=False, compare=False)

    def identity(self) -> dict[str, Any]:
        return {"graph": self.label, "digest": self.digest}

    def key_identity(self) -> dict[str, Any]:
        return self.identity()  # the digest covers the graph's structure and weights

    def build_graph(self):
        return self.graph



NetRef = ZooNet | GraphNet


def graph_digest(graph) -> str:
    """A content hash of a Graph: node structure (ops, attributes, shapes, wiring) and parameter bytes."""
    h = hashlib.sha256()
    for n in graph.nodes:
        h.update(repr((n.name, n.op.value, n.inputs, n.shape, n.attrs, sorted(n.params.items()),
                       sorted((k, repr(v)) for k, v in n.meta.items()))).encode())
    h.update(repr((graph.inputs, graph.outputs)).encode())
    for k in sorted(graph.params):
        a = np.ascontiguousarray(graph.params[k])
        h.update(k.encode())
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def _net_ref(net: Any, input_shape: Sequence[int] | None, data_shape: Sequence[int] | None = None) -> NetRef:
    from mapping.graph import Graph

    if isinstance(net, (ZooNet, GraphNet)):
        return net
    if _is_onnx(net) or (isinstance(net, Mapping) and _is_onnx(net.get("name"))):
        return _onnx_ref(net, input_shape if input_shape is not None else data_shape)  # as a torch module
    if isinstance(net, str):
        _check_zoo(net, {})
        return ZooNet(net, (), check_shape(input_shape))
    if isinstance(net, Mapping):  # {"name": "resnet20", "base_width": 8, "input_shape": [...]}
        d = dict(net)
        if "name" not in d:
            raise HwsimError(f"a net given as a mapping needs a 'name' key, got keys {sorted(d)}")
        name = d.pop("name")
        shape = d.pop("input_shape", input_shape)
        _check_zoo(name, d)
        return ZooNet(name, tuple(sorted(d.items())), check_shape(shape, f"input_shape of net {name!r}"))
    if isinstance(net, tuple) and len(net) == 2 and isinstance(net[0], str) and isinstance(net[1], Mapping):
        _check_zoo(net[0], net[1])
        return ZooNet(net[0], tuple(sorted(net[1].items())), check_shape(input_shape))
    if isinstance(net, Graph):
        return GraphNet(net.name, graph_digest(net), net)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch = None
    if torch is not None and isinstance(net, torch.nn.Module):
        from hwsim.api import as_graph

        if input_shape is None and getattr(net, "hwsim_input_shape", None) is None:
            input_shape = data_shape  # the data's samples (None without data: as_graph asks for a shape)
        with torch_threads(1):
            g = as_graph(net, input_shape)
        label = getattr(net, "hwsim_name", None) or g.name or type(net).__name__
        return GraphNet(label, graph_digest(g), g)
    raise HwsimError(f"cannot sweep over a net given as {type(net).__name__}: pass a zoo name, "
                     "(name, {kwargs}), {'name': ..., **kwargs}, a torch module, a traced Graph or an .onnx path")


def check_shape(shape: Any, what: str = "input_shape") -> tuple[int, ...] | None:
    """A sweep's ``input_shape`` as a tuple of positive ints (None stays None), or a one-line
    :class:`~hwsim.errors.ShapeError` before the sweep starts (not an error row per point)."""
    from hwsim.errors import ShapeError

    if shape is None:
        return None
    items = list(shape) if isinstance(shape, (list, tuple, np.ndarray)) else []
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in items):
        raise ShapeError(f"{what} must be a list of positive integers like [1, 3, 32, 32], got {shape!r}")
    return tuple(int(v) for v in items)


def _is_onnx(net: Any) -> bool:
    from hwsim.api import is_onnx

    return net is not None and is_onnx(net)


def _onnx_ref(net: Any, input_shape: Sequence[int] | None) -> GraphNet:
    """An ONNX model (a path, an ``onnx.ModelProto``, or ``{"name": path, "input_shape": [...]}``) imported once."""
    import os
    from pathlib import Path

    from hwsim.api import as_graph

    if isinstance(net, Mapping):
        d = dict(net)
        extra = sorted(set(d) - {"name", "input_shape"})
        if extra:
            raise HwsimError(f"an ONNX net takes only 'name' (its path) and 'input_shape', got keys {extra}")
        net, input_shape = d["name"], d.get("input_shape", input_shape)
    g = as_graph(net, check_shape(input_shape, f"input_shape of {net}"))
    label = Path(os.fspath(net)).stem if isinstance(net, (str, os.PathLike)) else g.name
    g = g.replace(name=label)
    return GraphNet(label, graph_digest(g), g)


def _check_zoo(name: str, kwargs: Mapping[str, Any]) -> None:
    import nets

    nets.info(name)  # raises UnknownNetError naming close matches
    bad = sorted(set(kwargs) - set(nets.keywords(name)) - {"seed"})
    if bad:
        raise HwsimError(f"net {name!r} has no keyword(s) {bad}; valid: {nets.keywords(name)}")


def as_net_refs(nets_arg: Any, input_shape: Sequence[int] | None = None,
                data_shape: Sequence[int] | None = None) -> list[NetRef]:
    """Normalise the ``nets`` argument of a sweep (one net or a list of nets) into net references. ``data_shape``
    (a sample of the sweep's data, batch 1) traces a torch module that has no ``input_shape`` of its own or given."""
    from mapping.graph import Graph

    input_shape = check_shape(input_shape)
    single = isinstance(nets_arg, (str, Mapping, Graph)) or _is_pair(nets_arg) or _is_module(nets_arg)
    if single or not isinstance(nets_arg, Iterable):
        nets_arg = [nets_arg]
    refs = [_net_ref(n, input_shape, data_shape) for n in nets_arg]
    if not refs:
        raise HwsimError("sweep: no nets given")
    out: list[NetRef] = []
    seen_ids: set[str] = set()
    labels: dict[str, str] = {}
    for r in refs:
        ident = json.dumps(r.identity(), sort_keys=True, default=repr)
        if ident in seen_ids:  # the same net twice: evaluate it once
            continue
        seen_ids.add(ident)
        if r.label in labels and isinstance(r, GraphNet):  # same name, different graph
            r = GraphNet(f"{r.label}#{r.digest[:6]}", r.digest, r.graph)
        labels[r.label] = ident
        out.append(r)
    return out


def _is_module(x: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, torch.nn.Module)


def _is_pair(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], Mapping)


# ----------------------------------------------------------------------------- specs
@dataclass(frozen=True, slots=True)
class SpecPoint:
    """One hardware point of a sweep: the spec (None when invalid), its plain data, and its error."""

    spec: Any
    data: Mapping[str, Any]  # field -> plain value (enums as values), with "target"
    error: str = ""
    name: str = ""  # the preset the point comes from (the grid's base), "" for a spec object


def _as_spec(s: Any) -> tuple[Any, str]:
    """(spec, the name its rows carry): a preset's name; a YAML file's spec name (the file's ``name:`` or its stem);
    "" for a spec object."""
    from hwsim.api import as_spec

    spec = as_spec(s)
    if isinstance(s, str) or hasattr(s, "__fspath__"):
        return spec, str(getattr(spec, "name", "") or s)
    return spec, ""


@functools.lru_cache(maxsize=64)
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - unresolvable annotations: values are left alone
        return {}


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Grid values as the field's type: an enum from its value, an int for a float field as float."""
    tp = _hints(cls).get(name)
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and not isinstance(value, tp):
        try:
            return tp(value)
        except ValueError:
            raise SpecError(f"{cls.__name__}.{name} must be one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is float and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "2.4e8" (no sign in the exponent) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is tuple or typing.get_origin(tp) is tuple:
        return tuple(value) if isinstance(value, list) else value
    return value


def _check_grid_value(cls: type, name: str, value: Any) -> None:
    """Refuse, before the sweep starts, a grid value no point could use: NaN/inf, or a value that is not of the
    field's type ("abc" for an int field, an unknown enum value). Values out of a field's range, or inconsistent
    with other fields, stay error rows (another combination of the grid may make them valid)."""
    from hwsim.specs import _convert

    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        raise SpecError(f"grid field {name!r}: {value!r} is not a finite number")
    tp = _hints(cls).get(name)
    if tp is None:
        return
    try:
        v = _convert(cls, name, tp, plain_value(value))
    except SpecError as e:
        raise SpecError(f"grid field {name!r}: {e}") from None
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        raise SpecError(f"grid field {name!r}: {value!r} is not a finite number")


def expand_grid(base: Any, grid: Mapping[str, Sequence[Any]]) -> list[SpecPoint]:
    """The Cartesian product of ``grid`` over ``base`` (a spec or preset name), in row-major order
    (the last field varies fastest). Raises :class:`SpecError` for an empty grid, an empty value
    list or a field the spec does not have (naming it and the valid fields)."""
    spec, base_name = _as_spec(base)
    cls = type(spec)
    if not isinstance(grid, Mapping) or not grid:
        raise SpecError(f"empty grid: give at least one {cls.__name__} field with a list of values")
    fields = [f.name for f in dataclasses.fields(spec) if f.init]
    unknown = [k for k in grid if k not in fields]
    if unknown:
        raise SpecError(f"grid field(s) {unknown} are not fields of {cls.__name__}; valid fields: {sorted(fields)}")
    names, values = [], []
    for k, vs in grid.items():
        if isinstance(vs, (str, bytes)) or not isinstance(vs, Iterable):
            vs = [vs]
        vs = list(vs)
        if not vs:
            raise SpecError(f"empty grid: field {k!r} has no values")
        for v in vs:
            _check_grid_value(cls, k, v)
        names.append(k)
        values.append(vs)
    base_data = spec_to_dict(spec)
    points = []
    for combo in itertools.product(*values):
        changes = dict(zip(names, combo))
        data = dict(base_data)
        data.update({k: plain_value(v) for k, v in changes.items()})
        try:
            s = dataclasses.replace(spec, **{k: _coerce(cls, k, v) for k, v in changes.items()})
        except (HwsimError, ValueError, TypeError) as e:
            points.append(SpecPoint(None, data, f"{type(e).__name__}: {e}", base_name))
            continue
        points.append(SpecPoint(s, spec_to_dict(s), name=base_name))
    return points


def expand_specs(specs_or_grid: Any) -> list[SpecPoint]:
    """Spec points from a spec, a preset name, a list of those, or a grid ``(base, {field: [values]})``."""
    if isinstance(specs_or_grid, tuple) and len(specs_or_grid) == 2 and isinstance(specs_or_grid[1], Mapping):
        return expand_grid(*specs_or_grid)
    items = specs_or_grid if isinstance(specs_or_grid, (list, tuple)) else [specs_or_grid]
    if not items:
        raise SpecError("empty list of specs: give at least one spec or preset name")
    points = []
    for s in items:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[1], Mapping):
            points.extend(expand_grid(*s))
            continue
        spec, name = _as_spec(s)
        points.append(SpecPoint(spec, spec_to_dict(spec), name=name))
    return points


# ----------------------------------------------------------------------------- keys
def cost_model_version(target: str) -> str:
    """The cost-model version of a target: its package's ``cost_model_version()`` (the target contract,
    :func:`hwsim.target.load_target`). The shipped targets derive it from their source
    (:func:`hwsim.target.source_version`: a digest of ``hwsim/<target>/`` and what every target's numbers go through,
    :data:`hwsim.target.COMMON_SOURCES`: the kernels, the mapping, the import, the accuracy metrics). Any edit there (a
    cost formula, a kernel, a mapping rule, an accuracy formula, also a comment) gives a new version, so a resumed
    sweep recomputes rows an older model wrote instead of reusing them; nothing has to be bumped by hand."""
    from hwsim.target import load_target

    return load_target(target).cost_model_version()


def sample_shape(net: NetRef) -> tuple[int, ...]:
    """The input shape a sweep evaluates ``net`` at (the zoo's default for a zoo net without one), without tracing."""
    if isinstance(net, GraphNet):
        return tuple(net.graph.input_shape)
    if net.input_shape is not None:
        return tuple(net.input_shape)
    import nets

    return tuple(nets.info(net.name).input_shape)


def point_key(net: NetRef, data: Mapping[str, Any], extra: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of one (net, spec) evaluation: a SHA-256 of the net's identity (for a zoo net, with
    the zoo's source digest), the spec's plain data, the hwsim version, the target's :func:`cost_model_version` and
    the evaluation settings (functional, options, metrics, data)."""
    import hwsim

    target = str(data.get("target", ""))
    payload = {"net": net.key_identity(), "spec": dict(data), "version": hwsim.__version__,
               "cost_model": cost_model_version(target) if target else "", "extra": dict(extra)}
    return json_digest(payload)


def json_digest(obj: Any) -> str:
    """Stable 16-hex-digit SHA-256 of ``obj`` as canonical JSON (sorted keys, ``repr`` for what JSON lacks): the
    keys of sweep rows and the fingerprint of a search study."""
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
