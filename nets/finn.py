"""FINN's binary / low-bit topologies (BNN-PYNQ, finn-examples), built from ``nets.layers``.

* ``tfc-w1a1`` / ``sfc-w1a1`` / ``lfc-w1a1``: MNIST multilayer perceptrons 784-64-64-64-10,
  784-256-256-256-10 and 784-1024-1024-1024-10 (Umuroglu et al., "FINN", FPGA'17, Table 2 for SFC
  and LFC; finn-examples / Brevitas ``bnn_pynq`` for TFC). The 28x28 input is binarized (sign of
  ``x``; feed ``2 * image - 1`` or any value whose sign is the pixel bit), each hidden layer is
  BinaryLinear -> BatchNorm1d -> sign, the classifier BinaryLinear -> BatchNorm1d.
* ``cnv-w1a1`` / ``cnv-w2a2``: the CIFAR-10 VGG-like CNV of FINN'17 / BNN-PYNQ: conv 64, 64, pool,
  128, 128, pool, 256, 256 (3x3, no padding), FC 512, 512, 10. The first layer takes the 8-bit image
  (QuantAct(8) codes, binary or 2-bit weights); the rest are W1A1 (binary) or W2A2 (2-bit odd-level
  weights, 2-bit unsigned activations).

* ``cnv-w1a2``, ``tfc-w1a2``, ``tfc-w2a2``: the same topologies at W1A2 / W2A2 (BNN-PYNQ cnvW1A2,
  finn-examples bnn-pynq ``tfc-w1a2`` / ``tfc-w2a2``); a k-bit MLP quantizes its input to k-bit codes.
* ``kws-mlp-w3a3``: finn-examples' keyword-spotting MLP (Google Speech Commands v2, 12 classes) on 490 MFCC
  features (a 1 x 10 x 49 map, flattened), three hidden layers of 256, W3A3. Widths inferred from the published folding
  (``build/kws/folding_config``: SIMD 10 | 490, PE 32 | 256) and the dataset's 12 classes; the input quantizer
  (8-bit codes) is our assumption.
* ``mobilenet-v1-w4a4``: finn-examples' MobileNet-v1 (Howard et al. 2017, width 1.0, 224x224): a 3x3/2 stem with
  8-bit weights on the 8-bit image, 13 depthwise-separable blocks (depthwise 3x3 -> FINN's VVAU, pointwise 1x1),
  4-bit weights and activations, global average pool, a 4-bit 1024 -> 1000 classifier.
* ``resnet50-w1a2``: finn-examples' ResNet-50 (He et al. 2016, bottlenecks [3, 4, 6, 3]): binary weights and
  2-bit activations inside the bottlenecks, 4-bit residual stream (every residual add is AddStreams of two 4-bit
  code streams of one scale, re-quantized to 4 bits), 7x7/2 stem with 8-bit weights, max pool, global average
  pool, 8-bit 2048 -> 1000 classifier.

Untrained weights (the zoo is for cost and bit-exactness studies); BatchNorm keeps torch defaults.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nets.layers import BinaryConv2d, BinaryLinear, BinarySign, QuantAct, QuantConv2d, QuantLinear
from nets.registry import check, register

__all__ = ["finn_fc", "finn_cnv", "binarized_vgg_small", "finn_mobilenet_v1", "finn_resnet50"]

_FC_SOURCE = ("Umuroglu et al., FINN: A Framework for Fast, Scalable Binarized Neural Network Inference, FPGA 2017; "
              "Xilinx/BNN-PYNQ and Xilinx/finn-examples")
_CNV_SOURCE = "Umuroglu et al., FINN, FPGA 2017 (CNV, after Courbariaux et al. BinaryNet); Xilinx/BNN-PYNQ cnvW1A1/W2A2"


def _fc(fin: int, fout: int, wbits: int) -> nn.Module:
    return BinaryLinear(fin, fout) if wbits == 1 else QuantLinear(fin, fout, bits=wbits)


def _act(abits: int) -> nn.Module:
    return BinarySign() if abits == 1 else QuantAct(abits)


def finn_fc(hidden: int, layers: int = 3, num_classes: int = 10, wbits: int = 1, abits: int = 1,
            in_features: int = 28 * 28, in_bits: int | None = None) -> nn.Module:
    """Quantized MLP: quantize the input (sign for A1, else ``in_bits`` codes, default the activation width) ->
    [linear, BN, activation] x layers -> linear, BN."""
    check(isinstance(hidden, int) and hidden > 0, f"hidden must be a positive int, got {hidden!r}")
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    mods: list[nn.Module] = [nn.Flatten(), _act(in_bits or abits)]
    width = in_features
    for _ in range(layers):
        mods += [_fc(width, hidden, wbits), nn.BatchNorm1d(hidden), _act(abits)]
        width = hidden
    mods += [_fc(width, num_classes, wbits), nn.BatchNorm1d(num_classes)]
    return nn.Sequential(*mods)


def finn_cnv(bits: int = 1, num_classes: int = 10, abits: int | None = None) -> nn.Module:
    """CNV on 3x32x32: 8-bit input codes, 6 convs (two max-pools), 3 FC layers; W{bits}A{abits} (abits = bits
    unless given)."""
    check(bits in (1, 2, 3, 4), f"bits must be 1..4, got {bits!r}")
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    abits = bits if abits is None else abits

    def conv(cin, cout):
        return BinaryConv2d(cin, cout, 3) if bits == 1 else QuantConv2d(cin, cout, 3, bits=bits)

    def fc(fin, fout):
        return _fc(fin, fout, bits)

    def act():
        return _act(abits)

    mods: list[nn.Module] = [QuantAct(8)]  # the 8-bit image: codes 0..255, value q / 256
    cin = 3
    for cout, pool in ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False)):
        mods += [conv(cin, cout), nn.BatchNorm2d(cout), act()]
        if pool:
            mods.append(nn.MaxPool2d(2))
        cin = cout
    mods.append(nn.Flatten())
    width = 256
    for fout in (512, 512):
        mods += [fc(width, fout), nn.BatchNorm1d(fout), act()]
        width = fout
    mods += [fc(width, num_classes), nn.BatchNorm1d(num_classes)]
    return nn.Sequential(*mods)


@register("tfc-w1a1", input_shape=(1, 1, 28, 28), task="classification", source=_FC_SOURCE, tags=("binary", "mnist"),
          notes="784-64-64-64-10, binarized input; finn-examples folding (PE, SIMD) = (16,49), (8,8), (8,8), (10,8)")
def tfc_w1a1(num_classes: int = 10) -> nn.Module:
    return finn_fc(64, 3, num_classes)


@register("sfc-w1a1", input_shape=(1, 1, 28, 28), task="classification", source=_FC_SOURCE, tags=("binary", "mnist"),
          notes="784-256-256-256-10, binarized input (FINN'17 SFC)")
def sfc_w1a1(num_classes: int = 10) -> nn.Module:
    return finn_fc(256, 3, num_classes)


@register("lfc-w1a1", input_shape=(1, 1, 28, 28), task="classification", source=_FC_SOURCE, tags=("binary", "mnist"),
          notes="784-1024-1024-1024-10, binarized input (FINN'17 LFC, BNN-PYNQ lfcW1A1)")
def lfc_w1a1(num_classes: int = 10) -> nn.Module:
    return finn_fc(1024, 3, num_classes)


@register("cnv-w1a1", input_shape=(1, 3, 32, 32), task="classification", source=_CNV_SOURCE, tags=("binary", "cifar"),
          notes="first layer: binary weights on the 8-bit image (QuantAct(8) codes)")
def cnv_w1a1(num_classes: int = 10) -> nn.Module:
    return finn_cnv(1, num_classes)


@register("cnv-w2a2", input_shape=(1, 3, 32, 32), task="classification", source=_CNV_SOURCE,
          tags=("binary", "quantized", "cifar"),
          notes="2-bit odd-level weights, 2-bit unsigned activations; first layer on the 8-bit image")
def cnv_w2a2(num_classes: int = 10) -> nn.Module:
    return finn_cnv(2, num_classes)


def binarized_vgg_small(num_classes: int = 10) -> nn.Module:
    """BinaryNet's CIFAR-10 net (2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10) with zero-padded
    binary convs; the first layer sees the 8-bit image. Max-pools follow the sign (OR on bits)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    mods: list[nn.Module] = [QuantAct(8)]
    cin = 3
    for cout, pool in ((128, False), (128, True), (256, False), (256, True), (512, False), (512, True)):
        mods += [BinaryConv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), BinarySign()]
        if pool:
            mods.append(nn.MaxPool2d(2))
        cin = cout
    mods.append(nn.Flatten())
    width = 512 * 4 * 4
    for fout in (1024, 1024):
        mods += [BinaryLinear(width, fout), nn.BatchNorm1d(fout), BinarySign()]
        width = fout
    mods += [BinaryLinear(width, num_classes), nn.BatchNorm1d(num_classes)]
    return nn.Sequential(*mods)


@register("vgg-small-w1a1", input_shape=(1, 3, 32, 32), task="classification",
          source="Courbariaux, Hubara et al., Binarized Neural Networks, arXiv 1602.02830 (CIFAR-10 net)",
          tags=("binary", "cifar"),
          notes="binarized VGG-small of the BNN paper; zero padding (pad_value 0, masked taps on the engine); "
                "max-pool after the sign instead of before the BatchNorm")
def vgg_small_w1a1(num_classes: int = 10) -> nn.Module:
    return binarized_vgg_small(num_classes)


@register("cnv-w1a2", input_shape=(1, 3, 32, 32), task="classification", source=_CNV_SOURCE,
          tags=("binary", "quantized", "cifar"),
          notes="binary weights, 2-bit unsigned activations (BNN-PYNQ cnvW1A2, finn-examples cnv-w1a2); 8-bit image in")
def cnv_w1a2(num_classes: int = 10) -> nn.Module:
    return finn_cnv(1, num_classes, abits=2)


@register("tfc-w1a2", input_shape=(1, 1, 28, 28), task="classification", source=_FC_SOURCE,
          tags=("binary", "quantized", "mnist"),
          notes="784-64-64-64-10, binary weights, 2-bit activations and input codes (finn-examples bnn-pynq tfc-w1a2)")
def tfc_w1a2(num_classes: int = 10) -> nn.Module:
    return finn_fc(64, 3, num_classes, wbits=1, abits=2)


@register("tfc-w2a2", input_shape=(1, 1, 28, 28), task="classification", source=_FC_SOURCE,
          tags=("binary", "quantized", "mnist"),
          notes="784-64-64-64-10, 2-bit odd-level weights, 2-bit activations and input codes (finn-examples tfc-w2a2)")
def tfc_w2a2(num_classes: int = 10) -> nn.Module:
    return finn_fc(64, 3, num_classes, wbits=2, abits=2)


@register("kws-mlp-w3a3", input_shape=(1, 1, 10, 49), task="classification",
          source="Xilinx/finn-examples build/kws (KWS MLP w3a3, Google Speech Commands v2)",
          tags=("binary", "quantized", "audio"),
          notes="490-256-256-256-12, W3A3; widths inferred from the published folding (SIMD 10 | 490, PE 32 | 256) "
                "and the 12 classes; 8-bit input codes assumed")
def kws_mlp_w3a3(num_classes: int = 12) -> nn.Module:
    return finn_fc(256, 3, num_classes, wbits=3, abits=3, in_features=490, in_bits=8)


# ----------------------------------------------------------------------------- MobileNet-v1 W4A4
_MOBILENET_V1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                 (512, 1), (1024, 2), (1024, 1))  # Howard et al. 2017, Table 1: (pointwise out channels, dw stride)


def finn_mobilenet_v1(num_classes: int = 1000, bits: int = 4) -> nn.Module:
    """MobileNet-v1 1.0: 8-bit image, 3x3/2 stem (8-bit weights), 13 depthwise-separable blocks at W{bits}A{bits},
    global average pool, a {bits}-bit classifier with a bias."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    mods: list[nn.Module] = [QuantAct(8), QuantConv2d(3, 32, 3, stride=2, padding=1, bits=8), nn.BatchNorm2d(32),
                             QuantAct(bits)]
    cin = 32
    for cout, stride in _MOBILENET_V1:
        mods += [QuantConv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bits=bits), nn.BatchNorm2d(cin),
                 QuantAct(bits), QuantConv2d(cin, cout, 1, bits=bits), nn.BatchNorm2d(cout), QuantAct(bits)]
        cin = cout
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), QuantLinear(cin, num_classes, bias=True, bits=bits)]
    return nn.Sequential(*mods)


@register("mobilenet-v1-w4a4", input_shape=(1, 3, 224, 224), task="classification",
          source="Howard et al., MobileNets, arXiv 1704.04861; Xilinx/finn-examples build/mobilenet-v1 (w4a4)",
          published_params=4.2e6, published_macs=569e6,
          counts_source="Howard et al. 2017, Table 1 / Table 8 (1.0 MobileNet-224: 4.2M parameters, 569M mult-adds)",
          tags=("quantized", "imagenet", "finn"),
          notes="first layer 8-bit weights on the 8-bit image; depthwise convs map to VVAUs; BatchNorm parameters "
                "counted (4.23M)")
def mobilenet_v1_w4a4(num_classes: int = 1000) -> nn.Module:
    return finn_mobilenet_v1(num_classes, 4)


# ----------------------------------------------------------------------------- ResNet-50 W1A2
class _Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 binary convs with 2-bit activations inside; the branch and the shortcut are
    4-bit code streams of one scale (QuantAct(4)), their sum re-quantized to 4 bits."""

    def __init__(self, cin: int, width: int, stride: int, res_bits: int = 4, abits: int = 2):
        super().__init__()
        cout = 4 * width
        self.branch = nn.Sequential(
            BinaryConv2d(cin, width, 1), nn.BatchNorm2d(width), QuantAct(abits),
            BinaryConv2d(width, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width), QuantAct(abits),
            BinaryConv2d(width, cout, 1), nn.BatchNorm2d(cout), QuantAct(res_bits))
        self.shortcut = (nn.Sequential(BinaryConv2d(cin, cout, 1, stride=stride), nn.BatchNorm2d(cout),
                                       QuantAct(res_bits)) if stride != 1 or cin != cout else nn.Identity())
        self.out = QuantAct(res_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.branch(x) + self.shortcut(x))


def finn_resnet50(num_classes: int = 1000) -> nn.Module:
    """ResNet-50 W1A2 with a 4-bit residual stream (see the module docstring)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    mods: list[nn.Module] = [QuantAct(8), QuantConv2d(3, 64, 7, stride=2, padding=3, bits=8), nn.BatchNorm2d(64),
                             QuantAct(4), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            mods.append(_Bottleneck(cin, width, stride if b == 0 else 1))
            cin = 4 * width
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), QuantLinear(cin, num_classes, bias=True, bits=8)]
    return nn.Sequential(*mods)


@register("resnet50-w1a2", input_shape=(1, 3, 224, 224), task="classification",
          source="He et al., Deep Residual Learning, CVPR 2016; Xilinx/finn-examples build/resnet50 (w1a2)",
          published_params=25.557e6, published_macs=4.09e9,
          counts_source="torchvision resnet50 (25,557,032 parameters incl. BatchNorm; 4.09 GMACs at 224x224)",
          tags=("quantized", "imagenet", "finn"),
          notes="binary weights / 2-bit activations in the bottlenecks, 4-bit residual stream, 8-bit stem and "
                "classifier weights; residual adds stream as AddStreams on 4-bit codes")
def resnet50_w1a2(num_classes: int = 1000) -> nn.Module:
    return finn_resnet50(num_classes)
