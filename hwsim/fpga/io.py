"""Data movers around a FINN-style dataflow, and the steady-state frame interval of the whole pipeline.

A measured FINN / BNN-PYNQ design is more than its MVAUs: an input mover streams each image from DDR into the
first layer and an output mover writes the result back, and the inter-layer FIFOs have the depths the design was
built with. Both can set the frame interval:

* **Movers** (their own pipeline stages, their own II): cycles per frame = ceil(bits per frame / width).

  - BNN-PYNQ: ``Mem2Stream_Batch<64, bytes>`` / ``Stream2Mem_Batch<64, bytes>`` (finn-hlslib ``dma.h``, called in
    every ``bnn/src/network/*/hw/top.cpp``): one 64-bit AXI word per cycle (an II=1 pipelined copy loop).
  - FINN: ``IODMA`` nodes inserted by ``InsertIODMA(max_intfwidth)`` (``src/finn/transformation/fpgadataflow/
    insert_iodma.py``): interface width ``gcd(transfer_bits, max_intfwidth)`` with ``transfer_bits`` = padded
    stream width x stream words per frame; ``ZynqBuild`` passes ``pynq_native_port_width[board]``
    (``src/finn/util/basic.py``: Pynq-Z1 / Pynq-Z2 64 bits). The width is a multiple of 8 (an assert there), so
    8 bits per cycle bounds any mover whose board width is not known.
* **FIFO coupling:** an MVAU reads its input vector only during its first neuron fold and reuses it from its
  input buffer for the other folds (finn-hlslib ``mvau.hpp``: ``if (nf == 0) inElem = in.read(); ...``), and it
  writes one PE-wide word at the end of every neuron fold, blocking while the FIFO is full. With a FIFO shallower
  than a layer's output per frame, a consumer's reading phase waits on its producer's compute and the frame
  interval exceeds the slowest layer's cycles. :func:`frame_interval` runs the SimPy pipeline
  (:mod:`hwsim.fpga.schedule`, whose ``fc`` stage reads in its first fold and emits per fold) over several frames
  with the given depths and returns the steady-state interval.

With unbounded FIFOs the interval is the slowest stage's cycles: max(II, mover cycles).

* **Width converters** (:func:`with_width_converters`): finn-hlslib's ``StreamingFCLayer_Batch`` (``fclayer.h``)
  wraps its input stream in a ``WidthAdjustedInputStream``; where the stream is wider than SIMD x input bits that
  is a ``StreamingDataWidthConverter_Batch`` process of its own (``streamtools.h``) writing into an internal
  ``hls::stream`` with no depth pragma (the HLS default FIFO depth, :data:`HLS_STREAM_DEPTH` words). BNN-PYNQ
  declares every inter-layer stream at its producer's width (``inter<k>`` of ``L<k>_PE x (API + APF)`` bits in
  ``lfcW1A*/hw/top.cpp``), so a consumer with SIMD < the producer's PE gets one. Its rate (one output word per
  cycle) never binds, but as a stalled HLS pipeline it holds the last output word of every input word until the
  next input word arrives (:meth:`hwsim.fpga.schedule._Sim.dwc`): the consumer cannot finish reading frame f before
  its producer has emitted the first word of frame f + 1, which couples the layers further.

**A measured batch** (:func:`batch_rate`): FINN's PYNQ driver measures ``throughput[images/s] = N / runtime`` with
``runtime`` the wall time of one ``execute`` call on a batch of ``N`` images (the driver template's
``throughput_test``, ``src/finn/transformation/fpgadataflow/templates.py`` in 2020; ``driver_base.py`` later): the
pipeline's fill (one frame's latency), ``N - 1`` further frame intervals, and the call's fixed host cost (MMIO
writes to the IODMAs, the polling loop on the output IODMA's done bit, the Python around them).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwsim.errors import MappingError
from hwsim.fpga.schedule import Stage, run_pipeline

__all__ = ["Mover", "iodma_width", "with_movers", "with_width_converters", "frame_interval", "batch_rate",
           "BNNPYNQ_MOVER_BITS", "FINN_MIN_IODMA_BITS", "FINN_DRIVER_CALL_S", "HLS_STREAM_DEPTH"]

BNNPYNQ_MOVER_BITS = 64  # finn-hlslib dma.h Mem2Stream_Batch<64, ...> / Stream2Mem_Batch<64, ...> in BNN-PYNQ top.cpp
FINN_MIN_IODMA_BITS = 8  # FINN insert_iodma.py: assert intfwidth % 8 == 0 (the narrowest IODMA interface)
# Fixed host time of one call of FINN's PYNQ driver, s: the one published figure, finn-examples
# finn_examples/notebooks/0_mnist_with_fc_networks.ipynb @ 00da6d3 (2020-10-22): "%%timeit" of accel.execute() on one
# MNIST image, 808 us per loop (Zynq board not recorded; execute() also packs and copies that one image, a few us of
# the 808). A measurement, not fitted to the rows it is applied to.
FINN_DRIVER_CALL_S = 808e-6
# Depth (words) of an hls::stream without a STREAM depth pragma: 2 (Vitis HLS UG1399 "HLS Stream Library": "An
# hls::stream<> internal to the design is implemented as a FIFO with a default depth of 2"; config_dataflow
# -fifo_depth default 2). Vivado HLS's UG902 text of the BNN-PYNQ era says depth 1; the LFC interval moves by a few
# cycles between the two (docs/targets/fpga.md).
HLS_STREAM_DEPTH = 2


@dataclass(frozen=True, slots=True)
class Mover:
    """A data mover: ``bits`` per frame (bits) at ``width`` bits per cycle."""

    name: str
    bits: int  # bits moved per frame
    width: int  # bits per cycle

    def __post_init__(self):
        if self.bits <= 0 or self.width <= 0:
            raise MappingError(f"mover {self.name}: bits and width must be > 0, got {self.bits}, {self.width}")

    @property
    def cycles(self) -> int:
        """Cycles per frame: ceil(bits / width)."""
        return -(-self.bits // self.width)


def iodma_width(stream_bits: int, words: int, port_bits: int) -> int:
    """FINN's IODMA interface width: gcd(padded stream width x words per frame, port width); the stream width is
    padded to whole bytes (AXI streams), as in ``insert_iodma.py``."""
    padded = -(-stream_bits // 8) * 8
    return math.gcd(padded * words, port_bits)


def with_movers(stages: Sequence[Stage], input_elems: int, mover_in: Mover | None,
                mover_out: Mover | None) -> list[Stage]:
    """The pipeline's stages with an input mover in front (every reader of ``"input"`` reads it instead) and an
    output mover behind the last stage. A mover is an element-wise stage that passes ``gcd(elements, cycles)``
    chunks per frame, so its cycles spread over the frame."""
    out = list(stages)
    if mover_in is not None:
        out = [dataclasses.replace(st, srcs=tuple(mover_in.name if s == "input" else s for s in st.srcs))
               for st in out]
        units = math.gcd(input_elems, mover_in.cycles)
        out.insert(0, Stage("elementwise", mover_in.name, ("input",), mover_in.cycles, None, (input_elems,),
                            input_elems, units))
    if mover_out is not None:
        last = out[-1]
        units = math.gcd(last.out_elems, mover_out.cycles)
        out.append(Stage("elementwise", mover_out.name, (last.name,), mover_out.cycles, None, (last.out_elems,),
                         last.out_elems, units))
    return out


def with_width_converters(stages: Sequence[Stage], fifo_depth: Mapping[str, int] | None,
                          stream_depth: int = HLS_STREAM_DEPTH) -> tuple[list[Stage], dict[str, int]]:
    """BNN-PYNQ's input width converters (module docstring): a ``"dwc"`` stage in front of every MVAU whose SIMD is
    smaller than its MVAU producer's PE. Returns the stages and the FIFO depths: the producer's FIFO now feeds the
    converter (``"p->c"`` becomes ``"p->c_dwc"``), the converter's own FIFO holds ``stream_depth`` words of SIMD
    elements. Raises :class:`MappingError` where a converter would widen the stream or the widths do not divide
    (not modelled)."""
    by_name = {st.name: st for st in stages}
    depth = dict(fifo_depth or {})
    out: list[Stage] = []
    for st in stages:
        src = by_name.get(st.srcs[0]) if st.srcs else None
        if st.kind != "fc" or src is None or src.kind != "fc" or src.pe == st.simd or st.branches != 1:
            out.append(st)
            continue
        if src.pe < st.simd or src.pe % st.simd:
            raise MappingError(f"width converter {src.name} -> {st.name}: PE {src.pe} into SIMD {st.simd} is not a "
                               "whole-word down-conversion (not modelled)")
        name = f"{st.name}_dwc"
        n = st.in_elems[0]
        out.append(Stage("dwc", name, (src.name,), -(-n // st.simd), None, (n,), n, -(-n // src.pe), pe=src.pe,
                         simd=st.simd))
        out.append(dataclasses.replace(st, srcs=(name,) + st.srcs[1:]))
        old = depth.pop(f"{src.name}->{st.name}", None)
        if old is not None:
            depth[f"{src.name}->{name}"] = old
        depth[f"{name}->{st.name}"] = stream_depth * st.simd
    return out, depth


def frame_interval(stages: Sequence[Stage], input_elems: int, fifo_depth: Mapping[str, int] | None = None,
                   frames: int = 8) -> float:
    """Steady-state cycles between frames. Unbounded FIFOs: the slowest stage's cycles. With ``fifo_depth``
    (elements per ``"producer->consumer"`` FIFO): the interval before the last frame of a SimPy run of ``frames``
    frames whose input is all available (a batch in DDR); the last frame ends the run, where stalled pipelines
    flush (a width converter's held word), so it is not a steady-state frame."""
    if not fifo_depth:
        return float(max(st.cycles for st in stages))
    if frames < 3:
        raise MappingError(f"frame_interval needs >= 3 frames for a steady state, got {frames}")
    done = run_pipeline(list(stages), input_elems, frames, dict(fifo_depth)).frame_done
    return float(done[-2] - done[-3])


def batch_rate(interval_cycles: float, latency_cycles: float, batch: int, clock_hz: float,
               call_s: float = FINN_DRIVER_CALL_S) -> float:
    """Images per second a driver call on ``batch`` images reports (module docstring)::

        N / ((latency + (N - 1) * interval) / f + call_s)
    """
    if batch < 1 or interval_cycles <= 0 or latency_cycles <= 0 or clock_hz <= 0 or call_s < 0:
        raise MappingError(f"batch_rate: needs batch >= 1, interval > 0, latency > 0, clock > 0, call_s >= 0; got "
                           f"{batch}, {interval_cycles}, {latency_cycles}, {clock_hz}, {call_s}")
    return batch / ((latency_cycles + (batch - 1) * interval_cycles) / clock_hz + call_s)
