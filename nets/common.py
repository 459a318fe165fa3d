"""Building blocks shared by the zoo architectures.

Only ops the IR traces are used here (Conv2d, BatchNorm, ReLU-family activations, pooling, add,
mul, cat, reshape/transpose). ``ChannelShuffle`` and ``ChannelSplit`` are modules so that the IR
can recognise them as single ops instead of their view/transpose/slice pieces.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ChannelShuffle",
    "ChannelSplit",
    "ConvBNAct",
    "SqueezeExcite",
    "make_divisible",
]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channel count ``v`` to the nearest multiple of ``divisor`` without going below 90 % of ``v``.

    This is the rounding of the TensorFlow MobileNet reference code (``_make_divisible`` in
    tensorflow/models research/slim/nets/mobilenet/mobilenet.py), also used by MobileNetV2 and GhostNet.
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ChannelShuffle(nn.ChannelShuffle):
    """Channel shuffle of ShuffleNet (Zhang et al., CVPR'18, Sec. 3.1).

    (N, g*c, H, W) -> view (N, g, c, H, W) -> transpose(1, 2) -> reshape (N, c*g, H, W).
    A subclass of ``torch.nn.ChannelShuffle`` (same semantics) so the IR treats it as one op; the
    forward is written out so it also runs on the ``meta`` device used for counting.
    """

    def __init__(self, groups: int):
        super().__init__(int(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        x = x.reshape(n, g, c // g, h, w)
        x = torch.transpose(x, 1, 2)
        return x.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelSplit(nn.Module):
    """Split channels into the first ``first`` channels and the rest; returns a tuple of two tensors.

    ShuffleNetV2 (Ma et al., ECCV'18, Sec. 3) channel split. Implemented with slicing on dim 1.
    """

    def __init__(self, first: int):
        super().__init__()
        self.first = int(first)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, : self.first], x[:, self.first :]

    def extra_repr(self) -> str:
        return f"first={self.first}"


_ACTS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    None: nn.Identity,
}


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation (``"relu"``, ``"relu6"``, ``"hardswish"``, ``"silu"`` or None).

    ``padding`` defaults to ``dilation * (k - 1) // 2`` ("same" for odd k at stride 1).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        padding: int | None = None,
        dilation: int = 1,
    ):
        pad = dilation * (k - 1) // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            _ACTS[act](),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR'18): global pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> x * gate.

    ``gate`` is ``"hardsigmoid"`` (MobileNetV3 / GhostNet) or ``"sigmoid"``.
    The 1x1 convs carry a bias, as in the official GhostNet and MobileNetV3 code.
    """

    def __init__(self, channels: int, reduced: int, gate: str = "hardsigmoid", act: str = "relu"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = _ACTS[act]()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * s


def ceil_div(a: int, b: int) -> int:
    """Integer ceil(a / b)."""
    return -(-a // b)


def init_weights(model: nn.Module) -> nn.Module:
    """Kaiming-normal conv weights (fan_out, ReLU), unit BN, N(0, 0.01) linear weights, zero biases.

    The initialisation of the torchvision / official reference implementations; only determinism
    matters here (the zoo carries no trained weights).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


