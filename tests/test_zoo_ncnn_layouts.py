"""``layout="ncnn"`` of resnet18, resnet50, mobilenetv2 and shufflenetv1 against ncnn's benchmark param files.

The constants are sums over Tencent/ncnn ``benchmark/models/<file>.param`` at commit a4d2ea1 (2026-07-22), the
topologies ``benchncnn`` times (benchmarks/data/ncnn_arm_boards.csv): ``layers`` counts the Convolution,
ConvolutionDepthWise and InnerProduct layers; ``weights`` sums their weight_data_size (key ``6=`` of a
convolution, ``2=`` of an InnerProduct; biases, which hold ncnn's folded BN, excluded); ``macs`` sums
weight_data_size x output height x width (from the ``-23330`` shape hints, 224x224 input) over the
convolutions plus weight_data_size over the InnerProduct. The default layouts keep today's counts
(benchmarks/results/zoo_counts.csv).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import hwsim
import nets
from hwsim.errors import HwsimError
from mapping import trace
from mapping.analysis import totals
from nets.counts import count_macs, count_params

SHAPE = (1, 3, 224, 224)


@dataclass(frozen=True)
class ParamFile:
    """Sums over one ncnn benchmark param file (module docstring)."""

    file: str      # benchmark/models/<file> in Tencent/ncnn a4d2ea1
    layers: int    # Convolution + ConvolutionDepthWise + InnerProduct layers
    weights: int   # conv + FC weight elements
    macs: int      # conv + FC multiply-accumulates at 224x224


NCNN = {
    "resnet18": ParamFile("resnet18.param", 21 + 1, 11_683_008, 1_826_918_400),
    "resnet50": ParamFile("resnet50.param", 53 + 1, 25_502_912, 3_857_973_248),
    "mobilenetv2": ParamFile("mobilenet_v2.param", 36 + 17 + 1, 3_470_784, 313_619_328),
    "shufflenetv1": ParamFile("shufflenet.param", 2 + 47 + 1, 1_789_998, 127_061_304),
}

# (params, MACs) of the default layouts, benchmarks/results/zoo_counts.csv before the ncnn layouts were added.
DEFAULTS = {
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet50": (25_557_032, 4_089_184_256),
    "mobilenetv2": (3_504_872, 300_774_272),
    "shufflenetv1": (1_864_728, 137_460_672),
}


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return nets.get(name, **kw)


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", sorted(NCNN))
def test_ncnn_layout_equals_the_param_file(name):
    ref = NCNN[name]
    m = _meta(name, layout="ncnn")
    layers = _weight_layers(m)
    assert len(layers) == ref.layers, ref.file
    assert sum(layer.weight.numel() for layer in layers) == ref.weights, ref.file
    assert count_macs(m, SHAPE) == ref.macs, ref.file


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_layout_unchanged(name):
    m = _meta(name)
    assert (count_params(m), count_macs(m, SHAPE)) == DEFAULTS[name]
    explicit = _meta(name, layout="megvii" if name == "shufflenetv1" else "torchvision")
    assert (count_params(explicit), count_macs(explicit, SHAPE)) == DEFAULTS[name]


def test_ncnn_differences_are_the_documented_ones():
    """Each ncnn layout differs from the default where the module docstrings say, and only there."""
    r50 = _meta("resnet50", layout="ncnn")
    assert r50.layer2[0].conv1.stride == (2, 2) and r50.layer2[0].conv2.stride == (1, 1)  # v1: stride on the 1x1
    assert count_params(r50) == DEFAULTS["resnet50"][0]  # same weights as v1.5
    r18 = _meta("resnet18", layout="ncnn")
    assert isinstance(r18.layer1[0].downsample, nn.Sequential)  # projection in the first stage too
    assert count_macs(r18, SHAPE) - DEFAULTS["resnet18"][1] == 64 * 64 * 56 * 56
    mb2 = _meta("mobilenetv2", layout="ncnn")
    assert count_macs(mb2, SHAPE) - DEFAULTS["mobilenetv2"][1] == 32 * 32 * 112 * 112  # the first block's expand
    assert not any(isinstance(x, nn.ReLU6) for x in mb2.modules())
    sn = _meta("shufflenetv1", layout="ncnn")
    entry = [u.dwconv[0].out_channels for u in sn.features if u.stride == 2]
    assert entry == [54, 60, 120]  # (Cout - Cin) / 4 for Cout = 240, 480, 960 and Cin = 24, 240, 480
    assert isinstance(sn.features[0].shuffle, nn.Identity) and sn.classifier.bias is not None


@pytest.mark.parametrize("name, kw", [("resnet50", {"layout": "v1"}), ("resnet18", {"layout": None}),
                                      ("mobilenetv2", {"layout": "caffe"}), ("shufflenetv1", {"layout": "torchvision"}),
                                      ("shufflenetv1", {"layout": "ncnn", "groups": 8})])
def test_bad_layout_refused(name, kw):
    with pytest.raises(HwsimError, match="layout"):
        nets.get(name, **kw)


def test_shufflenet_ncnn_forward_equals_relu_after_concat():
    """The stride-2 unit's ReLU after the concat equals ReLU on the conv branch alone (its input is >= 0)."""
    torch.manual_seed(0)
    unit = nets.get("shufflenetv1", layout="ncnn").features[4].eval()  # stage 3's first unit, 240 -> 480
    x = torch.relu(torch.randn(1, 240, 28, 28))
    with torch.no_grad():
        y = unit(x)
        branch = unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))
        expected = torch.cat((unit.proj(x), torch.relu(branch)), 1)
    assert y.shape == (1, 480, 14, 14)
    torch.testing.assert_close(y, expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NCNN))
def test_ncnn_layout_traces_verified_and_simulates_on_a72(name):
    """The tracer's check against torch passes at 224x224, the IR counts the same MACs, and the Cortex-A72 cost
    model (cost only) runs on the graph."""
    torch.manual_seed(0)
    g = trace(nets.get(name, layout="ncnn"), SHAPE, name)  # verify=True: ConversionError if it disagrees with torch
    assert totals(g).macs == NCNN[name].macs
    rep = hwsim.simulate(g, "cpu/cortex-a72").report
    assert rep.macs == NCNN[name].macs
    assert math.isfinite(rep.latency_s) and rep.latency_s > 0 and rep.energy_j > 0
