"""A small transfer-learning task on scikit-learn's bundled digits (8×8, offline) for NetCut demos.

The *source* task is digits 0-4, the *target* task digits 5-9 (as NetCut transfers a network
pretrained on one problem to another). :func:`pretrained_cnn` trains :class:`DigitsCNN` on the
source task; :func:`make_train_fn` returns the ``train_fn`` NetCut calls to fine-tune a trimmed
network on the target task and report its test accuracy. Everything is seeded.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

__all__ = ["load_split", "DigitsCNN", "pretrained_cnn", "make_train_fn", "INPUT_SHAPE", "fit_loop"]

INPUT_SHAPE = (1, 1, 8, 8)


def load_split(classes: tuple[int, ...], seed: int = 0, test_fraction: float = 0.3):
    """(x_train, y_train, x_test, y_test) torch tensors of the digits in ``classes``; labels are
    re-indexed 0..len(classes)-1; pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    mask = np.isin(d.target, classes)
    x = torch.tensor(d.images[mask] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor([classes.index(int(t)) for t in d.target[mask]])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitsCNN(nn.Module):
    """Stem + six conv-BN-ReLU blocks (two of them stride 2) + global pool + linear, as a chain."""

    def __init__(self, width: int = 8, num_classes: int = 5):
        super().__init__()
        w = width
        self.stem = _cbr(1, w)
        self.blocks = nn.Sequential(OrderedDict([
            ("b1", _cbr(w, w)), ("b2", _cbr(w, 2 * w, 2)), ("b3", _cbr(2 * w, 2 * w)),
            ("b4", _cbr(2 * w, 4 * w, 2)), ("b5", _cbr(4 * w, 4 * w)), ("b6", _cbr(4 * w, 4 * w))]))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        self.hwsim_input_shape = INPUT_SHAPE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _fit(model: nn.Module, x, y, epochs: int, lr: float, seed: int, batch: int = 64) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster than contended threads
    try:
        fit_loop(model, x, y, epochs, lr, seed, batch)
    finally:
        torch.set_num_threads(threads)


def fit_loop(model: nn.Module, x, y, epochs: int, lr: float, seed: int, batch: int = 64) -> None:
    """Adam on cross-entropy over seeded shuffled mini-batches; leaves the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def pretrained_cnn(width: int = 8, epochs: int = 10, seed: int = 0) -> nn.Module:
    """:class:`DigitsCNN` trained on the source task (digits 0-4); ``.source_accuracy`` is its test accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN(width, 5)
        xtr, ytr, xte, yte = load_split((0, 1, 2, 3, 4), seed)
        _fit(model, xtr, ytr, epochs, 3e-3, seed)
    model.source_accuracy = accuracy(model, xte, yte)
    return model


def make_train_fn(epochs: int = 8, seed: int = 0, lr: float = 3e-3):
    """``train_fn(model) -> accuracy``: fine-tune all layers on digits 5-9, return the test accuracy."""
    xtr, ytr, xte, yte = load_split((5, 6, 7, 8, 9), seed)

    def train_fn(model: nn.Module) -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _fit(model, xtr, ytr, epochs, lr, seed)
        return accuracy(model, xte, yte)

    return train_fn
