"""The IR layer of hwsim: trace torch models into a typed Graph, transform it with pure passes,
and map it onto a target. ``mapping.trace(model, input_shape) -> Graph``;
``mapping.from_onnx(path_or_model, input_shape=None) -> Graph`` for ONNX and QONNX (onnx loads on first use)."""
from mapping.graph import Graph, Input, Node, Op
from mapping.trace import register_module, trace

__all__ = ["Graph", "Input", "Node", "Op", "trace", "register_module", "from_onnx"]


def __getattr__(name: str):
    if name == "from_onnx":  # lazily: importing mapping must not import onnx
        from mapping.onnx import from_onnx

        return from_onnx
    raise AttributeError(f"module 'mapping' has no attribute {name!r}")
