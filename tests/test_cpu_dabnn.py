"""daBNN as a CPU runtime (hwsim.cpu.runtime.dabnn): which kernel daBNN picks for a binary conv, what it refuses,
its cost rules (per-layer fixed cost, unfused Affine, direct conv cheaper than its BGEMM), the fitted memcpy-call
cycles against daBNN's published single-layer benchmark, and outputs unchanged (bit for bit the fp32 reference)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import mapping
from hwsim.cpu.cost_ops import KernelKind
from hwsim.cpu.runtime import dabnn as D
from hwsim.cpu.runtime import runtime_params
from hwsim.cpu.simulate import cost_report, simulate
from hwsim.errors import SpecError
from hwsim.functional import run
from hwsim.specs import load_preset
from mapping.graph import Op
from nets.layers import BinaryConv2d, BinarySign

A72 = load_preset("cpu/cortex-a72")
DABNN = dataclasses.replace(A72, runtime="dabnn", cores=1, clock_hz=2.15e9)


def _conv(cin: int, cout: int, k: int = 3, stride=1, hw: int = 8, groups: int = 1, bn: bool = True):
    """A graph sign -> binary conv (-> batch norm) and its conv node."""
    mods = [BinarySign(), BinaryConv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups)]
    mods += [nn.BatchNorm2d(cout)] if bn else []
    g = mapping.trace(nn.Sequential(*mods).eval(), (1, cin, hw, hw))
    return g, next(n for n in g.nodes if n.op == Op.CONV2D)


@pytest.mark.parametrize("cin, cout, stride, hw, method", [
    (64, 64, 1, 8, "direct-64"), (64, 128, 2, 8, "direct-64"), (128, 128, 1, 8, "direct-128"),
    (128, 128, 2, 8, "direct-128"), (128, 256, 2, 8, "direct-packed"), (256, 256, 1, 8, "direct-packed"),
    (512, 512, 1, 7, "direct-packed"), (1024, 128, 1, 4, "direct-packed")])
def test_direct_3x3_where_dabnn_chooses_it(cin, cout, stride, hw, method):
    g, node = _conv(cin, cout, stride=stride, hw=hw)
    assert D.bconv_method(g, node) == method


@pytest.mark.parametrize("cin, k, stride", [(384, 3, 1), (128, 1, 1), (256, 5, 1), (128, 3, (1, 2))])
def test_bgemm_fallback_for_other_shapes(cin, k, stride):
    """Not a 3x3 conv with equal strides on 64..1024 channels: im2col + BGEMM (an even count of 64-bit words)."""
    g, node = _conv(cin, 128, k=k, stride=stride)
    assert D.bconv_method(g, node) == "bgemm"


@pytest.mark.parametrize("cin, cout, k, groups, hw, culprit", [
    (96, 128, 3, 1, 8, "96 input channels"), (192, 128, 3, 1, 8, "baseline_bconv"), (64, 64, 1, 1, 8, "baseline"),
    (128, 128, 3, 2, 8, "groups=2"), (256, 192, 3, 1, 8, "192 output channels"), (64, 64, 3, 1, 7, "even output")])
def test_refuses_binary_convs_dabnn_cannot_run(cin, cout, k, groups, hw, culprit):
    g, node = _conv(cin, cout, k=k, hw=hw, groups=groups)
    with pytest.raises(SpecError, match=culprit) as e:
        D.bconv_method(g, node)
    assert "\n" not in str(e.value) and node.name in str(e.value)


@pytest.mark.parametrize("change, culprit", [
    (dict(core="cortex-m7", runtime="dabnn"), "aarch64 Cortex-A"), (dict(runtime="dabnn", cores=1, precision="int8"),
                                                                   "int8"),
    (dict(runtime="dabnn", cores=4), "single-threaded"), (dict(runtime="dabnn", core=""), "core")])
def test_spec_refuses_what_dabnn_cannot_run(change, culprit):
    with pytest.raises(SpecError, match=culprit) as e:
        dataclasses.replace(A72, **change)
    assert "\n" not in str(e.value)


def test_refuses_binary_conv_without_batch_norm():
    g, _ = _conv(128, 128, bn=False)  # BinConv outputs popcounts; only the following BatchNorm makes dot products
    with pytest.raises(SpecError, match="BatchNorm"):
        cost_report(g, DABNN)


@pytest.mark.parametrize("mods, culprit", [
    (lambda: (nn.Conv2d(8, 8, 3, groups=8),), "groups=8"),
    (lambda: (nn.Conv2d(8, 8, 3), nn.Sigmoid()), "no such layer"),
    (lambda: (nn.Conv2d(8, 8, 3, dilation=2),), "dilation"),
    (lambda: (BinarySign(), nn.Conv2d(8, 8, 1)), "sign read by anything but")])
def test_refuses_layers_dabnn_has_not_before_costing(mods, culprit):
    g = mapping.trace(nn.Sequential(*mods()).eval(), (1, 8, 8, 8))
    with pytest.raises(SpecError, match=culprit) as e:
        cost_report(g, DABNN)
    assert "\n" not in str(e.value)


class _Block(nn.Module):
    """A Bi-Real block as daBNN runs it: stem, Binarize + BinConv + Affine + Add, and a float shortcut."""

    def __init__(self, c: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.sign = BinarySign()
        self.conv = BinaryConv2d(c, c, 3, padding=1, pad_value=-1.0)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        return self.bn(self.conv(self.sign(x))) + x


def test_block_costs_dabnn_layers_with_borrowed_fixed_cost():
    g = mapping.trace(_Block().eval(), (1, 3, 16, 16))
    rep = cost_report(g, DABNN)
    kinds = {lr.name: lr.extra["kernel"] for lr in rep.layers}
    assert list(kinds.values()) == ["fconv-im2col-eigen", "affine", KernelKind.BITPACK, KernelKind.BINARY_GEMM, "add"]
    fixed = runtime_params(dataclasses.replace(DABNN, runtime="ncnn")).layer_cycles / DABNN.clock_hz
    # FloatConv, Affine (bn0 stays apart: a sign reads it), Binarize, BinConv + its folded Affine, Add
    assert [lr.extra["overhead_s"] / fixed for lr in rep.layers] == pytest.approx([1, 1, 1, 2, 1])
    assert all(lr.extra["cores_used"] == 1 for lr in rep.layers)
    unfolded = cost_report(g, DABNN, fold_bn=False)
    assert sum(lr.extra["overhead_s"] for lr in unfolded.layers) == pytest.approx(6 * fixed)


def test_direct_conv_is_cheaper_than_dabnn_bgemm_on_the_same_layer():
    """daBNN's reason for binary direct convolution (docs/bconv.md): no addv per word, registers reused."""
    g, node = _conv(128, 128, hw=28)
    ops_d, calls_d, bytes_d = D._direct_work(node, "direct-128")
    ops_g, calls_g, bytes_g = D._bgemm_work(node)
    from hwsim.cpu.binary import issue_cycles

    assert issue_cycles(ops_d, "cortex-a72") < issue_cycles(ops_g, "cortex-a72")
    assert D.bconv_kernel_cycles(g, node, DABNN) < issue_cycles(ops_g, "cortex-a72") + calls_g * D.COPY_CALL_CYCLES


def test_bgemm_edge_rows_run_scalar():
    g, node = _conv(128, 12, k=1, hw=7)  # 12 output channels: one 8-row block, 4 rows scalar; 49 pixels: 1 column
    ops, _, _ = D._bgemm_work(node)
    assert ops["scalar"] == (12 * 49 - 8 * 48) * 2 * D.BGEMM_SCALAR_OPS_PER_WORD
    assert ops["eor"] == 48 * 8 * 1  # 48 eor per 8x6 block and 128-bit step: 8 blocks (48 columns), 1 step


def test_copy_call_cycles_is_the_fit_on_dabnn_3x3_64():
    """1.306391 ms published (dabnn docs/benchmark_and_comparison.md @ d93aa95) at 2.15 GHz, 56x56 x 9 calls."""
    g, node = _conv(64, 64, hw=56)
    calls = 56 * 56 * 9
    rest = D.bconv_kernel_cycles(g, node, DABNN, pad=False) - calls * D.COPY_CALL_CYCLES
    assert (1.306391e-3 * 2.15e9 - rest) / calls == pytest.approx(D.COPY_CALL_CYCLES, abs=0.01)


def test_outputs_unchanged_on_dabnn_runtime():
    torch.manual_seed(0)
    g = mapping.trace(_Block().eval(), (1, 3, 16, 16))
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    res = simulate(g, DABNN, x, fold_bn=False)  # folded, the float stem would differ by fp32 rounding
    np.testing.assert_array_equal(res.outputs, run(g, x)[0])
