"""Where the batch is: values whose first dimension equals the batch size by coincidence, and the transposing tensor
attributes (``.T``, ``.mT``), checked against torch."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
from hwsim.errors import UnsupportedOpError
from mapping import trace


class _BatchToFront(nn.Module):
    """Moves the channels to the front: (N, C, H, W) -> (C, N, H, W)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)

    def forward(self, x):
        return self.conv(x).transpose(0, 1).relu()


@pytest.mark.parametrize("batch", [3, 4])  # 4: as many samples as channels
def test_a_moved_batch_is_refused_in_one_line_even_when_another_dim_equals_it(batch):
    with pytest.raises(UnsupportedOpError, match="moves or merges the batch dimension"):
        trace(_BatchToFront().eval(), (batch, 4, 8, 8))


def test_a_moved_batch_imports_at_batch_one_and_matches_torch():
    m = _BatchToFront().eval()
    x = torch.rand(1, 4, 8, 8)
    out = hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).detach().numpy(), rtol=1e-5, atol=1e-6)


class _Gram(nn.Module):
    """A per-sample Gram matrix through ``.mT``: the batch stays first."""

    def forward(self, x):
        f = x.flatten(2)
        return (f @ f.mT).relu()


class _FeaturesT(nn.Module):
    def forward(self, x):
        return x.flatten(1).T.relu()


def test_mT_is_the_last_two_dims_swapped():
    m = _Gram().eval()
    x = torch.randn(4, 4, 5, 5)  # as many samples as channels: the batch is still found
    out = hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-4, atol=1e-4)


def test_T_reverses_all_dims_and_moves_the_batch():
    m = _FeaturesT().eval()
    x = torch.randn(1, 3, 4, 4)
    out = hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-6)
    with pytest.raises(UnsupportedOpError, match="moves or merges the batch dimension"):
        trace(m, (2, 3, 4, 4))


def test_an_unknown_tensor_attribute_is_refused_by_name():
    class Imag(nn.Module):
        def forward(self, x):
            return x.real.relu()

    with pytest.raises(UnsupportedOpError, match="'real'"):
        trace(Imag(), (1, 3))


class _MergeAll(nn.Module):
    """``reshape(1, -1)`` merges the batch into the features: at batch 1 its leading 1 is not the batch."""

    def forward(self, x):
        return torch.softmax(x.reshape(1, -1), -1)


def test_a_leading_one_that_is_not_the_batch_makes_a_batch_1_graph_batch_fixed():
    from hwsim.errors import ShapeError

    g = trace(_MergeAll(), (1, 8, 4, 4))
    assert g.batch_fixed  # found by the shape-only run at batch 2 (it was batch-general: softmax per row at batch 2)
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, _MergeAll()(torch.from_numpy(x)).numpy(),
                               rtol=1e-6)
    with pytest.raises(ShapeError, match="simulate it with batch 1"):
        hwsim.simulate(g, "cpu/host", x=np.concatenate([x, x]))


def test_an_lstm_state_returned_directly_is_batch_fixed_at_batch_1():
    class State(nn.Module):
        def __init__(self):
            super().__init__()
            self.r = nn.LSTM(4, 12, batch_first=True)

        def forward(self, x):
            return self.r(x)[1][0]  # h_n: (layers, batch, hidden)

    assert trace(State().eval(), (1, 5, 4)).batch_fixed
    assert not trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, 8, 8)).batch_fixed


def test_nan_and_inf_outputs_are_compared_not_crashed_on():
    """The call check's tolerance comes from the finite values (a NaN made it NaN: a RuntimeError; an inf would
    have made it accept anything)."""
    class AllMasked(nn.Module):
        def forward(self, x):
            return torch.softmax(x.masked_fill(x > -10, float("-inf")), -1)  # every row masked: NaN

    x = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32)
    assert np.isnan(hwsim.simulate(AllMasked(), "cpu/host", x=x).outputs).all()
