"""Published counts for non-default configurations of zoo nets (width multipliers, group counts, sizes).

Each entry: (net name, builder keywords, published params, published MACs, source). Used by
``tests/test_zoo.py`` and ``benchmarks/zoo_counts.py``; the default configuration's counts live in
the net's :class:`~nets.registry.NetInfo`.

Tolerance: papers round to two or three significant digits; the tests allow 2 % plus half a unit of
the last published digit.

``layout="ncnn"`` entries are the topologies of Tencent/ncnn's benchmark param files (commit a4d2ea1), which
``benchncnn`` times; their published MACs are exact sums over the file (conv + InnerProduct weight_data_size
x output pixels, as in ``tests/test_zoo_ncnn_layouts.py``). No published params: the file's biases hold the
folded BN, so its parameter total is not comparable with a net that keeps BN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Variant", "VARIANTS"]


@dataclass(frozen=True, slots=True)
class Variant:
    """A configuration of a registered net with counts published for it."""

    name: str
    kwargs: dict = field(hash=False)
    published_params: float | None
    published_macs: float | None
    source: str
    input_shape: tuple[int, ...] | None = None  # None: the net's default input shape
    macs_convention: str = "conv+linear"  # or "condensenet": see nets.counts.count_ops_condensenet_convention

    @property
    def label(self) -> str:
        kw = ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items()))
        return f"{self.name}({kw})"


_TF_MNV2 = "tensorflow/models research/slim/nets/mobilenet README (checkpoint table)"
_MNV1 = "Howard et al., MobileNets, arXiv 1704.04861, Table 6"
_SNV1 = "megvii-model/ShuffleNet-Series ShuffleNetV1/README.md"
_SNV1_PAPER = "Zhang et al., ShuffleNet, CVPR'18, Table 1 (complexity row, 1x, MFLOPs = mult-adds)"
_SNV2 = "megvii-model/ShuffleNet-Series ShuffleNetV2/README.md"
_AUG = "ohmydroid/AugShuffleNet-Plus README (CIFAR-10)"
_GHOST = "Han et al., GhostNet, CVPR'20, Table 7"
_GG = "huawei-noah/Efficient-AI-Backbones g_ghost_pytorch/readme.md"
_CN = "ShichenLiu/CondenseNet README (FLOPs from its utils.measure_model counter)"
_DN = "Huang et al., Densely Connected Convolutional Networks, CVPR'17, Table 2"
_TV = "torchvision model docs (*_Weights.IMAGENET1K_V1: params, GFLOPS=GMACs)"
_NCNN = "Tencent/ncnn benchmark/models/{} (a4d2ea1): MACs summed over its Convolution/InnerProduct layers"

VARIANTS: tuple[Variant, ...] = (
    # The paper (Table 4) lists 6.9M params for MobileNetV2 1.4; its own released checkpoint has 6.06M.
    Variant("mobilenetv2", {"width_mult": 1.4}, 6.06e6, 582e6, _TF_MNV2),
    Variant("mobilenetv2", {"width_mult": 0.5}, 1.95e6, 97e6, _TF_MNV2),
    Variant("mobilenetv1", {"width_mult": 0.75}, 2.6e6, 325e6, _MNV1),
    Variant("mobilenetv1", {"width_mult": 0.5}, 1.3e6, 149e6, _MNV1),
    Variant("mobilenetv1", {"width_mult": 0.25}, 0.5e6, 41e6, _MNV1),
    Variant("shufflenetv1", {"groups": 1}, None, 143e6, _SNV1_PAPER),
    Variant("shufflenetv1", {"groups": 2}, None, 140e6, _SNV1_PAPER),
    Variant("shufflenetv1", {"groups": 4}, None, 133e6, _SNV1_PAPER),
    Variant("shufflenetv1", {"groups": 8}, 2.4e6, 138e6, _SNV1),
    Variant("shufflenetv1", {"groups": 3, "width_mult": 0.5}, 0.7e6, 38e6, _SNV1),
    Variant("shufflenetv1", {"groups": 3, "width_mult": 1.5}, 3.4e6, 292e6, _SNV1),
    Variant("shufflenetv1", {"groups": 3, "width_mult": 2.0}, 5.4e6, 524e6, _SNV1),
    Variant("shufflenetv1", {"groups": 8, "width_mult": 1.5}, 4.3e6, 290e6, _SNV1),
    Variant("shufflenetv1", {"groups": 8, "width_mult": 2.0}, 6.5e6, 522e6, _SNV1),
    Variant("shufflenetv2", {"width_mult": 0.5}, 1.4e6, 41e6, _SNV2),
    Variant("shufflenetv2", {"width_mult": 1.5}, 3.5e6, 299e6, _SNV2),
    Variant("shufflenetv2", {"width_mult": 2.0}, 7.4e6, 591e6, _SNV2),
    Variant("augshufflenet", {"width_mult": 0.5}, 0.33e6, 10.20e6, _AUG),
    Variant("augshufflenet", {"width_mult": 1.5}, 2.22e6, 85.38e6, _AUG),
    Variant("ghostnet", {"width": 0.5}, 2.6e6, 42e6, _GHOST),
    Variant("ghostnet", {"width": 1.3}, 7.3e6, 226e6, _GHOST),
    Variant("g-ghostnet", {"size": "4.0gf"}, 15.7e6, 2.2e9, _GG),
    Variant("g-ghostnet", {"size": "8.0gf"}, 24.6e6, 4.2e9, _GG),
    Variant("g-ghostnet", {"size": "16.0gf"}, 32.4e6, 9.0e9, _GG),
    Variant("hardnet68", {"depthwise": True}, 4.2e6, 0.8e9, "PingoLH/Pytorch-HarDNet README (HarDNet68DS)"),
    Variant("densenet121", {"block_config": (6, 12, 32, 32)}, 14_149_480, 3.36e9, _TV + " (DenseNet-169)"),
    Variant("densenet121", {"block_config": (6, 12, 48, 32)}, 20_013_928, 4.29e9, _TV + " (DenseNet-201)"),
    Variant("densenet-bc", {"depth": 250, "growth": 24}, 15.3e6, None, _DN),
    Variant("densenet-bc", {"depth": 190, "growth": 40}, 25.6e6, None, _DN),
    Variant("condensenet", {}, 4.8e6, 529e6, _CN, macs_convention="condensenet"),
    Variant("condensenet", {"groups": 8}, 2.9e6, 274e6, _CN, macs_convention="condensenet"),
    Variant("condensenet86", {}, 0.52e6, 65.8e6, _CN, macs_convention="condensenet"),
    Variant("condensenet86", {"stages": (8, 8, 8)}, 0.22e6, 28.6e6, _CN + " (CondenseNet-50)", macs_convention="condensenet"),
    Variant("condensenet86", {"stages": (12, 12, 12)}, 0.41e6, 51.9e6, _CN + " (CondenseNet-74)", macs_convention="condensenet"),
    Variant("condensenet86", {"stages": (16, 16, 16)}, 0.65e6, 81.3e6, _CN + " (CondenseNet-98)", macs_convention="condensenet"),
    Variant("condensenet86", {"stages": (18, 18, 18)}, 0.79e6, 98.2e6, _CN + " (CondenseNet-110)", macs_convention="condensenet"),
    Variant("condensenet86", {"stages": (20, 20, 20)}, 0.95e6, 116.7e6, _CN + " (CondenseNet-122)", macs_convention="condensenet"),
    # the topologies benchncnn times (benchmarks/data/ncnn_arm_boards.csv)
    Variant("resnet18", {"layout": "ncnn"}, None, 1_826_918_400, _NCNN.format("resnet18.param")),
    Variant("resnet50", {"layout": "ncnn"}, None, 3_857_973_248, _NCNN.format("resnet50.param")),
    Variant("mobilenetv2", {"layout": "ncnn"}, None, 313_619_328, _NCNN.format("mobilenet_v2.param")),
    Variant("shufflenetv1", {"layout": "ncnn"}, None, 127_061_304, _NCNN.format("shufflenet.param")),
    # published layouts of nets whose default is ncnn's file
    Variant("mobilenetv3-large", {"layout": "paper"}, 5_483_032, 219e6,
            "Howard et al., Searching for MobileNetV3, ICCV'19, Table 3 (Large 1.0: 219M MAdds); exact params: "
            "torchvision mobilenet_v3_large (5,483,032)"),
    Variant("proxylessnas-mobile", {"first_width": 16}, 4_080_512, 320e6,
            "params: osmr/imgclsmob pytorch/pytorchcv/models/proxylessnas.py (4,080,512); 320M MACs as tabulated for "
            "ProxylessNAS-mobile in Chu et al., MoGA, arXiv 1908.01314"),
    Variant("squeezenet1.1", {"conv10_pad": 0}, 1_235_496, 0.35e9,
            _TV + " (SqueezeNet1_1: 1,235,496 params, 0.35 GFLOPS at 224x224)", input_shape=(1, 3, 224, 224)),
)


def rounding_tolerance(published: float) -> float:
    """Half a unit of the last non-zero digit of ``published``, relative (0.5e6 -> 0.1, 138e6 -> 0.0036).

    Trailing zeros are taken as not significant (140e6 -> +-5e6), the conservative reading of a rounded figure.
    """
    unit = 10 ** (len(str(int(round(published)))) - 1)
    while unit > 1 and round(published) % unit:
        unit //= 10
    return 0.5 * unit / published
