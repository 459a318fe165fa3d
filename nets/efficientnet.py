"""EfficientNet-B0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML'19, arXiv 1905.11946, Table 1).

Stem 3x3/2 32 -> MBConv stages (t, k, c, n, s) = (1,3,16,1,1) (6,3,24,2,2) (6,5,40,2,2) (6,3,80,3,2)
(6,5,112,3,1) (6,5,192,4,2) (6,3,320,1,1) -> 1x1 conv 1280 -> pool -> FC. Swish (SiLU) activations;
squeeze-and-excitation after the depthwise activation, bottleneck int(block input width / 4),
swish inside, sigmoid gate. This is also the topology of ncnn's ``benchmark/models/efficientnet_b0.param``
(checked layer by layer: same conv/FC weights and MACs). Stochastic depth and dropout are training-only.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.mbconv import Block, mbconv_body
from nets.registry import check, register

__all__ = ["EfficientNetB0", "B0_BLOCKS"]

_STAGES = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2), (6, 5, 112, 3, 1),
           (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)]


def _blocks() -> list[Block]:
    blocks, cin = [], 32
    for t, k, c, n, s in _STAGES:
        for i in range(n):
            blocks.append(Block(k, t * cin, c, s if i == 0 else 1, "silu", max(1, cin // 4)))
            cin = c
    return blocks


B0_BLOCKS = _blocks()


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 at width/depth multiplier 1.0."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.features, c = mbconv_body(32, "silu", B0_BLOCKS, 1280, "silu", se_first=False, se_gate="sigmoid",
                                       se_act="silu")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register("efficientnet-b0", input_shape=(1, 3, 224, 224), task="classification",
          source="Tan & Le, EfficientNet, ICML'19 (arXiv 1905.11946) Table 1; = Tencent/ncnn "
                 "benchmark/models/efficientnet_b0.param",
          published_params=5_288_548, published_macs=0.39e9,
          counts_source="Tan & Le Table 2 (B0: 5.3M params, 0.39B FLOPs = MACs); exact params: torchvision "
                        "EfficientNet_B0_Weights.IMAGENET1K_V1 (5,288,548)",
          notes="ncnn param file: 385.8M MACs (the same net).",
          tags=("imagenet", "ncnn"))
def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    """EfficientNet-B0."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    return EfficientNetB0(num_classes, dropout)
