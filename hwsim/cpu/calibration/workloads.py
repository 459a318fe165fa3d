"""The probe layers of ``hwsim calibrate``: synthetic layers (by kernel kind) and synthetic layer chains, built as
torch modules. Shapes of no zoo net: calibrate on synthetic layers, validate on the zoo."""
from __future__ import annotations

from hwsim.errors import HwsimError

# The machine-state probe: one synthetic im2col conv (the unfold + GEMM path, whose all-thread time moves most
# between processes on a shared machine). Calibration writes its times into the preset's header and the host
# validation times it beside every net, so a reader can see whether both saw the same machine.
PROBE_LAYER = ("im2col", (12, 20, 3, 1), (1, 12, 36, 36))

# Synthetic layers: kind -> [(module args, input shape)]. Not shapes of any zoo net; small and large,
# both sides of the im2col threshold ("conv" entries below 20480 input elements run as im2col), and for
# every conv kind a few tiny layers whose time is mostly the kernel's fixed overhead. Pointwise entries
# with a fifth argument are grouped 1x1 convs; the strided 1x1 convs among the "im2col" entries run the same
# unfold + GEMM path (one copy call per element).
SYNTHETIC_LAYERS: dict[str, list[tuple]] = {
    "conv": [((48, 48, 3, 1), (1, 48, 40, 40)), ((96, 96, 3, 1), (1, 96, 20, 20)), ((80, 160, 3, 2), (1, 80, 24, 24)),
             ((24, 40, 3, 1), (1, 24, 48, 48)), ((320, 320, 3, 1), (1, 320, 9, 9)), ((160, 160, 3, 1), (1, 160, 12, 12)),
             ((3, 24, 3, 2), (1, 3, 96, 96)), ((3, 40, 7, 2), (1, 3, 120, 120)),
             ((6, 10, 5, 1), (1, 6, 8, 8)), ((5, 12, 7, 2), (1, 5, 14, 14)),
             ((112, 112, 3, 1), (1, 112, 44, 44)), ((40, 80, 3, 1), (1, 40, 88, 88)), ((200, 200, 3, 1), (1, 200, 15, 15)),
             ((448, 448, 3, 1), (1, 448, 7, 7))],
    "im2col": [((24, 24, 3, 1), (1, 24, 24, 24)), ((40, 40, 3, 1), (1, 40, 12, 12)), ((56, 56, 3, 1), (1, 56, 18, 18)),
               ((12, 20, 3, 1), (1, 12, 36, 36)), ((192, 192, 3, 1), (1, 192, 10, 10)), ((3, 12, 3, 1), (1, 3, 40, 40)),
               ((24, 48, 3, 2), (1, 24, 26, 26)), ((48, 96, 3, 2), (1, 48, 14, 14)), ((80, 80, 3, 1), (1, 80, 6, 6)),
               ((6, 10, 3, 1), (1, 6, 7, 7)), ((10, 6, 3, 2), (1, 10, 9, 9)), ((12, 24, 3, 2), (1, 12, 40, 40)),
               ((72, 144, 3, 2), (1, 72, 12, 12)), ((8, 16, 3, 1), (1, 8, 44, 44)),
               ((36, 72, 1, 2), (1, 36, 20, 20)), ((20, 40, 1, 2), (1, 20, 28, 28)),
               # few output channels on a large map: a skinny GEMM, whose split over threads is poor
               ((10, 8, 3, 1), (1, 10, 44, 44)), ((6, 14, 3, 1), (1, 6, 56, 56)), ((18, 24, 3, 1), (1, 18, 30, 30)),
               ((14, 32, 3, 1), (1, 14, 38, 38))],
    "depthwise": [((72, 72, 3, 1), (1, 72, 40, 40)), ((144, 144, 3, 1), (1, 144, 20, 20)),
                  ((288, 288, 3, 1), (1, 288, 10, 10)), ((120, 120, 5, 2), (1, 120, 24, 24)),
                  ((40, 40, 3, 1), (1, 40, 9, 9)), ((600, 600, 3, 1), (1, 600, 6, 6)),
                  ((10, 10, 3, 1), (1, 10, 5, 5))],
    "pointwise": [((48, 144, 1, 1), (1, 48, 40, 40)), ((144, 48, 1, 1), (1, 144, 40, 40)),
                  ((96, 192, 1, 1), (1, 96, 20, 20)), ((384, 96, 1, 1), (1, 384, 10, 10)),
                  ((20, 60, 1, 1), (1, 20, 30, 30)), ((120, 40, 1, 1), (1, 120, 12, 12)),
                  ((600, 600, 1, 1), (1, 600, 6, 6)), ((40, 80, 1, 2), (1, 40, 36, 36)),
                  ((6, 10, 1, 1), (1, 6, 7, 7)), ((10, 12, 1, 1), (1, 10, 5, 5)),
                  ((36, 24, 1, 1, 6), (1, 36, 7, 7)), ((40, 40, 1, 1, 10), (1, 40, 5, 5)),
                  ((24, 48, 1, 1, 3), (1, 24, 14, 14)), ((120, 60, 1, 1, 12), (1, 120, 9, 9))],
    "grouped": [((48, 24, 3, 1, 4), (1, 48, 36, 36)), ((96, 48, 3, 1, 8), (1, 96, 18, 18)),
                ((24, 24, 3, 1, 3), (1, 24, 44, 44)), ((160, 40, 3, 1, 4), (1, 160, 10, 10)),
                ((64, 64, 3, 2, 2), (1, 64, 28, 28)), ((120, 60, 3, 1, 6), (1, 120, 14, 14)),
                ((48, 48, 3, 1, 3), (1, 48, 6, 6)), ((96, 96, 3, 1, 6), (1, 96, 10, 10)),
                ((80, 80, 3, 1, 5), (1, 80, 30, 30)), ((12, 12, 3, 1, 3), (1, 12, 5, 5))],
    "linear": [((768, 500), (1, 768)), ((2048, 256), (1, 2048)), ((300, 100), (1, 300)), ((1500, 1500), (1, 1500))],
    "elementwise": [(("relu",), (1, 64, 40, 40)), (("relu",), (1, 128, 20, 20)), (("add",), (1, 96, 30, 30)),
                    (("relu6",), (1, 160, 28, 28)), (("relu",), (1, 24, 10, 10)), (("add",), (1, 48, 90, 90)),
                    (("relu_",), (1, 40, 100, 100)), (("relu6_",), (1, 72, 30, 30)), (("relu_",), (1, 36, 12, 12)),
                    (("batchnorm", 40), (1, 40, 18, 18)), (("batchnorm", 96), (1, 96, 6, 6)),
                    (("batchnorm", 20), (1, 20, 60, 60))],
    "resample": [(("bilinear", 120, 160), (1, 8, 30, 40)), (("bilinear", 80, 80), (1, 16, 20, 20)),
                 (("bilinear", 72, 72), (1, 20, 36, 36)), (("nearest", 200, 200), (1, 5, 50, 50)),
                 (("nearest", 56, 56), (1, 24, 14, 14)), (("nearest", 96, 128), (1, 6, 24, 32))],
    # max pools on at least ~200k input elements: on a smaller input timed over and over the branch predictor
    # learns the compare outcomes and the pool runs faster than in a network (docs/targets/cpu-calibration.md)
    "pool": [(("maxpool",), (1, 48, 80, 80)), (("maxpool",), (1, 24, 90, 90)), (("maxpool2",), (1, 40, 72, 72)),
             (("maxpool",), (1, 32, 120, 120)), (("maxpool2",), (1, 96, 48, 48)), (("maxpool3s1",), (1, 20, 100, 100)),
             (("avgpool2",), (1, 36, 50, 50)), (("avgpool2",), (1, 72, 14, 14)), (("adaptive5",), (1, 60, 10, 10))],
}


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        raise HwsimError("hwsim calibrate needs torch") from e
    return torch


def _synthetic(quick: bool, kinds: tuple[str, ...] | None = None):
    """(kind, module args, input shape) of the synthetic layers (of ``kinds``), in one fixed order."""
    for kind, layers in SYNTHETIC_LAYERS.items():
        if kinds is None or kind in kinds:
            yield from ((kind, args, shape) for args, shape in (layers[:2] if quick else layers))


class _Add:
    """A torch module adding its input to itself (a two-input elementwise op)."""

    def __new__(cls):
        torch = _torch()

        class Add(torch.nn.Module):
            def forward(self, x):
                return x + x

        return Add()


def _module(kind: str, args: tuple):
    torch = _torch()
    if kind in ("conv", "pointwise", "im2col"):
        cin, cout, k, s, *g = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g[0] if g else 1)
    if kind == "depthwise":
        cin, cout, k, s = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=cin)
    if kind == "grouped":
        cin, cout, k, s, g = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g)
    if kind == "linear":
        return torch.nn.Linear(*args)
    if kind == "resample":
        mode, h, w = args
        return torch.nn.Upsample(size=(h, w), mode=mode, align_corners=False if mode == "bilinear" else None)
    op = args[0]
    if op == "batchnorm":  # eval-mode batch norm with non-trivial statistics
        bn = torch.nn.BatchNorm2d(args[1])
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        return bn
    return {"relu": torch.nn.ReLU(), "relu6": torch.nn.ReLU6(), "relu_": torch.nn.ReLU(inplace=True),
            "relu6_": torch.nn.ReLU6(inplace=True), "maxpool": torch.nn.MaxPool2d(3, 2, 1),
            "maxpool2": torch.nn.MaxPool2d(2, 2), "maxpool3s1": torch.nn.MaxPool2d(3, 1, 1),
            "avgpool2": torch.nn.AvgPool2d(2, 2), "adaptive5": torch.nn.AdaptiveAvgPool2d(5), "add": _Add()}[op]


def _chains():
    """Eight synthetic networks (layer sequences of the kinds above, shapes of no zoo net: dense, inverted
    residual, small grouped, split/concat/shuffle, and three of few channels on small maps: two plain 3x3 stacks and
    a dense-growth block) run back to back: layers in a network pay costs that isolated layers do not (cold caches
    between layers, dispatch; on several threads, a per-layer cost that a layer timed over and over alone hides)."""
    nn = _torch().nn
    small = nn.Sequential(
        nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.Conv2d(20, 20, 3, padding=1), nn.ReLU(),
        nn.Conv2d(20, 40, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(40, 40, 3, padding=1), nn.ReLU(),
        nn.Conv2d(40, 40, 1), nn.ReLU6(), nn.Conv2d(40, 40, 3, padding=1, groups=40), nn.ReLU6(),
        nn.Conv2d(40, 80, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(80, 12))
    big = nn.Sequential(
        nn.Conv2d(3, 24, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(24, 72, 1), nn.ReLU6(),
        nn.Conv2d(72, 72, 3, stride=2, padding=1, groups=72), nn.ReLU6(), nn.Conv2d(72, 36, 1),
        nn.Conv2d(36, 108, 1), nn.ReLU6(), nn.Conv2d(108, 108, 3, padding=1, groups=108), nn.ReLU6(),
        nn.Conv2d(108, 56, 1), nn.Conv2d(56, 112, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(112, 224, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(224, 300))
    mid = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 1), nn.ReLU6(),
        nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU6(), nn.Conv2d(64, 20, 1), nn.Conv2d(20, 100, 1),
        nn.ReLU6(), nn.Conv2d(100, 100, 5, stride=2, padding=2, groups=100), nn.ReLU6(), nn.Conv2d(100, 44, 1),
        nn.Conv2d(44, 176, 1), nn.ReLU6(), nn.Conv2d(176, 176, 3, padding=1, groups=176), nn.ReLU6(),
        nn.Conv2d(176, 44, 1), nn.MaxPool2d(2), nn.Conv2d(44, 352, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(352, 50))
    grouped = nn.Sequential(
        nn.Conv2d(12, 24, 1, groups=3), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1, groups=6), nn.ReLU(),
        nn.Conv2d(24, 48, 1, groups=4), nn.ReLU(), nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=12), nn.ReLU(),
        nn.Conv2d(48, 24, 1, groups=2), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))
    narrow = nn.Sequential(*[m for _ in range(8) for m in (nn.Conv2d(14, 14, 3, padding=1), nn.ReLU())])
    narrow6 = nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(20, 20, 3, padding=1), nn.ReLU6())])
    return [(small, (1, 3, 36, 36)), (big, (1, 3, 144, 144)), (mid, (1, 3, 160, 160)), (grouped, (1, 12, 26, 26)),
            (_Branchy(), (1, 24, 20, 20)), (narrow, (1, 14, 28, 28)), (narrow6, (1, 20, 26, 26)),
            (_DenseGrowth(), (1, 14, 24, 24))]


class _DenseGrowth:
    """A synthetic dense block: six units of 1x1 (to 40 channels) -> ReLU -> 3x3 (10 channels) -> ReLU, each unit's
    output concatenated to its input (growth 10 from 14 channels; no zoo net's counts)."""

    def __new__(cls):
        nn = _torch().nn

        class DenseGrowth(nn.Module):
            def __init__(self):
                super().__init__()
                self.units = nn.ModuleList(nn.Sequential(nn.Conv2d(14 + 10 * i, 40, 1), nn.ReLU(),
                                                         nn.Conv2d(40, 10, 3, padding=1), nn.ReLU()) for i in range(6))

            def forward(self, x):
                for u in self.units:
                    x = _torch().cat([x, u(x)], 1)
                return x

        return DenseGrowth()


class _Branchy:
    """A synthetic chain of many small layers that split, concatenate, shuffle and add (the layer mix of
    efficient nets; channel counts of no zoo net): three units of split -> 1x1, 3x3 depthwise, 1x1 on one
    half -> concat -> shuffle -> grouped 1x1, depthwise, 1x1 + residual."""

    def __new__(cls):
        nn = _torch().nn

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.units = nn.ModuleList(nn.ModuleDict({
                    "a": nn.Sequential(nn.Conv2d(10, 10, 1), nn.ReLU(), nn.Conv2d(10, 10, 3, padding=1, groups=10),
                                       nn.Conv2d(10, 14, 1), nn.ReLU()),
                    "shuffle": nn.ChannelShuffle(2),
                    "b": nn.Sequential(nn.Conv2d(24, 36, 1, groups=2), nn.ReLU(),
                                       nn.Conv2d(36, 36, 3, padding=1, groups=36), nn.Conv2d(36, 24, 1))})
                    for _ in range(3))
                self.relu = nn.ReLU()

            def forward(self, x):
                for u in self.units:
                    y = _torch().cat([x[:, :10], u["a"](x[:, 10:20])], 1)
                    x = self.relu(u["b"](u["shuffle"](y)) + x)
                return x

        return Branchy()
