"""hwsim: hardware/network co-design of efficient DNNs.

Three cycle-approximate simulators (in-memory-computing crossbars, an FPGA XNOR/popcount engine,
embedded CPUs) that run real inference with Numba kernels and report latency, energy and on-chip
memory per layer::

    import hwsim, nets
    result = hwsim.simulate(nets.get("resnet18"), "cpu/cortex-a72", x=image)
    result.report.to_pandas()

Importing this package is cheap: every public name is resolved on first use (PEP 562), so
``import hwsim.errors`` or ``import hwsim.kernels`` (which ``mapping`` and ``nets`` rely on) never
loads torch or the simulators.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # part of every sweep row's key: a resumed sweep never reuses rows of an older cost model

# public name -> the module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    "simulate": "hwsim.api", "fit": "hwsim.api", "as_graph": "hwsim.api",
    "load_preset": "hwsim.specs", "preset_names": "hwsim.specs", "spec_from_dict": "hwsim.specs",
    "spec_to_dict": "hwsim.specs",
    "Report": "hwsim.report", "Result": "hwsim.report",
    "HwsimError": "hwsim.errors", "UnknownNameError": "hwsim.errors", "SpecError": "hwsim.errors",
    "PresetError": "hwsim.errors", "UnsupportedOpError": "hwsim.errors", "ShapeError": "hwsim.errors",
    "MappingError": "hwsim.errors", "ConversionError": "hwsim.errors",
    "sweep": "hwsim.codesign.sweep", "evaluate": "hwsim.evaluate", "Evaluation": "hwsim.evaluate",
    "clear_caches": "hwsim.cache",
}
# subpackages and modules reachable as attributes after a bare ``import hwsim`` (``hwsim.cpu.simulate``)
_SUBMODULES = frozenset({
    "api", "cache", "cli", "codesign", "cpu", "demo", "errors", "evaluate", "functional", "imc", "kernels", "plot",
    "report", "specs", "target", "fpga",
})

__all__ = [
    "simulate", "fit", "sweep", "evaluate", "Evaluation", "as_graph", "load_preset", "preset_names", "spec_from_dict",
    "spec_to_dict",
    "Report", "Result", "HwsimError", "UnknownNameError", "SpecError", "PresetError", "UnsupportedOpError",
    "ShapeError", "MappingError", "ConversionError", "clear_caches", "__version__",
]

if TYPE_CHECKING:  # static analysers and IDEs see the eager names
    from hwsim.api import as_graph, fit, simulate  # noqa: F401
    from hwsim.cache import clear_caches  # noqa: F401
    from hwsim.codesign.sweep import sweep  # noqa: F401
    from hwsim.errors import (  # noqa: F401
        ConversionError,
        HwsimError,
        MappingError,
        PresetError,
        ShapeError,
        SpecError,
        UnknownNameError,
        UnsupportedOpError,
    )
    from hwsim.evaluate import Evaluation, evaluate  # noqa: F401
    from hwsim.report import Report, Result  # noqa: F401
    from hwsim.specs import load_preset, preset_names, spec_from_dict, spec_to_dict  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"hwsim.{name}")
    raise AttributeError(f"module 'hwsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
