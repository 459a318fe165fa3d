"""The FPGA XNOR engine: bit-exact inference vs torch, thresholds, dataflow cost, published foldings,
bad input."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
import mapping
import nets
from hwsim.errors import HwsimError, MappingError, ShapeError, UnsupportedOpError
from hwsim.fpga import FPGAReport
from hwsim.fpga.cost import bram18_for
from hwsim.fpga.functional import run_program
from mapping.fpga import Enc, Encoding, integer_thresholds, map_xnor
from nets.layers import BinaryConv2d, BinaryLinear, BinarySign, QuantAct, QuantConv2d, QuantLinear

PRESETS = ["fpga/pynq-z1", "fpga/ultra96", "fpga/zc706"]


def _random_bn(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics of a trained-looking net, including negative gammas and gamma = 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 4)
                m.running_var.copy_(torch.rand(c, generator=g) * 20 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(c, generator=g))
                    m.weight[0] = 0.0
                    m.bias.copy_(torch.randn(c, generator=g))
    return model.eval()


def _torch_values(model: nn.Sequential, x: torch.Tensor) -> dict:
    out, h = {}, x
    with torch.no_grad():
        for i, m in enumerate(model):
            h = m(h)
            out[str(i)] = h.numpy()
    return out


def _check_bit_exact(model: nn.Sequential, x: torch.Tensor, decomposed: bool = True):
    """Every thresholded activation equals torch's exactly; the float classifier output to float32
    rounding (the BatchNorm on the exact integer accumulator)."""
    g = mapping.trace(model, tuple(x.shape))
    program = map_xnor(g)
    out, kept = run_program(program, x.numpy(), decomposed=decomposed, keep=True)
    ref = _torch_values(model, x)
    checked = 0
    for layer in program.mvaus:
        if layer.out_enc is None:
            continue
        act_module = g[layer.nodes[-1]].module  # the Sequential index of the sign / QuantAct
        v = kept[layer.name]
        dec = 2.0 * v - 1 if layer.out_enc.kind == Enc.BINARY else v * layer.out_enc.scale
        assert np.array_equal(dec.astype(np.float32), ref[act_module]), act_module
        checked += 1
    final = ref[str(len(model) - 1)]
    np.testing.assert_allclose(out, final, rtol=1e-5, atol=1e-5)
    return checked


@pytest.mark.slow  # 20 random BNNs, 2-4 s; the quick run keeps the zoo BNNs and test_kbit_net_exact
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.sampled_from([1, 2, 3]), stride=st.sampled_from([1, 2]),
       pad=st.integers(0, 1), pad_value=st.sampled_from([0.0, 1.0, -1.0]), groups=st.sampled_from([1, 2]),
       cin=st.sampled_from([2, 4, 6]), width=st.integers(5, 9))
def test_random_bnn_bit_exact(seed, k, stride, pad, pad_value, groups, cin, width):
    torch.manual_seed(seed)
    model = nn.Sequential(
        QuantAct(8), BinaryConv2d(3, cin, 3, padding=1), nn.BatchNorm2d(cin), BinarySign(),
        BinaryConv2d(cin, 2 * cin, k, stride=stride, padding=pad, groups=groups, pad_value=pad_value),
        nn.BatchNorm2d(2 * cin), BinarySign(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.LazyLinear(1))  # placeholder replaced below
    with torch.no_grad():
        feat = model[:9](torch.zeros(1, 3, width, width)).shape[1]
    model[9] = BinaryLinear(feat, 5)
    model.append(nn.BatchNorm1d(5))
    _random_bn(model, seed)
    x = torch.rand(3, 3, width, width)
    assert _check_bit_exact(model, x) == 2


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("decomposed", [True, False])
def test_kbit_net_exact(bits, decomposed):
    torch.manual_seed(bits)
    model = nn.Sequential(
        QuantAct(8), QuantConv2d(3, 8, 3, padding=1, bits=bits), nn.BatchNorm2d(8), QuantAct(bits),
        QuantConv2d(8, 8, 3, stride=2, padding=1, groups=2, bits=bits), nn.BatchNorm2d(8), nn.ReLU(), QuantAct(bits),
        nn.MaxPool2d(2), BinaryConv2d(8, 6, 1), nn.BatchNorm2d(6), BinarySign(),
        QuantConv2d(6, 4, 1, bits=bits), nn.BatchNorm2d(4), QuantAct(bits),
        nn.Flatten(), QuantLinear(4 * 2 * 2, 3, bits=bits), nn.BatchNorm1d(3))
    _random_bn(model, bits)
    assert _check_bit_exact(model, torch.rand(2, 3, 8, 8), decomposed) == 4


def test_threshold_comparator_is_ge_and_gamma_sign():
    # z = g*acc + c: brute force over the accumulator range against exact float64 decisions
    rng = np.random.default_rng(0)
    gain = rng.normal(size=50)
    offset = rng.normal(size=50) * 5
    gain[:5] = 0.5
    offset[:5] = -1.5 * np.array([1, 2, 3, 4, 6])  # tau exactly an integer: acc == tau must give +1
    gain[5] = 0.0
    g = np.abs(gain)
    thr = integer_thresholds(g, offset, Encoding(Enc.BINARY))
    acc = np.arange(-40, 41)
    z = g[:, None] * acc[None, :] + offset[:, None]
    assert np.array_equal(acc[None, :] >= thr, z >= 0)
    enc = Encoding(Enc.CODES, 3, 0.25)
    thr3 = integer_thresholds(g, offset, enc)
    codes = (acc[None, :, None] >= thr3[:, None, :]).sum(axis=2)
    assert np.array_equal(codes, np.clip(np.round(z / 0.25), 0, 7))  # round half to even, as torch


def test_negative_gamma_flips_weights():
    torch.manual_seed(0)
    model = nn.Sequential(BinarySign(), BinaryLinear(16, 6), nn.BatchNorm1d(6), BinarySign(), BinaryLinear(6, 2))
    _random_bn(model, 1)
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, -2.0]))
    prog = map_xnor(mapping.trace(model, (4, 16)))
    assert prog.mvaus[0].flip.tolist() == [False, True, False, True, False, True]
    assert _check_bit_exact(model, torch.randn(4, 16)) == 1


@pytest.mark.parametrize("name,preset", [("tfc-w1a1", "fpga/pynq-z1"), ("sfc-w1a1", "fpga/ultra96"),
                                         pytest.param("lfc-w1a1", "fpga/zc706", marks=pytest.mark.slow),
                                         pytest.param("cnv-w1a1", "fpga/pynq-z1", marks=pytest.mark.slow),  # 2-3 s
                                         pytest.param("cnv-w2a2", "fpga/ultra96", marks=pytest.mark.slow),
                                         pytest.param("vgg-small-w1a1", "fpga/zc706", marks=pytest.mark.slow)])
def test_zoo_nets_bit_exact(name, preset):
    model = _random_bn(nets.get(name), 7)
    shape = nets.info(name).input_shape
    image = shape[1] == 3
    batch = 1 if image else 3
    x = torch.rand((batch,) + shape[1:]) if image else torch.randn((batch,) + shape[1:])
    assert _check_bit_exact(model, x) >= 3
    with torch.no_grad():
        ref = model(x).numpy()
    r = hwsim.simulate(model, preset, x=x.numpy())
    np.testing.assert_allclose(r.outputs, ref, rtol=1e-5, atol=1e-5)
    assert isinstance(r.report, FPGAReport) and r.report.fps > 0


def test_outputs_do_not_depend_on_the_preset():
    model = _random_bn(nets.get("tfc-w1a1"), 3)
    x = torch.randn(4, 1, 28, 28).numpy()
    outs = [hwsim.simulate(model, p, x=x).outputs for p in PRESETS]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


# ----------------------------------------------------------------------------- dataflow, published numbers
def test_lfc_bnn_pynq_folding_bottleneck_512():
    # BNN-PYNQ lfcW1A1 config.h (SIMD, PE) = (64,32), (32,64), (64,32), (8,16)
    r = hwsim.simulate("lfc-w1a1", "fpga/pynq-z1", folding=[(32, 64), (64, 32), (32, 64), (16, 8)]).report
    assert [lr.cycles for lr in r.layers] == [416, 512, 512, 128]
    assert r.ii_cycles == 512 and r.fps == pytest.approx(100e6 / 512)


def test_tfc_finn_examples_folding():
    r = hwsim.simulate("tfc-w1a1", "fpga/zc706", folding=[(16, 49), (8, 8), (8, 8), (10, 8)]).report
    assert r.ii_cycles == 64 and r.fps == pytest.approx(3.125e6)  # at 200 MHz
    df = r.to_pandas()
    assert df["pe"].tolist() == [16, 8, 8, 10] and df["simd"].tolist() == [49, 8, 8, 8]


def test_lfc_max_finn17():
    # FINN'17 LFC-max on ZC706 at 200 MHz: (SIMD, PE) = (64,128) x 3, (8,16) -> 1.5625 M FPS, 2.44 us
    r = hwsim.simulate("lfc-w1a1", "fpga/zc706", folding=[(128, 64)] * 3 + [(16, 8)]).report
    assert r.fps == pytest.approx(1.5625e6)
    assert r.latency_sum_s == pytest.approx(2.44e-6)
    assert r.ii_cycles / 200e6 <= r.latency_s <= r.latency_sum_s  # SimPy: between II and the sum
    assert not hwsim.simulate("lfc-w1a1", "fpga/pynq-z1", folding=[(128, 64)] * 3 + [(16, 8)]).report.fits_on_chip


def test_bram18_rule():
    # FINN's bram_estimation: 16Kx1, 8Kx2, 4Kx4, then 2K, 1K, 512 deep at 8, 16, 32 data bits (no parity bits)
    assert bram18_for(16384, 1) == 1 and bram18_for(16385, 1) == 2
    assert bram18_for(8192, 2) == 1 and bram18_for(4096, 8) == 2 and bram18_for(2048, 8) == 1
    assert bram18_for(2048, 9) == 2 and bram18_for(1024, 16) == 1 and bram18_for(1024, 18) == 2
    assert bram18_for(512, 32) == 1 and bram18_for(512, 36) == 2 and bram18_for(512, 64) == 2
    assert bram18_for(2048, 32) == 4  # depth > 512: 1K x 16 blocks
    assert bram18_for(144, 512) == 16 and bram18_for(2304, 256) == 48  # FINN's figures for two MVAU memories


def test_auto_folding_meets_target_and_is_cheaper_for_lower_rates():
    g = hwsim.as_graph("sfc-w1a1")
    fast = hwsim.simulate(g, "fpga/zc706", folding="auto", target_fps=1e6).report
    slow = hwsim.simulate(g, "fpga/zc706", folding="auto", target_fps=1e4).report
    assert fast.fps >= 1e6 and slow.fps >= 1e4
    assert slow.luts < fast.luts
    best = hwsim.simulate(g, "fpga/pynq-z1", folding="auto").report
    assert best.fits_on_chip and best.luts <= 53200
    unreachable = hwsim.simulate(g, "fpga/zc706", folding="auto", target_fps=1e12).report
    assert any("unreachable" in n for n in unreachable.notes)


def test_energy_and_report_fields():
    r = hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", folding=[(16, 49), (8, 8), (8, 8), (10, 8)]).report
    assert r.energy_j > 0 and r.energy_per_frame_j == pytest.approx(r.energy_j)
    assert set(r.energy_breakdown) == {"lut", "bram", "static"}
    d = r.to_dict()
    assert d["fps"] == r.fps and d["luts"] == r.luts and "bram18" in d


# ----------------------------------------------------------------------------- bad input
def test_bad_folding():
    with pytest.raises(MappingError, match="4 MVAU"):
        hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", folding=[(1, 1)])
    with pytest.raises(MappingError, match="PE and SIMD must be >= 1"):
        hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", folding=[(0, 1), (1, 1), (1, 1), (1, 1)])
    with pytest.raises(MappingError):
        hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", folding="fast")
    with pytest.raises(MappingError):
        hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", folding="auto", target_fps=-1)


def test_non_binary_input_to_binary_layer():
    model = nn.Sequential(BinaryConv2d(3, 4, 3), nn.BatchNorm2d(4), BinarySign()).eval()
    with pytest.raises(ShapeError, match="non-integer"):
        hwsim.simulate(model, "fpga/pynq-z1", x=np.random.rand(1, 3, 6, 6).astype(np.float32))
    # an integer image is fine (exact first layer)
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 6, 6)).astype(np.float32)
    r = hwsim.simulate(model, "fpga/pynq-z1", x=x)
    with torch.no_grad():
        assert np.array_equal(r.outputs, model(torch.from_numpy(x)).numpy())


def test_float_layers_refused():
    with pytest.raises(UnsupportedOpError, match="float"):
        hwsim.simulate(nn.Sequential(nn.Linear(4, 2)), "fpga/pynq-z1", input_shape=(1, 4))
    with pytest.raises(UnsupportedOpError, match="float"):
        hwsim.simulate("resnet20", "fpga/pynq-z1")

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.sign = BinarySign()
            self.fc = BinaryLinear(4, 4)

        def forward(self, x):
            s = self.sign(x)
            return self.fc(s) + s

    with pytest.raises(UnsupportedOpError, match="un-quantized output of layer 'fc'"):  # a float branch
        hwsim.simulate(Residual(), "fpga/pynq-z1", input_shape=(1, 4))
    assert issubclass(UnsupportedOpError, HwsimError)


def test_bn_folded_into_weights_is_refused():
    from mapping.passes.fold_bn import fold_bn

    model = _random_bn(nn.Sequential(BinarySign(), BinaryLinear(8, 4), nn.BatchNorm1d(4)), 0)
    with pytest.raises(MappingError, match="odd"):
        map_xnor(fold_bn(mapping.trace(model, (1, 8))))


@pytest.mark.slow
@pytest.mark.parametrize("bits", [3, 4])
def test_cnv_at_3_and_4_bits_decomposed_equals_native(bits):
    from nets.finn import finn_cnv

    torch.manual_seed(bits)
    model = _random_bn(finn_cnv(bits), bits)
    x = torch.rand(1, 3, 32, 32)
    program = map_xnor(mapping.trace(model, (1, 3, 32, 32)))
    dec = run_program(program, x.numpy(), decomposed=True)
    nat = run_program(program, x.numpy(), decomposed=False)
    assert np.array_equal(dec, nat)
    assert _check_bit_exact(model, x) == 8


@pytest.mark.parametrize("name,fold", [("lfc-w1a1", [(32, 64), (64, 32), (32, 64), (16, 8)]), ("cnv-w1a1", None)])
def test_simpy_steady_state_interval_is_the_ii(name, fold):
    from hwsim.fpga.cost import auto_folding, build_design, pipeline_frame_cycles

    program = map_xnor(hwsim.as_graph(name))
    if fold is None:
        fold, _ = auto_folding(program, hwsim.load_preset("fpga/zc706"), 5000)
    design = build_design(program, fold)
    t = pipeline_frame_cycles(design, int(np.prod(program.input_shape)), 3)
    assert design.ii_cycles <= t[0] <= design.sum_cycles
    assert np.diff(t) == pytest.approx([design.ii_cycles] * 2)


def test_cnv_bnn_pynq_layer_cycles():
    # BNN-PYNQ cnvW1A1/hw/config.h: (SIMD, PE) and "Ext Latency" per MVAU; its classifier pads 10 -> 64
    # outputs (8192 cycles), hwsim pads only to PE (1536)
    fold = [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)]
    r = hwsim.simulate("cnv-w1a1", "fpga/pynq-z1", folding=fold).report
    mvau = [int(lr.cycles) for lr in r.layers if lr.op == "mvau"]
    assert mvau == [32400, 28224, 20736, 28800, 20736, 18432, 32768, 32768, 1536]
    assert r.ii_cycles == 32768


def test_annotate_encodings():
    from mapping.fpga import annotate_encodings

    model = nn.Sequential(QuantAct(8), BinaryConv2d(3, 4, 3), nn.BatchNorm2d(4), QuantAct(2),
                          QuantConv2d(4, 4, 3, bits=2), nn.BatchNorm2d(4), QuantAct(2), nn.Flatten(),
                          QuantLinear(4 * 2 * 2, 3, bits=2)).eval()
    g = annotate_encodings(mapping.trace(model, (1, 3, 6, 6)))
    mv = [n for n in g if "weight_bits" in n.meta]
    assert [(n.meta["input_kind"], n.meta["input_bits"]) for n in mv[:2]] == [("codes", 8), ("codes", 2)]
    assert mv[0].meta["output_kind"] == "codes" and mv[-1].meta["output_kind"] == "float"
    b = annotate_encodings(hwsim.as_graph("tfc-w1a1"))
    assert all(n.meta["input_kind"] == "binary" for n in b if "weight_bits" in n.meta)


def test_bias_and_bn_without_affine():
    torch.manual_seed(5)
    model = nn.Sequential(QuantAct(4), BinaryConv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6, affine=False),
                          BinarySign(), nn.Flatten(), BinaryLinear(6 * 5 * 5, 4, bias=True))
    _random_bn(model, 5)
    with torch.no_grad():
        model[1].bias.uniform_(-3, 3)
        model[5].bias.uniform_(-3, 3)
    assert _check_bit_exact(model, torch.rand(3, 3, 5, 5)) == 1


def test_fifo_depth_back_pressure():
    fold = [(32, 64), (64, 32), (32, 64), (16, 8)]
    deep = hwsim.simulate("lfc-w1a1", "fpga/pynq-z1", folding=fold, fifo_depth=4096).report
    shallow = hwsim.simulate("lfc-w1a1", "fpga/pynq-z1", folding=fold, fifo_depth=64).report
    assert deep.ii_cycles == 512 and deep.fps == pytest.approx(100e6 / 512)
    assert shallow.ii_cycles > 512 and shallow.fps < deep.fps
    assert any("stall" in n for n in shallow.notes)
    with pytest.raises(MappingError, match="fifo_depth"):
        hwsim.simulate("lfc-w1a1", "fpga/pynq-z1", folding=fold, fifo_depth=0)


def test_auto_folding_says_when_the_target_rate_does_not_fit_the_device():
    g = hwsim.as_graph("tfc-w1a1")
    rep = hwsim.simulate(g, "fpga/pynq-z1", folding="auto", target_fps=1e7).report
    assert not rep.fits_on_chip
    assert any("does not fit fpga/pynq-z1" in n and "LUTs" in n for n in rep.notes), rep.notes
    ok = hwsim.simulate(g, "fpga/pynq-z1", folding="auto", target_fps=1e5).report
    assert ok.fits_on_chip and not any("does not fit" in n for n in ok.notes)
