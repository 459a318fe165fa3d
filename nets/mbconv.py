"""The inverted-residual (MBConv) block and body shared by MobileNetV3, MnasNet, ProxylessNAS and EfficientNet.

One block (Sandler et al., MobileNetV2, CVPR'18; Tan et al., MnasNet, CVPR'19):
    [1x1 expand conv-BN-act]  (only when the expanded width differs from the input width)
    -> kxk depthwise conv (stride) -> BN -> activation and optional squeeze-and-excitation
    -> 1x1 linear projection conv-BN  (+ input, when stride 1 and input width == output width).

The zoo's nets that follow ncnn's benchmark topologies (``benchmark/models/*.param`` in Tencent/ncnn)
differ in where the activation sits relative to the SE module: EfficientNet applies it before the SE
(depthwise-BN-swish-SE), ncnn's MobileNetV3 applies it after (depthwise-BN-SE-act). ``se_first``
selects the order; without SE both orders are the same network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nets.common import ConvBNAct, SqueezeExcite

__all__ = ["Block", "MBConv", "mbconv_body", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU}


@dataclass(frozen=True, slots=True)
class Block:
    """One MBConv block: kernel ``k``, expanded width ``exp`` (channels), output width ``cout`` (channels),
    depthwise ``stride``, activation name, SE bottleneck width ``se`` (channels; None: no SE)."""

    k: int
    exp: int
    cout: int
    stride: int
    act: str = "relu"
    se: int | None = None


class MBConv(nn.Module):
    """One inverted-residual block (see the module docstring); ``se_gate``/``se_act`` configure the SE module."""

    def __init__(self, cin: int, b: Block, se_first: bool = False, se_gate: str = "sigmoid", se_act: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = []
        if b.exp != cin:
            layers.append(ConvBNAct(cin, b.exp, 1, act=b.act))
        layers.append(ConvBNAct(b.exp, b.exp, b.k, b.stride, groups=b.exp, act=None))
        act = ACTIVATIONS[b.act]()
        if b.se is None:
            layers.append(act)
        else:
            se = SqueezeExcite(b.exp, b.se, gate=se_gate, act=se_act)
            layers += [se, act] if se_first else [act, se]
        layers.append(ConvBNAct(b.exp, b.cout, 1, act=None))
        self.conv = nn.Sequential(*layers)
        self.use_res = b.stride == 1 and cin == b.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


def mbconv_body(stem: int, stem_act: str, blocks: list[Block], head: int | None, head_act: str,
                **block_kw) -> tuple[nn.Sequential, int]:
    """Stem (3x3/2 conv-BN-act, ``stem`` channels) -> ``blocks`` -> optional 1x1 head conv-BN-act.

    Returns the feature extractor and its output width.
    """
    layers: list[nn.Module] = [ConvBNAct(3, stem, 3, 2, act=stem_act)]
    cin = stem
    for b in blocks:
        layers.append(MBConv(cin, b, **block_kw))
        cin = b.cout
    if head is not None:
        layers.append(ConvBNAct(cin, head, 1, act=head_act))
        cin = head
    return nn.Sequential(*layers), cin
