"""Symmetric uniform quantization of weights and inputs of every conv2d / linear (annotation pass).

Scheme (the one integer accelerators and the IMC target use):
- weights: symmetric, per output channel (or per tensor): ``s_w[o] = max|W[o]| / (2^(b-1) - 1)``,
  ``q = clip(rint(W / s_w), -(2^(b-1) - 1), 2^(b-1) - 1)`` (the level -2^(b-1) is never used, so
  the range is symmetric and ``-q`` is always representable);
- inputs: max-abs; unsigned ``[0, 2^b - 1]`` when the input has no negative value (post-ReLU
  activations), else signed two's complement ``[-(2^(b-1) - 1), 2^(b-1) - 1]``:
  ``s_x = max|x| / qmax``. With a calibration range (``input_ranges``) the scale is fixed; without,
  it is *dynamic*: computed at run time from each sample's own input to the layer
  (``input_scales``), as a chip that converts one input at a time would, so a sample's result does not
  depend on the other samples of its batch.
- the layer's integer result ``acc = Σ q_x·q_w`` is dequantized as ``acc · s_x · s_w[o] + bias``.

The pass never changes parameters or nodes' arithmetic: it annotates each conv/linear node with
``meta["quant"] = QuantParams(...)`` and returns a new graph. Targets (IMC, CPU int8) read it. A conv_transpose2d
is not annotated here (it stays float): the CPU int8 path refuses it, naming the node; the IMC target quantizes it
per output channel itself (``hwsim.imc.simulate.quantize_with_progress``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hwsim.errors import ShapeError, SpecError
from mapping.graph import Graph, Op

__all__ = ["QuantParams", "quantize", "quantize_weights", "weight_grid", "input_qmax", "input_scale", "input_scales", "quantize_input", "dequantize"]


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Quantization of one conv/linear node.

    weight_bits: bits of the signed weights. weight_scale: one scale per output channel (per-channel)
    or a single one (per-tensor), in units of the float weight per integer level.
    input_bits: bits of the input activations. input_scale: float per level, or None (dynamic:
    max-abs of the actual input). input_signed: None (decided from the input: signed iff it has a
    negative value), or fixed by calibration.
    """

    weight_bits: int
    weight_scale: tuple[float, ...]
    input_bits: int
    input_scale: float | None = None
    input_signed: bool | None = None


def weight_grid(node) -> tuple[float, ...] | None:
    """The grid a layer's weights lie on (``meta["weight_scale"]``: QONNX and ``nets.layers`` k-bit layers, with
    ``meta["weight_bits"]``; ``nets.compress.quantize_ptq(...).graph()``'s layers, per tensor or per channel; one
    scale, or one per output channel after BN folding), else None."""
    if "weight_scale" not in node.meta:
        return None
    return tuple(float(v) for v in np.ravel(np.asarray(node.meta["weight_scale"], dtype=np.float64)))


def _grid_codes(w64: np.ndarray, grid, qmax: int, per_channel: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Weights on a known grid ``w = k · g_c`` (integers k) as codes ``k · m_c`` with ``m_c = floor(qmax / max|k_c|)``
    (the spec's range used as fully as the levels allow) and scales ``g_c / m_c``: exact. None when ``w`` is not on
    the grid (to 1e-3 of a level) or holds more levels than ``qmax``."""
    g = np.abs(np.asarray(grid, dtype=np.float64))
    if np.any(g <= 0) or (g.size != 1 and (g.size != w64.shape[0] or not per_channel)):
        return None
    gc = g.reshape((-1,) + (1,) * (w64.ndim - 1)) if g.size > 1 else g.reshape(())
    k = w64 / gc
    ki = np.rint(k)
    if not np.all(np.abs(k - ki) <= 1e-3):
        return None
    kmax = np.abs(ki.reshape(len(ki), -1)).max(axis=1) if per_channel else np.array([np.abs(ki).max()])
    if np.any(kmax > qmax):
        return None
    m = np.floor(qmax / np.maximum(kmax, 1.0))
    mc = m.reshape((-1,) + (1,) * (w64.ndim - 1)) if per_channel else m[0]
    scale = np.broadcast_to(np.ravel(g), m.shape) / m
    return (ki * mc).astype(np.int64), np.where(kmax > 0, scale, 0.0)


def quantize_weights(w: np.ndarray, bits: int, per_channel: bool = True,
                     grid: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (int64, same shape as ``w``) and scales (float64, one per output channel or one). An
    all-zero channel (a pruned filter) gets the integers 0 and the scale 0: whatever the hardware adds to its
    accumulator dequantizes to nothing (a scale of 1 would turn ADC clipping or noise on its offset-encoded cells
    into outputs of the accumulator's size). Non-finite weights are refused. ``grid`` (:func:`weight_grid`): weights
    already quantized keep their own levels, exactly (:func:`_grid_codes`); else the max-abs scale."""
    if bits < 2:
        raise SpecError(f"weight_bits must be >= 2 for symmetric signed quantization, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    w64 = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w64).all():
        raise ShapeError(f"weights of shape {w64.shape} hold NaN/inf values: they cannot be quantized")
    exact = _grid_codes(w64, grid, qmax, per_channel) if grid is not None else None
    if exact is not None:
        return exact
    if per_channel:
        m = np.abs(w64.reshape(w64.shape[0], -1)).max(axis=1)
    else:
        m = np.array([np.abs(w64).max()])
    safe = np.where(m > 0, m / qmax, 1.0)
    s = safe.reshape((-1,) + (1,) * (w64.ndim - 1)) if per_channel else safe[0]
    q = np.clip(np.rint(w64 / s), -qmax, qmax).astype(np.int64)
    return q, np.where(m > 0, m / qmax, 0.0)


def input_qmax(bits: int, signed: bool) -> int:
    """The largest input level: ``2^(b-1) - 1`` signed (symmetric), ``2^b - 1`` unsigned."""
    return 2 ** (bits - 1) - 1 if signed else 2**bits - 1


def _check_levels(bits: int, signed: bool) -> None:
    if input_qmax(bits, signed) < 1:
        raise SpecError(f"input_bits={bits} leaves signed inputs (a layer after an op that can go negative) no "
                        "positive level; use input_bits >= 2")


def input_scale(x: np.ndarray, bits: int) -> tuple[float, bool]:
    """Per-tensor max-abs scale and signedness of ``x`` for ``bits``-bit inputs."""
    signed = bool(np.min(x) < 0)
    qmax = input_qmax(bits, signed)
    _check_levels(bits, signed)
    m = float(np.max(np.abs(x)))
    return (m / qmax if m > 0 else 1.0), signed


def input_scales(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample :func:`input_scale` of ``x`` (samples along axis 0): float64 scales [N] and signedness [N]."""
    flat = np.asarray(x).reshape(len(x), -1)
    signed = flat.min(axis=1, initial=0.0) < 0
    _check_levels(bits, bool(signed.any()))
    qmax = np.where(signed, input_qmax(bits, True), input_qmax(bits, False)).astype(np.float64)
    m = np.abs(flat).max(axis=1, initial=0.0).astype(np.float64)
    return np.where(m > 0, m / qmax, 1.0), signed


def quantize_input(x: np.ndarray, bits: int, scale: float | np.ndarray, signed: bool) -> np.ndarray:
    """Integer inputs (int64): ``clip(rint(x / scale))`` to the unsigned or signed range; ``scale`` one float or
    one per sample (axis 0)."""
    scale = np.asarray(scale, dtype=np.float64)
    scale = scale.reshape((-1,) + (1,) * (np.ndim(x) - 1)) if scale.ndim else scale
    if signed:
        lo, hi = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale), lo, hi).astype(np.int64)


def dequantize(acc: np.ndarray, x_scale: float | np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
               channel_axis: int) -> np.ndarray:
    """``acc · s_x · s_w[o] (+ bias)`` in float64, rounded once to float32; ``acc`` is integer; ``x_scale`` one
    float or one per row of ``acc`` (axis 0: a sample, or a position of one)."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    if np.ndim(x_scale):
        x_scale = np.asarray(x_scale, dtype=np.float64).reshape((-1,) + (1,) * (acc.ndim - 1))
    s = (x_scale * np.asarray(w_scale, dtype=np.float64).reshape(shape)) if np.size(w_scale) > 1 else \
        x_scale * float(np.asarray(w_scale).ravel()[0])
    y = acc.astype(np.float64) * s
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(shape)
    return y.astype(np.float32)


def quantize(graph: Graph, weight_bits: int = 8, input_bits: int = 8, per_channel: bool = True,
             input_ranges: Mapping[str, tuple[float, float]] | None = None) -> Graph:
    """Annotate every conv2d/linear node with :class:`QuantParams` (``meta["quant"]``).

    ``input_ranges`` (optional calibration) maps a node name to the (min, max) of its input; nodes
    without a range get a dynamic input scale. Shared weights (several nodes, one key) get the same
    weight scales (they are computed from the same array).
    """
    if isinstance(weight_bits, bool) or not (isinstance(weight_bits, int) and 2 <= weight_bits <= 16):
        raise SpecError(f"weight_bits must be an int in [2, 16], got {weight_bits!r}")
    if isinstance(input_bits, bool) or not (isinstance(input_bits, int) and 1 <= input_bits <= 16):
        raise SpecError(f"input_bits must be an int in [1, 16], got {input_bits!r}")
    ranges = dict(input_ranges or {})
    for name, (lo, _) in ranges.items():
        if lo < 0 and input_qmax(input_bits, True) < 1:
            raise SpecError(f"input_bits={input_bits} leaves the signed inputs of {name} (input_ranges min {lo:g} < 0) "
                            "no positive level; use input_bits >= 2")
    cache: dict[str, tuple[float, ...]] = {}
    nodes = []
    for n in graph.nodes:
        if n.op not in (Op.CONV2D, Op.LINEAR):
            nodes.append(n)
            continue
        key = n.params["weight"]
        if key not in cache:
            _, s = quantize_weights(graph.params[key], weight_bits, per_channel)
            cache[key] = tuple(float(v) for v in s)
        xs, signed = None, None
        if n.name in ranges:
            lo, hi = ranges[n.name]
            signed = lo < 0
            qmax = input_qmax(input_bits, signed)
            m = max(abs(lo), abs(hi))
            xs = m / qmax if m > 0 else 1.0
        q = QuantParams(weight_bits, cache[key], input_bits, xs, signed)
        nodes.append(n.replace(meta={**n.meta, "quant": q}))
    return graph.replace(nodes=tuple(nodes))
