"""Shared helpers of the Brevitas/QONNX tests: BN statistics as after training, and a quiet QONNX export."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn


def trained_bn(model: nn.Module, seed: int) -> nn.Module:
    """Give every batch norm seeded statistics and affine terms like a trained net's (negative gammas included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.randn(c, generator=g))  # negative gammas flip weight rows
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model.eval()


def export(model: nn.Module, x: np.ndarray, path) -> str:
    """``brevitas.export.export_qonnx`` of ``model`` traced on ``x`` to ``path``; returns the path."""
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.from_numpy(x), export_path=str(path))
    return str(path)
