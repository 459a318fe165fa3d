"""Results of a simulation: plain frozen objects, derived figures as properties.

Every target fills the same :class:`Report` (per-layer :class:`LayerReport` rows plus totals);
a target with figures of its own subclasses it (``FPGAReport`` adds ``fps``, ``bram18``, ``luts``).
``to_pandas()`` gives one row per layer, ``to_dict()`` a JSON-ready dict; writing files is the
caller's business (:func:`write_json`).
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LayerReport", "ExitReport", "Report", "Result", "StrEnum", "write_json", "jsonable"]


class StrEnum(str, enum.Enum):
    """An enum whose members are their string values (``enum.StrEnum`` of Python 3.11, for 3.10 too): they compare,
    hash, print, format and serialize as those strings, so a report column or a comparison written with the plain
    string keeps working."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


@dataclass(frozen=True, kw_only=True)
class LayerReport:
    """Cost of one node of the graph (one execution; a shared block appears once per execution)."""

    name: str
    op: str
    module: str = ""
    macs: int = 0  # multiply-accumulates for the whole batch
    cycles: float = 0.0  # in the target's clock
    latency_s: float = 0.0
    energy_j: float = 0.0
    energy_breakdown: Mapping[str, float] = field(default_factory=dict)  # component -> joules
    weight_bytes: int = 0  # bytes of the weights this layer reads (0 for a repeated shared block on chip)
    activation_bytes: int = 0  # bytes of its output activation
    placement: str = ""  # where its weights live: "onchip", "dram", "flash", "sram", ...
    bound: str = ""  # what limits it: "compute", "memory", "adc", "overhead", ...
    extra: Mapping[str, Any] = field(default_factory=dict)  # target-specific columns

    def row(self) -> dict[str, Any]:
        """The common fields, the energy per component, then the target's columns (``extra``); a subclass's typed
        fields reach the row through its ``extra``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(LayerReport)
             if f.name not in ("energy_breakdown", "extra")}
        d.update({f"energy_{k}_j": v for k, v in self.energy_breakdown.items()})
        d.update(self.extra)
        return d


@dataclass(frozen=True, kw_only=True)
class ExitReport:
    """Latency and energy from the start of inference to one output of a (multi-exit) network. IMC (a dataflow
    schedule): the output's finish time and the energy of the layers it depends on; CPU (one layer after another
    in graph order): the time and energy of every layer up to the output."""

    name: str
    latency_s: float
    energy_j: float


@dataclass(frozen=True, kw_only=True)
class Report:
    target: str
    network: str
    spec_name: str = ""
    batch: int = 1
    layers: tuple[LayerReport, ...] = ()
    latency_s: float = 0.0
    energy_j: float = 0.0
    onchip_weight_bytes: int = 0
    onchip_capacity_bytes: int = 0
    fits_on_chip: bool = True
    fit_reason: str = ""
    peak_activation_bytes: int = 0
    arena_bytes: int = 0  # int8 CPU target: the activation arena as TFLite Micro plans it (0: not planned)
    flash_bytes: int = 0  # int8 CPU target: int8 weights + int32 biases in flash (0: not computed)
    exits: tuple[ExitReport, ...] = ()
    area_mm2: float = float("nan")  # chip area; NaN where the target does not model it (CPU, FPGA)
    notes: tuple[str, ...] = ()

    # -- derived figures (never stale)
    @property
    def macs(self) -> int:
        return int(sum(layer.macs for layer in self.layers))

    @property
    def throughput_inf_s(self) -> float:
        """Inferences per second when inferences run back to back (no pipelining across inputs)."""
        return self.batch / self.latency_s if self.latency_s > 0 else math.inf

    @property
    def edp_js(self) -> float:
        """Energy-delay product in joule-seconds."""
        return self.energy_j * self.latency_s

    @property
    def gops_per_w(self) -> float:
        return 2 * self.macs / self.energy_j / 1e9 if self.energy_j > 0 else math.inf

    @property
    def energy_breakdown(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for layer in self.layers:
            for k, v in layer.energy_breakdown.items():
                out[k] = out.get(k, 0.0) + v
        return out

    # -- export
    def to_pandas(self):
        """One row per layer: name, op, macs, cycles, latency_s, energy_j, weight_bytes, ..."""
        import pandas as pd

        return pd.DataFrame([layer.row() for layer in self.layers])

    def totals(self) -> dict[str, Any]:
        """Whole-network figures (fields and derived properties), without the layer rows."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("layers",)}
        d["exits"] = [dataclasses.asdict(e) for e in self.exits]
        d.update(macs=self.macs, throughput_inf_s=self.throughput_inf_s, edp_js=self.edp_js,
                 gops_per_w=self.gops_per_w, energy_breakdown=self.energy_breakdown)
        return jsonable(d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the totals plus a ``layers`` list of per-layer rows."""
        d = self.totals()
        d["layers"] = [jsonable(layer.row()) for layer in self.layers]
        return d

    def summary(self) -> str:
        fit = "fits on chip" if self.fits_on_chip else f"does NOT fit on chip ({self.fit_reason})"
        lines = [
            f"{self.network} on {self.spec_name or self.target}: latency {_si(self.latency_s, 's')}, "
            f"energy {_si(self.energy_j, 'J')}, {_si(self.macs, '').strip()} MACs",
            f"weights on chip {_si(self.onchip_weight_bytes, 'B')} of {_si(self.onchip_capacity_bytes, 'B')}: {fit}",
            f"peak activations {_si(self.peak_activation_bytes, 'B')}",
        ]
        if self.arena_bytes or self.flash_bytes:
            lines.append(f"int8 arena {_si(self.arena_bytes, 'B')}, int8 model (weights, biases) "
                         f"{_si(self.flash_bytes, 'B')}")
        if len(self.exits) > 1:
            lines.append("exits: " + ", ".join(f"{e.name} {_si(e.latency_s, 's')}/{_si(e.energy_j, 'J')}"
                                               for e in self.exits))
        lines += list(self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class Result:
    """What :func:`hwsim.simulate` returns: the outputs the hardware computes and the cost report."""

    outputs: Any  # numpy array, or a list of arrays for a multi-output network, or None (cost only)
    report: Report


def _si(v: float, unit: str) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v} {unit}"
    prefixes = [(1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]
    if unit == "B":
        prefixes = [(2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki"), (1, "")]
    for scale, p in prefixes:
        if abs(v) >= scale:
            return f"{v / scale:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays, enums, tuples, mappings and dataclasses to JSON-ready values."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return path
