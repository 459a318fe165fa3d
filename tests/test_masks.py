"""Comparisons and boolean masks (x > t, torch.where, masked_fill, ~, &, |, ^) import through torch and ONNX as
float 0 / 1 masks, exactly: outputs equal torch's / onnxruntime's, ties included."""
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import hwsim
from hwsim.errors import HwsimError, UnsupportedOpError
from mapping import trace


class _Head(nn.Module):
    """A 1x1 conv, then ``fn`` of its output."""

    def __init__(self, fn):
        super().__init__()
        self.conv, self.fn = nn.Conv2d(3, 3, 1), fn

    def forward(self, x):
        return self.fn(self.conv(x))


PATTERNS = {
    "gt_scalar": lambda y: (y > 0.1).float() * y,
    "where_tensor": lambda y: torch.where(y > 0, y, 0.1 * y),
    "where_number": lambda y: torch.where(y >= 0.2, 1.0, y),
    "where_zero": lambda y: torch.where(y <= 0.0, 0.0, y),
    "masked_fill_value": lambda y: y.masked_fill(y < -0.5, 3.0),
    "masked_fill_neg_inf_softmax": lambda y: y.masked_fill(y < -0.5, float("-inf")).flatten(2).softmax(-1),
    "where_pos_inf_clamp": lambda y: torch.where(y > 0, float("inf"), y).clamp(max=5.0),
    "lt_tensor": lambda y: (y < y.mean((2, 3), keepdim=True)).float(),
    "eq_ne": lambda y: (y.clamp(max=0.3) == 0.3).float() + 2 * (y != y.clamp(min=0)).float(),
    "logic": lambda y: (((y > 0) & (y < 1)).float() + 2 * ((y > 0) | (y < -1)).float()
                        + 4 * ((y > 0) ^ (y > 0.5)).float() + 8 * (~(y > 0)).float()),
    "mask_times_x": lambda y: y * (y > 0),
    "safe_division": lambda y: torch.where(y.relu() > 0, y / y.relu(), 0.0),  # inf and NaN in the branch not taken
    "two_infinite_numbers": lambda y: torch.where(y > 0, float("inf"), float("-inf")).clamp(-2.0, 3.0),
    "functions": lambda y: torch.logical_and(torch.gt(y, 0), torch.logical_not(torch.ge(y, 1.0))).float(),
}


def _x(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 5, 5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_torch_masks_match_torch(name):
    torch.manual_seed(0)
    m, x = _Head(PATTERNS[name]).eval(), _x()
    out = hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs
    ref = m(x).detach().numpy()
    assert np.array_equal(np.isinf(out), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-5, atol=1e-6)


def test_comparisons_are_exact_at_ties():
    """Values equal to the threshold: > is false and >= true, as in torch (no rounding moves them)."""
    class Ties(nn.Module):
        def forward(self, x):
            return (x > 0.3).float() + 2 * (x >= 0.3).float() + 4 * (x == 0.3).float() + 8 * (x < x.roll(1, 1)).float()

    x = torch.tensor([[0.3, 0.3 + 1e-8, np.nextafter(np.float32(0.3), 1), -0.0, 0.0, 0.3]], dtype=torch.float32)
    out = hwsim.simulate(Ties(), "cpu/host", x=x.numpy()).outputs
    np.testing.assert_array_equal(out, Ties()(x).numpy())


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_export", "dynamo_export"])
@pytest.mark.parametrize("name", ["where_tensor", "masked_fill_neg_inf_softmax", "eq_ne", "logic", "where_number",
                                  "safe_division", "two_infinite_numbers"])
def test_onnx_masks_match_onnxruntime(name, dynamo):
    torch.manual_seed(0)
    m, x = _Head(PATTERNS[name]).eval(), _x()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, x, buf, dynamo=dynamo, input_names=["x"],
                          dynamic_axes=None if dynamo else {"x": {0: "n"}})
    out = hwsim.simulate(onnx.load_from_string(buf.getvalue()), "cpu/host", x=x.numpy()).outputs
    ref = m(x).detach().numpy()
    fin = np.isfinite(ref)
    assert np.array_equal(np.isinf(out), np.isinf(ref))
    np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn,words", [
    (lambda y: (y > 0).any(1, keepdim=True) * y, ["any", "bool"]),
    (lambda y: y * y.bool(), ["bool"]),
    (lambda y: torch.logical_and(y, y > 0).float(), ["not a bool tensor"]),
], ids=["reduction_of_a_mask", "cast_to_bool", "logical_of_a_float"])
def test_other_bool_uses_are_refused_in_one_line(fn, words):
    with pytest.raises(UnsupportedOpError) as e:
        trace(_Head(fn).eval(), (2, 3, 5, 5))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_masked_net_runs_on_imc_and_is_refused_by_int8_in_one_line():
    torch.manual_seed(0)
    m, x = _Head(PATTERNS["where_tensor"]).eval(), _x()
    out = hwsim.simulate(m, "imc/isaac", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).detach().numpy(), atol=1e-3)
    with pytest.raises(HwsimError) as e:
        hwsim.simulate(m, "cpu/cortex-m4", x=x.numpy())
    assert "\n" not in str(e.value) and "int8" in str(e.value)


@pytest.mark.parametrize("hw", ["cpu/cortex-a72", "cpu/host", "imc/neurosim-rram-22nm"])
def test_a_masked_net_is_costed_and_computed_on_cpu_and_imc_presets(hw):
    torch.manual_seed(0)
    m, x = _Head(PATTERNS["safe_division"]).eval(), _x()
    res = hwsim.simulate(m, hw, x=x.numpy())
    assert res.report.latency_s > 0 and np.all(np.isfinite(res.outputs))
    np.testing.assert_allclose(res.outputs, m(x).detach().numpy(), atol=2e-2 if hw.startswith("imc") else 1e-5)


def test_a_nan_compares_false_as_in_torch():
    """0 / 0 inside the net: every comparison with the NaN is false and != is true, as torch's."""
    class Nan(nn.Module):
        def forward(self, x):
            q = x.relu() / x.relu()  # NaN where x <= 0
            return ((q > 0.5).float() + 2 * (q < 0.5).float() + 4 * (q >= 0.5).float() + 8 * (q <= 0.5).float()
                    + 16 * (q == 1.0).float() + 32 * (q != 1.0).float())

    x = torch.tensor([[-1.0, 0.0, 2.0, 0.5]])
    out = hwsim.simulate(Nan(), "cpu/host", x=x.numpy()).outputs
    np.testing.assert_array_equal(out, Nan()(x).numpy())
