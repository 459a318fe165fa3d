"""hwsim fp32 conv2d vs torch F.conv2d on every ResNet-18 conv layer (224x224, batch 1).

Single thread on both sides: ``torch.set_num_threads(1)`` and hwsim's serial kernel
(``parallel=False``); the CPU time / wall time ratio of the torch calls is recorded (about 1 when
torch ran on one thread undisturbed, below 1 when the process was descheduled). Timings alternate
between the two implementations call by call (so both see the same machine load) and go
round-robin over the layers (so a burst of load is spread over all of them), after warm-up.
The headline statistic is the median of the repeats; the minimum (the least disturbed call) is
recorded too, with the 1-minute load average, because a shared machine makes medians noisy.
GFLOP/s counts 2 * MACs of the useful output (no bias, as in ResNet-18). Both sides allocate their
output on every call. The host (CPU model, ISA extensions, measured clock) and its one-thread fp32
FMA roofline come from ``benchmarks/_host.py``; each layer reports the fraction of that roofline
both sides reach in their least disturbed call (``*_fraction_of_fma_roofline``, from the minimum
times).

Usage::

    python benchmarks/bench_conv.py [--repeats 101] [--out benchmarks/results/conv_vs_torch.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import _host  # noqa: E402

from hwsim.kernels import fp32  # noqa: E402


@dataclass(frozen=True, slots=True)
class ConvLayer:
    """One conv layer of ResNet-18 (torchvision layout), input side ``hw`` square."""

    name: str
    cin: int
    cout: int
    hw: int
    k: int
    stride: int
    padding: int
    groups: int = 1

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.padding - self.k) // self.stride + 1

    @property
    def flop(self) -> int:
        return 2 * self.cout * (self.cin // self.groups) * self.k * self.k * self.out_hw ** 2


def resnet18_layers() -> list[ConvLayer]:
    """The 20 conv layers of ResNet-18 at 224x224 (He et al., CVPR'16, Table 1; torchvision)."""
    layers = [ConvLayer("conv1", 3, 64, 224, 7, 2, 3)]
    layers += [ConvLayer(f"layer1.{b}.conv{i}", 64, 64, 56, 3, 1, 1)
               for b in (0, 1) for i in (1, 2)]
    for stage, (cin, cout, hw) in enumerate([(64, 128, 56), (128, 256, 28), (256, 512, 14)], 2):
        half = hw // 2
        layers += [
            ConvLayer(f"layer{stage}.0.conv1", cin, cout, hw, 3, 2, 1),
            ConvLayer(f"layer{stage}.0.conv2", cout, cout, half, 3, 1, 1),
            ConvLayer(f"layer{stage}.0.downsample", cin, cout, hw, 1, 2, 0),
            ConvLayer(f"layer{stage}.1.conv1", cout, cout, half, 3, 1, 1),
            ConvLayer(f"layer{stage}.1.conv2", cout, cout, half, 3, 1, 1),
        ]
    assert len(layers) == 20
    return layers


def mobilenet_v2_depthwise_layers() -> list[ConvLayer]:
    """Some 3x3 depthwise layers of MobileNetV2 at 224x224 (Sandler et al., CVPR'18, Table 2:
    expanded widths 32, 96, 144, 192, 384, 576, 960). Reported apart from the ResNet-18 summary."""
    shapes = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (384, 14, 1),
              (576, 14, 1), (960, 7, 1)]
    return [ConvLayer(f"dw{c}@{hw}/{s}", c, c, hw, 3, s, 1, groups=c) for c, hw, s in shapes]


def efficientnet_b0_depthwise5x5_layers() -> list[ConvLayer]:
    """The 5x5 depthwise layers of EfficientNet-B0 at 224x224 (Tan & Le, ICML'19, Table 1: MBConv6 k5x5
    stages at 56/28, 14 and 7, expanded widths 144, 240, 480, 672, 1152). Reported apart."""
    shapes = [(144, 56, 2), (240, 28, 1), (480, 14, 1), (672, 14, 1), (672, 14, 2), (1152, 7, 1)]
    return [ConvLayer(f"dw5x5-{c}@{hw}/{s}", c, c, hw, 5, s, 2, groups=c) for c, hw, s in shapes]


def prepare(layer: ConvLayer, rng: np.random.Generator):
    """Random input/weights for ``layer``; return (torch call, hwsim call, max relative error)."""
    cg = layer.cin // layer.groups
    x = rng.standard_normal((1, layer.cin, layer.hw, layer.hw), dtype=np.float32)
    w = rng.standard_normal((layer.cout, cg, layer.k, layer.k), dtype=np.float32)
    w *= np.float32(1.0 / math.sqrt(cg * layer.k * layer.k))
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    s, p, g = layer.stride, layer.padding, layer.groups
    ref = F.conv2d(tx, tw, None, s, p, 1, g).numpy()
    ours = fp32.conv2d(x, w, None, s, p, 1, g)
    rel_err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    return (lambda: F.conv2d(tx, tw, None, s, p, 1, g),
            lambda: fp32.conv2d(x, w, None, s, p, 1, g), rel_err)


def measure(layers: list[ConvLayer], repeats: int, rng: np.random.Generator, peak_gflops: float,
            warmup: int = 3) -> list[dict]:
    """Time every layer ``repeats`` times, round-robin over the layers (so a burst of machine
    load is spread over all layers instead of hitting one), torch and hwsim alternating
    call by call with their order swapped every round."""
    calls = [prepare(layer, rng) for layer in layers]
    for f_torch, f_ours, _ in calls:
        for _ in range(warmup):
            f_torch()
            f_ours()
    t_torch = np.zeros((len(layers), repeats))
    t_ours = np.zeros((len(layers), repeats))
    cpu = np.zeros(len(layers))
    for r in range(repeats):
        for i, (f_torch, f_ours, _) in enumerate(calls):
            if r % 2:
                t0 = time.perf_counter()
                f_ours()
                t_ours[i, r] = time.perf_counter() - t0
            c0, t0 = time.process_time(), time.perf_counter()
            f_torch()
            t_torch[i, r] = time.perf_counter() - t0
            cpu[i] += time.process_time() - c0
            if not r % 2:
                t0 = time.perf_counter()
                f_ours()
                t_ours[i, r] = time.perf_counter() - t0
    rows = []
    for i, layer in enumerate(layers):
        med_t, med_o = float(np.median(t_torch[i])), float(np.median(t_ours[i]))
        min_t, min_o = float(t_torch[i].min()), float(t_ours[i].min())
        rows.append({
            **asdict(layer), "out_hw": layer.out_hw, "gflop": layer.flop / 1e9,
            "torch_ms": med_t * 1e3, "hwsim_ms": med_o * 1e3,
            "torch_gflops": layer.flop / med_t / 1e9, "hwsim_gflops": layer.flop / med_o / 1e9,
            "ratio": med_t / med_o,
            "torch_ms_min": min_t * 1e3, "hwsim_ms_min": min_o * 1e3, "ratio_min": min_t / min_o,
            "torch_fraction_of_fma_roofline": layer.flop / min_t / 1e9 / peak_gflops,
            "hwsim_fraction_of_fma_roofline": layer.flop / min_o / 1e9 / peak_gflops,
            "max_rel_err": calls[i][2], "torch_cpu_per_wall": float(cpu[i] / t_torch[i].sum()),
        })
    return rows


INT8_CONVS = [(64, 56), (128, 28), (256, 14)]  # ResNet-18 3x3 / stride-1 layers: (channels, map side)
INT8_GEMMS = [(64, 512, 1000), (256, 1024, 256)]  # (N, K, O): a batch-64 classifier, a square block


def measure_int8(repeats: int, rng: np.random.Generator, vnni_gops: float) -> list[dict]:
    """The integer kernels of the CPU int8 path and the IMC exact path (``hwsim.kernels.int8``:
    uint8 activations with a zero point, int8 weights, exact int32 accumulators) in GOP/s (2 ops
    per MAC, minimum of ``repeats`` calls) and as a fraction of the host's VNNI peak. On AVX-512 VNNI
    hosts they run on the ``vpdpbusd`` kernels (``_vnni_gemm``, ``_vnni_conv``), which pack the
    weights once per weight array (``_vnni_pack``): ``gops`` reuses one weight array (as a network
    does), ``gops_first_call`` passes a fresh copy each call, so that every call packs."""
    from hwsim.kernels import int8
    rows = []
    cases = [("conv2d_int", c, hw) for c, hw in INT8_CONVS] + [("gemm_int",) + g for g in INT8_GEMMS]
    for case in cases:
        if case[0] == "conv2d_int":
            _, c, hw = case
            x = rng.integers(0, 256, (1, c, hw, hw)).astype(np.uint8)
            w = rng.integers(-128, 128, (c, c, 3, 3)).astype(np.int8)
            fn, ops, shape = (lambda w, x=x: int8.conv2d_int(x, w, (1, 1), (1, 1), x_zero_point=3),
                              2 * c * c * 9 * hw * hw, f"{c}->{c} 3x3 @{hw}")
        else:
            _, n, k, o = case
            x = rng.integers(0, 256, (n, k)).astype(np.uint8)
            w = rng.integers(-128, 128, (o, k)).astype(np.int8)
            fn, ops, shape = (lambda w, x=x: int8.gemm_int(x, w, x_zero_point=3), 2 * n * k * o, f"{n}x{k} @ {k}x{o}")
        fn(w)
        best = min(_timed_call(fn, w) for _ in range(repeats))
        cold = min(_timed_call(fn, wc) for wc in [w.copy() for _ in range(repeats)])
        rows.append({"kernel": case[0], "shape": shape, "gops": ops / best / 1e9,
                     "fraction_of_vnni_roofline": ops / best / 1e9 / vnni_gops if vnni_gops else None,
                     "gops_first_call": ops / cold / 1e9,
                     "fraction_of_vnni_roofline_first_call": ops / cold / 1e9 / vnni_gops if vnni_gops else None})
    return rows


def _timed_call(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=101)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "conv_vs_torch.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    host = _host.detect()
    load_before = os.getloadavg()[0]
    rows = measure(resnet18_layers(), args.repeats, rng, host.fp32_roofline_gflops)
    ratios = np.array([r["ratio"] for r in rows])
    ratios_min = np.array([r["ratio_min"] for r in rows])
    worst = rows[int(np.argmin(ratios))]
    extra = measure(mobilenet_v2_depthwise_layers(), args.repeats, rng, host.fp32_roofline_gflops)
    extra5 = measure(efficientnet_b0_depthwise5x5_layers(), args.repeats, rng, host.fp32_roofline_gflops)
    int8_rows = measure_int8(min(args.repeats, 21), rng, host.int8_vnni_roofline_gops)
    result = {
        "description": "fp32 conv2d, hwsim (Numba, serial) vs torch F.conv2d (1 thread); "
                       "ratio = torch time / hwsim time (>1: hwsim faster)",
        "host": host.as_dict(),
        "machine": {"processor": host.model,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "numba": numba.__version__, "numpy": np.__version__},
        "repeats": args.repeats,
        "statistic": "median; layers round-robin, torch/hwsim calls alternated",
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0],
                          "cpus": os.cpu_count()},
        "layers": rows,
        "geomean_ratio": float(np.exp(np.log(ratios).mean())),
        "min_ratio": float(ratios.min()), "min_ratio_layer": worst["name"],
        "geomean_ratio_of_min_times": float(np.exp(np.log(ratios_min).mean())),
        "min_ratio_of_min_times": float(ratios_min.min()),
        "total_torch_ms": float(sum(r["torch_ms"] for r in rows)),
        "total_hwsim_ms": float(sum(r["hwsim_ms"] for r in rows)),
        "extra_depthwise_layers": extra,
        "extra_depthwise_geomean_ratio":
            float(np.exp(np.mean([np.log(r["ratio"]) for r in extra]))),
        "extra_depthwise_min_ratio": float(min(r["ratio"] for r in extra)),
        "extra_depthwise5x5_layers": extra5,
        "extra_depthwise5x5_geomean_ratio_of_min_times":
            float(np.exp(np.mean([np.log(r["ratio_min"]) for r in extra5]))),
        "int8_kernels": int8_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'layer':24s} {'shape':>22s} {'torch GF/s':>10s} {'hwsim GF/s':>10s} {'ratio':>6s}"
          f" {'r(min)':>6s} {'rel.err':>8s} {'cpu/wall':>8s}")
    for r in rows + extra + extra5:
        shape = f"{r['cin']}->{r['cout']} {r['k']}x{r['k']}/{r['stride']} @{r['hw']}"
        print(f"{r['name']:24s} {shape:>22s} {r['torch_gflops']:10.1f} {r['hwsim_gflops']:10.1f}"
              f" {r['ratio']:6.2f} {r['ratio_min']:6.2f} {r['max_rel_err']:8.1e}"
              f" {r['torch_cpu_per_wall']:8.2f}")
    for r in int8_rows:
        frac, frac1 = r["fraction_of_vnni_roofline"], r["fraction_of_vnni_roofline_first_call"]
        print(f"{r['kernel']:10s} {r['shape']:>22s} {r['gops']:8.1f} GOP/s"
              + (f" = {100 * frac:.1f} % of the VNNI roofline" if frac else "")
              + f"; packing every call {r['gops_first_call']:.1f} GOP/s"
              + (f" = {100 * frac1:.1f} %" if frac1 else ""))
    print(f"{host.model} ({host.uarch}, {host.clock_ghz:.2f} GHz, fp32 roofline "
          f"{host.fp32_roofline_gflops:.0f} GFLOP/s)")
    print(f"geomean ratio {result['geomean_ratio']:.3f}, min ratio {result['min_ratio']:.3f} "
          f"({result['min_ratio_layer']}); from min times: geomean "
          f"{result['geomean_ratio_of_min_times']:.3f}, "
          f"min {result['min_ratio_of_min_times']:.3f}; "
          f"load {load_before:.1f}; total torch {result['total_torch_ms']:.2f} ms, "
          f"hwsim {result['total_hwsim_ms']:.2f} ms; depthwise (not in the summary) geomean "
          f"{result['extra_depthwise_geomean_ratio']:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
