"""Facts about the machine calibration runs on and its PyTorch runtime: read from ``/proc``, ``/sys`` and the
runtime's source, never timed (the timing is :mod:`hwsim.cpu.calibration.timing`)."""
from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

# Host power constants (not measurable without a power meter): AMD EPYC 9555 (Zen 5, 64 cores, 360 W
# TDP, AMD EPYC 9005 series product page) -> 5.6 W per core at full load; a VM's share of the socket's
# idle power is unknown and left at 0; DRAM 20 pJ/bit (Horowitz, ISSCC 2014: 1.3-2.6 nJ per 64-bit access).
HOST_POWER = {"active_power_w_per_core": 360.0 / 64, "idle_power_w": 0.0, "mem_energy_j_per_byte": 1.6e-10}
FMA_PIPES_X86 = 2  # Zen 4/5 and Intel server cores: two vector FMA pipes per core (vendor optimisation guides)

# PyTorch's CPU conv dispatch (aten/src/ATen/native/Convolution.cpp, ``use_mkldnn``): an fp32 conv with
# groups = 1, kernel <= 3x3 and batch 1 whose input has at most 20480 elements runs the native
# im2col + GEMM path instead of oneDNN.
TORCH_GEMM_CONV_MAX_INPUT_ELEMENTS = 20480
# Same function: a 1x1, stride-1, batch-1 conv runs the native GEMM path only on one thread (for more,
# oneDNN), one GEMM per group.
TORCH_POINTWISE_GEMM_MAX_THREADS = 1
# PyTorch's eager fp32 convs on oneDNN copy the NCHW input into oneDNN's channel-blocked layout and the output back
# on every call (ONEDNN_VERBOSE=1 lists a reorder primitive before and after each convolution; what the copies cost
# on the calibration machine: docs/targets/cpu-calibration.md).
TORCH_ONEDNN_REORDERS = True
# Same runtime: the weights, plain OIHW torch tensors, are copied into the conv primitive's blocked layout on every
# call too (ONEDNN_VERBOSE: a weight reorder before each conv); calibration times that copy
# (:func:`hwsim.cpu.calibration.timing._weight_reorder_bw`).
# aten/src/ATen/Parallel.h: at::internal::GRAIN_SIZE = 32768; TensorIterator ops (elementwise, pooling,
# copies) on fewer elements run on the calling thread only.
TORCH_GRAIN_SIZE = 32768


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


def _ncpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _ram_bytes() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 2**33


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
