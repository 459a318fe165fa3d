"""Costs of the streaming blocks between MVAUs: FINN's AddStreams, StreamingConcat, Thresholding, accumulating
Pool and DuplicateStreams (cycles, LUTs; they hold no weights).

Each block processes PE channels per cycle: ``cycles = pixels * ceil(C / PE)`` (FINN's ``get_exp_cycles`` of
these ops: AddStreams / DuplicateStreams / Thresholding ``NumChannels / PE * pixels``; StreamingConcat the
channels of all inputs; the accumulating Pool one input element per lane and cycle). hwsim gives every block the
smallest PE dividing C whose cycles stay within the initiation interval II of the MVAUs (a published folding
fixes only the MVAUs here), so these blocks never become the bottleneck unless even PE = C cannot keep up.

LUTs: FINN has no estimate for AddStreams, StreamingConcat, DuplicateStreams or Pool; ours are assumptions of the
order of FINN-R's datapath terms, stated per block below. Thresholding uses FINN-R's threshold memory and
comparator terms (MVAU ``lut_estimation``: ``c0 + c1 * PE * (thr + comp)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from hwsim.fpga.schedule import Stage
from mapping.fpga_program import AccPoolLayer, AddLayer, ConcatLayer, Enc, ThresholdLayer

__all__ = ["HwLayer", "stream_blocks", "dup_rows", "block_pe"]

LUT_C0 = 300  # FINN-R / FINN MVAU lut_estimation: constant LUTs per block
LUT_C1 = 1.1  # FINN-R / FINN MVAU lut_estimation: scale of the per-PE datapath
STREAM_C0 = 50  # assumed: handshake and counters of a stream-only block (AddStreams, Concat, DuplicateStreams)


@dataclass(frozen=True, slots=True)
class HwLayer:
    """One hardware block of the pipeline and its cost for one frame."""

    name: str
    kind: str  # "thresholding" | "fmpad" | "swg" | "mvau" | "vvau" | "pool" | "add" | "concat" | "accpool" | "dup"
    module: str
    cycles: int
    luts: int
    bram18: int
    pe: int = 0
    simd: int = 0
    macs: int = 0
    weight_bits: int = 0  # bits of weights stored
    extra: dict = field(default_factory=dict)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def block_pe(channels: int, pixels: int, ii: int) -> int:
    """The smallest PE dividing ``channels`` with ``pixels * channels / PE <= ii`` (PE = channels if none)."""
    for pe in range(1, channels + 1):
        if channels % pe == 0 and pixels * (channels // pe) <= ii:
            return pe
    return channels


def _bits(enc) -> int:
    return 1 if enc.kind == Enc.BINARY else enc.bits


def _block(layer, src: tuple[str, ...], numel: dict, ii: int) -> tuple[HwLayer, Stage]:
    shape = getattr(layer, "out_shape", None) or layer.shape
    out_elems = math.prod(shape)
    in_elems = tuple(numel[s] for s in src)
    if isinstance(layer, AccPoolLayer):
        c, h, w = layer.in_shape
        pe = block_pe(c, h * w, ii)
        cycles = h * w * (c // pe)
        acc = layer.out.bits + layer.shift + 1  # a Trunc's right shift drops bits after the accumulator (wiring)
        # assumed: c0 + one accumulator of acc bits per PE lane + LUTRAM partial sums of one output row
        luts = int(LUT_C0 + LUT_C1 * pe * acc + _cdiv(c * shape[2] * acc, 64))
        return (HwLayer(layer.name, "accpool", "", cycles, luts, 0, pe=pe),
                Stage("window", layer.name, src, cycles, layer, in_elems, out_elems, shape[1] * shape[2]))
    c = shape[0]
    pixels = out_elems // c
    pe = block_pe(c, pixels, ii)
    cycles = pixels * (c // pe)
    bits = _bits(layer.out)
    if isinstance(layer, ThresholdLayer):
        acc = _bits(layer.in_enc) + 1
        levels = layer.thresholds.shape[1]
        thr, comp = levels * acc * _cdiv(c // pe, 64), levels * acc
        kind, luts = "thresholding", int(LUT_C0 + LUT_C1 * pe * (thr + comp))
    elif isinstance(layer, AddLayer):
        kind, luts = "add", int(STREAM_C0 + LUT_C1 * pe * bits)  # assumed: one bits-wide adder per lane
    elif isinstance(layer, ConcatLayer):
        kind, luts = "concat", int(STREAM_C0 + LUT_C1 * pe * bits)  # assumed: a bits-wide 2:1 mux per lane
    else:  # pragma: no cover
        raise TypeError(type(layer).__name__)
    return (HwLayer(layer.name, kind, "", cycles, luts, 0, pe=pe),
            Stage("elementwise", layer.name, src, cycles, layer, in_elems, out_elems, pixels))


def stream_blocks(later, numel: dict, ii: int) -> tuple[list[HwLayer], list[Stage]]:
    """Rows and SimPy stages of the streaming blocks ``[(layer, sources)]``, in order."""
    rows, stages = [], []
    for layer, src in later:
        row, st = _block(layer, src, numel, ii)
        rows.append(row)
        stages.append(st)
    return rows, stages


def dup_rows(stages: list[Stage], numel: dict, ii: int) -> list[HwLayer]:
    """A DuplicateStreams block for every value read by several stages: ``numel / PE`` cycles, LUTs assumed
    ``STREAM_C0`` + one register bit per lane and copy."""
    readers: dict[str, int] = {}
    for st in stages:
        for s in st.srcs:
            readers[s] = readers.get(s, 0) + 1
    rows = []
    for name, k in readers.items():
        if k < 2 or name == "input":
            continue
        producer = next(st for st in stages if st.name == name)
        shape = getattr(producer.layer, "out_shape", None) or producer.layer.shape
        c = shape[0] if len(shape) == 3 else 1
        pe = block_pe(c, numel[name] // c, ii)
        rows.append(HwLayer(name + ":dup", "dup", "", numel[name] // pe, int(STREAM_C0 + LUT_C1 * pe * k), 0, pe=pe))
    return rows
