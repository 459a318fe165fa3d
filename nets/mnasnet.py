"""MnasNet 1.0 and ProxylessNAS (mobile) with the topologies of ncnn's benchmark models.

MnasNet: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR'19
(arXiv 1807.11626). ncnn's ``benchmark/models/mnasnet.param`` is the SE-free variant of torchvision's
``mnasnet1_0`` (MnasNet-B1 layout): stem 3x3/2 32, separable 3x3 block to 16, six MBConv stages
(t, k, c, n) = (3,3,24,3) (3,5,40,3) (6,5,80,3) (6,3,96,2) (6,5,192,4) (6,3,320,1), 1x1 conv 1280, ReLU
throughout. The paper's headline MnasNet-A1 (3.9M params, 312M MACs) has SE modules and a different
stage layout; the zoo compares against torchvision's counts for this layout instead.

ProxylessNAS: Cai et al., "ProxylessNAS: Direct Neural Architecture Search on Target Task and
Hardware", ICLR'19 (arXiv 1812.00332), the mobile-searched net (Fig. 4). Blocks read off ncnn's
``benchmark/models/proxylessnasnet.param``. Where the file differs from the published mobile net:
the first separable block outputs 32 channels (not 16), so the next expansion (48 channels, 3 x 16)
is 1.5 x its input width (``first_width=16`` builds the published net: 4,080,512 params, 320.4M MACs,
the published figures); activations are ReLU (the official code uses ReLU6; same cost). All other
blocks (kernels, expansions, the skipped "zero" blocks of stage 2) agree with the published config.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.mbconv import Block, mbconv_body
from nets.registry import check, register

__all__ = ["MBConvNet", "MNASNET_BLOCKS", "PROXYLESS_BLOCKS"]


def _stages(spec: list[tuple[int, int, int, int, int]], cin: int) -> list[Block]:
    """(expansion t, kernel, cout, repeats, first stride) stages -> blocks (expanded width = t * block input)."""
    blocks = []
    for t, k, c, n, s in spec:
        for i in range(n):
            blocks.append(Block(k, t * cin, c, s if i == 0 else 1))
            cin = c
    return blocks


# block 1 is the separable 3x3 on the 32-channel stem output (no expansion)
MNASNET_BLOCKS = [Block(3, 32, 16, 1)] + _stages(
    [(3, 3, 24, 3, 2), (3, 5, 40, 3, 2), (6, 5, 80, 3, 2), (6, 3, 96, 2, 1), (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)], 16)

# (k, exp, cout, stride) read off proxylessnasnet.param (Tencent/ncnn a4d2ea1, 2026-07-22)
PROXYLESS_BLOCKS = [Block(k, e, c, s) for k, e, c, s in [
    (3, 32, 32, 1), (5, 48, 32, 2), (3, 96, 32, 1),
    (7, 96, 40, 2), (3, 120, 40, 1), (5, 120, 40, 1), (5, 120, 40, 1),
    (7, 240, 80, 2), (5, 240, 80, 1), (5, 240, 80, 1), (5, 240, 80, 1),
    (5, 480, 96, 1), (5, 288, 96, 1), (5, 288, 96, 1), (5, 288, 96, 1),
    (7, 576, 192, 2), (7, 1152, 192, 1), (7, 576, 192, 1), (7, 576, 192, 1),
    (7, 1152, 320, 1),
]]


class MBConvNet(nn.Module):
    """Stem 3x3/2 32 -> MBConv blocks -> 1x1 conv 1280 -> global average pool -> FC (ReLU activations)."""

    def __init__(self, blocks: list[Block], num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.features, c = mbconv_body(32, "relu", blocks, 1280, "relu")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _check(num_classes: int) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")


@register("mnasnet1.0", input_shape=(1, 3, 224, 224), task="classification",
          source="Tan et al., MnasNet, CVPR'19 (arXiv 1807.11626); SE-free layout of torchvision mnasnet1_0 = "
                 "Tencent/ncnn benchmark/models/mnasnet.param",
          published_params=4_383_312, published_macs=0.31e9,
          counts_source="torchvision MNASNet1_0_Weights.IMAGENET1K_V1 (num_params 4,383,312; 0.31 GFLOPS = MACs); "
                        "the paper's MnasNet-A1 (with SE): 3.9M params, 312M MACs (tensorflow/tpu mnasnet README)",
          notes="ncnn param file: 314.4M MACs (the same net).",
          tags=("imagenet", "ncnn"))
def mnasnet1_0(num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    """MnasNet 1.0 (SE-free, torchvision/ncnn layout)."""
    _check(num_classes)
    return MBConvNet(MNASNET_BLOCKS, num_classes, dropout)


@register("proxylessnas-mobile", input_shape=(1, 3, 224, 224), task="classification",
          source="Cai et al., ProxylessNAS, ICLR'19 (arXiv 1812.00332) Fig. 4 (mobile); topology of "
                 "Tencent/ncnn benchmark/models/proxylessnasnet.param",
          published_params=4_080_512, published_macs=320e6,
          counts_source="params of the published mobile config: osmr/imgclsmob pytorch/pytorchcv/models/"
                        "proxylessnas.py (4,080,512); 320M MACs as tabulated for ProxylessNAS-mobile in later "
                        "comparisons (e.g. Chu et al., MoGA, arXiv 1908.01314). This builder with first_width=16 "
                        "gives 4,080,512 params and 320.4M MACs",
          notes="ncnn's topology (first block 32 channels wide instead of 16): MACs +5 % against the published "
                "320M (ncnn param file: 336.5M MACs); params within 0.1 %.",
          tags=("imagenet", "ncnn"))
def proxylessnas_mobile(num_classes: int = 1000, dropout: float = 0.2, first_width: int = 32) -> nn.Module:
    """ProxylessNAS-mobile as in ncnn's benchmark; ``first_width=16`` gives the published mobile net."""
    _check(num_classes)
    check(first_width in (16, 32), f"first_width must be 16 (published) or 32 (ncnn's file), got {first_width!r}")
    return MBConvNet([Block(3, 32, first_width, 1)] + PROXYLESS_BLOCKS[1:], num_classes, dropout)
