"""MobileNetV3-Large with the topology of ncnn's benchmark model (Tencent/ncnn ``benchmark/models/mobilenet_v3.param``).

Howard et al., "Searching for MobileNetV3", ICCV'19 (arXiv 1905.02244), Table 1 (Large). ncnn's
benchmark file differs from the paper's Table 1 in three places, and the zoo follows the file:

* the last three bottlenecks are (5x5, exp 672, 160, stride 1), (5x5, exp 672, 160, stride 2),
  (5x5, exp 960, 160, stride 1); the paper has (672, s2), (960, s1), (960, s1). The extra 14x14
  bottleneck is why ncnn's net has more MACs (245.6M) than the paper's 219M;
* the SE bottleneck is exp/4 channels with fully connected layers (paper code: make_divisible(exp/4, 8)),
  and the block's activation comes after the SE gate (depthwise-BN-SE-act);
* the classifier applies hard-swish to the pooled 960-vector before the 960->1280 layer (no BN there).

ncnn's HardSwish/HardSigmoid layers in that file use ncnn's defaults (slope 0.2, offset 0.5, i.e.
x * clip(0.2x + 0.5, 0, 1)); the zoo uses torch's hard-swish/hard-sigmoid (slope 1/6) of the paper.
The cost is the same; outputs of a converted checkpoint would differ. ``layout="paper"`` builds the
paper's Table 1 as torchvision's mobilenet_v3_large (5,483,032 params, 216.6M MACs).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.mbconv import Block, mbconv_body
from nets.registry import check, register

__all__ = ["MobileNetV3Large", "NCNN_BLOCKS", "PAPER_BLOCKS"]

_RE, _HS = "relu", "hardswish"
# (k, exp, cout, stride, act, SE width) read off mobilenet_v3.param (Tencent/ncnn a4d2ea1, 2026-07-22)
NCNN_BLOCKS = [
    Block(3, 16, 16, 1, _RE), Block(3, 64, 24, 2, _RE), Block(3, 72, 24, 1, _RE),
    Block(5, 72, 40, 2, _RE, 18), Block(5, 120, 40, 1, _RE, 30), Block(5, 120, 40, 1, _RE, 30),
    Block(3, 240, 80, 2, _HS), Block(3, 200, 80, 1, _HS), Block(3, 184, 80, 1, _HS), Block(3, 184, 80, 1, _HS),
    Block(3, 480, 112, 1, _HS, 120), Block(3, 672, 112, 1, _HS, 168),
    Block(5, 672, 160, 1, _HS, 168), Block(5, 672, 160, 2, _HS, 168), Block(5, 960, 160, 1, _HS, 240),
]


# the paper's Table 1 in torchvision's code (mobilenet_v3_large): SE width make_divisible(exp / 4, 8)
PAPER_BLOCKS = NCNN_BLOCKS[:3] + [
    Block(5, 72, 40, 2, _RE, 24), Block(5, 120, 40, 1, _RE, 32), Block(5, 120, 40, 1, _RE, 32),
] + NCNN_BLOCKS[6:12] + [Block(5, 672, 160, 2, _HS, 168), Block(5, 960, 160, 1, _HS, 240),
                         Block(5, 960, 160, 1, _HS, 240)]


class MobileNetV3Large(nn.Module):
    """Stem 3x3/2 16 hard-swish -> 15 bottlenecks -> 1x1 960 -> pool -> [hswish] -> FC 1280 -> hswish -> FC.

    ``layout="ncnn"``: ncnn's benchmark file (module docstring); ``"paper"``: Table 1 as torchvision's code
    builds it (activation before SE, SE width make_divisible(exp/4, 8), no hard-swish on the pooled vector).
    """

    def __init__(self, num_classes: int = 1000, layout: str = "ncnn"):
        super().__init__()
        ncnn = layout == "ncnn"
        self.features, c = mbconv_body(16, _HS, NCNN_BLOCKS if ncnn else PAPER_BLOCKS, 960, _HS, se_first=ncnn,
                                       se_gate="hardsigmoid", se_act="relu")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        head = [nn.Hardswish()] if ncnn else []
        self.classifier = nn.Sequential(*head, nn.Linear(c, 1280), nn.Hardswish(), nn.Linear(1280, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register("mobilenetv3-large", input_shape=(1, 3, 224, 224), task="classification",
          source="Howard et al., Searching for MobileNetV3, ICCV'19 (arXiv 1905.02244) Table 1; topology of "
                 "Tencent/ncnn benchmark/models/mobilenet_v3.param",
          published_params=5.4e6, published_macs=219e6,
          counts_source="Howard et al. Table 3 (Large 1.0: 219M MAdds, 5.4M params); torchvision "
                        "mobilenet_v3_large: 5,483,032 params",
          notes="ncnn's benchmark topology, not the paper's: one more 14x14 bottleneck (exp 672, 160, stride 1) "
                "before the stride-2 one, exp 672 instead of 960 there, SE width exp/4: MACs +12 % and params "
                "-5 % against the paper (ncnn param file: 245.6M MACs).",
          tags=("imagenet", "ncnn"))
def mobilenetv3_large(num_classes: int = 1000, layout: str = "ncnn") -> nn.Module:
    """MobileNetV3-Large as in ncnn's benchmark (default) or as in the paper (``layout="paper"``)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    check(layout in ("ncnn", "paper"), f"layout must be 'ncnn' or 'paper', got {layout!r}")
    return MobileNetV3Large(num_classes, layout)
