"""The embedded-CPU target: spec validation, presets, cost model properties, memory verdict, report."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import hwsim
import nets
from hwsim.cpu import CPUSpec, cost_report
from hwsim.cpu.cost import KernelKind, kernel_kind, layer_cost, placement
from hwsim.errors import PresetError, SpecError
from mapping.passes.fold_bn import fold_bn
from mapping.trace import trace

CPU_PRESETS = ["cpu/cortex-a53", "cpu/cortex-a55", "cpu/cortex-a72", "cpu/cortex-a76", "cpu/cortex-m4", "cpu/cortex-m7",
               "cpu/cortex-m33", "cpu/cortex-m55", "cpu/host"]


@pytest.fixture(scope="module")
def resnet20():
    return trace(nets.get("resnet20"), (1, 3, 32, 32), name="resnet20")


@pytest.fixture(scope="module")
def resnet18():
    return trace(nets.get("resnet18"), (1, 3, 224, 224), name="resnet18")


def _isolated(g, node, spec, cores=1):
    """Cost of ``node`` run alone on ``cores`` cores, with the graph's weights placed for that spec (no activations
    counted beside them)."""
    return layer_cost(g, node, spec, placement(g, spec, 0, cores), cores)


# ----------------------------------------------------------------------------- spec validation
@pytest.mark.parametrize("field, value", [
    ("clock_hz", 0.0), ("clock_hz", -1e9), ("cores", 0), ("simd_bits", 0), ("fma_per_cycle", 0.0),
    ("dram_bw_bytes_s", 0.0), ("ram_bytes", 0), ("l2_bytes", -1), ("layer_overhead_s", -1e-6),
    ("unfold_row_s", -1e-9), ("unfold_element_s", -1e-9), ("gemm_n_half", -1.0), ("gemm_m_half", -1.0),
    ("overhead_batchnorm_s", -1e-6),
    ("eff_conv", 0.0), ("eff_depthwise", 1.5), ("eff_grouped", 1.5), ("eff_grouped", -0.2), ("eff_resample", 2.0), ("parallel_eff", -0.1), ("active_power_w_per_core", -1.0),
])
def test_spec_rejects_out_of_range_and_names_the_field(field, value):
    with pytest.raises(SpecError, match=field):
        CPUSpec(**{field: value})


def test_spec_rejects_non_integer_sizes_and_odd_simd():
    with pytest.raises(SpecError, match="cores"):
        CPUSpec(cores=1.5)
    with pytest.raises(SpecError, match="simd_bits"):
        CPUSpec(simd_bits=48)
    with pytest.raises(SpecError, match="flash_bw_bytes_s"):
        CPUSpec(flash_bytes=2**20, flash_bw_bytes_s=0.0)
    with pytest.raises(SpecError, match="name"):
        CPUSpec(name="")


def test_spec_is_frozen_and_replace_validates():
    spec = hwsim.load_preset("cpu/cortex-a72")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.cores = 2
    assert dataclasses.replace(spec, cores=2).cores == 2
    with pytest.raises(SpecError, match="cores"):
        dataclasses.replace(spec, cores=0)


def test_peak_flops_formula():
    spec = CPUSpec(clock_hz=2e9, cores=4, simd_bits=128, fma_per_cycle=2.0)
    assert spec.lanes == 4
    assert spec.peak_flops_per_core == 2e9 * 4 * 2.0 * 2
    assert spec.peak_flops == 4 * spec.peak_flops_per_core


# ----------------------------------------------------------------------------- presets
def test_every_cpu_preset_loads():
    names = hwsim.preset_names("cpu")
    for name in CPU_PRESETS:
        assert name in names
        spec = hwsim.load_preset(name)
        assert isinstance(spec, CPUSpec)
        assert spec.name == name
        assert spec.peak_flops > 0


def test_preset_facts_of_the_boards():
    a72 = hwsim.load_preset("cpu/cortex-a72")
    assert (a72.clock_hz, a72.cores, a72.simd_bits) == (1.5e9, 4, 128)
    m7 = hwsim.load_preset("cpu/cortex-m7")
    assert (m7.clock_hz, m7.ram_bytes, m7.flash_bytes) == (480e6, 2**20, 2 * 2**20)
    m4 = hwsim.load_preset("cpu/cortex-m4")
    assert (m4.clock_hz, m4.ram_bytes, m4.flash_bytes) == (120e6, 640 * 1024, 2 * 2**20)  # NUCLEO-L4R5ZI


def test_yaml_variant_with_base_and_bad_keys(tmp_path):
    p = tmp_path / "pi4-2cores.yaml"
    p.write_text("base: cpu/cortex-a72\nname: my/pi4\ncores: 2\n")
    spec = hwsim.load_preset(p)
    assert spec.cores == 2 and spec.clock_hz == 1.5e9
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: cpu\nclock_hz: 1.0e9\nclokc_hz: 2.0e9\n")
    with pytest.raises(PresetError, match="clokc_hz"):
        hwsim.load_preset(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text("base: cpu/cortex-a53\ncores: -2\n")
    with pytest.raises(SpecError, match="cores"):
        hwsim.load_preset(neg)


# ----------------------------------------------------------------------------- cost model
def test_compute_time_of_a_conv_follows_the_documented_formula():
    """One big 3x3 conv, compute-bound: t_c = FLOPs / (clock·lanes·fma·2·eff·lane_util), FLOPs over the taps inside
    the image (the direct kernel skips the padding)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    g = trace(conv, (1, 64, 28, 28))
    spec = CPUSpec(clock_hz=1e9, cores=1, simd_bits=128, fma_per_cycle=1.0, eff_conv=0.5, layer_overhead_s=0.0,
                   dram_bw_bytes_s=1e12, l1d_bytes=32768, l2_bytes=2**20)
    node = g.nodes[0]
    place = placement(g, spec, 0, 1)
    c = layer_cost(g, node, spec, place, 1)
    valid = 27 + 28 + 27  # per dimension: outputs whose top / middle / bottom tap is inside the 28 rows
    flops = 2 * 64 * 64 * valid * valid
    assert c.flops == pytest.approx(flops, rel=1e-12)
    assert math.isclose(c.compute_s, flops / (1e9 * 4 * 1.0 * 2 * 0.5), rel_tol=1e-12)
    assert c.bound == "compute" and math.isclose(c.latency_s, c.compute_s, rel_tol=1e-12)


def test_grouped_conv_kind_and_its_efficiency():
    """A grouped 3x3 conv (1 < groups < Cin) runs the 'grouped' kernel at eff_grouped (0: eff_conv); its
    lane utilisation counts Cout / groups channels: t_c = FLOPs / (peak · eff · util · K / (K + k_half))."""
    conv = torch.nn.Conv2d(32, 24, 3, padding=1, groups=4, bias=False)
    g = trace(conv, (1, 32, 14, 14))
    node = g.nodes[0]
    base = CPUSpec(clock_hz=1e9, cores=1, simd_bits=128, fma_per_cycle=1.0, eff_conv=0.5, layer_overhead_s=0.0,
                   dram_bw_bytes_s=1e12, l1d_bytes=32768, l2_bytes=2**20, gemm_k_half=8.0)
    assert kernel_kind(node, base) == "grouped"
    assert kernel_kind(trace(torch.nn.Conv2d(32, 24, 1, groups=4), (1, 32, 7, 7)).nodes[0], base) == "pointwise"
    assert kernel_kind(trace(torch.nn.Conv2d(8, 8, 3, groups=8), (1, 8, 7, 7)).nodes[0], base) == "depthwise"
    place = placement(g, base, 0, 1)
    flops = 2 * 24 * (32 // 4) * (13 + 14 + 13) ** 2  # the taps inside the 14x14 image (padding skipped)
    k = 8 * 9
    util = 6 / 8 * k / (k + 8.0)  # Cout/g = 6 of 4 lanes -> 2 vectors of 4: 6/8
    fallback = layer_cost(g, node, base, place, 1)
    assert fallback.kind == "grouped" and fallback.flops == pytest.approx(flops, rel=1e-12)
    assert math.isclose(fallback.compute_s, flops / (1e9 * 4 * 2 * 0.5 * util), rel_tol=1e-12)
    own = layer_cost(g, node, dataclasses.replace(base, eff_grouped=0.125), place, 1)
    assert math.isclose(own.compute_s, flops / (1e9 * 4 * 2 * 0.125 * util), rel_tol=1e-12)


def test_view_overhead_replaces_layer_overhead_only_for_views():
    """A channel slice is a view: it pays overhead_view_s (when set) instead of layer_overhead_s; other ops don't."""

    class Split(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x[:, 4:12])

    g = trace(Split(), (1, 16, 8, 8))
    base = CPUSpec(layer_overhead_s=6e-6)
    kinds = [kernel_kind(n, base) for n in g.nodes]
    assert "view" in kinds
    for spec, view_s in ((base, 6e-6), (dataclasses.replace(base, overhead_view_s=1e-6), 1e-6)):
        place = placement(g, spec, 0, 1)
        for n, k in zip(g.nodes, kinds):
            c = layer_cost(g, n, spec, place, 1)
            if k == "view":
                assert c.latency_s == view_s and c.bound == "overhead"
            elif k != "free":
                assert c.overhead_s == 6e-6
    with pytest.raises(SpecError, match="overhead_view_s"):
        CPUSpec(overhead_view_s=-1e-6)


def test_batch1_linear_with_big_weights_is_memory_bound_on_dram():
    lin = torch.nn.Linear(4096, 4096)
    g = trace(lin, (1, 4096))
    spec = CPUSpec(clock_hz=1e9, simd_bits=128, l1d_bytes=32768, l2_bytes=2**20, dram_bw_bytes_s=4e9,
                   layer_overhead_s=0.0)
    c = _isolated(g, g.nodes[0], spec)
    w_bytes = (4096 * 4096 + 4096) * 4
    assert c.bound == "memory" and c.weight_home == "dram"
    assert c.memory_s >= w_bytes / 4e9
    assert c.main_memory_bytes >= w_bytes


def test_kernel_kinds(resnet20):
    spec = hwsim.load_preset("cpu/host")
    g = trace(nets.get("mobilenetv2"), (1, 3, 64, 64))
    kinds = {kernel_kind(n, spec) for n in g.nodes}
    assert {"depthwise", "pointwise", "elementwise"} <= kinds
    assert kernel_kind(resnet20.nodes[0], CPUSpec()) == "conv"  # no im2col rule on a plain spec



def test_kernel_kinds_are_string_valued_enum_members(resnet20):
    """kernel_kind returns KernelKind members that compare, hash, format and serialize as the old strings."""
    kinds = [kernel_kind(n, CPUSpec()) for n in resnet20.nodes]
    assert all(isinstance(k, KernelKind) for k in kinds) and kinds[0] is KernelKind.CONV
    assert kinds[0] == "conv" and "conv" in {kinds[0]} and f"{kinds[0]}" == str(kinds[0]) == "conv"
    rows = cost_report(resnet20, CPUSpec()).to_dict()["layers"]
    assert json.loads(json.dumps(rows))[0]["kernel"] == "conv"
    assert {r["kernel"] for r in rows} <= {k.value for k in KernelKind}

def test_latency_monotone_in_clock_cores_and_bandwidth(resnet18):
    base = hwsim.load_preset("cpu/cortex-a72")
    lat = lambda s, **kw: cost_report(resnet18, s, **kw).latency_s  # noqa: E731
    t0 = lat(base)
    assert lat(dataclasses.replace(base, clock_hz=3e9)) < t0 < lat(dataclasses.replace(base, clock_hz=0.75e9))
    assert lat(base, threads=1) > lat(base, threads=2) > lat(base, threads=4)
    assert lat(dataclasses.replace(base, dram_bw_bytes_s=1e9)) > t0
    assert lat(dataclasses.replace(base, dram_bw_bytes_s=1e12)) <= t0
    with pytest.raises(SpecError, match="threads=64 exceeds the spec's cores=4"):
        lat(base, threads=64)  # more threads than the spec's cores: refused, not capped


def test_threads_must_be_positive(resnet20):
    with pytest.raises(SpecError, match="threads"):
        cost_report(resnet20, hwsim.load_preset("cpu/cortex-a53"), threads=0)


# ----------------------------------------------------------------------------- memory verdict
@pytest.mark.parametrize("preset", ["cpu/cortex-m4", "cpu/cortex-m7"])
def test_cortex_m_does_not_fit_resnet18(resnet18, preset):
    rep = cost_report(resnet18, hwsim.load_preset(preset))
    assert not rep.fits_on_chip
    assert "does not fit" in rep.fit_reason and "flash" in rep.fit_reason
    # int8 (the Cortex-M presets' precision): a byte per weight, BN folded into the convs, plus 32-bit biases
    params = fold_bn(resnet18).param_count
    assert params <= rep.onchip_weight_bytes < 1.01 * params and rep.onchip_weight_bytes > 11.6e6
    assert rep.onchip_capacity_bytes == hwsim.load_preset(preset).flash_bytes


def test_fit_verdicts_on_small_and_big_boards(resnet20):
    m7 = cost_report(resnet20, hwsim.load_preset("cpu/cortex-m7"))
    weights = m7.onchip_weight_bytes
    assert weights < 2 * 2**20 and m7.peak_activation_bytes < 2**20
    assert m7.fits_on_chip and m7.fit_reason.startswith("fits")
    m4 = cost_report(resnet20, hwsim.load_preset("cpu/cortex-m4"))
    assert m4.fits_on_chip == (weights <= 2**20 and m4.peak_activation_bytes <= 192 * 1024)
    pi = cost_report(resnet20, hwsim.load_preset("cpu/cortex-a72"))
    assert pi.fits_on_chip and pi.onchip_capacity_bytes == 4 * 2**30


# ----------------------------------------------------------------------------- report
def test_report_rows_totals_and_columns(resnet20):
    rep = cost_report(resnet20, hwsim.load_preset("cpu/cortex-a53"))
    df = rep.to_pandas()
    for col in ("name", "op", "macs", "cycles", "latency_s", "energy_j", "weight_bytes", "activation_bytes",
                "placement", "bound", "kernel", "compute_s", "memory_s", "energy_static_j", "energy_cores_j",
                "energy_memory_j"):
        assert col in df.columns, col
    assert math.isclose(df["latency_s"].sum(), rep.latency_s, rel_tol=1e-9)
    assert math.isclose(df["energy_j"].sum(), rep.energy_j, rel_tol=1e-9)
    assert rep.macs == sum(int(n) for n in df["macs"]) and rep.macs > 40e6
    assert set(df["bound"]) <= {"compute", "memory", "overhead"}
    assert (df["latency_s"] >= np.maximum(df["compute_s"], df["memory_s"]) - 1e-15).all()
    assert "batchnorm" not in set(df["op"])  # folded
    assert "batchnorm" in set(cost_report(resnet20, hwsim.load_preset("cpu/cortex-a53"), fold_bn=False)
                              .to_pandas()["op"])
    d = rep.to_dict()
    assert d["target"] == "cpu" and len(d["layers"]) == len(df)


def test_multi_exit_latencies_increase():
    g = trace(nets.get("itnet"), (1, 3, 32, 32), name="itnet")
    rep = cost_report(g, hwsim.load_preset("cpu/cortex-a76"))
    lats = [e.latency_s for e in rep.exits]
    ens = [e.energy_j for e in rep.exits]
    assert len(lats) == len(g.outputs) > 1
    assert all(a < b for a, b in zip(lats, lats[1:]))
    assert all(a < b for a, b in zip(ens, ens[1:]))
    assert math.isclose(lats[-1], rep.latency_s, rel_tol=1e-9)


def test_energy_model_components(resnet20):
    spec = hwsim.load_preset("cpu/cortex-a72")
    rep = cost_report(resnet20, spec, threads=2)
    br = rep.energy_breakdown
    assert math.isclose(br["static"], rep.latency_s * spec.idle_power_w, rel_tol=1e-9)
    assert math.isclose(br["cores"], rep.latency_s * 2 * spec.active_power_w_per_core, rel_tol=1e-9)
    assert br["memory"] >= 0 and math.isclose(sum(br.values()), rep.energy_j, rel_tol=1e-9)


def test_runtime_dispatch_of_1x1_convs():
    """With pointwise_gemm_max_threads = 1 (PyTorch's use_mkldnn rule), a 1x1 conv is a GEMM unless it is strided
    or runs on more threads *and* is grouped or has a large input; then the generic conv kernel runs it."""
    spec = CPUSpec(cores=2, gemm_conv_max_input_elements=20480, pointwise_gemm_max_threads=1)
    small = trace(torch.nn.Conv2d(16, 32, 1), (1, 16, 8, 8)).nodes[0]  # 1024 input elements
    big = trace(torch.nn.Conv2d(64, 32, 1), (1, 64, 28, 28)).nodes[0]  # 50176
    strided = trace(torch.nn.Conv2d(64, 32, 1, stride=2), (1, 64, 28, 28)).nodes[0]
    grouped = trace(torch.nn.Conv2d(16, 32, 1, groups=4), (1, 16, 8, 8)).nodes[0]
    assert [kernel_kind(n, spec, 1) for n in (small, big, strided, grouped)] == \
        ["pointwise", "pointwise", "conv", "pointwise"]
    assert [kernel_kind(n, spec, 2) for n in (small, big, strided, grouped)] == \
        ["pointwise", "conv", "conv", "grouped"]
    # without the rule (embedded presets) every 1x1 conv is a GEMM
    assert {kernel_kind(n, CPUSpec(cores=2), 2) for n in (small, big, strided, grouped)} == {"pointwise"}


def test_overheads_per_kernel_path_and_per_group():
    """A GEMM-run conv pays overhead_gemm_s (+ overhead_per_group_s per extra group of a 1x1 conv); the generic
    conv kernel pays overhead_conv_s; the layer overhead comes on top of both."""
    spec = CPUSpec(cores=1, layer_overhead_s=1e-6, overhead_conv_s=30e-6, overhead_gemm_s=4e-6,
                   overhead_per_group_s=2e-6, gemm_conv_max_input_elements=20480, pointwise_gemm_max_threads=1)

    def overhead(module, shape):
        g = trace(module, shape)
        return _isolated(g, g.nodes[0], spec).overhead_s

    assert math.isclose(overhead(torch.nn.Conv2d(8, 16, 1), (1, 8, 6, 6)), 1e-6 + 4e-6)
    assert math.isclose(overhead(torch.nn.Conv2d(32, 64, 1, groups=8), (1, 32, 6, 6)), 1e-6 + 4e-6 + 7 * 2e-6)
    assert math.isclose(overhead(torch.nn.Conv2d(8, 8, 3, padding=1), (1, 8, 6, 6)), 1e-6 + 4e-6)  # im2col
    assert math.isclose(overhead(torch.nn.Conv2d(8, 8, 5, padding=2), (1, 8, 6, 6)), 1e-6 + 30e-6)  # 5x5: conv


def test_small_elementwise_ops_run_on_one_thread():
    """Below parallel_grain_elements an elementwise op uses one core: no speed-up and no fork/join overhead."""
    spec = CPUSpec(cores=2, parallel_overhead_s=5e-6, parallel_grain_elements=32768, layer_overhead_s=1e-6)
    for shape, cores_used in (((1, 16, 8, 8), 1), ((1, 64, 32, 32), 2)):
        g = trace(torch.nn.ReLU(), shape)
        c = _isolated(g, g.nodes[0], spec, 2)
        assert c.cores == cores_used
        assert math.isclose(c.overhead_s, 1e-6 + (5e-6 if cores_used == 2 else 0.0))


def test_cold_weights_delay_a_gemm_kernel():
    """Weights living beyond L2 arrive at their home's bandwidth before a conv computes on them:
    t = max(t_c + w_bytes / bw_home, t_m) + overheads; weights held in L2 add nothing."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
    g = trace(conv, (1, 256, 14, 14))
    node = g.nodes[0]
    spec = CPUSpec(clock_hz=2e9, simd_bits=256, fma_per_cycle=2.0, l1d_bytes=32768, l2_bytes=2**20, l3_bytes=0,
                   dram_bw_bytes_s=10e9, layer_overhead_s=0.0)
    w_bytes = 256 * 256 * 9 * 4  # 2.36 MB: beyond L2
    cold = _isolated(g, node, spec)
    assert cold.weight_home == "dram"
    assert math.isclose(cold.latency_s, max(cold.compute_s + w_bytes / 10e9, cold.memory_s), rel_tol=1e-12)
    warm_spec = dataclasses.replace(spec, l2_bytes=2**23)
    warm = _isolated(g, node, warm_spec)
    assert warm.weight_home == "L2" and math.isclose(warm.latency_s, max(warm.compute_s, warm.memory_s), rel_tol=1e-12)


def test_outputs_are_written_from_dram_when_the_network_does_not_fit_the_caches():
    """Back-to-back inferences: with the network's weights in DRAM, a layer's output buffer (last touched one
    inference ago) is evicted, so its bytes cross from DRAM; with the network in L3 they stay on chip."""
    from hwsim.cpu.cost import Placement

    conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
    g = trace(conv, (1, 16, 16, 16))
    node = g.nodes[0]
    spec = CPUSpec(l1d_bytes=32768, l2_bytes=2**20, l3_bytes=2**24, l2_bw_bytes_s=1e11, l3_bw_bytes_s=5e10,
                   dram_bw_bytes_s=1e10)
    w_b, out_b = 16 * 16 * 9 * 4, 16 * 16 * 16 * 4
    in_dram = layer_cost(g, node, spec, Placement("dram", w_b, 0), 1)
    in_l3 = layer_cost(g, node, spec, Placement("L3", w_b, 0), 1)
    assert in_l3.main_memory_bytes == 0
    assert in_dram.main_memory_bytes == w_b + out_b


def test_unfold_copies_a_row_per_call_at_stride_1_and_an_element_per_call_when_strided():
    """An im2col conv (and a strided 1x1 conv run as a GEMM) first builds its unfolded matrix: K*OH copy calls at
    stride 1, K*OH*OW when strided (PyTorch's unfolded2d_copy), each row/element call costing unfold_row_s and
    each element unfold_element_s, split over the threads; a stride-1 1x1 conv unfolds nothing."""
    base = CPUSpec(cores=2, gemm_conv_max_input_elements=20480, pointwise_gemm_max_threads=1, layer_overhead_s=0.0)
    with_unfold = dataclasses.replace(base, unfold_row_s=5e-9, unfold_element_s=1e-9)

    def extra(module, shape, cores=1):
        g = trace(module, shape)
        n = g.nodes[0]
        t = [layer_cost(g, n, s, placement(g, s, 0, cores), cores).compute_s for s in (with_unfold, base)]
        return kernel_kind(n, base, cores), t[0] - t[1]

    kind, dt = extra(torch.nn.Conv2d(8, 16, 3, padding=1), (1, 8, 20, 20))  # K = 72, OH = OW = 20
    assert kind == "im2col" and math.isclose(dt, 72 * 20 * 5e-9 + 72 * 400 * 1e-9, rel_tol=1e-9)
    kind, dt = extra(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 20, 20))  # OH = OW = 10
    assert kind == "im2col" and math.isclose(dt, 72 * 100 * (5e-9 + 1e-9), rel_tol=1e-9)
    kind, dt2 = extra(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 20, 20), cores=2)
    assert math.isclose(dt2, dt / 2, rel_tol=1e-9)  # planes split over the threads
    kind, dt = extra(torch.nn.Conv2d(8, 16, 1, stride=2), (1, 8, 20, 20))
    assert kind == "pointwise" and math.isclose(dt, 8 * 100 * (5e-9 + 1e-9), rel_tol=1e-9)
    kind, dt = extra(torch.nn.Conv2d(8, 16, 1), (1, 8, 20, 20))
    assert kind == "pointwise" and dt == 0.0
    kind, dt = extra(torch.nn.Conv2d(8, 16, 5, padding=2), (1, 8, 20, 20))  # 5x5: the generic conv kernel
    assert kind == "conv" and dt == 0.0


def test_gemm_utilisation_ramps_with_outputs_and_pixels_instead_of_lanes():
    """With gemm_n_half set, a GEMM-run conv's utilisation is N/(N + n_half) * M/(M + m_half) (packing amortised),
    not the lane fill over Cout: 20 output channels lose no lanes to a 16-lane vector."""
    spec = CPUSpec(simd_bits=512, layer_overhead_s=0.0, gemm_n_half=5.0, gemm_m_half=20.0)
    g = trace(torch.nn.Conv2d(32, 20, 1, bias=False), (1, 32, 7, 7))
    node = g.nodes[0]
    c = _isolated(g, node, spec)
    flops = 2 * 32 * 20 * 49
    util = 20 / 25 * 49 / 69
    assert c.kind == "pointwise"
    assert math.isclose(c.compute_s, flops / (spec.peak_flops_per_core * spec.eff_pointwise * util), rel_tol=1e-12)
    lanes = dataclasses.replace(spec, gemm_n_half=0.0)  # the blocked kernels of the embedded presets
    c = _isolated(g, node, lanes)
    assert math.isclose(c.compute_s, flops / (lanes.peak_flops_per_core * lanes.eff_pointwise * 20 / 32), rel_tol=1e-12)


def test_inplace_activations_are_traced_and_move_one_buffer():
    """ReLU(inplace=True) / F.relu(x, inplace=True) are marked meta["inplace"]; such an op reads and rewrites its
    input (no fresh output buffer): half the traffic of the out-of-place op and no cold output write."""
    import torch.nn.functional as F

    class Functional(torch.nn.Module):
        def forward(self, x):
            return F.relu(x, inplace=True) + 1.0

    shape = (1, 64, 56, 56)  # 0.8 MB per buffer: in + out beyond a 1 MB L2 share
    inplace = trace(torch.nn.Sequential(torch.nn.ReLU(inplace=True)), shape)
    outplace = trace(torch.nn.Sequential(torch.nn.ReLU()), shape)
    assert inplace.nodes[0].meta.get("inplace") is True and "inplace" not in outplace.nodes[0].meta
    assert trace(Functional(), shape).nodes[0].meta.get("inplace") is True
    spec = CPUSpec(l1d_bytes=32768, l2_bytes=2**20, l3_bytes=2**24, l2_bw_bytes_s=2e11, l3_bw_bytes_s=5e10,
                   dram_bw_bytes_s=1e10, layer_overhead_s=0.0)
    from hwsim.cpu.cost import Placement

    costs = [layer_cost(g, g.nodes[0], spec, Placement("dram", 0, 0), 1) for g in (inplace, outplace)]
    buf = 64 * 56 * 56 * 4
    assert math.isclose(costs[0].memory_s, buf / 2e11, rel_tol=1e-12)  # one buffer, held in L2
    assert math.isclose(costs[1].memory_s, buf / 1e10, rel_tol=1e-12)  # in + out from L3, fresh output from DRAM
    assert costs[0].main_memory_bytes == 0 and costs[1].main_memory_bytes == buf


def test_an_unfused_batch_norm_pays_its_own_overhead():
    """A batch norm left in the graph (pre-activation nets) pays overhead_batchnorm_s on top of the layer
    overhead; a ReLU does not."""
    spec = CPUSpec(layer_overhead_s=1e-6, overhead_batchnorm_s=6e-6)
    for module, expected in ((torch.nn.BatchNorm2d(8), 7e-6), (torch.nn.ReLU(), 1e-6)):
        g = trace(module.eval(), (1, 8, 6, 6))
        assert math.isclose(_isolated(g, g.nodes[0], spec).overhead_s, expected)


def test_upsampling_runs_its_own_kernel_per_source_tap():
    """Upsampling is the ``resample`` kind: one op per source tap (bilinear 4, nearest 1) at eff_resample, or at
    eff_elementwise when the spec sets 0; its memory time adds to its compute time."""
    from hwsim.cpu.cost import RESAMPLE_TAPS

    spec = CPUSpec(layer_overhead_s=0.0, eff_elementwise=0.5, eff_resample=0.02)
    compute = {}
    for mode in ("bilinear", "nearest"):
        g = trace(torch.nn.Upsample(size=(64, 64), mode=mode, align_corners=False if mode == "bilinear" else None),
                  (1, 4, 16, 16))
        node = g.nodes[0]
        assert kernel_kind(node, spec) == "resample"
        c = _isolated(g, node, spec)
        rate = spec.clock_hz * spec.lanes * spec.fma_per_cycle * 0.02
        assert math.isclose(c.compute_s, 4 * 64 * 64 * RESAMPLE_TAPS[mode] / rate, rel_tol=1e-12)
        assert math.isclose(c.latency_s, c.compute_s + c.memory_s, rel_tol=1e-12)
        fallback = dataclasses.replace(spec, eff_resample=0.0)
        assert math.isclose(_isolated(g, node, fallback).compute_s,
                            c.compute_s * 0.02 / 0.5, rel_tol=1e-12)
        compute[mode] = c.compute_s
        per_output = dataclasses.replace(spec, resample_output_ops=1.0)  # + index / weight work per output
        assert math.isclose(_isolated(g, node, per_output).compute_s,
                            c.compute_s * (RESAMPLE_TAPS[mode] + 1) / RESAMPLE_TAPS[mode], rel_tol=1e-12)
    assert math.isclose(compute["bilinear"], 4 * compute["nearest"], rel_tol=1e-12)


@pytest.mark.parametrize("k, stride, pad, dil, size", [(3, 1, 1, 1, 7), (3, 2, 1, 1, 9), (5, 1, 2, 1, 6),
                                                       (3, 1, 8, 8, 45), (7, 2, 3, 1, 20), (3, 3, 0, 2, 11)])
def test_direct_conv_kernels_skip_the_padding_taps(k, stride, pad, dil, size):
    """A conv run by a direct kernel (conv / grouped / depthwise) costs only the multiply-accumulates whose input
    tap lies inside the image: compute time scales by the valid-tap fraction, counted here by brute force; the
    reported MACs stay nominal and GEMM-run convs (im2col) keep multiplying the zeros."""
    from hwsim.cpu.cost import _valid_tap_fraction

    conv = torch.nn.Conv2d(16, 16, k, stride=stride, padding=pad, dilation=dil, bias=False)
    g = trace(conv, (1, 16, size, size))
    node = g.nodes[0]
    out = node.shape[2]
    valid = sum(1 for i in range(k) for o in range(out) if 0 <= o * stride - pad + i * dil < size)
    assert math.isclose(_valid_tap_fraction(g, node), (valid / (k * out)) ** 2, rel_tol=1e-12)
    spec = CPUSpec(layer_overhead_s=0.0)  # no im2col path: the direct kernel runs it
    c = _isolated(g, node, spec)
    assert c.kind == "conv" and c.flops == pytest.approx(2 * 16 * 16 * k * k * out * out * (valid / (k * out)) ** 2)
    gemm = CPUSpec(layer_overhead_s=0.0, gemm_conv_max_input_elements=10**9)
    if k <= 3:
        c = _isolated(g, node, gemm)
        assert c.kind == "im2col" and c.flops == 2 * 16 * 16 * k * k * out * out


def test_pooling_pays_its_per_output_loop():
    """A pool costs POOL_TAP_OPS per window tap (max 2: compare and update value and index; average 1) plus
    pool_output_ops per output at eff_pool; an adaptive average pool to more than 1x1 runs the pooling kernel, to
    1x1 it is a mean (an elementwise reduction)."""
    spec = CPUSpec(layer_overhead_s=0.0, eff_pool=0.01)
    for module, taps in ((torch.nn.MaxPool2d(3, 2, 1), 9 * 2), (torch.nn.AvgPool2d(2, 2), 4),
                         (torch.nn.AdaptiveAvgPool2d(5), 4)):
        g = trace(module.eval(), (1, 6, 10, 10))
        node = g.nodes[0]
        assert kernel_kind(node, spec) == "pool"
        outputs = math.prod(node.shape)
        rate = spec.clock_hz * spec.lanes * spec.fma_per_cycle * 0.01
        base = _isolated(g, node, spec).compute_s
        assert math.isclose(base, outputs * taps / rate, rel_tol=1e-12)
        per_output = dataclasses.replace(spec, pool_output_ops=2.5)
        assert math.isclose(_isolated(g, node, per_output).compute_s,
                            outputs * (taps + 2.5) / rate, rel_tol=1e-12)
    g = trace(torch.nn.AdaptiveAvgPool2d(1).eval(), (1, 6, 10, 10))
    assert kernel_kind(g.nodes[0], spec) == "elementwise"


def test_direct_convs_pay_the_runtimes_layout_copies():
    """With reorder_activations a direct conv (conv, grouped, depthwise) also copies its input into the blocked
    layout and its output back: 2 x bytes per tensor at the bandwidth of the level holding source and copy; a conv
    with fewer input channels than lanes copies its output only; GEMM-run convs copy nothing."""
    base = CPUSpec(layer_overhead_s=0.0, simd_bits=512, l2_bytes=2**20, l3_bytes=16 * 2**20, l2_bw_bytes_s=100e9,
                   l3_bw_bytes_s=50e9, dram_bw_bytes_s=20e9)
    spec = dataclasses.replace(base, reorder_activations=True)
    cases = [(torch.nn.Conv2d(32, 32, 3, padding=1), (1, 32, 40, 40), 100e9, True),  # 200 KB: L2
             (torch.nn.Conv2d(64, 64, 3, padding=1, groups=64), (1, 64, 64, 64), 50e9, True),  # 1 MiB: L3
             (torch.nn.Conv2d(3, 64, 3, padding=1), (1, 3, 256, 256), None, False)]  # plain input, 16.8 MB out
    for module, shape, bw, copies_input in cases:
        g = trace(module.eval(), shape)
        node = g.nodes[0]
        assert kernel_kind(node, spec) in ("conv", "depthwise")
        with_copies = _isolated(g, node, spec)
        without = _isolated(g, node, base)
        in_b, out_b = math.prod(shape) * 4, math.prod(node.shape) * 4
        expected = (2 * in_b / bw if copies_input else 0.0) + 2 * out_b / (bw or 20e9)
        assert math.isclose(with_copies.latency_s - without.latency_s, expected, rel_tol=1e-9)
        assert with_copies.main_memory_bytes - without.main_memory_bytes == (0 if bw else 2 * out_b)
    g = trace(torch.nn.Conv2d(32, 32, 1).eval(), (1, 32, 40, 40))  # pointwise: a GEMM on the NCHW tensor
    assert kernel_kind(g.nodes[0], spec) == "pointwise"
    assert (_isolated(g, g.nodes[0], spec).latency_s
            == _isolated(g, g.nodes[0], base).latency_s)
    with pytest.raises(hwsim.HwsimError, match="reorder_activations"):
        CPUSpec(reorder_activations=1)


def test_direct_convs_pay_the_runtimes_weight_copy():
    """With weight_reorder_bw_bytes_s a direct conv (conv, grouped, depthwise) copies its weights into the kernel's
    layout on every call: weight bytes / (rate · (1 + (n-1)·parallel_eff)) before its compute, in place of the read
    of weights beyond L2 when that is longer; GEMM-run convs and a spec without the rate pay nothing extra."""
    base = CPUSpec(layer_overhead_s=0.0, simd_bits=512, cores=2, parallel_eff=0.8, l2_bytes=2**20,
                   l3_bytes=16 * 2**20, l2_bw_bytes_s=100e9, l3_bw_bytes_s=50e9, dram_bw_bytes_s=20e9)
    spec = dataclasses.replace(base, weight_reorder_bw_bytes_s=10e9)
    for module, shape in [(torch.nn.Conv2d(256, 256, 3, padding=1, bias=False), (1, 256, 14, 14)),  # 2.4 MB: L3
                          (torch.nn.Conv2d(64, 64, 3, padding=1, groups=4, bias=False), (1, 64, 20, 20)),
                          (torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), (1, 64, 30, 30))]:
        g = trace(module.eval(), shape)
        node = g.nodes[0]
        w_b = module.weight.numel() * 4
        for cores in (1, 2):
            copied, plain = _isolated(g, node, spec, cores), _isolated(g, node, base, cores)
            t_copy = w_b / (10e9 * (1 + (cores - 1) * 0.8))
            t_read = w_b / 50e9 if plain.weight_home == "L3" else 0.0  # what the kernel already paid for its weights
            assert copied.latency_s > plain.latency_s
            if copied.bound == "compute" and plain.bound == "compute":
                assert math.isclose(copied.latency_s - plain.latency_s, t_copy - t_read, rel_tol=1e-9)
    g = trace(torch.nn.Conv2d(32, 32, 1).eval(), (1, 32, 40, 40))  # pointwise: a GEMM reads the weights in place
    assert kernel_kind(g.nodes[0], spec) == "pointwise"
    assert _isolated(g, g.nodes[0], spec).latency_s == _isolated(g, g.nodes[0], base).latency_s
    with pytest.raises(hwsim.HwsimError, match="weight_reorder_bw_bytes_s"):
        CPUSpec(weight_reorder_bw_bytes_s=-1.0)


def test_direct_conv_utilisation_ramps_with_output_pixels():
    """conv_m_half scales a direct dense or grouped conv's compute time by (M + conv_m_half) / M for M output
    pixels; GEMM-run and depthwise convs keep theirs."""
    spec = CPUSpec(layer_overhead_s=0.0)
    for module, shape, ramps in ((torch.nn.Conv2d(16, 32, 3, padding=1), (1, 16, 12, 10), True),
                                 (torch.nn.Conv2d(16, 32, 3, padding=1, groups=4), (1, 16, 12, 10), True),
                                 (torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), (1, 16, 12, 10), False),
                                 (torch.nn.Conv2d(16, 32, 1), (1, 16, 12, 10), False)):
        g = trace(module.eval(), shape)
        node = g.nodes[0]
        ramped = dataclasses.replace(spec, conv_m_half=120.0)  # M = 120: half utilisation
        t0 = _isolated(g, node, spec).compute_s
        t1 = _isolated(g, node, ramped).compute_s
        assert math.isclose(t1, 2 * t0 if ramps else t0, rel_tol=1e-12), kernel_kind(node, spec)
