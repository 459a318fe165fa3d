"""CondenseNet (ImageNet and CIFAR) and EffCNet, in their converted (inference) form.

CondenseNet: Huang, Liu, van der Maaten, Weinberger, "CondenseNet: An Efficient DenseNet using
Learned Group Convolutions", CVPR'18 (arXiv 1711.09224); layout of the official converted model
(ShichenLiu/CondenseNet, models/condensenet_converted.py, layers.py). Dense layer: BN-ReLU-1x1
group conv (G groups, bottleneck 4k outputs) - channel shuffle(G) - BN-ReLU-3x3 group conv (G
groups, k outputs); output concat(input, new). Increasing growth rate per block, full dense
connectivity, transitions = 2x2 average pool only, final BN-ReLU-global pool, and a classifier
on half of the features (``CondenseLinear``, drop rate 0.5).

Modelling choice: the converted model gathers (``torch.index_select``) the input channels each
group of the learned 1x1 group conv was trained to keep (and the classifier's kept half). A gather
is not one of the IR's ops; we feed the group conv its input in natural channel order (and the
classifier the first half of the features, a ``ChannelSplit``). With C = G, as in all published
configurations, parameters and MACs are exactly those of the converted model; only which channel
feeds which group differs — a fixed permutation that a trained model would fold into its weights.

EffCNet: Kalgaonkar & El-Sharkawy, "EffCNet: An Efficient CondenseNet for Image Classification on
NXP BlueBox" (2021): CondenseNet whose 3x3 group convolutions are replaced by depthwise-separable
convolutions (3x3 depthwise + 1x1 pointwise). The paper's exact configuration is not reproduced
here: we apply that replacement to the CIFAR CondenseNet-86 configuration, so there are no
published counts to compare against.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import ChannelShuffle, ChannelSplit, init_weights
from nets.registry import check, register

__all__ = ["CondenseNet", "CondenseLayer"]


def _bn_relu_conv(cin, cout, k, groups=1, stride=1):
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)]


class CondenseLayer(nn.Module):
    """Converted CondenseNet dense layer; ``separable=True`` gives the EffCNet layer."""

    def __init__(self, cin: int, growth: int, groups: int, bottleneck: int = 4, separable: bool = False):
        super().__init__()
        mid = bottleneck * growth
        self.conv_1 = nn.Sequential(*_bn_relu_conv(cin, mid, 1, groups), ChannelShuffle(groups))
        if separable:
            self.conv_2 = nn.Sequential(*_bn_relu_conv(mid, mid, 3, mid), nn.Conv2d(mid, growth, 1, bias=False))
        else:
            self.conv_2 = nn.Sequential(*_bn_relu_conv(mid, growth, 3, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv_2(self.conv_1(x))), 1)


class CondenseNet(nn.Module):
    """Converted CondenseNet with ``stages`` layers per block and growth rates ``growth``."""

    def __init__(self, stages: tuple[int, ...], growth: tuple[int, ...], num_classes: int, groups: int = 4,
                 bottleneck: int = 4, imagenet: bool = True, separable: bool = False):
        super().__init__()
        c = 2 * growth[0]
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2 if imagenet else 1, 1, bias=False)]
        for i, (n, k) in enumerate(zip(stages, growth)):
            for _ in range(n):
                layers.append(CondenseLayer(c, k, groups, bottleneck, separable))
                c += k
            if i < len(stages) - 1:
                layers.append(nn.AvgPool2d(2, 2))
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.keep = ChannelSplit(int(c * 0.5))  # CondenseLinear(drop_rate=0.5): classifier sees half the features
        self.classifier = nn.Linear(int(c * 0.5), num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        kept, _ = self.keep(x)
        return self.classifier(torch.flatten(kept, 1))


def _checks(num_classes, stages, growth, groups) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    check(len(stages) == len(growth) and len(stages) >= 1, "stages and growth must have the same length >= 1")
    check(all(isinstance(v, int) and v >= 1 for v in (*stages, *growth)), "stages and growth must be positive ints")
    check(isinstance(groups, int) and groups >= 1, f"groups must be a positive int, got {groups!r}")


_SRC = ("Huang et al., CondenseNet: An Efficient DenseNet using Learned Group Convolutions, CVPR'18 (arXiv "
        "1711.09224); ShichenLiu/CondenseNet models/condensenet_converted.py")
_NOTE = ("Converted (inference) model; the learned channel gathers (index_select) are replaced by natural channel "
         "order — same params and MACs for C = G.")
_MAC_NOTE = (" Published FLOPs come from the official counter (utils.measure_model), which adds one op per ReLU "
             "element, k*k per average-pool output and the linear biases to the conv/linear MACs; with that "
             "convention this model gives 529.3M (C=G=4), 274.2M (C=G=8), 65.81M (CIFAR-86), 28.64M (-50), "
             "116.7M (-122), matching the published figures. Conv+linear MACs alone are 2.3 % (ImageNet) and "
             "5.2 % (CIFAR-86) lower than published.")


@register("condensenet", input_shape=(1, 3, 224, 224), task="classification", source=_SRC,
          published_params=4.8e6, published_macs=529e6,
          counts_source="ShichenLiu/CondenseNet README, ImageNet: CondenseNet-74 (C=G=4) 529M FLOPs=MACs, 4.8M params; "
                        "(C=G=8) 274M, 2.9M",
          notes=_NOTE + _MAC_NOTE, tags=("imagenet",))
def condensenet(num_classes: int = 1000, stages: tuple[int, ...] = (4, 6, 8, 10, 8),
                growth: tuple[int, ...] = (8, 16, 32, 64, 128), groups: int = 4, bottleneck: int = 4) -> nn.Module:
    """ImageNet CondenseNet-74; ``groups`` = C = G (4 or 8 in the paper)."""
    _checks(num_classes, stages, growth, groups)
    return CondenseNet(tuple(stages), tuple(growth), num_classes, groups, bottleneck, True)


@register("condensenet86", input_shape=(1, 3, 32, 32), task="classification", source=_SRC + " (CIFAR)",
          published_params=0.52e6, published_macs=65.8e6,
          counts_source="ShichenLiu/CondenseNet README, CIFAR: CondenseNet-86 65.8M FLOPs=MACs, 0.52M params "
                        "(-50: 28.6M/0.22M, -74: 51.9M/0.41M, -98: 81.3M/0.65M, -110: 98.2M/0.79M, -122: 116.7M/0.95M)",
          notes=_NOTE + _MAC_NOTE, tags=("cifar",))
def condensenet86(num_classes: int = 10, stages: tuple[int, ...] = (14, 14, 14), growth: tuple[int, ...] = (8, 16, 32),
                  groups: int = 4, bottleneck: int = 4) -> nn.Module:
    """CIFAR CondenseNet-86 (stages 14-14-14, growth 8-16-32, C = G = 4); depth = 6 * stage + 2."""
    _checks(num_classes, stages, growth, groups)
    return CondenseNet(tuple(stages), tuple(growth), num_classes, groups, bottleneck, False)


@register("effcnet", input_shape=(1, 3, 32, 32), task="classification",
          source="Kalgaonkar & El-Sharkawy, EffCNet: An Efficient CondenseNet for Image Classification on NXP BlueBox "
                 "(2021); base: " + _SRC,
          notes="No published counts reproduced: EffCNet's replacement of CondenseNet's 3x3 group convs by "
                "depthwise-separable convs, applied to the CIFAR CondenseNet-86 configuration. " + _NOTE,
          tags=("cifar",))
def effcnet(num_classes: int = 10, stages: tuple[int, ...] = (14, 14, 14), growth: tuple[int, ...] = (8, 16, 32),
            groups: int = 4, bottleneck: int = 4) -> nn.Module:
    """CondenseNet-86 with depthwise-separable 3x3 convolutions (EffCNet-style)."""
    _checks(num_classes, stages, growth, groups)
    return CondenseNet(tuple(stages), tuple(growth), num_classes, groups, bottleneck, False, separable=True)
