"""ONNX import: torch models exported by both of torch's exporters import, verify against onnxruntime and compute
torch's outputs; models that move or merge the batch (ViT attention, MultiheadAttention, timm's DeiT) import with
batch 1; a wrong conversion is caught at its node; bad files and unsupported ops are one-line typed errors; the
API, the CLI and sweeps take .onnx paths."""
import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwsim
import mapping
from hwsim.errors import ConversionError, HwsimError, ShapeError, UnsupportedOpError
from hwsim.functional import run
from mapping.graph import Op


def export(model, x, path, dynamo, **kw):
    model.eval()
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # MultiheadAttention's fused kernel has no ONNX export
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=dynamo, **kw)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return path


def torch_out(model, x):
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(x))
    return [t.numpy() for t in (y if isinstance(y, (tuple, list)) else [y])]


def assert_close(outs, refs, rel=1e-4):
    outs = outs if isinstance(outs, list) else [outs]
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
        assert np.max(np.abs(o - r)) <= rel * max(np.max(np.abs(r)), 1e-6)


def sample(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


# ----------------------------------------------------------------------------- models
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)  # after the ReLU: not folded into the conv by the exporter
        self.mp, self.ap = nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.c2 = nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False)
        self.gp = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.ap(self.mp(self.bn(F.relu(self.c1(x)))))
        return self.fc(torch.flatten(self.gp(self.c2(x)), 1))


class Residual(nn.Module):
    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + self.down(x))


class Block(nn.Module):
    """A pre-norm transformer block: 2 heads, positional embedding, GELU MLP."""

    def __init__(self, length=6, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.1)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        n, length, dim = x.shape
        x = x + self.pos
        q, k, v = self.qkv(self.ln1(x)).split(dim, dim=-1)
        split = lambda t: t.reshape(n, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        a = torch.softmax(q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(n, length, dim))
        return x + self.mlp(self.ln2(x))


class Movement(nn.Module):
    """concat / split / slice / pad / transpose / resize / activations, and two outputs."""

    def forward(self, x):
        a, b = torch.split(x, [2, 4], dim=1)
        c = torch.cat([b, a], dim=1)
        d = F.pad(c, (1, 2, 0, 1), value=0.5)
        e = d[:, 1:5, 1:7, ::2]
        f = F.interpolate(F.leaky_relu(e, 0.2), scale_factor=2, mode="nearest")
        g = F.interpolate(F.hardswish(e), size=(12, 12), mode="bilinear", align_corners=False)
        h = torch.cat([f, g], 1).permute(0, 2, 3, 1)
        out1 = h.reshape(h.shape[0], -1)
        out2 = torch.clamp(torch.sigmoid(c) * 2 - 1, -0.5, 0.7).mean(dim=(2, 3)).unsqueeze(1)
        return out1, out2 + c[:, :, 3, 2].unsqueeze(1), c[:, 1]  # x[:, i]: a Gather (or Slice, Squeeze)


class ManyOps(nn.Module):
    """The activations, math, normalisations and reductions torch exports as their own ONNX ops."""

    def __init__(self):
        super().__init__()
        self.c, self.pr = nn.Conv2d(4, 6, 3, padding=1), nn.PReLU(6)
        self.gn, self.inorm = nn.GroupNorm(3, 6), nn.InstanceNorm2d(6, affine=True)
        self.bn, self.fc = nn.BatchNorm1d(6), nn.Linear(6, 5)

    def forward(self, x):
        y = self.pr(self.c(x))
        y = F.relu6(y) + torch.clamp(y, -0.3, 0.4) + F.hardsigmoid(y) + F.elu(y) + F.softplus(y) + F.mish(y)
        y = self.gn(y) + self.inorm(y) + torch.tanh(y) * y ** 2 + torch.exp(-y.abs()) + torch.sqrt(y.abs() + 1)
        y = F.silu(y + torch.log(y.abs() + 1)) / (y.abs() + 2) - 1.0 / (y.abs() + 1)
        z = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
        h = self.bn(F.adaptive_max_pool2d(z, 1).squeeze(-1).squeeze(-1) + z.sum(dim=(2, 3)) + z.amax(-1).mean(-1))
        lo, hi = torch.tensor(0.1), torch.tensor(0.2)
        return F.log_softmax(self.fc(h), dim=1), torch.maximum(h, lo), torch.minimum(h, hi)


CASES = {
    "cnn": (lambda: randomize_bn(SmallCNN()), (2, 3, 16, 16)),
    "residual": (lambda: randomize_bn(Residual()), (1, 4, 8, 8)),
    "transformer": (Block, (2, 6, 8)),
    "movement": (Movement, (1, 6, 8, 8)),
    "many-ops": (lambda: randomize_bn(ManyOps()), (2, 4, 5, 5)),
}


def _exporters(cases, quick_dynamo) -> list:
    """Every case through both exporters; the quick run takes the dynamo exporter (0.5-1.4 s an export) for
    ``quick_dynamo`` only, --slow for every case."""
    return [pytest.param(case, dynamo, id=f"{case}-{'dynamo' if dynamo else 'torchscript'}",
                         marks=pytest.mark.slow if dynamo and case not in quick_dynamo else ())
            for case in cases for dynamo in (False, True)]


@pytest.mark.parametrize("case,dynamo", _exporters(CASES, {"cnn", "many-ops"}))
def test_torch_exports_import_verified_and_compute_torchs_outputs(tmp_path, case, dynamo):
    make, shape = CASES[case]
    torch.manual_seed(0)
    model, x = make(), sample(shape)
    path = export(model, x, tmp_path / f"{case}.onnx", dynamo)
    g = mapping.from_onnx(path)  # verified against onnxruntime node by node
    assert g.input_shape == shape and len(g.outputs) == len(torch_out(model, x))
    assert_close(run(g, x), torch_out(model, x))
    if case in ("cnn", "residual") and not dynamo:  # the batch can change where no op names it (a Reshape may)
        x3 = sample((3,) + shape[1:], seed=2)
        assert_close(run(mapping.from_onnx(path, (3,) + shape[1:]), x3), torch_out(model, x3))


def test_graph_contents_follow_the_mapping_rules(tmp_path):
    torch.manual_seed(0)
    model, x = randomize_bn(SmallCNN()), sample((1, 3, 16, 16))
    g = mapping.from_onnx(export(model, x, tmp_path / "cnn.onnx", False))
    ops = [n.op for n in g.nodes]
    assert ops == [Op.CONV2D, Op.RELU, Op.BATCHNORM, Op.MAXPOOL, Op.AVGPOOL, Op.CONV2D, Op.ADAPTIVE_AVGPOOL,
                   Op.RESHAPE, Op.LINEAR]
    fc = g.nodes[-1]
    assert fc.attrs.in_features == 6 and fc.attrs.out_features == 5 and fc.attrs.bias
    np.testing.assert_array_equal(g.param(fc, "weight"), model.fc.weight.detach().numpy())
    assert g.param_count == sum(p.numel() for p in model.parameters())
    assert all(n.module for n in g.nodes)  # every node names its ONNX node


def test_erf_gelu_becomes_one_node_and_matmul_add_one_linear(tmp_path):
    torch.manual_seed(0)
    model, x = Block(), sample((1, 6, 8))
    g = mapping.from_onnx(export(model, x, tmp_path / "b17.onnx", False, opset_version=17))
    assert "Erf" in {n.op_type for n in onnx.load(tmp_path / "b17.onnx").graph.node}
    ops = [n.op for n in g.nodes]
    assert ops.count(Op.GELU) == 1 and Op.ERF not in ops
    assert ops.count(Op.LINEAR) == 4 and all("bias" in n.params for n in g.nodes if n.op == Op.LINEAR)
    assert Op.CONSTANT in ops  # the positional embedding, broadcast over the batch
    assert_close(run(g, x), torch_out(model, x))


def test_hand_built_onnx_same_padding_gemm_and_opset18_ops():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)), "gs": [1.5, 0.5], "gb": [0.1, -0.1],
             "gemm_b": rng.standard_normal((4, 3)), "gemm_c": rng.standard_normal((1, 3)), "lo": -0.2, "split": [1, 2]}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], auto_pad="SAME_UPPER", strides=[2, 2]),  # pads (0,0,1,1)
        helper.make_node("GroupNormalization", ["conv", "gs", "gb"], ["gn"], num_groups=2),  # opset 18: per group
        helper.make_node("HardSigmoid", ["gn"], ["hs"]),  # ONNX's default alpha 0.2, beta 0.5
        helper.make_node("GlobalMaxPool", ["hs"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gemm_b", "gemm_c"], ["gemm"], alpha=0.5, beta=2.0),
        helper.make_node("Clip", ["gemm", "lo"], ["clip"]),
        helper.make_node("Split", ["clip", "split"], ["s1", "s2"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("s1", "s2")],
        [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if k == "split" else np.float32), k)
         for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    g = mapping.from_onnx(m, (2, 3, 8, 8))
    assert [n.op for n in g.nodes] == [Op.PAD, Op.CONV2D, Op.GROUPNORM, Op.MUL, Op.ADD, Op.CLAMP, Op.REDUCE_MAX,
                                       Op.RESHAPE, Op.LINEAR, Op.CLAMP, Op.SLICE, Op.SLICE]
    assert g.nodes[0].attrs.pads == ((0, 0), (0, 0), (0, 1), (0, 1)) and g.outputs == ("s1", "s2")
    x = sample((2, 3, 8, 8))
    from mapping.onnx import reference_outputs

    assert_close(run(g, x), reference_outputs(m, x))


def test_dynamic_batch_needs_input_shape(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(self.c(x).view(x.size(0), -1))  # a Shape/Gather subgraph, folded at import

    torch.manual_seed(0)
    model, x = Net(), sample((1, 3, 6, 6))
    path = export(model, x, tmp_path / "dyn.onnx", False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(ShapeError, match="dynamic dims .*input_shape"):
        mapping.from_onnx(path)
    x4 = sample((4, 3, 6, 6))
    g = mapping.from_onnx(path, (4, 3, 6, 6))
    assert_close(run(g, x4), torch_out(model, x4))
    with pytest.raises(ShapeError, match="does not match"):
        mapping.from_onnx(path, (4, 3, 7, 6))


def test_zoo_net_through_simulate(tmp_path):
    import nets

    model = nets.get("resnet20").eval()
    x = sample((1, 3, 32, 32))
    path = export(model, x, tmp_path / "resnet20.onnx", False)
    res = hwsim.simulate(str(path), "cpu/cortex-a72", x=x)
    assert_close(res.outputs, torch_out(model, x))
    assert res.report.macs == hwsim.simulate(model, "cpu/cortex-a72").report.macs
    proto = onnx.load(path)  # a ModelProto works wherever a model does (the exporter folded batch norm)
    convs = lambda g: [(n.attrs.rows, n.attrs.out_channels, n.attrs.stride) for n in g if n.op == Op.CONV2D]  # noqa
    assert convs(hwsim.as_graph(proto)) == convs(hwsim.as_graph(model))


def test_a_wrong_conversion_is_caught_at_its_node(tmp_path, monkeypatch):
    from mapping import onnx_ops
    from mapping.graph import LeakyRelu

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), nn.Conv2d(4, 2, 1))
    x = sample((1, 3, 8, 8))
    path = export(model, x, tmp_path / "leaky.onnx", False)
    leaky = next(n for n in onnx.load(path).graph.node if n.op_type == "LeakyRelu")

    def wrong_slope(imp, n):  # a converter bug: the slope is not read from the node
        imp.emit(n, Op.LEAKY_RELU, [imp.act(n.input[0], n)], LeakyRelu(0.3))

    monkeypatch.setitem(onnx_ops.CONVERTERS, "LeakyRelu", wrong_slope)
    with pytest.raises(ConversionError, match=f"onnxruntime at node '{leaky.output[0]}' .*leaky_relu.*"
                                              f"module '{leaky.name}'"):
        mapping.from_onnx(path)
    assert len(mapping.from_onnx(path, verify=False).nodes) == 3  # unverified, the wrong graph goes through


@pytest.mark.parametrize("what", ["missing", "garbage", "directory"])
def test_bad_files_are_one_line_errors(tmp_path, what):
    path = tmp_path / "m.onnx"
    if what == "garbage":
        path.write_bytes(b"this is not a protobuf \xff\xfe at all")
    elif what == "directory":
        path.mkdir()
    with pytest.raises(HwsimError) as e:
        mapping.from_onnx(path)
    assert len(str(e.value).splitlines()) == 1
    assert ("no such ONNX file" if what != "garbage" else "is not an ONNX model") in str(e.value)


class _Det(nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)


class _GridSample(nn.Module):
    def __init__(self):
        super().__init__()
        self.grid = nn.Parameter(torch.linspace(-1, 1, 18).reshape(1, 3, 3, 2))

    def forward(self, x):
        return nn.functional.grid_sample(x, self.grid, align_corners=False)


@pytest.mark.parametrize("layer,shape,op", [
    (_Det(), (1, 3, 3), "Det"),
    (_GridSample(), (1, 2, 4, 4), "GridSample"),
])
def test_unsupported_ops_are_named_with_their_node(tmp_path, layer, shape, op):
    x = sample(shape)
    path = export(layer, x, tmp_path / "u.onnx", False)
    node = next(n for n in onnx.load(path).graph.node if n.op_type == op)
    with pytest.raises(UnsupportedOpError, match=f"{op} at node '{node.name}'"):
        mapping.from_onnx(path)


def test_batch_merging_reshape_two_inputs_and_old_opsets_are_refused(tmp_path):
    x = sample((2, 3, 4))
    with pytest.raises(UnsupportedOpError, match="merging the batch"):
        mapping.from_onnx(export(nn.Flatten(0), x, tmp_path / "merge.onnx", False))

    class Two(nn.Module):
        def forward(self, a, b):
            return a + b

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Two(), (torch.zeros(1, 2), torch.zeros(1, 2)), str(tmp_path / "two.onnx"), dynamo=False)
    with pytest.raises(UnsupportedOpError, match="2 inputs"):
        mapping.from_onnx(tmp_path / "two.onnx")
    with pytest.raises(UnsupportedOpError, match="opset 11"):
        mapping.from_onnx(export(nn.ReLU(), x, tmp_path / "old.onnx", False, opset_version=11))


@pytest.mark.subprocess
def test_import_does_not_load_onnx():
    code = "import sys, hwsim, mapping; assert not {'onnx', 'onnxruntime', 'qonnx'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- models that move the batch (batch 1)
class TimmAttention(nn.Module):
    """timm's ViT attention: qkv -> reshape(B, N, 3, H, d) -> permute(2, 0, 3, 1, 4) -> unbind(0) -> SDPA."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mha(nn.Module):
    """nn.MultiheadAttention on a batch-first input; sequence-first (batch_first=False) returns its (L, N, E)."""

    def __init__(self, batch_first):
        super().__init__()
        self.batch_first, self.mha = batch_first, nn.MultiheadAttention(16, 2, batch_first=batch_first)

    def forward(self, x):
        x = x if self.batch_first else x.transpose(0, 1)
        return self.mha(x, x, x, need_weights=False)[0]


MOVERS = {
    "timm-attention": (TimmAttention, (1, 7, 16)),
    "mha-batch-first": (lambda: Mha(True), (1, 7, 16)),
    "mha-seq-first": (lambda: Mha(False), (1, 7, 16)),
    "encoder-layer": (lambda: nn.Sequential(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)), (1, 7, 16)),
}


def assert_same_values(outs, refs, rel=1e-4):
    """As assert_close, the IR's outputs viewed as the source's shapes (a leading unit batch dim)."""
    outs = outs if isinstance(outs, list) else [outs]
    assert [o.size for o in outs] == [r.size for r in refs]
    assert_close([o.reshape(r.shape) for o, r in zip(outs, refs)], refs, rel)


@pytest.mark.parametrize("case,dynamo", _exporters(MOVERS, {"timm-attention"}))
def test_models_that_move_the_batch_import_with_batch_1(tmp_path, case, dynamo):
    make, shape = MOVERS[case]
    torch.manual_seed(0)
    model, x = make(), sample(shape)
    g = mapping.from_onnx(export(model, x, tmp_path / f"{case}.onnx", dynamo))  # verified node by node
    assert g.batch_fixed and g.input_shape == shape
    assert all(n.shape[0] == 1 for n in g.nodes)
    assert_same_values(run(g, x), torch_out(model, x))
    assert sum(n.op == Op.MATMUL for n in g.nodes) == 2 and any(n.op == Op.SOFTMAX for n in g.nodes)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_timm_deit_tiny_imports_with_batch_1(tmp_path, dynamo):
    from nets.external import build_timm

    model, shape = build_timm("deit_tiny_patch16_224")
    x = sample(shape)
    path = export(model, x, tmp_path / "deit.onnx", dynamo)
    g = mapping.from_onnx(path)
    assert g.batch_fixed and g[g.outputs[0]].shape == (1, 1000)
    ops = [n.op for n in g.nodes]
    assert ops.count(Op.MATMUL) == 24 and ops.count(Op.SOFTMAX) == 12 and ops.count(Op.LINEAR) == 49
    if not dynamo:  # one parameter per float initializer element of the file: equal tensors of fresh norms that the
        # exporter feeds through Identity nodes from one initializer are one tensor there, counted once
        inits = onnx.load(str(path)).graph.initializer
        assert g.param_count == sum(onnx.numpy_helper.to_array(i).size for i in inits
                                    if i.data_type == onnx.TensorProto.FLOAT)
    assert_close(run(g, x), torch_out(model, x))


class NormExpand(nn.Module):
    """LeViT's batch norm of ``x.flatten(0, 1)``, F.normalize (ReduceL2, Clip, Expand, Div) and ``expand_as``."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn = nn.Linear(16, 16), nn.BatchNorm1d(16)

    def forward(self, x):
        b, n, c = x.shape
        z = F.normalize(self.bn(self.fc(x).flatten(0, 1)).reshape(b, n, c), dim=-1)
        return F.relu(z) * z.sum(dim=1, keepdim=True).expand_as(z)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_batch_norm_of_a_merged_batch_normalize_and_expand(tmp_path, dynamo):
    torch.manual_seed(0)
    model, x = randomize_bn(NormExpand()), sample((1, 7, 16))
    g = mapping.from_onnx(export(model, x, tmp_path / "ne.onnx", dynamo))
    assert g.batch_fixed and Op.BATCHNORM in {n.op for n in g.nodes}
    assert_close(run(g, x), torch_out(model, x))


def test_axis_0_ops_of_a_merged_batch_translate_by_the_unit_dim():
    """Hand-built: with batch 1 a Reshape drops the batch, and Softmax, reductions, Slice, Concat, Gather, Split,
    Transpose, MatMul and Add work along ONNX axis 0 of values that no longer have it."""
    from onnx import TensorProto, helper, numpy_helper

    from mapping.onnx import reference_outputs

    i64 = lambda name, v: numpy_helper.from_array(np.asarray(v, dtype=np.int64), name)  # noqa: E731
    inits = [i64("flat", [4, 6]), i64("ax0", [0]), i64("lo", [1]), i64("hi", [3]), i64("five", 5),
             i64("one", [1]), numpy_helper.from_array(sample((6,), seed=3), "c")]
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["m"]),  # (1, 4, 6) -> (4, 6): the batch merged
        helper.make_node("Softmax", ["m"], ["sm"], axis=0),
        helper.make_node("ReduceMean", ["sm", "ax0"], ["red"], keepdims=0),  # (6,)
        helper.make_node("Slice", ["m", "lo", "hi", "ax0"], ["sl"]),  # (2, 6)
        helper.make_node("Concat", ["m", "sl"], ["cat"], axis=0),  # (6, 6)
        helper.make_node("Gather", ["cat", "five"], ["row"], axis=0),  # (6,)
        helper.make_node("Add", ["row", "red"], ["sum"]),
        helper.make_node("Mul", ["sum", "c"], ["scaled"]),
        helper.make_node("Transpose", ["cat"], ["t"], perm=[1, 0]),
        helper.make_node("MatMul", ["cat", "t"], ["gram"]),  # (6, 6) @ (6, 6)
        helper.make_node("Split", ["x", "one"], ["whole"], axis=0),  # the unit batch itself
        helper.make_node("Unsqueeze", ["scaled", "ax0"], ["back"]),  # (1, 6): batch-first again
        helper.make_node("Relu", ["whole"], ["r"]),
        helper.make_node("ReduceMin", ["m", "one"], ["mn"]),  # (4, 1)
        helper.make_node("ReduceL1", ["m", "ax0"], ["l1"], keepdims=0),  # (6,)
        helper.make_node("ReduceSumSquare", ["m", "one"], ["ss"], keepdims=0),  # (4,)
    ]
    graph = helper.make_graph(nodes, "axis0", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                               for o in ("back", "gram", "r", "mn", "l1", "ss")], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    g = mapping.from_onnx(m)
    assert g.batch_fixed and [g[o].shape for o in g.outputs] == [(1, 6), (1, 6, 6), (1, 4, 6), (1, 4, 1), (1, 6),
                                                                 (1, 4)]
    x = sample((1, 4, 6))
    assert_same_values(run(g, x), reference_outputs(m, x))


def test_batch_moves_are_refused_above_batch_1(tmp_path):
    x = sample((2, 7, 16))
    path = export(TimmAttention(), x, tmp_path / "attn2.onnx", False)
    with pytest.raises(UnsupportedOpError, match=r"perm \(2, 0, 3, 1, 4\) moves the batch dimension; export and "
                                                 "import with batch 1"):
        mapping.from_onnx(path)
    path = export(TimmAttention(), x[:1], tmp_path / "attn.onnx", False, input_names=["x"],
                  dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(UnsupportedOpError, match="export and import with batch 1"):
        mapping.from_onnx(path, (3, 7, 16))
    assert mapping.from_onnx(path, (1, 7, 16)).batch_fixed


# ----------------------------------------------------------------------------- CLI and sweeps
def test_cli_runs_and_fits_an_onnx_file(tmp_path, capsys):
    from hwsim.cli import main

    model, x = randomize_bn(SmallCNN()), sample((1, 3, 16, 16))
    path = export(model, x, tmp_path / "cnn.onnx", False)
    assert main(["run", "--model", str(path), "--hw", "cpu/cortex-a72", "--json", "--functional"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["network"] == "cnn" and "functional check vs the ONNX model's own executor" in err
    assert main(["fit", "--model", str(path), "--hw", "imc/isaac"]) == 0
    assert "FITS" in capsys.readouterr().out
    assert main(["run", "--model", str(tmp_path / "none.onnx"), "--hw", "cpu/cortex-a72"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwsim: error:") and "none.onnx" in err and "no such" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:  # --net and --model exclude each other
        main(["run", "--net", "resnet20", "--model", str(path), "--hw", "cpu/cortex-a72"])
    assert e.value.code == 2


def test_cli_dynamic_model_takes_input_shape(tmp_path, capsys):
    from hwsim.cli import main

    path = export(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), sample((1, 3, 8, 8)), tmp_path / "d.onnx", False,
                  input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    assert main(["run", "--model", str(path), "--hw", "cpu/cortex-a72"]) == 2
    err = capsys.readouterr().err
    assert "dynamic dims" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--model", str(path), "--hw", "cpu/cortex-a72", "--input-shape", "1,3,10,12"]) == 0


def test_sweep_takes_onnx_paths(tmp_path):
    path = export(randomize_bn(SmallCNN()), sample((1, 3, 16, 16)), tmp_path / "cnn.onnx", False)
    df = hwsim.sweep([str(path), "resnet20"], ("cpu/cortex-a72", {"cores": [1, 2]}), workers=1)
    assert list(df["net"]) == ["cnn", "cnn", "resnet20", "resnet20"] and (df["error"] == "").all()
    (tmp_path / "s.yaml").write_text("nets: [cnn.onnx]\nbase: cpu/cortex-a53\ngrid: {cores: [1, 4]}\n")
    from hwsim.codesign.sweep import sweep_from_yaml

    df2 = sweep_from_yaml(tmp_path / "s.yaml", progress=False)
    assert list(df2["net"]) == ["cnn", "cnn"] and (df2["error"] == "").all()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_round_floor_ceil_import_as_torch_computes_them(tmp_path, dynamo):
    """ONNX Round (half to even), Floor and Ceil: a fake quantizer round(x / s).clamp(lo, hi) * s and floor / ceil
    equal torch's outputs exactly (x.5 ties included)."""
    class FakeQuant(nn.Module):
        def forward(self, x):
            return torch.round(x / 0.25).clamp(-8, 7) * 0.25 + torch.floor(x) - torch.ceil(x)

    x = (sample((2, 3, 4, 4)) * 3).astype(np.float32)
    x[0, 0, 0] = [0.125, 0.375, -0.125, 2.5]  # ties of x / 0.25
    g = mapping.from_onnx(export(FakeQuant().eval(), x, tmp_path / "fq.onnx", dynamo))
    assert {Op.ROUND, Op.FLOOR, Op.CEIL} <= {n.op for n in g.nodes}
    np.testing.assert_array_equal(run(g, x)[0], torch_out(FakeQuant().eval(), x)[0])
