"""Larq-zoo's binary networks (ImageNet, 224x224), built from ``nets.layers``: QuickNet-Small / QuickNet /
QuickNet-Large (Bannink et al., "Larq Compute Engine", MLSys 2021; ``larq_zoo/sota/quicknet.py``) and
Bi-Real Net-18 (Liu et al., ECCV 2018; ``larq_zoo/literature/birealnet.py``).

Both keep real-valued (float) layers where larq-zoo does — the stem, the transition / downsampling shortcuts and
the classifier — and binarize the 3x3 convolutions of the residual blocks (sign of the input, sign of the
weights), so they run on the CPU target, not on the all-integer XNOR engine (which refuses the float layers by
name). Keras ``padding="same"`` with stride 2 pads asymmetrically; here the padding is symmetric (same output
sizes, same counts).

* **QuickNet** (section blocks, section filters): Small (4, 4, 4, 4), (32, 64, 256, 512); QuickNet
  (4, 4, 4, 4), (64, 128, 256, 512); Large (6, 8, 12, 6), (64, 128, 256, 512). Stem: float 3x3/2 conv to f/4,
  BN, ReLU, float depthwise 3x3/2, BN without scale and shift, float 1x1 conv to f, BN. Residual block:
  ``x + BN(ReLU(binary 3x3 conv(sign(x))))`` with **one padding** (``pad_value=1``). Transition (when the width
  changes): ReLU, max pool 2x2 stride 1 (no padding: 56 -> 55), a fixed blur-pool depthwise 3x3/2 (float,
  not trained), float 1x1 conv, BN. Head: ReLU, global average pool, float dense with a bias.
* **Bi-Real Net-18**: float 7x7/2 stem, BN, max pool 3x3/2; 16 residual blocks, each ``BN(binary 3x3 conv(
  sign(x))) + shortcut`` — a real-valued shortcut around every binary conv; where the width doubles, the conv has
  stride 2 and the shortcut is average pool 2x2/2, float 1x1 conv, BN. Head: global average pool, float dense.
  larq-zoo's magnitude-aware weight sign scales each output channel by its mean |w|: a per-channel gain that
  the BatchNorm after the conv absorbs (no parameter of its own).

Parameter counts (torch parameters; BatchNorm moving statistics are buffers), against larq-zoo's docstring tables:
Bi-Real Net-18's 11,699,112 is ours + the moving mean and variance of every BatchNorm (Keras ``count_params``);
QuickNet's numbers are ours + the moving statistics of the stem's non-affine BatchNorm only (16 or 32) — the
tables were evidently produced with different counting rules; both relations hold exactly
(tests/test_zoo_finn.py), and ours are within 0.1 % of the published numbers either way.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nets.layers import BinaryConv2d, BinarySign
from nets.registry import check, register

__all__ = ["quicknet", "birealnet18"]

_QUICKNET_SOURCE = ("Bannink et al., Larq Compute Engine, MLSys 2021; larq/zoo larq_zoo/sota/quicknet.py "
                    "(QuickNetSmall / QuickNet / QuickNetLarge)")
_COUNTS_NOTE = ("float stem, transitions / shortcuts and classifier, binary 3x3 residual convs; counts: see "
                "nets/larq.py (published = ours + BatchNorm moving statistics, as larq-zoo's tables count them)")


def _blurpool(channels: int) -> nn.Conv2d:
    """The fixed anti-aliasing depthwise 3x3/2 of a QuickNet transition ([1, 2, 1] outer product / 16)."""
    conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False)
    k = torch.tensor([1.0, 2.0, 1.0])
    with torch.no_grad():
        conv.weight.copy_((torch.outer(k, k) / 16).expand(channels, 1, 3, 3))
    conv.weight.requires_grad_(False)
    return conv


class _QuickResidual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.sign = BinarySign()
        self.conv = BinaryConv2d(c, c, 3, padding=1, pad_value=1.0)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(c, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.relu(self.conv(self.sign(x))))


def quicknet(section_blocks=(4, 4, 4, 4), section_filters=(64, 128, 256, 512), num_classes: int = 1000) -> nn.Module:
    """QuickNet with larq-zoo's section blocks and filters (see the module docstring)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    f0 = section_filters[0]
    mods: list[nn.Module] = [
        nn.Conv2d(3, f0 // 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(f0 // 4), nn.ReLU(),
        nn.Conv2d(f0 // 4, f0 // 4, 3, stride=2, padding=1, groups=f0 // 4, bias=False),
        nn.BatchNorm2d(f0 // 4, affine=False), nn.Conv2d(f0 // 4, f0, 1, bias=False), nn.BatchNorm2d(f0)]
    c = f0
    for blocks, filters in zip(section_blocks, section_filters):
        for _ in range(blocks):
            if filters != c:
                mods += [nn.ReLU(), nn.MaxPool2d(2, stride=1), _blurpool(c), nn.Conv2d(c, filters, 1, bias=False),
                         nn.BatchNorm2d(filters)]
                c = filters
            mods.append(_QuickResidual(c))
    mods += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*mods)


@register("quicknet-small", input_shape=(1, 3, 224, 224), task="classification", source=_QUICKNET_SOURCE,
          published_params=12_655_688, counts_source="larq-zoo QuickNetSmall docstring table (Keras count_params)",
          tags=("larq", "imagenet", "mixed-binary"), notes=_COUNTS_NOTE)
def quicknet_small(num_classes: int = 1000) -> nn.Module:
    return quicknet((4, 4, 4, 4), (32, 64, 256, 512), num_classes)


@register("quicknet", input_shape=(1, 3, 224, 224), task="classification", source=_QUICKNET_SOURCE,
          published_params=13_234_088, counts_source="larq-zoo QuickNet docstring table (Keras count_params)",
          tags=("larq", "imagenet", "mixed-binary"), notes=_COUNTS_NOTE)
def quicknet_medium(num_classes: int = 1000) -> nn.Module:
    return quicknet((4, 4, 4, 4), (64, 128, 256, 512), num_classes)


@register("quicknet-large", input_shape=(1, 3, 224, 224), task="classification", source=_QUICKNET_SOURCE,
          published_params=23_342_248, counts_source="larq-zoo QuickNetLarge docstring table (Keras count_params)",
          tags=("larq", "imagenet", "mixed-binary"), notes=_COUNTS_NOTE)
def quicknet_large(num_classes: int = 1000) -> nn.Module:
    return quicknet((6, 8, 12, 6), (64, 128, 256, 512), num_classes)


class _BiRealBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        stride = 1 if cin == cout else 2
        self.sign = BinarySign()
        self.conv = BinaryConv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.sign(x))) + self.shortcut(x)


def birealnet18(num_classes: int = 1000, filters: int = 64) -> nn.Module:
    """Bi-Real Net-18 (see the module docstring)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    mods: list[nn.Module] = [nn.Conv2d(3, filters, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(filters),
                             nn.MaxPool2d(3, 2, 1)]
    c = filters
    for _ in range(4):
        mods.append(_BiRealBlock(c, c))
    for _ in range(3):
        mods.append(_BiRealBlock(c, 2 * c))
        c *= 2
        mods += [_BiRealBlock(c, c) for _ in range(3)]
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*mods)


@register("birealnet18", input_shape=(1, 3, 224, 224), task="classification",
          source="Liu et al., Bi-Real Net, ECCV 2018 (arXiv 1808.00278); larq/zoo larq_zoo/literature/birealnet.py",
          published_params=11_699_112, counts_source="larq-zoo BiRealNet docstring table (Keras count_params)",
          tags=("larq", "imagenet", "mixed-binary"), notes=_COUNTS_NOTE)
def birealnet_18(num_classes: int = 1000) -> nn.Module:
    return birealnet18(num_classes)
