"""MobileNetV1 and MobileNetV2.

MobileNetV1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv 1704.04861, Table 1 (body) and Table 6 (width multiplier). Each separable
layer is 3x3 depthwise conv-BN-ReLU then 1x1 pointwise conv-BN-ReLU; channels are int(c * alpha)
(the paper's rule, no rounding to multiples of 8).

MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR'18
(arXiv 1801.04381), Table 2, layout of torchvision/models/mobilenetv2.py: channels rounded with
``make_divisible(c * width_mult, 8)``, last conv 1280 channels kept at 1280 for width_mult <= 1
(scaled above), ReLU6, linear bottlenecks, residual when stride 1 and cin == cout.
``layout="ncnn"`` builds Tencent/ncnn's ``benchmark/models/mobilenet_v2.param`` (commit a4d2ea1; a Caffe
conversion), whose timings ``benchncnn`` reports: the first bottleneck (t = 1) keeps a 1x1 "expand" conv
32 -> 32 (+1,024 weights, +12.8 M MACs: 313.6 M instead of 300.8 M) and every activation is ReLU instead
of ReLU6 (same cost). BN stays a separate layer (folded into conv biases in ncnn's file; folding changes
neither weights nor MACs).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import ConvBNAct, init_weights, make_divisible
from nets.registry import check, register

__all__ = ["MobileNetV1", "MobileNetV2", "InvertedResidual"]

# (out channels, stride) of the 13 depthwise-separable layers, Howard et al. Table 1.
_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """MobileNetV1 at width multiplier ``width_mult`` (alpha)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        c = lambda v: max(1, int(v * width_mult))  # noqa: E731 — paper: M -> alpha*M
        layers: list[nn.Module] = [ConvBNAct(3, c(32), 3, 2)]
        cin = c(32)
        for cout, s in _V1:
            layers += [ConvBNAct(cin, cin, 3, s, groups=cin), ConvBNAct(cin, c(cout), 1)]
            cin = c(cout)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """1x1 expand (t; omitted at t = 1 unless ``expand_conv``) -> 3x3 depthwise (stride) -> 1x1 linear project;
    residual if stride 1 and cin == cout. ``act``: the activation after expand and depthwise."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: str = "relu6", expand_conv: bool = False):
        super().__init__()
        hidden = int(round(cin * expand))
        layers: list[nn.Module] = []
        if expand != 1 or expand_conv:
            layers.append(ConvBNAct(cin, hidden, 1, act=act))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=act),
            ConvBNAct(hidden, cout, 1, act=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


# (t, c, n, s) of Sandler et al. Table 2.
_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """MobileNetV2 at width multiplier ``width_mult``; ``dropout`` before the classifier as in torchvision.

    ``layout="ncnn"``: expand conv in the first bottleneck too, ReLU instead of ReLU6 (module docstring).
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 layout: str = "torchvision"):
        super().__init__()
        ncnn = layout == "ncnn"
        act = "relu" if ncnn else "relu6"
        cin = make_divisible(32 * width_mult, 8)
        last = make_divisible(1280 * max(1.0, width_mult), 8)
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2, act=act)]
        for t, c, n, s in _V2:
            cout = make_divisible(c * width_mult, 8)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, act, expand_conv=ncnn))
                cin = cout
        layers.append(ConvBNAct(cin, last, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _checks(num_classes: int, width_mult: float) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    check(isinstance(width_mult, (int, float)) and 0 < width_mult <= 4, f"width_mult must be in (0, 4], got {width_mult!r}")


@register("mobilenetv1", input_shape=(1, 3, 224, 224), task="classification",
          source="Howard et al., MobileNets, arXiv 1704.04861 (Table 1)",
          published_params=4.2e6, published_macs=569e6,
          counts_source="Howard et al. Table 6 (1.0 MobileNet-224: 569M mult-adds, 4.2M params); "
                        "0.75: 325M/2.6M, 0.5: 149M/1.3M, 0.25: 41M/0.5M",
          tags=("imagenet",))
def mobilenetv1(num_classes: int = 1000, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV1; ``width_mult`` is the paper's alpha (0.25, 0.5, 0.75, 1.0)."""
    _checks(num_classes, width_mult)
    return MobileNetV1(num_classes, width_mult)


@register("mobilenetv2", input_shape=(1, 3, 224, 224), task="classification",
          source="Sandler et al., MobileNetV2, CVPR'18 (arXiv 1801.04381) Table 2; torchvision layout",
          published_params=3_504_872, published_macs=300e6,
          counts_source="exact params: torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (3,504,872); MACs: Sandler et "
                        "al. Table 4 (300M). Official checkpoint table (tensorflow/models research/slim/nets/mobilenet "
                        "README): 1.0: 300M/3.47M, 1.4: 582M/6.06M, 0.5: 97M/1.95M (the paper's 6.9M for 1.4 disagrees "
                        "with its own checkpoint)",
          tags=("imagenet",))
def mobilenetv2(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                layout: str = "torchvision") -> nn.Module:
    """MobileNetV2; ``width_mult`` e.g. 0.35, 0.5, 0.75, 1.0, 1.3, 1.4; ``layout="ncnn"``: ncnn's benchmark
    mobilenet_v2.param (module docstring; the file is width 1.0)."""
    _checks(num_classes, width_mult)
    check(layout in ("torchvision", "ncnn"), f"layout must be 'torchvision' or 'ncnn', got {layout!r}")
    return MobileNetV2(num_classes, width_mult, dropout, layout)
