"""AlexNet as in ncnn's benchmark (Tencent/ncnn ``benchmark/models/alexnet.param``) = Caffe's bvlc_alexnet.

Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks", NIPS'12, Fig. 2:
227x227 input; conv1 96 11x11/4 -> ReLU -> LRN -> max-pool 3/2; conv2 256 5x5 pad 2, 2 groups -> ReLU
-> LRN -> max-pool 3/2; conv3 384 3x3; conv4 384 3x3 2 groups; conv5 256 3x3 2 groups -> max-pool 3/2;
FC 4096, FC 4096, FC 1000 (biases everywhere, no BN). The two groups are the paper's two-GPU split,
kept by Caffe and by ncnn's file (torchvision's single-tower AlexNet has 64/192/384/256/256 channels
and no LRN: another net). Pools use ceil mode as Caffe/ncnn (same sizes at 227).

Local response normalisation (across 5 channels, alpha 1e-4, beta 0.75, k 1; alpha is divided by the
window size as in Caffe, ncnn and torch) is written out in traceable ops: ``LocalResponseNorm``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nets.common import init_weights
from nets.registry import check, register

__all__ = ["AlexNet", "LocalResponseNorm"]


class LocalResponseNorm(nn.Module):
    """y_c = x_c / (k + alpha/n * sum_{c' in window(c)} x_c'^2)^beta, window of n channels centred on c (zero-padded).

    Same definition as ``torch.nn.LocalResponseNorm`` and Caffe's/ncnn's LRN (ACROSS_CHANNELS), built from
    square, channel pad, slice, add and pow so that ``mapping.trace`` imports it (it refuses torch's
    module). ``tests/test_zoo_deployed.py`` checks it against ``torch.nn.LocalResponseNorm``.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, front = x.shape[1], self.size // 2
        sq = F.pad(x * x, (0, 0, 0, 0, front, self.size - 1 - front))
        acc = sq[:, 0:c]
        for i in range(1, self.size):
            acc = acc + sq[:, i:i + c]
        return x / (acc * (self.alpha / self.size) + self.k) ** self.beta

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _conv(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, pad, groups=groups), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    """Caffe/ncnn AlexNet (two-group convs, LRN) for 227x227 inputs."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            *_conv(3, 96, 11, 4), LocalResponseNorm(), pool(),
            *_conv(96, 256, 5, pad=2, groups=2), LocalResponseNorm(), pool(),
            *_conv(256, 384, 3, pad=1), *_conv(384, 384, 3, pad=1, groups=2), *_conv(384, 256, 3, pad=1, groups=2),
            pool(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register("alexnet", input_shape=(1, 3, 227, 227), task="classification",
          source="Krizhevsky et al., ImageNet Classification with Deep CNNs, NIPS'12 (Fig. 2); Caffe bvlc_alexnet "
                 "= Tencent/ncnn benchmark/models/alexnet.param",
          published_params=60_965_224, published_macs=724e6,
          counts_source="Sze et al., Efficient Processing of Deep Neural Networks, Proc. IEEE 2017, Table 3 (AlexNet: "
                        "61M weights, 724M MACs); exact params of the Caffe model (bvlc_alexnet, 60,965,224; the paper "
                        "says 60 million)",
          notes="needs a 227x227 input (the FC layers expect a 6x6x256 map); LRN is not counted as MACs.",
          tags=("imagenet", "ncnn"))
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """AlexNet (Caffe/ncnn layout: grouped convs and LRN)."""
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")
    return AlexNet(num_classes, dropout)
