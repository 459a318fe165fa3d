"""hwsim: hardware/network co-design of efficient DNNs.

Three cycle-approximate simulators (in-memory-computing crossbars, an FPGA XNOR/popcount engine,
embedded CPUs) that run real inference with Numba kernels and report latency, energy and on-chip
memory per layer::

    import hwsim, nets
    result = hwsim.simulate(nets.get("resnet18"), "cpu/cortex-a72", x=image)
    result.report.to_pandas()
"""
from hwsim.api import as_graph, fit, simulate
from hwsim.errors import (
    ConversionError, HwsimError, MappingError, PresetError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError,
)
from hwsim.report import Report, Result
from hwsim.specs import load_preset, preset_names, spec_from_dict, spec_to_dict

__version__ = "0.2.0"  # part of every sweep row's key: a resumed sweep never reuses rows of an older cost model

__all__ = [
    "simulate", "fit", "sweep", "as_graph", "load_preset", "preset_names", "spec_from_dict", "spec_to_dict",
    "Report", "Result", "HwsimError", "UnknownNameError", "SpecError", "PresetError", "UnsupportedOpError",
    "ShapeError", "MappingError", "ConversionError", "__version__",
]


def sweep(*args, **kwargs):
    """Evaluate a grid of specs × nets; see :func:`hwsim.codesign.sweep.sweep`."""
    from hwsim.codesign.sweep import sweep as _sweep

    return _sweep(*args, **kwargs)
