"""ONNX Resize forms of torch's ``nearest-exact`` (half_pixel rounded, tf_half_pixel_for_nn floored) import at whole
upscaling factors as nearest, verified against onnxruntime; other factors and half_pixel with floor are refused in
one line. (torch 2.13's exporters write no Resize for nearest-exact: TorchScript has no symbolic for it, dynamo
exports a GatherND; the models here are written by hand.)"""
from __future__ import annotations

import numpy as np
import pytest

import hwsim
from hwsim.errors import UnsupportedOpError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _resize(coords: str, nearest_mode: str, batch: int, scales=None, sizes=None):
    """A Relu then a Resize(mode nearest) of a (batch, 2, 4, 4) input by ``scales`` or to ``sizes``."""
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
             numpy_helper.from_array(np.asarray(scales if scales is not None else [], np.float32), "scales")]
    ins = ["h", "roi", "scales"]
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
        ins.append("sizes")
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Resize", ins, ["y"], mode="nearest", coordinate_transformation_mode=coords,
                              nearest_mode=nearest_mode)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


FORMS = [("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel", "round_prefer_ceil"),
         ("half_pixel", "round_prefer_floor"), ("tf_half_pixel_for_nn", "floor")]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("size", [{"scales": [1, 1, 2, 2]}, {"scales": [1, 1, 3, 1]}, {"sizes": [0, 2, 8, 12]}],
                         ids=["x2", "x3_x1", "size_x2_x3"])
@pytest.mark.parametrize("coords,nearest_mode", FORMS)
def test_nearest_exact_at_whole_factors_matches_onnxruntime(coords, nearest_mode, size, batch):
    from mapping.onnx import reference_outputs

    size = {k: [batch, *v[1:]] if k == "sizes" else v for k, v in size.items()}
    model = _resize(coords, nearest_mode, batch, **size)
    x = np.random.default_rng(batch).standard_normal((batch, 2, 4, 4)).astype(np.float32)
    res = hwsim.simulate(model, "cpu/host", x=x)
    want = reference_outputs(model, x)[0]
    assert want.shape[2] % 4 == 0 and want.shape[3] % 4 == 0
    np.testing.assert_array_equal(np.asarray(res.outputs).reshape(want.shape), want)


@pytest.mark.parametrize("coords,nearest_mode,size,words", [
    ("half_pixel", "round_prefer_ceil", {"scales": [1, 1, 1.5, 1.5]}, ["factors 1.5 x 1.5", "whole"]),
    ("tf_half_pixel_for_nn", "floor", {"sizes": [1, 2, 6, 5]}, ["factors 1.5 x 1.25", "whole"]),
    ("half_pixel", "round_prefer_ceil", {"scales": [1, 1, 2.1, 2.1]}, ["scales", "2.1"]),  # 4 -> 8, mapped by 2.1
    ("half_pixel", "floor", {"scales": [1, 1, 2, 2]}, ["half_pixel"]),  # not nearest: output 2 reads input 0
])
def test_other_nearest_resizes_are_refused_in_one_line(coords, nearest_mode, size, words):
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(_resize(coords, nearest_mode, 1, **size), "cpu/host", x=x)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
