"""Two front-door checks of the torch / ONNX import.

1. The batch size used as a number (``y / x.shape[0]``, ``+ torch.arange(x.size(0))``) makes a graph that is right at
   the traced batch only: traced at batch 1 it is ``batch_fixed`` (evaluate runs it sample by sample, exactly), at a
   larger batch it is refused; sizes used as shapes (``x.view(x.size(0), -1)``) still give a graph for any batch.
   An ONNX file whose Reshape carries the export batch as a constant is imported at that batch and rebatched.
2. A weight tied between two modules (``l2.weight = l1.weight``), and one ONNX initializer read by two nodes (also
   through an Identity), is one parameter: stored, counted and placed once, outputs unchanged."""
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import hwsim
import mapping
from hwsim.errors import ShapeError, UnsupportedOpError
from hwsim.functional import run
from mapping.analysis import totals
from mapping.onnx import reference_outputs, source_values


def sample(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_out(m, x):
    with torch.no_grad():
        return m.eval()(torch.from_numpy(x)).numpy()


# ----------------------------------------------------------------------------- 1. the batch size as a number
class Scaled(nn.Module):  # targets_5.py of the audit
    def __init__(self):
        super().__init__()
        self.c, self.l = nn.Conv2d(3, 4, 1), nn.Linear(64, 3)

    def forward(self, x):
        return self.l((self.c(x) * (1.0 / x.shape[0]) + torch.ones(x.size(0), 1, 1, 1)).flatten(1))


class Ranked(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.l = nn.Conv2d(3, 4, 1), nn.Linear(64, 3)

    def forward(self, x):
        return self.l(self.c(x).flatten(1)) + torch.arange(x.size(0)).float()[:, None]


class MeanOverBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.c(x)
        return y.sum((2, 3)) / (y.shape[2] * x.shape[0])


class Shaped(nn.Module):  # the batch size used as shapes only: one graph for every batch
    def __init__(self):
        super().__init__()
        self.c, self.l = nn.Conv2d(3, 4, 1), nn.Linear(66, 3)

    def forward(self, x):
        y = torch.cat([self.c(x).view(x.size(0), -1), torch.zeros(x.size(0), 2)], 1)
        return self.l(y) + torch.ones(x.shape[0], 1).expand(x.shape[0], 3)


@pytest.mark.parametrize("net", [Scaled, Ranked, MeanOverBatch])
def test_batch_size_arithmetic_gives_a_one_sample_graph_evaluated_exactly(net):
    torch.manual_seed(0)
    m, x = net().eval(), sample((4, 3, 4, 4))
    g = mapping.trace(m, (1, 3, 4, 4))
    assert g.batch_fixed
    with pytest.raises(ShapeError, match="batch 1"):  # never the batch-1 constant applied to 4 samples
        hwsim.simulate(g, "cpu/host", x=x)
    ev = hwsim.evaluate(m, "cpu/host", x, batch_size=4, progress=False)  # sample by sample, as torch at batch 1
    assert float(ev.table["rel_rms_error"].max()) < 1e-5
    one = np.concatenate([torch_out(m, x[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(np.concatenate([run(g, x[i:i + 1])[0] for i in range(4)]), one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("net", [Scaled, MeanOverBatch])
def test_batch_size_arithmetic_traced_at_a_larger_batch_is_refused_naming_the_node(net):
    with pytest.raises(UnsupportedOpError, match=r"node '(mul|truediv)'.*batch size as a number.*batch 1"):
        mapping.trace(net().eval(), (4, 3, 4, 4))


def test_a_batch_dependent_constant_traced_at_a_larger_batch_is_refused():
    with pytest.raises(UnsupportedOpError, match="differs between the samples"):
        mapping.trace(Ranked().eval(), (4, 3, 4, 4))


def test_batch_sizes_used_as_shapes_keep_one_graph_for_every_batch():
    torch.manual_seed(0)
    m, x = Shaped().eval(), sample((4, 3, 4, 4))
    g = mapping.trace(m, (1, 3, 4, 4))
    assert not g.batch_fixed
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, torch_out(m, x), rtol=1e-5, atol=1e-5)
    g4 = mapping.trace(m, (4, 3, 4, 4))
    np.testing.assert_allclose(run(g4, x)[0], torch_out(m, x), rtol=1e-5, atol=1e-5)
    assert m(torch.from_numpy(x)).shape == (4, 3)  # tracing left the model callable at any batch


def export_dynamic(m, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m.eval(), (torch.from_numpy(sample((1, 3, 4, 4))),), path, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return path


@pytest.mark.parametrize("net", [Scaled, MeanOverBatch])
def test_an_onnx_file_using_its_batch_size_as_a_number_gives_a_one_sample_graph(net, tmp_path):
    torch.manual_seed(0)
    m, x = net().eval(), sample((4, 3, 4, 4))
    path = export_dynamic(m, str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(reference_outputs(path, x)[0], torch_out(m, x), rtol=1e-5, atol=1e-5)
    g = mapping.from_onnx(path, (1, 3, 4, 4))
    assert g.batch_fixed
    with pytest.raises(ShapeError, match="batch 1"):
        hwsim.simulate(g, "cpu/host", x=x)
    with pytest.raises(UnsupportedOpError, match="batch size as a number.*import it with batch 1"):
        mapping.from_onnx(path, (4, 3, 4, 4))
    ev = hwsim.evaluate(path, "cpu/host", x, batch_size=4, workers=1, progress=False)
    assert float(ev.table["rel_rms_error"].max()) < 1e-5  # sample by sample, as the file computes at batch 1


def test_an_onnx_file_using_its_batch_size_as_shapes_keeps_one_graph(tmp_path):
    torch.manual_seed(0)
    m, x = Shaped().eval(), sample((4, 3, 4, 4))
    path = export_dynamic(m, str(tmp_path / "m.onnx"))
    assert any(n.op_type == "Shape" for n in onnx.load(path).graph.node)  # the layout this test is about
    g = mapping.from_onnx(path, (1, 3, 4, 4))
    assert not g.batch_fixed
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, reference_outputs(path, x)[0],
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- 1b. ONNX: the export batch in a Reshape
def reshape_model(export_batch, moved=False):
    """Conv(3->2, 1x1) -> Reshape(constant [export_batch, 32]) -> MatMul (32 -> 5), input (export_batch, 3, 4, 4);
    ``moved``: a Transpose swaps batch and channels first (the graph computes one sample)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((32, 5)).astype(np.float32), "fc")
    target = numpy_helper.from_array(np.array([export_batch, -1 if moved else 32], np.int64), "target")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if moved:
        nodes.append(helper.make_node("Transpose", ["c"], ["t"], perm=[1, 0, 2, 3], name="swap"))
    nodes += [helper.make_node("Reshape", ["t" if moved else "c", "target"], ["r"], name="node_view"),
              helper.make_node("MatMul", ["r", "fc"], ["y"], name="fc")]
    out = 5 if not moved else None
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [export_batch, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [export_batch, out])],
                              [w, fc, target])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("export_batch, batch", [(2, 3), (2, 1), (1, 5)])
def test_an_onnx_reshape_carrying_the_export_batch_is_rebatched(export_batch, batch):
    m, x = reshape_model(export_batch), sample((batch, 3, 4, 4), seed=2)
    w = numpy_helper.to_array(m.graph.initializer[0]).reshape(2, 3)
    fc = numpy_helper.to_array(m.graph.initializer[1])
    want = np.einsum("oc,nchw->nohw", w, x).reshape(batch, 32) @ fc  # the per-sample function, in numpy
    ref = reference_outputs(m, x)[0]  # onnxruntime on pieces of the export batch
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5)
    g = mapping.from_onnx(m, (batch, 3, 4, 4))
    assert g.batch == batch and not g.batch_fixed
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x).outputs, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match=r"Reshape node 'node_view' has the constant shape \[" + str(export_batch)):
        source_values(m, x)


def test_an_onnx_reshape_of_the_export_batch_after_a_batch_move_is_refused_in_one_line():
    m = reshape_model(1, moved=True)
    assert mapping.from_onnx(m).batch_fixed  # at its export batch it imports (one sample)
    with pytest.raises(ShapeError) as e:
        hwsim.simulate(m, "cpu/host", x=sample((3, 3, 4, 4)))
    msg = str(e.value)
    assert "node_view" in msg and "[1, -1]" in msg and "export batch 1" in msg and "\n" not in msg


def test_a_brevitas_export_with_flatten_simulates_at_another_batch():
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    m = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                      qnn.QuantConv2d(3, 6, 3, padding=1, bias=False, weight_bit_width=4),
                      qnn.QuantReLU(bit_width=4, return_quant_tensor=True), nn.Flatten(),
                      qnn.QuantLinear(6 * 36, 4, bias=True, weight_bit_width=4)).eval()
    xs = sample((5, 3, 6, 6), seed=4)
    import tempfile
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = f"{d}/q.onnx"
        export_qonnx(m, input_t=torch.from_numpy(xs[:2]), export_path=path)
        ref = reference_outputs(path, xs)[0]
        with torch.no_grad():
            np.testing.assert_allclose(ref, m(torch.from_numpy(xs)).numpy(), rtol=1e-4, atol=1e-4)
        out = hwsim.simulate(path, "cpu/host", x=xs[:3]).outputs
        np.testing.assert_allclose(out, ref[:3], rtol=1e-4, atol=1e-4)
        ev = hwsim.evaluate(path, "cpu/host", xs, batch_size=2, workers=1, progress=False)
        assert float(ev.table["rel_rms_error"].max()) < 1e-4


# ----------------------------------------------------------------------------- 2. tied weights
class TiedLinear(nn.Module):  # targets_2.py of the audit
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False)
        self.l2.weight = self.l1.weight

    def forward(self, x):
        return self.l2(F.relu(self.l1(x)))


class TiedConv(nn.Module):  # weight and bias tied, a distinct batch norm after each use
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.b.weight, self.b.bias = self.a.weight, self.a.bias
        self.na, self.nb = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        for n in (self.na, self.nb):
            n.running_mean.uniform_(-0.2, 0.2)
            n.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.nb(self.b(F.relu(self.na(self.a(x)))))


class TiedFunctional(nn.Module):  # a second use of a module's weight through F.linear, in the same layout
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(16, 16)

    def forward(self, x):
        return F.linear(F.relu(self.enc(x)), self.enc.weight)


class TiedReversed(nn.Module):  # the module converted first is the second name of the tied parameter
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(16, 16), nn.Linear(16, 16)
        self.l2.weight = self.l1.weight

    def forward(self, x):
        return F.linear(F.relu(self.l2(x)), self.l1.weight, self.l1.bias)


@pytest.mark.parametrize("net, shape", [(TiedLinear, (2, 64)), (TiedConv, (2, 4, 5, 5)), (TiedFunctional, (2, 16)),
                                        (TiedReversed, (2, 16))])
def test_a_tied_weight_is_one_parameter(net, shape):
    torch.manual_seed(0)
    m, x = net().eval(), sample(shape, seed=1)
    g = mapping.trace(m, shape)
    torch_params = sum(p.numel() for p in m.parameters())  # torch counts a tied parameter once
    assert totals(g).params == g.param_count == torch_params
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, torch_out(m, x), rtol=1e-5, atol=1e-5)


def test_a_tied_weight_is_stored_and_placed_once():
    torch.manual_seed(0)
    m, x = TiedLinear().eval(), sample((2, 64), seed=1)
    g = mapping.trace(m, (2, 64))
    assert {n.params["weight"] for n in g.nodes if n.params} == {"l1.weight"}
    assert hwsim.simulate(g, "cpu/host").report.onchip_weight_bytes == 4 * 4096
    m7 = hwsim.simulate(g, "cpu/cortex-m7", x=x)
    assert m7.report.flash_bytes == 4096
    ref = torch_out(m, x)
    assert np.sqrt(np.mean((m7.outputs - ref) ** 2) / np.mean(ref ** 2)) < 0.05  # int8: close, not equal
    assert "1 weight matri" in hwsim.simulate(g, "imc/isaac").report.fit_reason


def test_an_onnx_weight_read_through_an_identity_is_one_parameter(tmp_path):
    torch.manual_seed(0)
    m, x = TiedLinear().eval(), sample((2, 64), seed=1)
    path = str(tmp_path / "tied.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), path, dynamo=False)
    assert any(n.op_type == "Identity" for n in onnx.load(path).graph.node)  # the layout this test is about
    g = mapping.from_onnx(path)
    assert totals(g).params == 4096
    np.testing.assert_allclose(hwsim.simulate(path, "cpu/host", x=x).outputs, reference_outputs(path, x)[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["onnx::MatMul_7", "shared.weight"])
def test_one_onnx_initializer_read_by_two_nodes_is_one_parameter(name):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), name)
    nodes = [helper.make_node("MatMul", ["x", name], ["h"], name="first"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", name], ["y"], name="second")]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w])
    m, x = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sample((2, 8), seed=5)
    g = mapping.from_onnx(m)
    assert totals(g).params == 64 and len({n.params["weight"] for n in g.nodes if "weight" in n.params}) == 1
    np.testing.assert_allclose(run(g, x)[0], reference_outputs(m, x)[0], rtol=1e-5, atol=1e-5)


def test_identity_arithmetic_is_dropped_and_outputs_are_unchanged():
    """x + 0, x - 0, x * 1, x / 1 of python scalars (timm's MobileOne training-form blocks add a literal 0) leave
    the graph; a graph output keeps its node; outputs equal torch's."""
    import numpy as np
    import torch
    from torch import nn

    import hwsim
    import mapping
    from mapping.graph import Op

    class Idle(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = torch.relu(self.c(x) + 0) * 1
            return (y - 0) / 1 + 1, y.mean((2, 3)) + 0

    m = Idle().eval()
    g = mapping.trace(m, (2, 3, 8, 8))
    assert [n.op for n in g.nodes].count(Op.ADD) == 2  # "+ 1" and the output's "+ 0"
    assert not [n for n in g.nodes if n.op in (Op.MUL, Op.SUB, Op.DIV)]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in m(torch.from_numpy(x))]
    for got, ref in zip(hwsim.simulate(g, "cpu/host", x=x).outputs, want):  # hwsim's conv kernel: float rounding
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
