"""ShuffleNetV1, ShuffleNetV2 (ImageNet) and AugShuffleNet (CIFAR).

ShuffleNetV1: Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", CVPR'18 (arXiv 1707.01083), Table 1; layout of the official Megvii code
(megvii-model/ShuffleNet-Series, ShuffleNetV1/blocks.py, network.py): unit = 1x1 group conv
(the very first unit of stage 2 ungrouped) -BN-ReLU -> channel shuffle -> 3x3 depthwise (stride)
-BN -> 1x1 group conv -BN; stride 1: ReLU(x + f(x)); stride 2: concat(avgpool3x3/2(x), ReLU(f(x)))
with f producing Cout - Cin channels; bottleneck = Cout / 4; stages repeat (4, 8, 4); classifier
without bias. The shuffle is the paper's (reshape (g, C/g) -> transpose), a ``ChannelShuffle``.
``layout="ncnn"`` builds Tencent/ncnn's ``benchmark/models/shufflenet.param`` (commit a4d2ea1; a Caffe
model, g = 3, 1x), whose timings ``benchncnn`` reports: a stage's stride-2 unit has bottleneck
(Cout - Cin) / 4 (54, 60, 120 instead of 60, 120, 240: 127.1 M MACs instead of 137.5 M), the first unit has
no shuffle after its ungrouped 1x1 conv, the ReLU of a stride-2 unit follows the concat, the pools (3x3/2
max after the stem, 3x3/2 average on the shortcut) are unpadded in ceil mode (Caffe), and the classifier
has a bias. BN stays a separate layer (folded into conv biases in ncnn's file).

ShuffleNetV2: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV'18 (arXiv 1807.11164), Table 5; unit as in the paper's Fig. 3(c)/(d) and
torchvision's layout: stride 1: ``ChannelSplit`` (first half bypasses; slicing ``x[:, :c]``),
1x1-BN-ReLU, 3x3 dw-BN, 1x1-BN-ReLU on the second half, concat, shuffle(2); stride 2: both branches
see the full input. conv5 1x1 to 1024 (2048 at 2.0x), global pool, FC (no bias, as Megvii).

AugShuffleNet: Ye, "AugShuffleNet: Communicate More, Compute Less", arXiv 2203.06589; layout of
the author's code (github.com/ohmydroid/AugShuffleNet-Plus, models/augshufflenetv2.py), for CIFAR
(32x32, stride-1 stem, no max pool). Basic block: split channels into (c2, c2, c1) with
c1 = int(r*C) (r = 3/8; 1/2 in the first stage); c1 -> 1x1-BN -> 3x3 dw-BN -> halves (a, b);
concat(b, x2) -> 1x1-BN-ReLU; output concat(a, x1, that). The "-Plus" repository drops the
channel shuffle that ends the block in the paper's version; we keep it (``shuffle=True``,
groups 2), which changes neither parameters nor MACs.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import ChannelShuffle, ChannelSplit, init_weights
from nets.registry import check, register

__all__ = ["ShuffleNetV1", "ShuffleNetV2", "AugShuffleNet"]


def _bn_conv(cin, cout, k=1, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


# ---------------------------------------------------------------- ShuffleNetV1
class ShuffleV1Unit(nn.Module):
    """ShuffleNet unit (Zhang et al. Fig. 2 (b) stride 1, (c) stride 2); ``ncnn``: ncnn's layout (module docstring)."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int, first_group: bool, ncnn: bool = False):
        super().__init__()
        self.stride, self.ncnn = stride, ncnn
        out = cout - cin if stride == 2 else cout
        mid = out // 4 if ncnn else cout // 4
        self.gconv1 = nn.Sequential(*_bn_conv(cin, mid, 1, groups=1 if first_group else groups), nn.ReLU(inplace=True))
        shuffled = groups > 1 and not (ncnn and first_group)
        self.shuffle = ChannelShuffle(groups) if shuffled else nn.Identity()
        self.dwconv = nn.Sequential(*_bn_conv(mid, mid, 3, stride, groups=mid))
        self.gconv2 = nn.Sequential(*_bn_conv(mid, out, 1, groups=groups))
        self.relu = nn.ReLU(inplace=True)
        pool = nn.AvgPool2d(3, 2, 0, ceil_mode=True) if ncnn else nn.AvgPool2d(3, 2, 1)
        self.proj = pool if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv2(self.dwconv(self.shuffle(self.gconv1(x))))
        if self.stride == 1:
            return self.relu(x + y)
        if self.ncnn:
            return self.relu(torch.cat((self.proj(x), y), 1))
        return torch.cat((self.proj(x), self.relu(y)), 1)


# Stage output channels at 1x (Zhang et al. Table 1), by group count.
_V1_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
_V1_STEM = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}  # Megvii network.py stage_out_channels[1]


class ShuffleNetV1(nn.Module):
    """ShuffleNetV1 s x (width_mult) with ``groups`` in {1, 2, 3, 4, 8}, 224x224; ``layout``: "megvii" or "ncnn"."""

    def __init__(self, num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0, layout: str = "megvii"):
        super().__init__()
        ncnn = layout == "ncnn"
        stem = _V1_STEM[width_mult]
        chans = [int(c * width_mult) for c in _V1_CHANNELS[groups]]
        self.first_conv = nn.Sequential(*_bn_conv(3, stem, 3, 2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 0, ceil_mode=True) if ncnn else nn.MaxPool2d(3, 2, 1)
        units, cin = [], stem
        for s, (cout, n) in enumerate(zip(chans, (4, 8, 4))):
            for i in range(n):
                units.append(ShuffleV1Unit(cin, cout, groups, 2 if i == 0 else 1, s == 0 and i == 0, ncnn))
                cin = cout
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(cin, num_classes, bias=ncnn)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(torch.flatten(self.globalpool(x), 1))


# ---------------------------------------------------------------- ShuffleNetV2
class ShuffleV2Unit(nn.Module):
    """ShuffleNetV2 unit (Ma et al. Fig. 3 (c) stride 1 with channel split, (d) stride 2)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 1:
            self.split = ChannelSplit(cin // 2)
            b_in = cin // 2
        else:
            self.branch1 = nn.Sequential(*_bn_conv(cin, cin, 3, stride, groups=cin), *_bn_conv(cin, half, 1),
                                         nn.ReLU(inplace=True))
            b_in = cin
        self.branch2 = nn.Sequential(*_bn_conv(b_in, half, 1), nn.ReLU(inplace=True),
                                     *_bn_conv(half, half, 3, stride, groups=half),
                                     *_bn_conv(half, half, 1), nn.ReLU(inplace=True))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = self.split(x)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return self.shuffle(out)


# (stage channels, conv5 channels), Ma et al. Table 5.
_V2_CHANNELS = {0.5: ((48, 96, 192), 1024), 1.0: ((116, 232, 464), 1024), 1.5: ((176, 352, 704), 1024),
                2.0: ((244, 488, 976), 2048)}


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 at 0.5x / 1x / 1.5x / 2x, 224x224."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        chans, last = _V2_CHANNELS[width_mult]
        self.conv1 = nn.Sequential(*_bn_conv(3, 24, 3, 2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, cin = [], 24
        for cout, n in zip(chans, (4, 8, 4)):
            for i in range(n):
                units.append(ShuffleV2Unit(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*units)
        self.conv5 = nn.Sequential(*_bn_conv(cin, last, 1), nn.ReLU(inplace=True))
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(last, num_classes, bias=False)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.maxpool(self.conv1(x))))
        return self.fc(torch.flatten(self.globalpool(x), 1))


# ---------------------------------------------------------------- AugShuffleNet
class AugDownBlock(nn.Module):
    """Stride-2 block of the AugShuffleNet code: ShuffleNetV2 stride-2 unit without the final shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half = cout // 2
        self.left = nn.Sequential(*_bn_conv(cin, cin, 3, 2, groups=cin), *_bn_conv(cin, half, 1), nn.ReLU(inplace=True))
        self.right = nn.Sequential(*_bn_conv(cin, half, 1), nn.ReLU(inplace=True),
                                   *_bn_conv(half, half, 3, 2, groups=half), *_bn_conv(half, half, 1),
                                   nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.left(x), self.right(x)), 1)


class AugShuffleBlock(nn.Module):
    """AugShuffleNet basic block (see module docstring); channels in == out == C."""

    def __init__(self, channels: int, split_ratio: float, shuffle: bool):
        super().__init__()
        c1 = int(channels * split_ratio)
        c2 = (channels - c1) // 2
        cout = channels // 2
        check(c1 % 2 == 0 and c1 // 2 + c2 == cout and 2 * c2 + c1 == channels,
              f"AugShuffleNet: {channels} channels cannot be split with ratio {split_ratio}")
        self.split_a = ChannelSplit(c2)       # x1 | rest
        self.split_b = ChannelSplit(c2)       # x2 | x3
        self.branch = nn.Sequential(*_bn_conv(c1, c1, 1), *_bn_conv(c1, c1, 3, groups=c1))
        self.split_c = ChannelSplit(c1 // 2)  # chunk(2)
        self.fuse = nn.Sequential(*_bn_conv(cout, cout, 1), nn.ReLU(inplace=True))
        self.shuffle = ChannelShuffle(2) if shuffle else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, rest = self.split_a(x)
        x2, x3 = self.split_b(rest)
        a, b = self.split_c(self.branch(x3))
        y = self.fuse(torch.cat((b, x2), 1))
        return self.shuffle(torch.cat((a, x1, y), 1))


# Author's configs: stage channels (+ conv5) and basic blocks per stage (after one down block).
_AUG = {0.5: ((48, 96, 192), 1024), 1.0: ((120, 240, 480), 1024), 1.5: ((176, 352, 704), 1024)}


class AugShuffleNet(nn.Module):
    """AugShuffleNet for 32x32 CIFAR inputs."""

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, split_ratio: float = 0.375, shuffle: bool = True):
        super().__init__()
        chans, last = _AUG[width_mult]
        self.stem = nn.Sequential(*_bn_conv(3, 24, 3, 1), nn.ReLU(inplace=True))
        layers, cin = [], 24
        for s, (cout, n) in enumerate(zip(chans, (3, 7, 3))):
            layers.append(AugDownBlock(cin, cout))
            layers += [AugShuffleBlock(cout, 0.5 if s == 0 else split_ratio, shuffle) for _ in range(n)]
            cin = cout
        self.stages = nn.Sequential(*layers)
        self.conv5 = nn.Sequential(*_bn_conv(cin, last, 1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.stem(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


def _nc(num_classes) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")


@register("shufflenetv1", input_shape=(1, 3, 224, 224), task="classification",
          source="Zhang et al., ShuffleNet, CVPR'18 (arXiv 1707.01083) Table 1; megvii-model/ShuffleNet-Series ShuffleNetV1",
          published_params=1.9e6, published_macs=138e6,
          counts_source="megvii-model/ShuffleNet-Series ShuffleNetV1/README.md (1.0x, group=3: 138M FLOPs=MACs, 1.9M "
                        "params); paper Table 1: 1x g=1/2/3/4/8 = 143/140/137/133/137 MFLOPs",
          tags=("imagenet",))
def shufflenetv1(num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0, layout: str = "megvii") -> nn.Module:
    """ShuffleNetV1; ``groups`` in {1, 2, 3, 4, 8}; ``width_mult`` (the paper's s) in {0.5, 1.0, 1.5, 2.0};
    ``layout="ncnn"``: ncnn's benchmark shufflenet.param (module docstring; the file is g = 3, 1x)."""
    _nc(num_classes)
    check(groups in _V1_CHANNELS, f"groups must be one of {sorted(_V1_CHANNELS)}, got {groups!r}")
    check(width_mult in _V1_STEM, f"width_mult must be one of {sorted(_V1_STEM)}, got {width_mult!r}")
    check(layout in ("megvii", "ncnn"), f"layout must be 'megvii' or 'ncnn', got {layout!r}")
    cin = _V1_STEM[width_mult]
    for c in (int(c * width_mult) for c in _V1_CHANNELS[groups]):
        mid = (c - cin) // 4 if layout == "ncnn" else c // 4  # the stage's first (stride-2) unit
        check(mid % groups == 0 and c // 4 % groups == 0 and (c - cin) % groups == 0,
              f"shufflenetv1: width_mult={width_mult} with groups={groups} (layout={layout!r}) gives channels not "
              "divisible by groups")
        cin = c
    return ShuffleNetV1(num_classes, groups, width_mult, layout)


@register("shufflenetv2", input_shape=(1, 3, 224, 224), task="classification",
          source="Ma et al., ShuffleNet V2, ECCV'18 (arXiv 1807.11164) Table 5; torchvision / Megvii layout",
          published_params=2.3e6, published_macs=146e6,
          counts_source="megvii-model/ShuffleNet-Series ShuffleNetV2/README.md (1.0x: 146M FLOPs=MACs, 2.3M params; "
                        "0.5x 41M/1.4M, 1.5x 299M/3.5M, 2.0x 591M/7.4M)",
          tags=("imagenet",))
def shufflenetv2(num_classes: int = 1000, width_mult: float = 1.0) -> nn.Module:
    """ShuffleNetV2; ``width_mult`` in {0.5, 1.0, 1.5, 2.0}."""
    _nc(num_classes)
    check(width_mult in _V2_CHANNELS, f"width_mult must be one of {sorted(_V2_CHANNELS)}, got {width_mult!r}")
    return ShuffleNetV2(num_classes, width_mult)


@register("augshufflenet", input_shape=(1, 3, 32, 32), task="classification",
          source="Ye, AugShuffleNet: Communicate More, Compute Less, arXiv 2203.06589; github.com/ohmydroid/AugShuffleNet-Plus "
                 "models/augshufflenetv2.py (CIFAR)",
          published_params=1.21e6, published_macs=43.55e6,
          counts_source="ohmydroid/AugShuffleNet-Plus README, CIFAR-10, AugShuffleNet 1.0x: 43.55M MAdds, 1.21M params "
                        "(0.5x: 10.20M/0.33M, 1.5x: 85.38M/2.22M); the shuffle it removes has no params/MACs",
          tags=("cifar",))
def augshufflenet(num_classes: int = 10, width_mult: float = 1.0, split_ratio: float = 0.375,
                  shuffle: bool = True) -> nn.Module:
    """AugShuffleNet for CIFAR; ``width_mult`` in {0.5, 1.0, 1.5}; ``split_ratio`` r of stages 2-3."""
    _nc(num_classes)
    check(width_mult in _AUG, f"width_mult must be one of {sorted(_AUG)}, got {width_mult!r}")
    check(0 < split_ratio <= 0.5, f"split_ratio must be in (0, 0.5], got {split_ratio!r}")
    return AugShuffleNet(num_classes, width_mult, split_ratio, shuffle)
