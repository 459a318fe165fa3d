"""3-d convolutions and pools (nn.Conv3d, F.conv3d, Max/Avg/AdaptiveAvgPool3d, BatchNorm3d; ONNX 3-D Conv,
MaxPool, AveragePool) run as exact compositions of 2-d ops (mapping._torch_3d): outputs equal torch's on every
target that runs them, the parameter count is torch's, the MACs are the hand count (padded depth taps included, as
torch's FlopCounterMode counts them), and torchvision's video ResNets import."""
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from torch.utils.flop_counter import FlopCounterMode

import hwsim
import mapping
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.functional import run
from mapping._torch_3d import MAX_TAPS
from mapping.analysis import totals
from mapping.graph import Op
from mapping.passes.fold_bn import fold_bn


def _x(shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _conv_macs(m: nn.Conv3d, out: tuple) -> int:
    """N·Cout·D'·H'·W'·(Cin/g)·kd·kh·kw: every tap of every output, padded ones included."""
    kd, kh, kw = m.kernel_size
    return int(np.prod(out)) * m.in_channels // m.groups * kd * kh * kw


def _flops(m: nn.Module, x: torch.Tensor) -> int:
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        m(x)
    return fc.get_total_flops()


CONVS = [
    (nn.Conv3d(3, 8, 3), (2, 3, 5, 9, 9)),
    (nn.Conv3d(3, 8, 3, stride=2, padding=1), (2, 3, 7, 9, 9)),
    (nn.Conv3d(3, 8, (3, 3, 3), stride=(1, 2, 2), padding=(2, 1, 1), dilation=(2, 1, 1), bias=False), (2, 3, 6, 9, 9)),
    (nn.Conv3d(4, 8, (3, 3, 3), padding=1, groups=2), (2, 4, 4, 7, 7)),
    (nn.Conv3d(8, 8, 3, padding=1, groups=8, bias=False), (2, 8, 4, 7, 7)),  # depthwise
    (nn.Conv3d(3, 6, (1, 3, 3), padding=(0, 1, 1)), (2, 3, 4, 8, 8)),  # R(2+1)D's spatial conv
    (nn.Conv3d(6, 6, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)), (2, 6, 5, 8, 8)),  # and its temporal conv
    (nn.Conv3d(3, 4, (2, 3, 3), padding="same"), (2, 3, 5, 6, 6)),  # "same" with an even depth kernel: pads 0, 1
    (nn.Conv3d(3, 4, 3, padding=1), (2, 3, 1, 6, 6)),  # depth 1: two taps only ever meet the padding
]


@pytest.mark.parametrize("conv,shape", CONVS, ids=["plain", "stride2_pad1", "dilated_depth", "groups", "depthwise",
                                                    "k133", "k311_stride2", "same_even", "depth1"])
def test_conv3d_matches_torch_with_torch_params_and_macs(conv, shape):
    torch.manual_seed(0)
    m, x = conv.eval(), _x(shape)
    ref = m(x).detach().numpy()
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, ref, atol=1e-5)
    g = mapping.trace(m, (1,) + shape[1:])
    t = totals(g)
    assert t.params == sum(p.numel() for p in m.parameters())
    assert t.macs == _conv_macs(m, (1,) + ref.shape[1:]) == _flops(m, x[:1]) // 2
    kd = m.kernel_size[0]
    assert sum(n.op == Op.CONV2D for n in g.nodes) == ref.shape[2] * kd
    assert {n.params["weight"] for n in g.nodes if n.op == Op.CONV2D} == {f"weight.t{t}" for t in range(kd)}


POOLS = [
    nn.MaxPool3d(2),
    nn.MaxPool3d((3, 3, 3), stride=(2, 1, 2), padding=1),
    nn.MaxPool3d(3, stride=2, padding=1, dilation=(1, 2, 1)),
    nn.MaxPool3d(2, stride=2, ceil_mode=True),
    nn.AvgPool3d(3, stride=1, padding=1),  # count_include_pad: the pads count in every divisor
    nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False),
    nn.AvgPool3d((2, 3, 3), stride=2, padding=(1, 1, 1), ceil_mode=True),
    nn.AdaptiveAvgPool3d(1),
    nn.AdaptiveAvgPool3d((2, 3, 2)),
    nn.AdaptiveAvgPool3d((None, 2, 3)),
]


@pytest.mark.parametrize("pool", POOLS, ids=["max2", "max_pad", "max_dilated", "max_ceil", "avg_include_pad",
                                              "avg_exclude_pad", "avg_ceil", "gap", "adaptive", "adaptive_none"])
def test_3d_pools_match_torch_in_five_nodes(pool):
    x = _x((2, 3, 5, 7, 9))
    np.testing.assert_allclose(hwsim.simulate(pool, "cpu/host", x=x.numpy()).outputs, pool(x).numpy(), atol=1e-6)
    assert len(mapping.trace(pool, (1, 3, 5, 7, 9)).nodes) == 5  # whatever the depth


class Functional3d(nn.Module):
    """F.conv3d (a weight read twice: one key per tap, counted once), F.max/avg/adaptive_avg_pool3d."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, 3) * 0.2)
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x):
        y = F.conv3d(x, self.w, self.b, 1, 1)
        z = F.conv3d(x, self.w, None, (2, 1, 1), (1, 1, 1))
        y = F.max_pool3d(y, 2, 2) + F.avg_pool3d(z, (1, 2, 2), (1, 2, 2))[:, :, :2]
        return F.adaptive_avg_pool3d(y, (1, 2, 2))


def test_functional_conv3d_and_pools_match_torch_and_share_the_tap_weights():
    m, x = Functional3d().eval(), _x((2, 3, 4, 8, 8))
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, m(x).detach().numpy(), atol=1e-5)
    assert totals(mapping.trace(m, (1, 3, 4, 8, 8))).params == 4 * 3 * 27 + 4


class Video(nn.Module):
    """A tiny video classifier: Conv3d + BN3d + ReLU blocks (one R(2+1)D pair), pools, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                                  nn.BatchNorm3d(8), nn.ReLU(), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.block = nn.Sequential(nn.Conv3d(8, 12, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(12), nn.ReLU(),
                                   nn.Conv3d(12, 12, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)), nn.ReLU())
        self.pool, self.fc = nn.AdaptiveAvgPool3d((1, 1, 1)), nn.Linear(12, 5)

    def forward(self, x):
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


def _video() -> nn.Module:
    torch.manual_seed(0)
    m = Video().eval()
    with torch.no_grad():
        for bn in (m.stem[1], m.block[1]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2.0)
    return m


VIDEO_SHAPE = (2, 3, 4, 16, 16)


@pytest.mark.parametrize("hw", ["cpu/host", "cpu/cortex-a72", "imc/isaac"])
def test_a_tiny_video_net_matches_torch_on_each_target(hw):
    m, x = _video(), _x(VIDEO_SHAPE)
    res = hwsim.simulate(m, hw, x=x.numpy())
    ref = m(x).detach().numpy()
    # imc/isaac: 16-bit operands and an exact ADC (docs/targets/imc.md): the quantization error of 16-bit weights and
    # activations only (measured 4e-6 of outputs of magnitude 0.4), as tests/test_conv1d.py allows it
    np.testing.assert_allclose(res.outputs, ref, atol=1e-4 if hw == "imc/isaac" else 1e-5)
    assert res.report.latency_s > 0 and res.report.energy_j > 0


def test_video_net_counts_and_batch_norm_left_unfolded_after_the_concat():
    m, x = _video(), _x(VIDEO_SHAPE)
    g = mapping.trace(m, (1,) + VIDEO_SHAPE[1:])
    torch_params = sum(p.numel() for p in m.parameters())
    assert totals(g).params == torch_params
    assert totals(g).macs == _flops(m, x[:1]) // 2
    folded = fold_bn(g)  # the BN3ds read a CONCAT of depth slices, not a conv: they stay
    assert sum(n.op == Op.BATCHNORM for n in folded.nodes) == 2
    np.testing.assert_allclose(run(folded, x.numpy())[0], m(x).detach().numpy(), atol=1e-5)


class ShapeBranch(nn.Module):
    """A forward that branches on a shape: torch.fx cannot trace it, torch.export can (ATen's convolution with a 5-d
    weight, max_pool3d_with_indices, avg_pool3d, _adaptive_avg_pool3d, batch norm of a 5-d value)."""

    def __init__(self):
        super().__init__()
        self.c, self.bn = nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.mp, self.ap = nn.MaxPool3d(2), nn.AvgPool3d(2, 1, 1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool3d((1, 2, 2))

    def forward(self, x):
        if x.shape[2] > 2:
            x = self.c(x)
        return self.gap(self.ap(self.mp(self.bn(x))))


def test_3d_layers_import_through_torch_export_as_aten_ops():
    torch.manual_seed(0)
    m, x = ShapeBranch().eval(), _x((2, 3, 4, 8, 8))
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, m(x).detach().numpy(), atol=1e-5)
    g = mapping.trace(m, (1, 3, 4, 8, 8))
    assert sum(n.op == Op.CONV2D for n in g.nodes) == 4 * 3 and totals(g).params == 4 * 3 * 27 + 4 + 8


def _onnx(m: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, x, buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("which", ["video", "pools"])
def test_onnx_3d_conv_and_pools_match_torch(which):
    m = _video() if which == "video" else nn.Sequential(nn.AvgPool3d(3, 2, 1, count_include_pad=False),
                                                        nn.MaxPool3d(2, 1, 1, dilation=(2, 1, 1)),
                                                        nn.AvgPool3d((2, 1, 2), ceil_mode=True))
    x = _x(VIDEO_SHAPE)
    model = _onnx(m, x)
    assert {"Conv", "MaxPool"} <= {n.op_type for n in model.graph.node} or which == "pools"
    res = hwsim.simulate(model, "cpu/host", x=x.numpy())
    np.testing.assert_allclose(res.outputs, m(x).detach().numpy(), atol=1e-5)
    if which == "video":
        g = mapping.from_onnx(model, input_shape=(1,) + VIDEO_SHAPE[1:])
        weights = {i for n in model.graph.node if n.op_type in ("Conv", "Gemm") for i in n.input[1:]}
        assert totals(g).params == sum(numpy_helper.to_array(i).size for i in model.graph.initializer
                                       if i.name in weights)  # the exporter folded the BNs into the convs


def _onnx_conv3d(pads: list[int]) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 2, 3, 3, 2)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads, strides=[2, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 5, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_conv3d_takes_asymmetric_depth_pads_and_refuses_asymmetric_plane_pads():
    import onnxruntime as ort

    model, x = _onnx_conv3d([2, 1, 0, 1, 1, 1]), _x((2, 2, 5, 6, 6)).numpy()  # depth pads (2, 1), W pads (0, 1)!
    with pytest.raises(UnsupportedOpError, match="asymmetric pads"):
        hwsim.simulate(model, "cpu/host", x=x)
    model = _onnx_conv3d([2, 1, 1, 1, 1, 1])  # depth (2, 1): a PAD node; H, W (1, 1)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(hwsim.simulate(model, "cpu/host", x=x).outputs, ref, atol=1e-5)
    assert totals(mapping.from_onnx(model, input_shape=(1, 2, 5, 6, 6))).params == 4 * 2 * 3 * 3 * 2


def test_too_deep_an_unrolled_conv3d_is_refused_naming_the_layer():
    m = nn.Sequential(nn.Conv3d(1, 2, (3, 1, 1), padding=(1, 0, 0)))
    depth = MAX_TAPS // 3 + 1
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(m, (1, 1, depth, 2, 2))
    msg = str(e.value)
    assert isinstance(e.value, HwsimError) and "\n" not in msg
    assert "'0'" in msg and str(MAX_TAPS) in msg and str(depth * 3) in msg


def test_a_circular_padded_conv3d_imports_through_torch_export():
    m, x = nn.Sequential(nn.Conv3d(2, 3, 3, padding=1, padding_mode="circular")).eval(), _x((2, 2, 4, 5, 5))
    # the module refuses its padding mode; torch.export decomposes it into a circular pad and a convolution
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, m(x).detach().numpy(), atol=1e-5)


def test_unsupported_3d_variants_are_refused_in_one_line():
    for layer, words in [(nn.AvgPool3d(2, divisor_override=3), ["AvgPool3d", "divisor_override"]),
                         (nn.MaxPool3d(2, return_indices=True), ["MaxPool3d", "return_indices"])]:
        with pytest.raises(UnsupportedOpError) as e:
            mapping.trace(nn.Sequential(layer), (1, 2, 4, 4, 4))
        assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def _torchvision_video(name: str) -> nn.Module:
    from nets.external import import_torchvision
    import_torchvision()
    from torchvision.models import video

    torch.manual_seed(0)
    m = getattr(video, name)().eval()
    with torch.no_grad():
        for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("name,shape", [("r3d_18", (1, 3, 8, 56, 56)), ("r2plus1d_18", (1, 3, 4, 32, 32)),
                                        ("mc3_18", (1, 3, 4, 32, 32))])
def test_torchvision_video_resnets_import_and_match_torch(name, shape):
    m, x = _torchvision_video(name), _x(shape)
    ref = m(x).detach().numpy()
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, ref,
                               atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    g = mapping.trace(m, shape, verify=False)
    assert totals(g).params == sum(p.numel() for p in m.parameters())
    assert totals(g).macs == _flops(m, x) // 2
