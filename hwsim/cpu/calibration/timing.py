"""The measurement loops of ``hwsim calibrate``: :func:`time_call`, the machine's peak throughput, bandwidths and
fixed overheads, the probe layers' times, and one round of all single-thread measurements."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np

from hwsim.cpu.calibration.host import TORCH_ONEDNN_REORDERS, _Caches
from hwsim.cpu.calibration.workloads import _module, _synthetic, _torch
from hwsim.cpu.spec import BYTES_PER_ELEMENT

# Machine capabilities (peak FLOP/s, bandwidths, the dispatch floor of a tiny layer) are the best of many
# calls: the call no other process disturbed. Layers and layer chains, whose fitted efficiencies and
# overheads predict the time a user will see, are the median of their calls, the statistic the host
# validation (benchmarks/bench_cpu_vs_host.py) compares against.
LAYER_STAT = "median"

# glibc malloc hands a freed buffer above its (dynamic) mmap threshold, and a free heap top above its trim
# threshold, back to the OS: the next call page-faults that memory in again (what that cost on the calibration
# machine: docs/targets/cpu-calibration.md). The cost model describes the steady state of a runtime whose allocator
# keeps freed buffers (jemalloc / tcmalloc, which PyTorch's CPU performance guide recommends, or glibc with these
# thresholds), so calibration measures in that state and the host validation runs its nets in it. Environment
# variables for child processes; :func:`keep_freed_memory` sets the same thresholds in a running process.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters


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


def _time_layer(kind: str, args: tuple, shape: tuple, quick: bool, clock: str = "wall") -> float:
    torch = _torch()
    m = _module(kind, args).eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        return time_call(lambda: m(x), repeats=7 if quick else 41, warmup=3, clock=clock, stat=LAYER_STAT)


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
