"""The imported graph is what calling the model computes: forwards the trace does not see are refused, never
converted as the class's own forward (checked against model(x) on the check input and on two other inputs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwsim
from hwsim.errors import ConversionError, UnsupportedOpError

X = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)

    def features(self, x):
        return F.relu(self.c2(F.relu(self.c1(x))))

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class CallOverride(Net):
    def __call__(self, x):
        return torch.softmax(super().__call__(x), 1)


def _patched_forward():
    m = Net()
    m.forward = m.features  # "backbone only": the instance's forward, not the class's
    return m


def _root_hook():
    m = Net()
    m.register_forward_hook(lambda mod, args, out: out * 2)
    return m


def _root_pre_hook():
    m = Net()
    m.register_forward_pre_hook(lambda mod, args: ((args[0] - 0.5) / 0.25,))  # input normalisation
    return m


@pytest.mark.parametrize("make", [_patched_forward, CallOverride, _root_hook, _root_pre_hook],
                         ids=["instance-forward", "call-override", "hook", "pre-hook"])
def test_a_forward_the_trace_does_not_see_is_refused(make):
    with pytest.raises(ConversionError, match="computes other outputs than calling the model"):
        hwsim.simulate(make().eval(), "cpu/host", X)


def test_hooks_on_inner_blocks_are_seen_and_the_import_holds():
    m = Net().eval()
    m.c2.register_forward_hook(lambda mod, args, out: out)  # a read-only hook (feature extraction)
    out = hwsim.simulate(m, "cpu/host", X).outputs
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)


class DynScale(Net):  # "normalise each image's activations to [0, 1]" with a Python float (batch 1, as on an MCU)
    def forward(self, x):
        y = F.relu(self.c1(x))
        return self.fc(F.relu(self.c2(y / y.flatten(1).amax(1).item())).mean((2, 3)))


class TolistScale(Net):
    def forward(self, x):
        y = F.relu(self.c1(x))
        s = y.flatten(1).mean(1).tolist()
        return self.fc(F.relu(self.c2(y * s[0])).mean((2, 3)))


@pytest.mark.parametrize("cls", [DynScale, TolistScale])
def test_a_python_number_taken_from_the_input_is_refused(cls):
    with pytest.raises(UnsupportedOpError, match="takes a Python number from values computed from the input"):
        hwsim.simulate(cls().eval(), "cpu/host", X[:1])


def test_python_numbers_from_shapes_and_parameters_still_import():
    class ShapeAndParam(Net):
        def forward(self, x):
            y = F.relu(self.c1(x)) * (x.shape[-1] / 8) * self.c1.bias.abs().max().item()
            return self.fc(F.relu(self.c2(y)).mean((2, 3)))

    m = ShapeAndParam().eval()
    out = hwsim.simulate(m, "cpu/host", X).outputs
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cast", [nn.Module.double, nn.Module.half], ids=["float64", "float16"])
def test_a_model_that_is_not_float32_is_named_as_such(cast):
    with pytest.raises(UnsupportedOpError, match="parameters; hwsim imports float32 models: pass model.float()"):
        hwsim.simulate(cast(Net().eval()), "cpu/host", X)


def test_a_one_sample_net_that_drops_the_batch_dim_gets_its_own_shape_back():
    """logits.squeeze() at batch 1: the IR carries a leading unit dim; simulate returns torch's (10,), and evaluate
    still scores it per sample."""
    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 10)

        def forward(self, x):
            return self.fc(x).squeeze()

    m = Squeezed().eval()
    x = np.random.default_rng(0).standard_normal((1, 12)).astype(np.float32)
    out = hwsim.simulate(m, "cpu/host", x).outputs
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape == (10,)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    xs = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
    ev = hwsim.evaluate(m, "cpu/host", xs, np.arange(5))
    assert ev.top1_agreement_mean == 1.0 and ev.rel_rms_error_mean < 1e-5


def test_forward_arguments_with_defaults_are_traced_at_their_defaults():
    """forward(x, mask=None, scale=2.0): hwsim calls the model with the input alone, so the trace takes the defaults
    (torch.fx made mask a placeholder: `if mask is not None` held, and the import failed with a ShapeError)."""
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x, mask=None, scale: float = 2.0):
            y = self.fc(x) * scale
            return y if mask is None else y * mask

    m = Masked().eval()
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x).outputs, m(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_a_transformer_encoder_is_checked_on_the_path_tracing_takes():
    """nn.TransformerEncoder in eval runs torch's fused fast path when called and the plain path when traced: the
    same function rounded otherwise (1.5e-5 apart on wide inputs). The call check runs it with the fast path off
    (and restores the user's setting), so it imports instead of being refused as 'other outputs'."""
    torch.manual_seed(0)
    m = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0), 2).eval()
    x = torch.randn(1, 10, 32)
    out = hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).detach().numpy(), atol=1e-5)
    assert torch.backends.mha.get_fastpath_enabled()


def test_a_functional_dropout_left_in_training_mode_is_refused_by_name():
    """F.dropout(x, p) drops at random even in eval mode (training=True is its default): refused, naming the fix;
    with training=self.training it is its input."""
    class Drop(nn.Module):
        def __init__(self, follow: bool):
            super().__init__()
            self.fc, self.follow = nn.Linear(4, 4), follow

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5, training=self.training) if self.follow else F.dropout(self.fc(x), 0.5)

    x = np.ones((1, 4), np.float32)
    with pytest.raises(UnsupportedOpError, match="training=True .*pass training=self.training") as e:
        hwsim.simulate(Drop(False).eval(), "cpu/host", x=x)
    assert "\n" not in str(e.value)
    m = Drop(True).eval()
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x).outputs, m(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-6)
