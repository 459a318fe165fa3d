"""Zoo nets that deployed benchmarks run: ncnn's benchncnn classification models and the MLPerf Tiny references.

The ncnn figures below were derived from Tencent/ncnn ``benchmark/models/*.param`` (commit a4d2ea1,
2026-07-22) by summing each Convolution/ConvolutionDepthWise/InnerProduct layer's ``weight_data_size``
(conv/FC weights, biases excluded: ncnn folds BN into conv biases, so only weights compare) and
``weight_data_size * output H * W`` (MACs), with the output shapes the files carry in their ``-23330``
shape hints. They are an independent transcription of the deployed topology: the zoo net must match both
exactly. The MLPerf Tiny figures are recomputed here from the layer tables of
``benchmarks/data/mlperf_tiny_models.md``, not from the zoo code.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
import mapping
import nets
from hwsim.functional import run
from mapping.analysis import totals
from nets.alexnet import LocalResponseNorm
from nets.counts import count_macs, count_params

# ncnn benchmark name -> (zoo name, conv+FC weights, MACs at benchncnn's input size)
NCNN = {
    "squeezenet": ("squeezenet1.1", 1_231_552, 418_467_520),
    "alexnet": ("alexnet", 60_954_656, 724_406_816),
    "googlenet": ("googlenet", 6_990_272, 1_582_671_872),
    "mobilenet_v3": ("mobilenetv3-large", 5_115_080, 245_564_768),
    "mnasnet": ("mnasnet1.0", 4_344_392, 314_415_872),
    "proxylessnasnet": ("proxylessnas-mobile", 4_046_296, 336_483_904),
    "efficientnet_b0": ("efficientnet-b0", 5_236_192, 385_814_752),
    "regnety_400m": ("regnety-400mf", 4_310_784, 401_842_848),
}
# benchncnn feeds 227x227 to squeezenet and alexnet, 224x224 to the others (benchmark/benchncnn.cpp)
NCNN_INPUT = {"squeezenet": (1, 3, 227, 227), "alexnet": (1, 3, 227, 227)}


def _weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return nets.get(name)


@pytest.mark.parametrize("ncnn_name", sorted(NCNN))
def test_matches_ncnn_param_file(ncnn_name):
    name, weights, macs = NCNN[ncnn_name]
    shape = NCNN_INPUT.get(ncnn_name, (1, 3, 224, 224))
    assert nets.info(name).input_shape == shape
    assert "ncnn" in nets.info(name).tags
    m = _meta(name)
    assert _weights(m) == weights
    assert count_macs(m, shape) == macs


def test_squeezenet_torchvision_layout():
    """conv10_pad=0 at 224x224 is torchvision's squeezenet1_1: 0.35 GFLOPS (=MACs), 1,235,496 params."""
    with torch.device("meta"):
        m = nets.get("squeezenet1.1", conv10_pad=0)
    assert count_params(m) == 1_235_496
    assert abs(count_macs(m, (1, 3, 224, 224)) / 0.35e9 - 1) <= 0.02


def test_proxylessnas_published_layout():
    """first_width=16 is the published mobile net: 4,080,512 params (osmr/imgclsmob), 320M MACs."""
    with torch.device("meta"):
        m = nets.get("proxylessnas-mobile", first_width=16)
    assert count_params(m) == 4_080_512
    assert abs(count_macs(m, (1, 3, 224, 224)) / 320e6 - 1) <= 0.02


def test_mobilenetv3_paper_layout():
    """layout="paper" is torchvision's mobilenet_v3_large (5,483,032 params), ~ the paper's 219M MAdds."""
    with torch.device("meta"):
        m = nets.get("mobilenetv3-large", layout="paper")
    assert count_params(m) == 5_483_032
    assert abs(count_macs(m, (1, 3, 224, 224)) / 219e6 - 1) <= 0.02


@pytest.mark.parametrize("size", [3, 4, 5])
def test_lrn_matches_torch(size):
    x = torch.randn(2, 7, 5, 6, generator=torch.Generator().manual_seed(size)) * 30
    ref = nn.LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0)(x)
    torch.testing.assert_close(LocalResponseNorm(size, 1e-2, 0.75, 2.0)(x), ref, rtol=1e-6, atol=1e-6)


def test_lrn_traces_as_torch_module_does():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), LocalResponseNorm()).eval()
    g = mapping.trace(model, (1, 3, 9, 9))  # verified node by node against torch by the tracer
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    (y,) = run(g, x)
    assert np.max(np.abs(y - ref)) <= 1e-5 * np.max(np.abs(ref))
    # torch's own nn.LocalResponseNorm (an avg_pool3d of padded squares) imports too, through torch.export
    native = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LocalResponseNorm(5)).eval()
    (y2,) = run(mapping.trace(native, (1, 3, 9, 9)), x)
    with torch.no_grad():
        ref2 = native(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(y2 - ref2)) <= 1e-5 * np.max(np.abs(ref2))


# ---------------------------------------------------------------- MLPerf Tiny
def _conv_macs(oh, ow, cout, cin_per_group, kh, kw):
    return oh * ow * cout * cin_per_group * kh * kw


def _tiny_expected():
    """(trainable params, BN channels, MACs) per net from the md file's layer tables."""
    r8 = (_conv_macs(32, 32, 16, 3, 3, 3) + 2 * _conv_macs(32, 32, 16, 16, 3, 3)
          + _conv_macs(16, 16, 32, 16, 3, 3) + _conv_macs(16, 16, 32, 32, 3, 3) + _conv_macs(16, 16, 32, 16, 1, 1)
          + _conv_macs(8, 8, 64, 32, 3, 3) + _conv_macs(8, 8, 64, 64, 3, 3) + _conv_macs(8, 8, 64, 32, 1, 1) + 64 * 10)
    ds = _conv_macs(25, 5, 64, 1, 10, 4) + 4 * (_conv_macs(25, 5, 64, 1, 3, 3) + _conv_macs(25, 5, 64, 64, 1, 1)) + 64 * 12
    vww, hw, cin = _conv_macs(48, 48, 8, 3, 3, 3), 48, 8
    for cout, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1),
                    (128, 1), (256, 2), (256, 1)]:
        hw //= s
        vww += _conv_macs(hw, hw, cin, 1, 3, 3) + _conv_macs(hw, hw, cout, cin, 1, 1)
        cin = cout
    vww += 256 * 2
    ae = 640 * 128 + 3 * 128 * 128 + 128 * 8 + 8 * 128 + 3 * 128 * 128 + 128 * 640
    # Keras totals (md file) = trainable + 2 non-trainable values (moving mean, variance) per BN channel
    return {"tiny-resnet8": (78_186, 78_666, r8), "tiny-dscnn": (23_756, 24_908, ds),
            "tiny-mobilenet-vww": (216_322, 221_794, vww), "tiny-autoencoder": (267_928, 269_992, ae)}


TINY = _tiny_expected()
TINY_SHAPES = {"tiny-resnet8": (1, 3, 32, 32), "tiny-dscnn": (1, 1, 49, 10), "tiny-mobilenet-vww": (1, 3, 96, 96),
               "tiny-autoencoder": (1, 640)}


@pytest.mark.parametrize("name", sorted(TINY))
def test_mlperf_tiny_counts(name):
    trainable, keras_total, macs = TINY[name]
    m = nets.get(name)
    assert nets.info(name).input_shape == TINY_SHAPES[name]
    assert count_params(m) == trainable == nets.info(name).published_params
    bn_stats = sum(b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert count_params(m) + bn_stats == keras_total
    assert count_macs(m, TINY_SHAPES[name]) == macs


def test_dscnn_padding_is_keras_same():
    """TF 'same' for the 10x4/2 conv on 49x10: total pad max((ceil(n/s)-1)*s + k - n, 0), the smaller half first."""
    pads = []
    for n, k in ((10, 4), (49, 10)):  # W then H, as ZeroPad2d orders them
        total = max((-(-n // 2) - 1) * 2 + k - n, 0)
        pads += [total // 2, total - total // 2]
    pad = nets.get("tiny-dscnn").features[0]
    assert isinstance(pad, nn.ZeroPad2d) and tuple(pad.padding) == tuple(pads)


@pytest.mark.parametrize("name", sorted(TINY))
def test_mlperf_tiny_runs_and_simulates(name):
    """Traced (verified against torch), run by the fp32 kernels against torch, costed on a CPU and an IMC preset."""
    m = nets.get(name)
    for bn in (x for x in m.modules() if isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d))):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    g = mapping.trace(m, TINY_SHAPES[name])
    x = np.random.default_rng(3).standard_normal((2,) + TINY_SHAPES[name][1:]).astype(np.float32)  # batch 2 runs too
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    (y,) = run(g, x)
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))
    for hw in ("cpu/cortex-a72", "imc/isaac"):
        rep = hwsim.simulate(g, hw).report
        assert rep.latency_s > 0 and rep.energy_j > 0
        assert rep.macs == totals(g).macs == TINY[name][2]


@pytest.mark.slow
@pytest.mark.parametrize("ncnn_name", sorted(NCNN))
def test_ncnn_nets_trace_and_simulate(ncnn_name):
    """Full-size trace (every node checked against torch) and cost-only simulation on a CPU and an IMC preset."""
    name, _, macs = NCNN[ncnn_name]
    m = nets.get(name)
    g = mapping.trace(m, nets.info(name).input_shape)
    t = totals(g)
    assert t.macs == macs and t.params == count_params(m)
    for hw in ("cpu/cortex-a72", "imc/isaac"):
        rep = hwsim.simulate(g, hw).report
        assert rep.latency_s > 0 and rep.energy_j > 0 and rep.macs == macs
