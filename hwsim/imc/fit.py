"""The on-chip fit verdict: do a network's weights fit the crossbars of an IMC chip?

Batch norms are folded into the preceding conv/linear first (the chip stores folded weights);
every distinct weight key is counted once however many times it executes (a block iterated T
times with shared weights needs the crossbars of one block). ``min_crossbars_to_fit`` is the sum
of the crossbars of all keys: first-fit placement is contiguous, so the net fits exactly when
``crossbars_needed <= crossbars_available``.

The report also compares the largest conv/linear working set (input + output feature maps at
``input_bits``) with the chip's activation buffers (``tiles · buffer_bytes_per_tile``): a layer
beyond them streams its feature maps through DRAM (see :mod:`hwsim.imc.cost`).

Only conv/linear (and transposed conv) weight matrices occupy crossbars. The parameters of the other ops (a
ViT's class token and positional embedding, CONSTANT; PReLU slopes; layer / group norm scales; MultiThreshold
thresholds; batch norms left unfolded) are small vectors the digital units read: they are stored in the tile
buffers, not the crossbars, and are reported apart (``buffer_param_bytes``, at ``input_bits``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hwsim.cache import IdentityCache
from hwsim.imc.cost import Statics, statics
from hwsim.imc.spec import Duplication, IMCSpec
from hwsim.report import jsonable
from mapping.graph import Graph
from mapping.imc import CROSSBAR_OPS, IMCMapping, layer_geometry, map_graph
from mapping.passes.fold_bn import fold_bn_cached

__all__ = ["FitReport", "fit", "fit_from_mapping", "buffer_param_bytes", "prepare"]

# The BN-folded graph, geometry and counts are shared by fit and simulate (which imports this module): cached
# here, at the lower layer, so the two modules never import each other.
_PREPARED: IdentityCache[tuple] = IdentityCache("imc prepared graphs", maxsize=16)


def prepare(graph: Graph) -> tuple[Graph, tuple, Statics]:
    """BN-folded graph, its weight geometry and per-node counts, cached per graph object (last 16)."""
    return _PREPARED.get(graph, compute=lambda: _prepare(graph))


def _prepare(graph: Graph) -> tuple[Graph, tuple, Statics]:
    folded = fold_bn_cached(graph)
    return folded, layer_geometry(folded), statics(folded)


@dataclass(frozen=True, slots=True)
class FitReport:
    """Fit of one network on one chip. ``utilization`` = needed / available (> 1 when it does not fit)."""

    network: str
    spec_name: str
    fits: bool
    crossbars_needed: int
    crossbars_available: int
    spilled_layers: tuple[str, ...]  # weight keys that do not fit (reloaded from DRAM at each execution)
    min_crossbars_to_fit: int
    min_tiles_to_fit: int
    weight_matrices: int  # distinct weight keys
    executions: int  # conv/linear executions (> weight_matrices when weights are shared)
    reason: str
    crossbars_by_layer: Mapping[str, int] = field(default_factory=dict)
    largest_working_set_bytes: int = 0  # input + output feature maps of the largest conv/linear layer
    activation_buffer_bytes: int = 0  # tiles x buffer_bytes_per_tile
    buffer_param_bytes: int = 0  # parameters of non-crossbar ops (constants, norms, ...), stored in the buffers

    @property
    def utilization(self) -> float:
        return self.crossbars_needed / self.crossbars_available

    @property
    def activations_fit(self) -> bool:
        """Every conv/linear layer's input and output feature maps fit the chip's buffers together."""
        return self.largest_working_set_bytes <= self.activation_buffer_bytes

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["utilization"] = self.utilization
        d["activations_fit"] = self.activations_fit
        return jsonable(d)

    def summary(self) -> str:
        verdict = "FITS" if self.fits else "DOES NOT FIT"
        return f"{self.network} on {self.spec_name}: {verdict} — {self.reason}"


def fit_from_mapping(mapping: IMCMapping, spec: IMCSpec, network: str = "graph",
                     working_set_bytes: int = 0, buffer_param_bytes: int = 0) -> FitReport:
    need, avail = mapping.crossbars_needed, mapping.crossbars_available
    nkeys = len(mapping.layers)
    execs = sum(len(lm.geometry.nodes) for lm in mapping.layers)
    shared = [lm for lm in mapping.layers if len(lm.geometry.nodes) > 1]
    n_sh = len(shared)
    share_txt = (f"; {n_sh} shared weight {'matrix' if n_sh == 1 else 'matrices'} executed "
                 f"{execs - nkeys + n_sh} times {'is' if n_sh == 1 else 'are'} placed once" if shared else "")
    tiles = math.ceil(need / spec.crossbars_per_tile)
    if mapping.fits:
        reason = (f"{need} of {avail} crossbars ({100 * need / avail:.0f} %) hold all {nkeys} weight "
                  f"matrices{share_txt}")
    else:
        names = ", ".join(mapping.spilled[:3]) + (" ..." if len(mapping.spilled) > 3 else "")
        reason = (f"needs {need} crossbars, the chip has {avail} ({spec.tiles} tiles x {spec.crossbars_per_tile}); "
                  f"{len(mapping.spilled)} of {nkeys} weight matrices spill to DRAM ({names}); "
                  f"{tiles} tiles would hold them{share_txt}")
    buffers = spec.activation_buffer_bytes
    if working_set_bytes:
        reason += (f"; feature maps: the largest layer needs {working_set_bytes / 1024:.0f} KiB of the "
                   f"{buffers / 1024:.0f} KiB of buffers"
                   + ("" if working_set_bytes <= buffers else " (layers beyond them stream through DRAM)"))
    if buffer_param_bytes:
        reason += (f"; {buffer_param_bytes / 1024:.1f} KiB of other parameters (constants, norm scales, ...) are "
                   "stored in the tile buffers, not the crossbars")
    return FitReport(network=network, spec_name=spec.name, fits=mapping.fits, crossbars_needed=need,
                     crossbars_available=avail, spilled_layers=mapping.spilled, min_crossbars_to_fit=need,
                     min_tiles_to_fit=tiles, weight_matrices=nkeys, executions=execs, reason=reason,
                     crossbars_by_layer=MappingProxyType({lm.key: lm.crossbars for lm in mapping.layers}),
                     largest_working_set_bytes=working_set_bytes, activation_buffer_bytes=buffers,
                     buffer_param_bytes=buffer_param_bytes)


def fit(graph: Graph, spec: IMCSpec) -> FitReport:
    """Map ``graph`` (BN folded) on ``spec`` without duplication and report whether it fits."""
    g, geo, st = prepare(graph)
    s = spec if str(getattr(spec.duplication, "value", spec.duplication)) == "none" else \
        dataclasses.replace(spec, duplication=Duplication.NONE)
    return fit_from_mapping(map_graph(g, s, geo), spec, graph.name, st.working_set_bytes(g.batch, spec),
                            buffer_param_bytes(g, spec))


def buffer_param_bytes(graph: Graph, spec: IMCSpec) -> int:
    """Bytes (at ``input_bits``) of the distinct parameters of the non-conv/linear nodes: kept in the tile buffers."""
    keys = {k for n in graph.nodes if n.op not in CROSSBAR_OPS for k in n.params.values()}
    return int(sum(graph.params[k].size for k in keys)) * spec.input_bits // 8
