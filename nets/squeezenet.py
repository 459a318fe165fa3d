"""SqueezeNet 1.1 as in ncnn's benchmark (Tencent/ncnn ``benchmark/models/squeezenet.param``).

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
arXiv 1602.07360; version 1.1 from the authors' repository (DeepScale/SqueezeNet, SqueezeNet_v1.1):
conv1 64 3x3/2 (instead of 1.0's 96 7x7/2) and the max-pools moved earlier (after conv1, fire3,
fire5), which cuts the computation 2.4x at the same accuracy. Fire module: 1x1 squeeze s -> ReLU ->
[1x1 expand e, 3x3 expand e] -> ReLU -> concat. Fire widths (s, e): (16,64) x2, pool, (32,128) x2,
pool, (48,192) x2, (64,256) x2; then conv10 1x1 1000 -> ReLU -> global average pool.
Biases everywhere, no BN; pools 3x3/2 in ceil mode (Caffe/ncnn), dropout before conv10 is training-only.

Follows ncnn's file where it differs from torchvision's squeezenet1_1: a 227x227 input (ncnn's
benchncnn feeds 227x227) and conv10 with padding 1, so conv10 runs on a 16x16 map instead of 14x14
(its zero-padded border adds 31 % to conv10's MACs; the global pool then averages over 16x16).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.registry import check, register

__all__ = ["Fire", "SqueezeNet11"]


class Fire(nn.Module):
    """Squeeze 1x1 (s) -> ReLU -> concat(expand 1x1 (e), expand 3x3 (e)) -> ReLU."""

    def __init__(self, cin: int, s: int, e: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, s, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(s, e, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(s, e, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1 with ncnn's padded conv10 (``conv10_pad=1``; 0 gives torchvision's layout)."""

    def __init__(self, num_classes: int = 1000, conv10_pad: int = 1, dropout: float = 0.5):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64), Fire(128, 16, 64), pool(),
            Fire(128, 32, 128), Fire(256, 32, 128), pool(),
            Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(512, num_classes, 1, padding=conv10_pad),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


@register("squeezenet1.1", input_shape=(1, 3, 227, 227), task="classification",
          source="Iandola et al., SqueezeNet, arXiv 1602.07360; v1.1 of DeepScale/SqueezeNet; topology of "
                 "Tencent/ncnn benchmark/models/squeezenet.param",
          published_params=1_235_496, published_macs=0.35e9,
          counts_source="torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1 (num_params 1,235,496; 0.35 GFLOPS = MACs "
                        "at 224x224, conv10 unpadded)",
          notes="ncnn's 227x227 input and padded conv10 (16x16 instead of 14x14): MACs +20 % against "
                "torchvision's 0.35G (ncnn param file: 418.5M MACs); params identical.",
          tags=("imagenet", "ncnn"))
def squeezenet1_1(num_classes: int = 1000, conv10_pad: int = 1, dropout: float = 0.5) -> nn.Module:
    """SqueezeNet 1.1; ``conv10_pad=1`` as ncnn's file, 0 as torchvision."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    check(conv10_pad in (0, 1), f"conv10_pad must be 0 or 1, got {conv10_pad!r}")
    return SqueezeNet11(num_classes, conv10_pad, dropout)
