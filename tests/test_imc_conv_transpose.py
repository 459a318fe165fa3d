"""Transposed convolution on the IMC target (:mod:`hwsim.imc.deconv`): the crossbar GEMM + col2im against an
independent int64 transcription of the definition (bit for bit) and against fp32, the mapping and costs against
hand counts, the pipelined schedule's row rule against the definition, and a conv autoencoder on three presets."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
from hwsim.errors import UnsupportedOpError
from hwsim.imc import functional as imf
from hwsim.imc.fit import prepare
from hwsim.imc.functional import make_kernels
from hwsim.imc.schedule import _needed
from hwsim.imc.simulate import quantize_with_progress
from hwsim.imc.spec import AdcMode, IMCSpec, SignedWeights
from hwsim.kernels._deconv import conv_transpose2d
from mapping.graph import Op
from mapping.imc import map_graph
from mapping.passes.quantize import dequantize, input_scale, quantize_input

# (cin, cout, kernel, stride, padding, output_padding, dilation, groups, hw)
CONFIGS = [
    (16, 8, 3, 2, 1, 1, 1, 1, 4),  # the U-Net / autoencoder up-sampler
    (8, 8, 4, 2, 1, 0, 1, 8, 5),  # depthwise: one input row per group
    (24, 6, 3, 1, 0, 0, 1, 1, 3),  # 24 rows: two row splits of a 20-row crossbar
    (6, 9, (2, 3), (2, 1), (0, 1), (1, 0), (1, 2), 3, 4),  # grouped, dilated, asymmetric
    (4, 3, 2, 2, 0, 1, 1, 1, 3),  # output_padding > padding: a last row and column only the bias reaches
    (5, 4, 3, 3, 2, 2, 1, 1, 3),  # stride 3, padding 2
]


def layer_of(cfg, bias=True, batch=2):
    cin, cout, k, s, p, op, d, g, hw = cfg
    torch.manual_seed(0)
    m = nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, d).eval()
    return m, hwsim.as_graph(m, (batch, cin, hw, hw))


def sample(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- independent references
def ref_weight_codes(w, groups, bits):
    """Symmetric integer codes of a [Cin, Cout/g, kh, kw] weight, one scale per output channel (the max |w| over its
    input channels and taps): codes [Cin, Cout/g, kh, kw] int64, scales [Cout]."""
    cin, og = w.shape[0], w.shape[1]
    cg, qmax = cin // groups, 2 ** (bits - 1) - 1
    w64 = w.astype(np.float64)
    scales = np.array([np.abs(w64[gi * cg:(gi + 1) * cg, co]).max() / qmax for gi in range(groups) for co in range(og)])
    per_ci = np.stack([scales[(ci // cg) * og:(ci // cg + 1) * og] for ci in range(cin)])  # [Cin, Cout/g]
    return np.clip(np.rint(w64 / per_ci[:, :, None, None]), -qmax, qmax).astype(np.int64), scales


def ref_deconv_int(xq, qw, attrs, out_hw):
    """The definition of mapping._conv_transpose, in int64: input pixel (iy, ix) of channel ci adds
    ``x · w[ci, co, ky, kx]`` to output pixel (iy·s − p + ky·d, ix·s − p + kx·d) of channel g·Cout/g + co."""
    n, cin, h, w = xq.shape
    og, kh, kw = qw.shape[1:]
    cg = cin // attrs.groups
    out = np.zeros((n, og * attrs.groups) + tuple(out_hw), np.int64)
    (sh, sw), (ph, pw), (dh, dw) = attrs.stride, attrs.padding, attrs.dilation
    for gi in range(attrs.groups):
        xs, ws = xq[:, gi * cg:(gi + 1) * cg].astype(np.int64), qw[gi * cg:(gi + 1) * cg]
        for iy in range(h):
            for ix in range(w):
                for ky in range(kh):
                    for kx in range(kw):
                        oy, ox = iy * sh - ph + ky * dh, ix * sw - pw + kx * dw
                        if 0 <= oy < out_hw[0] and 0 <= ox < out_hw[1]:
                            out[:, gi * og:(gi + 1) * og, oy, ox] += xs[:, :, iy, ix] @ ws[:, :, ky, kx]
    return out


def ref_layer(node, graph, x, w_bits, x_bits):
    """Each sample alone (its own input scale, as the chip converts one input at a time): codes, int64 transposed
    conv, dequantize."""
    qw, sw = ref_weight_codes(graph.param(node, "weight"), node.attrs.groups, w_bits)
    b = graph.param(node, "bias") if "bias" in node.params else None
    outs = []
    for i in range(len(x)):
        sx, signed = input_scale(x[i:i + 1], x_bits)
        acc = ref_deconv_int(quantize_input(x[i:i + 1], x_bits, sx, signed), qw, node.attrs, node.shape[2:])
        outs.append(dequantize(acc, sx, sw, b, channel_axis=1))
    return np.concatenate(outs)


# ----------------------------------------------------------------------------- numerics
EXACT_SPEC = IMCSpec(rows=20, cols=64, cell_bits=1, adc_bits=5, weight_bits=8, input_bits=6)  # 20 x 1 x 1 <= 31


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("bitlevel", [False, True])
def test_layer_equals_the_int64_transcription_bit_for_bit(cfg, bitlevel):
    m, graph = layer_of(cfg)
    node = graph.nodes[0]
    x = sample(node.shape[:1] + graph.inputs[0].shape[1:], 1)
    x[1] = np.abs(x[1])  # one unsigned sample: the batch runs as two groups of signedness
    got = make_kernels(EXACT_SPEC, force_bitlevel=bitlevel)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    assert np.array_equal(got, ref_layer(node, graph, x, 8, 6))
    ref = m(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()  # and close to float


def test_annotated_graph_gives_the_same_outputs():
    """quantize_with_progress (what simulate runs) annotates the node with per-output-channel scales."""
    _, graph = layer_of(CONFIGS[3])
    gq = quantize_with_progress(graph, 8, 6)
    node, qnode = graph.nodes[0], gq.nodes[0]
    assert len(qnode.meta["quant"].weight_scale) == qnode.attrs.out_channels
    np.testing.assert_allclose(qnode.meta["quant"].weight_scale, ref_weight_codes(graph.param(node, "weight"), 3, 8)[1])
    x = sample((2, 6, 4, 4), 2)
    k = make_kernels(EXACT_SPEC)[Op.CONV_TRANSPOSE2D]
    assert np.array_equal(k(gq, qnode, [x]), k(graph, node, [x]))


@pytest.mark.parametrize("cfg", CONFIGS[:4])
def test_isaac_16_bit_is_within_quantization_error_of_fp32(cfg):
    _, graph = layer_of(cfg)
    node = graph.nodes[0]
    x = sample((2,) + graph.inputs[0].shape[1:], 3)
    spec = hwsim.load_preset("imc/isaac")
    got = make_kernels(spec)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    a = node.attrs
    ref = conv_transpose2d(x, graph.param(node, "weight"), graph.param(node, "bias"), a.stride, a.padding,
                           a.output_padding, a.dilation, a.groups)
    # 16-bit codes: |error| <= Σ |x||Δw| + |w||Δx| ~ K·kh·kw taps x 2^-15 of the ranges
    assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max()


def test_low_bit_clipping_adc_runs_and_loses_information():
    _, graph = layer_of(CONFIGS[0])
    node = graph.nodes[0]
    x = sample((2, 16, 4, 4), 4)
    exact = make_kernels(EXACT_SPEC)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    for bits in (4, 5):
        spec = IMCSpec(rows=64, cols=64, cell_bits=2, adc_bits=bits, weight_bits=8, input_bits=6,
                       adc_mode=AdcMode.CLIP)
        got = make_kernels(spec)[Op.CONV_TRANSPOSE2D](graph, node, [x])
        assert got.shape == exact.shape and np.isfinite(got).all() and not np.array_equal(got, exact)


def test_device_variation_is_seeded():
    _, graph = layer_of(CONFIGS[0])
    node = graph.nodes[0]
    x = sample((2, 16, 4, 4), 5)
    spec = IMCSpec(rows=64, cell_bits=2, adc_bits=8, weight_bits=6, input_bits=6, conductance_sigma=0.05,
                   stuck_at_rate=0.001, adc_noise_lsb=0.3, signed_weights=SignedWeights.DIFFERENTIAL)

    def run(sp, seed):  # one read index: ADC noise is drawn again at every run, as read noise is
        return make_kernels(sp, seed=seed, read_index=0)[Op.CONV_TRANSPOSE2D](graph, node, [x])

    a = run(spec, 1)
    imf.clear_cache()  # reprogrammed from scratch: the same draws
    b, c = run(spec, 1), run(spec, 2)
    ideal = run(dataclasses.replace(spec, conductance_sigma=0.0, stuck_at_rate=0.0, adc_noise_lsb=0.0), 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, ideal)
    assert np.isfinite(a).all()
    fresh = make_kernels(spec, seed=1, read_index=1)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    assert not np.array_equal(a, fresh)


def test_streamed_program_equals_the_held_one(monkeypatch):
    """A matrix whose program exceeds STREAM_BYTES is programmed one row split at a time: same draws, same bits."""
    _, graph = layer_of(CONFIGS[2])  # 24 rows: two row splits
    node = graph.nodes[0]
    x = sample((2, 24, 3, 3), 7)
    spec = IMCSpec(rows=16, cell_bits=2, adc_bits=6, weight_bits=6, input_bits=6, conductance_sigma=0.05,
                   read_sigma=0.02, signed_weights=SignedWeights.DIFFERENTIAL)
    held = make_kernels(spec, seed=3, read_index=1)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    monkeypatch.setattr(imf, "STREAM_BYTES", 0)
    streamed = make_kernels(spec, seed=3, read_index=1)[Op.CONV_TRANSPOSE2D](graph, node, [x])
    assert np.array_equal(held, streamed) and np.isfinite(held).all()


# ----------------------------------------------------------------------------- mapping, cost, schedule
def test_mapping_and_cost_equal_the_hand_count():
    cfg = (40, 12, 3, 2, 1, 1, 1, 1, 5)  # K = 40 rows, N = 12·9 = 108 weight columns
    _, graph = layer_of(cfg, batch=2)
    spec = dataclasses.replace(hwsim.load_preset("imc/isaac"), rows=32, cols=128)
    folded, geo, _ = prepare(graph)
    (g,) = geo
    assert (g.k, g.n, g.groups, g.pixels) == (40, 108, 1, (25,))  # one MVM per input pixel, per sample
    lm = map_graph(folded, spec, geo).layers[0]
    cpw = spec.columns_per_weight
    rs, cs = -(-40 // 32), -(-108 * cpw // 128)
    assert (lm.row_splits, lm.col_splits, lm.crossbars, lm.used_cells) == (rs, cs, rs * cs, 40 * 108 * cpw)
    rep = hwsim.simulate(graph, spec).report
    (row,) = [r for r in rep.layers if r.op == "conv_transpose2d"]
    mvms = 2 * 25  # batch x input pixels
    assert row.cost.adc_conversions == rep.adc_conversions == mvms * spec.input_steps * 108 * cpw * rs
    assert (row.cost.crossbars, row.cost.row_splits, row.cost.col_splits) == (rs * cs, rs, cs)
    assert row.macs == 2 * 25 * 40 * 108


def test_grouped_layers_pack_block_diagonally():
    _, graph = layer_of((8, 8, 4, 2, 1, 0, 1, 8, 5))  # depthwise: 8 groups of 1 row x 16 columns
    spec = hwsim.load_preset("imc/isaac")
    folded, geo, _ = prepare(graph)
    lm = map_graph(folded, spec, geo).layers[0]
    assert (geo[0].k, geo[0].n, geo[0].groups) == (1, 16, 8)
    assert lm.crossbars == -(-8 // lm.groups_per_crossbar) and lm.used_cells == 8 * 16 * spec.columns_per_weight


@pytest.mark.parametrize("preset", ["imc/isaac", "imc/edge-small"])
def test_energy_and_latency_grow_with_the_input(preset):
    costs = []
    for hw in (4, 8, 16):
        rep = hwsim.simulate(layer_of((16, 8, 3, 2, 1, 1, 1, 1, hw), batch=1)[1], preset).report
        (row,) = rep.layers
        costs.append((row.energy_j, row.latency_s, row.energy_breakdown.get("digital", 0.0)))
    assert all(v > 0 for c in costs for v in c)
    assert all(a[i] < b[i] for a, b in zip(costs, costs[1:]) for i in range(3)), costs


def test_col2im_adds_are_costed_at_the_digital_op_energy():
    from hwsim.imc.cost import col2im_adds

    _, graph = layer_of(CONFIGS[0], batch=1)
    node = graph.nodes[0]
    assert col2im_adds(node) == 4 * 4 * 8 * 9 + 8 * 8 * 8  # H·W·Cout·kh·kw + the bias per output element
    spec = hwsim.load_preset("imc/isaac")
    (row,) = hwsim.simulate(graph, spec).report.layers
    per_col = 16 * 8 * 9  # P·g·N·row_splits merge / dequantize ops of any crossbar layer (1 row split)
    assert row.energy_breakdown["digital"] == pytest.approx((per_col + col2im_adds(node)) * spec.digital_energy_pj_per_op
                                                            * 1e-12)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_pipelined_rows_needed_follow_the_definition(cfg):
    _, graph = layer_of(cfg)
    node = graph.nodes[0]
    a, hin, hout = node.attrs, graph.inputs[0].shape[2], node.shape[2]
    in_shape = graph.inputs[0].shape
    for done in range(1, hout + 1):
        # the last input row reaching an output row < done, from the definition (rows past the map: none)
        rows = [iy for iy in range(hin) for ky in range(a.kernel[0])
                if iy * a.stride[0] - a.padding[0] + ky * a.dilation[0] < done]
        assert _needed(node, done, in_shape) == max(1, max(rows, default=0) + 1)


# ----------------------------------------------------------------------------- whole networks
class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                  nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=8), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.up(self.down(x))


@pytest.mark.parametrize("preset", ["imc/isaac", "imc/neurosim-rram-22nm", "imc/edge-small"])
@pytest.mark.parametrize("mode", ["pipelined", "layer"])
def test_autoencoder_simulates(preset, mode):
    torch.manual_seed(0)
    m = AutoEncoder().eval()
    x = sample((2, 3, 16, 16), 6)
    r = hwsim.simulate(m, preset, x=x, mode=mode)
    ref = m(torch.from_numpy(x)).detach().numpy()
    out = np.asarray(r.outputs)
    tol = 1e-3 if preset == "imc/isaac" else 0.05  # 16-bit vs 8-bit codes
    assert out.shape == ref.shape and np.abs(out - ref).max() < tol * np.abs(ref).max()
    rows = [row for row in r.report.layers if row.op == "conv_transpose2d"]
    assert len(rows) == 2 and all(row.energy_j > 0 and row.latency_s > 0 and row.cost.crossbars > 0 for row in rows)
    assert [row.macs for row in rows] == [2 * 4 * 4 * 16 * 8 * 9, 2 * 8 * 8 * 8 * 16]
    assert r.report.fits_on_chip and r.report.latency_s > 0 and r.report.energy_j > 0


def test_hw_aware_still_refuses_transposed_convs_in_one_line():
    from hwsim.codesign.hw_aware import hw_aware

    with pytest.raises(UnsupportedOpError) as e:
        hw_aware(AutoEncoder().eval(), "imc/isaac", (1, 3, 16, 16))
    assert "\n" not in str(e.value) and "up.0" in str(e.value)
