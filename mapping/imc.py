"""Map conv2d/linear weight matrices onto the crossbars of an IMC accelerator.

A conv with ``groups`` g is g matrices of ``K = (Cin/g)·kh·kw`` rows by ``N = Cout/g`` columns
(a linear: K = in_features, N = out_features, g = 1; a transposed conv: K = Cin/g, N = (Cout/g)·kh·kw, one MVM
per *input* pixel: :mod:`hwsim.imc.deconv`). A weight occupies ``cpw`` physical columns:
``slices = ceil(magnitude_bits / cell_bits)`` cells, x2 for differential signed weights. On
crossbars of R x C cells:

- dense (g = 1, or a group that does not fit one crossbar): ``row_splits = ceil(K / R)``,
  ``col_splits = ceil(N·cpw / C)``, crossbars = row_splits · col_splits (per group);
- grouped/depthwise with ``K <= R`` and ``N·cpw <= C``: groups are placed block-diagonally,
  ``gpx = min(R // K, C // (N·cpw))`` groups per crossbar, crossbars = ceil(g / gpx); the cells
  off the diagonal blocks are counted as wasted.

Weights are placed per *parameter key*: the nodes of a block executed T times share one key and
one placement (the crossbars are programmed once). Keys are placed first-fit in order of first
use; a key that does not fit the crossbars left is *spilled* (its weights are reloaded from DRAM
at every execution). With ``duplication="balance"`` the spare crossbars replicate the layers with
the most work (output pixels summed over their executions) while the slowest one still fits.

The spec is read by field name only (``rows, cols, slices, columns_per_weight, crossbars,
crossbars_per_tile, duplication``), so this module does not import the simulator.
"""
from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from hwsim.errors import MappingError
from mapping.analysis import conv_transpose_in_hw
from mapping.graph import Graph, Node, Op

__all__ = ["CROSSBAR_OPS", "LayerGeometry", "LayerMapping", "IMCMapping", "layer_geometry", "crossbar_count",
           "map_graph"]

CROSSBAR_OPS = frozenset({Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR})  # the ops whose weights sit on crossbars


@dataclass(frozen=True, slots=True)
class LayerGeometry:
    """The weight matrix of one parameter key and the work done with it (per sample)."""

    key: str  # weight parameter key
    nodes: tuple[str, ...]  # nodes executing these weights, in order
    module: str
    op: str
    k: int  # rows of one group's matrix
    n: int  # columns (outputs) of one group's matrix
    groups: int
    pixels: tuple[int, ...]  # output pixels (MVMs) per execution, per sample

    @property
    def weights(self) -> int:
        return self.groups * self.k * self.n


def _matrix(node: Node) -> tuple[int, int, int, int]:
    """(K, N, groups, MVMs per sample) of a conv2d/conv_transpose2d/linear node (module docstring)."""
    a = node.attrs
    if node.op == Op.CONV2D:
        return a.rows, a.out_channels // a.groups, a.groups, int(np.prod(node.shape[2:], dtype=np.int64))
    if node.op == Op.CONV_TRANSPOSE2D:  # a 1x1 conv of Cout·kh·kw outputs over the input pixels, then col2im
        kk = a.kernel[0] * a.kernel[1]
        pix = int(np.prod(conv_transpose_in_hw(node), dtype=np.int64))
        return a.in_channels // a.groups, a.out_channels // a.groups * kk, a.groups, pix
    pix = int(np.prod(node.shape[1:-1], dtype=np.int64)) if len(node.shape) > 2 else 1
    return a.in_features, a.out_features, 1, pix


def layer_geometry(graph: Graph) -> tuple[LayerGeometry, ...]:
    """One entry per distinct weight key of the graph's conv2d/conv_transpose2d/linear nodes, in order of first
    use."""
    order: list[str] = []
    info: dict[str, dict[str, Any]] = {}
    for nd in graph.nodes:
        if nd.op not in CROSSBAR_OPS:
            continue
        key = nd.params.get("weight", nd.name)
        k, n, g, pix = _matrix(nd)
        if key not in info:
            order.append(key)
            info[key] = dict(key=key, nodes=[], module=nd.module, op=nd.op.value, k=k, n=n, groups=g, pixels=[])
        elif (info[key]["k"], info[key]["n"], info[key]["groups"]) != (k, n, g):
            raise MappingError(f"nodes sharing weight {key!r} disagree on its shape")
        info[key]["nodes"].append(nd.name)
        info[key]["pixels"].append(pix)
    return tuple(LayerGeometry(**{**info[k], "nodes": tuple(info[k]["nodes"]), "pixels": tuple(info[k]["pixels"])})
                 for k in order)


def crossbar_count(k: np.ndarray, n: np.ndarray, g: np.ndarray, rows: int, cols: int, cpw: int):
    """Vectorised crossbar arithmetic over layers (numpy int arrays of K, N, groups).

    Returns (crossbars, row_splits, col_splits, groups_per_crossbar, used_cells) per layer, where
    row/col splits are per group for unpacked groups and 1 for block-diagonal packing.
    """
    k, n, g = (np.asarray(v, dtype=np.int64) for v in (k, n, g))
    ncols = n * cpw
    rs = -(-k // rows)
    cs = -(-ncols // cols)
    packable = (g > 1) & (k <= rows) & (ncols <= cols)
    gpx = np.where(packable, np.minimum(rows // np.maximum(k, 1), cols // np.maximum(ncols, 1)), 1)
    gpx = np.maximum(gpx, 1)
    xb = np.where(packable, -(-g // gpx), g * rs * cs)
    used = g * k * ncols
    return xb, np.where(packable, 1, rs), np.where(packable, 1, cs), gpx, used


@dataclass(frozen=True, slots=True)
class LayerMapping:
    """Placement of one weight key: its crossbars, copies, tiles, and whether it lives on chip."""

    geometry: LayerGeometry
    crossbars: int  # crossbars of one copy
    row_splits: int
    col_splits: int
    groups_per_crossbar: int
    used_cells: int
    wasted_cells: int  # cells of its crossbars holding no weight (one copy)
    duplicates: int  # copies on chip (1 without duplication; 0 when spilled)
    first_crossbar: int  # index of its first crossbar on chip (-1 when spilled)
    tiles: tuple[int, ...]  # tiles holding its copies

    @property
    def onchip(self) -> bool:
        return self.duplicates > 0

    @property
    def key(self) -> str:
        return self.geometry.key


@dataclass(frozen=True, slots=True)
class IMCMapping:
    """All weight keys of a graph placed on a chip."""

    layers: tuple[LayerMapping, ...]
    crossbars_available: int
    crossbars_per_tile: int
    by_node: Mapping[str, int] = field(default_factory=dict)  # node name -> index into layers
    cells_per_crossbar: int = 1  # rows x cols

    @property
    def crossbars_needed(self) -> int:
        """Crossbars to hold every weight key once (no duplication)."""
        return int(sum(lm.crossbars for lm in self.layers))

    @property
    def crossbars_used(self) -> int:
        """Crossbars programmed on chip (including duplicates)."""
        return int(sum(lm.crossbars * lm.duplicates for lm in self.layers))

    @property
    def spilled(self) -> tuple[str, ...]:
        return tuple(lm.key for lm in self.layers if not lm.onchip)

    @property
    def fits(self) -> bool:
        return not self.spilled

    @property
    def tiles_used(self) -> int:
        return len({t for lm in self.layers for t in lm.tiles})

    @property
    def cell_utilization(self) -> float:
        """Fraction of the cells of the programmed crossbars that hold a weight bit slice."""
        tot = sum(lm.crossbars * lm.duplicates for lm in self.layers)
        return sum(lm.used_cells * lm.duplicates for lm in self.layers) / (tot * self.cells_per_crossbar) if tot else 0.0

    def layer_of(self, node_name: str) -> LayerMapping:
        return self.layers[self.by_node[node_name]]


def _tiles(first: int, count: int, per_tile: int) -> range:
    return range(first // per_tile, (first + count - 1) // per_tile + 1)


def map_graph(graph: Graph, spec: Any, geometry: tuple[LayerGeometry, ...] | None = None) -> IMCMapping:
    """Place every weight key of ``graph`` on ``spec``'s crossbars (see the module docstring)."""
    geo = layer_geometry(graph) if geometry is None else geometry
    rows, cols, cpw = spec.rows, spec.cols, spec.columns_per_weight
    avail, per_tile = spec.crossbars, spec.crossbars_per_tile
    if not geo:
        return IMCMapping((), avail, per_tile, MappingProxyType({}), rows * cols)
    xb, rs, cs, gpx, used = crossbar_count([g.k for g in geo], [g.n for g in geo], [g.groups for g in geo],
                                           rows, cols, cpw)
    balance = str(getattr(spec.duplication, "value", spec.duplication)) == "balance"
    if balance:
        big = [(g.key, int(x)) for g, x in zip(geo, xb) if x > avail]
        if big:
            raise MappingError(f"duplication='balance' asked, but layer {big[0][0]!r} needs {big[0][1]} crossbars, "
                               f"more than the whole chip ({avail}); use duplication='none' to run it from DRAM")
    # first-fit placement in order of first use
    first = np.full(len(geo), -1, dtype=np.int64)
    dup = np.zeros(len(geo), dtype=np.int64)
    cursor = 0
    for i, x in enumerate(xb):
        if cursor + x <= avail:
            first[i], dup[i] = cursor, 1
            cursor += int(x)
    extra_ranges: dict[int, list[tuple[int, int]]] = {}
    if balance:
        work = np.array([sum(g.pixels) for g in geo], dtype=np.float64)
        heap = [(-work[i], i) for i in range(len(geo)) if dup[i] > 0]
        heapq.heapify(heap)
        while heap:
            negw, i = heap[0]
            if cursor + xb[i] > avail or dup[i] >= max(geo[i].pixels):
                break  # the slowest layer cannot be replicated further: stop (no bottleneck gain)
            heapq.heapreplace(heap, (-work[i] / (dup[i] + 1), i))
            extra_ranges.setdefault(i, []).append((cursor, int(xb[i])))
            dup[i] += 1
            cursor += int(xb[i])
    layers = []
    for i, g in enumerate(geo):
        tiles: set[int] = set()
        if dup[i]:
            tiles.update(_tiles(int(first[i]), int(xb[i]), per_tile))
            for f, c in extra_ranges.get(i, []):
                tiles.update(_tiles(f, c, per_tile))
        layers.append(LayerMapping(g, int(xb[i]), int(rs[i]), int(cs[i]), int(gpx[i]), int(used[i]),
                                   int(xb[i]) * rows * cols - int(used[i]), int(dup[i]), int(first[i]),
                                   tuple(sorted(tiles))))
    by_node = {name: i for i, g in enumerate(geo) for name in g.nodes}
    return IMCMapping(tuple(layers), avail, per_tile, MappingProxyType(by_node), rows * cols)


def min_crossbars(geometry: tuple[LayerGeometry, ...], spec: Any) -> int:
    """Crossbars needed to hold every weight key once on ``spec``'s crossbar geometry."""
    if not geometry:
        return 0
    xb, *_ = crossbar_count([g.k for g in geometry], [g.n for g in geometry], [g.groups for g in geometry],
                            spec.rows, spec.cols, spec.columns_per_weight)
    return int(xb.sum())
