"""How a runtime splits one layer over ``n`` threads: the share of the layer's work on its busiest thread.

A layer on ``n`` threads finishes when its busiest thread does, so its compute time is the one-thread time times
:func:`busiest_share` (``1/n`` for a perfectly even split, ``1`` for a layer that runs on one thread). The split
follows the runtime's parallel loops, read in Tencent/ncnn at a4d2ea1:

* **GEMM convolutions** (``src/layer/arm/convolution_im2col_gemm.h``, ``_fp16s.h``, ``_int8.h``): the GEMM is one
  ``#pragma omp parallel for num_threads(nT)`` over ``nn_M`` blocks of ``TILE_M`` output channels
  (``convolution_im2col_gemm_get_optimal_tile_mnk``): on aarch64 ``TILE_M`` starts as ``M`` split into blocks of
  about 32 rows (64 in the fp16 kernels) rounded up to 8, is multiplied by ``min(nT, cpus)``, re-balanced over
  ``M`` and, when ``nT > 1``, cut to ``TILE_M / nT`` rounded up to 8. A layer with 16 output channels therefore
  has two blocks of 8 and runs on 2 of 4 threads; 40 channels give blocks 16 + 16 + 8 (busiest 16 of 40).
* **Winograd convolutions** (``convolution_3x3_winograd.h``, ``_fp16s.h``, ``_int8.h``,
  ``conv3x3s1_winograd_get_optimal_tile_mnk``): the same, from ``TILE_M = 8`` (x ``nT``, cut to ``/ nT``, at least
  8): blocks of 8 output channels.
* **Depthwise, pooling, elementwise and activation layers** (``convolutiondepthwise_arm.cpp``, ``pooling_arm.cpp``,
  ``binaryop_arm.cpp``, ``relu_arm.cpp``, ...): ``#pragma omp parallel for`` over channel blocks of ``elempack``
  channels (8 in ncnn's fp16 and int8 storage, 4 in fp32, 1 when the count is not a multiple of 4).
* **Fully connected** (``innerproduct_arm.cpp``): over blocks of ``elempack`` outputs.
* **Channel concatenation and channel shuffle** (``concat_arm.cpp`` for ``dims == 3, axis == 0``,
  ``shufflechannel_arm.cpp``): no ``omp`` loop: one thread.

OpenMP's default ``schedule(static)`` gives each thread ``ceil(blocks / n)`` consecutive blocks at most; the busiest
thread's share is its rows over all rows. Other runtimes (XNNPACK's pthreadpool 2-D tiles of ``mr x nc``) split
finely: ``1/n`` for every parallel layer, copies included.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from mapping.graph import Node, Op

__all__ = ["Split", "EVEN", "SERIAL", "layer_split", "ncnn_tile_m", "busiest_share", "block_sizes"]

_R = 8  # aarch64 row granularity of ncnn's GEMM tiles (``+ 7) / 8 * 8`` in the tile solvers)


def _up(x: int, r: int = _R) -> int:
    return (x + r - 1) // r * r


def ncnn_tile_m(m: int, n: int, kernel: str) -> int:
    """``TILE_M`` of ncnn's aarch64 tile solver for a GEMM of ``m`` output rows on ``n`` threads; ``kernel`` is
    ``"gemm"`` (fp32 / int8 im2col GEMM: first blocks of 32 rows), ``"gemm-fp16"`` (64 rows) or ``"winograd"``
    (8 rows)."""
    n = max(1, n)
    if kernel == "winograd":
        tile = _R
    else:
        first = 64 if kernel == "gemm-fp16" else 32
        nn = (m + first - 1) // first
        tile = max(_R, _up((m + nn - 1) // nn))
    tile *= n
    nn = (m + tile - 1) // tile
    tile = min(tile, _up((m + nn - 1) // nn))
    if n > 1:
        tile = min(tile, _up(max(1, tile // n)))
    return max(_R, tile) if kernel == "winograd" else tile


def block_sizes(rows: int, tile: int) -> list[int]:
    """The rows of each block when ``rows`` are cut in blocks of ``tile`` (the last one short)."""
    full, rest = divmod(rows, tile)
    return [tile] * full + ([rest] if rest else [])


def busiest_share(rows: int, tile: int, n: int) -> float:
    """Share of ``rows`` (cut in blocks of ``tile``) on the busiest of ``n`` threads under OpenMP's static schedule:
    thread ``t`` takes blocks ``[t·c, (t+1)·c)`` with ``c = ceil(blocks / n)``."""
    if rows <= 0 or n <= 1:
        return 1.0
    blocks = block_sizes(rows, max(1, tile))
    c = math.ceil(len(blocks) / n)
    return max(sum(blocks[i:i + c]) for i in range(0, len(blocks), c)) / rows


class Split(NamedTuple):
    """How one layer is split over threads: its GEMM stream over ``gemm_rows`` rows cut by ``gemm_kind`` ("even":
    finely, ``1/n``; "blocks": blocks of one row; "gemm" / "gemm-fp16" / "winograd": ncnn's ``TILE_M``), its other
    work (depthwise, vector) over ``vec_blocks`` blocks (0: finely); ``serial``: the whole layer on one thread."""

    gemm_kind: str = "even"
    gemm_rows: int = 0
    vec_blocks: int = 0
    serial: bool = False

    def shares(self, n: int) -> tuple[float, float]:
        """(GEMM share, other share) of the busiest of ``n`` threads."""
        if n <= 1 or self.serial:
            return 1.0, 1.0
        if self.gemm_kind == "even" or self.gemm_rows <= 0:
            s_gemm = 1.0 / n
        else:
            tile = 1 if self.gemm_kind == "blocks" else ncnn_tile_m(self.gemm_rows, n, self.gemm_kind)
            s_gemm = busiest_share(self.gemm_rows, tile, n)
        return s_gemm, (busiest_share(self.vec_blocks, 1, n) if self.vec_blocks > 0 else 1.0 / n)


EVEN = Split()
SERIAL = Split(serial=True)
_SERIAL_OPS = frozenset({Op.CONCAT, Op.CHANNEL_SHUFFLE})  # concat_arm.cpp (dims 3, axis 0), shufflechannel_arm.cpp
_CONV_GEMMS = frozenset({"gemm", "im2col-gemm"})


def _blocks(channels: int, wide: bool) -> int:
    """ncnn's channel blocks: ``elempack`` = 8 in fp16 / int8 storage (``wide``), 4 in fp32, 1 otherwise."""
    pack = 8 if wide and channels % 8 == 0 else 4 if channels % 4 == 0 else 1
    return math.ceil(channels / pack)


def layer_split(node: Node, algo: str, runtime: str, wide: bool, fp16: bool) -> Split:
    """The :class:`Split` of ``node`` run as ``algo`` by ``runtime`` (module docstring); ``wide``: ncnn's 8-channel
    packing (fp16 or int8 storage), ``fp16``: ncnn's fp16 GEMM kernels."""
    if runtime != "ncnn" or algo in ("fused", "view"):
        return EVEN
    if node.op in _SERIAL_OPS:
        return SERIAL
    a = node.attrs
    if algo.startswith("winograd"):  # the Winograd-domain GEMM over TILE_M blocks; the transforms over tiles
        return Split("winograd", a.out_channels)
    if node.op == Op.CONV2D and algo in _CONV_GEMMS:  # a grouped conv runs its groups one after the other
        return Split("gemm-fp16" if fp16 else "gemm", a.out_channels // a.groups)
    if node.op == Op.LINEAR:  # innerproduct_arm.cpp: over blocks of elempack outputs
        return Split("blocks", _blocks(a.out_features, wide))
    if node.op in (Op.MATMUL, Op.ATTENTION):
        return EVEN
    # depthwise, pooling, elementwise, copies: over the channel blocks of a (N, C, H, W) tensor; a flat tensor
    # is one "channel" in ncnn's Mat: one thread
    channels = node.shape[1] if len(node.shape) == 4 else 1
    return Split(vec_blocks=_blocks(channels, wide))
