"""Transposed convolution (``Op.CONV_TRANSPOSE2D``): the fp32 kernel against torch, the torch and ONNX importers
(verified against torch / onnxruntime), MAC counts, batch-norm folding, the CPU target's cost rules, and the one-line
refusals of the targets that do not run it."""
import math
import sys
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
from hwsim import functional
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.kernels._deconv import conv_transpose2d
from mapping.analysis import node_macs, totals
from mapping.graph import Op
from mapping.passes.fold_bn import fold_bn


def sample(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_ct(x, w, b, s, p, op, d, g):
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    return F.conv_transpose2d(t(x), t(w), t(b), s, p, op, g, d).numpy()


def run1(graph, x):
    return functional.run(graph, x)[0]


def one_line(e) -> str:
    msg = str(e.value)
    assert isinstance(e.value, HwsimError) and "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------ the kernel
# (stride, padding, output_padding, dilation, groups, kernel, cin, cout)
KERNEL_CASES = [
    (1, 0, 0, 1, 1, (3, 3), 4, 5), (2, 0, 0, 1, 1, (2, 2), 4, 5), (2, 1, 1, 1, 1, (3, 3), 4, 5),
    (3, 1, 2, 1, 1, (3, 3), 3, 2), (2, 2, 0, 1, 1, (5, 5), 4, 4), ((2, 1), (1, 0), (1, 0), 1, 1, (3, 2), 4, 3),
    (1, 1, 1, 2, 1, (3, 3), 4, 3), (2, 2, 1, (2, 3), 1, (3, 3), 4, 4), (2, 1, 0, 1, 2, (4, 4), 4, 6),
    (2, 1, 1, 1, 4, (3, 3), 8, 8), (1, 1, 0, 1, 6, (3, 3), 6, 6), (2, 1, 1, 1, 6, (4, 4), 6, 12),
    (3, 3, 2, 1, 1, (3, 3), 2, 3),  # padding beyond the taps: output_padding rows reached by the bias alone
]


@pytest.mark.parametrize("s,p,op,d,g,k,cin,cout", KERNEL_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_matches_torch(s, p, op, d, g, k, cin, cout, bias):
    x = sample((2, cin, 5, 6), 1)
    w = sample((cin, cout // g) + k, 2)
    b = sample((cout,), 3) if bias else None
    ref = torch_ct(x, w, b, s, p, op, d, g)
    y = conv_transpose2d(x, w, b, s, p, op, d, g)
    assert y.shape == ref.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw,fragment", [
    (dict(groups=3), "groups 3"), (dict(stride=0), "stride"), (dict(padding=-1), "padding"),
    (dict(b=np.zeros(7, np.float32)), "bias has 7 entries"), (dict(padding=9), "output size"),
])
def test_kernel_rejects_bad_arguments(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        conv_transpose2d(sample((1, 4, 3, 3)), sample((4, 2, 3, 3)), **kw)


# ------------------------------------------------------------------------------------------------ torch import
class Holder(nn.Module):
    def __init__(self, layer, fn=None):
        super().__init__()
        self.layer, self.fn = layer, fn

    def forward(self, x):
        return self.fn(self.layer, x) if self.fn else self.layer(x)


MODULES = [
    (nn.ConvTranspose2d(4, 6, 3), (2, 4, 5, 5)),
    (nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1), (1, 4, 6, 7)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, bias=False), (1, 4, 5, 5)),
    (nn.ConvTranspose2d(4, 6, 3, stride=3, padding=2, output_padding=2, dilation=2, groups=2), (2, 4, 4, 5)),
    (nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, groups=8), (1, 8, 6, 6)),
    (nn.ConvTranspose2d(4, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (1, 4, 5, 6)),
]


@pytest.mark.parametrize("layer,shape", MODULES)
def test_torch_module_imports_and_runs_as_torch(layer, shape):
    m = Holder(layer).eval()
    g = mapping.trace(m, shape)  # verified node by node against torch
    (n,) = g.nodes
    assert n.op == Op.CONV_TRANSPOSE2D and n.attrs.output_padding == tuple(layer.output_padding)
    assert n.attrs.groups == layer.groups and n.attrs.bias == (layer.bias is not None)
    x = sample(shape)
    np.testing.assert_allclose(run1(g, x), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_forward_output_size_picks_the_output_padding():
    layer = nn.ConvTranspose2d(4, 3, 3, stride=3, padding=1)
    m = Holder(layer, lambda lay, x: lay(x, [15, 14])).eval()  # without output padding: (5 - 1)·3 - 2 + 2 + 1 = 13
    g = mapping.trace(m, (1, 4, 5, 5))
    assert g.nodes[0].attrs.output_padding == (2, 1) and g.nodes[0].shape == (1, 3, 15, 14)
    x = sample((1, 4, 5, 5))
    np.testing.assert_allclose(run1(g, x), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


class Functional(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)))
        self.b = nn.Parameter(torch.randn(3 * groups, generator=torch.Generator().manual_seed(1)))
        self.groups = groups

    def forward(self, x):
        return F.relu(F.conv_transpose2d(x, self.w, self.b, stride=2, padding=1, output_padding=1,
                                         groups=self.groups, dilation=1))


@pytest.mark.parametrize("through_export", [False, True], ids=["fx", "torch.export"])
def test_functional_form_imports_and_runs_as_torch(through_export, monkeypatch):
    if through_export:  # ATen's conv_transpose2d / convolution(transposed=True), as the tracer's fallback sees them
        def no_fx(model):
            raise RuntimeError("fx disabled for this test")
        monkeypatch.setattr(sys.modules["mapping.trace"], "_fx_module", no_fx)
    m = Functional().eval()
    g = mapping.trace(m, (2, 4, 5, 5))
    assert [n.op for n in g.nodes] == [Op.CONV_TRANSPOSE2D, Op.RELU]
    x = sample((2, 4, 5, 5))
    np.testing.assert_allclose(run1(g, x), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer,shape,words", [
    (nn.ConvTranspose1d(3, 4, 2, 2), (1, 3, 4), ["ConvTranspose1d", "'layer'"]),
    (nn.ConvTranspose2d(3, 4, 3, padding_mode="zeros", bias=False), (1, 3, 4, 4), None),
])
def test_one_dimensional_transposed_conv_is_refused_in_one_line(layer, shape, words):
    if words is None:  # the 2-d one imports (control case)
        assert mapping.trace(Holder(layer).eval(), shape).nodes[0].op == Op.CONV_TRANSPOSE2D
        return
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(Holder(layer).eval(), shape)
    msg = one_line(e)
    assert all(w in msg for w in words), msg


# ------------------------------------------------------------------------------------------------ ONNX import
def export(model, x, path):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(x),), str(path), dynamo=False)
    return path


@pytest.mark.parametrize("layer,shape", MODULES[:5])
def test_onnx_convtranspose_imports_verified_against_onnxruntime(tmp_path, layer, shape):
    import onnxruntime as ort

    x = sample(shape)
    path = export(Holder(layer), x, tmp_path / "ct.onnx")
    g = mapping.from_onnx(path)  # verified node by node against onnxruntime
    assert [n.op for n in g.nodes] == [Op.CONV_TRANSPOSE2D]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(run1(g, x), ref, rtol=1e-5, atol=1e-5)


def _onnx_model(tmp_path, w, attrs, in_hw=(4, 4), out_hw=None):
    cin, cout = w.shape[0], w.shape[1] * attrs.get("group", 1)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", **attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout] + list(out_hw) if out_hw else None)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, *in_hw])],
                              [out], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_onnx_auto_pad_same_with_an_even_split_imports(tmp_path):
    import onnxruntime as ort

    w = sample((3, 2, 3, 3))  # stride 2, k 3, output_padding 1: total padding 1 + 2 + 1 - 2 = 2, split 1 / 1
    path = _onnx_model(tmp_path, w, dict(strides=[2, 2], output_padding=[1, 1], auto_pad="SAME_UPPER"))
    g = mapping.from_onnx(path)
    assert g.nodes[0].attrs.padding == (1, 1) and g.nodes[0].shape == (1, 2, 8, 8)
    x = sample((1, 3, 4, 4))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run1(g, x), sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs,fragment", [
    (dict(strides=[2, 2], output_shape=[9, 9]), "output_shape"),
    (dict(strides=[2, 2], pads=[0, 0, 1, 1]), "asymmetric pads"),
    (dict(strides=[2, 2], auto_pad="SAME_LOWER"), "auto_pad SAME_LOWER"),  # total 1 + 3 - 2 = 1: odd
])
def test_onnx_forms_without_an_exact_ir_are_refused_naming_the_node(tmp_path, attrs, fragment):
    path = _onnx_model(tmp_path, sample((3, 2, 3, 3)), attrs)
    with pytest.raises(UnsupportedOpError) as e:
        mapping.from_onnx(path)
    msg = one_line(e)
    assert "ConvTranspose" in msg and "'up'" in msg and fragment in msg, msg


# ------------------------------------------------------------------------------------------------ counts
def test_macs_and_params_match_a_hand_count():
    m = Holder(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)).eval()
    g = mapping.trace(m, (1, 4, 5, 7))
    # every input pixel (5·7) of every input channel (4) times every tap (3·3) of the Cout/groups = 3 outputs it feeds
    assert node_macs(g.nodes[0]) == 5 * 7 * 4 * 3 * 9 == 3780
    t = totals(g)
    assert t.macs == 3780 and t.params == 4 * 3 * 3 * 3 + 6 and t.weight_layers == 1


# ------------------------------------------------------------------------------------------------ batch norm
@pytest.mark.parametrize("groups", [1, 2])
def test_batch_norm_after_a_transposed_conv_folds_exactly(groups):
    m = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=groups == 1),
                      nn.BatchNorm2d(6), nn.ReLU()).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bn = m[1]
        bn.running_mean.copy_(torch.randn(6, generator=gen))
        bn.running_var.copy_(torch.rand(6, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(6, generator=gen))
        bn.bias.copy_(torch.randn(6, generator=gen))
    g = fold_bn(mapping.trace(m, (2, 4, 5, 5)))
    assert [n.op for n in g.nodes] == [Op.CONV_TRANSPOSE2D, Op.RELU] and g.nodes[0].meta["folded_bn"]
    x = sample((2, 4, 5, 5))
    np.testing.assert_allclose(run1(g, x), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ the CPU target
class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                  nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.ReLU(),
                                nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=8), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.up(self.down(x))


@pytest.mark.parametrize("preset", ["cpu/cortex-a72", "cpu/cortex-a53"])
def test_autoencoder_simulates_on_cortex_a_presets(preset):
    m = AutoEncoder().eval()
    x = sample((1, 3, 32, 32))
    r = hwsim.simulate(m, preset, x=x)
    np.testing.assert_allclose(np.asarray(r.outputs), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    df = r.report.to_pandas()
    ct = df[df.op == "conv_transpose2d"]
    assert list(ct.kernel) == ["deconv-gemm", "deconv-depthwise"]
    assert list(ct.macs) == [8 * 8 * 16 * 8 * 9, 16 * 16 * 8 * 16]
    assert (ct.latency_s > 0).all() and math.isfinite(r.report.latency_s) and r.report.latency_s > 0


def test_ncnn_work_follows_gemm_then_col2im():
    from hwsim.cpu.runtime import deconv_work

    g = mapping.trace(Holder(nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1)).eval(), (1, 16, 8, 8))
    w = deconv_work(g.nodes[0], "ncnn", "fp32")
    border = (8 - 1) * 2 + 2 + 1 + 1  # (H-1)·s + d(k-1) + 1 + output_padding = 18
    assert w.algo == "deconv-gemm" and w.macs == 8 * 8 * 16 * 8 * 9 and w.dw_macs == 0
    assert w.vec_ops == 8 * (border * border + 9 * 8 * 8) + 8 * 16 * 16  # bias fill + col2im adds + the crop
    with pytest.raises(UnsupportedOpError, match="runtime='ncnn'"):
        deconv_work(g.nodes[0], "xnnpack", "fp32")


def test_pytorch_model_costs_a_gemm_and_col2im(monkeypatch):
    from hwsim.cpu import cost
    from hwsim.cpu.cost_ops import KernelKind, col2im_ops, ops_per_element

    g = mapping.trace(Holder(nn.ConvTranspose2d(16, 8, 4, 2, 1)).eval(), (2, 16, 8, 8))
    n = g.nodes[0]
    with pytest.raises(UnsupportedOpError, match="conv_transpose2d 'layer'"):  # never costed as an elementwise op
        ops_per_element(n, {})
    monkeypatch.setitem(cost.PRODUCT_OP_KINDS, Op.CONV_TRANSPOSE2D, KernelKind.DECONV)  # the routing cost.py needs
    spec = hwsim.load_preset("cpu/host")
    lc = cost.layer_cost(g, n, spec, cost.placement(g, spec, 0, 1), 1)
    assert lc.kind == KernelKind.DECONV
    assert col2im_ops(n) == 2 * 8 * (16 * 16 + 16 * 8 * 8)
    assert lc.flops == 2 * 2 * node_macs(n) + col2im_ops(n) and lc.latency_s > 0 and math.isfinite(lc.latency_s)


# ------------------------------------------------------------------------------------------------ compression
def _decoder():
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                         nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 3, 3, 1, 1)).eval()


def test_channel_pruning_pins_the_transposed_convs_channels():
    from nets.compress.complexity import prune_complexity
    from nets.compress.deps import analyze

    deps = analyze(_decoder(), (1, 3, 16, 16))
    assert [g.name for g in deps.groups] == ["0"]  # the classes around the transposed conv are pinned
    assert any("conv_transpose2d '4'" in r for r in deps.pinned.values())
    m = _decoder()
    pruned = prune_complexity(m, (1, 3, 16, 16), 0.3)
    assert pruned.get_submodule("4").weight.shape == m[4].weight.shape
    x = torch.randn(2, 3, 16, 16)
    assert pruned(x).shape == m(x).shape


def test_ptq_leaves_the_transposed_conv_in_float():
    from nets.compress.quantize import quantize_ptq

    m = _decoder()
    r = quantize_ptq(m, torch.randn(4, 3, 16, 16), (1, 3, 16, 16))
    assert torch.equal(r.model[4].weight, m[4].weight) and not torch.equal(r.model[0].weight, m[0].weight)
    assert "_4" not in r.input_ranges


# ------------------------------------------------------------------------------------------------ refusals
def _ae_graph():
    return mapping.trace(AutoEncoder().eval(), (1, 3, 16, 16))


def test_imc_target_runs_it():  # hwsim.imc.deconv: a crossbar GEMM + digital col2im (tests/test_imc_conv_transpose.py)
    r = hwsim.simulate(_ae_graph(), "imc/edge-small", x=sample((1, 3, 16, 16)))
    rows = [row for row in r.report.layers if row.op == "conv_transpose2d"]
    assert [row.name for row in rows] == ["up_0", "up_2"] and all(row.cost.crossbars > 0 for row in rows)
    assert np.isfinite(np.asarray(r.outputs)).all() and r.report.energy_j > 0


@pytest.mark.parametrize("preset", ["fpga/pynq-z1", "cpu/cortex-m7"])
def test_targets_without_it_refuse_in_one_line_naming_the_node(preset):
    # the XNOR engine refuses a float conv first: there the transposed conv leads the graph
    fpga = preset.startswith("fpga/")
    g = mapping.trace(Holder(nn.ConvTranspose2d(3, 4, 2, 2)), (1, 3, 4, 4)) if fpga else _ae_graph()
    with pytest.raises(UnsupportedOpError) as e:
        hwsim.simulate(g, preset)
    msg = one_line(e)
    assert "conv_transpose2d" in msg and ("'layer'" if fpga else "'up_0'") in msg, msg


@pytest.mark.parametrize("runtime", ["xnnpack", "dabnn"])
def test_runtimes_without_a_model_refuse_in_one_line(runtime):
    import dataclasses

    spec = dataclasses.replace(hwsim.load_preset("cpu/cortex-a72"), runtime=runtime, cores=1)
    with pytest.raises(HwsimError) as e:
        hwsim.simulate(_ae_graph(), spec)
    msg = one_line(e)
    assert "up_0" in msg, msg


def test_cli_runs_it_on_imc_and_cpu(tmp_path, capsys):
    from hwsim.cli import main

    path = export(AutoEncoder(), sample((1, 3, 16, 16)), tmp_path / "ae.onnx")
    assert main(["run", "--model", str(path), "--hw", "imc/edge-small", "-q"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert main(["run", "--model", str(path), "--hw", "cpu/cortex-a72", "-q", "--json"]) == 0
