"""The quantize pass and its helpers, against a plain numpy oracle."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
import mapping
import nets
from mapping.passes import fold_bn, quantize
from mapping.passes.quantize import QuantParams, dequantize, input_scale, quantize_input, quantize_weights


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 12), cout=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_weights_symmetric_per_channel(bits, cout, seed):
    w = np.random.default_rng(seed).normal(size=(cout, 3, 2, 2)).astype(np.float32)
    q, s = quantize_weights(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == np.int64 and q.shape == w.shape and s.shape == (cout,)
    assert np.abs(q).max() <= qmax
    for o in range(cout):  # the largest magnitude of each channel maps to +-qmax
        assert np.abs(q[o]).max() == qmax
        assert np.abs(q[o] * s[o] - w[o]).max() <= s[o] / 2 + 1e-9  # rounding error at most half a step


def test_zero_channel_and_per_tensor():
    w = np.zeros((2, 4), np.float32)
    w[1] = [1, -2, 0.5, 0]
    q, s = quantize_weights(w, 4)
    assert s[0] == 0.0 and not q[0].any()  # a pruned channel dequantizes to its bias whatever its accumulator holds
    acc = np.array([[123456, 7]], dtype=np.int64)  # e.g. ADC clipping error on offset-encoded zero weights
    bias = np.array([0.5, -1.0], np.float32)
    assert dequantize(acc, 0.1, s, bias, 1)[0, 0] == np.float32(0.5)
    q2, s2 = quantize_weights(w, 4, per_channel=False)
    assert s2.shape == (1,) and s2[0] == pytest.approx(2 / 7)
    assert quantize_weights(np.zeros((2, 3)), 4, per_channel=False)[1][0] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(bad):
    from hwsim.errors import ShapeError

    w = np.ones((2, 3))
    w[1, 2] = bad
    with pytest.raises(ShapeError, match="NaN/inf"):
        quantize_weights(w, 8)
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight[1, 2] = bad
    with pytest.raises(ShapeError, match=r"parameter '0.weight' holds NaN/inf"):
        hwsim.simulate(m, "cpu/cortex-a72", input_shape=(1, 3))


def test_inputs_unsigned_and_signed():
    x = np.array([0.0, 0.5, 1.0, 2.0])
    s, signed = input_scale(x, 8)
    assert not signed and s == pytest.approx(2 / 255)
    assert quantize_input(x, 8, s, signed).tolist() == [0, 64, 128, 255]
    xs = np.array([-1.0, 0.25, 1.0])
    s, signed = input_scale(xs, 8)
    assert signed and s == pytest.approx(1 / 127)
    assert quantize_input(xs, 8, s, signed).tolist() == [-127, 32, 127]


def test_dequantize_per_channel():
    acc = np.array([[10, -3], [0, 7]])
    y = dequantize(acc, 0.5, np.array([2.0, 4.0]), np.array([1.0, -1.0]), channel_axis=1)
    assert y.dtype == np.float32 and y.tolist() == [[11.0, -7.0], [1.0, 13.0]]


def test_pass_annotates_without_mutating():
    g = fold_bn(mapping.trace(nets.get("itnet", iterations=2), (1, 3, 32, 32)))
    q = quantize(g, weight_bits=6, input_bits=5, input_ranges={"stem_0_0": (-2.0, 3.0)})
    assert all("quant" not in n.meta for n in g.nodes)  # original untouched
    ann = {n.name: n.meta["quant"] for n in q.nodes if "quant" in n.meta}
    assert set(ann) == {n.name for n in g.nodes if n.op.value in ("conv2d", "linear")}
    first = ann["stem_0_0"]
    assert isinstance(first, QuantParams) and first.input_signed is True
    assert first.input_scale == pytest.approx(3.0 / 15)
    assert ann["stem_1_0"].input_scale is None  # dynamic
    # shared block: same key, same scales
    assert ann["block_body_0_0"].weight_scale == ann["block_body_0_3"].weight_scale
    assert len(ann["block_body_0_0"].weight_scale) == 64
    assert all(np.array_equal(q.params[k], g.params[k]) for k in g.params)


def test_pass_rejects_bad_bits():
    g = mapping.trace(nets.get("itnet", iterations=1), (1, 3, 32, 32))
    with pytest.raises(ValueError, match="weight_bits"):
        quantize(g, weight_bits=1)


# ----------------------------------------------------------------------------- weights already on a grid
def test_weights_on_their_own_grid_keep_their_levels_exactly():
    from mapping.passes.quantize import quantize_weights

    rng = np.random.default_rng(0)
    k = rng.integers(-3, 4, size=(4, 6)).astype(np.float64)
    k[2] = 0.0  # a pruned channel
    g = np.array([0.5, 0.25, 1.0, 0.125])
    w = (k * g[:, None]).astype(np.float32)
    q, s = quantize_weights(w, 8, True, tuple(g))
    m = np.floor(127 / np.maximum(np.abs(k).max(1), 1))
    np.testing.assert_array_equal(q, k * m[:, None])  # codes k·m: the spec's range, every level exact
    np.testing.assert_array_equal(q * s[:, None], w.astype(np.float64))
    assert s[2] == 0.0
    # off the grid, or more levels than the spec holds: the max-abs scale as before
    for grid, bits in [(tuple(g * 0.7), 8), (tuple(g), 2)]:
        q2, s2 = quantize_weights(w, bits, True, grid)
        np.testing.assert_array_equal(q2, quantize_weights(w, bits, True)[0])


def test_a_k_bit_net_runs_exactly_on_an_exact_imc_chip_after_bn_folding():
    """kws-mlp-w3a3 (3-bit weights, BN after each layer): fold_bn carries the weight grid per channel, so
    imc/isaac keeps the 3-bit levels and computes torch's outputs (max-abs codes differed by an output level)."""
    import torch

    import hwsim
    import nets
    from mapping.passes.fold_bn import fold_bn

    m = nets.get("kws-mlp-w3a3").eval()
    shape = (4,) + tuple(nets.info("kws-mlp-w3a3").input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    g = hwsim.as_graph(m, shape)
    folded = fold_bn(g)
    for n in folded.nodes:
        if "folded_bn" in n.meta and "weight_scale" in n.meta:
            grid = np.asarray(n.meta["weight_scale"])
            k = folded.param(n, "weight") / grid[:, None]
            assert len(grid) == n.shape[-1] and np.allclose(k, np.rint(k), atol=1e-3)
    out = hwsim.simulate(g, "imc/isaac", x=x).outputs
    np.testing.assert_allclose(out, m(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
