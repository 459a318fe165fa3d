"""Cost model of a FINN-style streaming dataflow: folding, cycles, BRAM18, LUTs, energy, latency.

Each MVAU is folded by (PE, SIMD): PE output channels and SIMD input elements per cycle. The
formulas follow FINN (``custom_op/fpgadataflow``; Umuroglu et al., FPGA'17; Blott et al., FINN-R,
TRETS 2018):

* MVAU cycles = OFM pixels · ceil(MW / SIMD) · ceil(MH / PE) · branches (MW = Cin/g·kh·kw,
  MH = Cout; ``branches`` = w_bits · a_bits when a k-bit layer runs decomposed into binary
  branches one after another, 1 otherwise). FINN requires PE | MH and SIMD | MW; BNN-PYNQ pads the
  matrix instead, which the ceilings model (e.g. PE = 16 on MH = 10).
* Sliding window (ConvolutionInputGenerator): IFM_W·k·C/SIMD + OFM_H·max(OFM_W·k²·C/SIMD,
  stride·IFM_W·C/SIMD) with SIMD | C on the input side; when SIMD > C the generator emits
  SIMD window elements per cycle (FINN's RTL parallel-window mode): k²·C/SIMD per output pixel.
  Padding (FMPadding): (C/SIMD)·Hp·Wp; streaming max-pool: one input pixel per cycle, IFM_H·IFM_W.
  Binarizing / quantizing the network input is left to the host driver (no fabric cost).
* Throughput = clock / max layer cycles (the initiation interval II). FINN's latency estimate is
  the sum of the layer cycles; ``latency_s`` here comes from a SimPy run of the pipeline in which a
  layer starts an output as soon as the inputs it needs have arrived (sliding-window rows, or the
  first SIMD elements of a vector), so II <= latency <= sum. FIFOs are deep enough never to stall
  by default (FINN's FIFO sizing aims for that); with ``fifo_depth`` elements per FIFO the producer
  stalls on a full FIFO (back-pressure) and the frame interval can exceed the II.
* Weight memory: depth ω = MW·MH/(PE·SIMD) words of width PE·SIMD·W bits; ω <= 128 goes to LUTRAM
  (PE·SIMD·W·ceil(ω/64) LUTs), otherwise BRAM18 by the FINN-R rule (widths 1, 2, 4, 9, 18, 36 at
  depths 16K, 8K, 4K, 2K, 1K, 512). Thresholds live in LUTRAM.
* LUTs (FINN-R as implemented in FINN's MVAU ``lut_estimation``): 300 + 1.1·PE·(mult + adder +
  acc + thr + comp) + LUTRAM, mult = SIMD·(2·ceil((W+A)/6) - 1)·(W+A), adder = (W+A)·(2·SIMD - 1),
  acc = accumulator bits, thr = (2^B - 1)·acc·ceil(TMEM/64), comp = (2^B - 1)·acc. A decomposed layer with
  Brevitas integer weights (``weight_levels="int"``) adds its window-sum unit (:func:`window_sum_luts`).
  Signed activation codes cost nothing: their offset is a per-channel constant folded into the thresholds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from hwsim.errors import MappingError
from hwsim.xnor.spec import BRAM18_BITS, XnorSpec
from mapping.xnor import Enc, InputLayer, MVAULayer, PoolLayer, XnorProgram, acc_bits

__all__ = ["HwLayer", "Design", "padding_notes", "mvau_cycles", "bram18_for", "mvau_luts", "build_design", "auto_folding",
           "pipeline_latency_cycles", "pipeline_frame_cycles", "check_folding", "window_sum_luts"]

LUT_C0 = 300  # FINN-R / FINN MVAU lut_estimation: constant LUTs per MVAU
LUT_C1 = 1.1  # FINN-R / FINN MVAU lut_estimation: scale of the per-PE datapath
LUTRAM_MAX_DEPTH = 128
DECOMPOSE_MAX_BITS = 4  # wider inputs (the 8-bit image of a first layer) run natively, as in FINN
# Blocks without a FINN LUT estimate (FINN's FMPadding / ConvolutionInputGenerator / StreamingMaxPool
# have no lut_estimation): assumed constants of the order of the MVAU's fixed cost c0.
FMPAD_LUTS = 100  # assumed: row/column counters and a mux on the stream
SWG_LUTS = 300  # assumed: address generation of the sliding-window buffer (plus LUTRAM for small buffers)
SWG_BRAM_MIN_BITS = BRAM18_BITS // 2  # assumed: window buffers from half a BRAM18 up go to block RAM  # FINN: weight memories of depth <= 128 are not counted as BRAM (LUTRAM)


@dataclass(frozen=True, slots=True)
class HwLayer:
    """One hardware block of the pipeline and its cost for one frame."""

    name: str
    kind: str  # "thresholding" | "fmpad" | "swg" | "mvau" | "pool"
    module: str
    cycles: int
    luts: int
    bram18: int
    pe: int = 0
    simd: int = 0
    macs: int = 0
    weight_bits: int = 0  # bits of weights stored
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Design:
    layers: tuple[HwLayer, ...]
    folding: tuple[tuple[int, int], ...]
    stages: tuple  # SimPy stage descriptions (see pipeline_latency_cycles)

    @property
    def ii_cycles(self) -> int:
        return max(x.cycles for x in self.layers)

    @property
    def luts(self) -> int:
        return sum(x.luts for x in self.layers)

    @property
    def bram18(self) -> int:
        return sum(x.bram18 for x in self.layers)

    @property
    def sum_cycles(self) -> int:
        return sum(x.cycles for x in self.layers)


# ----------------------------------------------------------------------------- formulas
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def in_bits(layer: MVAULayer) -> int:
    return 1 if layer.in_enc.kind == Enc.BINARY else layer.in_enc.bits


def branches(layer: MVAULayer, decomposed: bool) -> int:
    """Binary branches run one after another by a decomposed k-bit layer (1 for binary or native)."""
    if not decomposed or layer.in_enc.kind == Enc.RAW or in_bits(layer) > DECOMPOSE_MAX_BITS:
        return 1
    return layer.weight_bits * in_bits(layer)


def mvau_cycles(layer: MVAULayer, pe: int, simd: int, decomposed: bool = True) -> int:
    """OFM pixels · ceil(MW/SIMD) · ceil(MH/PE) · branches."""
    return layer.ofm_pixels * _cdiv(layer.mw, simd) * _cdiv(layer.mh, pe) * branches(layer, decomposed)


def bram18_for(depth: int, width: int) -> int:
    """BRAM18 blocks for a memory of ``depth`` words of ``width`` bits (FINN-R rule, RAMB18 in SDP
    mode, UG473 aspect ratios 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36)."""
    if depth <= 0 or width <= 0:
        return 0
    if width == 1:
        return _cdiv(depth, 16384)
    if width == 2:
        return _cdiv(depth, 8192)
    if width <= 4:
        return _cdiv(depth, 4096) * _cdiv(width, 4)
    if width <= 9:
        return _cdiv(depth, 2048) * _cdiv(width, 9)
    if width <= 18 or depth > 512:
        return _cdiv(depth, 1024) * _cdiv(width, 18)
    return _cdiv(depth, 512) * _cdiv(width, 36)


def _wa_bits(layer: MVAULayer, decomposed: bool) -> tuple[int, int]:
    if branches(layer, decomposed) > 1:
        return 1, 1  # each branch is an xnor-popcount datapath
    return layer.weight_bits, in_bits(layer)


def mvau_memory(layer: MVAULayer, pe: int, simd: int, decomposed: bool) -> tuple[int, int]:
    """(BRAM18, LUTRAM LUTs) of the weight memory. A decomposed k-bit layer stores its k_w weight
    planes one after another (1-bit words, k_w times deeper); activation planes reuse them."""
    planes = layer.weight_bits if branches(layer, decomposed) > 1 else 1
    depth = _cdiv(layer.mw, simd) * _cdiv(layer.mh, pe) * planes
    w_bits = _wa_bits(layer, decomposed)[0]
    width = pe * simd * w_bits
    if depth <= LUTRAM_MAX_DEPTH:
        return 0, width * _cdiv(depth, 64)
    return bram18_for(depth, width), 0


def mvau_luts(layer: MVAULayer, pe: int, simd: int, decomposed: bool = True) -> int:
    """FINN-R LUT estimate of one MVAU (see the module docstring)."""
    w, a = _wa_bits(layer, decomposed)
    mult = simd * (2 * _cdiv(w + a, 6) - 1) * (w + a)
    adder = (w + a) * (2 * simd - 1)
    acc = acc_bits(layer)
    thr = comp = 0
    if layer.thresholds is not None:
        levels = layer.thresholds.shape[1]
        thr = levels * acc * _cdiv(_cdiv(layer.mh, pe), 64)
        comp = levels * acc
    _, lutram = mvau_memory(layer, pe, simd, decomposed)
    base = int(LUT_C0 + LUT_C1 * pe * (mult + adder + acc + thr + comp) + lutram)
    return base + window_sum_luts(layer, pe, simd, decomposed)


def window_sum_luts(layer: MVAULayer, pe: int, simd: int, decomposed: bool = True) -> int:
    """LUTs of the window-sum unit of a decomposed MVAU with ``weight_levels="int"`` weights (``sum w x =
    (sum (2w+1) x - sum x) / 2``, see :mod:`mapping.xnor`): one popcount adder tree over the SIMD 1-bit input
    lanes and its accumulator, shared by the PEs, plus one subtractor per PE (FINN-R's adder and accumulator
    terms). It works while the first weight plane streams: no extra cycles. 0 for other layers."""
    if layer.weight_levels != "int" or branches(layer, decomposed) == 1:
        return 0
    acc = acc_bits(layer)
    return int(LUT_C1 * ((2 * simd - 1) + acc + pe * acc))


def _swg(layer: MVAULayer, simd: int) -> tuple[int, int, int, int]:
    """(FMPadding cycles, sliding-window cycles, sliding-window BRAM18, LUTs) of a conv layer."""
    c, h, w = layer.in_shape
    conv = layer.conv
    (kh, kw), (sh, _), (ph, pw) = conv.kernel, conv.stride, conv.padding
    s = max(1, math.gcd(min(simd, c), c))  # input stream: SIMD | C channels per cycle
    e = min(simd, c * kh * kw)  # window elements emitted per cycle (SIMD > C: parallel-window mode)
    hp, wp = h + 2 * ph, w + 2 * pw
    pad_cycles = (c // s) * hp * wp if (ph or pw) else 0
    oh, ow = layer.out_shape[1], layer.out_shape[2]
    swg_cycles = wp * kh * c // s + oh * max(ow * _cdiv(kh * kw * c, e), sh * wp * c // s)
    buf_bits = kh * wp * c * in_bits(layer)  # k rows of the (padded) input
    if buf_bits >= SWG_BRAM_MIN_BITS:
        return pad_cycles, swg_cycles, _cdiv(buf_bits, BRAM18_BITS), 0
    return pad_cycles, swg_cycles, 0, _cdiv(buf_bits, 64)


# ----------------------------------------------------------------------------- design
def check_folding(program: XnorProgram, folding: Sequence) -> tuple[tuple[int, int], ...]:
    """Validate a hand folding [(PE, SIMD), ...] in MVAU order; raise :class:`MappingError`."""
    mv = program.mvaus
    try:
        pairs = [tuple(f) for f in folding]
    except TypeError:
        raise MappingError(f"folding must be a list of (PE, SIMD) pairs or 'auto', got {folding!r}") from None
    if len(pairs) != len(mv):
        raise MappingError(f"folding has {len(pairs)} (PE, SIMD) pairs but {program.name} has {len(mv)} MVAU "
                           f"layers ({', '.join(x.module or x.name for x in mv)})")
    out = []
    for layer, p in zip(mv, pairs):
        if len(p) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in p):
            raise MappingError(f"folding of {layer.module or layer.name}: expected (PE, SIMD) integers, got {p!r}")
        pe, simd = p
        if pe <= 0 or simd <= 0:
            raise MappingError(f"folding of {layer.module or layer.name}: PE and SIMD must be >= 1, got "
                               f"PE={pe}, SIMD={simd}")
        out.append((pe, simd))
    return tuple(out)


def padding_notes(program: XnorProgram, folding: Sequence[tuple[int, int]]) -> list[str]:
    """Notes for MVAUs whose PE / SIMD do not divide MH / MW: the matrix is zero-padded (BNN-PYNQ
    does this; FINN requires divisors), which wastes the padded lanes."""
    notes = []
    for layer, (pe, simd) in zip(program.mvaus, folding):
        if layer.mh % pe or layer.mw % simd:
            notes.append(f"{layer.module or layer.name}: PE={pe}, SIMD={simd} do not divide MH={layer.mh}, "
                         f"MW={layer.mw}: matrix padded to {_cdiv(layer.mh, pe) * pe} x {_cdiv(layer.mw, simd) * simd}")
    return notes


def build_design(program: XnorProgram, folding: Sequence[tuple[int, int]], decomposed: bool = True) -> Design:
    """Hardware layers, their cycles and resources for a validated folding."""
    rows: list[HwLayer] = []
    stages = []
    fold = iter(folding)
    next_simd = {}
    for i, layer in enumerate(program.layers):  # SIMD of the MVAU that consumes each layer's output
        for later in program.layers[i + 1:]:
            if isinstance(later, MVAULayer):
                next_simd[layer.name] = later
                break
    for layer in program.layers:
        if isinstance(layer, InputLayer):
            # binarizing / quantizing the raw input is done by the host driver, which packs the
            # quantized input into the input stream (as finn-examples' drivers do): no fabric cost
            continue
        elif isinstance(layer, MVAULayer):
            pe, simd = next(fold)
            cyc = mvau_cycles(layer, pe, simd, decomposed)
            bram, _ = mvau_memory(layer, pe, simd, decomposed)
            luts = mvau_luts(layer, pe, simd, decomposed)
            macs = layer.ofm_pixels * layer.mw * layer.mh
            wbits = layer.mw * layer.mh * layer.weight_bits
            extra = {"pe": pe, "simd": simd, "mw": layer.mw, "mh": layer.mh, "ofm_pixels": layer.ofm_pixels,
                     "weight_bits": layer.weight_bits, "input": str(layer.in_enc),
                     "output": str(layer.out_enc) if layer.out_enc else "float",
                     "branches": branches(layer, decomposed), "acc_bits": acc_bits(layer),
                     "wmem_depth": _cdiv(layer.mw, simd) * _cdiv(layer.mh, pe),
                     "window_sum_luts": window_sum_luts(layer, pe, simd, decomposed)}  # 0 but for int weights
            stage_cycles = cyc
            if layer.conv is not None:
                pad_c, swg_c, swg_bram, swg_luts = _swg(layer, simd)
                if pad_c:
                    rows.append(HwLayer(layer.name + ":pad", "fmpad", layer.module, pad_c, FMPAD_LUTS, 0,
                                        simd=simd))
                rows.append(HwLayer(layer.name + ":swg", "swg", layer.module, swg_c, SWG_LUTS + swg_luts, swg_bram,
                                    simd=simd))
                stage_cycles = max(cyc, swg_c, pad_c)
                stages.append(("conv", layer.name, layer, stage_cycles))
            else:
                stages.append(("fc", layer.name, layer, pe, simd, branches(layer, decomposed)))
            rows.append(HwLayer(layer.name, "mvau", layer.module, cyc, luts, bram, pe=pe, simd=simd, macs=macs,
                                weight_bits=wbits, extra=extra))
        elif isinstance(layer, PoolLayer):
            c, h, w = layer.in_shape
            cyc = h * w
            bits = layer.enc.bits
            luts = int(LUT_C0 + c * bits * layer.attrs.kernel[1])  # assumed: c0 + one OR/max LUT per channel, bit and tap
            rows.append(HwLayer(layer.name, "pool", "", cyc, luts, 0, pe=c))
            stages.append(("pool", layer.name, layer, cyc))
    return Design(tuple(rows), tuple(folding), tuple(stages))


# ----------------------------------------------------------------------------- automatic folding
def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _options(layer: MVAULayer, decomposed: bool) -> list[tuple[int, int, int, int, int]]:
    """(cycles, luts, bram18, pe, simd) for every divisor pair (FINN: PE | MH, SIMD | MW)."""
    opts = []
    for pe in _divisors(layer.mh):
        for simd in _divisors(layer.mw):
            cyc = mvau_cycles(layer, pe, simd, decomposed)
            if layer.conv is not None:
                pad_c, swg_c, _, _ = _swg(layer, simd)
                cyc = max(cyc, pad_c, swg_c)
            bram, _ = mvau_memory(layer, pe, simd, decomposed)
            opts.append((cyc, mvau_luts(layer, pe, simd, decomposed), bram, pe, simd))
    return opts


def _cheapest(opts, target: float, spec: XnorSpec):
    ok = [o for o in opts if o[0] <= target]
    if not ok:
        return None
    # cost: LUT share + BRAM share of the device (the scarcer resource weighs more), then fewer cycles
    return min(ok, key=lambda o: (o[1] / spec.luts + o[2] / spec.bram18, o[0]))


def auto_folding(program: XnorProgram, spec: XnorSpec, target_fps: float | None, decomposed: bool = True):
    """The cheapest folding meeting ``target_fps`` (like FINN's SetFolding, but minimising LUT+BRAM
    share per layer over all divisor pairs); with ``target_fps=None`` the fastest folding whose
    MVAUs fit the device. Returns (folding, note)."""
    all_opts = [_options(m, decomposed) for m in program.mvaus]
    base = build_design(program, [(1, 1)] * len(all_opts), decomposed)  # folding-independent blocks
    other = [x for x in base.layers if x.kind != "mvau"]
    lut_budget = spec.luts - sum(x.luts for x in other)
    bram_budget = spec.bram18 - sum(x.bram18 for x in other)
    if target_fps is not None:
        if not target_fps > 0:
            raise MappingError(f"target_fps must be > 0, got {target_fps!r}")
        target = spec.clock_hz / target_fps  # cycles per frame allowed (may be < 1: unreachable)
        picks = [_cheapest(o, target, spec) for o in all_opts]
        note = ""
        if any(p is None for p in picks):
            floor = max(min(t[0] for t in o) for o in all_opts)  # the best II any folding reaches
            picks = [_cheapest(o, floor, spec) for o in all_opts]  # cheapest design reaching it
            note = (f"target_fps {target_fps:g} is unreachable at {spec.clock_hz / 1e6:g} MHz: fully unfolded, "
                    f"the slowest layer needs {floor} cycles ({spec.clock_hz / floor:.4g} fps); using the "
                    "cheapest folding that reaches that rate")
        return tuple((p[3], p[4]) for p in picks), note
    candidates = sorted({o[0] for opts in all_opts for o in opts})
    lo, hi = 0, len(candidates) - 1
    best = None
    while lo <= hi:  # cheaper with a larger II: binary search the smallest II that fits
        mid = (lo + hi) // 2
        picks = [_cheapest(o, candidates[mid], spec) for o in all_opts]
        if all(p is not None for p in picks) and sum(p[1] for p in picks) <= lut_budget \
                and sum(p[2] for p in picks) <= bram_budget:
            best, hi = picks, mid - 1
        else:
            lo = mid + 1
    if best is None:
        best = [min(o, key=lambda t: (t[1], t[2])) for o in all_opts]
        return tuple((p[3], p[4]) for p in best), "even the most folded design (PE = SIMD = 1) exceeds the device"
    return tuple((p[3], p[4]) for p in best), ""


# ----------------------------------------------------------------------------- SimPy latency
class _Stream:
    """The FIFO between two layers: ``count`` elements produced so far, ``pulled`` of them taken
    by the consumer into its own buffers (window lines, input vector). With a ``depth`` the
    producer stalls while ``count - pulled`` would exceed it (back-pressure); ``None`` = unbounded."""

    def __init__(self, env: simpy.Environment, initial: int = 0, depth: int | None = None):
        self.env = env
        self.count = initial
        self.pulled = 0
        self.depth = depth
        self.changed = env.event()
        self.freed = env.event()

    def add(self, n: int):
        """Process step: push ``n`` elements, waiting for room first."""
        if self.depth is not None:
            limit = max(self.depth, n)  # a FIFO always holds at least one transfer
            while self.count + n - self.pulled > limit:
                yield self.freed
        self.count += n
        ev, self.changed = self.changed, self.env.event()
        ev.succeed()

    def wait(self, need: int):
        """Process step: wait until ``need`` elements have arrived, pulling them as they come."""
        while True:
            got = min(self.count, need)
            if got > self.pulled:
                self.pulled = got
                ev, self.freed = self.freed, self.env.event()
                ev.succeed()
            if self.count >= need:
                return
            yield self.changed


def _conv_need(layer, oy: int, ox: int) -> int:
    c, h, w = layer.in_shape
    conv = layer.conv if hasattr(layer, "conv") else None
    if conv is not None:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    else:
        a = layer.attrs
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a.kernel, a.stride, a.padding, a.dilation
    r = min(oy * sh - ph + (kh - 1) * dh, h - 1)
    col = min(ox * sw - pw + (kw - 1) * dw, w - 1)
    return (max(r, 0) * w + max(col, 0) + 1) * c


def pipeline_frame_cycles(design: Design, input_elems: int, frames: int = 1,
                          fifo_depth: int | None = None) -> list[float]:
    """Completion time (cycles) of each of ``frames`` back-to-back frames, by a SimPy run of the
    pipeline: every frame's input is available at t = 0, each layer starts an output unit (a pixel;
    for a fully connected layer a fold of PE outputs) as soon as the inputs it needs have arrived,
    and a layer works on one unit at a time. ``fifo_depth`` (elements) bounds every inter-layer FIFO
    (back-pressure stalls the producer); None = FIFOs deep enough never to stall, as FINN's FIFO
    sizing aims for. With unbounded FIFOs the frame spacing converges to the II."""
    env = simpy.Environment()
    src = _Stream(env, input_elems * frames)
    done: list[float] = []

    def conv_stage(layer, cycles, inp, out, last):
        oh, ow = layer.out_shape[1], layer.out_shape[2]
        per = cycles / (oh * ow)
        cout = layer.out_shape[0]
        in_numel = math.prod(layer.in_shape)
        for f in range(frames):
            for oy in range(oh):
                for ox in range(ow):
                    yield from inp.wait(f * in_numel + _conv_need(layer, oy, ox))
                    yield env.timeout(per)
                    yield from out.add(cout)
            if last:
                done.append(env.now)

    def fc_stage(layer, pe, simd, br, inp, out, last):
        sf, nf = _cdiv(layer.mw, simd), _cdiv(layer.mh, pe)
        for f in range(frames):
            base = f * layer.mw
            for s in range(sf * br):  # first neuron fold consumes the input as it streams in
                yield from inp.wait(base + min((s % sf + 1) * simd, layer.mw))
                yield env.timeout(1)
            yield from out.add(min(pe, layer.mh))
            for k in range(1, nf):
                yield env.timeout(sf * br)
                yield from out.add(min(pe, layer.mh - k * pe))
            if last:
                done.append(env.now)

    inp = src
    for i, st in enumerate(design.stages):
        last = i == len(design.stages) - 1
        out = _Stream(env, depth=None if last else fifo_depth)  # the output stream is drained by the host
        if st[0] in ("conv", "pool"):
            env.process(conv_stage(st[2], st[3], inp, out, last))
        else:
            env.process(fc_stage(st[2], st[3], st[4], st[5], inp, out, last))
        inp = out
    env.run()
    return done


def pipeline_latency_cycles(design: Design, input_elems: int, fifo_depth: int | None = None) -> int:
    """Cycles from the first input element to the last output of one frame (SimPy, see
    :func:`pipeline_frame_cycles`)."""
    return int(math.ceil(pipeline_frame_cycles(design, input_elems, 1, fifo_depth)[0]))
