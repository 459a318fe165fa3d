"""Data movers (BNN-PYNQ Mem2Stream / FINN IODMA) and FIFO coupling in the steady-state frame interval of the FPGA
dataflow (hwsim.fpga.io). The SimPy frame interval of an MLP with shallow FIFOs is checked against an independent
cycle-by-cycle transcription of finn-hlslib's MVAU loop (input read only in the first neuron fold, one PE-wide write
per fold, a stalled iteration neither reads nor writes)."""
import math

import pytest

import mapping
from hwsim.errors import HwsimError, MappingError
from hwsim.fpga.cost import build_design
from hwsim.fpga.io import (
    FINN_DRIVER_CALL_S,
    Mover,
    batch_rate,
    frame_interval,
    iodma_width,
    with_movers,
    with_width_converters,
)
from hwsim.fpga.schedule import run_pipeline
from mapping.fpga import map_xnor
from nets.finn import finn_fc

LFC_FOLD = [(32, 64), (64, 32), (32, 64), (16, 8)]  # BNN-PYNQ lfcW1A1 config.h (PE, SIMD)


def _design(hidden: int, fold, classes: int = 10):
    prog = map_xnor(mapping.trace(finn_fc(hidden, 3, classes, wbits=1, abits=1, in_bits=1), (1, 1, 28, 28)))
    return build_design(prog, fold, decomposed=False), math.prod(prog.input_shape)


def _cycle_interval(layers, depth: int, frames: int = 8) -> int:
    """Cycle-stepped chain of MVAUs (mw, mh, pe, simd) with FIFOs of ``depth`` elements; the source and sink never
    stall. Each cycle every layer runs one iteration of its (nf, sf) loop if its read (nf == 0) finds SIMD
    elements and its write (sf == SF - 1) finds room, judged on the FIFO levels at the start of the cycle."""
    st = [{"sf": 0, "nf": 0, "SF": -(-mw // simd), "NF": -(-mh // pe)} for mw, mh, pe, simd in layers]
    fifo, done, t = [0] * (len(layers) - 1), [], 0
    while len(done) < frames:
        t += 1
        start = list(fifo)
        for i, ((_, mh, pe, simd), s) in enumerate(zip(layers, st)):
            read = i > 0 and s["nf"] == 0
            out = min(pe, mh - s["nf"] * pe) if s["sf"] == s["SF"] - 1 else 0
            if (read and start[i - 1] < simd) or (out and i < len(fifo) and depth - start[i] < out):
                continue
            if read:
                fifo[i - 1] -= simd
            if out and i < len(fifo):
                fifo[i] += out
            s["sf"] += 1
            if s["sf"] == s["SF"]:
                s["sf"], s["nf"] = 0, s["nf"] + 1
                if s["nf"] == s["NF"]:
                    s["nf"] = 0
                    if i == len(layers) - 1:
                        done.append(t)
    return done[-1] - done[-2]


def test_mover_cycles_and_finn_iodma_width():
    assert Mover("m", 832, 64).cycles == 13 and Mover("m", 833, 64).cycles == 14
    # FINN insert_iodma.py: gcd(padded stream bits x words, port): TFC thresholding PE 49 on UINT8, KWS SIMD 10 on
    # 8-bit codes, a 49-bit binary stream padded to 56 bits
    assert iodma_width(392, 16, 64) == 64
    assert iodma_width(80, 49, 64) == 16
    assert iodma_width(49, 16, 64) == 64
    with pytest.raises(MappingError, match="mover m"):
        Mover("m", 0, 64)
    assert issubclass(MappingError, HwsimError)


def test_slow_input_mover_sets_the_frame_interval():
    dsg, n_in = _design(64, [(16, 49), (8, 8), (8, 8), (10, 8)])  # finn-examples TFC folding: II 64
    assert dsg.ii_cycles == 64
    slow = with_movers(dsg.stages, n_in, Mover("in", 784 * 8, 64), Mover("out", 8, 8))  # 98 cycles
    assert frame_interval(slow, n_in) == 98
    # the SimPy run with FIFOs too deep to matter agrees with the slowest-stage rule
    deep = {f"{a.name}->{b.name}": 10**6 for a, b in zip(slow, slow[1:])}
    assert frame_interval(slow, n_in, deep) == pytest.approx(98, abs=1)
    fast = with_movers(dsg.stages, n_in, Mover("in", 896, 64), Mover("out", 8, 64))  # 14 cycles: the II stays
    assert frame_interval(fast, n_in) == 64
    # the movers add to the single-frame latency
    assert run_pipeline(slow, n_in, 1).frame_done[0] > run_pipeline(list(dsg.stages), n_in, 1).frame_done[0]


@pytest.mark.parametrize("depth", [512, 1024])
def test_fifo_coupling_matches_a_cycle_level_mvau_transcription(depth):
    dsg, n_in = _design(1024, LFC_FOLD)
    names = [s.name for s in dsg.stages]
    fifo = {f"{a}->{b}": depth for a, b in zip(names, names[1:])}
    got = frame_interval(dsg.stages, n_in, fifo)
    ref = _cycle_interval([(784, 1024, 32, 64), (1024, 1024, 64, 32), (1024, 1024, 32, 64), (1024, 10, 16, 8)],
                          depth)
    assert got == pytest.approx(ref, rel=0.01)
    if depth == 512:  # BNN-PYNQ lfc top.cpp: half a layer's output per FIFO stalls the reading phases
        assert dsg.ii_cycles == 512 and got > 1.3 * dsg.ii_cycles
    else:  # a whole frame of every layer's output: no coupling
        assert got == dsg.ii_cycles


def _stalled_pipeline_interval(fifo_words, stream_depth: int, depth: int = 2, frames: int = 12) -> int:
    """Cycle-stepped BNN-PYNQ lfcW1A1 DoCompute (top.cpp, finn-hlslib mvau.hpp / streamtools.h): four MVAU loops and
    L3's 32 -> 8 element width converter, each an II=1 stalled pipeline of ``depth`` stages reading in its first
    stage and writing in its last; it advances only if its entering iteration's read finds a word and its leaving
    iteration's write finds room (FIFO levels at the start of the cycle). Words, not elements; the source and the
    sink never stall."""
    def mvau(sf, nf):
        return [(n == 0, s == sf - 1) for n in range(nf) for s in range(sf)]

    conv = [(o == 0, True) for o in range(4)]
    pats = [mvau(13, 32), mvau(32, 16), mvau(16, 32), conv, mvau(128, 4)]
    caps = list(fifo_words) + [stream_depth]  # inter0, inter1, inter2, the converter's stream
    level, it = [0] * len(caps), [0] * len(pats)
    pipe = [[None] * depth for _ in pats]
    done, t = [], 0
    while len(done) < frames:
        start = list(level)
        for i, pat in enumerate(pats):
            rd = i > 0 and pat[it[i] % len(pat)][0]
            leaving = pipe[i][-2] if depth > 1 else it[i]
            wr = leaving is not None and pat[leaving % len(pat)][1]
            if (rd and start[i - 1] == 0) or (wr and i < len(caps) and start[i] >= caps[i]):
                continue
            if rd:
                level[i - 1] -= 1
            if wr and i < len(caps):
                level[i] += 1
            if wr and i == len(pats) - 1 and leaving % len(pat) == len(pat) - 1:
                done.append(t)
            pipe[i] = [it[i]] + pipe[i][:-1]
            it[i] += 1
        t += 1
    return done[-2] - done[-3]


@pytest.mark.parametrize("stream_depth", [1, 2])
def test_width_converter_hold_matches_a_stalled_pipeline_transcription(stream_depth):
    """BNN-PYNQ lfcW1A1: L3 (SIMD 8) reads inter2 (L2's 32-element words) through a width converter that, as a
    stalled HLS pipeline, holds each word's last byte until the next word: the frame interval grows from the FIFO
    coupling alone to the cycle-level transcription's, which moves by < 1.5 % with the pipelines' depth (>= 2)."""
    dsg, n_in = _design(1024, LFC_FOLD, classes=64)  # config.h: L3_MH 64 (classes padded), 4 neuron folds
    names = [s.name for s in dsg.stages]
    fifo = {f"{a}->{b}": 512 for a, b in zip(names, names[1:])}  # top.cpp: 512 / PE words of PE elements
    stages, depth = with_width_converters(dsg.stages, fifo, stream_depth)
    assert [s.kind for s in stages] == ["fc", "fc", "fc", "dwc", "fc"]
    assert depth[f"{names[2]}->{names[3]}_dwc"] == 512 and depth[f"{names[3]}_dwc->{names[3]}"] == 8 * stream_depth
    got, coupled = frame_interval(stages, n_in, depth), frame_interval(dsg.stages, n_in, fifo)
    ref = _stalled_pipeline_interval((16, 8, 16), stream_depth)
    assert got == pytest.approx(ref, rel=0.01)
    assert got > coupled + 100
    assert _stalled_pipeline_interval((16, 8, 16), stream_depth, depth=5) == pytest.approx(ref, rel=0.015)
    # a converter that wrote in the stage it reads (depth 1) would hold nothing: the FIFO coupling alone
    assert _stalled_pipeline_interval((16, 8, 16), stream_depth, depth=1) == pytest.approx(coupled, abs=3)
    # unbounded FIFOs: the converter neither binds nor couples
    assert frame_interval(stages, n_in) == dsg.ii_cycles


def test_width_converter_refuses_up_conversion():
    dsg, _ = _design(64, [(8, 16), (8, 16), (8, 8), (10, 8)])  # PE 8 into SIMD 16
    with pytest.raises(MappingError, match="not a whole-word down-conversion"):
        with_width_converters(dsg.stages, None)


def test_batch_rate_of_a_driver_call():
    """N / ((latency + (N - 1) interval) / f + call): the FINN end-to-end TFC notebook, 2020-05 run (N = 1000 at 100
    MHz, II 64): the pipeline alone would give 1.56 M images/s, the measurement 0.68 M."""
    f = 100e6
    r = batch_rate(64, 200, 1000, f)
    assert r == pytest.approx(1000 / ((200 + 999 * 64) / f + FINN_DRIVER_CALL_S))
    assert r < 0.5 * f / 64  # the 808 us call dominates a 0.64 ms batch
    assert batch_rate(64, 200, 10**9, f) == pytest.approx(f / 64, rel=1e-4)  # a huge batch: the steady state
    assert batch_rate(64, 64, 1, f, call_s=0.0) == pytest.approx(f / 64)
    with pytest.raises(MappingError, match="batch_rate"):
        batch_rate(64, 200, 0, f)


def test_frame_interval_needs_a_steady_state():
    dsg, n_in = _design(64, [(16, 49), (8, 8), (8, 8), (10, 8)])
    with pytest.raises(MappingError, match=">= 3 frames"):
        frame_interval(dsg.stages, n_in, {"x->y": 4}, frames=2)


def test_double_packed_stem_of_resnet50():
    from hwsim.fpga.dsp_packed import DoublePackedConv, double_packed_conv_cycles

    stem = DoublePackedConv(kernel=7, stride=2, in_channels=3, ifm_dim=224, out_channels=64, simd=3, pe=64, mmv=16)
    cyc = double_packed_conv_cycles(stem)
    assert stem.ofm_dim == 112
    # by hand: D = 7 + 2 * 111 = 229; window generator 229 * 7 + 112 * max(112 * 49 / 16, 229 * 2)
    assert cyc["same_resize"] == 229 * 229 and cyc["input_generator"] == 229 * 7 + 112 * 458
    # the packed MVAU is the plain MVAU formula (OFM pixels * MW/SIMD * MH/PE) over MMV pixels per pass
    assert cyc["mvau"] * 16 == 112 * 112 * (7 * 7 * 3 // 3) * (64 // 64)
    assert cyc["layer"] == max(v for k, v in cyc.items() if k != "layer") == 52899
    with pytest.raises(MappingError, match="MMV=3 must be even"):
        double_packed_conv_cycles(DoublePackedConv(7, 2, 3, 224, 64, 3, 64, 3))
