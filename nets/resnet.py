"""ResNets: ImageNet ResNet-18/34/50 and CIFAR ResNet-20/56.

ImageNet variants follow He et al., "Deep Residual Learning for Image Recognition", CVPR'16,
Table 1, in the torchvision layout (``torchvision/models/resnet.py``): projection shortcuts (1x1
conv + BN) where shape changes, and for the bottleneck the stride on the 3x3 conv ("ResNet v1.5"),
which is what the 4.09 GMAC figure of ResNet-50 refers to.

``layout="ncnn"`` builds the Caffe ResNets of Tencent/ncnn's ``benchmark/models/resnet18.param`` and
``resnet50.param`` (commit a4d2ea1), whose timings ``benchncnn`` reports: the bottleneck carries the stride on
its first 1x1 conv (the paper's v1: 3.86 G MACs instead of 4.09 G, same weights), the first block of every
stage has a 1x1 projection shortcut even when the shape is kept (ResNet-18's first stage: +12.8 M MACs,
+4,096 weights), the max pool after the stem is 3x3/2 unpadded in ceil mode (Caffe), and the classifier
pool averages the 7x7 map (our adaptive pool, equal at 224x224). BN stays a separate layer (ncnn's file has
it folded into conv biases; folding changes neither weights nor MACs of the convs).

CIFAR variants follow Sec. 4.2 of the same paper: 3 stages of n basic blocks with 16/32/64
channels on 32x32 inputs (depth 6n+2). The paper uses parameter-free option-A shortcuts (strided
identity + zero channel padding); we use option B (1x1 conv + BN projection) on the two
down-sampling blocks, because a zero-padded strided identity is not one of the IR's ops. This adds
2,752 parameters (+1.0 % on ResNet-20, +0.3 % on ResNet-56) and 0.3 M MACs.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.registry import check, register

__all__ = ["ResNet", "CifarResNet", "BasicBlock", "Bottleneck", "BottleneckV1"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (1x1 projection on shape change or with ``project``);
    ReLU after the add."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, project: bool = False):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if project or stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, v1.5) -> 1x1 expand (x4), projection shortcut on shape change
    (or always, with ``project``)."""

    expansion = 4
    stride_on_reduce = False  # True: the first 1x1 carries the stride (v1, :class:`BottleneckV1`)

    def __init__(self, cin: int, planes: int, stride: int = 1, project: bool = False):
        super().__init__()
        cout = planes * self.expansion
        s1, s2 = (stride, 1) if self.stride_on_reduce else (1, stride)
        self.conv1 = nn.Conv2d(cin, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if project or stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class BottleneckV1(Bottleneck):
    """Bottleneck with the stride on the first 1x1 conv (He et al. v1; Caffe / ncnn ResNet-50)."""

    stride_on_reduce = True


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem + 3x3/2 max pool, four stages (64, 128, 256, 512) x width, global pool, FC.

    ``layout="ncnn"``: a 1x1 projection shortcut on the first block of every stage and an unpadded ceil-mode max
    pool (the Caffe layout of ncnn's benchmark files; the block class picks the bottleneck's stride position).
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], num_classes: int = 1000, base_width: int = 64,
                 layout: str = "torchvision"):
        super().__init__()
        ncnn = layout == "ncnn"
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 0, ceil_mode=True) if ncnn else nn.MaxPool2d(3, 2, 1)
        cin = base_width
        stages = []
        for i, n in enumerate(layers):
            planes = base_width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, project=ncnn and j == 0))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. Sec. 4.2): 3x3 conv 16, three stages of n basic blocks (16, 32, 64) x width, pool, FC."""

    def __init__(self, n: int, num_classes: int = 10, base_width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        cin = base_width
        stages = []
        for i in range(3):
            planes = base_width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _check_common(num_classes: int, base_width: int, layout: str = "torchvision") -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    check(isinstance(base_width, int) and base_width > 0, f"base_width must be a positive int, got {base_width!r}")
    check(layout in ("torchvision", "ncnn"), f"layout must be 'torchvision' or 'ncnn', got {layout!r}")


_HE = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv 1512.03385); layout of torchvision/models/resnet.py"
_TV = "torchvision model docs (ResNet*_Weights.IMAGENET1K_V1: params, GFLOPS=GMACs)"


@register("resnet18", input_shape=(1, 3, 224, 224), task="classification", source=_HE,
          published_params=11_689_512, published_macs=1.814e9, counts_source=_TV, tags=("imagenet",))
def resnet18(num_classes: int = 1000, base_width: int = 64, layout: str = "torchvision") -> nn.Module:
    """ResNet-18: basic blocks (2, 2, 2, 2); ``layout="ncnn"``: ncnn's benchmark resnet18.param (module docstring)."""
    _check_common(num_classes, base_width, layout)
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, base_width, layout)


@register("resnet34", input_shape=(1, 3, 224, 224), task="classification", source=_HE,
          published_params=21_797_672, published_macs=3.66e9, counts_source=_TV, tags=("imagenet",))
def resnet34(num_classes: int = 1000, base_width: int = 64) -> nn.Module:
    """ResNet-34: basic blocks (3, 4, 6, 3)."""
    _check_common(num_classes, base_width)
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, base_width)


@register("resnet50", input_shape=(1, 3, 224, 224), task="classification", source=_HE,
          published_params=25_557_032, published_macs=4.09e9, counts_source=_TV,
          notes="v1.5 layout (stride on the 3x3 conv of the bottleneck) as in torchvision; the paper's v1 "
                "(stride on the first 1x1) has 3.8 GFLOPs (Table 1) with the same parameters.",
          tags=("imagenet",))
def resnet50(num_classes: int = 1000, base_width: int = 64, layout: str = "torchvision") -> nn.Module:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3); ``layout="ncnn"``: ncnn's benchmark resnet50.param (v1)."""
    _check_common(num_classes, base_width, layout)
    return ResNet(BottleneckV1 if layout == "ncnn" else Bottleneck, (3, 4, 6, 3), num_classes, base_width, layout)


_CIFAR_NOTE = ("Option-B projection shortcuts (1x1 conv + BN) on the two down-sampling blocks instead of the paper's "
               "parameter-free option A (+2,752 params).")


@register("resnet20", input_shape=(1, 3, 32, 32), task="classification", source=_HE + " (Sec. 4.2, CIFAR-10)",
          published_params=0.27e6, published_macs=None,
          counts_source="He et al. CVPR'16 Table 6 (0.27M params; no MACs given)", notes=_CIFAR_NOTE,
          tags=("cifar",))
def resnet20(num_classes: int = 10, base_width: int = 16) -> nn.Module:
    """CIFAR ResNet-20 (n = 3)."""
    _check_common(num_classes, base_width)
    return CifarResNet(3, num_classes, base_width)


@register("resnet56", input_shape=(1, 3, 32, 32), task="classification", source=_HE + " (Sec. 4.2, CIFAR-10)",
          published_params=0.85e6, published_macs=1.25e8,
          counts_source="params: He et al. CVPR'16 Table 6 (0.85M); MACs: Li et al., Pruning Filters for Efficient "
                        "ConvNets, ICLR'17 Table 1 (1.25e8 FLOP counted as multiply-adds)",
          notes=_CIFAR_NOTE, tags=("cifar",))
def resnet56(num_classes: int = 10, base_width: int = 16) -> nn.Module:
    """CIFAR ResNet-56 (n = 9)."""
    _check_common(num_classes, base_width)
    return CifarResNet(9, num_classes, base_width)
