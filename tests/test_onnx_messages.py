"""ONNX refusals name their cause: Dropout in training mode, Resize's nearest_mode."""
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from hwsim.errors import UnsupportedOpError
from mapping.onnx import from_onnx


def _model(nodes, inits, ishape, oshape) -> onnx.ModelProto:
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", T.FLOAT, ishape)],
                     [h.make_tensor_value_info("y", T.FLOAT, oshape)], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _dropout(training: bool) -> onnx.ModelProto:
    inits = [h.make_tensor("r", T.FLOAT, [], [0.5]), h.make_tensor("t", T.BOOL, [], [training])]
    return _model([h.make_node("Dropout", ["x", "r", "t"], ["d"]), h.make_node("Relu", ["d"], ["y"])], inits,
                  [1, 4], [1, 4])


def test_dropout_in_training_mode_is_refused_by_name():
    with pytest.raises(UnsupportedOpError, match="Dropout.*training mode"):
        from_onnx(_dropout(True))


def test_dropout_in_eval_mode_is_the_identity():
    g = from_onnx(_dropout(False))
    assert [n.op.value for n in g.nodes] == ["relu"]


@pytest.mark.parametrize("nearest_mode", ["ceil", "round_prefer_floor"])
def test_resize_names_the_nearest_mode_it_cannot_map(nearest_mode):
    scales = h.make_tensor("s", T.FLOAT, [4], [1, 1, 1.5, 1.5])
    m = _model([h.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode=nearest_mode)],
               [scales], [1, 2, 4, 4], [1, 2, 6, 6])
    with pytest.raises(UnsupportedOpError, match=f"nearest_mode '{nearest_mode}'"):
        from_onnx(m)
