"""Runtime-aware Arm models: spec fields, core records, runtime algorithm rules, the cost formula and the presets."""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import hwsim
import nets
from hwsim.cpu import CPUSpec, cost_report
from hwsim.cpu.arm import A_PROFILE, CORES, M_PROFILE, core
from hwsim.cpu.cost import layer_cost, placement, runtime_layer_terms
from hwsim.cpu.runtime import fused_activations, runtime_params
from hwsim.cpu.runtime.algorithms import winograd_tile, work
from hwsim.cpu.runtime.fitted import FITTED
from hwsim.errors import SpecError, UnknownNameError
from mapping.passes.fold_bn import fold_bn
from mapping.trace import trace

ARM_PRESETS = ["cpu/cortex-a53", "cpu/cortex-a55", "cpu/cortex-a72", "cpu/cortex-a76", "cpu/cortex-m4",
               "cpu/cortex-m7", "cpu/cortex-m33", "cpu/cortex-m55"]


# ----------------------------------------------------------------------------- spec fields
def test_defaults_describe_the_host_model():
    s = CPUSpec()
    assert (s.runtime, s.precision, s.core, s.board_cores) == ("pytorch", "fp32", "", 0)
    assert s.bytes_per_element == 4
    assert CPUSpec(runtime="ncnn", precision="int8", core="cortex-a72").bytes_per_element == 1


@pytest.mark.parametrize("kw,field", [
    (dict(runtime="tflite"), "runtime"),
    (dict(precision="fp16"), "precision"),
    (dict(core="a72"), "core"),
    (dict(runtime="ncnn", core="cortex-m4", precision="int8"), "runtime"),  # ncnn on a microcontroller
    (dict(runtime="cmsis-nn", core="cortex-a72", precision="int8"), "runtime"),  # CMSIS-NN on a Cortex-A
    (dict(runtime="x-cube-ai", precision="int8"), "runtime"),  # a Cortex-M runtime on the host
    (dict(runtime="ncnn", core="cortex-a72", cores=8, board_cores=4), "cores"),  # threads above the cores
    (dict(runtime="cmsis-nn", core="cortex-m7", precision="int8", cores=2), "cores"),  # single-core MCU
    (dict(precision="int8"), "precision"),  # PyTorch's model is fp32
    (dict(runtime="cmsis-nn", core="cortex-m4"), "precision"),  # CMSIS-NN has no fp32 kernels
    (dict(runtime="ncnn"), "core"),  # a runtime model needs the core's rates
])
def test_bad_combinations_are_refused_naming_the_field(kw, field):
    with pytest.raises(SpecError, match=rf"CPUSpec\.{field}") as e:
        CPUSpec(**kw)
    assert "\n" not in str(e.value)


def test_cli_refuses_a_runtime_the_core_cannot_host(tmp_path, capsys):
    from hwsim.cli import main

    p = tmp_path / "m4-ncnn.yaml"
    p.write_text("base: cpu/cortex-m4\nruntime: ncnn\n")
    assert main(["run", "--net", "tiny-resnet8", "--hw", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert "runtime" in err and "cortex-m4" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- core records
def test_core_records_follow_their_isa():
    assert set(A_PROFILE) | set(M_PROFILE) == set(CORES) and len(CORES) == 13
    for name in ("cortex-a55", "cortex-a76", "cortex-a78"):  # sdot: 16 int8 MACs per Q-form = 4x an FMLA's 4 lanes
        c = core(name)
        assert "sdot" in c.int8_instr and c.int8_mac_per_cycle == 4 * c.fp32_fma_per_cycle and c.fp16_fma_per_cycle > 0
    for name in ("cortex-a53", "cortex-a57", "cortex-a72", "cortex-a73"):  # Armv8.0: smlal, no fp16 arithmetic
        assert "smlal" in core(name).int8_instr and core(name).fp16_fma_per_cycle == 0
    for name in ("cortex-m4", "cortex-m7", "cortex-m33"):  # SMLAD: two 16-bit MACs
        assert "smlad" in core(name).int8_instr and core(name).int8_mac_per_cycle == 2
    for name in ("cortex-m55", "cortex-m85"):  # Helium dual-beat
        assert core(name).simd_bits == 128 and core(name).int8_mac_per_cycle == 8
    assert "smlad" not in core("cortex-m0plus").int8_instr and core("cortex-m0plus").int8_mac_per_cycle < 1
    assert all(c.source for c in CORES.values())
    with pytest.raises(UnknownNameError, match="cortex-a75"):
        core("cortex-a75")


# ----------------------------------------------------------------------------- runtime algorithm rules
def test_ncnn_winograd_tile_follows_convolution_arm():
    assert winograd_tile(64, 64, 58) == 4  # >= 64 channels: F(4,3), the default
    assert winograd_tile(3, 64, 226) == 4
    assert winograd_tile(16, 16, 30) == 6  # test_prefer_winograd63: (16, 16) sides 27-38
    assert winograd_tile(16, 16, 200) == 2  # not an F(6,3) side; test_prefer_winograd23: side >= 16
    assert winograd_tile(32, 32, 20) == 6 and winograd_tile(32, 32, 37) == 6  # F(6,3) wins where both match


def test_winograd_work_counts_transformed_multiplies():
    g = trace(torch.nn.Conv2d(64, 64, 3, padding=1), (1, 64, 56, 56))
    w = work(g, g.nodes[0], "ncnn", "fp32", fused=False)
    assert w.algo == "winograd43"
    assert w.macs == (56 // 4) ** 2 * 36 * 64 * 64  # tiles x (m+2)^2 x Cin x Cout
    assert w.macs == pytest.approx(64 * 64 * 9 * 56 * 56 / 4)  # 4x fewer multiplies than direct
    assert w.vec_ops > 0 and w.dw_macs == 0
    assert work(g, g.nodes[0], "xnnpack", "fp32", fused=False).algo == "im2col-gemm"  # XNNPACK: no Winograd
    strided = trace(torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), (1, 64, 56, 56))
    assert work(strided, strided.nodes[0], "ncnn", "fp32", False).algo == "im2col-gemm"
    dw = trace(torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), (1, 32, 16, 16))
    assert work(dw, dw.nodes[0], "cmsis-nn", "int8", False).algo == "depthwise"


def test_activations_fuse_into_their_conv_on_ncnn_and_into_adds_on_tflite_runtimes():
    g = fold_bn(trace(nets.get("resnet20"), (1, 3, 32, 32)))  # as the runtime runs it: BN folded into the convs
    fused = fused_activations(g, "ncnn")
    by_name = {n.name: n for n in g.nodes}
    assert fused and all(g[by_name[f].inputs[0]].op.name in ("CONV2D", "LINEAR") for f in fused)
    after_add = [n for n in g.nodes if n.op.name == "RELU" and g[n.inputs[0]].op.name == "ADD"]
    assert after_add and not any(n.name in fused for n in after_add)
    from hwsim.cpu.int8 import fused_activations as int8_fused

    for runtime in ("cmsis-nn", "xnnpack", "x-cube-ai"):  # the int8 program TFLite runs fuses them into the add
        tfl = fused_activations(g, runtime)
        assert tfl == fused | {n.name for n in after_add}
        assert tfl == {a.name for a in int8_fused(g).values()}


# ----------------------------------------------------------------------------- cost formula
def test_runtime_cost_of_a_1x1_conv_follows_the_formula():
    """A compute-bound 1x1 int8 conv on an A76 with ncnn: t = (MACs / (clock · int8 MACs/cycle · eff_gemm) + input
    quantization ops / (clock · fp32 lanes · eff_dw)) · (1 + (n - 1) · contention) / n (256 output channels split
    evenly into ncnn's TILE_M blocks) + layer_cycles / clock + (n - 1) · thread_s."""
    g = trace(torch.nn.Conv2d(256, 256, 1, bias=False), (1, 256, 14, 14))
    spec = CPUSpec(clock_hz=2e9, cores=2, runtime="ncnn", precision="int8", core="cortex-a76", dram_bw_bytes_s=1e13,
                   l1d_bytes=65536, l2_bytes=2**20)
    node = g.nodes[0]
    c = layer_cost(g, node, spec, placement(g, spec, 0, 2), 2)
    p = runtime_params(spec)
    macs = 256 * 256 * 14 * 14
    t_c = (macs / (2e9 * 32 * p.eff_gemm) + 256 * 14 * 14 / (2e9 * 4 * p.eff_dw)) * (1 + p.contention) / 2
    assert c.kind == "gemm" and math.isclose(c.compute_s, t_c, rel_tol=1e-12)
    assert math.isclose(c.overhead_s, p.layer_cycles / 2e9 + p.thread_s, rel_tol=1e-12)
    assert math.isclose(c.latency_s, max(c.compute_s, c.memory_s) + c.overhead_s, rel_tol=1e-12)
    assert c.weight_bytes == 256 * 256  # one byte per int8 weight


def test_ncnn_fp32_runs_fp16_on_armv82_cores():
    g = trace(torch.nn.Conv2d(64, 64, 1, bias=False), (1, 64, 28, 28))
    a = dict(clock_hz=2e9, runtime="ncnn", core="cortex-a76", dram_bw_bytes_s=1e13)
    place = placement(g, CPUSpec(**a), 0, 1)
    size = (64 * 28 * 28 * 4, 64 * 28 * 28 * 4, 64 * 64 * 4)
    ncnn = runtime_layer_terms(g, g.nodes[0], CPUSpec(**a), place, 1, size)[0]
    xnn = runtime_layer_terms(g, g.nodes[0], CPUSpec(**{**a, "runtime": "xnnpack"}), place, 1, size)[0]
    assert math.isclose(xnn.gemm_s, 2 * ncnn.gemm_s, rel_tol=1e-12)  # benchncnn: use_fp16_arithmetic


def test_pytorch_runtime_is_the_unchanged_host_model():
    g = trace(nets.get("resnet20"), (1, 3, 32, 32))
    host = hwsim.load_preset("cpu/host")
    assert host.runtime == "pytorch"
    assert cost_report(g, host).latency_s == cost_report(g, dataclasses.replace(host, runtime="pytorch")).latency_s


def test_threads_and_precision_move_latency_the_right_way():
    g = trace(nets.get("mobilenetv2"), (1, 3, 224, 224))
    pi4 = hwsim.load_preset("cpu/cortex-a72")
    one = cost_report(g, dataclasses.replace(pi4, cores=1)).latency_s
    four = cost_report(g, pi4).latency_s
    assert four < one < 10 * four
    pi4_int8 = dataclasses.replace(pi4, runtime="ncnn", precision="int8", cores=4)  # the example: a Pi 4
    rep = cost_report(g, pi4_int8)
    assert 0 < rep.latency_s < 1.0 and rep.onchip_weight_bytes < cost_report(g, pi4).onchip_weight_bytes


# ----------------------------------------------------------------------------- presets and fitted parameters
@pytest.mark.parametrize("name", ARM_PRESETS)
def test_presets_name_core_runtime_and_have_fitted_parameters(name):
    s = hwsim.load_preset(name)
    profile = core(s.core).profile
    assert (s.runtime, s.precision) == (("ncnn", "fp32") if profile == "A" else ("cmsis-nn", "int8"))
    assert s.board_cores >= s.cores
    p = runtime_params(s)
    assert 0 < p.eff_gemm <= 1 and 0 < p.eff_dw <= 1 and p.layer_cycles >= 0 and p.fitted_on
    assert (s.core, s.runtime, s.precision) in FITTED


def test_never_fitted_cores_are_marked_transferred():
    for key in (("cortex-m7", "cmsis-nn", "int8"), ("cortex-m55", "cmsis-nn", "int8")):
        assert FITTED[key]["fitted_on"].startswith("transferred from")
    assert "Raspberry" not in " ".join(v["fitted_on"] for v in FITTED.values())  # the Pi boards are never fitted


def test_cortex_m4_reports_int8_latency_energy_flash_and_arena():
    rep = hwsim.simulate("tiny-resnet8", "cpu/cortex-m4").report
    assert 0.05 < rep.latency_s < 2.0 and rep.energy_j > 0 and rep.fits_on_chip
    assert rep.flash_bytes > 0 and rep.arena_bytes > 0


def test_benchmark_fit_formula_equals_the_cost_model():
    """benchmarks/bench_arm_boards.py fits the parameters on a vectorised copy of the formula: it must agree."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_arm_boards as bench

    spec = hwsim.load_preset("cpu/cortex-a72")
    g = trace(nets.get("resnet20"), (1, 3, 32, 32))
    bench._GRAPHS["resnet20-test"] = fold_bn(g)
    v = FITTED[(spec.core, "ncnn", "fp32")]
    theta = [v["eff_gemm"], v["eff_dw"], v["layer_cycles"], v["contention"], v["thread_s"], v["eff_wino"]]
    got = bench.predict(bench.terms(spec, "resnet20-test"), theta, spec.cores)
    assert math.isclose(got, cost_report(g, spec).latency_s, rel_tol=1e-9)


def test_even_split_scales_as_n_over_contention():
    """compute_s on n threads of an evenly split layer = compute_s on one · (1 + (n - 1) · contention) / n."""
    from hwsim.cpu.runtime import RuntimeParams, Terms, compute_s

    t = Terms("gemm", 1.0, 0.5, 0.25, 0.0)
    for kappa in (0.0, 0.2, 1.0):
        p = RuntimeParams(eff_gemm=0.5, eff_dw=0.25, layer_cycles=0.0, contention=kappa, fitted_on="test")
        one = compute_s(t, p, 1)
        assert math.isclose(one, 1.0 / 0.5 + 0.75 / 0.25, rel_tol=1e-12)
        assert math.isclose(compute_s(t, p, 4), one * (1 + 3 * kappa) / 4, rel_tol=1e-12)


def test_ncnn_tiles_limit_the_threads_a_small_layer_uses():
    """ncnn's aarch64 tile solvers (convolution_im2col_gemm.h, convolution_3x3_winograd.h): 16 output channels on
    4 threads are 2 blocks of 8 (half the work on the busiest thread); 40 are 16 + 16 + 8; 256 split evenly; a
    Winograd GEMM cuts 8-row blocks; OpenMP's static schedule gives thread t blocks [t·c, (t+1)·c)."""
    from hwsim.cpu.runtime.threads import busiest_share, ncnn_tile_m

    assert ncnn_tile_m(16, 4, "gemm") == 8 and busiest_share(16, 8, 4) == 0.5
    assert ncnn_tile_m(40, 4, "gemm") == 16 and busiest_share(40, 16, 4) == pytest.approx(0.4)
    assert busiest_share(256, ncnn_tile_m(256, 4, "gemm"), 4) == pytest.approx(0.25)
    assert ncnn_tile_m(64, 4, "winograd") == 8 and busiest_share(64, 8, 4) == pytest.approx(0.25)
    assert busiest_share(5, 1, 4) == pytest.approx(0.4)  # blocks [0,1], [2,3], [4]: the busiest holds 2 of 5
    assert ncnn_tile_m(96, 1, "gemm") == 32 and busiest_share(96, 32, 1) == 1.0


def test_layer_split_follows_ncnn_loops():
    """A channel concatenation runs on one thread (concat_arm.cpp has no omp loop on the channel axis); a grouped
    conv's GEMM splits over the rows of one group; other runtimes split evenly."""
    from hwsim.cpu.runtime.threads import layer_split


    class Two(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=1)

    g = trace(Two(), (1, 16, 8, 8))
    node = next(n for n in g.nodes if n.op.name == "CONCAT")
    assert layer_split(node, "copy", "ncnn", wide=False, fp16=False).shares(4) == (1.0, 1.0)
    assert layer_split(node, "copy", "xnnpack", wide=False, fp16=False).shares(4) == (0.25, 0.25)
    gc = trace(torch.nn.Conv2d(64, 64, 3, padding=1, groups=8), (1, 64, 8, 8))
    s_gemm, _ = layer_split(gc.nodes[0], "im2col-gemm", "ncnn", wide=False, fp16=False).shares(4)
    assert s_gemm == 1.0  # 8 rows per group: one block, one thread


def test_benchmark_comparability_rules_come_from_the_data():
    """Rule 1 dates each README section (a section the table does not date is a one-line error); rule 2 drops
    unsteady runs; neither looks at a prediction."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_arm_boards as bench

    assert bench.data_date("### OrangePi5 Plus, Rockchip RK3588 (Quad Core A76 2.4GHz)") == "2024-07-01"
    assert bench.data_date("### OrangePi5, Rockchip RK3588s (Quad Core A76 2.4GHz)") == "2023-05-04"
    with pytest.raises(SystemExit, match="no single DATA_DATE"):
        bench.data_date("### Some board nobody dated")
    rows, excluded = bench.ncnn_rows({"resnet18"})
    assert rows and all(r.net == "resnet18" for r in rows)
    assert {r.era for r in rows} == {"current", "older ncnn"}
    assert all((r.era == "current") == (r.data_date >= bench.KERNELS_SINCE[r.precision]) for r in rows)
    assert all(e["reason"].startswith("unsteady") for e in excluded)


def test_a_16_channel_conv_gains_only_2x_on_4_ncnn_threads():
    """Through the cost model: a 3x3 conv with 16 output channels (2 Winograd blocks of 8) computes on 4 threads in
    half its one-thread time (times the contention factor), not a quarter; on XNNPACK's fine tiles, a quarter."""
    from hwsim.cpu.runtime import compute_s, runtime_params, runtime_terms

    g = trace(torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), (1, 16, 56, 56))
    for runtime, share in (("ncnn", 0.5), ("xnnpack", 0.25)):
        spec = dataclasses.replace(hwsim.load_preset("cpu/cortex-a72"), runtime=runtime)
        t, p = runtime_terms(g, g.nodes[0], spec, False), runtime_params(spec)
        assert t.algo.startswith("winograd") == (runtime == "ncnn")
        assert t.split.shares(4)[0] == share
        assert math.isclose(compute_s(t._replace(dw_s=0.0, vec_s=0.0), p, 4),
                            compute_s(t._replace(dw_s=0.0, vec_s=0.0), p, 1) * share * (1 + 3 * p.contention),
                            rel_tol=1e-12)


def test_ncnn_fp16_timing_is_said_in_the_notes():
    """ncnn times "fp32" models in fp16 on the Armv8.2 cores (A55/A76/A78) while hwsim computes the outputs in
    fp32: the report says both; an Armv8.0 core (A72) runs fp32 and says nothing of fp16."""
    import hwsim

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    fp16 = [n for n in hwsim.simulate(m, "cpu/cortex-a76", input_shape=(1, 3, 8, 8)).report.notes if "fp16" in n]
    assert len(fp16) == 1 and "outputs are computed in fp32" in fp16[0]
    assert not [n for n in hwsim.simulate(m, "cpu/cortex-a72", input_shape=(1, 3, 8, 8)).report.notes if "fp16" in n]
