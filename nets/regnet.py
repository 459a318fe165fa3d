"""RegNetY-400MF (Radosavovic et al., "Designing Network Design Spaces", CVPR'20, arXiv 2003.13678).

Stem 3x3/2 32 conv-BN-ReLU, four stages of Y blocks with widths (48, 104, 208, 440), depths
(1, 3, 6, 6), group width 8, bottleneck ratio 1, SE ratio 0.25 of the block input width; global pool
and FC (no head conv). A Y block: 1x1 conv-BN-ReLU -> 3x3 grouped conv (stride on the first block of
a stage)-BN-ReLU -> SE (ReLU, sigmoid gate) -> 1x1 conv-BN; shortcut = identity or 1x1/stride conv-BN
when the shape changes; ReLU after the add. Parameters as pycls's RegNetY-400MF (w0 48, wa 27.89,
wm 2.09, depth 16, g 8), quantised widths as listed. This is also the topology of ncnn's
``benchmark/models/regnety_400m.param`` (checked layer by layer: same conv/FC weights and MACs).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import ConvBNAct, SqueezeExcite, init_weights
from nets.registry import check, register

__all__ = ["RegNetY", "YBlock"]

_WIDTHS, _DEPTHS, _GROUP_WIDTH, _SE_RATIO = (48, 104, 208, 440), (1, 3, 6, 6), 8, 0.25


class YBlock(nn.Module):
    """Residual bottleneck (ratio 1) with a grouped 3x3 conv and SE; ReLU after the residual add."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int = _GROUP_WIDTH, se_ratio: float = _SE_RATIO):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(cin, cout, 1),
            ConvBNAct(cout, cout, 3, stride, groups=cout // group_width),
            SqueezeExcite(cout, int(round(cin * se_ratio)), gate="sigmoid", act="relu"),
            ConvBNAct(cout, cout, 1, act=None),
        )
        self.shortcut = ConvBNAct(cin, cout, 1, stride, act=None) if (stride != 1 or cin != cout) else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.body(x))


class RegNetY(nn.Module):
    """RegNetY with the given stage widths and depths (stride 2 at the start of every stage)."""

    def __init__(self, num_classes: int = 1000, widths=_WIDTHS, depths=_DEPTHS):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2)]
        cin = 32
        for w, d in zip(widths, depths):
            for i in range(d):
                layers.append(YBlock(cin, w, 2 if i == 0 else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register("regnety-400mf", input_shape=(1, 3, 224, 224), task="classification",
          source="Radosavovic et al., Designing Network Design Spaces, CVPR'20 (arXiv 2003.13678); = Tencent/ncnn "
                 "benchmark/models/regnety_400m.param",
          published_params=4_344_144, published_macs=0.40e9,
          counts_source="Radosavovic et al. (RegNetY-400MF: 4.3M params, 0.4 GF = MACs); exact params: "
                        "torchvision RegNet_Y_400MF_Weights.IMAGENET1K_V1 (4,344,144; 0.40 GFLOPS)",
          notes="ncnn param file: 401.8M MACs (the same net).",
          tags=("imagenet", "ncnn"))
def regnety_400mf(num_classes: int = 1000) -> nn.Module:
    """RegNetY-400MF."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    return RegNetY(num_classes)
