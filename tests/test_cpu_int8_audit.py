"""Three audit findings on the int8 (TFLite) CPU path.

- A calibrated range wider than float32 holds (TFLite's float32 ``(max - min) / 255`` is inf), a non-finite range, or
  weights / bias / multipliers with no finite int8 scale are refused with a one-line :class:`Int8OverflowError`
  naming the tensor or layer, never turned into NaN outputs or a bare ValueError; ordinary ranges keep TFLite's
  float32 arithmetic.
- A batch norm left unfolded is refused with the real reason: the conv's raw output is read elsewhere, or a sign
  (binary layer) reads the batch norm.
- ``y.mean((2, 3))`` and its spellings are TFLite's MEAN over H and W, bit-exact against the int64 reference of
  test_cpu_int8 (its ``ref_mean``, fed the reduced tensor viewed N x C x H x W, reshaped to the node's shape).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cpu_int8 import assert_bit_exact, ref_mean, ref_step
from torch import nn

import hwsim
import mapping
from hwsim.cpu.functional import run_int8
from hwsim.cpu.int8 import (
    Int8OverflowError,
    Int8UnsupportedError,
    asymmetric_qparams,
    check_int8,
    quantize_int8,
    quantize_weights_tflite,
)
from hwsim.functional import run
from hwsim.kernels._int8_tflite import mbqm
from mapping.passes.fold_bn import fold_bn
from nets.layers import BinaryConv2d, BinarySign


def _graph(model, shape):
    torch.manual_seed(0)
    return fold_bn(mapping.trace(model.eval(), shape))


def _data(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ----------------------------------------------------------------------------- ranges and scales
def _huge_linear():
    m = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1e19, 0.0], [-1e19, 0.0]]))
        m[0].bias.zero_()
    return m.eval()


def test_activation_range_wider_than_float32_is_refused_not_nan():
    x = np.array([[2e19, 0.0]], np.float32)  # outputs +-2e38: finite, but max - min overflows float32
    assert np.isfinite(run(_graph(_huge_linear(), (1, 2)), x)[0]).all()
    with pytest.raises(Int8OverflowError, match=r"int8 tensor '_0' \(output of linear.*wider than float32"):
        hwsim.simulate(_huge_linear(), "cpu/cortex-m7", x=x)


@pytest.mark.parametrize("where", ["x", "calib"])
def test_input_range_wider_than_float32_is_a_hwsim_error(where):
    big = _data((1, 4, 4, 4), 0, 1e38)
    assert np.isfinite(big).all()
    m = nn.Sequential(nn.Conv2d(4, 3, 1)).eval()
    x, calib = (big, None) if where == "x" else (big / np.float32(1e30), big)
    with pytest.raises(hwsim.HwsimError, match=r"graph input.*wider than float32"):
        hwsim.simulate(m, "cpu/cortex-m7", x=x, calib=calib)


def test_non_finite_calibrated_activation_is_refused():
    m = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        m[0].weight.fill_(1e30)
    g = _graph(m, (1, 2))
    with pytest.raises(Int8OverflowError, match="not finite"), np.errstate(over="ignore"):
        quantize_int8(g, np.full((1, 2), 1e10, np.float32))  # the float net gives inf


@pytest.mark.parametrize("lo, hi", [(-1.3, 2.7), (0.0, 6.0), (-1e-3, 5e-4), (-3e38, 0.0), (-1.7e38, 1.7e38)])
def test_ordinary_ranges_keep_tflite_float32_arithmetic(lo, hi):
    """GetAsymmetricQuantizationParams in float32, written out here: wide but representable ranges still run."""
    lo32, hi32 = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    scale = np.float32((hi32 - lo32) / np.float32(255))
    zp = float(np.float32(np.float32(-128) - lo32 / scale))
    zp = int(np.clip(np.sign(zp) * np.floor(abs(zp) + 0.5), -128, 127))
    q = asymmetric_qparams(lo, hi)
    assert (q.scale, q.zero_point) == (float(scale), zp)
    assert np.isfinite(q.scale) and q.scale > 0


def test_weights_too_small_for_a_float32_scale_are_refused():
    w = np.ones((2, 3), np.float32)
    w[1] = 1e-38  # 127 / 1e-38 overflows float32: TFLite's 1/scale would be inf, the codes NaN
    with pytest.raises(Int8OverflowError, match=r"layer 'fc': output channel 1"):
        quantize_weights_tflite(w, layer="fc")
    q, s = quantize_weights_tflite(np.where(w < 1, 0, w).astype(np.float32))  # an all-zero channel is fine
    assert q[1].tolist() == [0, 0, 0] and s[1] == 1.0


def test_huge_left_shift_is_reported_not_wrapped():
    """x · 2^40 wraps to 0 in int64 for x = 2^24: the kernel must count it as an overflow, never return 0."""
    assert mbqm(np.array([0]), 1 << 30, 40).tolist() == [0]
    for shift in (32, 40, 64, 100):
        with pytest.raises(OverflowError):
            mbqm(np.array([1 << 24]), 1 << 30, shift)


# ----------------------------------------------------------------------------- batch norm refusals
class _ConvAlsoReturned(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.c(x)
        return self.bn(y), y


class _ConvAlsoSkipped(_ConvAlsoReturned):
    def forward(self, x):
        y = self.c(x)
        return self.bn(y) + y


@pytest.mark.parametrize("model, why", [
    (_ConvAlsoReturned().eval(), r"output of conv2d 'c' before this batch norm is also a graph output"),
    (_ConvAlsoSkipped().eval(), r"output of conv2d 'c' before this batch norm is also read by 'add'"),
])
def test_batchnorm_after_a_shared_conv_names_the_other_reader(model, why):
    with pytest.raises(Int8UnsupportedError, match=why) as e:
        hwsim.simulate(model, "cpu/cortex-m7", x=np.ones((1, 3, 5, 5), np.float32))
    assert "fold_bn=True" not in str(e.value)


def test_batchnorm_before_a_sign_blames_the_sign():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), BinarySign(), BinaryConv2d(4, 4, 3))
    with pytest.raises(Int8UnsupportedError, match=r"op 'sign'.*no TFLite int8 kernel") as e:
        hwsim.simulate(m.eval(), "cpu/cortex-m7", x=np.ones((1, 3, 6, 6), np.float32))
    assert "batchnorm" not in str(e.value).split(":")[0]


def test_batchnorm_of_the_input_and_unfolded_graph_messages():
    with pytest.raises(Int8UnsupportedError, match="batch norm of the graph input"):
        check_int8(_graph(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)), (1, 3, 4, 4)))
    raw = mapping.trace(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval(), (1, 3, 4, 4))
    with pytest.raises(Int8UnsupportedError, match=r"not folded into conv2d .*fold_bn=True"):
        check_int8(raw)


# ----------------------------------------------------------------------------- mean over H and W
class _Head(nn.Module):
    def __init__(self, spelling):
        super().__init__()
        self.c, self.fc, self.spelling = nn.Conv2d(3, 8, 3), nn.Linear(8, 4), spelling

    def forward(self, x):
        y = torch.relu(self.c(x))
        if self.spelling == "adaptive":
            y = nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        elif self.spelling == "mean23":
            y = y.mean((2, 3))
        elif self.spelling == "mean-1-2":
            y = y.mean((-1, -2))
        elif self.spelling == "keepdim":
            y = y.mean((2, 3), keepdim=True).flatten(1)
        else:  # "flatten"
            y = y.flatten(2).mean(-1)
        return self.fc(y)


def _head(spelling):
    torch.manual_seed(0)  # every spelling gets the same weights
    return _Head(spelling)


def ref_step_mean(step, xs, shape):
    """The reference step; a mean over a reduced tensor of any rank: ``ref_mean`` of it viewed N x C x H x W."""
    if step.kind != "mean":
        return ref_step(step, xs, shape)
    x = xs[0].reshape(xs[0].shape[:2] + (-1, 1))
    return ref_mean(x, (float(step.in_q[0].scale), int(step.in_q[0].zero_point)),
                    (float(step.out_q.scale), int(step.out_q.zero_point))).reshape(shape)


@pytest.mark.parametrize("spelling", ["mean23", "mean-1-2", "keepdim", "flatten"])
def test_spatial_mean_is_global_pooling_bit_exact(spelling):
    x, calib = _data((3, 3, 7, 9), 1), _data((8, 3, 7, 9), 2)
    prog = quantize_int8(_graph(_head(spelling), (1, 3, 7, 9)), calib)
    assert "mean" in {s.kind for s in prog.steps}
    outs = assert_bit_exact(prog, x, ref_step_mean)
    ref = quantize_int8(_graph(_head("adaptive"), (1, 3, 7, 9)), calib)
    np.testing.assert_array_equal(outs[0], run_int8(ref, x)[0])  # the same program as AdaptiveAvgPool2d(1)
    fp32 = run(_graph(_head(spelling), (1, 3, 7, 9)), x)[0]
    assert np.abs(outs[0] - fp32).max() < 0.05 * np.abs(fp32).max()


@pytest.mark.parametrize("keepdim, shape", [(False, (2, 8)), (True, (2, 8, 1, 1))])
def test_spatial_mean_output_shape(keepdim, shape):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.c(x).mean((2, 3), keepdim=keepdim)

    x = _data((2, 3, 6, 5), 3)
    r = hwsim.simulate(M().eval(), "cpu/cortex-m7", x=x)
    assert r.outputs.shape == shape
    prog = quantize_int8(_graph(M(), (1, 3, 6, 5)), x)
    assert_bit_exact(prog, x, ref_step_mean)


@pytest.mark.parametrize("dims", [(1,), (2,), (1, 2, 3), (-1,)])
def test_other_reductions_are_still_refused(dims):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.c(x).mean(dims)

    with pytest.raises(Int8UnsupportedError, match=r"op 'reduce_mean'.*only over the spatial dims"):
        check_int8(_graph(M(), (1, 3, 4, 4)))


def test_ceil_mode_average_pool_runs_when_it_adds_no_window():
    """ceil_mode on an average pool whose windows all fit (timm's ResNet-D downsampling at even sizes) changes
    nothing: int8 runs it, equal to the same net without ceil_mode; a ceil_mode that adds a partial window is
    still refused."""
    import numpy as np
    import pytest
    import torch
    from torch import nn

    import hwsim
    from hwsim.errors import HwsimError

    def net(ceil):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                             nn.AvgPool2d(2, 2, ceil_mode=ceil, count_include_pad=False), nn.Flatten(),
                             nn.Linear(4 * 16, 5)).eval()

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    a = hwsim.simulate(net(True), "cpu/cortex-m7", x=x).outputs
    np.testing.assert_array_equal(a, hwsim.simulate(net(False), "cpu/cortex-m7", x=x).outputs)
    odd = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2, 2, ceil_mode=True)).eval()
    with pytest.raises(HwsimError, match="ceil_mode average pooling"):
        hwsim.simulate(odd, "cpu/cortex-m7", x=np.zeros((1, 3, 7, 7), np.float32) + 0.5)
