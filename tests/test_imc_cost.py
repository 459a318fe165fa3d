"""IMC cost model: ISAAC tile power/area, hand-counted layer costs, scheduling modes, DRAM reloads, exits."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import hwsim
import nets
from hwsim.errors import SpecError
from hwsim.imc.cost import Activations, tile_area_mm2, tile_power_w
from hwsim.imc.spec import IMCSpec


def test_isaac_tile_power_adds_up_to_the_paper():
    # ISAAC (ISCA'16) Table 2: tile 330 mW, 0.372 mm^2. Our components: per-action energies
    # (Accelergy/MNSIM/PUMA) x the rates of a fully busy tile, plus the table's other units.
    p = tile_power_w(hwsim.load_preset("imc/isaac"))
    assert sum(p.values()) == pytest.approx(0.330, rel=0.06)
    assert p["adc"] == pytest.approx(96 * 2e-3, rel=0.08)  # 96 ADCs at ~2 mW: the dominant component
    assert p["crossbar"] == pytest.approx(96 * 0.3e-3, rel=1e-6)
    assert p["dac"] == pytest.approx(12 * 4e-3, rel=0.08)  # 8x128 DACs per IMA at 4 mW
    assert tile_area_mm2(hwsim.load_preset("imc/isaac")) == pytest.approx(0.372, rel=0.02)


def _one_conv(cin=64, cout=64, hw=8, k=3):
    return hwsim.as_graph(torch.nn.Conv2d(cin, cout, k, padding=k // 2).eval(), (1, cin, hw, hw))


def test_conv_layer_hand_count():
    spec = IMCSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1, cols_per_adc=8,
                   read_time_s=10e-9, adc_rate_hz=1e9, sample_hold=True, tiles=4, crossbars_per_tile=16)
    r = hwsim.simulate(_one_conv(), spec, mode="layer").report
    row = r.layers[0]
    # K = 576 -> 5 row splits; 64 x 4 cells = 256 columns -> 2 column splits; 10 crossbars
    assert row.cost.crossbars == 10 and row.cost.row_splits == 5
    # step = max(10 ns read, 8 columns / 1 GS/s) = 10 ns; 8 input bits -> 80 ns per MVM; 64 pixels
    assert row.finish_s - row.start_s == pytest.approx(row.latency_s)
    assert spec.mvm_time_s == pytest.approx(80e-9)
    assert row.bound == "compute" and row.latency_s == pytest.approx(64 * 80e-9)
    conv = 64 * 8 * (64 * 4) * 5  # pixels x steps x weight columns x row splits
    assert row.cost.adc_conversions == conv
    assert row.energy_breakdown["adc"] == pytest.approx(conv * spec.adc_energy_pj * 1e-12)
    assert row.energy_breakdown["crossbar"] == pytest.approx(64 * 8 * 10 * spec.crossbar_read_energy_pj * 1e-12)
    assert row.energy_breakdown["dac"] == pytest.approx(64 * 8 * 576 * 2 * spec.dac_energy_pj * 1e-12)
    assert r.energy_j == pytest.approx(sum(r.energy_breakdown.values()))
    assert r.energy_j == pytest.approx(sum(layer.energy_j for layer in r.layers))


def test_column_mux_without_sample_hold_is_slower():
    base = IMCSpec(cols_per_adc=8, read_time_s=10e-9, adc_rate_hz=1e9, sample_hold=True)
    assert base.step_time_s == pytest.approx(10e-9)
    assert dataclasses.replace(base, sample_hold=False).step_time_s == pytest.approx(8 * 11e-9)


def test_pipelining_overlaps_layers():
    g = hwsim.as_graph("resnet20")
    spec = hwsim.load_preset("imc/isaac")
    lay = hwsim.simulate(g, spec, mode="layer").report
    pipe = hwsim.simulate(g, spec, mode="pipelined").report
    assert pipe.latency_s < lay.latency_s
    assert pipe.energy_j == pytest.approx(lay.energy_j, rel=1e-9)  # same work, different schedule
    assert lay.latency_s == pytest.approx(sum(layer.latency_s for layer in lay.layers))
    # no node can finish before its slowest weight layer alone
    assert pipe.latency_s >= max(layer.latency_s for layer in pipe.layers)


def test_duplication_speeds_up():
    g = hwsim.as_graph("resnet20")
    spec = hwsim.load_preset("imc/isaac")
    none = hwsim.simulate(g, spec, mode="layer").report
    bal = hwsim.simulate(g, dataclasses.replace(spec, duplication="balance"), mode="layer").report
    assert bal.crossbars_used > none.crossbars_used == none.crossbars_needed
    assert bal.latency_s < none.latency_s / 2


def _itnet(shared, T=4):
    return hwsim.as_graph(nets.get("itnet", iterations=T, shared=shared), (1, 3, 32, 32))


def test_dram_reloads_when_weights_do_not_fit():
    spec = hwsim.load_preset("imc/edge-small")
    sh = hwsim.simulate(_itnet(True), spec, mode="layer").report
    un = hwsim.simulate(_itnet(False), spec, mode="layer").report
    assert sh.fits_on_chip and sh.dram_bytes == 0 and sh.energy_breakdown.get("dram", 0.0) == 0.0
    assert not un.fits_on_chip and un.spilled_layers
    # 6 spilled 64x64x3x3 convs of 8-bit weights, reloaded once each (each executes once)
    assert un.dram_bytes == 6 * 64 * 64 * 9
    assert un.energy_breakdown["dram"] == pytest.approx(un.dram_bytes * 8 * spec.dram_energy_pj_per_bit * 1e-12)
    assert un.latency_s > sh.latency_s and un.energy_j > sh.energy_j
    # on a chip large enough for both, the unshared twin costs about what the shared net does (the
    # crossbar work is identical; only the digital ops spread over more tiles)
    big = dataclasses.replace(spec, tiles=16)
    un_big = hwsim.simulate(_itnet(False), big, mode="layer").report
    sh_big = hwsim.simulate(_itnet(True), big, mode="layer").report
    assert un_big.fits_on_chip and un_big.latency_s == pytest.approx(sh_big.latency_s, rel=0.01)


@pytest.mark.parametrize("mode", ["layer", "pipelined"])
def test_exits_latency_and_energy(mode):
    r = hwsim.simulate(_itnet(True), "imc/edge-small", mode=mode).report
    assert len(r.exits) == 4
    lat = [e.latency_s for e in r.exits]
    en = [e.energy_j for e in r.exits]
    assert all(a < b for a, b in zip(lat, lat[1:])) and all(a < b for a, b in zip(en, en[1:]))
    assert lat[-1] == pytest.approx(r.latency_s) and en[-1] < r.energy_j  # the last exit skips the earlier heads


def test_an_early_exit_pays_for_its_own_ancestors_only():
    """A deep exit returned first and an early one (reading only the first conv) second: the early exit's energy is
    that of the layers it depends on, below the deep exit's, as its dataflow finish time already is."""
    class TwoExits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 16, 3, padding=1)
            self.h1, self.h2 = torch.nn.Linear(16, 4), torch.nn.Linear(16, 4)

        def forward(self, x):
            a = torch.relu(self.a(x))
            b = torch.relu(self.b(a))
            return self.h2(b.mean((2, 3))), self.h1(a.mean((2, 3)))

    r = hwsim.simulate(TwoExits().eval(), "imc/isaac", input_shape=(1, 3, 16, 16)).report
    layers = {lr.name: lr.energy_j for lr in r.layers}
    deep, early = r.exits
    assert deep.energy_j == pytest.approx(sum(v for k, v in layers.items() if k not in ("mean_1", "h1")))
    assert early.energy_j == pytest.approx(sum(layers[k] for k in ("a", "relu", "mean_1", "h1")))
    assert early.energy_j < deep.energy_j and early.latency_s < deep.latency_s


def test_simulate_with_input_and_report_export():
    model = nets.get("itnet", iterations=2)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    res = hwsim.simulate(model, "imc/edge-small", x=x)
    assert isinstance(res.outputs, list) and len(res.outputs) == 2 and res.outputs[0].shape == (2, 10)
    ref = model(torch.from_numpy(x))[1].detach().numpy()
    assert np.abs(res.outputs[1] - ref).max() < 0.2 * np.abs(ref).max()  # 8-bit, 5-bit clipping ADC
    d = res.report.to_dict()
    assert d["crossbars_needed"] == res.report.crossbars_needed and d["target"] == "imc"
    df = res.report.to_pandas()
    assert {"energy_adc_j", "crossbars", "bound"} <= set(df.columns)
    assert res.report.batch == 2


def test_bad_mode_is_a_spec_error():
    with pytest.raises(SpecError, match="mode"):
        hwsim.simulate(_itnet(True, 1), "imc/edge-small", mode="fast")


class _TwoBranches(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(16, 16, 1)
        self.b = torch.nn.Conv2d(16, 16, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_layers_sharing_a_tile_contend_for_its_buffer():
    g = hwsim.as_graph(_TwoBranches().eval(), (1, 16, 8, 8))
    # each 1x1 conv is one crossbar; a slow buffer makes both buffer-bound
    slow = IMCSpec(buffer_bandwidth_bytes_s=1e6, tiles=2)
    same = hwsim.simulate(g, dataclasses.replace(slow, crossbars_per_tile=2), mode="pipelined").report
    apart = hwsim.simulate(g, dataclasses.replace(slow, crossbars_per_tile=1), mode="pipelined").report
    conv = [layer for layer in apart.layers if layer.op == "conv2d"]
    assert all(layer.bound == "buffer" for layer in conv)
    done = {name: max(layer.finish_s for layer in r.layers if layer.op == "conv2d")
            for name, r in (("same", same), ("apart", apart))}
    assert done["apart"] == pytest.approx(max(layer.latency_s for layer in conv), rel=0.01)  # in parallel
    assert done["same"] == pytest.approx(sum(layer.latency_s for layer in conv), rel=0.01)  # one buffer port


# ----------------------------------------------------------------------------- activations vs buffers
def _conv_relu(cin=16, cout=32, hw=32):
    model = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU()).eval()
    return hwsim.as_graph(model, (1, cin, hw, hw))


def _small_chip(**kw):
    base = dict(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1, cols_per_adc=8,
                read_time_s=10e-9, adc_rate_hz=1e9, sample_hold=True, tiles=4, crossbars_per_tile=16,
                buffer_bytes_per_tile=65536)
    return IMCSpec(**{**base, **kw})


def test_feature_maps_that_fit_stay_on_chip():
    r = hwsim.simulate(_conv_relu(), _small_chip(), mode="layer").report
    conv, relu = r.layers
    assert r.dram_activation_bytes == 0 and "dram" not in conv.energy_breakdown
    assert conv.cost.activations is Activations.ONCHIP
    # the ReLU is applied on the conv's outputs on their way to the buffer: no activation traffic
    assert relu.cost.activations is Activations.FUSED and relu.energy_breakdown["buffer"] == 0.0


def test_feature_maps_beyond_the_buffers_go_through_dram_once():
    # 16x32x32 input (16 KiB) + 32x32x32 output (32 KiB) at 8 bits on 4 x 8 KiB of buffers; the
    # weights stay on chip, so the layer reads its input once and writes its output once
    spec = _small_chip(buffer_bytes_per_tile=8192)
    r = hwsim.simulate(_conv_relu(), spec, mode="layer").report
    conv = r.layers[0]
    assert conv.cost.activations is Activations.DRAM and conv.cost.weight_loads == 0
    assert conv.cost.dram_activation_bytes == 16 * 32 * 32 + 32 * 32 * 32
    assert r.dram_activation_bytes == conv.cost.dram_activation_bytes and r.dram_bytes == 0
    assert conv.energy_breakdown["dram"] == pytest.approx(49152 * 8 * spec.dram_energy_pj_per_bit * 1e-12)
    onchip = hwsim.simulate(_conv_relu(), _small_chip(), mode="layer").report.layers[0]
    assert conv.latency_s == pytest.approx(onchip.latency_s + 49152 / spec.dram_bandwidth_bytes_s)
    assert "through DRAM" in r.summary()


def test_the_deprecated_extra_columns_are_built_from_the_typed_records():
    """``extra`` (deprecated) and the report's rows keep the old columns, in the old order, read from the typed
    records; the placement enum compares and serializes as its old string."""
    r = hwsim.simulate(_conv_relu(), _small_chip(buffer_bytes_per_tile=8192), mode="layer").report
    conv, relu = r.layers
    assert list(conv.extra) == ["crossbars", "duplicates", "row_splits", "col_splits", "adc_conversions", "tiles",
                                "passes", "compute_s", "dram_s", "weight_loads", "activations", "held_on_chip",
                                "pixel_tiles", "dram_weight_bytes", "dram_activation_bytes", "start_s", "finish_s"]
    assert conv.extra["compute_s"] == conv.compute_s > 0 and conv.extra["dram_s"] == conv.cost.dram_s > 0
    assert conv.extra["crossbars"] == conv.cost.crossbars and conv.extra["finish_s"] == conv.finish_s
    assert relu.extra == {"activations": "fused", "start_s": relu.start_s, "finish_s": relu.finish_s}
    row = conv.row()
    assert "cost" not in row and list(row)[-3:] == ["dram_activation_bytes", "start_s", "finish_s"]
    assert json.loads(json.dumps(r.to_dict()))["layers"][0]["activations"] == "dram"
    assert f"{conv.cost.activations}" == str(conv.cost.activations) == "dram"
    later = dataclasses.replace(conv, start_s=1.0, finish_s=2.0)  # the columns follow the typed fields
    assert (later.extra["start_s"], later.extra["finish_s"]) == (1.0, 2.0) and conv.extra["start_s"] != 1.0


def test_spilled_weights_with_spilled_feature_maps_are_bounded():
    # 64 -> 256 channels, 3x3: K = 576 -> 5 row splits, 256 x 4 cells -> 8 column splits: 40
    # crossbars on a 2-crossbar chip, so the layer runs in 20 passes: 8 column groups (8 input
    # streams), 3 row passes each (partial sums written and read back twice)
    g = _conv_relu(64, 256, 16)
    spec = _small_chip(tiles=1, crossbars_per_tile=2, buffer_bytes_per_tile=4096)
    conv = hwsim.simulate(g, spec, mode="layer").report.layers[0]
    assert conv.cost.passes == 20 and conv.cost.col_splits == 8
    e_bit = spec.dram_energy_pj_per_bit * 1e-12
    w_bits = 64 * 9 * 256 * 8
    in_bits, out_bits = 64 * 16 * 16 * 8, 256 * 16 * 16 * 8
    psum_bits = 8 + 8 + math.ceil(math.log2(576))
    stream_all = in_bits * 8 + out_bits + 2 * 2 * 256 * 256 * psum_bits  # hold nothing, weights loaded once
    got = conv.energy_breakdown["dram"]
    assert (w_bits + in_bits + out_bits) * e_bit <= got <= (w_bits + stream_all) * e_bit * (1 + 1e-12)
    assert conv.cost.weight_loads == conv.cost.pixel_tiles >= 1


def test_smaller_buffers_never_cost_less_energy():
    g = hwsim.as_graph("resnet18")
    spec = hwsim.load_preset("imc/edge-small")
    energies = [hwsim.simulate(g, dataclasses.replace(spec, buffer_bytes_per_tile=b), mode="layer").report.energy_j
                for b in (2**24, 2**20, 2**17, 2**14, 2**11)]
    assert all(a <= b * (1 + 1e-9) for a, b in zip(energies, energies[1:]))
    assert energies[-1] > energies[0]


def test_pipelined_layers_queue_for_the_dram_interface():
    """Two branches whose feature maps both go through DRAM can overlap their crossbar work, not their
    off-chip transfers: from the first one's start to the last one's end takes at least their DRAM times."""

    class TwoBranches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.b = torch.nn.Conv2d(16, 32, 3, padding=1)

        def forward(self, x):
            return self.a(x) + self.b(x)

    g = hwsim.as_graph(TwoBranches().eval(), (1, 16, 32, 32))
    spec = _small_chip(buffer_bytes_per_tile=8192, dram_bandwidth_bytes_s=1e8)  # transfers dominate
    pipe = hwsim.simulate(g, spec, mode="pipelined").report
    convs = [layer for layer in pipe.layers if layer.op == "conv2d"]
    dram = [c.cost.dram_s for c in convs]
    assert len(dram) == 2 and min(dram) > 0
    span = max(c.finish_s for c in convs) - min(c.start_s for c in convs)
    assert span >= sum(dram) * (1 - 1e-9)


def test_spilled_layers_on_a_chip_with_no_crossbar_free_are_flagged_optimistic():
    """No crossbar free: the spilled layers are costed on the whole chip without the resident weights' reload;
    the report says so (a few free crossbars: costed in passes on those, no such note)."""
    base = hwsim.load_preset("imc/edge-small")
    full = hwsim.simulate("resnet20", dataclasses.replace(base, tiles=3)).report
    some = hwsim.simulate("resnet20", dataclasses.replace(base, tiles=4)).report
    assert not full.fits_on_chip and any("no crossbar is left free" in n for n in full.notes)
    assert not some.fits_on_chip and not any("no crossbar is left free" in n for n in some.notes)


def test_outputs_that_do_not_depend_on_the_input_are_flagged(monkeypatch):
    """A chip whose ADCs clip everything gives one value everywhere (timm's mobilenetv3_small on a 4-bit-ADC
    preset: all-zero logits): the report says so instead of a plausible-looking result."""
    import importlib

    sim = importlib.import_module("hwsim.imc.simulate")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    monkeypatch.setattr(sim, "_outputs", lambda *a, **k: np.zeros((2, 10), np.float32))
    rep = hwsim.simulate("resnet20", "imc/edge-small", x).report
    assert any("every output value is 0" in n for n in rep.notes)
    monkeypatch.undo()
    assert not any("every output value" in n for n in hwsim.simulate("resnet20", "imc/isaac", x).report.notes)


def test_a_report_says_when_the_adc_cannot_represent_every_column_sum():
    """A 5-bit ADC on 128-row crossbars clips or rounds column sums by design: the report says so (how many weight
    matrices, the largest sum against the ADC's range); ISAAC's exact ADC says nothing."""
    note = [n for n in hwsim.simulate("resnet20", "imc/edge-small").report.notes if "ADC cannot" in n]
    assert len(note) == 1 and "20 of 22 weight matrices" in note[0] and "128 > 31" in note[0]
    assert not [n for n in hwsim.simulate("resnet20", "imc/isaac").report.notes if "ADC cannot" in n]
