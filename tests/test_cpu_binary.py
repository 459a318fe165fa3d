"""Binary layers on the CPU target (hwsim.cpu.binary): xnor-popcount outputs bit for bit equal to the fp32 reference
run (hwsim.functional.run, itself checked against torch), and the Arm NEON binary-GEMM cost."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import mapping
import nets
from hwsim.cpu import binary as B
from hwsim.cpu.runtime import runtime_params
from hwsim.cpu.simulate import simulate
from hwsim.functional import run
from hwsim.specs import load_preset
from nets.layers import BinaryConv2d, BinarySign

A72 = load_preset("cpu/cortex-a72")


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms with non-trivial statistics (torch defaults make them near-identities)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 3 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))
    return model.eval()


class _BiRealBlock(nn.Module):
    """Bi-Real Net's block: BN(binary 3x3 conv(sign(x))) + real-valued shortcut; zero padding, a biased conv."""

    def __init__(self, c: int, pad_value: float = 0.0, bias: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.sign = BinarySign()
        self.conv = BinaryConv2d(c, c, 3, padding=1, pad_value=pad_value, bias=bias)
        self.bn = nn.BatchNorm2d(c)
        self.sign2 = BinarySign()
        self.down = BinaryConv2d(c, 2 * c, 3, stride=2, padding=1, pad_value=pad_value)
        self.short = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c))

    def forward(self, x):
        x = self.stem(x)
        x = self.bn(self.conv(self.sign(x))) + x
        return self.down(self.sign2(x)) + self.short(x)


def _count_binary_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    conv, lin = B.BK.binary_conv2d, B.BK.binary_linear
    monkeypatch.setattr(B.BK, "binary_conv2d", lambda *a, **k: calls.append("conv") or conv(*a, **k))
    monkeypatch.setattr(B.BK, "binary_linear", lambda *a, **k: calls.append("linear") or lin(*a, **k))
    return calls


def _check_bit_exact(model: nn.Module, shape, monkeypatch, n_binary: int, batch: int = 3):
    g = mapping.trace(model, shape)
    assert len(B.binary_layers(g)) == n_binary
    x = np.random.default_rng(1).normal(size=(batch,) + tuple(shape[1:])).astype(np.float32)
    calls = _count_binary_calls(monkeypatch)
    res = simulate(g, A72, x)
    assert len(calls) == n_binary  # every binary layer ran on the xnor-popcount kernels
    ref = run(g, x)[0]
    assert res.outputs.dtype == np.float32 and np.array_equal(res.outputs, ref)  # bit for bit
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(res.outputs, want, rtol=1e-4, atol=1e-3)  # the reference is the network
    return g, res


def test_tfc_w1a1_bit_exact(monkeypatch):
    _check_bit_exact(_random_bn(nets.get("tfc-w1a1")), (1, 1, 28, 28), monkeypatch, n_binary=4)


def test_cnv_w1a1_bit_exact_first_layer_stays_fp32(monkeypatch):
    g, res = _check_bit_exact(_random_bn(nets.get("cnv-w1a1")), (1, 3, 32, 32), monkeypatch, n_binary=8)
    first = next(n for n in g.nodes if n.op.value == "conv2d")
    assert not B.is_binary_layer(g, first)  # ±1 weights on 8-bit image codes: not binary, fp32
    kinds = {lr.name: lr.extra["kernel"] for lr in res.report.layers}
    assert kinds[first.name] != "binary-gemm"


@pytest.mark.parametrize("pad_value,bias", [(0.0, False), (1.0, True), (-1.0, False)])
def test_bireal_block_real_shortcut_bit_exact(monkeypatch, pad_value, bias):
    model = _random_bn(_BiRealBlock(8, pad_value, bias))
    if bias:
        with torch.no_grad():
            model.conv.bias.copy_(torch.randn(8) * 2.5)
    _check_bit_exact(model, (1, 3, 10, 10), monkeypatch, n_binary=2)


def test_fold_bn_false_and_int8_untouched():
    g = mapping.trace(_random_bn(nets.get("tfc-w1a1")), (1, 1, 28, 28))
    x = np.random.default_rng(2).normal(size=(2, 1, 28, 28)).astype(np.float32)
    assert np.array_equal(simulate(g, A72, x, fold_bn=False).outputs, run(g, x)[0])
    rep = simulate(g, dataclasses.replace(A72, precision="int8")).report  # int8 costs its own kernels
    assert all(lr.extra["kernel"] not in ("binary-gemm", "bitpack") for lr in rep.layers)


def test_cost_report_uses_binary_gemm_model():
    g = mapping.trace(nets.get("birealnet18"), (1, 3, 224, 224))
    rep = simulate(g, A72).report
    kinds = [lr.extra["kernel"] for lr in rep.layers]
    assert kinds.count("binary-gemm") == 16 and kinds.count("bitpack") == 16
    assert any("binary layers" in s for s in rep.notes)
    # the report's weights are its layers' weights: 1 bit in the binary layers (were counted at fp32: 11x larger)
    assert rep.onchip_weight_bytes == pytest.approx(sum(lr.weight_bytes for lr in rep.layers), rel=0.02)
    assert "1 bit in binary layers" in rep.notes[0]


def test_relu_and_bn_after_a_binary_conv_are_fused():
    """QuickNet's residual: BN(ReLU(binary conv(sign(x)))) -> LCE's output transform (clamp, multiply-add)."""
    model = nn.Sequential(nn.Conv2d(3, 64, 1), nets.larq._QuickResidual(64))
    g = mapping.trace(model, (1, 3, 8, 8))
    kinds = {n.op.value: lr.extra["kernel"] for n, lr in zip(g.nodes, simulate(g, A72).report.layers)}
    assert kinds["relu"] == "fused" and kinds["batchnorm"] == "fused" and kinds["conv2d"] != "fused"
    assert kinds["add"] not in ("fused", "binary-gemm")


def test_binary_gemm_instruction_count():
    """One 3x3 conv, 256 -> 256 channels on 14x14 (LCE's BGEMM path): the formula of binary_layer_time written out."""
    model = nn.Sequential(BinarySign(), BinaryConv2d(256, 256, 3, padding=1, pad_value=1.0))
    g = mapping.trace(model, (1, 256, 14, 14))
    conv = g.nodes[-1]
    t = B.binary_layer_time(g, conv, A72, 1)
    m, n, k = 14 * 14, 256, 9 * 256 // 32  # pixels, channels, packed words per im2col row
    blocks, steps = (n // 8) * (m // 4), k // 4
    ops = blocks * (steps * 96 + 48)  # 96 per 8x4x128-bit step (32 eor, 32 cnt, 28 addp, 4 uadalp), 48 per output
    # A72 slots: cnt, scvtf, fmul, fadd take both pipes (GCC cortex-a57.md): 128 per step, 72 per output block
    slots = blocks * (steps * 128 + 72)
    copied = 4 * m * k + 4 * m * 4 * steps  # im2col + ruy's packing, 16 bytes per cycle
    assert t.kind == "binary-gemm" and t.vector_ops == ops and t.binary_macs == m * n * 9 * 256
    assert t.compute_s == pytest.approx((slots / 2.0 + copied / 16) / A72.clock_hz)
    # threads and fixed cost: the spec's runtime's (ncnn on the preset), as for the float layers of the same graph
    rp = runtime_params(A72)
    t4 = B.binary_layer_time(g, conv, A72, 4)
    assert t4.compute_s == pytest.approx(t.compute_s * (1 + 3 * rp.contention) / 4)
    assert t.overhead_s == pytest.approx(rp.layer_cycles / A72.clock_hz)
    eager = dataclasses.replace(A72, runtime="pytorch")  # the spec's own pytorch fields
    assert B.binary_layer_time(g, conv, eager, 4).compute_s == pytest.approx(t.compute_s / (1 + 3 * A72.parallel_eff))
    assert B.binary_layer_time(g, g.nodes[0], A72, 1).kind == "bitpack"
    a76 = load_preset("cpu/cortex-a76")  # no double-slot instruction known there: same work, one slot each
    assert B.issue_cycles(B.binary_gemm_work(g, conv)[0], a76.core) == pytest.approx(ops / 2.0)


def test_binary_gemm_depth_padding_copies_and_groups():
    """Depth padded to 4 words, no im2col for a 1x1 stride-1 conv, grouped convs on the indirect kernels."""
    g = mapping.trace(nn.Sequential(BinarySign(), BinaryConv2d(32, 16, 1)), (1, 32, 6, 6))
    ops, copied = B.binary_gemm_work(g, g.nodes[-1])  # K = 1 word -> one step; 2 x 9 blocks
    assert ops["eor"] == 2 * 9 * 32 and ops["fmul"] == 2 * 9 * 8
    assert copied == 4 * 36 * 4  # packing only: 36 pixels x 4 words (3 of them padding)
    g = mapping.trace(nn.Sequential(BinarySign(), BinaryConv2d(128, 64, 3, padding=1, groups=2,
                                                               pad_value=1.0)), (1, 128, 8, 8))
    ops, copied = B.binary_gemm_work(g, g.nodes[-1])  # per group: 64 channels = 2 words -> 64-bit chunks
    blocks = (32 // 8) * (64 // 4)
    assert copied == 0 and ops["eor"] == 2 * blocks * 9 * 16 and "uadalp" not in ops


def test_cost_model_needs_an_arm_a_core():
    g = mapping.trace(nn.Sequential(BinarySign(), BinaryConv2d(32, 32, 3)), (1, 32, 8, 8))
    host = load_preset("cpu/host")
    assert B.binary_layer_time(g, g.nodes[-1], host, 1) is None  # no NEON record: the fp32 model costs it
    assert B.binary_layer_time(g, g.nodes[-1], load_preset("cpu/cortex-m7"), 1) is None


def test_not_binary_without_sign():
    model = nn.Sequential(nn.ReLU(), BinaryConv2d(4, 4, 3))
    g = mapping.trace(model, (1, 4, 6, 6))
    assert B.binary_layers(g) == ()


def test_dabnn_runtime_is_costed_by_its_own_model():
    """runtime='dabnn': binary_layer_cost hands every layer to hwsim.cpu.runtime.dabnn; LCE's model refuses it."""
    g = mapping.trace(nn.Sequential(BinarySign(), BinaryConv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64)).eval(),
                      (1, 64, 8, 8))
    dabnn = dataclasses.replace(A72, runtime="dabnn", cores=1)
    rep = simulate(g, dabnn).report
    assert [lr.extra["kernel"] for lr in rep.layers] == ["bitpack", "binary-gemm"]  # batch norm folded: an Affine
    assert rep.layers[1].extra["overhead_s"] == pytest.approx(2 * rep.layers[0].extra["overhead_s"])
    with pytest.raises(B.HwsimError, match="dabnn"):
        B.binary_layer_time(g, g.nodes[1], dabnn, 1)
