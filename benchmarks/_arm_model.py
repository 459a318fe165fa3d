"""The per-layer runtime model and its fit, shared by the Cortex-A (``bench_arm_boards.py``) and Cortex-M
(``_arm_mcu.py``) parts of the Arm board benchmark.

Per layer, :func:`terms` takes the parts of :func:`hwsim.cpu.cost.runtime_layer_terms` that do not depend on the
fitted parameters; :func:`predict` is a vectorised copy of the formula of ``hwsim.cpu.cost._runtime_layer_cost``
(tests/test_cpu_arm.py checks the two agree); :func:`fit` chooses the parameters by least squares on log error.
"""
from __future__ import annotations

import math

import numpy as np
from _arm_board_data import NET_KW
from scipy.optimize import least_squares

from hwsim.cpu.cost import placement, runtime_layer_terms
from hwsim.cpu.simulate import fp32_peak_activation_bytes
from hwsim.cpu.spec import BYTES_PER_ELEMENT, CPUSpec

# ----------------------------------------------------------------------------- graphs and per-layer terms
_GRAPHS: dict[str, object] = {}


def graph(net: str):
    """The traced, batch-norm-folded graph of a zoo net (traced once per run)."""
    if net not in _GRAPHS:
        import mapping
        import nets
        from mapping.passes.fold_bn import fold_bn

        _GRAPHS[net] = fold_bn(mapping.trace(nets.get(net, **NET_KW.get(net, {})), nets.info(net).input_shape))
    return _GRAPHS[net]


def terms(spec: CPUSpec, net: str) -> np.ndarray:
    """Per layer of ``net`` on ``spec`` (n = spec.cores threads): rows (gemm_s, dw+vec_s, t_m, streaming, counted,
    winograd gemm_s, GEMM share and other share of the busiest thread, counted / clock) of
    :func:`hwsim.cpu.cost.runtime_layer_terms` (the parts that do not depend on the fitted parameters)."""
    g = graph(net)
    act = fp32_peak_activation_bytes(g, spec.runtime) * spec.bytes_per_element // BYTES_PER_ELEMENT
    place = placement(g, spec, act, spec.cores)
    rows = []
    for node in g.nodes:
        if node.op.name == "RESHAPE":
            continue
        bpe = spec.bytes_per_element
        sizes = (sum(math.prod(g.shape_of(i)) for i in node.inputs) * bpe, math.prod(node.shape) * bpe,
                 sum(g.params[k].size for k in node.params.values()) * bpe)
        t, t_m, streaming, _ = runtime_layer_terms(g, node, spec, place, spec.cores, sizes)
        wino = t.algo.startswith("winograd")
        rows.append((0.0 if wino else t.gemm_s, t.dw_s + t.vec_s, t_m, float(streaming), float(t.algo != "fused"),
                     t.gemm_s if wino else 0.0, *t.split.shares(spec.cores), float(t.algo != "fused") / spec.clock_hz))
    return np.asarray(rows)


def predict(tm: np.ndarray, theta: np.ndarray, n: int) -> float:
    """Latency in s from per-layer terms (of :func:`terms` on ``n`` threads) and parameters (eff_gemm, eff_dw,
    layer_cycles, contention, thread_s, eff_wino): the formula of hwsim.cpu.cost._runtime_layer_cost."""
    eg, ed, ls, kappa, ts, ew = theta
    t_c = ((tm[:, 0] / eg + tm[:, 5] / (ew or eg)) * tm[:, 6] + tm[:, 1] / ed * tm[:, 7]) * (1.0 + (n - 1) * kappa)
    body = np.where(tm[:, 3] > 0, t_c + tm[:, 2], np.maximum(t_c, tm[:, 2]))
    return float(body.sum() + ls * tm[:, 8].sum() + (n - 1) * ts * tm[:, 4].sum())


# ----------------------------------------------------------------------------- fitting
# parameter order: eff_gemm, eff_dw, layer_cycles, contention, thread_s, eff_wino (Cortex-A only: the M runtimes run
# no Winograd conv, eff_wino stays 0 = eff_gemm there)
LO, HI = np.array([0.02, 0.02, 0.0, 0.0, 0.0, 0.02]), np.array([1.0, 1.0, 2e6, 1.0, 2e-4, 1.0])
THETA0 = np.array([0.5, 0.3, 2e4, 0.1, 2e-6, 0.5])
SCALE = np.array([0.1, 0.1, 1e4, 0.1, 1e-6, 0.1])


def fit(samples: list[tuple[np.ndarray, int, float]], contention: float = THETA0[3], thread_s: float = 0.0) -> np.ndarray:
    """Parameters minimising Σ log(pred / measured)^2 over (terms, threads, measured s) samples. With fewer than two
    thread counts, contention and thread_s are not identifiable (a 4-thread-only board's level trades against its
    scaling): they are fixed to ``contention`` and ``thread_s``."""
    multi = len({n for _, n, _ in samples}) > 1
    wino = any(tm[:, 5].any() for tm, _, _ in samples)
    free = [0, 1, 2] + ([3, 4] if multi else []) + ([5] if wino else [])
    def full(x):
        th = np.array([x[0], x[1], x[2], contention, thread_s, 0.0])
        th[free] = x
        return th

    def resid(x):
        return [math.log(predict(tm, full(x), n) / s) for tm, n, s in samples]

    res = least_squares(resid, THETA0[free], bounds=(LO[free], HI[free]), x_scale=SCALE[free], loss="soft_l1",
                        f_scale=0.2)
    return full(res.x)


def theta_dict(theta: np.ndarray, boards: list[str]) -> dict:
    """The entry of hwsim/cpu/runtime/fitted.py for parameters ``theta`` fitted on ``boards``."""
    return dict(eff_gemm=round(float(theta[0]), 4), eff_dw=round(float(theta[1]), 4),
                layer_cycles=float(f"{theta[2]:.4g}"), contention=round(float(theta[3]), 4),
                thread_s=float(f"{theta[4]:.4g}"), eff_wino=round(float(theta[5]), 4),
                fitted_on=", ".join(sorted(boards)))
