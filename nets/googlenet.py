"""GoogLeNet (Inception v1) as in ncnn's benchmark (Tencent/ncnn ``benchmark/models/googlenet.param``).

Szegedy et al., "Going Deeper with Convolutions", CVPR'15 (arXiv 1409.4842), Table 1; the layout is
Caffe's bvlc_googlenet, which ncnn's file reproduces: conv1 64 7x7/2 -> max-pool 3/2 -> LRN -> conv2
1x1 64 -> conv2 3x3 192 -> LRN -> max-pool 3/2 -> inception 3a, 3b -> max-pool 3/2 -> 4a..4e -> max-pool
3/2 -> 5a, 5b -> average pool 7x7 -> FC 1000. ReLU after every conv, biases, no BN; pools in ceil
mode (Caffe/ncnn). Differences to the paper's training net, all following the file: no auxiliary
classifiers (the paper drops them at inference too) and no dropout (training-only). The 5x5 branches
are real 5x5 convs (torchvision's GoogLeNet uses 3x3 there, and BN: another net). The last pool is
written as a global average pool (identical at 224x224, where the map is 7x7).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.alexnet import LocalResponseNorm
from nets.common import init_weights
from nets.registry import check, register

__all__ = ["GoogLeNet", "Inception", "INCEPTION"]

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of Szegedy et al. Table 1
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.ReLU(inplace=True))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, 2, ceil_mode=True)


class Inception(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3/1 max-pool -> 1x1."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, pp: int):
        super().__init__()
        self.b1 = _conv(cin, c1, 1)
        self.b3 = nn.Sequential(_conv(cin, r3, 1), _conv(r3, c3, 3))
        self.b5 = nn.Sequential(_conv(cin, r5, 1), _conv(r5, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _conv(cin, pp, 1))
        self.cout = c1 + c3 + c5 + pp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class GoogLeNet(nn.Module):
    """bvlc_googlenet without auxiliary heads."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.4):
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 64, 7, 2), _pool(), LocalResponseNorm(), _conv(64, 64, 1),
                                   _conv(64, 192, 3), LocalResponseNorm(), _pool()]
        cin = 192
        for name, cfg in INCEPTION.items():
            block = Inception(cin, *cfg)
            layers.append(block)
            cin = block.cout
            if name in ("3b", "4e"):
                layers.append(_pool())
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register("googlenet", input_shape=(1, 3, 224, 224), task="classification",
          source="Szegedy et al., Going Deeper with Convolutions, CVPR'15 (arXiv 1409.4842) Table 1; Caffe "
                 "bvlc_googlenet = Tencent/ncnn benchmark/models/googlenet.param",
          published_params=6.8e6, published_macs=1.5e9,
          counts_source="Szegedy et al. Sec. 5 / Table 1 (about 6.8M params, 1.5G multiply-adds; per-layer figures "
                        "rounded in the table); Caffe bvlc_googlenet without aux heads: 6,998,552 params",
          notes="params +3 % and MACs +5.5 % against the paper's rounded Table 1 totals; the layer shapes are the "
                "paper's. ncnn param file: 1582.7M MACs, 6,998,552 params (the same net).",
          tags=("imagenet", "ncnn"))
def googlenet(num_classes: int = 1000, dropout: float = 0.4) -> nn.Module:
    """GoogLeNet (Caffe/ncnn layout: LRN, 5x5 branches, no auxiliary classifiers)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    return GoogLeNet(num_classes, dropout)
