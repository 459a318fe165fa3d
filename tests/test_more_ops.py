"""Small ops users' nets still hit, imported exactly through the torch tracer and the ONNX importer: SELU, CELU,
Hardshrink, Softshrink, Threshold, sign (and ONNX Selu, Celu, Shrink, Softsign, ThresholdedRelu, Sign, HardSigmoid,
Elu), compared with torch / onnxruntime on "cpu/host", ties at the thresholds included."""
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper

import hwsim
from hwsim.errors import UnsupportedOpError
from mapping import trace

# the thresholds the tests use, as float32 values, their neighbours, zeros and large values
_TIES = [0.5, -0.5, 0.3, -0.3, 0.1, -0.1, 0.25, -0.25, 0.0, -0.0, 5.0, -5.0, 80.0, -80.0, 1.0, -1.0]


def _x(batch: int, shape=(2, 4, 8)) -> np.ndarray:
    """Random values with every tie value and its float32 neighbours written over the first elements of each
    sample."""
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
    ties = np.array([v for t in _TIES for v in (np.float32(t), np.nextafter(np.float32(t), np.float32(1)),
                                               np.nextafter(np.float32(t), np.float32(-1)))], np.float32)
    flat = x.reshape(batch, -1)
    flat[:, :ties.size] = ties
    return x


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


EXACT = {  # results that are x itself, a constant or x -/+ a constant: equal to torch's bit for bit
    "Hardshrink": nn.Hardshrink(), "Hardshrink_0.3": nn.Hardshrink(0.3), "hardshrink": lambda y: F.hardshrink(y, 0.1),
    "hardshrink_method": lambda y: y.hardshrink(0.25), "hardshrink_negative": lambda y: F.hardshrink(y, -0.1),
    "Softshrink": nn.Softshrink(), "Softshrink_0.3": nn.Softshrink(0.3), "softshrink": lambda y: F.softshrink(y, 0.1),
    "softshrink_zero": lambda y: F.softshrink(y, 0.0),
    "Threshold": nn.Threshold(0.1, 20.0), "Threshold_neg": nn.Threshold(-0.3, -1.0),
    "threshold": lambda y: F.threshold(y, 0.25, 0.0), "threshold_inf": lambda y: F.threshold(y, 0.5, float("inf")),
    "sign": torch.sign, "sign_method": lambda y: y.sign(), "sgn": torch.sgn,
}
SMOOTH = {  # exp in the negative branch: equal to torch's within float32 rounding
    "SELU": nn.SELU(), "selu": F.selu, "CELU": nn.CELU(), "CELU_0.5": nn.CELU(0.5), "celu": lambda y: F.celu(y, 2.0),
    "elu": lambda y: F.elu(y, 0.7), "Tanhshrink": nn.Tanhshrink(), "tanhshrink": F.tanhshrink,
    "Softsign": nn.Softsign(), "softsign": F.softsign, "LogSigmoid": nn.LogSigmoid(),
    "Hardtanh": nn.Hardtanh(-0.5, 0.3), "hardtanh": lambda y: F.hardtanh(y, -2.0, 0.1),
    "SELU_after_conv": nn.Sequential(nn.Conv2d(2, 3, 1), nn.SELU()),
}


def _model(fn) -> nn.Module:
    return (fn if isinstance(fn, nn.Module) else _Fn(fn)).eval()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(EXACT))
def test_torch_thresholds_are_exact(name, batch):
    m, x = _model(EXACT[name]), _x(batch)
    out = hwsim.simulate(m, "cpu/host", x=x).outputs
    np.testing.assert_array_equal(out, m(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_torch_smooth_activations_match_torch(name, batch):
    torch.manual_seed(0)
    m, x = _model(SMOOTH[name]), _x(batch)
    out = hwsim.simulate(m, "cpu/host", x=x).outputs
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn,words", [
    (lambda y: F.celu(y, -1.0), ["celu", "alpha"]),
    (lambda y: F.threshold(y, float("nan"), 0.0), ["threshold", "finite"]),
], ids=["celu_negative_alpha", "threshold_nan"])
def test_activation_arguments_hwsim_cannot_map_are_refused_in_one_line(fn, words):
    with pytest.raises(UnsupportedOpError) as e:
        trace(_Fn(fn), (2, 2, 4, 8))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def _export(m: nn.Module, x: np.ndarray, dynamo: bool) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), buf, dynamo=dynamo, input_names=["x"],
                          **({} if dynamo else {"opset_version": 17}))
    return onnx.load_from_string(buf.getvalue())


ONNX_EXPORTED = ["SELU", "CELU_0.5", "Softshrink_0.3", "Hardshrink", "Softsign", "sign", "SELU_after_conv"]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_export", "dynamo_export"])
@pytest.mark.parametrize("name", ONNX_EXPORTED)
def test_onnx_exports_of_the_activations_match_torch(name, dynamo):
    torch.manual_seed(0)
    m = _model({**EXACT, **SMOOTH}[name])
    x = _x(2)
    out = hwsim.simulate(_export(m, x, dynamo), "cpu/host", x=x).outputs
    ref = m(torch.from_numpy(x)).detach().numpy()
    if name in EXACT:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def _one_op(op_type: str, shape, **attrs) -> onnx.ModelProto:
    """A graph of one ``op_type`` node of x (float32, ``shape``), opset 18."""
    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


ONNX_OPS = {
    "Selu": ("Selu", {}, False), "Selu_attrs": ("Selu", {"alpha": 1.5, "gamma": 0.8}, False),
    "Celu": ("Celu", {}, False), "Celu_0.5": ("Celu", {"alpha": 0.5}, False),
    "Shrink": ("Shrink", {}, True), "Shrink_bias": ("Shrink", {"lambd": 0.3, "bias": 0.1}, True),
    "Shrink_soft": ("Shrink", {"lambd": 0.25, "bias": 0.25}, True),
    "Shrink_zero": ("Shrink", {"lambd": 0.0, "bias": 0.0}, True),
    "Softsign": ("Softsign", {}, False), "ThresholdedRelu": ("ThresholdedRelu", {}, True),
    "ThresholdedRelu_0.1": ("ThresholdedRelu", {"alpha": 0.1}, True), "Sign": ("Sign", {}, True),
    "HardSigmoid": ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, False), "Elu": ("Elu", {"alpha": 0.5}, False),
}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(ONNX_OPS))
def test_onnx_activation_ops_match_onnxruntime(name, batch):
    import onnxruntime as ort

    op_type, attrs, exact = ONNX_OPS[name]
    x = _x(batch)
    mp = _one_op(op_type, x.shape, **attrs)
    ref = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    out = hwsim.simulate(mp, "cpu/host", x=x).outputs
    if exact:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_onnx_shrink_with_a_negative_lambd_is_refused_in_one_line():
    x = _x(1)
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(_one_op("Shrink", x.shape, lambd=-0.5), "cpu/host", x=x)
    assert "\n" not in str(e.value) and "lambd" in str(e.value), str(e.value)


# ---------------------------------------------------------------------------------------------- data movement
class _ConvThen(nn.Module):
    """A 1x1 conv (so the op reads a computed value), then ``fn`` of its output."""

    def __init__(self, fn, c: int = 4):
        super().__init__()
        self.conv, self.fn = nn.Conv2d(c, c, 1), fn

    def forward(self, x):
        return self.fn(self.conv(x))


MOVES = {
    "flip_w": lambda y: y.flip(-1), "flip_hw": lambda y: torch.flip(y, (2, 3)), "flip_c": lambda y: y.flip(1),
    "flip_varargs": lambda y: y.flip(1, 3), "fliplr": torch.fliplr, "flip_then_add": lambda y: y + y.flip(2),
    "tile": lambda y: y.tile((2, 1)), "tile_function": lambda y: torch.tile(y, (1, 2, 1, 3)),
    "repeat": lambda y: y.repeat(1, 2, 1, 3), "pixel_shuffle": lambda y: F.pixel_shuffle(y, 2),
    "PixelShuffle": nn.PixelShuffle(2), "pixel_unshuffle": lambda y: F.pixel_unshuffle(y[..., :4, :6], 2),
}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(MOVES))
def test_torch_moves_match_torch_exactly(name, batch):
    torch.manual_seed(0)
    m = _ConvThen(MOVES[name]).eval()
    x = np.random.default_rng(0).standard_normal((batch, 4, 5, 6)).astype(np.float32)
    out = hwsim.simulate(m, "cpu/host", x=x).outputs
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_a_flip_copies_values_exactly():
    x = _x(2)
    m = _Fn(lambda y: torch.flip(y, (1, 3)))
    np.testing.assert_array_equal(hwsim.simulate(m, "cpu/host", x=x).outputs, m(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_export", "dynamo_export"])
@pytest.mark.parametrize("name", ["flip_w", "flip_hw", "flip_c", "flip_then_add", "repeat", "pixel_shuffle",
                                  "pixel_unshuffle"])
def test_onnx_exports_of_the_moves_match_torch(name, dynamo):
    torch.manual_seed(0)
    m = _ConvThen(MOVES[name]).eval()
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    out = hwsim.simulate(_export(m, x, dynamo), "cpu/host", x=x).outputs
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def _graph(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _ints(name: str, v) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(v)], list(v))


def _ort(mp: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([4, 5], [0, -100], [2, 3], [-2, -1]),  # a reversed stride-2 pick and a full reverse
    ([1, -1], [4, -9223372036854775807], [1, 3], [2, -3]),  # a positive step beside a negative one
    ([-1], [-9223372036854775807], [-2], [-1]),
], ids=["two_negative", "mixed", "int64_min_end"])
@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_slices_with_negative_steps_match_onnxruntime(starts, ends, axes, steps, batch):
    x = np.random.default_rng(batch).standard_normal((batch, 4, 5, 6)).astype(np.float32)
    ref_shape = _ort(_graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])],
                            [_ints("s", starts), _ints("e", ends), _ints("a", axes), _ints("t", steps)],
                            x.shape, [None] * 4), x).shape
    mp = _graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])],
                [_ints("s", starts), _ints("e", ends), _ints("a", axes), _ints("t", steps)], x.shape, ref_shape)
    np.testing.assert_array_equal(hwsim.simulate(mp, "cpu/host", x=x).outputs, _ort(mp, x))


def test_flips_of_long_dims_and_of_the_batch_are_refused_in_one_line():
    for fn, shape, words in [(lambda y: y.flip(-1), (1, 2, 3, 65), ["flip", "65", "64"]),
                             (lambda y: y.flip(0), (2, 2, 3, 4), ["flip", "batch"])]:
        with pytest.raises(UnsupportedOpError) as e:
            trace(_Fn(fn), shape)
        assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    x = np.zeros((1, 2, 3, 65), np.float32)
    mp = _graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])],
                [_ints("s", [-1]), _ints("e", [-100]), _ints("a", [3]), _ints("t", [-1])], x.shape, x.shape)
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(mp, "cpu/host", x=x)
    assert "\n" not in str(e.value) and "65" in str(e.value), str(e.value)


def test_onnx_export_of_tile_matches_torch():
    """torch's dynamo exporter writes ``x.tile`` as Tile (the TorchScript one as an If on the rank: control flow)."""
    torch.manual_seed(0)
    m = _ConvThen(MOVES["tile"]).eval()
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    mp = _export(m, x, True)
    assert "Tile" in {n.op_type for n in mp.graph.node}
    out = hwsim.simulate(mp, "cpu/host", x=x).outputs  # the tile copies exactly; the conv before it rounds as fp32 does
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op_type,attrs", [
    ("DepthToSpace", {"blocksize": 2}), ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}),
    ("DepthToSpace", {"blocksize": 3, "mode": "DCR"}), ("SpaceToDepth", {"blocksize": 2}),
], ids=["d2s_default_dcr", "d2s_crd", "d2s_dcr_3", "s2d"])
@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_depth_to_space_and_back_match_onnxruntime(op_type, attrs, batch):
    b = attrs["blocksize"]
    shape = (batch, 2 * b * b, 3, 4) if op_type == "DepthToSpace" else (batch, 3, 2 * b, 3 * b)
    x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
    out_shape = _ort(_graph([helper.make_node(op_type, ["x"], ["y"], **attrs)], [], shape, [None] * 4), x).shape
    mp = _graph([helper.make_node(op_type, ["x"], ["y"], **attrs)], [], shape, out_shape)
    np.testing.assert_array_equal(hwsim.simulate(mp, "cpu/host", x=x).outputs, _ort(mp, x))


@pytest.mark.parametrize("reps", [[1, 2, 1, 3], [1, 1, 1, 1], [1, 3, 2, 1]])
@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_tile_matches_onnxruntime(reps, batch):
    x = np.random.default_rng(batch).standard_normal((batch, 2, 3, 4)).astype(np.float32)
    out_shape = [s * r for s, r in zip(x.shape, reps)]
    mp = _graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Tile", ["h", "r"], ["y"])],
                [_ints("r", reps)], x.shape, out_shape)
    np.testing.assert_array_equal(hwsim.simulate(mp, "cpu/host", x=x).outputs, _ort(mp, x))


def test_tiles_of_the_batch_are_refused_in_one_line():
    with pytest.raises(UnsupportedOpError) as e:
        trace(_Fn(lambda y: y.tile((2, 1, 1, 1))), (2, 2, 3, 4))
    assert "\n" not in str(e.value) and "batch" in str(e.value), str(e.value)
    x = np.zeros((2, 2, 3, 4), np.float32)
    mp = _graph([helper.make_node("Tile", ["x", "r"], ["y"])], [_ints("r", [2, 1, 1, 1])], x.shape, [4, 2, 3, 4])
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(mp, "cpu/host", x=x)
    assert "\n" not in str(e.value) and "batch" in str(e.value), str(e.value)


class _Einsum(nn.Module):
    """``torch.einsum(eq, conv(x), x)``; with one operand ``einsum(eq, conv(x))``; with a weight ``einsum(eq, conv(x),
    W)``."""

    def __init__(self, eq: str, operands: str):
        super().__init__()
        self.conv, self.eq, self.operands = nn.Conv2d(4, 4, 1), eq, operands
        self.w = nn.Parameter(torch.randn(6, 3)) if operands == "weight" else None

    def forward(self, x):
        y = self.conv(x)
        second = {"two": [x], "one": [], "weight": [self.w]}[self.operands]
        return torch.einsum(self.eq, y, *second)


EINSUMS = {"contract_hw": ("nchw,nkhw->nck", "two"), "contract_c": ("nchw,nchv->nhwv", "two"),
           "attention_like": ("bchw,bkhw->bhck", "two"), "product": ("nchw,nchw->nchw", "two"),
           "permute": ("nchw->nhwc", "one"), "sum": ("nchw->nw", "one"), "implicit_output": ("abdc", "one"),
           "weight": ("nchw,wk->nchk", "weight")}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_export", "dynamo_export"])
@pytest.mark.parametrize("name", sorted(EINSUMS))
def test_onnx_einsum_matches_torch(name, dynamo):
    torch.manual_seed(0)
    m = _Einsum(*EINSUMS[name]).eval()
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 6)).astype(np.float32)
    mp = _export(m, x, dynamo)
    assert "Einsum" in {n.op_type for n in mp.graph.node}
    out = hwsim.simulate(mp, "cpu/host", x=x).outputs
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eq,words", [("nchw->cnhw", ["batch"]), ("nchw->hw", ["batch"]), ("ncc->nc", ["diagonal"])])
def test_onnx_einsums_hwsim_cannot_map_are_refused_in_one_line(eq, words):
    shape = (2, 3, 3) if eq.startswith("ncc") else (2, 3, 4, 5)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    mp = _graph([helper.make_node("Einsum", ["x"], ["y"], equation=eq)], [], shape,
                _ort(_graph([helper.make_node("Einsum", ["x"], ["y"], equation=eq)], [], shape,
                             [None] * len(eq.split("->")[1])), x).shape)
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(mp, "cpu/host", x=x)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


class _Resize(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.conv, self.kw = nn.Conv2d(3, 3, 1), kw

    def forward(self, x):
        return F.interpolate(self.conv(x), mode="nearest-exact", **self.kw)


@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"scale_factor": (3, 1)}, {"size": (8, 12)}],
                         ids=["scale_2", "scale_3_1", "size_x2_x3"])
@pytest.mark.parametrize("batch", [1, 2])
def test_nearest_exact_upscaling_by_whole_factors_matches_torch(kw, batch):
    torch.manual_seed(0)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4)).astype(np.float32)
    for m in (_Resize(**kw).eval(), nn.Sequential(nn.Conv2d(3, 3, 1), nn.Upsample(mode="nearest-exact", **kw)).eval()):
        out = hwsim.simulate(m, "cpu/host", x=x).outputs
        np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_nearest_exact_to_other_sizes_is_refused_in_one_line():
    for m in (_Resize(size=(5, 4)), nn.Upsample(size=(2, 4), mode="nearest-exact")):
        with pytest.raises(UnsupportedOpError) as e:
            trace(m, (1, 3, 4, 4))
        assert "\n" not in str(e.value) and "nearest-exact" in str(e.value), str(e.value)
