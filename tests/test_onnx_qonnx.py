"""QONNX import: Brevitas W1A1 / W2A2 / W4A4 exports (``brevitas.export.export_qonnx``) and hand-built QONNX graphs
(MultiThreshold, Trunc, BipolarQuant) import, verify against qonnx's executor node by node, and compute its
outputs: exactly at every quantizer (integer levels times a scale), within fp32 rounding after the last layer."""
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

import mapping
from hwsim.errors import UnsupportedOpError
from hwsim.functional import run
from mapping.graph import Op
from mapping.onnx import reference_outputs, source_values

brevitas_nn = pytest.importorskip("brevitas.nn")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:fast_hadamard_transform:UserWarning")
QDOMAIN = "qonnx.custom_op.general"


class QuantCNN(nn.Module):
    """3 -> 7 -> 5 channels, then a linear head; ``bits`` for weights and activations (1: binary, sign)."""

    def __init__(self, bits: int):
        super().__init__()
        from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

        qnn = brevitas_nn
        wq = {"weight_quant": SignedBinaryWeightPerTensorConst} if bits == 1 else {"weight_bit_width": bits}
        act = (lambda: qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)) \
            if bits == 1 else (lambda: qnn.QuantReLU(bit_width=bits, return_quant_tensor=True))
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c1, self.bn1, self.a1 = qnn.QuantConv2d(3, 7, 3, padding=1, bias=False, **wq), nn.BatchNorm2d(7), act()
        self.c2, self.bn2, self.a2 = qnn.QuantConv2d(7, 5, 3, bias=False, **wq), nn.BatchNorm2d(5), act()
        self.fc = qnn.QuantLinear(5 * 4 * 4, 3, bias=True, **wq)

    def forward(self, x):
        x = self.a1(self.bn1(self.c1(self.inp(x))))
        x = self.a2(self.bn2(self.c2(x)))
        return self.fc(x.flatten(1))


def brevitas_model(bits: int, tmp_path):
    torch.manual_seed(bits)
    model = QuantCNN(bits).eval()
    g = torch.Generator().manual_seed(0)
    for bn in (model.bn1, model.bn2):  # trained-looking statistics, so the activations are not all one level
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 2 + 0.5)
    from brevitas.export import export_qonnx

    x = torch.randn(2, 3, 6, 6, generator=g)  # the export names its batch (a Reshape to (2, 80))
    path = tmp_path / f"w{bits}a{bits}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, x, export_path=str(path))
    return model, path


@pytest.mark.parametrize("bits", [1, pytest.param(2, marks=pytest.mark.slow), 4])  # 1-1.5 s each
def test_brevitas_exports_import_and_match_qonnx_and_brevitas(tmp_path, bits):
    model, path = brevitas_model(bits, tmp_path)
    g = mapping.from_onnx(path)  # verified node by node against qonnx's executor
    ops = [n.op for n in g.nodes]
    assert ops.count(Op.CONV2D) == 2 and ops.count(Op.LINEAR) == 1 and ops.count(Op.QUANTIZE) == 1 + 2 * (bits > 1)
    assert ops.count(Op.SIGN) == (2 if bits == 1 else 0)
    for n in g.nodes:
        if n.op in (Op.CONV2D, Op.LINEAR):
            assert n.meta["weight_bits"] == bits and n.meta["weight_scale"] > 0
            levels = g.param(n, "weight") / n.meta["weight_scale"]
            np.testing.assert_array_equal(levels, np.round(levels))  # the weight is the quantized one
            assert np.abs(levels).max() <= max(2 ** (bits - 1) - 1, 1)

    x = np.random.default_rng(7).standard_normal((2, 3, 6, 6)).astype(np.float32)
    outs, values = run(g, x, keep=True)
    ref = source_values(path, x)  # qonnx's own run of every tensor, on the same input
    for n in g.nodes:
        if n.op in (Op.QUANTIZE, Op.SIGN):  # integer levels times one scale: exact
            np.testing.assert_array_equal(values[n.name], ref[n.name], err_msg=n.name)
    (out,) = outs
    (qo,) = reference_outputs(path, x)
    assert np.max(np.abs(out - qo)) <= 1e-5 * np.max(np.abs(qo))
    with torch.no_grad():
        bo = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(out - bo)) <= 1e-5 * np.max(np.abs(bo))


def test_brevitas_trunc_avgpool_exports_trunc(tmp_path):
    qnn = brevitas_nn
    model = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                          qnn.QuantConv2d(3, 5, 3, padding=1, weight_bit_width=4, bias=False, return_quant_tensor=True),
                          qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
                          qnn.TruncAvgPool2d(kernel_size=2, bit_width=6, return_quant_tensor=False)).eval()
    from brevitas.export import export_qonnx

    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, x, export_path=str(tmp_path / "trunc.onnx"))
    g = mapping.from_onnx(tmp_path / "trunc.onnx")
    assert Op.TRUNC in [n.op for n in g.nodes]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(run(g, x.numpy())[0], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


# ----------------------------------------------------------------------------- hand-built QONNX graphs
def qonnx_model(nodes, inits, in_shape, out_name, out_shape, qonnx_version=1):
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(QDOMAIN, qonnx_version)])


def test_multithreshold_and_trunc_v1(tmp_path):
    rng = np.random.default_rng(0)
    thr = np.sort(rng.uniform(-1.5, 1.5, (3, 7)).astype(np.float32), axis=1)[:, ::-1]  # the importer sorts each row
    w = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MultiThreshold", ["x", "thr"], ["mt"], domain=QDOMAIN, out_dtype="UINT3", out_scale=0.5,
                         out_bias=-1.5),
        helper.make_node("Conv", ["mt", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Trunc", ["conv", "s", "zp", "ib", "ob"], ["tr"], domain=QDOMAIN, rounding_mode="FLOOR"),
        helper.make_node("Relu", ["tr"], ["y"]),
    ]
    inits = {"thr": thr, "w": w, "s": 0.5, "zp": 0.0, "ib": 10.0, "ob": 6.0}
    m = qonnx_model(nodes, inits, (1, 3, 5, 5), "y", (1, 4, 5, 5))
    g = mapping.from_onnx(m)
    assert [n.op for n in g.nodes] == [Op.MULTITHRESHOLD, Op.CONV2D, Op.TRUNC, Op.RELU]
    mt, tr = g.nodes[0], g.nodes[2]
    np.testing.assert_array_equal(g.param(mt, "thresholds"), np.sort(thr, axis=1))
    assert (mt.attrs.out_scale, mt.attrs.out_bias) == (0.5, -1.5)
    assert (tr.attrs.in_bits, tr.attrs.out_bits, tr.attrs.scale, tr.attrs.rounding) == (10, 6, 0.5, "FLOOR")
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(run(g, x)[0], reference_outputs(m, x)[0])  # integers times 0.5: exact


def test_trunc_v2_bipolar_activation_and_one_bit_quant(tmp_path):
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zp", "b8"], ["q"], domain=QDOMAIN, signed=1, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("Trunc", ["q", "s_in", "zp", "b8", "s_out", "b5"], ["t"], domain=QDOMAIN,
                         rounding_mode="FLOOR", signed=1, narrow=0),
        helper.make_node("BipolarQuant", ["t", "s_bin"], ["b"], domain=QDOMAIN),
        helper.make_node("Quant", ["t", "s_bin", "zp", "b1"], ["b1q"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Add", ["b", "b1q"], ["y"]),
    ]
    inits = {"s_in": 0.125, "zp": 0.0, "b8": 8.0, "s_out": 0.125 * 8, "b5": 5.0, "s_bin": 0.25, "b1": 1.0}
    m = qonnx_model(nodes, inits, (2, 6), "y", (2, 6), qonnx_version=2)
    g = mapping.from_onnx(m)
    assert [n.op for n in g.nodes] == [Op.QUANTIZE, Op.TRUNC, Op.MUL, Op.CLAMP, Op.SIGN, Op.MUL, Op.QUANTIZE,
                                       Op.ADD]
    assert g.nodes[1].attrs.out_bits == 5 and g.nodes[3].attrs == type(g.nodes[3].attrs)(-16.0, 15.0)
    x = (np.random.default_rng(1).standard_normal((2, 6)) * 12).astype(np.float32)  # exercises the clamp
    np.testing.assert_array_equal(run(g, x)[0], reference_outputs(m, x)[0])


def test_integer_input_quantizer_gets_a_sample_of_its_levels():
    from mapping.onnx import _sample

    nodes = [helper.make_node("Quant", ["x", "s", "zp", "b"], ["y"], domain=QDOMAIN, signed=0, narrow=0)]
    m = qonnx_model(nodes, {"s": 1.0, "zp": 0.0, "b": 8.0}, (1, 3, 8, 8), "y", (1, 3, 8, 8))
    x = _sample(m, "x", (1, 3, 8, 8), True)
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 255 and len(np.unique(x)) > 100
    g = mapping.from_onnx(m)
    assert g.nodes[0].attrs.bits == 8 and not g.nodes[0].attrs.signed


@pytest.mark.parametrize("case,fragment", [
    ("per-channel", "scale of shape (1, 3, 1, 1)"),
    ("xnor", "XnorPopcountMatMul at node 'xnor_node'"),
])
def test_unmappable_qonnx_is_refused_with_the_node(case, fragment):
    if case == "per-channel":
        nodes = [helper.make_node("Quant", ["x", "s", "zp", "b"], ["y"], name="q_node", domain=QDOMAIN, signed=1,
                                  narrow=0, rounding_mode="ROUND")]
        inits = {"s": np.full((1, 3, 1, 1), 0.1), "zp": 0.0, "b": 4.0}
    else:
        nodes = [helper.make_node("XnorPopcountMatMul", ["x", "w"], ["y"], name="xnor_node", domain=QDOMAIN)]
        inits = {"w": np.ones((3, 3))}
    shape = (1, 3, 2, 2) if case == "per-channel" else (1, 3)
    with pytest.raises(UnsupportedOpError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        mapping.from_onnx(qonnx_model(nodes, inits, shape, "y", shape))


def test_finn_domain_is_accepted(tmp_path):
    nodes = [helper.make_node("MultiThreshold", ["x", "thr"], ["y"], domain="finn.custom_op.general",
                              out_dtype="UINT2")]
    m = qonnx_model(nodes, {"thr": [[-0.5, 0.0, 0.5]]}, (1, 4, 3, 3), "y", (1, 4, 3, 3))
    m.opset_import[1].domain = "finn.custom_op.general"
    onnx.save(m, tmp_path / "finn.onnx")
    g = mapping.from_onnx(tmp_path / "finn.onnx")
    assert g.nodes[0].op == Op.MULTITHRESHOLD
