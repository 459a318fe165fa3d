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
* VVAU (a depthwise conv; FINN ``vectorvectoractivation.py``): cycles = OFM pixels · ceil(k²/SIMD) · ceil(C/PE)
  (the MVAU formula with MW = k², MH = C; k-bit operands multiplied natively, never decomposed), its window
  generator streams PE channels; weights in one memory of SIMD·W bits per PE (BRAM18 = FINN-R rule × PE); LUTs
  FINN's VVAU estimate 300 + 1.1·PE·(SIMD·mult + acc + thr + comp) (+ an adder tree when SIMD > 1: ours).
* Streaming blocks between MVAUs (AddStreams, StreamingConcat, Thresholding, accumulating Pool, DuplicateStreams):
  :mod:`hwsim.fpga.blocks`. The SimPy pipeline over the dataflow graph and the FIFO sizing:
  :mod:`hwsim.fpga.schedule`.
* Throughput = clock / max layer cycles (the initiation interval II). FINN's latency estimate is
  the sum of the layer cycles; ``latency_s`` here comes from a SimPy run of the pipeline in which a
  layer starts an output as soon as the inputs it needs have arrived (sliding-window rows, or the
  first SIMD elements of a vector), so II <= latency <= sum. FIFOs are deep enough never to stall
  by default (FINN's FIFO sizing aims for that); with ``fifo_depth`` elements per FIFO the producer
  stalls on a full FIFO (back-pressure) and the frame interval can exceed the II.
* Weight memory: depth ω = MW·MH/(PE·SIMD) words of width PE·SIMD·W bits; ω <= 128 goes to LUTRAM
  (PE·SIMD·W·ceil(ω/64) LUTs), otherwise BRAM18 by FINN's ``bram_estimation`` (data widths 1, 2, 4, 8, 16, 32 at
  depths 16K, 8K, 4K, 2K, 1K, 512: the parity bits unused). Thresholds live in LUTRAM.
* LUTs (FINN-R as implemented in FINN's MVAU ``lut_estimation``): 300 + 1.1·PE·(mult + adder +
  acc + thr + comp) + LUTRAM, mult = SIMD·(2·ceil((W+A)/6) - 1)·(W+A), adder = (W+A)·(2·SIMD - 1),
  acc = accumulator bits, thr = (2^B - 1)·acc·ceil(TMEM/64), comp = (2^B - 1)·acc. A decomposed layer with
  Brevitas integer weights (``weight_levels="int"``) adds its window-sum unit (:func:`window_sum_luts`).
  Signed activation codes cost nothing: their offset is a per-channel constant folded into the thresholds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.errors import MappingError
from hwsim.fpga.blocks import HwLayer, dup_rows, stream_blocks
from hwsim.fpga.schedule import Stage, latency_cycles, run_pipeline
from hwsim.fpga.spec import BRAM18_BITS, FPGASpec
from mapping.fpga import Enc, InputLayer, MVAULayer, PoolLayer, ReshapeLayer, XnorProgram, acc_bits

__all__ = ["HwLayer", "Design", "padding_notes", "mvau_cycles", "bram18_for", "mvau_luts", "build_design", "auto_folding",
           "pipeline_latency_cycles", "pipeline_frame_cycles", "check_folding", "window_sum_luts", "fifo_depths"]

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
class Design:
    layers: tuple[HwLayer, ...]
    folding: tuple[tuple[int, int], ...]
    stages: tuple  # hwsim.fpga.schedule.Stage per process of the SimPy run

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
    if not decomposed or layer.in_enc.kind == Enc.RAW or in_bits(layer) > DECOMPOSE_MAX_BITS or layer.depthwise:
        return 1  # FINN's VVAU multiplies k-bit operands natively (LUT multipliers)
    return layer.weight_bits * in_bits(layer)


def mvau_cycles(layer: MVAULayer, pe: int, simd: int, decomposed: bool = True) -> int:
    """OFM pixels · ceil(MW/SIMD) · ceil(MH/PE) · branches."""
    return layer.ofm_pixels * _cdiv(layer.mw, simd) * _cdiv(layer.mh, pe) * branches(layer, decomposed)


def bram18_for(depth: int, width: int) -> int:
    """BRAM18 blocks for a memory of ``depth`` words of ``width`` bits: FINN's rule (``bram_estimation`` of the
    MVAU, ``src/finn/custom_op/fpgadataflow/matrixvectoractivation.py``): RAMB18 in SDP mode at the UG473 aspect
    ratios 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36, of which FINN counts the data bits only (8, 16, 32 bits per
    word at the three widest ratios: weights are not packed into the parity bits)."""
    if depth <= 0 or width <= 0:
        return 0
    if width == 1:
        return _cdiv(depth, 16384)
    if width == 2:
        return _cdiv(depth, 8192)
    if width <= 4:
        return _cdiv(depth, 4096) * _cdiv(width, 4)
    if width <= 9:
        return _cdiv(depth, 2048) * _cdiv(width, 8)
    if width <= 18 or depth > 512:
        return _cdiv(depth, 1024) * _cdiv(width, 16)
    return _cdiv(depth, 512) * _cdiv(width, 32)


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
    if layer.depthwise:  # FINN VVAU bram_estimation: one memory of SIMD*W bits per PE
        return bram18_for(depth, simd * w_bits) * pe, 0
    return bram18_for(depth, width), 0


def mvau_luts(layer: MVAULayer, pe: int, simd: int, decomposed: bool = True) -> int:
    """FINN-R LUT estimate of one MVAU (see the module docstring)."""
    w, a = _wa_bits(layer, decomposed)
    mult = simd * (2 * _cdiv(w + a, 6) - 1) * (w + a)
    adder = (w + a) * (2 * simd - 1)
    if layer.depthwise:  # FINN VVAU lut_estimation (SIMD = 1 there: no adder tree); ours adds one for SIMD > 1
        adder = adder if simd > 1 else 0
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
    (sum (2w+1) x - sum x) / 2``, see :mod:`mapping.fpga`): one popcount adder tree over the SIMD 1-bit input
    lanes and its accumulator, shared by the PEs, plus one subtractor per PE (FINN-R's adder and accumulator
    terms). It works while the first weight plane streams: no extra cycles. 0 for other layers."""
    if layer.weight_levels != "int" or branches(layer, decomposed) == 1:
        return 0
    acc = acc_bits(layer)
    return int(LUT_C1 * ((2 * simd - 1) + acc + pe * acc))


def _swg(layer: MVAULayer, pe: int, simd: int) -> tuple[int, int, int, int]:
    """(FMPadding cycles, sliding-window cycles, sliding-window BRAM18, LUTs) of a conv layer. An MVAU's window
    generator streams SIMD channels; a VVAU's (depthwise) streams PE channels and emits PE * SIMD window
    elements per cycle (FINN: the depthwise SWG's SIMD is the VVAU's PE)."""
    c, h, w = layer.in_shape
    conv = layer.conv
    (kh, kw), (sh, _), (ph, pw) = conv.kernel, conv.stride, conv.padding
    lanes = pe if layer.depthwise else simd
    s = max(1, math.gcd(min(lanes, c), c))  # input stream: lanes | C channels per cycle
    e = min(pe * simd if layer.depthwise else simd, c * kh * kw)  # window elements per cycle
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
    """Hardware layers, their cycles and resources, and the SimPy stages, for a validated folding. The streaming
    blocks between MVAUs (adds, concats, thresholding, accumulating pools, stream duplication) get the smallest
    PE that keeps them within the MVAUs' initiation interval (:mod:`hwsim.fpga.blocks`)."""
    rows: list[HwLayer] = []
    stages: list[Stage | None] = []
    fold = iter(folding)
    alias: dict[str, str] = {"input": "input"}  # reshapes and the host-side input quantizer forward their source
    numel: dict[str, int] = {"input": math.prod(program.input_shape)}
    later = []
    for layer, srcs in zip(program.layers, program.sources()):
        src = tuple(alias[x] for x in srcs)
        if isinstance(layer, (InputLayer, ReshapeLayer)):  # the host quantizes the input: no fabric cost
            alias[layer.name] = src[0]
            continue
        alias[layer.name] = layer.name
        numel[layer.name] = math.prod(getattr(layer, "out_shape", None) or layer.shape)
        if isinstance(layer, MVAULayer):
            _mvau_rows(layer, next(fold), decomposed, src, rows, stages, numel)
        elif isinstance(layer, PoolLayer):
            c, h, w = layer.in_shape
            luts = int(LUT_C0 + c * layer.enc.bits * layer.attrs.kernel[1])  # assumed: c0 + an OR/max per channel, bit, tap
            rows.append(HwLayer(layer.name, "pool", "", h * w, luts, 0, pe=c))
            stages.append(Stage("window", layer.name, src, h * w, layer, (numel[src[0]],),
                                math.prod(layer.out_shape), layer.out_shape[1] * layer.out_shape[2]))
        else:  # add, concat, thresholding, accumulating pool: folded once the II is known
            later.append((layer, src))
            stages.append(None)
    ii = max((r.cycles for r in rows), default=1)
    block_rows, block_stages = stream_blocks(later, numel, ii)
    it = iter(block_stages)
    done = [st if st is not None else next(it) for st in stages]
    return Design(tuple(rows + block_rows + dup_rows(done, numel, ii)), tuple(folding), tuple(done))


def _mvau_rows(layer: MVAULayer, pe_simd: tuple[int, int], decomposed: bool, src, rows, stages, numel) -> None:
    pe, simd = pe_simd
    cyc = mvau_cycles(layer, pe, simd, decomposed)
    bram, _ = mvau_memory(layer, pe, simd, decomposed)
    luts = mvau_luts(layer, pe, simd, decomposed)
    macs = layer.ofm_pixels * layer.mw * layer.mh
    wbits = layer.mw * layer.mh * layer.weight_bits
    kind = "vvau" if layer.depthwise else "mvau"
    extra = {"pe": pe, "simd": simd, "mw": layer.mw, "mh": layer.mh, "ofm_pixels": layer.ofm_pixels,
             "weight_bits": layer.weight_bits, "input": str(layer.in_enc),
             "output": str(layer.out_enc) if layer.out_enc else "float",
             "branches": branches(layer, decomposed), "acc_bits": acc_bits(layer),
             "wmem_depth": _cdiv(layer.mw, simd) * _cdiv(layer.mh, pe),
             "window_sum_luts": window_sum_luts(layer, pe, simd, decomposed)}  # 0 but for int weights
    if layer.conv is not None:
        pad_c, swg_c, swg_bram, swg_luts = _swg(layer, pe, simd)
        if pad_c:
            rows.append(HwLayer(layer.name + ":pad", "fmpad", layer.module, pad_c, FMPAD_LUTS, 0, simd=simd))
        rows.append(HwLayer(layer.name + ":swg", "swg", layer.module, swg_c, SWG_LUTS + swg_luts, swg_bram,
                            simd=simd))
        stages.append(Stage("window", layer.name, src, max(cyc, swg_c, pad_c), layer, (numel[src[0]],),
                            math.prod(layer.out_shape), layer.ofm_pixels))
    else:
        stages.append(Stage("fc", layer.name, src, cyc, layer, (layer.mw,), layer.mh, 1, pe, simd,
                            branches(layer, decomposed)))
    rows.append(HwLayer(layer.name, kind, layer.module, cyc, luts, bram, pe=pe, simd=simd, macs=macs,
                        weight_bits=wbits, extra=extra))


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
                pad_c, swg_c, _, _ = _swg(layer, pe, simd)
                cyc = max(cyc, pad_c, swg_c)
            bram, _ = mvau_memory(layer, pe, simd, decomposed)
            opts.append((cyc, mvau_luts(layer, pe, simd, decomposed), bram, pe, simd))
    return opts


def _cheapest(opts, target: float, spec: FPGASpec):
    ok = [o for o in opts if o[0] <= target]
    if not ok:
        return None
    # cost: LUT share + BRAM share of the device (the scarcer resource weighs more), then fewer cycles
    return min(ok, key=lambda o: (o[1] / spec.luts + o[2] / spec.bram18, o[0]))


def auto_folding(program: XnorProgram, spec: FPGASpec, target_fps: float | None, decomposed: bool = True):
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
        luts, brams = sum(p[1] for p in picks), sum(p[2] for p in picks)
        if luts > lut_budget or brams > bram_budget:  # the rate is reachable, not on this device
            over = "; ".join(f"{name} {need} of {have}" for name, need, have in
                             (("LUTs", luts, lut_budget), ("BRAM18", brams, bram_budget)) if need > have)
            note = "; ".join(x for x in (note, f"the cheapest folding reaching target_fps {target_fps:g} does not fit "
                                         f"{spec.name}: its MVAUs need {over} left by the other blocks (omit "
                                         "target_fps for the fastest folding that fits)") if x)
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
def pipeline_frame_cycles(design: Design, input_elems: int, frames: int = 1, fifo_depth=None) -> list[float]:
    """Completion time (cycles) of each of ``frames`` back-to-back frames (:func:`hwsim.fpga.schedule.run_pipeline`;
    ``fifo_depth``: None = unbounded FIFOs, an int for every FIFO, or a dict per FIFO name)."""
    return list(run_pipeline(list(design.stages), input_elems, frames, fifo_depth).frame_done)


def pipeline_latency_cycles(design: Design, input_elems: int) -> int:
    """Cycles from the first input element to the last output of one frame (unbounded FIFOs)."""
    return latency_cycles(list(design.stages), input_elems)[0]


def fifo_depths(design: Design, input_elems: int) -> tuple[tuple[str, int], ...]:
    """FIFO depths (elements) that never stall: the largest occupancy of each FIFO in a two-frame SimPy run with
    unbounded FIFOs (FINN's InsertAndSetFIFODepths)."""
    return latency_cycles(list(design.stages), input_elems)[1]
