"""The zoo's FINN designs on the XNOR engine: finn-examples' ResNet-50 W1A2 (4-bit residual stream) and
MobileNet-v1 W4A4 (depthwise convs as VVAUs), CNV W1A2, TFC W1A2 / W2A2 and the KWS MLP W3A3 map with automatic
folding on the FPGA presets and report FPS, LUTs and BRAM; their building blocks (a bottleneck with a residual
add and a downsampling shortcut, a depthwise-separable block) run bit-exactly against torch and hwsim's fp32
reference executor."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
import mapping
from hwsim.fpga.cost import build_design
from hwsim.fpga.functional import run_program
from hwsim.functional import run
from mapping.fpga import AddLayer, Enc, MVAULayer, ThresholdLayer, map_xnor
from nets.finn import _Bottleneck
from nets.layers import QuantAct, QuantConv2d, QuantLinear

PRESETS = ("fpga/pynq-z1", "fpga/zc706")


def _random_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 4 - 1)
                m.running_var.copy_(torch.rand(c, generator=g) * 4 + 0.5)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model.eval()


def _bit_exact(model: nn.Module, shape: tuple[int, ...]) -> set:
    """Every code the engine produces equals hwsim's fp32 reference executor's value; the output equals torch's."""
    x = torch.rand(*shape)
    g = mapping.trace(model, shape)
    program = map_xnor(g)
    out, kept = run_program(program, x.numpy(), keep=True)
    _, ref = run(g, x.numpy(), keep=True)
    kinds = set()
    for layer in program.layers:
        enc = layer.out_enc if isinstance(layer, MVAULayer) else getattr(layer, "out", None)
        if enc is None or enc.kind != Enc.CODES or not isinstance(layer, (MVAULayer, AddLayer, ThresholdLayer)):
            continue
        name = layer.nodes[-1] if isinstance(layer, MVAULayer) else layer.name
        dec = (kept[layer.name].astype(np.float64) - enc.offset) * enc.scale
        np.testing.assert_array_equal(dec.astype(np.float32), ref[name], err_msg=name)
        kinds.add(type(layer).__name__)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.abs(want).max())
    return kinds


def test_bottleneck_blocks_bit_exact():
    torch.manual_seed(0)
    model = _random_bn(nn.Sequential(
        QuantAct(8), QuantConv2d(3, 12, 3, padding=1, bits=8), nn.BatchNorm2d(12), QuantAct(4),
        _Bottleneck(12, 5, 2), _Bottleneck(20, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        QuantLinear(20, 7, bias=True, bits=8)), 1)
    kinds = _bit_exact(model, (2, 3, 12, 12))
    assert kinds == {"MVAULayer", "AddLayer", "ThresholdLayer"}
    program = map_xnor(mapping.trace(model, (2, 3, 12, 12)))
    assert sum(isinstance(x, AddLayer) for x in program.layers) == 2


def test_depthwise_separable_block_bit_exact():
    torch.manual_seed(1)
    model = _random_bn(nn.Sequential(
        QuantAct(8), QuantConv2d(3, 6, 3, stride=2, padding=1, bits=8), nn.BatchNorm2d(6), QuantAct(4),
        QuantConv2d(6, 6, 3, padding=1, groups=6, bits=4), nn.BatchNorm2d(6), QuantAct(4),
        QuantConv2d(6, 9, 1, bits=4), nn.BatchNorm2d(9), QuantAct(4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), QuantLinear(9, 5, bias=True, bits=4)), 2)
    assert _bit_exact(model, (3, 3, 10, 10)) == {"MVAULayer"}
    program = map_xnor(mapping.trace(model, (3, 3, 10, 10)))
    assert [m.depthwise for m in program.mvaus] == [False, True, False, False]


@pytest.mark.parametrize("name", ["tfc-w1a2", "tfc-w2a2", "cnv-w1a2", "kws-mlp-w3a3"])
def test_small_finn_designs_map_with_auto_folding(name):
    g = hwsim.as_graph(name)
    reports = [hwsim.simulate(g, p, folding="auto").report for p in PRESETS]
    for r in reports:
        assert r.fits_on_chip and r.fps > 0 and r.luts > 0 and r.bram18 >= 0 and r.fifo_depths
    assert reports[1].fps >= reports[0].fps  # zc706: twice the clock, four times the LUTs


def test_kws_published_folding_gives_its_design_rate():
    # finn-examples build/kws folding (PE, SIMD): (32, 10), (32, 8), (32, 8), (1, 8); 100 MHz
    rep = hwsim.simulate("kws-mlp-w3a3", "fpga/pynq-z1", folding=[(32, 10), (32, 8), (32, 8), (1, 8)],
                         kbit="native").report
    assert rep.ii_cycles == 392  # 490/10 * 256/32, the first layer
    assert rep.fps == pytest.approx(100e6 / 392)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50-w1a2", "mobilenet-v1-w4a4"])
def test_large_finn_designs_map_and_report(name):
    g = hwsim.as_graph(name)
    for preset in PRESETS:
        r = hwsim.simulate(g, preset, folding="auto").report
        assert r.fps > 0 and r.luts > 0 and r.bram18 > 0 and len(r.folding) == len(map_xnor(g).mvaus)
        assert r.fits_on_chip or r.fit_reason  # ResNet-50's 41 Mbit of weights exceed both devices: said so
    kinds = {lr.op for lr in r.layers}
    assert ("add" in kinds and "dup" in kinds) if name.startswith("resnet") else "vvau" in kinds


@pytest.mark.slow
def test_mobilenet_zcu104_folding_bottleneck():
    # finn-examples build/mobilenet-v1 ZCU104 folding: MVAU_1 (the first pointwise conv, 32 -> 64 at 112x112)
    # with PE = SIMD = 8 takes 112*112 * 32/8 * 64/8 = 401,408 cycles, the design's bottleneck
    program = map_xnor(hwsim.as_graph("mobilenet-v1-w4a4"))
    vvau_pe = [16, 8, 16, 4, 8, 2, 4, 4, 4, 4, 4, 1, 2]
    mvau = [(8, 8), (16, 8), (32, 8), (16, 8), (32, 8), (16, 8), (32, 8), (32, 8), (32, 8), (32, 8), (32, 8),
            (16, 8), (32, 8), (1, 16)]
    fold = [(16, 3)]
    for pe, pw in zip(vvau_pe, mvau[:13]):
        fold += [(pe, 1), pw]
    fold.append(mvau[13])
    design = build_design(program, fold, decomposed=False)
    assert design.ii_cycles == 401408


# ----------------------------------------------------------------------------- larq-zoo nets
def _bn_stats(model: nn.Module, affine: bool | None = None) -> int:
    return sum(2 * m.num_features for m in model.modules()
               if isinstance(m, nn.BatchNorm2d) and (affine is None or m.affine == affine))


@pytest.mark.parametrize("name,published", [("quicknet-small", 12_655_688), ("quicknet", 13_234_088),
                                            ("quicknet-large", 23_342_248), ("birealnet18", 11_699_112)])
def test_larq_counts_match_the_published_tables(name, published):
    import nets

    model = nets.get(name)
    ours = sum(p.numel() for p in model.parameters())
    if name == "birealnet18":  # Keras count_params: + every BatchNorm's moving mean and variance
        assert ours + _bn_stats(model) == published
    else:  # QuickNet's tables: + the moving statistics of the stem's non-affine BatchNorm
        assert ours + _bn_stats(model, affine=False) == published
    assert nets.info(name).published_params == published


def test_larq_nets_have_binary_residual_convs_and_float_shortcuts():
    import nets
    from hwsim.errors import UnsupportedOpError
    from nets.layers import BinaryConv2d

    model = nets.get("birealnet18")
    binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(binary) == 16 and all(m.kernel_size == (3, 3) for m in binary)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(UnsupportedOpError, match="float"):  # the float stem: not an XNOR-engine net
        hwsim.simulate(nets.get("quicknet-small"), "fpga/zc706", input_shape=(1, 3, 64, 64))
