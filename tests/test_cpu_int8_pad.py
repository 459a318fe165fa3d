"""A constant-zero PAD on the int8 path and in the runtime cost model.

int8: TFLite's PAD fills with the tensor's zero point (kernels/pad.cc), the exact code of 0.0, and keeps the input's
(scale, zero point); every int8 tensor must equal the independent int64 / numpy reference of test_cpu_int8 (its
``ref_step``, extended here by a pad written from that rule alone). Cost: on the TFLite runtimes (xnnpack, cmsis-nn,
x-cube-ai) a zero pad read only by a conv is folded into the conv (TFLite's CONV_2D with padding SAME), so it costs
nothing and the conv costs what a conv padding inside costs; ncnn keeps its Padding layer.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_cpu_int8 import assert_bit_exact as assert_int8_bit_exact
from test_cpu_int8 import ref_step, rel_rms
from torch import nn

import mapping
from hwsim.cpu.functional import run_int8
from hwsim.cpu.int8 import Int8UnsupportedError, check_int8, quantize_int8
from hwsim.cpu.runtime.algorithms import pad_folds_into_conv, work
from hwsim.functional import run
from mapping.graph import Op
from mapping.passes.fold_bn import fold_bn


# ----------------------------------------------------------------------------- the reference, extended for PAD
def ref_step_pad(step, xs, shape):
    """The reference step; a pad: the input surrounded by its zero point (its (scale, zp) unchanged)."""
    if step.kind != "pad":
        return ref_step(step, xs, shape)
    assert step.out_q == step.in_q[0]
    zp = int(step.in_q[0].zero_point)
    x = xs[0].astype(np.int64)
    if step.attrs.mode == "reflect":  # MIRROR_PAD (REFLECT): out[i] = x[reflected i], the edge not repeated
        index = [np.abs(np.arange(d + b + a) - b) for (b, a), d in zip(step.attrs.pads, x.shape)]
        index = [np.where(i >= d, 2 * (d - 1) - i, i) for i, d in zip(index, x.shape)]
        return x[np.ix_(*index)]
    out = np.full(shape, zp, np.int64)
    inner = tuple(slice(b, b + d) for (b, _), d in zip(step.attrs.pads, x.shape))
    out[inner] = x
    return out


def assert_bit_exact(program, x):
    """Every int8 tensor of ``program`` on ``x`` equals the reference, step by step; returns the float outputs."""
    return assert_int8_bit_exact(program, x, ref_step_pad)


def _data(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class PadNet(nn.Module):
    """Asymmetric zero pads before a conv (on the input), a depthwise conv (mid-net, after a ReLU: zp = -128) and a
    max pool (a pad not read by a conv), and a channel pad."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, (4, 3), stride=2)
        self.dw = nn.Conv2d(6, 6, 3, groups=6)
        self.c2 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.c1(nn.functional.pad(x, (1, 2, 0, 3))))
        x = self.dw(nn.functional.pad(x, (0, 1, 2, 1)))
        x = nn.functional.max_pool2d(nn.functional.pad(x, (1, 0, 1, 0)), 2)
        x = torch.relu(self.c2(nn.functional.pad(x, (0, 0, 0, 0, 1, 1))))  # channels 6 -> 8
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _graph(model, shape):
    torch.manual_seed(0)
    return fold_bn(mapping.trace(model.eval(), shape))


def test_pad_steps_bit_exact_and_close_to_fp32():
    g = _graph(PadNet(), (1, 2, 13, 11))
    assert sum(n.op == Op.PAD for n in g.nodes) == 4
    p = quantize_int8(g, _data((16, 2, 13, 11), 1))
    pads = [s for s in p.steps if s.kind == "pad"]
    assert len(pads) == 4 and all(s.out_q == s.in_q[0] for s in pads)
    assert pads[1].in_q[0].zero_point == -128  # after a fused ReLU: the pad writes -128, the code of 0.0
    x = _data((4, 2, 13, 11), 2)
    outs, values = run_int8(p, x, keep=True)
    assert np.all(values[pads[1].output][:, :, :2, :] == -128)
    outs = assert_bit_exact(p, x)
    # measured 0.003: five int8 layers of a randomly initialised net
    assert rel_rms(outs[0], run(g, x)[0]) < 0.05


def test_tiny_dscnn_int8_bit_exact_and_close_to_fp32():
    import nets

    g = fold_bn(mapping.trace(nets.get("tiny-dscnn").eval(), (1, 1, 49, 10)))
    assert g.nodes[0].op == Op.PAD and g.nodes[0].attrs.pads == ((0, 0), (0, 0), (4, 5), (1, 1))
    p = quantize_int8(g, _data((16, 1, 49, 10), 3))
    assert p.steps[0].kind == "pad" and p.shapes[p.steps[0].output] == (1, 1, 58, 12)
    x = _data((4, 1, 49, 10), 4)
    outs = assert_bit_exact(p, x)
    ref = run(g, x)[0]
    # measured 0.015 (10 int8 layers of a randomly initialised net; resnet20's bound)
    assert rel_rms(outs[0], ref) < 0.05
    assert (outs[0].argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_simulate_tiny_dscnn_int8_on_cortex_m4():
    import hwsim

    x = _data((2, 1, 49, 10), 5)
    r = hwsim.simulate("tiny-dscnn", "cpu/cortex-m4", x=x)
    assert r.outputs.shape == (2, 12) and np.isfinite(r.outputs).all()
    g = fold_bn(mapping.trace(__import__("nets").get("tiny-dscnn").eval(), (1, 1, 49, 10)))
    np.testing.assert_array_equal(r.outputs, run_int8(quantize_int8(g, x), x)[0])
    pad = [lay for lay in r.report.layers if lay.op == "pad"]
    assert len(pad) == 1 and pad[0].extra["kernel"] == "fused" and pad[0].latency_s == 0.0


# ----------------------------------------------------------------------------- refusals
class _Valued(nn.Module):
    def forward(self, x):
        return nn.functional.pad(x, (1, 1, 1, 1), value=0.5)


class _Mirror(nn.Module):
    """A reflect pad on the input and one after a ReLU (TFLite's MIRROR_PAD), each read by a conv."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 3, 3)

    def forward(self, x):
        x = torch.relu(self.c1(nn.functional.pad(x, (1, 2, 2, 0), mode="reflect")))
        return self.c2(nn.ReflectionPad2d(1)(x))


def test_reflect_pads_run_int8_bit_exactly_as_mirror_pad():
    g = _graph(_Mirror(), (1, 2, 7, 6))
    p = quantize_int8(g, _data((16, 2, 7, 6), 1))
    pads = [s for s in p.steps if s.kind == "pad"]
    assert len(pads) == 2 and all(s.attrs.mode == "reflect" and s.out_q == s.in_q[0] for s in pads)
    x = _data((3, 2, 7, 6), 2)
    outs = assert_bit_exact(p, x)
    assert rel_rms(outs[0], run(g, x)[0]) < 0.05


@pytest.mark.parametrize("mode", ["replicate", "circular"])
def test_replicate_and_circular_pads_have_no_tflite_op(mode):
    g = _graph(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode=mode)), (1, 2, 6, 6))
    with pytest.raises(Int8UnsupportedError, match=f"{mode} pad .*MIRROR_PAD") as e:
        check_int8(g)
    assert "\n" not in str(e.value)


def test_nonzero_pad_refused_before_work():
    g = _graph(_Valued(), (1, 2, 4, 4))
    with pytest.raises(Int8UnsupportedError) as e:
        check_int8(g)
    msg = str(e.value)
    assert "\n" not in msg and "'pad'" in msg and "value 0.5" in msg, msg
    with pytest.raises(Int8UnsupportedError):
        quantize_int8(g, np.zeros((1, 1), np.float32))


# ----------------------------------------------------------------------------- cost
def _spec(preset, runtime, precision):
    from hwsim.api import as_spec

    s = as_spec(preset)
    return dataclasses.replace(s, runtime=runtime, precision=precision)


class _PadConv(nn.Module):
    def __init__(self, explicit: bool):
        super().__init__()
        self.explicit = explicit
        self.c = nn.Conv2d(8, 16, 3, stride=2, padding=0 if explicit else 1)

    def forward(self, x):
        return torch.relu(self.c(nn.functional.pad(x, (1, 1, 1, 1)) if self.explicit else x))


@pytest.mark.parametrize("preset, runtime, precision", [
    ("cpu/cortex-m4", "cmsis-nn", "int8"), ("cpu/cortex-m7", "x-cube-ai", "int8"),
    ("cpu/cortex-m33", "x-cube-ai", "fp32"), ("cpu/cortex-a72", "xnnpack", "fp32"),
    ("cpu/cortex-a55", "xnnpack", "int8"),
])
def test_tflite_runtimes_fold_the_pad_into_the_conv(preset, runtime, precision):
    from hwsim.cpu import cost_report

    spec = _spec(preset, runtime, precision)
    folded = cost_report(_graph(_PadConv(True), (1, 8, 15, 15)), spec)
    inside = cost_report(_graph(_PadConv(False), (1, 8, 15, 15)), spec)
    pad = [lay for lay in folded.layers if lay.op == "pad"]
    assert len(pad) == 1 and pad[0].extra["kernel"] == "fused" and pad[0].latency_s == 0 == pad[0].energy_j
    conv_f = [lay for lay in folded.layers if lay.op == "conv2d"][0]
    conv_i = [lay for lay in inside.layers if lay.op == "conv2d"][0]
    # the conv's own work is unchanged by the folding: the same as a conv padding inside
    assert conv_f.macs == conv_i.macs and conv_f.extra["kernel"] == conv_i.extra["kernel"]
    assert conv_f.extra["compute_s"] == pytest.approx(conv_i.extra["compute_s"], rel=1e-12)
    assert conv_f.extra["overhead_s"] == conv_i.extra["overhead_s"]


def test_ncnn_keeps_its_padding_layer():
    from hwsim.cpu import cost_report

    rep = cost_report(_graph(_PadConv(True), (1, 8, 15, 15)), _spec("cpu/cortex-a72", "ncnn", "fp32"))
    pad = [lay for lay in rep.layers if lay.op == "pad"][0]
    assert pad.extra["kernel"] == "copy" and pad.latency_s > 0


class _NotFoldable(nn.Module):
    """Pads that stay layers: one read by a pool, one read by a conv and an add, a non-zero one, a channel pad."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 3)
        self.d = nn.Conv2d(4, 4, 3)
        self.e = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        p = nn.functional.max_pool2d(nn.functional.pad(x, (1, 1, 1, 1)), 3, 1)
        q = nn.functional.pad(p, (1, 1, 1, 1))
        y = self.c(q) + q[:, :, 1:-1, 1:-1]
        y = self.d(nn.functional.pad(y, (1, 1, 1, 1), value=1.0))
        return self.e(nn.functional.pad(y, (0, 0, 0, 0, 1, 1)))


def test_only_a_zero_spatial_pad_read_by_one_conv_folds():
    g = _graph(_NotFoldable(), (1, 4, 8, 8))
    pads = [n for n in g.nodes if n.op == Op.PAD]
    assert len(pads) == 4
    assert not any(pad_folds_into_conv(g, n, "cmsis-nn") for n in pads)
    assert all(work(g, n, "cmsis-nn", "int8", False).algo == "copy" for n in pads)
    folded = _graph(_PadConv(True), (1, 8, 15, 15))
    pad = next(n for n in folded.nodes if n.op == Op.PAD)
    assert pad_folds_into_conv(folded, pad, "xnnpack") and not pad_folds_into_conv(folded, pad, "ncnn")
