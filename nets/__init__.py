"""hwsim's network zoo: ``nets.get(name, **kw)``, ``nets.names()``, ``nets.info(name)``, ``nets.register``.

Importing this package imports every architecture module, which registers its builders.
``python benchmarks/zoo_counts.py`` compares every net's parameter and MAC counts with the papers.
"""
from __future__ import annotations

import importlib
import importlib.util

# Architecture modules register their nets on import (order irrelevant: names are global).
from nets import (  # noqa: E402,F401
    alexnet,
    condensenet,
    densenet,
    efficientnet,
    ghostnet,
    googlenet,
    hardnet,
    itnet,
    mgic,
    mnasnet,
    mobilenet,
    mobilenetv3,
    regnet,
    resnet,
    shufflenet,
    squeezenet,
    tiny,
    vgg,
)
from nets.registry import NetArgumentError, NetInfo, UnknownNetError, get, info, keywords, names, register

# FINN's binary/quantized nets (nets/finn.py) and Larq's binary nets (nets/larq.py) register through the
# same registry when present.
for _optional in ("nets.finn", "nets.larq"):
    if importlib.util.find_spec(_optional) is not None:
        importlib.import_module(_optional)

__all__ = ["get", "names", "info", "keywords", "register", "NetInfo", "UnknownNetError", "NetArgumentError"]
from nets.layers import BinaryConv2d, BinaryLinear, BinarySign, QuantAct, QuantConv2d, QuantLinear  # noqa: E402,F401
