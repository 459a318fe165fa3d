"""Hardware-aware fine-tuning: the emulation's forward pass against the bit-level IMC simulator, its gradients,
training, and its refusals."""
import dataclasses
import importlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
import nets
from hwsim.codesign import hw_aware as hw_aware_fn
from hwsim.codesign.digits import DigitsCNN, _fit, load_split
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.imc.spec import IMCSpec

hwa = importlib.import_module("hwsim.codesign.hw_aware")  # the module (the package binds the name to the function)


class _Mixed(nn.Module):
    """Grouped and depthwise convs, a BN folded into a linear, an unfolded linear, odd sizes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(6)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, bias=False)
        self.b2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 16, 12, bias=False)
        self.bn1 = nn.BatchNorm1d(12)
        self.fc2 = nn.Linear(12, 10)
        self.hwsim_input_shape = (1, 1, 8, 8)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.dw(x)) - 0.1  # signed inputs to the next layer
        x = torch.relu(self.b2(self.c2(x)))
        x = torch.relu(self.bn1(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    _, _, xte, yte = load_split(tuple(range(10)))
    return xte[:12], yte[:12]


_NS = dict(rows=128, cols=128, cell_bits=1, weight_bits=8, input_bits=8, dac_bits=1, adc_bits=5)  # NeuroSim 5-bit ADC
SPECS = {
    "exact-adc": IMCSpec(**{**_NS, "adc_bits": 8}),  # partial sums <= 128 < 255: the integer GEMM
    "clip-5bit": IMCSpec(**_NS),  # clipping ADC, bit-serial, 1-bit cells
    "clip-flip-rowsplit": IMCSpec(rows=20, cell_bits=2, adc_bits=4, column_flip=True),
    "scale-diff-dac2": IMCSpec(rows=16, cell_bits=2, dac_bits=2, adc_bits=4, adc_mode="scale",
                               signed_weights="differential", column_flip=True, weight_bits=6, input_bits=5),
}
# the deterministic device and circuit physics (hwsim.imc.physics): on/off ratio, IR drop, ADC INL, drift with one nu
SPECS["physics-offset"] = dataclasses.replace(SPECS["clip-5bit"], on_off_ratio=17.0, ir_drop=0.05, adc_inl_lsb=0.4,
                                              drift_time_s=86400.0, drift_nu_mean=0.05, drift_compensation=True)
SPECS["physics-diff"] = dataclasses.replace(SPECS["scale-diff-dac2"], on_off_ratio=10.0, ir_drop=0.03,
                                            adc_inl_lsb=0.3, drift_time_s=3e7, drift_nu_mean=0.03)
SPECS["physics-refcol"] = dataclasses.replace(SPECS["physics-offset"], reference_column=True)  # g_min subtracted


def _compare(model, spec, x):
    hw = hw_aware_fn(model, spec)
    with torch.no_grad():
        emu = hw(x)
    sim = hwsim.simulate(model, spec, x=x.numpy()).outputs
    emu = [e.numpy() for e in emu] if isinstance(emu, tuple) else [emu.numpy()]
    sim = sim if isinstance(sim, list) else [sim]
    for e, s in zip(emu, sim, strict=True):
        scale = np.abs(s).max()
        assert np.abs(e - s).max() <= 1e-6 * scale, (spec, np.abs(e - s).max(), scale)
    return emu, sim


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)  # physics-diff has physics-offset's physics
                                  if n in ("clip-flip-rowsplit", "scale-diff-dac2", "physics-offset") else n
                                  for n in SPECS])
def test_forward_equals_bit_level_simulator(name, digits):
    """Noise off: the emulation computes what hwsim's bit-level simulator computes, within fp32 rounding (the
    deterministic physics included)."""
    x, _ = digits
    for model in (_randomize_bn(DigitsCNN(width=4, num_classes=10)), _randomize_bn(_Mixed())):
        torch.manual_seed(0)
        emu, _ = _compare(model, SPECS[name], x)
        ref = model(x).detach().numpy()
        if name == "clip-flip-rowsplit":  # the ADC clips: both differ from float by the same, non-trivial, error
            assert np.abs(emu[0] - ref).max() > 1e-3 * np.abs(ref).max()


def test_forward_equals_simulator_shared_weights_multi_exit():
    """ItNet: one block executed twice (shared weights, shared BN folds), one output per iteration."""
    model = _randomize_bn(nets.get("itnet", channels=8, iterations=2, num_classes=4))
    x = torch.rand(3, 3, 32, 32)
    emu, _ = _compare(model, SPECS["clip-5bit"], x)
    assert len(emu) == 2


@pytest.mark.slow
def test_random_physics_matches_simulator_in_distribution(digits):
    """With random device effects the draws differ, but the error against the float model has the same size."""
    x, _ = digits
    model = _randomize_bn(DigitsCNN(width=4, num_classes=10))
    spec = dataclasses.replace(SPECS["clip-5bit"], conductance_sigma=0.1, adc_noise_lsb=0.3, stuck_at_rate=0.01,
                               read_sigma=0.03, drift_time_s=3e6, drift_nu_mean=0.05, drift_nu_std=0.03,
                               adc_dnl_lsb=0.2)
    ref = model(x).detach().numpy()
    hw = hw_aware_fn(model, spec)
    torch.manual_seed(0)
    with torch.no_grad():
        e_emu = [np.sqrt(np.mean((hw(x).numpy() - ref) ** 2)) for _ in range(6)]
    e_sim = [np.sqrt(np.mean((hwsim.simulate(model, spec, x=x.numpy(), seed=s).outputs - ref) ** 2))
             for s in range(6)]
    assert 0.6 < np.mean(e_emu) / np.mean(e_sim) < 1.6, (e_emu, e_sim)
    quiet = hw_aware_fn(model, SPECS["clip-5bit"])
    with torch.no_grad():
        e0 = np.sqrt(np.mean((quiet(x).numpy() - ref) ** 2))
    assert np.mean(e_emu) > 1.5 * e0  # the noise is there
    torch.manual_seed(1)
    with torch.no_grad():
        assert not torch.equal(hw(x), hw(x))  # drawn afresh per forward pass


def test_one_adc_transfer_per_forward_pass(monkeypatch):
    """The simulator draws one ADC transfer per chip and seed for all its ADCs: a forward pass of the emulation (one
    chip) draws one for every layer; a layer called on its own draws its own."""
    spec = dataclasses.replace(SPECS["clip-5bit"], adc_dnl_lsb=0.2, adc_inl_lsb=0.3)
    hw = hw_aware_fn(_randomize_bn(_Mixed()), spec)
    drawn = []
    real = hwa.ph.adc_thresholds
    monkeypatch.setattr(hwa.ph, "adc_thresholds", lambda *a: drawn.append(1) or real(*a))
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        hw(x)
        assert len(drawn) == 1
        hw(x)
        assert len(drawn) == 2  # a new chip per batch
        hw.net.fc2(torch.rand(2, 12))
        assert len(drawn) == 3


def test_gradients_flow_to_every_parameter(digits):
    x, y = digits
    spec = dataclasses.replace(SPECS["clip-flip-rowsplit"], conductance_sigma=0.05, adc_noise_lsb=0.5)
    hw = hw_aware_fn(_randomize_bn(_Mixed()), spec).train()
    nn.functional.cross_entropy(hw(x), y).backward()
    for name, p in hw.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradient_is_the_integer_gemm_gradient_without_clipping():
    """The bit-level path with an ADC that cannot clip: the straight-through digits and rint give the integer GEMM's
    value and gradient (d acc / d q_x = q_w, d acc / d q_w = q_x)."""
    spec = IMCSpec(rows=8, cell_bits=2, adc_bits=8, weight_bits=6, input_bits=4)
    qx = torch.tensor([[[3.0, 1.0, 0.0, 7.0, 2.0]]], requires_grad=True)
    qw = torch.tensor([[1.0, -2.0], [0.0, 5.0], [-7.0, 3.0], [2.0, 2.0], [31.0, -31.0]], requires_grad=True)
    acc = hwa.crossbar_acc(qx, qw.unsqueeze(0), False, spec)[0]
    torch.testing.assert_close(acc, (qx[0] @ qw).double().detach())
    acc.sum().backward()
    torch.testing.assert_close(qx.grad[0], qw.sum(1, keepdim=True).T.detach())
    torch.testing.assert_close(qw.grad, qx[0].T.detach().expand(5, 2))


@pytest.mark.slow
def test_training_reduces_loss_and_leaves_the_model_untouched():
    """A float-trained net loses accuracy on a noisy 4-bit-ADC chip; fine-tuning the emulation recovers loss."""
    xtr, ytr, _, _ = load_split(tuple(range(10)))
    xtr, ytr = xtr[:320], ytr[:320]
    torch.manual_seed(0)
    model = DigitsCNN(width=4, num_classes=10)
    _fit(model, xtr, ytr, 6, 1e-2, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = dataclasses.replace(SPECS["clip-5bit"], adc_bits=4, conductance_sigma=0.2)
    hw = hw_aware_fn(model, spec)
    opt = torch.optim.Adam(hw.parameters(), lr=3e-3)

    def loss():
        with torch.no_grad():
            torch.manual_seed(5)
            return float(nn.functional.cross_entropy(hw.eval()(xtr), ytr))

    l0 = loss()
    hw.train()
    for _ in range(3):
        for i in range(0, 320, 32):
            opt.zero_grad()
            nn.functional.cross_entropy(hw(xtr[i:i + 32]), ytr[i:i + 32]).backward()
            opt.step()
    assert loss() < 0.85 * l0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the user's model is a different object, unchanged
    plain = hw.plain()
    assert type(plain) is DigitsCNN and type(plain.stem[0]) is nn.Conv2d and type(plain.stem[1]) is nn.BatchNorm2d
    assert plain.state_dict().keys() == model.state_dict().keys()
    assert not torch.equal(plain.fc.weight, model.fc.weight)


def test_spec_fields_not_emulated_warn(monkeypatch):
    monkeypatch.setattr(hwa, "EMULATED_FIELDS", hwa.EMULATED_FIELDS - {"stuck_at_rate"})
    spec = dataclasses.replace(SPECS["clip-5bit"], stuck_at_rate=0.01)
    with pytest.warns(UserWarning, match="stuck_at_rate"):
        hw_aware_fn(DigitsCNN(width=4, num_classes=10), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hw_aware_fn(DigitsCNN(width=4, num_classes=10), SPECS["clip-5bit"])  # nothing to warn about


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 1, 3, 3))
        self.hwsim_input_shape = (1, 1, 8, 8)

    def forward(self, x):
        return nn.functional.conv2d(x, self.w, padding=1)


def test_refusals():
    with pytest.raises(HwsimError, match="nn.Module"):
        hw_aware_fn("resnet20", SPECS["clip-5bit"])
    with pytest.raises(HwsimError, match="IMC"):
        hw_aware_fn(DigitsCNN(width=4), "cpu/cortex-a72")
    with pytest.raises(UnsupportedOpError, match="not an nn.Conv2d"):
        hw_aware_fn(_Functional(), SPECS["clip-5bit"])


def test_every_spec_field_is_classified():
    """A new IMCSpec field must be declared emulated or cost-only here (until then hw_aware warns when it is set)."""
    fields = {f.name for f in dataclasses.fields(IMCSpec)}
    assert fields == hwa.EMULATED_FIELDS | hwa.COST_ONLY_FIELDS
    assert not hwa.EMULATED_FIELDS & hwa.COST_ONLY_FIELDS


def test_a_module_outside_the_zoo_needs_its_input_shape_named():
    from hwsim.errors import ShapeError

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()
    with pytest.raises(ShapeError, match=r"hw_aware: pass input_shape=\(1, C, H, W\)"):
        hw_aware_fn(model, SPECS["clip-5bit"])
    assert hw_aware_fn(model, SPECS["clip-5bit"], input_shape=(1, 1, 8, 8)) is not None
