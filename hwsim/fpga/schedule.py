"""SimPy run of a FINN-style streaming dataflow graph: latency, frame interval, FIFO occupancy, deadlock.

Every hardware stage (an MVAU / VVAU with its sliding window, a pool, an add, a concat, a thresholding unit) is a
SimPy process working on one output unit at a time (an output pixel; for a fully connected layer a fold of PE
outputs): it waits until the inputs that unit needs have arrived on its input FIFOs, spends its share of the stage's
cycles, then pushes the unit's elements to every consumer's FIFO. A value read by several stages goes to one FIFO
per reader (FINN's DuplicateStreams), and the producer stalls while any of them is full (back-pressure). The
network input is available at t = 0; the output stream is drained by the host.

FIFO sizing follows FINN's ``InsertAndSetFIFODepths``: run two frames with unbounded FIFOs, the input streaming in
at the steady-state rate, and take each FIFO's largest occupancy (elements produced but not yet taken by the consumer) as its depth. With smaller depths a producer
stalls (the frame interval grows beyond the II) or, in a residual block whose bypass FIFO cannot hold what the
long branch needs before it produces, the pipeline deadlocks: :func:`run_pipeline` reports it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import simpy

from hwsim.errors import MappingError

__all__ = ["Stage", "PipelineRun", "run_pipeline", "conv_need"]


@dataclass(frozen=True)
class Stage:
    """One process of the pipeline.

    kind: "window" (a sliding-window layer: conv, VVAU, pool; per output pixel), "fc" (an MVAU on vectors: per
        neuron fold), "elementwise" (add, concat, thresholding: per pixel of all its inputs) or "dwc" (a
        down-converting stream width converter in front of an MVAU, :meth:`_Sim.dwc`).
    srcs: the stages (or "input") whose outputs it reads, in order.
    cycles: cycles per frame. layer: the program layer (shapes). pe / simd / branches: folding of an "fc" stage; of
        a "dwc": elements per input word (pe) and per output word (simd).
    """

    kind: str
    name: str
    srcs: tuple[str, ...]
    cycles: float
    layer: object
    in_elems: tuple[int, ...]  # elements per frame of each source
    out_elems: int  # elements per frame it produces
    units: int  # output units per frame (pixels; 1 for "fc")
    pe: int = 1
    simd: int = 1
    branches: int = 1


@dataclass(frozen=True)
class PipelineRun:
    """frame_done: completion cycle of each frame; fifo_peak: largest occupancy (elements) of each FIFO,
    ``"producer->consumer"``."""

    frame_done: tuple[float, ...]
    fifo_peak: tuple[tuple[str, int], ...]


class _Fifo:
    """``count`` elements produced, ``pulled`` of them taken by the consumer into its own buffers (window lines, an
    input vector). With a ``depth`` the producer waits while ``count - pulled`` would exceed it."""

    def __init__(self, env: simpy.Environment, initial: int = 0, depth: int | None = None):
        self.env, self.count, self.pulled, self.depth, self.peak = env, initial, 0, depth, 0
        self.changed, self.freed = env.event(), env.event()

    def room(self, n: int):
        if self.depth is not None:
            while self.count + n - self.pulled > max(self.depth, n):  # a FIFO always holds at least one transfer
                yield self.freed

    def push(self, n: int) -> None:
        self.count += n
        self.peak = max(self.peak, self.count - self.pulled)
        ev, self.changed = self.changed, self.env.event()
        ev.succeed()

    def wait(self, need: int):
        while True:
            got = min(self.count, need)
            if got > self.pulled:
                self.pulled = got
                ev, self.freed = self.freed, self.env.event()
                ev.succeed()
            if self.count >= need:
                return
            yield self.changed


def conv_need(layer, oy: int, ox: int) -> int:
    """Elements of the (C, H, W) input a window layer needs before output pixel (oy, ox)."""
    c, h, w = layer.in_shape
    conv = getattr(layer, "conv", None)
    a = conv if conv is not None else layer.attrs
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a.kernel, a.stride, a.padding, a.dilation
    r = min(oy * sh - ph + (kh - 1) * dh, h - 1)
    col = min(ox * sw - pw + (kw - 1) * dw, w - 1)
    return (max(r, 0) * w + max(col, 0) + 1) * c


def run_pipeline(stages: list[Stage], input_elems: int, frames: int = 1,
                 fifo_depth: int | Mapping[str, int] | None = None, pace: float | None = None) -> PipelineRun:
    """Simulate ``frames`` back-to-back frames. ``fifo_depth``: one depth for every FIFO, one per FIFO name
    (``"producer->consumer"``; missing names unbounded), or None (unbounded). ``pace``: None = every input at
    t = 0; else the input streams in at one frame per ``pace`` cycles (in 64 equal chunks). Raises
    :class:`MappingError` when the FIFOs deadlock the pipeline."""
    sim = _Sim(stages, input_elems, frames, fifo_depth, pace)
    sim.env.run()
    if len(sim.done) < frames:
        fill = sorted(((q.count - q.pulled) / q.depth, f"{a}->{b}") for (a, b), q in sim.fifos.items()
                      if q.depth and q.count > q.pulled)
        full = [name for _, name in reversed(fill)]
        raise MappingError(f"FIFOs of {fifo_depth if not isinstance(fifo_depth, Mapping) else 'the given'} elements "
                           f"deadlock the pipeline (full: {', '.join(full[:4]) or 'none'}): a bypass FIFO must hold "
                           "what its branch consumes before producing; use the sized depths (report.fifo_depths)")
    peaks = tuple((f"{a}->{b}", q.peak) for (a, b), q in sim.fifos.items() if a != "input")
    return PipelineRun(tuple(sim.done), peaks)


class _Sim:
    """The SimPy processes of one run (see :func:`run_pipeline`)."""

    def __init__(self, stages, input_elems: int, frames: int, fifo_depth, pace):
        self.env, self.frames, self.input_elems, self.pace = simpy.Environment(), frames, input_elems, pace
        self.readers: dict[str, list[str]] = {}
        self.fifos: dict[tuple[str, str], _Fifo] = {}
        for st in stages:
            for s in st.srcs:
                self.readers.setdefault(s, []).append(st.name)
                depth = fifo_depth.get(f"{s}->{st.name}") if isinstance(fifo_depth, Mapping) else fifo_depth
                self.fifos[(s, st.name)] = _Fifo(self.env, input_elems * frames if s == "input" and pace is None
                                                 else 0, None if s == "input" else depth)
        self.last = stages[-1].name
        self.done: list[float] = []
        if pace is not None:
            self.env.process(self.source())
        run = {"window": self.window, "fc": self.fc, "elementwise": self.elementwise, "dwc": self.dwc}
        for st in stages:
            self.env.process(run[st.kind](st))

    def emit(self, name: str, n: int):
        outs = [self.fifos[(name, r)] for r in self.readers.get(name, [])]
        for f in outs:
            yield from f.room(n)
        for f in outs:
            f.push(n)

    def finished(self, st: Stage) -> None:
        if st.name == self.last:
            self.done.append(self.env.now)

    def source(self):
        chunks = min(64, self.input_elems)
        for _ in range(self.frames):
            for k in range(chunks):
                n = self.input_elems * (k + 1) // chunks - self.input_elems * k // chunks
                for fifo in (q for (a, _), q in self.fifos.items() if a == "input"):
                    fifo.push(n)
                yield self.env.timeout(self.pace / chunks)

    def window(self, st: Stage):
        inp = self.fifos[(st.srcs[0], st.name)]
        oh, ow = st.layer.out_shape[1], st.layer.out_shape[2]
        per, cout = st.cycles / (oh * ow), st.out_elems // (oh * ow)
        for f in range(self.frames):
            for oy in range(oh):
                for ox in range(ow):
                    yield from inp.wait(f * st.in_elems[0] + conv_need(st.layer, oy, ox))
                    yield self.env.timeout(per)
                    yield from self.emit(st.name, cout)
            self.finished(st)

    def fc(self, st: Stage):
        inp = self.fifos[(st.srcs[0], st.name)]
        mw, mh = st.in_elems[0], st.out_elems
        sf, nf = -(-mw // st.simd), -(-mh // st.pe)
        for f in range(self.frames):
            for s in range(sf * st.branches):  # the first neuron fold consumes the input as it streams in
                yield from inp.wait(f * mw + min((s % sf + 1) * st.simd, mw))
                yield self.env.timeout(1)
            yield from self.emit(st.name, min(st.pe, mh))
            for k in range(1, nf):
                yield self.env.timeout(sf * st.branches)
                yield from self.emit(st.name, min(st.pe, mh - k * st.pe))
            self.finished(st)

    def dwc(self, st: Stage):
        """finn-hlslib ``StreamingDataWidthConverter_Batch`` with InWidth > OutWidth (``streamtools.h``): one loop
        of ``words x (pe / simd)`` iterations, ``PIPELINE II=1``, reading an input word when ``o == 0`` and writing
        one output word every iteration. HLS schedules the write one pipeline stage after the read (the write's data
        is the read's data), and a loop pipeline stalls as a whole while a read waits (Vivado HLS's default stalled
        pipeline, UG1448 "Pipeline Styles": "prevent already computed outputs from being delivered, if inputs to next
        iterations are missing"). So the last output word of an input word leaves only when the next input word is
        read; the last one of the run when the loop ends."""
        inp = self.fifos[(st.srcs[0], st.name)]
        e, per = st.in_elems[0], st.pe // st.simd
        held = 0
        for f in range(self.frames):
            for w in range(-(-e // st.pe)):
                yield from inp.wait(f * e + min((w + 1) * st.pe, e))
                if held:
                    yield from self.emit(st.name, held)
                for k in range(per):
                    yield self.env.timeout(1)
                    n = max(0, min(st.simd, e - w * st.pe - k * st.simd))
                    if k < per - 1:
                        yield from self.emit(st.name, n)
                    else:
                        held = n
            self.finished(st)
        if held:
            yield from self.emit(st.name, held)

    def elementwise(self, st: Stage):
        ins = [self.fifos[(s, st.name)] for s in st.srcs]
        per, out = st.cycles / st.units, st.out_elems // st.units
        for f in range(self.frames):
            for u in range(st.units):
                for fifo, e in zip(ins, st.in_elems):
                    yield from fifo.wait(f * e + (u + 1) * (e // st.units))
                yield self.env.timeout(per)
                yield from self.emit(st.name, out)
            self.finished(st)


def latency_cycles(stages: list[Stage], input_elems: int) -> tuple[int, tuple[tuple[str, int], ...]]:
    """(cycles from the first input element to the last output of one frame with every input at t = 0, sized FIFO
    depths). The depths come from two back-to-back frames whose input streams in at the steady-state rate (one
    frame per II): a single frame misses the steady state's occupancy, and an input available all at once would
    let every stage faster than the II run a whole frame ahead into its FIFO (needless depth)."""
    first = run_pipeline(stages, input_elems, 1, None)
    ii = max(st.cycles for st in stages)
    r = run_pipeline(stages, input_elems, 2, None, pace=ii)
    return int(math.ceil(first.frame_done[0])), r.fifo_peak


__all__ += ["latency_cycles"]
