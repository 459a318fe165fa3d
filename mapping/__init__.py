"""The IR layer of hwsim: trace torch models into a typed Graph, transform it with pure passes,
and map it onto a target. ``mapping.trace(model, input_shape) -> Graph``;
``mapping.from_onnx(path_or_model, input_shape=None) -> Graph`` for ONNX and QONNX (onnx loads on first use).

Importing this package (or ``mapping.graph``, the IR itself) does not import torch: the tracer loads on first use
of ``mapping.trace`` / ``mapping.register_module``, the ONNX importer on first use of ``mapping.from_onnx``.
"""
from __future__ import annotations

import importlib
import sys
import types

from mapping.graph import Graph, Input, Node, Op

__all__ = ["Graph", "Input", "Node", "Op", "trace", "register_module", "from_onnx"]

_LAZY = {"register_module": "mapping.trace", "from_onnx": "mapping.onnx"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'mapping' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``mapping.trace`` names both the tracer function and its submodule. Importing the submodule makes the import
    system store the module as this package's ``trace`` attribute; the property keeps the public name the function
    (as the eager ``from mapping.trace import trace`` did) and still lets a test monkeypatch it."""

    @property
    def trace(self):
        override = self.__dict__.get("_trace_override")
        return override if override is not None else importlib.import_module("mapping.trace").trace

    @trace.setter
    def trace(self, value):
        if not isinstance(value, types.ModuleType):  # the submodule itself, stored by the import system: ignored
            self.__dict__["_trace_override"] = value


sys.modules[__name__].__class__ = _Package
