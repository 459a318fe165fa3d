"""Deprecated: the FPGA target's package is :mod:`hwsim.fpga` (named as its presets, ``fpga/...``).

``hwsim.xnor.XnorSpec`` and ``hwsim.xnor.XnorReport`` still resolve, to :class:`hwsim.fpga.FPGASpec` and
:class:`hwsim.fpga.FPGAReport`, with a DeprecationWarning; so does any other name of :mod:`hwsim.fpga`.
"""
from __future__ import annotations

import warnings
from typing import Any

_RENAMED = {"XnorSpec": "FPGASpec", "XnorReport": "FPGAReport"}


def __getattr__(name: str) -> Any:
    import hwsim.fpga

    new = _RENAMED.get(name, name)
    if not hasattr(hwsim.fpga, new):
        raise AttributeError(f"module 'hwsim.xnor' has no attribute {name!r}")
    warnings.warn(f"hwsim.xnor.{name} is now hwsim.fpga.{new}", DeprecationWarning, stacklevel=2)
    return getattr(hwsim.fpga, new)
