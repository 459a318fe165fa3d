"""The four MLPerf Tiny reference models (closed division, mlcommons/tiny tags v1.0/v1.1).

Definitions: ``benchmarks/data/mlperf_tiny_models.md`` (read layer by layer from the Keras sources in
mlcommons/tiny ``benchmark/training/*``). Convs carry biases and are followed by BN (not the ResNet
shortcut convs); the softmax of the classifiers is left out (the zoo's nets return logits).

Parameter counts: Keras' "Total params" include BN's moving mean/variance (non-trainable); torch
keeps those as buffers, so ``nets.counts.count_params`` equals Keras' *trainable* count, which is the
figure registered (the Keras total is quoted in ``counts_source``).

Padding: Keras ``padding='same'`` pads a stride-2 layer on an even input asymmetrically (the extra
row/column at the bottom/right). ResNet-8 and the VWW MobileNet use torch's symmetric padding 1 there:
the same output sizes and MACs, with the sampling grid shifted by one pixel (a converted checkpoint
would need the asymmetric pad). DS-CNN's 10x4/2 first conv pads (top 4, bottom 5, left 1, right 1)
explicitly, as Keras does, because its output size depends on it.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.common import init_weights
from nets.registry import check, register

__all__ = ["ResNet8", "DSCNN", "MobileNetV1VWW", "AutoEncoder"]

_MD = "benchmarks/data/mlperf_tiny_models.md (mlcommons/tiny v1.0 = 1beaec0, v1.1 = 360bf09)"


def _cbr(cin: int, cout: int, k, stride: int = 1, padding=0, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (with bias, as Keras' default) -> BN -> optional ReLU."""
    layers = [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=True), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class _ResStack(nn.Module):
    """conv3x3(stride)-BN-ReLU -> conv3x3-BN, + (identity or 1x1/stride conv without BN), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, cout, 3, stride, 1), _cbr(cout, cout, 3, 1, 1, relu=False))
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.body(x))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification: resnet_v1_eembc (16/32/64 filters), CIFAR-10 32x32x3."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(_cbr(3, 16, 3, 1, 1), _ResStack(16, 16, 1), _ResStack(16, 32, 2),
                                      _ResStack(32, 64, 2), nn.AvgPool2d(8))
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting: DS-CNN on 49x10 MFCC (1 channel), 12 labels."""

    def __init__(self, num_classes: int = 12, dropout: float = 0.4):
        super().__init__()
        layers: list[nn.Module] = [nn.ZeroPad2d((1, 1, 4, 5)), _cbr(1, 64, (10, 4), 2), nn.Dropout(0.2)]
        for _ in range(4):
            layers += [_cbr(64, 64, 3, 1, 1, groups=64), _cbr(64, 64, 1)]
        layers += [nn.Dropout(dropout), nn.AvgPool2d((24, 5))]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


# pointwise filters and depthwise strides of the 13 separable blocks (vww_model.py, num_filters = 8)
_VWW = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1),
        (256, 2), (256, 1)]


class MobileNetV1VWW(nn.Module):
    """MLPerf Tiny visual wake words: MobileNetV1 alpha 0.25 on 96x96x3, plain ReLU, 2 classes."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        layers: list[nn.Module] = [_cbr(3, 8, 3, 2, 1)]
        cin = 8
        for cout, s in _VWW:
            layers += [_cbr(cin, cin, 3, s, 1, groups=cin), _cbr(cin, cout, 1)]
            cin = cout
        layers.append(nn.AvgPool2d(3))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class AutoEncoder(nn.Module):
    """MLPerf Tiny anomaly detection: 640 -> 128 x4 -> 8 -> 128 x4 -> 640, Dense-BN-ReLU except the output layer."""

    def __init__(self, num_inputs: int = 640, hidden: int = 128, bottleneck: int = 8):
        super().__init__()
        widths = [num_inputs] + [hidden] * 4 + [bottleneck] + [hidden] * 4
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(hidden, num_inputs))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _classes(num_classes: int) -> None:
    check(isinstance(num_classes, int) and num_classes > 0, f"num_classes must be a positive int, got {num_classes!r}")


@register("tiny-resnet8", input_shape=(1, 3, 32, 32), task="classification",
          source="MLPerf Tiny IC reference (Banbury et al., MLPerf Tiny Benchmark, NeurIPS'21 D&B): mlcommons/tiny "
                 "benchmark/training/image_classification/keras_model.py resnet_v1_eembc",
          published_params=78_186, counts_source=f"{_MD} section 1: 78,666 Keras total = 78,186 trainable + 480 BN "
                                                 "moving statistics (torch buffers)",
          tags=("cifar", "mlperf-tiny"))
def tiny_resnet8(num_classes: int = 10) -> nn.Module:
    """MLPerf Tiny ResNet-8 (CIFAR-10)."""
    _classes(num_classes)
    return ResNet8(num_classes)


@register("tiny-dscnn", input_shape=(1, 1, 49, 10), task="classification",
          source="MLPerf Tiny KWS reference: mlcommons/tiny benchmark/training/keyword_spotting/keras_model.py ds_cnn "
                 "(49x10 MFCC, 12 labels)",
          published_params=23_756, counts_source=f"{_MD} section 2: 24,908 Keras total = 23,756 trainable + 1,152 BN "
                                                 "moving statistics (torch buffers)",
          tags=("mlperf-tiny", "audio"))
def tiny_dscnn(num_classes: int = 12, dropout: float = 0.4) -> nn.Module:
    """MLPerf Tiny DS-CNN (keyword spotting)."""
    _classes(num_classes)
    return DSCNN(num_classes, dropout)


@register("tiny-mobilenet-vww", input_shape=(1, 3, 96, 96), task="classification",
          source="MLPerf Tiny VWW reference: mlcommons/tiny benchmark/training/visual_wake_words/vww_model.py "
                 "mobilenet_v1 (alpha 0.25, 96x96, 2 classes)",
          published_params=216_322, counts_source=f"{_MD} section 3: 221,794 Keras total = 216,322 trainable + 5,472 "
                                                  "BN moving statistics (torch buffers)",
          tags=("mlperf-tiny",))
def tiny_mobilenet_vww(num_classes: int = 2) -> nn.Module:
    """MLPerf Tiny MobileNetV1-0.25 (visual wake words)."""
    _classes(num_classes)
    return MobileNetV1VWW(num_classes)


@register("tiny-autoencoder", input_shape=(1, 640), task="anomaly-detection",
          source="MLPerf Tiny AD reference: mlcommons/tiny benchmark/training/anomaly_detection/keras_model.py "
                 "get_model(640) (DCASE 2020 Task 2 baseline; 5 frames x 128 log-mel bins)",
          published_params=267_928, counts_source=f"{_MD} section 4: 269,992 Keras total = 267,928 trainable + 2,064 "
                                                  "BN moving statistics (torch buffers)",
          notes="an autoencoder (output = reconstruction of the 640 inputs, anomaly score = MSE); num_classes is "
                "not a keyword (the output width is the input width).",
          tags=("mlperf-tiny", "autoencoder", "audio"))
def tiny_autoencoder() -> nn.Module:
    """MLPerf Tiny fully connected autoencoder (anomaly detection, ToyADMOS ToyCar)."""
    return AutoEncoder()
