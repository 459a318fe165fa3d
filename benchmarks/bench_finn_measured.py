"""hwsim's FPGA dataflow model against measured FINN / BNN-PYNQ designs.

For every design of ``benchmarks/data/finn_measured.csv`` whose folding (PE, SIMD per MVAU / VVAU) is published
(``benchmarks/data/finn_foldings.md``) and whose clock is known, hwsim predicts the throughput and the pipeline
latency from that folding and clock and from the design's published data movers and FIFO depths
(``hwsim/fpga/io.py``), and compares them with the measured figures; where the CSV holds a Vivado utilization report
of the design, the LUT / BRAM18 / DSP estimates are compared with it. Nothing is fitted: every constant is FINN's,
BNN-PYNQ's or finn-experimental's source (cited where it is set), so every row is out of sample.

Writes ``benchmarks/results/finn_measured.json`` and ``.md``. Run: ``python benchmarks/bench_finn_measured.py``.
``benchmarks/bench_xnor.py`` checks the cycle counts per layer against the published BNN-PYNQ figures; this
benchmark adds the measured rates.

Conventions:
* k-bit layers run natively (``kbit="native"``): FINN's and BNN-PYNQ's MVAUs multiply k-bit operands in one pass.
* Predicted rate = clock / frame interval of the whole pipeline: the layers (clock / II, the previous model, kept
  as "layers only"), the input / output movers as stages of their own, and the FIFO coupling where the design
  publishes shallow FIFOs (BNN-PYNQ LFC); ResNet-50's DSP-packed stem by ``hwsim/fpga/dsp_packed.py``.
* A rate measured with FINN's PYNQ driver on a batch of N images is one driver call: N / (the pipeline's fill + (N - 1)
  frame intervals + the driver's published per-call cost; ``hwsim.fpga.io.batch_rate``); other batched rates
  (BNN-PYNQ, the Alveo ResNet-50) are compared with the steady-state rate; a single-image call (batch 1) is
  compared as a latency, which includes the host driver's call overhead. BNN-PYNQ's classifiers are padded to 64
  outputs, as its config.h builds them.
* Rows stay in the table but out of the median where an input the prediction depends on is unknown: no recorded
  clock (FINN PR #1499's AUP-ZU3 rows), a board whose IODMA width would set the rate, a bitfile whose build is not
  identified (ResNet-50's 2023 run); each with its reason in the output. Rows without a published folding (UNSW-NB15,
  LogicNets) are not predicted.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hwsim  # noqa: E402
import mapping  # noqa: E402
from hwsim.fpga.cost import build_design  # noqa: E402
from hwsim.fpga.dsp_packed import DoublePackedConv, double_packed_conv_cycles  # noqa: E402
from hwsim.fpga.io import (  # noqa: E402
    BNNPYNQ_MOVER_BITS,
    FINN_DRIVER_CALL_S,
    FINN_MIN_IODMA_BITS,
    Mover,
    batch_rate,
    frame_interval,
    iodma_width,
    with_movers,
    with_width_converters,
)
from hwsim.fpga.schedule import run_pipeline  # noqa: E402
from mapping.fpga import map_xnor  # noqa: E402
from nets.finn import finn_cnv, finn_fc  # noqa: E402

DATA = ROOT / "benchmarks" / "data"  # copies of the published measurements, sources per row (data/README.md)
OUT_JSON = ROOT / "benchmarks" / "results" / "finn_measured.json"
OUT_MD = OUT_JSON.with_suffix(".md")

# (PE, SIMD) per MVAU in network order, from finn_foldings.md (BNN-PYNQ config.h lists (SIMD, PE): swapped here)
FOLD = {
    "bnnpynq-cnvW1A1": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)],
    "bnnpynq-cnvW2A2": [(8, 3), (16, 16), (8, 16), (8, 16), (4, 8), (1, 8), (1, 2), (2, 2), (4, 1)],
    "bnnpynq-lfc": [(32, 64), (64, 32), (32, 64), (16, 8)],
    "fe-tfc": [(16, 49), (8, 8), (8, 8), (10, 8)],
    "fe-cnv-w1a1": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (5, 1)],
    "fe-gtsrb": [(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (4, 1)],
    "fe-kws": [(32, 10), (32, 8), (32, 8), (1, 8)],
    "aup-tfc-w1a1": [(32, 784), (32, 64), (32, 64), (5, 64)],
    "aup-tfc-w1a2": [(8, 784), (8, 64), (8, 64), (2, 64)],
    "aup-tfc-w2a2": [(16, 392), (8, 64), (8, 64), (2, 64)],
    "aup-cnv-w1a1": [(16, 27), (16, 576), (4, 576), (8, 576), (1, 576), (1, 128), (1, 32), (1, 64), (1, 2)],
    "aup-cnv-w1a2": [(2, 27), (2, 576), (1, 576), (1, 576), (1, 96), (1, 18), (1, 4), (1, 8), (1, 1)],
    "aup-cnv-w2a2": [(2, 27), (4, 288), (1, 576), (1, 576), (1, 96), (1, 18), (1, 4), (1, 8), (1, 1)],
    "aup-kws": [(32, 1), (32, 8), (32, 8), (1, 8)],
}


def _mobilenet_zcu104() -> list[tuple[int, int]]:
    """finn-examples build/mobilenet-v1 ZCU104 folding: stem MVAU, then (VVAU PE, SIMD 1) and pointwise MVAU per
    block, then the classifier."""
    vvau = [16, 8, 16, 4, 8, 2, 4, 4, 4, 4, 4, 1, 2]
    pw = [(8, 8), (16, 8), (32, 8), (16, 8), (32, 8), (16, 8), (32, 8), (32, 8), (32, 8), (32, 8), (32, 8),
          (16, 8), (32, 8)]
    fold = [(16, 3)]
    for pe, p in zip(vvau, pw):
        fold += [(pe, 1), p]
    return fold + [(1, 16)]


FOLD["fe-mobilenet-zcu104"] = _mobilenet_zcu104()

# finn-examples build/resnet50 U250 folding in effect 2021-01 .. 2024-03 (finn_foldings.md): the stem
# (ConvDoublePacked_Batch_0) then MatrixVectorActivation_k in the file's order; per block FINN lists the shortcut
# conv first, the network (and hwsim's trace) lists it after the branch's three convs
_RN50_STEM = (64, 3)
_RN50_LIST = [(32, 32), (8, 32), (32, 64), (32, 32)] + [(32, 32), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 64)] + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 3 + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 5 + [(32, 64), (32, 64), (32, 64), (32, 32)] + \
    [(32, 32), (32, 64), (32, 32)] * 2 + [(1, 64)]


def _resnet50_folding() -> list[tuple[int, int]]:
    """The 2021 folding in hwsim's MVAU order (per downsampling block: conv1, conv2, conv3, shortcut)."""
    fold, i = [_RN50_STEM], 0
    for blocks in (3, 4, 6, 3):
        for b in range(blocks):
            if b == 0:
                sc, c1, c2, c3 = _RN50_LIST[i:i + 4]
                fold += [c1, c2, c3, sc]
                i += 4
            else:
                fold += _RN50_LIST[i:i + 3]
                i += 3
    return fold + _RN50_LIST[i:]

# net builders (zoo names, or topologies the zoo does not register)
# BNN-PYNQ pads the classifier to 64 outputs (bnn/src/network/{cnvW1A1,cnvW1A2,cnvW2A2}/hw/config.h: L8_MH 64,
# L8_WMEM 8192 = 512 x 64 / (SIMD 1 x PE 4); {lfcW1A1,lfcW1A2}/hw/config.h: L3_MH 64, L3_WMEM 512 = 1024 / 8 x 64 / 16):
# the hardware computes 64 classes (4 and 16 neuron folds, not 1 and 3) and writes 64 x 16-bit results (CNV)
BNNPYNQ_CLASSES = 64
NETS = {
    "lfc-w1a2": lambda: mapping.trace(finn_fc(1024, 3, 10, wbits=1, abits=2, in_bits=1), (1, 1, 28, 28)),
    "cnv-w1a1-gtsrb": lambda: mapping.trace(finn_cnv(1, 43), (1, 3, 32, 32)),
    "bnnpynq-lfc-w1a1": lambda: mapping.trace(finn_fc(1024, 3, BNNPYNQ_CLASSES), (1, 1, 28, 28)),
    "bnnpynq-lfc-w1a2": lambda: mapping.trace(finn_fc(1024, 3, BNNPYNQ_CLASSES, wbits=1, abits=2, in_bits=1),
                                              (1, 1, 28, 28)),
    "bnnpynq-cnv-w1a1": lambda: mapping.trace(finn_cnv(1, BNNPYNQ_CLASSES), (1, 3, 32, 32)),
    "bnnpynq-cnv-w1a2": lambda: mapping.trace(finn_cnv(1, BNNPYNQ_CLASSES, abits=2), (1, 3, 32, 32)),
    "bnnpynq-cnv-w2a2": lambda: mapping.trace(finn_cnv(2, BNNPYNQ_CLASSES), (1, 3, 32, 32)),
}

# design -> (net, folding key, CSV row selector: model name prefix, board / clock / source-commit substring)
DESIGNS = [
    ("BNN-PYNQ cnvW1A1", "bnnpynq-cnv-w1a1", "bnnpynq-cnvW1A1", "CNV-W1A1 (BNN-PYNQ cnvW1A1)", ""),
    ("BNN-PYNQ cnvW1A2", "bnnpynq-cnv-w1a2", "bnnpynq-cnvW1A1", "CNV-W1A2 (BNN-PYNQ cnvW1A2)", ""),
    ("BNN-PYNQ cnvW2A2", "bnnpynq-cnv-w2a2", "bnnpynq-cnvW2A2", "CNV-W2A2 (BNN-PYNQ cnvW2A2)", ""),
    ("BNN-PYNQ lfcW1A1", "bnnpynq-lfc-w1a1", "bnnpynq-lfc", "LFC-W1A1 (BNN-PYNQ lfcW1A1", ""),
    ("BNN-PYNQ lfcW1A2", "bnnpynq-lfc-w1a2", "bnnpynq-lfc", "LFC-W1A2 (BNN-PYNQ lfcW1A2)", ""),
    ("finn-examples tfc-w1a1", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (3-layer FC, BNN-PYNQ topology)", ""),
    # the notebook's binary-input design (2020-05 and 2020-09-10 runs) and, from 2020-09-21 (c33758c), its UINT8-input
    # design: ToTensor preprocessing + InferThresholdingLayer (Thresholding_Batch PE 49) and a TopK -> LabelSelect
    ("FINN end-to-end tfc-w1a1", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (FINN end-to-end example)", "68c33fc5"),
    ("FINN end-to-end tfc-w1a1", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (FINN end-to-end example)", "df6ba0d4"),
    ("FINN end-to-end tfc-w1a1 (UINT8 in)", "tfc-w1a1", "fe-tfc", "TFC-w1a1 (FINN end-to-end example)", "c33758c1"),
    ("finn-examples cnv-w1a1", "cnv-w1a1", "fe-cnv-w1a1", "CNV-w1a1 (VGG-11-like)", ""),
    ("finn-examples cnv-w1a1 GTSRB", "cnv-w1a1-gtsrb", "fe-gtsrb", "CNV-w1a1 GTSRB", ""),
    ("finn-examples kws-mlp-w3a3", "kws-mlp-w3a3", "fe-kws", "KWS MLP w3a3 (3-layer FC)", ""),
    ("finn-examples mobilenet-v1-w4a4 (ZCU104 folding)", "mobilenet-v1-w4a4", "fe-mobilenet-zcu104",
     "MobileNet-v1 w4a4", "187.4981"),
    ("FINN PR #1499 tfc-w1a1 (AUP-ZU3)", "tfc-w1a1", "aup-tfc-w1a1", "bnn-pynq tfc-w1a1", "AUP-ZU3"),
    ("FINN PR #1499 tfc-w1a2 (AUP-ZU3)", "tfc-w1a2", "aup-tfc-w1a2", "bnn-pynq tfc-w1a2", "AUP-ZU3"),
    ("FINN PR #1499 tfc-w2a2 (AUP-ZU3)", "tfc-w2a2", "aup-tfc-w2a2", "bnn-pynq tfc-w2a2", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w1a1 (AUP-ZU3)", "cnv-w1a1", "aup-cnv-w1a1", "bnn-pynq cnv-w1a1", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w1a2 (AUP-ZU3)", "cnv-w1a2", "aup-cnv-w1a2", "bnn-pynq cnv-w1a2", "AUP-ZU3"),
    ("FINN PR #1499 cnv-w2a2 (AUP-ZU3)", "cnv-w2a2", "aup-cnv-w2a2", "bnn-pynq cnv-w2a2", "AUP-ZU3"),
    ("FINN PR #1499 kws-mlp-w3a3 (AUP-ZU3)", "kws-mlp-w3a3", "aup-kws", "kws kwsmlp-w3a3", "AUP-ZU3"),
]
# clock of rows whose CSV clock is empty: PR #1499's test scripts build bnn-pynq / kws at synth_clk_period_ns=10
# (finn_foldings.md section 2)
DEFAULT_CLOCK_MHZ = {"AUP-ZU3": 100.0}
# BNN-PYNQ README utilization (Vivado 2018.2, PYNQ-Z1, whole overlay incl. DMA and interconnect)
UTILIZATION = {"bnnpynq-cnv-w1a1": "BNN-PYNQ cnvW1A1: CNV", "bnnpynq-cnv-w1a2": "BNN-PYNQ cnvW1A2: CNV",
               "bnnpynq-cnv-w2a2": "BNN-PYNQ cnvW2A2: CNV", "bnnpynq-lfc-w1a1": "BNN-PYNQ lfcW1A1: LFC",
               "bnnpynq-lfc-w1a2": "BNN-PYNQ lfcW1A2: LFC"}
UTIL_FOLD = {"bnnpynq-cnv-w1a1": "bnnpynq-cnvW1A1", "bnnpynq-cnv-w1a2": "bnnpynq-cnvW1A1",
             "bnnpynq-cnv-w2a2": "bnnpynq-cnvW2A2", "bnnpynq-lfc-w1a1": "bnnpynq-lfc", "bnnpynq-lfc-w1a2": "bnnpynq-lfc"}


# Data movers and published FIFO depths (hwsim/fpga/io.py) per design:
# (input stream bits, input words per image, output stream bits, output words per image, port, FIFO elements, basis).
# port: "bnn-pynq" = Mem2Stream/Stream2Mem at 64 bits per cycle; an int = FINN IODMA on that AXI port width
# (insert_iodma.py: gcd(transfer bits, port)); None = board not recorded: the 8-bit IODMA width bounds the mover.
# FIFO elements: the depth of every inter-MVAU FIFO where the design publishes it (None: FINN sizes FIFOs not to
# stall, or not transcribed).
_BNNPYNQ_CNV_IO = (64, 384, 64, 16, "bnn-pynq", None,
                   "cnvW1A1/hw/top.cpp: Mem2Stream_Batch<64, 32*32*3*8/8 bytes> (384 words), Stream2Mem_Batch<64, "
                   "L8_MH*16/8 bytes> (L8_MH = 64 padded classes x 16 bits: 16 words); inter-layer FIFOs not "
                   "transcribed (unbounded)")
# lfcW1A1 / lfcW1A2 hw/top.cpp: inBitsPadded = 832 (13 words), outBitsPadded = 64 (1 word); "#pragma HLS stream
# depth=Lx_DEPTH" for inter0..inter2 with Lx_DEPTH = 512 / Lx_PE words of Lx_PE elements: 512 elements each
BNNPYNQ_LFC_FIFO_ELEMS = 512
_BNNPYNQ_LFC_IO = (64, 13, 64, 1, "bnn-pynq", BNNPYNQ_LFC_FIFO_ELEMS,
                   "lfcW1A*/hw/top.cpp: 13 x 64-bit words in, 1 out; FIFOs inter0..2 of 512 / PE words (512 "
                   "elements); L3's input width converter 32 -> 8 elements (fclayer.h WidthAdjustedInputStream) "
                   "with a 2-word default stream")
# Designs whose top.cpp stream widths are transcribed: lfcW1A*/hw/top.cpp declares inter2 at L2_PE = 32 elements
# per word into L3 (SIMD 8), so finn-hlslib fclayer.h's WidthAdjustedInputStream puts a StreamingDataWidthConverter
# (32 -> 8 elements, streamtools.h) with a default-depth internal stream in front of L3 (hwsim.fpga.io.
# with_width_converters); the other inter-layer streams match their consumer's SIMD. CNV's converters are not
# transcribed (its FIFOs are not either: unbounded, where a held word costs ~1 cycle per frame of 32768).
WIDTH_CONVERTER_DESIGNS = ("BNN-PYNQ lfcW1A1", "BNN-PYNQ lfcW1A2")
IO = {
    "BNN-PYNQ cnvW1A1": _BNNPYNQ_CNV_IO, "BNN-PYNQ cnvW1A2": _BNNPYNQ_CNV_IO, "BNN-PYNQ cnvW2A2": _BNNPYNQ_CNV_IO,
    "BNN-PYNQ lfcW1A1": _BNNPYNQ_LFC_IO, "BNN-PYNQ lfcW1A2": _BNNPYNQ_LFC_IO,
    # 784 B in per image (the row's DRAM_in_bandwidth / FPS), Thresholding_rtl_0 PE 49 on UINT8: 392-bit stream x 16
    "finn-examples tfc-w1a1": (392, 16, 8, 1, None, None,
                               "UINT8 image (784 B = DRAM_in_bandwidth / FPS of the row) into Thresholding PE 49; "
                               "board not recorded: IODMA width unknown (64 bits on Pynq-Z1, wider on ZynqMP)"),
    # notebook folding: four StreamingFCLayers, the first SIMD 49 on the 784-element vector, no thresholding node in
    # front (finn_foldings.md): binary input, a 49-bit stream padded to 56 bits, x 16 words; Pynq-Z1 port 64 bits
    "FINN end-to-end tfc-w1a1": (49, 16, 8, 1, 64, None,
                                 "binary input (no input thresholding in the notebook's node list), Pynq-Z1 "
                                 "IODMA gcd(56 x 16, 64) = 64 bits"),
    # c33758c: 784 B in, 1 B out per image (DRAM_in / DRAM_out_bandwidth x runtime / N of the row: 751.4 MB/s x
    # 10.434 ms / 10000, 0.958 MB/s x 10.434 ms / 10000); Thresholding_Batch PE 49 on UINT8: a 392-bit stream x 16
    "FINN end-to-end tfc-w1a1 (UINT8 in)": (392, 16, 8, 1, 64, None,
                                            "UINT8 image (784 B = DRAM_in_bandwidth x runtime / N) into "
                                            "Thresholding PE 49, LabelSelect out (1 B); Pynq-Z1 IODMA gcd(392 x 16, "
                                            "64) = 64 bits: 98 cycles per image"),
    "finn-examples cnv-w1a1": (8, 3072, 8, 1, None, None,
                               "UINT8 image (3072 B = DRAM_in_bandwidth / FPS) into Thresholding PE 1; board not "
                               "recorded: 8-bit bound"),
    "finn-examples cnv-w1a1 GTSRB": (8, 3072, 8, 88, 64, None,
                                     "3072 B in, 88 B out per image (DRAM bandwidths / FPS of the row), Pynq-Z1 "
                                     "64-bit IODMA"),
    "finn-examples kws-mlp-w3a3": (80, 49, 8, 1, 64, None,
                                   "490 B in per image (DRAM_in_bandwidth / FPS) into MVAU SIMD 10 on 8-bit codes: "
                                   "IODMA gcd(80 x 49, 64) = 16 bits on Pynq-Z1"),
    "finn-examples mobilenet-v1-w4a4 (ZCU104 folding)": (8, 224 * 224 * 3, 8, 2, None, None,
                                                         "8-bit 224x224x3 image into ConvolutionInputGenerator SIMD "
                                                         "1; board not recorded: 8-bit bound"),
}
# FINN PR #1499 / finn-examples PR #118 table: throughput without a clock; FINN's driver sets the PL clock at run time
# (FINNExampleOverlay fclk_mhz, default 100 MHz) independently of the synthesis target (maintainer in Xilinx/finn
# issue #876), so the synthesis period of the test scripts does not give the clock the rows ran at
AUP_REASON = ("clock unknown: PR #1499's table gives no fclk and FINN's driver sets the PL clock at run time "
              "(fclk_mhz; Xilinx/finn issue #876), so the test scripts' synth_clk_period_ns=10 is not the run clock; "
              "shown at 100 MHz, left out of the median")


# Rows measured with FINN's PYNQ driver on a Zynq board (throughput = N / the wall time of one execute call): the
# pipeline time of the batch plus the call's fixed host cost, hwsim.fpga.io.batch_rate with FINN_DRIVER_CALL_S. Not
# BNN-PYNQ (its C++ driver: lfcW1A1 takes the same 841 cycles per image at 100 and 300 MHz, no clock-independent
# time) nor the Alveo ResNet-50 (XRT driver, no published per-call figure).
FINN_DRIVER_DESIGNS = ("FINN end-to-end", "finn-examples tfc", "finn-examples cnv", "finn-examples kws",
                       "finn-examples mobilenet")
# Batch of a row whose CSV batch is empty, from the runtime its notebook printed: N = FPS x runtime.
# Xilinx/finn notebooks/end2end_example/tfc_end2end_example.ipynb @ 68c33fc (2020-05-07): "runtime[ms]:
# 1.4772415161132812" next to 676937.4 images/s -> N = 1000
RUNTIME_MS = {"68c33fc54a0c3be62733dac9b83605ffd48fdc78": 1.4772415161132812}


def _batch_from_runtime(r: dict) -> float | None:
    ms, fps = RUNTIME_MS.get(r["source_commit"]), _num(r["fps"])
    return float(round(fps * ms / 1e3)) if ms and fps else None


def _movers(design: str, ii: int) -> tuple[Mover | None, Mover | None, int | None, str | None, str]:
    """(input mover, output mover, FIFO depth in elements, reason the prediction is undetermined or None, basis)."""
    if design not in IO:
        return None, None, None, None, "no mover data (not modelled)"
    ib, iw, ob, ow, port, fifo, basis = IO[design]
    if port == "bnn-pynq":
        return (Mover("dma_in", ib * iw, BNNPYNQ_MOVER_BITS), Mover("dma_out", ob * ow, BNNPYNQ_MOVER_BITS), fifo,
                None, basis)
    pad_i, pad_o = -(-ib // 8) * 8, -(-ob // 8) * 8
    width_i = iodma_width(ib, iw, port) if port else FINN_MIN_IODMA_BITS
    width_o = iodma_width(ob, ow, port) if port else FINN_MIN_IODMA_BITS
    m_in, m_out = Mover("iodma_in", pad_i * iw, width_i), Mover("iodma_out", pad_o * ow, width_o)
    why = None
    if port is None and max(m_in.cycles, m_out.cycles) > ii:  # the narrowest width would set the rate
        why = "board not recorded: the IODMA width (set by the board's AXI port) would set the rate"
    return m_in, m_out, fifo, why, basis


NOTES = (
    "BNN-PYNQ LFC: 841 cycles per image measured at 100 and 300 MHz alike (fabric-bound); the 512-element FIFOs of",
    "top.cpp couple the layers (721 cycles in the SimPy run, 512 without), and L3's 32 -> 8 input width converter,",
    "a stalled HLS pipeline, holds the last byte of each word until the next word arrives, so L3 finishes reading",
    "frame f only after L2's first output of frame f + 1 (835 cycles; 836 with a 1-word default stream). FINN",
    "end-to-end TFC: the three notebook runs are one driver call on N = 1000 / 10000 images each, the 2020-09-21 run",
    "a UINT8-input design whose 64-bit IODMA (98 cycles per image) binds. Details: docs/targets/fpga.md.",
)


def _rows() -> list[dict]:
    with open(DATA / "finn_measured.csv", newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _graph(net: str, cache: dict):
    if net not in cache:
        cache[net] = NETS[net]() if net in NETS else hwsim.as_graph(net)
    return cache[net]


def _predict(net: str, fold_key: str, clock_mhz: float, cache: dict):
    spec = dataclasses.replace(hwsim.load_preset("fpga/zc706"), clock_hz=clock_mhz * 1e6)
    return hwsim.simulate(_graph(net, cache), spec, folding=FOLD[fold_key], kbit="native").report


def _err(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def _design(net: str, fold_key: str, cache: dict):
    key = ("design", net, fold_key)
    if key not in cache:
        prog = map_xnor(_graph(net, cache))
        cache[key] = (build_design(prog, FOLD[fold_key], decomposed=False), math.prod(prog.input_shape))
    return cache[key]


def _pipeline(design: str, net: str, fold_key: str, cache: dict) -> dict:
    """Frame interval and single-frame latency (cycles) of the whole pipeline: MVAUs, windows, pools, the data
    movers and the published FIFO depths (hwsim/fpga/io.py)."""
    key = ("pipe", design, net, fold_key)
    if key not in cache:
        dsg, n_in = _design(net, fold_key, cache)
        m_in, m_out, fifo, why, basis = _movers(design, dsg.ii_cycles)
        stages = dsg.stages if why else with_movers(dsg.stages, n_in, m_in, m_out)
        layer_names = [st.name for st in dsg.stages]
        depth = {f"{a}->{b}": fifo for a, b in zip(layer_names, layer_names[1:])} if fifo else None
        if design in WIDTH_CONVERTER_DESIGNS:
            stages, depth = with_width_converters(stages, depth)
        cache[key] = {"interval_cycles": frame_interval(stages, n_in, depth),
                      "latency_cycles": run_pipeline(list(stages), n_in, 1, depth).frame_done[0],
                      "mover_in_cycles": m_in.cycles if m_in else None,
                      "mover_out_cycles": m_out.cycles if m_out else None, "fifo_depth_elems": fifo,
                      "undetermined": why, "io_basis": basis, "layers_ii_cycles": dsg.ii_cycles}
    return cache[key]


def run() -> dict:
    rows, cache, out, skipped, latency = _rows(), {}, [], [], []
    for design, net, fold_key, model, board in DESIGNS:
        for r in rows:
            if not r["model"].startswith(model) or (board and board not in r["board"] + r["clock_mhz"]
                                                     + r["source_commit"]):
                continue
            clock = _num(r["clock_mhz"]) or next((v for k, v in DEFAULT_CLOCK_MHZ.items() if k in r["board"]), None)
            fps, batch = _num(r["fps"]), _num(r["batch_size"]) or _batch_from_runtime(r)
            if clock is None or fps is None:
                skipped.append({"row": r["model"], "board": r["board"], "reason": "no clock or no rate"})
                continue
            rep = _predict(net, fold_key, clock, cache)
            pipe = _pipeline(design, net, fold_key, cache)
            if rep.ii_cycles != pipe["layers_ii_cycles"]:
                raise RuntimeError(f"{design}: simulate() II {rep.ii_cycles} != build_design II "
                                   f"{pipe['layers_ii_cycles']}")
            base = {"design": design, "net": net, "board": r["board"], "clock_mhz": clock, "batch": batch,
                    "folding": FOLD[fold_key], "source": f"{r['source_repo']}/{r['source_path']}", **pipe}
            pred_lat = pipe["latency_cycles"] / clock
            if batch == 1:  # a single-image call: a latency including the host driver's overhead
                meas = _num(r["latency_us"])
                latency.append({**base, "measured_latency_us": meas, "predicted_latency_us": pred_lat,
                                "predicted_latency_us_layers_only": rep.latency_s * 1e6,
                                "error_pct": _err(pred_lat, meas),
                                "error_pct_layers_only": _err(rep.latency_s * 1e6, meas)})
                continue
            steady = clock * 1e6 / pipe["interval_cycles"]
            driver = design.startswith(FINN_DRIVER_DESIGNS) and batch is not None
            pred = batch_rate(pipe["interval_cycles"], pipe["latency_cycles"], int(batch), clock * 1e6) if driver \
                else steady
            excluded = AUP_REASON if "AUP" in design else pipe["undetermined"]
            out.append({**base, "measured_fps": fps, "predicted_fps": pred, "error_pct": _err(pred, fps),
                        "driver_call_s": FINN_DRIVER_CALL_S if driver else 0.0, "predicted_fps_steady": steady,
                        "error_pct_steady": _err(steady, fps),
                        "implied_call_ms": (batch / fps - (pipe["latency_cycles"] + (batch - 1)
                                                           * pipe["interval_cycles"]) / (clock * 1e6)) * 1e3
                        if driver else None,
                        "predicted_fps_layers_only": rep.fps, "error_pct_layers_only": _err(rep.fps, fps),
                        "ii_cycles": rep.ii_cycles, "predicted_latency_us": pred_lat,
                        "measured_us_per_image": _num(r["latency_us"]), "in_median": excluded is None,
                        "excluded_reason": excluded})
    rn50_rows, rn50 = _resnet50(rows, cache)
    out += rn50_rows
    errs = [abs(x["error_pct"]) for x in out if x["in_median"]]
    errs_before = [abs(x["error_pct_layers_only"]) for x in out if x["in_median"]]
    groups = {}
    for x in (x for x in out if x["in_median"]):
        groups.setdefault(x["design"].split(" ")[0], []).append(abs(x["error_pct"]))
    return {
        "fps": out, "latency_batch1": latency, "resources": _resources(rows, cache), "skipped": skipped,
        "resnet50": rn50,
        "summary": {"designs_rows": len(errs), "rows_left_out": len(out) - len(errs),
                    "median_abs_error_pct": statistics.median(errs),
                    "median_abs_error_pct_layers_only": statistics.median(errs_before),
                    "median_abs_error_pct_all_rows": statistics.median(abs(x["error_pct"]) for x in out),
                    "median_abs_error_pct_all_rows_layers_only": statistics.median(
                        abs(x["error_pct_layers_only"]) for x in out), "all_rows": len(out),
                    "within_10pct": sum(e <= 10 for e in errs), "target_median_pct": 10.0,
                    "median_abs_error_pct_by_source": {k: statistics.median(v) for k, v in groups.items()}},
        "not_validated": ["UNSW-NB15 MLP: no published folding",
                          "LogicNets: no PE/SIMD folding (LUT-mapped netlists)",
                          "MobileNet-v1 rows at 100 MHz / 'not recorded' boards: the board and folding file are "
                          "not identified", "FINN'17 paper-abstract rows: no folding in the data"],
    }


# finn-examples ResNet-50 W1A2 (U250). Stem: ConvDoublePacked_Batch_0 {"SIMD": 3, "PE": 64, "MMV": 16} in
# build/resnet50/folding_config/U250_folding_config.json from f03f9ab (2021-01-18) to 19560c5 (2023-02-03); build.py
# then applies InferDoublePackedConv (finn-experimental). Movers: VitisBuild inserts IODMAs of at most 512 bits
# (vitis_build.py: InsertIODMA(512)): the stem reads one 24-bit pixel per cycle, 224 x 224 per image, gcd(24 x 50176,
# 512) = 512 bits -> 2352 cycles; the classifier's external weights (2048 x 1000 x 8 bits per image, = the row's
# DRAM_extw_idma0_bandwidth / FPS = 2.05 MB) at 512 bits -> 32000 cycles.
RN50_STEM = DoublePackedConv(kernel=7, stride=2, in_channels=3, ifm_dim=224, out_channels=64, simd=3, pe=64, mmv=16)
RN50_MOVERS = (Mover("iodma_in", 24 * 224 * 224, iodma_width(24, 224 * 224, 512)),
               Mover("iodma_extw", 2048 * 1000 * 8, iodma_width(8, 2048 * 1000, 512)))
# since 6678d9b (2023-02-22) build.py builds U250_folding_config_no_doublepack_pe_folded_16.json without the DSP-packed
# stem ("16 times slower per MHz"); the 2023-03-03 run's bitfile is not identified, so the 2021 folding may not apply
RN50_2023_REASON = ("bitfile not identified: since 2023-02-22 (6678d9b) build.py builds the no-DSP-packing folding "
                    "(16x slower per MHz, README), so the 2021 folding may not be what ran")


def _resnet50(rows: list[dict], cache: dict) -> tuple[list[dict], dict]:
    """ResNet-50 W1A2 on the U250 with its 2021 folding: bottleneck MVAUs, windows and pools from hwsim's dataflow,
    the DSP-packed stem by finn-experimental's stage cycles (hwsim/fpga/dsp_packed.py), the IODMAs. Returns the
    FPS rows and the stem's detail."""
    design = build_design(map_xnor(_graph("resnet50-w1a2", cache)), _resnet50_folding(), decomposed=False)
    stem = next(r for r in design.layers if r.kind == "mvau")
    stem_rows = {stem.name, stem.name + ":swg", stem.name + ":pad"}
    # the streaming blocks (adds, thresholding, duplication) took their PE to meet the stem-as-MVAU II; FINN's list
    # gives them PE 32, which keeps them below the bottleneck MVAUs: the II is that of the MVAUs, windows and pools
    rest = max(r.cycles for r in design.layers if r.name not in stem_rows
               and r.kind in ("mvau", "vvau", "swg", "fmpad", "pool"))
    packed = double_packed_conv_cycles(RN50_STEM)
    interval = max(rest, packed["layer"], *(m.cycles for m in RN50_MOVERS))
    out = []
    for r in rows:
        if not r["model"].startswith("ResNet-50 w1a2"):
            continue
        clock, fps = float(r["clock_mhz"]), float(r["fps"])
        pred, old = clock * 1e6 / interval, clock * 1e6 / max(rest, stem.cycles)
        excluded = RN50_2023_REASON if r["source_date"] >= "2023-02-22" else None
        out.append({"design": "finn-examples resnet50-w1a2", "net": "resnet50-w1a2", "board": r["board"],
                    "clock_mhz": clock, "batch": _num(r["batch_size"]), "folding": _resnet50_folding(),
                    "source": f"{r['source_repo']}/{r['source_path']}", "interval_cycles": interval,
                    "latency_cycles": None, "mover_in_cycles": RN50_MOVERS[0].cycles, "mover_out_cycles": None,
                    "fifo_depth_elems": None, "undetermined": None, "layers_ii_cycles": max(rest, stem.cycles),
                    "io_basis": f"stem ConvDoublePacked {packed['layer']} cycles; IODMA 512 bits: input "
                                f"{RN50_MOVERS[0].cycles}, external classifier weights {RN50_MOVERS[1].cycles}",
                    "measured_fps": fps, "predicted_fps": pred, "error_pct": _err(pred, fps),
                    "predicted_fps_layers_only": old, "error_pct_layers_only": _err(old, fps),
                    "driver_call_s": 0.0, "predicted_fps_steady": pred, "error_pct_steady": _err(pred, fps),
                    "implied_call_ms": None,
                    "ii_cycles": max(rest, stem.cycles), "predicted_latency_us": None, "measured_us_per_image": None,
                    "in_median": excluded is None, "excluded_reason": excluded})
    detail = {"design": "finn-examples resnet50-w1a2 (U250, folding of 2021-01..2023-02)",
              "stem": dataclasses.asdict(RN50_STEM), "stem_stage_cycles": packed,
              "stem_cycles_mvau_formula": stem.cycles, "ii_without_stem_cycles": rest,
              "movers_cycles": {m.name: m.cycles for m in RN50_MOVERS}, "interval_cycles": interval}
    return out, detail


def _resources(rows: list[dict], cache: dict) -> list[dict]:
    res = []
    for net, model in UTILIZATION.items():
        r = next(x for x in rows if x["model"].startswith(model))
        rep = _predict(net, UTIL_FOLD[net], 100.0, cache)
        bram = (_num(r["bram18"]) or 0) + 2 * (_num(r["bram36"]) or 0)
        meas = {"luts": _num(r["luts"]), "bram18": bram, "dsps": _num(r["dsps"])}
        pred = {"luts": rep.luts, "bram18": rep.bram18, "dsps": rep.dsps}
        res.append({"design": model, "net": net, "measured": meas, "predicted": pred,
                    "gap_pct": {k: _err(pred[k], meas[k]) if meas[k] else None for k in meas},
                    "scope": "Vivado: whole overlay (DMA, interconnect, FIFOs); hwsim: MVAUs, window generators, "
                             "pools (no DSPs modelled)"})
    return res


def _md(d: dict) -> str:
    s = d["summary"]
    lines = ["# hwsim's FPGA dataflow model vs measured FINN / BNN-PYNQ designs", "",
             "Predicted from each design's published folding and clock (`kbit=\"native\"`); nothing fitted. "
             "Generated by `benchmarks/bench_finn_measured.py` from `benchmarks/data/finn_measured.csv`.", "",
             f"Median |error| of the throughput over {s['designs_rows']} measured rows: "
             f"**{s['median_abs_error_pct']:.1f} %** (target {s['target_median_pct']:.0f} %; "
             f"{s['median_abs_error_pct_layers_only']:.1f} % over the same rows from the layers alone); "
             f"{s['within_10pct']} rows within 10 %; {s['rows_left_out']} rows left out (reasons below). Over all "
             f"{s['all_rows']} rows: {s['median_abs_error_pct_all_rows']:.1f} % "
             f"({s['median_abs_error_pct_all_rows_layers_only']:.1f} % from the layers alone).", "",
             "Predicted rate = clock / the pipeline's frame interval: MVAUs, windows and pools, the input / output "
             "data movers and, where the design publishes them, its FIFO depths (SimPy run, `hwsim/fpga/io.py`); "
             "for a batch measured with FINN's PYNQ driver, N / (pipeline time of the batch + the driver's "
             f"published per-call cost, {FINN_DRIVER_CALL_S * 1e6:.0f} us; `hwsim.fpga.io.batch_rate`). 'steady' = "
             "clock / frame interval; 'layers' = clock / the slowest layer (the first model). 'implied call ms' = "
             "N / measured FPS - the pipeline time of the batch: the host time the measurement holds if the "
             "pipeline model is right.", "",
             "| design | board | clock MHz | batch | measured FPS | predicted FPS | error % | steady error % | "
             "layers error % | implied call ms | interval / layers II cycles | movers in/out cycles | FIFO elems |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in d["fps"]:
        flag = "" if x["in_median"] else " (left out)"
        lines.append(f"| {x['design']}{flag} | {x['board'][:28]} | {x['clock_mhz']:g} | {x['batch'] or '-'} | "
                     f"{x['measured_fps']:.4g} | {x['predicted_fps']:.4g} | {x['error_pct']:+.1f} | "
                     f"{x['error_pct_steady']:+.1f} | {x['error_pct_layers_only']:+.1f} | "
                     f"{'-' if x['implied_call_ms'] is None else format(x['implied_call_ms'], '.2f')} | "
                     f"{x['interval_cycles']:.0f} / {x['ii_cycles']} | "
                     f"{x['mover_in_cycles'] or '-'} / {x['mover_out_cycles'] or '-'} | {x['fifo_depth_elems'] or '-'} |")
    left = {}
    for x in d["fps"]:
        if not x["in_median"]:
            left.setdefault(x["excluded_reason"], []).append(x["design"])
    lines += ["", "Left out of the median:"] + [f"* {', '.join(sorted(set(v)))}: {k}" for k, v in left.items()]
    lines += ["", "Mover / FIFO basis per design:"] + sorted({f"* {x['design']}: {x['io_basis']}" for x in d["fps"]
                                                            if x["design"] in IO})
    lines += ["", "Median |error| by source (rows in the median): " + ", ".join(f"{k} {v:.1f} %" for k, v in
                                                            s["median_abs_error_pct_by_source"].items()), "",
              "## Single-image latency (includes the host driver's call overhead)", "",
              "| design | board | measured us | predicted pipeline us (with movers, FIFOs) | error % | layers only us |"
              " error % |", "|---|---|---|---|---|---|---|"]
    for x in d["latency_batch1"]:
        lines.append(f"| {x['design']} | {x['board'][:28]} | {x['measured_latency_us']:.4g} | "
                     f"{x['predicted_latency_us']:.4g} | {x['error_pct']:+.1f} | "
                     f"{x['predicted_latency_us_layers_only']:.4g} | {x['error_pct_layers_only']:+.1f} |")
    lines += ["", "## Resources vs the Vivado utilization reports (PYNQ-Z1)", "",
              "| design | LUT meas / pred (gap %) | BRAM18 meas / pred (gap %) | DSP meas / pred |", "|---|---|---|---|"]
    for x in d["resources"]:
        m, p, g = x["measured"], x["predicted"], x["gap_pct"]
        lines.append(f"| {x['design']} | {m['luts']:.0f} / {p['luts']} ({g['luts']:+.0f}) | {m['bram18']:.0f} / "
                     f"{p['bram18']} ({g['bram18']:+.0f}) | {m['dsps']:.0f} / {p['dsps']} |")
    rn = d["resnet50"]
    st = rn["stem_stage_cycles"]
    lines += ["", f"## {rn['design']}: the stem", "",
              f"ConvDoublePacked (7x7/2, 3 -> 64 channels, SIMD 3, PE 64, MMV 16; finn-experimental "
              f"double_packed_conv.hpp): same-resize {st['same_resize']}, input generator {st['input_generator']}, "
              f"packed MVAU {st['mvau']}, serializer {st['serializer']} cycles: {st['layer']} (as a plain MVAU: "
              f"{rn['stem_cycles_mvau_formula']}). Rest of the network: {rn['ii_without_stem_cycles']}; IODMAs "
              f"{rn['movers_cycles']}: frame interval {rn['interval_cycles']} cycles."]
    lines += ["", "Scope of the resource comparison: " + d["resources"][0]["scope"] + ".", "",
              "Not validated: " + "; ".join(d["not_validated"]) + ".", "", "Notes: " + " ".join(NOTES)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    result = run()
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(result, indent=2))
    OUT_MD.write_text(_md(result))
    print(_md(result))
    print(f"wrote {OUT_JSON} and {OUT_MD}")
