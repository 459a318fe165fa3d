"""Classification models of torchvision and timm, built with random weights (no downloads), for the import
coverage benchmark and tests.

torchvision's PyPI wheel for a given torch is built against the CUDA build of torch; beside a CPU build its C++
extension does not load, and ``import torchvision`` (which timm performs too) then fails while registering fake
kernels for two of those ops ("operator torchvision::nms does not exist"). :func:`import_torchvision` defines the
schemas of those two ops (without kernels: calling them raises) so that the pure-torch model definitions import.
hwsim needs none of torchvision's C++ ops.
"""
from __future__ import annotations

import sys
from types import ModuleType

import torch

__all__ = ["import_torchvision", "torchvision_classifiers", "build_torchvision", "build_timm", "TIMM_MODELS"]

_LIB = None  # the torch.library.Library that holds the op schemas (kept alive for the process)

# timm families for the coverage benchmark: efficient CNNs and small vision transformers (timm 1.0 names)
TIMM_MODELS = (
    "efficientnet_lite0", "efficientnet_b0", "mobilenetv3_large_100", "mobilenetv3_small_100", "fbnetc_100",
    "mnasnet_100", "regnetx_002", "regnety_002", "densenet121", "ghostnet_100", "resnet18", "resnet50d",
    "resnext26ts", "dla34", "hrnet_w18_small", "dpn48b", "rexnet_100", "tinynet_a", "lcnet_050", "mixnet_s",
    "convnext_atto", "efficientformer_l1", "repvgg_a0", "mobileone_s0", "vgg11", "cspresnet50",
    "deit_tiny_patch16_224", "vit_tiny_patch16_224", "levit_128s", "efficientvit_b0", "efficientvit_m0",
    "mobilevit_xxs", "mobilevitv2_050", "pit_ti_224", "coat_lite_tiny", "convmixer_768_32", "tiny_vit_5m_224",
    "fastvit_t8", "poolformer_s12", "edgenext_xx_small",
)


def import_torchvision() -> ModuleType:
    """``import torchvision``, defining its two fake-registered op schemas first when its C++ ops did not load."""
    global _LIB
    try:
        import torchvision
        return torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[k]
    if _LIB is None:
        _LIB = torch.library.Library("torchvision", "DEF")  # noqa: PLW0603 - one per process
        for op in ("nms", "qnms"):  # torchvision/_meta_registrations.py registers fake kernels for these two
            _LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    return torchvision


def torchvision_classifiers() -> list[str]:
    """Every classification builder of ``torchvision.models`` (not detection, segmentation, video, optical flow)."""
    tv = import_torchvision()
    import torchvision.models as tvm
    del tv
    return sorted(tvm.list_models(module=tvm))


def build_torchvision(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A torchvision classifier with random weights (seed 0) in eval mode, and its default input shape."""
    import_torchvision()
    import torchvision.models as tvm

    torch.manual_seed(0)
    model = tvm.get_model(name, weights=None).eval()
    size = 299 if name == "inception_v3" else 224
    return model, (1, 3, size, size)


def build_timm(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A timm model with random weights (seed 0) in eval mode, and its default input shape."""
    import_torchvision()
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    return model, (1,) + tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
