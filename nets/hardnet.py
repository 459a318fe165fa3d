"""HarDNet (39DS, 68, 68DS, 85) and its derivatives ThreshNet-79/95 and TripleNet-S/B.

HarDNet: Chao et al., "HarDNet: A Low Memory Traffic Network", ICCV'19 (arXiv 1909.00948); layout
of the official code (PingoLH/Pytorch-HarDNet, hardnet.py). Harmonic dense block: layer k
(1-based) takes the concatenation of layers k - 2^n for every n with 2^n dividing k (layer 0 =
block input); its width is ``growth * grmul^(#links - 1)`` rounded to even; the block outputs the
concatenation of the odd layers and the last one. Conv-BN-ReLU6 layers (3x3; DS: 1x1 conv-BN-ReLU6
then 3x3 depthwise-BN), a 1x1 transition after each block, max-pool (DS: 3x3/2 depthwise) down-sampling.

ThreshNet: Ju et al., "ThreshNet: An Efficient DenseNet Using Threshold Mechanism to Reduce
Connections", IEEE Access 2022 (arXiv 2201.03013); official code RuiyangJu/ThreshNet
(ThreshNet79.py, ThreshNet95.py). Below the threshold (the first three blocks) layers are densely
connected (DenseNet-style BN-ReLU-1x1 conv 128-BN-ReLU-3x3 conv 32, concat); above it (last two
blocks) connections are pruned to the harmonic pattern of HarDNet (Conv-BN-ReLU).

TripleNet: Ju et al., "Efficient Convolutional Neural Networks on Raspberry Pi for Image
Classification" (TripleNet), J. Real-Time Image Processing 2023 (arXiv 2204.00943); official code
RuiyangJu/TripleNet (TripleNet-S.py, TripleNet-B.py): one dense block, three harmonic blocks, and
2 (S) or 3 (B) ResNet bottlenecks (expansion 3) at the end.

All are written for 224x224 inputs (their published counts are at 224x224 with 1000 classes;
ThreshNet and TripleNet were trained on CIFAR-10 by their authors).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from nets.common import init_weights
from nets.registry import check, register

__all__ = ["HarDBlock", "HarDNet", "ThreshNet", "TripleNet", "harmonic_links"]


def _conv(cin, cout, k=3, stride=1, act=nn.ReLU6):
    """Conv-BN-activation (HarDNet's ConvLayer; ThreshNet uses ReLU, HarDNet and TripleNet ReLU6)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), act(inplace=True))


def _dw(c, stride=1):
    """HarDNet's DWConvLayer: 3x3 depthwise conv + BN (no activation)."""
    return nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c))


def harmonic_links(layer: int, base_ch: int, growth: int, grmul: float) -> tuple[int, int, list[int]]:
    """(out channels, in channels, linked layers) of layer ``layer`` (1-based) of a harmonic dense block.

    Layer k links to k - 2^n for all n with k % 2^n == 0; width = growth * grmul^(#links - 1),
    rounded to an even integer as ``int(int(w + 1) / 2) * 2`` (the official code's rounding).
    """
    out, cin, links = _harmonic_links(layer, base_ch, growth, grmul)
    return out, cin, list(links)


@functools.lru_cache(maxsize=4096)
def _harmonic_links(layer: int, base_ch: int, growth: int, grmul: float) -> tuple[int, int, tuple[int, ...]]:
    """:func:`harmonic_links`, memoized: the in-channel sum recurses over every linked layer (exponential without)."""
    if layer == 0:
        return base_ch, 0, ()
    out, links = growth, []
    for i in range(10):
        dv = 2**i
        if layer % dv == 0:
            links.append(layer - dv)
            if i > 0:
                out *= grmul
    out = int(int(out + 1) / 2) * 2
    cin = sum(_harmonic_links(j, base_ch, growth, grmul)[0] for j in links)
    return out, cin, tuple(links)


class HarDBlock(nn.Module):
    """Harmonic dense block of ``n_layers`` layers; output = concat of odd layers and the last layer."""

    def __init__(self, cin: int, growth: int, grmul: float, n_layers: int, dwconv: bool = False, act=nn.ReLU6):
        super().__init__()
        self.links: list[list[int]] = []
        layers = []
        self.out_channels = 0
        for i in range(n_layers):
            out, inch, link = harmonic_links(i + 1, cin, growth, grmul)
            self.links.append(link)
            layers.append(nn.Sequential(_conv(inch, out, 1, act=act), _dw(out)) if dwconv else _conv(inch, out, 3, act=act))
            if i % 2 == 0 or i == n_layers - 1:
                self.out_channels += out
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for layer, link in zip(self.layers, self.links):  # static structure: unrolled by torch.fx
            tin = [outs[j] for j in link]
            outs.append(layer(torch.cat(tin, 1) if len(tin) > 1 else tin[0]))
        t = len(outs)
        return torch.cat([outs[i] for i in range(t) if i == t - 1 or i % 2 == 1], 1)


_HARDNET = {
    # first_ch, ch_list, grmul, growth, n_layers, down-sample after block
    39: ((24, 48), (96, 320, 640, 1024), 1.6, (16, 20, 64, 160), (4, 16, 8, 4), (1, 1, 1, 0)),
    68: ((32, 64), (128, 256, 320, 640, 1024), 1.7, (14, 16, 20, 40, 160), (8, 16, 16, 16, 4), (1, 0, 1, 1, 0)),
    85: ((48, 96), (192, 256, 320, 480, 720, 1280), 1.7, (24, 24, 28, 36, 48, 256), (8, 16, 16, 16, 16, 4),
         (1, 0, 1, 0, 1, 0)),
}


class HarDNet(nn.Module):
    """HarDNet-``arch`` (39, 68, 85); ``depthwise`` selects the DS variant (1x1 second stem conv, dw down-sampling)."""

    def __init__(self, arch: int = 68, depthwise: bool = False, num_classes: int = 1000):
        super().__init__()
        first, ch_list, grmul, gr, n_layers, down = _HARDNET[arch]
        drop = 0.05 if depthwise else {39: 0.1, 68: 0.1, 85: 0.2}[arch]
        layers: list[nn.Module] = [_conv(3, first[0], 3, 2), _conv(first[0], first[1], 1 if depthwise else 3)]
        layers.append(_dw(first[1], 2) if depthwise else nn.MaxPool2d(3, 2, 1))
        ch = first[1]
        for i in range(len(n_layers)):
            blk = HarDBlock(ch, gr[i], grmul, n_layers[i], dwconv=depthwise)
            layers.append(blk)
            if i == len(n_layers) - 1 and arch == 85:
                layers.append(nn.Dropout(0.1))
            layers.append(_conv(blk.out_channels, ch_list[i], 1))
            ch = ch_list[i]
            if down[i]:
                layers.append(_dw(ch, 2) if depthwise else nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(drop)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


class DenseLayer128(nn.Module):
    """ThreshNet/TripleNet dense layer: BN-ReLU-1x1 conv 128-BN-ReLU-3x3 conv ``growth``; output cat(x, new)."""

    def __init__(self, cin: int, growth: int = 32, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, width, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, growth, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.body(x)), 1)


def _dense_block(cin: int, n: int, growth: int = 32) -> list[nn.Module]:
    return [DenseLayer128(cin + i * growth, growth) for i in range(n)]


class ThreshNet(nn.Module):
    """ThreshNet: dense blocks (``dense_layers``) below the threshold, harmonic blocks (40 x 16, 160 x 4) above."""

    def __init__(self, dense_layers: tuple[int, int, int], ch_list: tuple[int, ...], num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 32, 3, 2, nn.ReLU), _conv(32, 64, 3, 1, nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        ch = 64
        for i, n in enumerate(dense_layers):  # blocks 1-3: dense; max pool after blocks 1 and 2
            layers += _dense_block(ch, n)
            layers.append(_conv(ch + 32 * n, ch_list[i], 1, act=nn.ReLU))
            ch = ch_list[i]
            if i < 2:
                layers.append(nn.MaxPool2d(2, 2))
        for i, (g, n) in enumerate(((40, 16), (160, 4))):  # blocks 4-5: harmonic; max pool after block 4
            blk = HarDBlock(ch, g, 1.7, n, act=nn.ReLU)
            layers += [blk, _conv(blk.out_channels, ch_list[3 + i], 1, act=nn.ReLU)]
            ch = ch_list[3 + i]
            if i == 0:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Bottleneck3(nn.Module):
    """TripleNet's ResNet bottleneck, expansion 3: 1x1-BN-ReLU, 3x3-BN-ReLU, 1x1-BN + projection (1x1 conv with bias + BN)."""

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = 3 * planes
        self.body = nn.Sequential(nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                                  nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes),
                                  nn.ReLU(inplace=True), nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout)) if cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class TripleNet(nn.Module):
    """TripleNet: dense block (6 x 32), harmonic blocks (16x16, 20x16, 40x16), ``n_bottlenecks`` bottlenecks."""

    def __init__(self, n_bottlenecks: int = 2, num_classes: int = 1000, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 32, 3, 2), _conv(32, 64, 3), nn.MaxPool2d(3, 2, 1)]
        layers += _dense_block(64, 6)
        layers += [_conv(256, 128, 1), nn.MaxPool2d(2, 2)]
        ch = 128
        for g, cout, down in ((16, 192, False), (20, 256, True), (40, 320, True)):
            blk = HarDBlock(ch, g, 1.7, 16)
            layers += [blk, _conv(blk.out_channels, cout, 1)]
            if down:
                layers.append(nn.MaxPool2d(2, 2))
            ch = cout
        planes = 160
        for _ in range(n_bottlenecks):
            layers.append(Bottleneck3(ch, planes))
            ch, planes = 3 * planes, 3 * planes // 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


def _nc(num_classes) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")


_HSRC = "Chao et al., HarDNet: A Low Memory Traffic Network, ICCV'19 (arXiv 1909.00948); PingoLH/Pytorch-HarDNet hardnet.py"
_HCNT = ("PingoLH/Pytorch-HarDNet README (HarDNet68 17.6M / 4.3 GMACs, HarDNet85 36.7M / 9.1, "
         "HarDNet39DS 3.5M / 0.44, HarDNet68DS 4.2M / 0.8)")


@register("hardnet39ds", input_shape=(1, 3, 224, 224), task="classification", source=_HSRC,
          published_params=3.5e6, published_macs=0.44e9, counts_source=_HCNT,
          notes="Params match (-0.3 %); our conv+linear MACs (429.5M) are 2.4 % below the README's 0.44 G, which "
                "does not state its counting convention (0.4295 G would round to 0.43). Same code as the official "
                "hardnet.py with depth_wise=True, arch=39.",
          tags=("imagenet",))
def hardnet39ds(num_classes: int = 1000) -> nn.Module:
    """HarDNet-39DS (depthwise-separable)."""
    _nc(num_classes)
    return HarDNet(39, True, num_classes)


@register("hardnet68", input_shape=(1, 3, 224, 224), task="classification", source=_HSRC,
          published_params=17.6e6, published_macs=4.3e9, counts_source=_HCNT, tags=("imagenet",))
def hardnet68(num_classes: int = 1000, depthwise: bool = False) -> nn.Module:
    """HarDNet-68 (``depthwise=True``: HarDNet-68DS)."""
    _nc(num_classes)
    return HarDNet(68, bool(depthwise), num_classes)


@register("hardnet85", input_shape=(1, 3, 224, 224), task="classification", source=_HSRC,
          published_params=36.7e6, published_macs=9.1e9, counts_source=_HCNT, tags=("imagenet",))
def hardnet85(num_classes: int = 1000) -> nn.Module:
    """HarDNet-85."""
    _nc(num_classes)
    return HarDNet(85, False, num_classes)


_TSRC = ("Ju et al., ThreshNet: An Efficient DenseNet Using Threshold Mechanism to Reduce Connections, IEEE Access "
         "2022 (arXiv 2201.03013); RuiyangJu/ThreshNet")
_TCNT = ("RuiyangJu/ThreshNet README (torchstat at 224x224, 1000 classes: ThreshNet-79 15.32M params / 3.46 GFLOPs; "
         "ThreshNet-95 17.14M / 4.07 GFLOPs)")
_TNOTE = ("torchstat's 'FLOPs' add BN, ReLU and pooling element operations to the conv/linear MACs, so our MAC count "
          "is expected below the published FLOPs.")


@register("threshnet79", input_shape=(1, 3, 224, 224), task="classification", source=_TSRC,
          published_params=15.32e6, published_macs=3.46e9, counts_source=_TCNT, notes=_TNOTE, tags=("imagenet",))
def threshnet79(num_classes: int = 1000) -> nn.Module:
    """ThreshNet-79: dense blocks of 6, 8, 12 layers, then harmonic blocks."""
    _nc(num_classes)
    return ThreshNet((6, 8, 12), (128, 192, 288, 480, 960), num_classes)


@register("threshnet95", input_shape=(1, 3, 224, 224), task="classification", source=_TSRC,
          published_params=17.14e6, published_macs=4.07e9, counts_source=_TCNT, notes=_TNOTE, tags=("imagenet",))
def threshnet95(num_classes: int = 1000) -> nn.Module:
    """ThreshNet-95: dense blocks of 6, 12, 16 layers, then harmonic blocks."""
    _nc(num_classes)
    return ThreshNet((6, 12, 16), (128, 256, 384, 480, 960), num_classes)


_PSRC = ("Ju et al., Efficient Convolutional Neural Networks on Raspberry Pi for Image Classification (TripleNet), "
         "JRTIP 2023 (arXiv 2204.00943); RuiyangJu/TripleNet")
_PCNT = ("RuiyangJu/TripleNet README (torchstat at 224x224, 1000 classes: TripleNet-S 9.67M params / 4.17 GFLOPs; "
         "TripleNet-B 12.63M / 4.29 GFLOPs)")


@register("triplenet-s", input_shape=(1, 3, 224, 224), task="classification", source=_PSRC,
          published_params=9.67e6, published_macs=4.17e9, counts_source=_PCNT, notes=_TNOTE, tags=("imagenet",))
def triplenet_s(num_classes: int = 1000) -> nn.Module:
    """TripleNet-S (2 bottlenecks, 720 output channels)."""
    _nc(num_classes)
    return TripleNet(2, num_classes)


@register("triplenet-b", input_shape=(1, 3, 224, 224), task="classification", source=_PSRC,
          published_params=12.63e6, published_macs=4.29e9, counts_source=_PCNT, notes=_TNOTE, tags=("imagenet",))
def triplenet_b(num_classes: int = 1000) -> nn.Module:
    """TripleNet-B (3 bottlenecks, 1080 output channels)."""
    _nc(num_classes)
    return TripleNet(3, num_classes)
