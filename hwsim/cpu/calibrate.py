"""``hwsim calibrate``: measure the machine hwsim runs on and write a ``cpu/host`` preset.

What is measured (torch fp32 and numpy, one thread unless noted, after warm-up; machine capabilities as
the best of many short timed calls — on a shared machine the one no other process disturbed — and layers
and layer chains as the median of their calls, see :data:`LAYER_STAT`):

1. peak fp32 throughput: the best of a large GEMM (``torch.mm``) and a large 3×3 conv. The preset's
   ``clock_hz`` is the *effective* sustained clock implied by it: ``peak / (lanes · fma_per_cycle · 2)``
   with ``fma_per_cycle = 2`` (two vector FMA pipes, as on current x86 server cores); the nominal clock
   from ``/proc/cpuinfo`` goes in the header. Lanes come from the CPU flags (AVX-512, AVX2, NEON).
2. bandwidths: L2 from ``numpy.copyto`` of an L2-sized array (2 bytes moved per byte copied); L3 and main
   memory from a weight stream (``torch.mv`` over matrices sized for L3 and beyond it), since weights are
   what layers stream from there; the *effective* L3 capacity from where that stream's bandwidth drops
   (a virtual machine shares the L3 with other tenants).
3. per-layer overhead: tiny torch layers (a conv on 4×4 pixels, a relu, an add) whose time is all overhead;
   the time of a channel slice ``x[:, a:b]`` (a view: dispatch only, no data touched) -> ``overhead_view_s``.
4. per-kernel efficiencies and fixed overheads: a few *synthetic* conv / grouped / depthwise / 1×1 (dense and
   grouped) / linear / elementwise (out-of-place and in-place activations, adds, unfused batch norms) /
   pooling / upsampling (nearest, bilinear) layers,
   large ones and tiny ones (shapes chosen not to be the zoo's:
   calibrate on synthetic layers, validate on the zoo); the fields of each group are the values that
   minimise the squared log error of the cost model (:mod:`hwsim.cpu.cost`) on its layers.
5. layers in a network: ``layer_overhead_s`` fitted on eight synthetic layer chains
   run back to back (a layer in a network pays costs an isolated layer does not: cold caches, dispatch of
   the module graph); the isolated tiny-layer figure is kept in the header.
6. all threads: ``parallel_eff`` and ``parallel_flops_half`` fitted on the synthetic conv layers timed again on
   all threads in three fresh processes, each layer keeping its median over them (on a shared machine whole
   processes run their parallel regions fast or slow); then ``parallel_overhead_s`` on the synthetic chains timed
   on all threads in the same processes (a per-layer cost on several threads that a layer timed over and over
   alone does not show: measured here, five of the eight chains at 2 threads came out 19-24 % slower than the
   isolated-layer fit predicted, the other three +3..+7 %; on one thread all within -14..+6 %). Each process
   measures the core-to-core round trip (:mod:`hwsim.cpu.cores`) before and after; one whose threads ran
   split apart (:func:`hwsim.cpu.cores.threads_close`: a round trip above ``SPLIT_FACTOR`` x the shortest seen, or
   every one above ``SHARED_LLC_MAX_S``) is set aside and replaced.

Steps 1-5 run in :data:`CALIBRATION_ROUNDS` rounds back to back and every figure keeps its median over the
rounds (a shared machine's state drifts over tens of seconds; one round takes seconds); the fits run once, on
those medians. Cache sizes are read from ``/sys/devices/system/cpu/cpu0/cache``. Power constants are not measurable
here; they are cited in the written header.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hwsim.cpu.cores import SHARED_LLC_MAX_S, SPLIT_FACTOR, round_trip_s, threads_close
from hwsim.cpu.cost import layer_cost, placement
from hwsim.cpu.spec import BYTES_PER_ELEMENT, CPUSpec
from hwsim.errors import HwsimError
from hwsim.specs import check_output_path, save_spec, user_preset_dir
from mapping.analysis import peak_live_elements

__all__ = ["calibrate", "time_call", "cache_sizes", "simd_bits_of_host", "keep_freed_memory", "KEEP_FREED_MEMORY",
           "SYNTHETIC_LAYERS"]

# Host power constants (not measurable without a power meter): AMD EPYC 9555 (Zen 5, 64 cores, 360 W
# TDP, AMD EPYC 9005 series product page) -> 5.6 W per core at full load; a VM's share of the socket's
# idle power is unknown and left at 0; DRAM 20 pJ/bit (Horowitz, ISSCC 2014: 1.3-2.6 nJ per 64-bit access).
HOST_POWER = {"active_power_w_per_core": 360.0 / 64, "idle_power_w": 0.0, "mem_energy_j_per_byte": 1.6e-10}
FMA_PIPES_X86 = 2  # Zen 4/5 and Intel server cores: two vector FMA pipes per core (vendor optimisation guides)

# Machine capabilities (peak FLOP/s, bandwidths, the dispatch floor of a tiny layer) are the best of many
# calls: the call no other process disturbed. Layers and layer chains, whose fitted efficiencies and
# overheads predict the time a user will see, are the median of their calls, the statistic the host
# validation (benchmarks/bench_cpu_vs_host.py) compares against.
LAYER_STAT = "median"
# The machine-state probe: one synthetic im2col conv (the unfold + GEMM path, whose all-thread time moves most
# between processes on a shared machine). Calibration writes its times into the preset's header and the host
# validation times it beside every net, so a reader can see whether both saw the same machine.
PROBE_LAYER = ("im2col", (12, 20, 3, 1), (1, 12, 36, 36))
PARALLEL_PROCESSES = 3  # all-thread layer timings: fresh processes sampled, each layer's median over them kept
# Single-thread measurements are repeated in this many rounds, back to back, and each quantity keeps its median over
# them: one round takes seconds, while this shared machine's state drifts over tens of seconds (five one-round
# calibrations within ten minutes here: effective clock 3.84-4.05 GHz, layer_overhead_s 2.2-4.1 us; three five-round
# ones: 3.82-3.97 GHz, 3.0-3.7 us), and the validation that judges the preset runs for minutes.
CALIBRATION_ROUNDS = 5

# glibc malloc hands a freed buffer above its (dynamic) mmap threshold, and a free heap top above its trim
# threshold, back to the OS: the next call page-faults that memory in again (measured here: a 128-channel 3x3
# conv on 112x112, 23.1 ms per call with glibc's defaults, 15.3 ms with these thresholds; itnet-seg at 360x480,
# 34 ms instead of 23 ms per inference). The cost model describes the steady state of a runtime whose allocator
# keeps freed buffers (jemalloc / tcmalloc, which PyTorch's CPU performance guide recommends, or glibc with these
# thresholds), so calibration measures in that state and the host validation runs its nets in it. Environment
# variables for child processes; :func:`keep_freed_memory` sets the same thresholds in a running process.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters

# PyTorch's CPU conv dispatch (aten/src/ATen/native/Convolution.cpp, ``use_mkldnn``): an fp32 conv with
# groups = 1, kernel <= 3x3 and batch 1 whose input has at most 20480 elements runs the native
# im2col + GEMM path instead of oneDNN.
TORCH_GEMM_CONV_MAX_INPUT_ELEMENTS = 20480
# Same function: a 1x1, stride-1, batch-1 conv runs the native GEMM path only on one thread (for more,
# oneDNN), one GEMM per group.
TORCH_POINTWISE_GEMM_MAX_THREADS = 1
# PyTorch's eager fp32 convs on oneDNN copy the NCHW input into oneDNN's channel-blocked layout and the output back
# on every call (ONEDNN_VERBOSE=1 lists a reorder primitive before and after each convolution; measured here at one
# thread: a 128-channel 3x3 conv on 56x56 3.4 ms + two copies of 30-35 us, a 144-channel depthwise conv on 56x56
# 62 us + two copies of 39-45 us, a 3->64 first-layer conv on 224x224 0.78 ms + one output copy of 0.73 ms).
TORCH_ONEDNN_REORDERS = True
# Same runtime: the weights, plain OIHW torch tensors, are copied into the conv primitive's blocked layout on every
# call too (ONEDNN_VERBOSE: a weight reorder before each conv, 0.19 ms for 256x256x3x3 and 0.76-0.82 ms for
# 512x512x3x3 inside ResNet-18 here, 12-15 GB/s of weights); calibration times that copy (:func:`_weight_reorder_bw`).
# aten/src/ATen/Parallel.h: at::internal::GRAIN_SIZE = 32768; TensorIterator ops (elementwise, pooling,
# copies) on fewer elements run on the calling thread only.
TORCH_GRAIN_SIZE = 32768

# Synthetic layers: kind -> [(module args, input shape)]. Not shapes of any zoo net; small and large,
# both sides of the im2col threshold ("conv" entries below 20480 input elements run as im2col), and for
# every conv kind a few tiny layers whose time is mostly the kernel's fixed overhead. Pointwise entries
# with a fifth argument are grouped 1x1 convs; the strided 1x1 convs among the "im2col" entries run the same
# unfold + GEMM path (one copy call per element).
SYNTHETIC_LAYERS: dict[str, list[tuple]] = {
    "conv": [((48, 48, 3, 1), (1, 48, 40, 40)), ((96, 96, 3, 1), (1, 96, 20, 20)), ((80, 160, 3, 2), (1, 80, 24, 24)),
             ((24, 40, 3, 1), (1, 24, 48, 48)), ((320, 320, 3, 1), (1, 320, 9, 9)), ((160, 160, 3, 1), (1, 160, 12, 12)),
             ((3, 24, 3, 2), (1, 3, 96, 96)), ((3, 40, 7, 2), (1, 3, 120, 120)),
             ((6, 10, 5, 1), (1, 6, 8, 8)), ((5, 12, 7, 2), (1, 5, 14, 14)),
             ((112, 112, 3, 1), (1, 112, 44, 44)), ((40, 80, 3, 1), (1, 40, 88, 88)), ((200, 200, 3, 1), (1, 200, 15, 15)),
             ((448, 448, 3, 1), (1, 448, 7, 7))],
    "im2col": [((24, 24, 3, 1), (1, 24, 24, 24)), ((40, 40, 3, 1), (1, 40, 12, 12)), ((56, 56, 3, 1), (1, 56, 18, 18)),
               ((12, 20, 3, 1), (1, 12, 36, 36)), ((192, 192, 3, 1), (1, 192, 10, 10)), ((3, 12, 3, 1), (1, 3, 40, 40)),
               ((24, 48, 3, 2), (1, 24, 26, 26)), ((48, 96, 3, 2), (1, 48, 14, 14)), ((80, 80, 3, 1), (1, 80, 6, 6)),
               ((6, 10, 3, 1), (1, 6, 7, 7)), ((10, 6, 3, 2), (1, 10, 9, 9)), ((12, 24, 3, 2), (1, 12, 40, 40)),
               ((72, 144, 3, 2), (1, 72, 12, 12)), ((8, 16, 3, 1), (1, 8, 44, 44)),
               ((36, 72, 1, 2), (1, 36, 20, 20)), ((20, 40, 1, 2), (1, 20, 28, 28)),
               # few output channels on a large map: a skinny GEMM, whose split over threads is poor
               ((10, 8, 3, 1), (1, 10, 44, 44)), ((6, 14, 3, 1), (1, 6, 56, 56)), ((18, 24, 3, 1), (1, 18, 30, 30)),
               ((14, 32, 3, 1), (1, 14, 38, 38))],
    "depthwise": [((72, 72, 3, 1), (1, 72, 40, 40)), ((144, 144, 3, 1), (1, 144, 20, 20)),
                  ((288, 288, 3, 1), (1, 288, 10, 10)), ((120, 120, 5, 2), (1, 120, 24, 24)),
                  ((40, 40, 3, 1), (1, 40, 9, 9)), ((600, 600, 3, 1), (1, 600, 6, 6)),
                  ((10, 10, 3, 1), (1, 10, 5, 5))],
    "pointwise": [((48, 144, 1, 1), (1, 48, 40, 40)), ((144, 48, 1, 1), (1, 144, 40, 40)),
                  ((96, 192, 1, 1), (1, 96, 20, 20)), ((384, 96, 1, 1), (1, 384, 10, 10)),
                  ((20, 60, 1, 1), (1, 20, 30, 30)), ((120, 40, 1, 1), (1, 120, 12, 12)),
                  ((600, 600, 1, 1), (1, 600, 6, 6)), ((40, 80, 1, 2), (1, 40, 36, 36)),
                  ((6, 10, 1, 1), (1, 6, 7, 7)), ((10, 12, 1, 1), (1, 10, 5, 5)),
                  ((36, 24, 1, 1, 6), (1, 36, 7, 7)), ((40, 40, 1, 1, 10), (1, 40, 5, 5)),
                  ((24, 48, 1, 1, 3), (1, 24, 14, 14)), ((120, 60, 1, 1, 12), (1, 120, 9, 9))],
    "grouped": [((48, 24, 3, 1, 4), (1, 48, 36, 36)), ((96, 48, 3, 1, 8), (1, 96, 18, 18)),
                ((24, 24, 3, 1, 3), (1, 24, 44, 44)), ((160, 40, 3, 1, 4), (1, 160, 10, 10)),
                ((64, 64, 3, 2, 2), (1, 64, 28, 28)), ((120, 60, 3, 1, 6), (1, 120, 14, 14)),
                ((48, 48, 3, 1, 3), (1, 48, 6, 6)), ((96, 96, 3, 1, 6), (1, 96, 10, 10)),
                ((80, 80, 3, 1, 5), (1, 80, 30, 30)), ((12, 12, 3, 1, 3), (1, 12, 5, 5))],
    "linear": [((768, 500), (1, 768)), ((2048, 256), (1, 2048)), ((300, 100), (1, 300)), ((1500, 1500), (1, 1500))],
    "elementwise": [(("relu",), (1, 64, 40, 40)), (("relu",), (1, 128, 20, 20)), (("add",), (1, 96, 30, 30)),
                    (("relu6",), (1, 160, 28, 28)), (("relu",), (1, 24, 10, 10)), (("add",), (1, 48, 90, 90)),
                    (("relu_",), (1, 40, 100, 100)), (("relu6_",), (1, 72, 30, 30)), (("relu_",), (1, 36, 12, 12)),
                    (("batchnorm", 40), (1, 40, 18, 18)), (("batchnorm", 96), (1, 96, 6, 6)),
                    (("batchnorm", 20), (1, 20, 60, 60))],
    "resample": [(("bilinear", 120, 160), (1, 8, 30, 40)), (("bilinear", 80, 80), (1, 16, 20, 20)),
                 (("bilinear", 72, 72), (1, 20, 36, 36)), (("nearest", 200, 200), (1, 5, 50, 50)),
                 (("nearest", 56, 56), (1, 24, 14, 14)), (("nearest", 96, 128), (1, 6, 24, 32))],
    # max pools on at least ~200k input elements: on a smaller input timed over and over the branch predictor
    # learns the compare outcomes (a 24-channel 30x30 max pool ran at 6.9 ns per output, large ones at 22)
    "pool": [(("maxpool",), (1, 48, 80, 80)), (("maxpool",), (1, 24, 90, 90)), (("maxpool2",), (1, 40, 72, 72)),
             (("maxpool",), (1, 32, 120, 120)), (("maxpool2",), (1, 96, 48, 48)), (("maxpool3s1",), (1, 20, 100, 100)),
             (("avgpool2",), (1, 36, 50, 50)), (("avgpool2",), (1, 72, 14, 14)), (("adaptive5",), (1, 60, 10, 10))],
}
# fitted jointly on the synthetic conv layers timed on all threads (then parallel_overhead_s on the chains)
PARALLEL_FIELDS = ("parallel_eff", "parallel_flops_half")
FIT_GROUPS = (  # (kinds measured, spec fields fitted jointly), fitted in this order
    (("elementwise",), ("eff_elementwise", "overhead_batchnorm_s")),
    (("pool",), ("eff_pool", "pool_output_ops")),
    (("resample",), ("eff_resample", "resample_output_ops")),
    (("depthwise",), ("eff_depthwise", "overhead_depthwise_s")),
    (("conv", "pointwise"), ("eff_conv", "eff_pointwise", "overhead_conv_s", "overhead_gemm_s", "overhead_per_group_s",
                             "gemm_k_half", "gemm_n_half", "gemm_m_half", "conv_m_half")),
    (("im2col",), ("eff_im2col", "unfold_row_s", "unfold_element_s")),
    (("grouped",), ("eff_grouped", "overhead_grouped_s")),
    (("linear",), ("eff_linear",)),
)




def _chains():
    """Eight synthetic networks (layer sequences of the kinds above, shapes of no zoo net: dense, inverted
    residual, small grouped, split/concat/shuffle, and three of few channels on small maps: two plain 3x3 stacks and
    a dense-growth block) run back to back: layers in a network pay costs that isolated layers do not (cold caches
    between layers, dispatch; on several threads, a per-layer cost that a layer timed over and over alone hides)."""
    nn = _torch().nn
    small = nn.Sequential(
        nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.Conv2d(20, 20, 3, padding=1), nn.ReLU(),
        nn.Conv2d(20, 40, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(40, 40, 3, padding=1), nn.ReLU(),
        nn.Conv2d(40, 40, 1), nn.ReLU6(), nn.Conv2d(40, 40, 3, padding=1, groups=40), nn.ReLU6(),
        nn.Conv2d(40, 80, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(80, 12))
    big = nn.Sequential(
        nn.Conv2d(3, 24, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(24, 72, 1), nn.ReLU6(),
        nn.Conv2d(72, 72, 3, stride=2, padding=1, groups=72), nn.ReLU6(), nn.Conv2d(72, 36, 1),
        nn.Conv2d(36, 108, 1), nn.ReLU6(), nn.Conv2d(108, 108, 3, padding=1, groups=108), nn.ReLU6(),
        nn.Conv2d(108, 56, 1), nn.Conv2d(56, 112, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(112, 224, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(224, 300))
    mid = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 1), nn.ReLU6(),
        nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU6(), nn.Conv2d(64, 20, 1), nn.Conv2d(20, 100, 1),
        nn.ReLU6(), nn.Conv2d(100, 100, 5, stride=2, padding=2, groups=100), nn.ReLU6(), nn.Conv2d(100, 44, 1),
        nn.Conv2d(44, 176, 1), nn.ReLU6(), nn.Conv2d(176, 176, 3, padding=1, groups=176), nn.ReLU6(),
        nn.Conv2d(176, 44, 1), nn.MaxPool2d(2), nn.Conv2d(44, 352, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(352, 50))
    grouped = nn.Sequential(
        nn.Conv2d(12, 24, 1, groups=3), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1, groups=6), nn.ReLU(),
        nn.Conv2d(24, 48, 1, groups=4), nn.ReLU(), nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=12), nn.ReLU(),
        nn.Conv2d(48, 24, 1, groups=2), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))
    narrow = nn.Sequential(*[m for _ in range(8) for m in (nn.Conv2d(14, 14, 3, padding=1), nn.ReLU())])
    narrow6 = nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(20, 20, 3, padding=1), nn.ReLU6())])
    return [(small, (1, 3, 36, 36)), (big, (1, 3, 144, 144)), (mid, (1, 3, 160, 160)), (grouped, (1, 12, 26, 26)),
            (_Branchy(), (1, 24, 20, 20)), (narrow, (1, 14, 28, 28)), (narrow6, (1, 20, 26, 26)),
            (_DenseGrowth(), (1, 14, 24, 24))]


class _DenseGrowth:
    """A synthetic dense block: six units of 1x1 (to 40 channels) -> ReLU -> 3x3 (10 channels) -> ReLU, each unit's
    output concatenated to its input (growth 10 from 14 channels; no zoo net's counts)."""

    def __new__(cls):
        nn = _torch().nn

        class DenseGrowth(nn.Module):
            def __init__(self):
                super().__init__()
                self.units = nn.ModuleList(nn.Sequential(nn.Conv2d(14 + 10 * i, 40, 1), nn.ReLU(),
                                                         nn.Conv2d(40, 10, 3, padding=1), nn.ReLU()) for i in range(6))

            def forward(self, x):
                for u in self.units:
                    x = _torch().cat([x, u(x)], 1)
                return x

        return DenseGrowth()


class _Branchy:
    """A synthetic chain of many small layers that split, concatenate, shuffle and add (the layer mix of
    efficient nets; channel counts of no zoo net): three units of split -> 1x1, 3x3 depthwise, 1x1 on one
    half -> concat -> shuffle -> grouped 1x1, depthwise, 1x1 + residual."""

    def __new__(cls):
        nn = _torch().nn

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.units = nn.ModuleList(nn.ModuleDict({
                    "a": nn.Sequential(nn.Conv2d(10, 10, 1), nn.ReLU(), nn.Conv2d(10, 10, 3, padding=1, groups=10),
                                       nn.Conv2d(10, 14, 1), nn.ReLU()),
                    "shuffle": nn.ChannelShuffle(2),
                    "b": nn.Sequential(nn.Conv2d(24, 36, 1, groups=2), nn.ReLU(),
                                       nn.Conv2d(36, 36, 3, padding=1, groups=36), nn.Conv2d(36, 24, 1))})
                    for _ in range(3))
                self.relu = nn.ReLU()

            def forward(self, x):
                for u in self.units:
                    y = _torch().cat([x[:, :10], u["a"](x[:, 10:20])], 1)
                    x = self.relu(u["b"](u["shuffle"](y)) + x)
                return x

        return Branchy()


# ----------------------------------------------------------------------------- timing
def keep_freed_memory() -> bool:
    """Set :data:`KEEP_FREED_MEMORY`'s thresholds in this process with glibc's ``mallopt``; False where the C
    library is not glibc (other allocators keep freed memory by default or are configured otherwise)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(KEEP_FREED_MEMORY["MALLOC_MMAP_THRESHOLD_"]))
                and mallopt(_M_TRIM_THRESHOLD, int(KEEP_FREED_MEMORY["MALLOC_TRIM_THRESHOLD_"])))


@contextlib.contextmanager
def _threads(n: int):
    """Run the block with torch on ``n`` threads, restoring the previous count afterwards."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synthetic(quick: bool, kinds: tuple[str, ...] | None = None):
    """(kind, module args, input shape) of the synthetic layers (of ``kinds``), in one fixed order."""
    for kind, layers in SYNTHETIC_LAYERS.items():
        if kinds is None or kind in kinds:
            yield from ((kind, args, shape) for args, shape in (layers[:2] if quick else layers))


def time_call(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3, min_time_s: float = 0.0,
              stat: str = "min", clock: str = "wall") -> float:
    """Time of one ``fn()`` call in seconds after ``warmup`` calls: the best (``stat="min"``, default) or
    the median (``stat="median"``) of ``repeats`` samples, each looping until ``min_time_s``.

    ``clock="wall"`` (default) is ``time.perf_counter``; ``clock="cpu"`` the calling thread's CPU time.
    Calibration times short calls (< 3 ms) and keeps the best: on a shared machine it is the sample no
    other process disturbed (medians and CPU times both grow with the machine's load)."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        k, t0 = 0, now()
        while True:
            fn()
            k += 1
            dt = now() - t0
            if dt >= min_time_s:
                break
        samples.append(dt / k)
    return float(np.min(samples) if stat == "min" else np.median(samples))


# ----------------------------------------------------------------------------- machine facts
def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * mult[text[-1]] if text and text[-1] in mult else int(text or 0)


def cache_sizes() -> dict[str, tuple[int, bool]]:
    """{"L1": (bytes, per_core), "L2": ..., "L3": ...} of data/unified caches from sysfs (empty if unknown)."""
    out: dict[str, tuple[int, bool]] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        if _read(d / "type") not in ("Data", "Unified"):
            continue
        level = _read(d / "level")
        size = _size(_read(d / "size"))
        shared = _read(d / "shared_cpu_list")
        per_core = shared in ("0", "")
        if level and size:
            out[f"L{level}"] = (size, per_core)
    return out


def _cpu_flags() -> set[str]:
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_mhz() -> str:
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.lower().startswith("cpu mhz"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _cpu_model() -> str:
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def simd_bits_of_host() -> int:
    flags = _cpu_flags()
    if "avx512f" in flags:
        return 512
    if "avx2" in flags or "avx" in flags:
        return 256
    return 128  # SSE / NEON (asimd)


# ----------------------------------------------------------------------------- micro-benchmarks
def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        raise HwsimError("hwsim calibrate needs torch") from e
    return torch


def _peak_flops(quick: bool, clock: str = "wall") -> dict[str, float]:
    torch = _torch()
    n = 512  # 0.27 GFLOP per call: short enough that most timed calls are not preempted on a shared machine
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_mm = time_call(lambda: torch.mm(a, b), repeats=9 if quick else 41, warmup=3, clock=clock)
    conv = torch.nn.Conv2d(192, 192, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 192, 28, 28)
    with torch.inference_mode():
        t_conv = time_call(lambda: conv(x), repeats=9 if quick else 41, warmup=3, clock=clock)
    return {"gemm_flops": 2 * n**3 / t_mm, "conv_flops": 2 * 192 * 192 * 9 * 28 * 28 / t_conv, "conv_s": t_conv}


def _read_bw(nbytes: int, quick: bool) -> float:
    """Read bandwidth of a weight stream: ``torch.mv`` over four 1024-column matrices of ``nbytes`` in all,
    visited in turn (each call finds its matrix where the other three left the caches)."""
    torch = _torch()
    rows = max(1, nbytes // (4 * 4 * 1024))
    mats = [torch.randn(rows, 1024) for _ in range(4)]
    v = torch.randn(1024)

    def run():
        for a in mats:
            torch.mv(a, v)

    with torch.inference_mode():
        t = time_call(run, repeats=7 if quick else 21, warmup=2, stat="median")
    return 4 * rows * 1024 * 4 / t


def _weight_reorder_bw(quick: bool) -> float:
    """Bytes of weights per second that the runtime's per-call copy of a conv's weights into the primitive's blocked
    layout moves on one thread, for a 384x320x3x3 weight (4.4 MB): oneDNN's weight reorder, called through
    ``torch._C._nn.mkldnn_reorder_conv2d_weight`` on the weight as a oneDNN tensor. 0 where this build of torch
    lacks it (the model then leaves the copy out)."""
    torch = _torch()
    w = torch.randn(384, 320, 3, 3)
    try:
        wm = w.to_mkldnn()
        reorder = torch._C._nn.mkldnn_reorder_conv2d_weight
        t = time_call(lambda: reorder(wm, [1, 1], [1, 1], [1, 1], 1), repeats=7 if quick else 31, warmup=3,
                      stat=LAYER_STAT)
    except (AttributeError, RuntimeError, NotImplementedError):
        return 0.0
    return w.numel() * BYTES_PER_ELEMENT / t


def _effective_llc(l2: int, l3: int, quick: bool) -> tuple[int, float, float]:
    """(effective last-level cache bytes, its read bandwidth, main-memory read bandwidth).

    On a virtual machine the last-level cache is shared with other tenants: the capacity a weight stream
    can use is less than sysfs reports. The read bandwidth is measured over growing footprints; the
    effective capacity is the largest footprint still read at >= 70 % of the best cache bandwidth."""
    dram = _read_bw(max(64 * 2**20, 2 * l3), quick)
    if not l3:
        return 0, 0.0, dram
    sizes = sorted({max(2 * l2, l3 // 8), l3 // 4, l3 // 2, 3 * l3 // 4, l3})
    bws = {n: _read_bw(n, quick) for n in sizes}
    best = max(bws.values())
    fit = [n for n in sizes if bws[n] >= 0.7 * best]
    return (max(fit) if fit else sizes[0]), best, dram


def _copy_bw(nbytes: int, quick: bool) -> float:
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t = time_call(lambda: np.copyto(dst, src), repeats=9 if quick else 41, warmup=2)
    return 2 * nbytes / t


def _overhead(quick: bool) -> float:
    torch = _torch()
    conv = torch.nn.Conv2d(4, 4, 3, padding=1).eval()
    relu = torch.nn.ReLU()
    x = torch.randn(1, 4, 4, 4)
    with torch.inference_mode():
        ts = [time_call(f, repeats=21 if quick else 101, warmup=5)
              for f in (lambda: conv(x), lambda: relu(x), lambda: x + x)]
    return float(np.median(ts))


def _view_overhead(quick: bool) -> float:
    """Time of a channel slice ``x[:, a:b]`` of an NCHW tensor (a view: no data moved, dispatch only)."""
    torch = _torch()
    x = torch.randn(1, 40, 12, 12)
    with torch.inference_mode():
        return time_call(lambda: x[:, 8:28], repeats=21 if quick else 101, warmup=5, min_time_s=1e-4)


class _Add:
    """A torch module adding its input to itself (a two-input elementwise op)."""

    def __new__(cls):
        torch = _torch()

        class Add(torch.nn.Module):
            def forward(self, x):
                return x + x

        return Add()


def _module(kind: str, args: tuple):
    torch = _torch()
    if kind in ("conv", "pointwise", "im2col"):
        cin, cout, k, s, *g = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g[0] if g else 1)
    if kind == "depthwise":
        cin, cout, k, s = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=cin)
    if kind == "grouped":
        cin, cout, k, s, g = args
        return torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g)
    if kind == "linear":
        return torch.nn.Linear(*args)
    if kind == "resample":
        mode, h, w = args
        return torch.nn.Upsample(size=(h, w), mode=mode, align_corners=False if mode == "bilinear" else None)
    op = args[0]
    if op == "batchnorm":  # eval-mode batch norm with non-trivial statistics
        bn = torch.nn.BatchNorm2d(args[1])
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        return bn
    return {"relu": torch.nn.ReLU(), "relu6": torch.nn.ReLU6(), "relu_": torch.nn.ReLU(inplace=True),
            "relu6_": torch.nn.ReLU6(inplace=True), "maxpool": torch.nn.MaxPool2d(3, 2, 1),
            "maxpool2": torch.nn.MaxPool2d(2, 2), "maxpool3s1": torch.nn.MaxPool2d(3, 1, 1),
            "avgpool2": torch.nn.AvgPool2d(2, 2), "adaptive5": torch.nn.AdaptiveAvgPool2d(5), "add": _Add()}[op]


@dataclasses.dataclass(frozen=True, slots=True)
class _Measured:
    kind: str
    args: tuple
    shape: tuple
    graph: object
    seconds: float  # median at one thread


def _time_layer(kind: str, args: tuple, shape: tuple, quick: bool, clock: str = "wall") -> float:
    torch = _torch()
    m = _module(kind, args).eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        return time_call(lambda: m(x), repeats=7 if quick else 41, warmup=3, clock=clock, stat=LAYER_STAT)


@dataclasses.dataclass(frozen=True, slots=True)
class _Caches:
    """This machine's cache sizes in bytes (:func:`cache_sizes`; an unknown L1 taken as 32 KiB, others as none)."""
    l1: int
    l2: int
    l2_per_core: bool
    l3: int

    @classmethod
    def of_host(cls) -> _Caches:
        c = cache_sizes()
        l2, l2_per_core = c.get("L2", (0, False))
        return cls(c.get("L1", (32768, True))[0], l2, l2_per_core, c.get("L3", (0, False))[0])


def _time_chains(chains: list[tuple[object, tuple]], quick: bool) -> list[float]:
    """Median time of each synthetic chain ((module in eval mode, input shape)) on the current thread count."""
    torch = _torch()
    out = []
    for model, shape in chains:
        x = torch.randn(*shape)
        with torch.inference_mode():
            out.append(time_call(lambda model=model, x=x: model(x), repeats=9 if quick else 41, warmup=3, stat=LAYER_STAT))
    return out


class _Phases:
    """The calibration's progress bar (:func:`hwsim.functional.progress_bar`): one step per measurement phase, the
    phase running shown after the bar. Calling it starts a phase (and ends the previous one)."""

    def __init__(self, total: int, progress: bool | None):
        from hwsim.functional import progress_bar

        self.bar = progress_bar(total, "hwsim calibrate", progress, unit="step", leave=True)
        self.running = False

    def __call__(self, name: str) -> None:
        self.bar.set_postfix_str(name, refresh=False)
        if self.running:
            self.bar.update()
        self.running = True
        self.bar.refresh()

    def more(self, steps: int) -> None:
        """``steps`` phases more than planned (all-thread processes set aside and replaced)."""
        self.bar.total += steps
        self.bar.refresh()

    def close(self) -> None:
        if self.running:
            self.bar.set_postfix_str("done", refresh=False)
            self.bar.update()
        self.bar.close()


def _no_phase(name: str) -> None:
    pass


def _round_phases(quick: bool) -> int:
    """Phases of one :func:`_measure_round`."""
    return 4 + sum(1 for _ in _synthetic(quick))


def _measure_round(quick: bool, caches: _Caches, chains: list[tuple[object, tuple]],
                   phase: Callable[[str], None] = _no_phase, label: str = "") -> dict[str, object]:
    """One round of every single-thread measurement, raw: peak throughputs, bandwidths (sized by ``caches``), the
    effective L3, fixed overheads, the weight-reorder rate, every synthetic layer's median time (order of
    :func:`_synthetic`) and every synthetic chain's (order of ``chains``: (module in eval mode, input shape)).
    ``phase(name)`` is called as each of its :func:`_round_phases` phases starts (``label`` before the name)."""
    phase(f"{label}peak FLOP/s")
    peak = _peak_flops(quick)
    l1, l2 = caches.l1, caches.l2
    phase(f"{label}cache and memory bandwidth")
    l3, bw_l3, bw_dram = _effective_llc(l2, caches.l3, quick)
    phase(f"{label}layer chains")
    chain_times = _time_chains(chains, quick)
    phase(f"{label}overheads")
    out = {"gemm_flops": peak["gemm_flops"], "conv_flops": peak["conv_flops"],
           "bw_l2": _copy_bw(max(l1 * 2, l2 // 4), quick) if l2 else 0.0, "l3": l3, "bw_l3": bw_l3,
           "bw_dram": bw_dram, "overhead": _overhead(quick), "view": _view_overhead(quick),
           "w_reorder": _weight_reorder_bw(quick) if TORCH_ONEDNN_REORDERS else 0.0}
    layers = list(_synthetic(quick))
    times = []
    for i, (kind, args, shape) in enumerate(layers):
        phase(f"{label}synthetic layer {i + 1}/{len(layers)} ({kind})")
        times.append(_time_layer(kind, args, shape, quick))
    return {**out, "layers": times, "chains": chain_times}


def _median_rounds(rounds: list[dict[str, object]]) -> dict[str, object]:
    """Each quantity's median over the rounds (or the all-thread processes; lists: element by element); the
    effective L3 capacity, a choice among the probed sizes, takes the lower median so that it stays one of them."""
    out: dict[str, object] = {}
    for key in rounds[0]:
        vals = [r[key] for r in rounds]
        if isinstance(vals[0], list):
            out[key] = [float(np.median(col)) for col in zip(*vals)]
        elif key == "l3":
            out[key] = sorted(vals)[(len(vals) - 1) // 2]
        else:
            out[key] = float(np.median(vals))
    return out


def _predict(graph, spec: CPUSpec, cores: int = 1) -> float:
    act = peak_live_elements(graph) * graph.batch * BYTES_PER_ELEMENT
    place = placement(graph, spec, act, cores)
    return sum(layer_cost(graph, n, spec, place, cores).latency_s for n in graph.nodes)


LINEAR_FIELDS = {"parallel_eff": (0.05, 1.0)}  # fitted on their own scale and clamped, not in log space
LOG_FIELD_RANGE = (math.log(1e-12), math.log(1e12))  # overheads (s), *_half fields: bounds of their logarithm


def _fit(spec: CPUSpec, fields: tuple[str, ...], items: list[tuple[object, float]],
         cores: int = 1) -> tuple[CPUSpec, float]:
    """Fit ``fields`` (efficiencies in [1e-4, 1], overheads in s, gemm_*_half and parallel_flops_half >= 0,
    parallel_eff in [0.05, 1]) minimising Σ log²(pred/meas) of the layers run on ``cores`` threads.

    Bounded nonlinear least squares (scipy's trust-region reflective ``least_squares``) over log-parameters
    (``parallel_eff``: linear), started from generic values and from the spec's current ones, the better
    kept; returns the fitted spec and the rms log error."""
    from scipy.optimize import least_squares

    def make(u) -> CPUSpec:
        vals = {}
        for f, v in zip(fields, u):
            if f in LINEAR_FIELDS:
                lo, hi = LINEAR_FIELDS[f]
                vals[f] = min(hi, max(lo, float(v)))
            elif f.startswith("eff_"):
                vals[f] = min(1.0, max(1e-4, math.exp(v)))
            else:
                vals[f] = math.exp(v)
        return dataclasses.replace(spec, **vals)

    def residuals(u) -> np.ndarray:
        s = make(u)
        return np.array([math.log(_predict(g, s, cores) / t) for g, t in items])

    lo = np.array([LINEAR_FIELDS[f][0] if f in LINEAR_FIELDS else math.log(1e-4) if f.startswith("eff_")
                   else LOG_FIELD_RANGE[0] for f in fields])
    hi = np.array([LINEAR_FIELDS[f][1] if f in LINEAR_FIELDS else 0.0 if f.startswith("eff_")
                   else LOG_FIELD_RANGE[1] for f in fields])

    def inside(u) -> np.ndarray:
        return np.clip(np.asarray(u, dtype=float), lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo))

    start = {"gemm_k_half": 8.0, "gemm_n_half": 4.0, "gemm_m_half": 16.0, "conv_m_half": 16.0, "resample_output_ops": 1.0, "pool_output_ops": 1.0,
             "parallel_flops_half": 1e6, "parallel_eff": 0.9}
    generic = [start[f] if f in LINEAR_FIELDS else math.log(0.3) if f.startswith("eff_") else math.log(start.get(f, 2e-6))
               for f in fields]
    current = [getattr(spec, f) if f in LINEAR_FIELDS else math.log(max(getattr(spec, f), 1e-12)) for f in fields]
    best = None
    for u0 in (generic, current):
        res = least_squares(residuals, inside(u0), bounds=(lo, hi), method="trf", x_scale=1.0, diff_step=1e-4,
                            max_nfev=400 * len(fields))
        if best is None or res.cost < best.cost:
            best = res
    fitted = make(best.x)
    rounded = {f: (round(getattr(fitted, f), 4) if f.startswith("eff_") or f in LINEAR_FIELDS
                   else float(f"{getattr(fitted, f):.4g}")) for f in fields}
    out = dataclasses.replace(spec, **rounded)
    return out, _rms(out, items, cores)


def _rms(spec: CPUSpec, items: list[tuple[object, float]], cores: int = 1) -> float:
    """Root mean square of log(predicted / measured) over ``items`` ((graph, seconds)) on ``cores`` threads."""
    return float(math.sqrt(sum(math.log(_predict(g, spec, cores) / t) ** 2 for g, t in items) / len(items)))


def calibrate(out_path: str | Path | None = None, quick: bool = False, rounds: int | None = None,
              progress: bool | None = None) -> CPUSpec:
    """Measure this machine and write a ``cpu/host`` preset YAML; returns the spec.

    ``out_path``: where to write (default ``user_preset_dir() / "cpu/host.yaml"``, which then overrides the
    shipped ``cpu/host``). ``quick``: fewer/smaller measurements (a few seconds; for tests). ``rounds``: how many
    times the single-thread measurements are repeated, each quantity keeping its median (default
    :data:`CALIBRATION_ROUNDS`, 1 when ``quick``). On glibc the calling process keeps glibc's raised malloc
    thresholds afterwards (:func:`keep_freed_memory`). ``progress``: a bar over the measurement phases on stderr
    (None: when stderr is a terminal, see :func:`hwsim.functional.show_progress`).
    """
    from mapping.trace import trace

    if rounds is None:
        rounds = 1 if quick else CALIBRATION_ROUNDS
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise HwsimError(f"calibration rounds must be a positive integer, got {rounds!r}")
    # the output path is checked (its folder created) before a minute of measuring, not after
    path = check_output_path(out_path if out_path is not None else user_preset_dir() / "cpu" / "host.yaml",
                             "calibrated preset", (".yaml", ".yml"))
    torch = _torch()
    keep_freed_memory()  # measure the allocator's steady state, as the model describes (see KEEP_FREED_MEMORY)
    chains = [(model.eval(), shape) for model, shape in _chains()]
    caches = _Caches.of_host()
    parallel = _ncpus() > 1
    phase = _Phases(rounds * _round_phases(quick) + 2 + len(FIT_GROUPS)
                    + (_parallel_phases(quick) if parallel else 0) + 1, progress)
    try:
        with _threads(1):
            raw = _median_rounds([_measure_round(quick, caches, chains, phase, f"round {r + 1}/{rounds}: ")
                                  for r in range(rounds)])
            phase("tracing the synthetic layers")
            measured = [_Measured(kind, args, shape, trace(_module(kind, args).eval(), shape), t)
                        for (kind, args, shape), t in zip(_synthetic(quick), raw["layers"])]
            chain_graphs = [trace(m, shape) for m, shape in chains]
            spec, notes = _calibrate_single(raw, caches, measured, list(zip(chain_graphs, raw["chains"])), phase)
            notes[0] = (f"single-thread figures: median of {rounds} measurement round{'s' if rounds > 1 else ''}; "
                        + notes[0])
            if parallel:
                spec, more = _calibrate_parallel(spec, quick, measured, chain_graphs, phase)
                notes += more
        phase("writing the preset")
        header = "\n".join("# " + line for line in [
            f"cpu/host: measured by `hwsim calibrate{' --quick' if quick else ''}` on "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"machine: {_cpu_model()}, {_ncpus()} CPUs, nominal {_cpu_mhz()} MHz (/proc/cpuinfo), "
            f"torch {torch.__version__}, numpy {np.__version__}",
            "method: hwsim/cpu/calibrate.py (torch fp32 / numpy micro-benchmarks, best of many short repeats);",
            "caches from /sys/devices/system/cpu/cpu0/cache; clock_hz is the effective clock implied by the",
            "measured peak with fma_per_cycle = 2. Power (not measurable here): AMD EPYC 9555 (Zen 5) 360 W TDP / 64",
            "cores per core; DRAM 20 pJ/bit (Horowitz, ISSCC 2014); idle power of a VM's share unknown (0).",
            *notes,
        ])
        save_spec(spec, path, header=header)
    finally:
        phase.close()
    return spec


def _ncpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _calibrate_single(raw: dict[str, object], caches: _Caches, measured: list[_Measured],
                      chains: list[tuple[object, float]],
                      phase: Callable[[str], None] = _no_phase) -> tuple[CPUSpec, list[str]]:
    """The single-thread spec from one set of measurements (:func:`_median_rounds` of :func:`_measure_round`) and
    the cache sizes they were sized by: machine figures taken as measured, kernel groups fitted on the synthetic
    layers, then ``layer_overhead_s`` on the synthetic chains (traced graph, seconds)."""
    lanes_bits = simd_bits_of_host()
    best = max(raw["gemm_flops"], raw["conv_flops"])
    clock = best / (lanes_bits // 32 * FMA_PIPES_X86 * 2)
    l1, l2, l2_per_core, l3_sysfs = caches.l1, caches.l2, caches.l2_per_core, caches.l3
    l3, bw_l2, bw_l3, bw_dram = raw["l3"], raw["bw_l2"], raw["bw_l3"], raw["bw_dram"]
    overhead, view, w_reorder = raw["overhead"], raw["view"], raw["w_reorder"]
    spec = CPUSpec(
        name="cpu/host", clock_hz=float(clock), cores=_ncpus(), simd_bits=lanes_bits,
        fma_per_cycle=float(FMA_PIPES_X86), l1d_bytes=int(l1), l2_bytes=int(l2), l3_bytes=int(l3),
        l2_per_core=bool(l2_per_core), l2_bw_bytes_s=float(bw_l2), l3_bw_bytes_s=float(bw_l3),
        dram_bw_bytes_s=float(bw_dram), ram_bytes=_ram_bytes(), flash_bytes=0, flash_bw_bytes_s=0.0,
        layer_overhead_s=float(overhead), overhead_view_s=float(f"{view:.4g}"),
        gemm_conv_max_input_elements=TORCH_GEMM_CONV_MAX_INPUT_ELEMENTS,
        pointwise_gemm_max_threads=TORCH_POINTWISE_GEMM_MAX_THREADS, parallel_grain_elements=TORCH_GRAIN_SIZE,
        reorder_activations=TORCH_ONEDNN_REORDERS, weight_reorder_bw_bytes_s=float(f"{w_reorder:.4g}"),
        **HOST_POWER,
    )
    notes = [f"measured: torch.mm {raw['gemm_flops'] / 1e9:.1f} GFLOP/s, 3x3 conv 192ch 28x28 "
             f"{raw['conv_flops'] / 1e9:.1f} GFLOP/s (1 thread); copy bandwidth L2 {bw_l2 / 1e9:.1f} GB/s; "
             f"weight-stream (torch.mv) read bandwidth L3 {bw_l3 / 1e9:.1f}, DRAM {bw_dram / 1e9:.1f} GB/s; "
             f"effective L3 {l3 / 2**20:.0f} MiB of {l3_sysfs / 2**20:.0f} MiB (sysfs); "
             f"tiny-layer overhead {overhead * 1e6:.1f} us; channel slice (view) {view * 1e6:.2f} us; "
             f"conv weight reorder {w_reorder / 1e9:.1f} GB/s"]
    fits = []
    for kinds, fields in FIT_GROUPS:
        phase(f"fitting {', '.join(fields)}")
        items = [(m.graph, m.seconds) for m in measured if m.kind in kinds]
        spec, rms = _fit(spec, fields, items)
        vals = ", ".join(f"{f} {getattr(spec, f):.4g}" for f in fields)
        fits.append(f"{vals} (rms log error {rms:.3f} on {len(items)} synthetic layers)")
    notes += ["fitted: " + f for f in fits]
    isolated = spec.layer_overhead_s
    phase("fitting layer_overhead_s")
    spec, rms = _fit(spec, ("layer_overhead_s",), chains)
    notes.append(f"fitted on {len(chains)} synthetic layer chains: layer_overhead_s {spec.layer_overhead_s * 1e6:.1f} us "
                 f"(isolated tiny layer {isolated * 1e6:.1f} us; rms log error {rms:.3f})")
    return spec, notes


def _parallel_phases(quick: bool) -> int:
    """Phases of :func:`_calibrate_parallel` (when no all-thread process is set aside)."""
    return 3 + (1 if quick else PARALLEL_PROCESSES)


def _calibrate_parallel(spec: CPUSpec, quick: bool, measured: list[_Measured],
                        chain_graphs: list[object], phase=_no_phase) -> tuple[CPUSpec, list[str]]:
    """:data:`PARALLEL_FIELDS` fitted on the synthetic conv layers timed again on all threads, then
    ``parallel_overhead_s`` on the synthetic chains (traced graphs, order of :func:`_chains`) timed on all threads
    in the same processes (:func:`_parallel_layer_times`), as ``layer_overhead_s`` is on one thread."""
    n = _ncpus()
    phase(f"{n} threads: large conv")
    t1 = _peak_flops(True, clock="wall")["conv_s"]
    kinds = ("conv", "im2col", "pointwise", "depthwise", "grouped")
    with _threads(n):
        t2 = _peak_flops(True, clock="wall")["conv_s"]
    layers = [m for m in measured if m.kind in kinds]
    times, chain_times, seen = _parallel_layer_times(kinds, quick, n, phase=phase)
    items = list(zip((m.graph for m in layers), times))
    probe = [(m.seconds, t) for m, t in zip(layers, times) if (m.kind, m.args, m.shape) == PROBE_LAYER]
    phase(f"fitting {', '.join(PARALLEL_FIELDS)}")
    spec, rms = _fit(spec, PARALLEL_FIELDS, items, cores=n)
    where = "this process" if quick else f"median over {seen['processes']} fresh processes"
    notes = [f"{n} threads: large 3x3 conv speed-up {t1 / t2:.2f}; fitted on {len(items)} synthetic conv layers "
             f"({where}): parallel_eff {spec.parallel_eff:.3f}, parallel_flops_half {spec.parallel_flops_half:.3g} "
             f"(rms log error {rms:.3f})"]
    chains = list(zip(chain_graphs, chain_times))
    spec = dataclasses.replace(spec, parallel_overhead_s=0.0)
    phase("fitting parallel_overhead_s")
    rms0 = _rms(spec, chains, n)
    spec, rms = _fit(spec, ("parallel_overhead_s",), chains, cores=n)
    notes.append(f"fitted on {len(chains)} synthetic layer chains on {n} threads (same processes): "
                 f"parallel_overhead_s {spec.parallel_overhead_s * 1e6:.2f} us per layer (rms log error {rms:.3f}; "
                 f"{rms0:.3f} without it)")
    apart = (f"no all-thread process ran with its threads sharing a last-level cache (every core-to-core round trip "
             f"above {SHARED_LLC_MAX_S * 1e9:.0f} ns): the {n}-thread figures describe threads placed apart; "
             "calibrate again later")
    if seen["none_close"]:
        warnings.warn("calibration: " + apart, stacklevel=2)
    if seen["round_trips_s"]:
        trips = seen["round_trips_s"]
        notes.append(f"core-to-core round trip (hwsim.cpu.cores) {min(trips) * 1e9:.0f}-{max(trips) * 1e9:.0f} ns over "
                     f"the all-thread processes; {seen['set_aside']} set aside for round trips above "
                     f"{SPLIT_FACTOR:g}x the shortest (threads placed apart)"
                     + ("; WARNING: " + apart if seen["none_close"] else ""))
    (cin, cout, _, _), (_, _, h, w) = PROBE_LAYER[1:]
    notes += [f"machine-state probe ({cin}->{cout} im2col conv, {h}x{w}): 1 thread {probe[0][0] * 1e6:.1f} us, {n} threads "
              f"{probe[0][1] * 1e6:.1f} us"] if probe else []
    return spec, notes


def probe_time(threads: int) -> float:
    """Median time in s of :data:`PROBE_LAYER` on ``threads`` threads, in this process."""
    with _threads(threads):
        return _time_layer(*PROBE_LAYER, quick=False)


def _time_parallel(kinds: tuple[str, ...], quick: bool, n: int) -> dict[str, list[float]]:
    """Median time of every synthetic layer of ``kinds`` (``times``, the order of :func:`_synthetic`) and of every
    synthetic chain (``chains``, the order of :func:`_chains`) on ``n`` threads, in this process."""
    chains = [(model.eval(), shape) for model, shape in _chains()]
    with _threads(n):
        return {"times": [_time_layer(kind, args, shape, quick) for kind, args, shape in _synthetic(quick, kinds)],
                "chains": _time_chains(chains, quick)}


def _parallel_child(kinds: tuple[str, ...], n: int) -> dict[str, object]:
    """One all-thread calibration process: the layer and chain times and the core-to-core round trip (s) just
    before and just after them (:func:`hwsim.cpu.cores.round_trip_s`; None where it cannot be measured)."""
    before = round_trip_s()
    out = _time_parallel(kinds, False, n)
    return {**out, "round_trip_s": [before, round_trip_s()]}


def _same_placement(runs: list[dict[str, object]]) -> list[dict[str, object]]:
    """The processes whose threads ran as close together as the machine allows (:func:`hwsim.cpu.cores.threads_close`
    on their round trips before and after)."""
    return [r for r, close in zip(runs, threads_close([r["round_trip_s"] for r in runs])) if close]


def _parallel_layer_times(kinds: tuple[str, ...], quick: bool, n: int,
                          phase=_no_phase) -> tuple[list[float], list[float], dict[str, object]]:
    """All-thread layer times and chain times (each the median over PARALLEL_PROCESSES fresh processes of its
    median in a process) and what the processes saw (``round_trips_s``, ``processes``, ``set_aside``).

    On a shared virtual machine a whole process runs its parallel regions fast or slow: the hypervisor places the
    virtual CPUs on cores that share the last-level cache or on different chiplets, for tens of seconds at a time
    (:mod:`hwsim.cpu.cores`; measured here with benchmarks/bench_host_stability.py: a small im2col conv on 2 threads
    59-148 us across processes, 81-90 us on one thread). Each process measures the core-to-core round trip before
    and after its layers; processes that ran split apart (:func:`_same_placement`) are set aside and replaced, up
    to PARALLEL_PROCESSES x 3 processes in all: the preset describes the machine with its cores together. The
    host validation pools its nets over fresh processes too and reports both placements. ``quick``: this process
    only."""
    if quick:
        phase(f"{n} threads: synthetic layers and chains")
        out = _time_parallel(kinds, quick, n)
        return out["times"], out["chains"], {"round_trips_s": [], "processes": 1, "set_aside": 0, "none_close": False}
    runs: list[dict[str, object]] = []
    while len(runs) < 3 * PARALLEL_PROCESSES and len(_same_placement(runs)) < PARALLEL_PROCESSES:
        if len(runs) >= PARALLEL_PROCESSES and isinstance(phase, _Phases):  # a process set aside: one more
            phase.more(1)
        phase(f"{n} threads: process {len(runs) + 1} (synthetic layers and chains)")
        out = subprocess.run([sys.executable, "-m", "hwsim.cpu.calibrate", "--parallel-child", str(n),
                              ",".join(kinds)], capture_output=True, text=True, check=False,
                             env={**os.environ, **KEEP_FREED_MEMORY})
        if out.returncode != 0:
            raise HwsimError(f"calibration child process failed: {out.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    close = _same_placement(runs)
    kept = close or runs  # none ran with its threads close: keep them all, and say so in the preset header
    info = {"round_trips_s": [t for r in runs for t in r["round_trip_s"] if t is not None],
            "processes": len(kept), "set_aside": len(runs) - len(kept), "none_close": not close}
    med = _median_rounds([{"times": r["times"], "chains": r["chains"]} for r in kept])
    return med["times"], med["chains"], info


def _ram_bytes() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 2**33


if __name__ == "__main__":  # the all-thread timing child of _parallel_layer_times
    if len(sys.argv) == 4 and sys.argv[1] == "--parallel-child":  # started with KEEP_FREED_MEMORY in its environment
        print(json.dumps(_parallel_child(tuple(sys.argv[3].split(",")), int(sys.argv[2]))))
    else:
        raise SystemExit("usage: python -m hwsim.cpu.calibrate --parallel-child THREADS KIND[,KIND...]")
