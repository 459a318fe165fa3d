"""The one exception hierarchy of hwsim.

Every error a user can provoke (bad name, bad spec field, unsupported layer, shape mismatch) is a
subclass of :class:`HwsimError`, so API users catch one class and the CLI turns it into a one-line
message with exit status 2.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HwsimError",
    "UnknownNameError",
    "SpecError",
    "PresetError",
    "UnsupportedOpError",
    "ShapeError",
    "MappingError",
    "ConversionError",
]


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), at most 300 characters: for one-line
    errors that quote a library's reason."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


class HwsimError(Exception):
    """Base class of every error hwsim raises on purpose."""


class UnknownNameError(HwsimError, KeyError):
    """A name (net, preset, spec field, ...) that is not known; suggests the closest known ones."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name = kind, name
        self.choices = sorted(choices)
        close = difflib.get_close_matches(name, self.choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close or len(self.choices) > 40 else f"; known: {', '.join(self.choices)}"
        super().__init__(f"unknown {kind} {name!r}{hint}{listing}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class SpecError(HwsimError, ValueError):
    """A hardware spec field out of range or inconsistent with another field."""


class PresetError(HwsimError):
    """A preset or YAML spec file that cannot be read (malformed YAML, unknown or duplicate key)."""


class UnsupportedOpError(HwsimError):
    """An operation the IR or a target cannot represent, named with its module path."""


class ShapeError(HwsimError, ValueError):
    """An input or parameter shape that does not match what the network or layer expects."""


class MappingError(HwsimError):
    """A network that cannot be mapped onto the given hardware (e.g. wrong folding length)."""


class ConversionError(HwsimError):
    """An imported model whose IR does not compute what the source computes: names the first node whose value
    diverges from the source framework's (torch, onnxruntime, qonnx's executor), its op and module path."""
