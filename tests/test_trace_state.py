"""An import never changes the user's model: attributes a forward assigns, buffers it updates, whether the import
is done or refused; a forward that changes its own buffers is refused (no one graph computes it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
from hwsim.errors import UnsupportedOpError

X = np.random.default_rng(0).standard_normal((2, 8, 6, 6)).astype(np.float32)


class EmaOverBatch(nn.Module):
    """Assigns a new tensor to a buffer from a batch mean: refused (a batch-wise op), after torch.fx ran forward
    on proxies, which it left in ``self.ema``."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 8, 1)
        self.register_buffer("ema", torch.zeros(8))

    def forward(self, x):
        y = self.c(x)
        self.ema = 0.9 * self.ema + 0.1 * y.mean((0, 2, 3))
        return y - self.ema.view(1, -1, 1, 1)


class KeepsLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 8, 1)
        self.last = None

    def forward(self, x):
        y = self.c(x)
        self.last = y
        return torch.relu(y)


class DoublesScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 8, 1)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        self.scale.mul_(2.0)
        return self.c(x) * self.scale


def test_a_refused_import_leaves_the_model_as_it_was():
    m = EmaOverBatch().eval()
    with pytest.raises(UnsupportedOpError, match="batch"):
        hwsim.simulate(m, "cpu/host", X)
    assert type(m.ema) is torch.Tensor and torch.equal(m.ema, torch.zeros(8))
    assert list(m.state_dict()) == ["ema", "c.weight", "c.bias"]
    with torch.no_grad():
        assert isinstance(m(torch.from_numpy(X)), torch.Tensor)  # the user's model still runs
    with pytest.raises(UnsupportedOpError, match="batch"):  # and a second import says the same
        hwsim.simulate(m, "cpu/host", X)


def test_a_done_import_leaves_assigned_attributes_as_they_were():
    m = KeepsLast().eval()
    out = hwsim.simulate(m, "cpu/host", X).outputs
    assert m.last is None
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)


def test_a_forward_that_changes_its_buffers_is_refused_and_the_buffer_restored():
    m = DoublesScale().eval()
    scale = m.scale
    with pytest.raises(UnsupportedOpError, match="DoublesScale.forward changes buffer 'scale' in place"):
        hwsim.simulate(m, "cpu/host", X)
    assert m.scale is scale and m.scale.item() == 1.0


def test_a_model_pruned_with_torch_prune_copies_and_imports():
    """torch.nn.utils.prune recomputes ``weight`` with autograd (no graph leaf): copy.deepcopy refuses it, so every
    copy of a user's model goes through mapping.trace.copy_module (the weight detached, the model unchanged)."""
    import torch.nn.utils.prune as prune

    from hwsim.codesign.hw_aware import hw_aware
    from mapping.trace import copy_module

    m = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    prune.l1_unstructured(m[0], "weight", amount=0.5)
    assert m[0].weight.grad_fn is not None  # what deepcopy refuses
    c = copy_module(m)
    assert torch.equal(c[0].weight, m[0].weight) and c[0].weight is not m[0].weight
    out = hwsim.simulate(m, "cpu/host", X).outputs
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)
    emu = hw_aware(m, "imc/isaac", input_shape=(1, 8, 6, 6))
    with torch.no_grad():
        assert emu(torch.from_numpy(X)).shape == (2, 3)


def test_each_submodules_train_eval_flag_comes_back():
    """Fine-tuning with frozen batch norms: the model trains, its BNs are in eval mode. An import (or evaluate's
    float reference) gave every submodule the root's flag back, so the next training step moved the frozen
    statistics."""
    import warnings

    m = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).train()
    m[1].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training-mode warning
        hwsim.simulate(m, "cpu/host", X)
        hwsim.evaluate(m, "cpu/host", X)
    assert m.training and m[0].training and not m[1].training


@pytest.mark.parametrize("script", [torch.jit.script, lambda m: torch.jit.trace(m, torch.from_numpy(X))])
def test_a_torchscript_module_is_refused_in_one_line(script):
    m = script(nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU()).eval())
    with pytest.raises(UnsupportedOpError, match="TorchScript module .* pass the nn.Module it was made from"):
        hwsim.simulate(m, "cpu/host", X)
    inner = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU()).eval()
    inner[0] = script(inner[0])
    with pytest.raises(UnsupportedOpError, match="module '0' of Sequential is a TorchScript module"):
        hwsim.simulate(inner, "cpu/host", X)
    with torch.no_grad():
        assert inner(torch.from_numpy(X)).shape == (2, 4, 6, 6)  # and it still runs


def test_a_graphs_parameters_are_read_only():
    """The simulators cache per parameter array (the IMC target's programmed crossbars): an edit in place (a fault
    injected into graph.params[k]) would have been ignored by a second run on IMC; it fails loudly instead. The
    caller's own array stays writable (the graph holds a read-only view)."""
    g = hwsim.as_graph(KeepsLast().eval(), (1, 8, 6, 6))
    w = g.params[g.nodes[0].params["weight"]]
    with pytest.raises(ValueError, match="read-only"):
        w[...] = 0.0
    mine = np.ones((8, 8, 1, 1), np.float32)
    g2 = g.replace(params={**g.params, g.nodes[0].params["weight"]: mine[:, :, :, :]})
    assert mine.flags.writeable and not g2.params[g.nodes[0].params["weight"]].flags.writeable


class CachesBias(nn.Module):
    """timm's LeViT: an eval-mode cache filled in forward (tracing put a torch.fx Proxy in it: the model's next call,
    hwsim's own check among them, raised a TraceError)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 8, 1)
        self.bias = nn.Parameter(torch.randn(8))
        self.cache: dict[str, torch.Tensor] = {}

    def forward(self, x):
        if "b" not in self.cache:
            self.cache["b"] = self.bias.view(1, -1, 1, 1) * 2
        return self.c(x) + self.cache["b"]


def test_a_cache_a_forward_fills_is_emptied_again_and_the_import_holds():
    m = CachesBias().eval()
    out = hwsim.simulate(m, "cpu/host", X).outputs
    assert m.cache == {}  # as the user left it
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(X)).numpy(), rtol=1e-5, atol=1e-6)
