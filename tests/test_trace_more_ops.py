"""torch ops the IR computes with ops it already has import through torch.fx / torch.export and compute torch's
values: instance norm (affine on/off, running statistics), addcmul (function and method), var/std (unbiased,
correction, keepdim), glu, logsigmoid, min along dims; their ONNX-exported twins import too; timm's
convnextv2 (GRN) and resmlp (Affine) import; the batch dim and all-dim reductions stay refused."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwsim
import mapping
from hwsim.errors import UnsupportedOpError
from mapping.graph import Op


class Fn(nn.Module):
    """A conv (so the op reads a computed value) followed by ``fn``."""

    def __init__(self, fn, c: int = 4):
        super().__init__()
        self.conv, self.fn = nn.Conv2d(c, c, 1), fn

    def forward(self, x):
        return self.fn(self.conv(x))


def sample(shape, seed=1, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def run_hwsim(model, x):
    """hwsim's output of ``model`` (imported, verified node by node) on ``x``, shaped as torch's, and torch's."""
    torch.manual_seed(0)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x.copy())).numpy()
    got = np.asarray(hwsim.simulate(model, "cpu/host", x).outputs).reshape(want.shape)
    return got, want


def assert_close(got, want, rtol=1e-5):
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= rtol * max(float(np.max(np.abs(want))), 1e-6)


def onnx_twin(model, x, tmp_path):
    """hwsim's output of the ONNX export (opset 17, the TorchScript exporter) of ``model`` on the first sample of
    ``x`` (batch 1: the export of an instance norm with running statistics merges the batch into the channels)."""
    x, path = x[:1], tmp_path / "m.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17)
    return np.asarray(hwsim.simulate(str(path), "cpu/host", x).outputs)


def _instance(affine: bool, stats: bool, dims: int = 2) -> nn.Module:
    cls = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims]
    m = cls(4, affine=affine, track_running_stats=stats)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if affine:
            m.weight.copy_(torch.rand(4, generator=g) + 0.5)
            m.bias.copy_(torch.randn(4, generator=g))
        if stats:
            m.running_mean.copy_(torch.randn(4, generator=g))
            m.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return m


# ------------------------------------------------------------------------------------------------ instance norm
@pytest.mark.parametrize("affine,stats", [(False, False), (True, False), (False, True), (True, True)])
def test_instance_norm_module_matches_torch_and_onnx(affine, stats, tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _instance(affine, stats), nn.ReLU())
    x = sample((2, 3, 6, 7))
    got, want = run_hwsim(model, x)
    assert_close(got, want)
    ops = [n.op for n in mapping.trace(model, x.shape)]
    assert (Op.BATCHNORM if stats else Op.GROUPNORM) in ops  # running statistics: a per-channel affine
    assert_close(onnx_twin(model, x, tmp_path).reshape(want[:1].shape), want[:1])


@pytest.mark.parametrize("dims", [1, 3])
def test_instance_norm_1d_and_3d(dims):
    if dims == 3:  # nn.InstanceNorm3d: torch.export's aten.instance_norm, (N, C, D*H*W) around the GROUPNORM
        model = nn.Sequential(nn.Flatten(2), nn.Linear(60, 60), nn.Unflatten(2, (3, 4, 5)), _instance(True, False, 3))
        x = sample((2, 4, 3, 4, 5))
    else:
        model, x = nn.Sequential(nn.Linear(10, 10), _instance(True, False, 1)), sample((2, 4, 10))
    got, want = run_hwsim(model, x)
    assert_close(got, want)


def test_functional_instance_norm_with_weights():
    w, bias = torch.rand(4) + 0.5, torch.randn(4)
    model = Fn(lambda y: F.instance_norm(y, weight=w, bias=bias, eps=1e-3))
    got, want = run_hwsim(model, sample((2, 4, 5, 5)))
    assert_close(got, want)


# ------------------------------------------------------------------------------------------------ addcmul
class GRN(nn.Module):
    """ConvNeXt-V2's global response normalisation written with addcmul (as timm writes it), channels last."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.randn(c))

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        gx = x.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return x + torch.addcmul(self.bias.view(1, 1, 1, -1), self.weight.view(1, 1, 1, -1), x * nx)


@pytest.mark.parametrize("form", ["function", "method", "inplace", "grn"])
def test_addcmul_matches_torch(form, tmp_path):
    fn = {"function": lambda y: torch.addcmul(y, y, y.sigmoid(), value=-0.5),
          "method": lambda y: y.tanh().addcmul(y, torch.full((1, 4, 1, 1), 2.0)),
          "inplace": lambda y: y.relu().addcmul_(y, y, value=3)}
    model = Fn(fn[form]) if form != "grn" else nn.Sequential(nn.Conv2d(4, 4, 1), GRN())
    x = sample((2, 4, 5, 6))
    got, want = run_hwsim(model, x)
    assert_close(got, want)
    if form in ("function", "grn"):
        assert_close(onnx_twin(model, x, tmp_path).reshape(want[:1].shape), want[:1])


# ------------------------------------------------------------------------------------------------ var / std
VAR = {
    "var_dim": lambda y: y.var(1),
    "var_keep_biased": lambda y: y.var(dim=(2, 3), unbiased=False, keepdim=True),
    "var_positional": lambda y: torch.var(y, -1, False, True),
    "var_correction": lambda y: torch.var(y, dim=[1, 3], correction=2),
    "std_dim": lambda y: y.std(dim=2, keepdim=True),
    "std_correction0": lambda y: torch.std(y, (1, 2), correction=0),
}


@pytest.mark.parametrize("case", sorted(VAR))
def test_var_std_match_torch(case, tmp_path):
    model = Fn(VAR[case])
    x = sample((2, 4, 5, 6), scale=3.0)
    got, want = run_hwsim(model, x)
    assert_close(got, want)
    if case in ("var_dim", "std_dim"):
        assert_close(onnx_twin(model, x, tmp_path).reshape(want[:1].shape), want[:1])


@pytest.mark.parametrize("fn,words", [
    (lambda y: y.var(0), "batch"),
    (lambda y: y.std(), "all dimensions"),
    (lambda y: torch.var(y, dim=None, correction=1), "all dimensions"),
    (lambda y: y[:, :1].var(1), "correction"),
    (lambda y: y.min(dim=0).values, "batch"),
    (lambda y: y.min(), "all dimensions"),
    (lambda y: torch.min(y, y.relu()), "elementwise minimum"),
])
def test_batch_and_all_dim_reductions_stay_refused(fn, words):
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(Fn(fn), (2, 4, 5, 6))
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)


# ------------------------------------------------------------------------------------------------ glu, logsigmoid, min
ELEM = {
    "glu": lambda y: F.glu(y, 1),
    "glu_last": lambda y: F.glu(y, dim=-1),
    "logsigmoid": F.logsigmoid,
    "min_values": lambda y: y.min(1).values,
    "min_keepdim": lambda y: torch.min(y, dim=-1, keepdim=True)[0],
    "amin": lambda y: torch.amin(y, dim=(2, 3)),
}


@pytest.mark.parametrize("case", sorted(ELEM))
def test_glu_logsigmoid_min_match_torch(case, tmp_path):
    model = Fn(ELEM[case])
    x = sample((2, 4, 5, 6), scale=40.0 if case == "logsigmoid" else 1.0)  # logsigmoid far below -20 too
    got, want = run_hwsim(model, x)
    assert_close(got, want)
    if case in ("glu", "min_values", "amin"):
        assert_close(onnx_twin(model, x, tmp_path).reshape(want[:1].shape), want[:1])


def test_glu_and_logsigmoid_modules():
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GLU(1), nn.LogSigmoid())
    got, want = run_hwsim(model, sample((2, 4, 5, 6)))
    assert_close(got, want)


def test_min_indices_stay_refused():
    with pytest.raises(UnsupportedOpError, match="int64"):
        mapping.trace(Fn(lambda y: y.min(1).indices.float()), (2, 4, 5, 6))


# ------------------------------------------------------------------------------------------------ timm
@pytest.mark.parametrize("name,kw,shape", [("convnextv2_atto", {}, (1, 3, 64, 64)),
                                          ("resmlp_12_224", {"img_size": 64}, (1, 3, 64, 64))])
def test_timm_models_with_grn_and_affine(name, kw, shape):
    from nets.external import import_torchvision
    import_torchvision()  # timm imports torchvision, whose C++ ops this CPU torch may lack
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kw).eval()
    with torch.no_grad():
        for m in model.modules():  # timm zero-initialises some heads and GRN/Affine weights: give them values
            for p in m.parameters(recurse=False):
                if not p.abs().sum():
                    p.copy_(0.1 * torch.randn_like(p))
    got, want = run_hwsim(model, sample(shape))
    assert_close(got, want, rtol=1e-4)


def test_group_norm_on_a_5d_volume_is_one_group_norm():
    """A 5-d value whose torch value is 5-d too is a volume, not windows merged into the batch (GroupNorm(2, 4) on
    (N, 4, 3, 4, 5) was applied window by window and refused by verification)."""
    m = torch.nn.Sequential(torch.nn.GroupNorm(2, 4)).eval()
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 4, 5)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x).outputs, m(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)
