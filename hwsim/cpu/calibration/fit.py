"""Fitting spec fields to measured times: bounded least squares of the log error of the CPU cost model
(:mod:`hwsim.cpu.cost`) over traced synthetic layers or chains."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from hwsim.cpu.cost import layer_cost, placement
from hwsim.cpu.spec import BYTES_PER_ELEMENT, CPUSpec
from mapping.analysis import peak_live_elements

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Measured:
    kind: str
    args: tuple
    shape: tuple
    graph: object
    seconds: float  # median at one thread


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
