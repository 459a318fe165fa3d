"""Numba float32 loops for the transformer-era ops: pointwise activations, normalisation, softmax,
reductions and multi-thresholding.

Conventions: arrays are C-contiguous float32 views of fixed rank (the wrappers in ``_ops_fp32``
reshape to them), results go to a preallocated ``out``; scalar parameters arrive as float64.
Transcendentals are evaluated in float64 with libm (``math.erf``, ``math.tanh``, ``math.expm1``,
``math.log1p``) and rounded once to float32, so results are within about one float32 ulp of the
exact value. The ``_elementwise`` exp approximation is not used: alone it is already up to ~2e-7
relative, which composite formulas would add to. Sums for means, variances and softmax
denominators run in float64. Formulas are PyTorch's (``torch.nn`` docs), cited at each op.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

GELU, GELU_TANH, LEAKY_RELU, ELU, MISH, SOFTPLUS, ERF, EXP, LOG, POW, RPOW = range(11)
SUM, MEAN, MAX = range(3)
_LANES = 8  # partial results per row reduction
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


@njit(cache=True, error_model="numpy")
def pointwise(x, out, op, a, b):
    """``out = op(x)`` over flat float32 arrays; ``a``/``b`` are the op's parameters."""
    if op == GELU:  # torch.nn.GELU: x/2 * (1 + erf(x / sqrt(2)))
        for i in range(x.size):
            v = np.float64(x[i])
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT1_2))
    elif op == GELU_TANH:  # torch.nn.GELU(approximate="tanh"): x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        for i in range(x.size):
            v = np.float64(x[i])
            out[i] = 0.5 * v * (1.0 + math.tanh(_SQRT_2_PI * (v + 0.044715 * v * v * v)))
    elif op == LEAKY_RELU:  # torch.nn.LeakyReLU: x if x > 0 else slope * x
        slope = np.float32(a)
        for i in range(x.size):
            out[i] = x[i] if x[i] > 0 else x[i] * slope
    elif op == ELU:  # torch.nn.ELU: x if x > 0 else alpha * (exp(x) - 1)
        for i in range(x.size):
            v = np.float64(x[i])
            out[i] = v if v > 0 else a * math.expm1(v)
    elif op == MISH:  # torch.nn.Mish: x * tanh(log1p(exp(x))) = x * n (n + 2) / (n (n + 2) + 2), n = exp(x)
        for i in range(x.size):
            v = np.float64(x[i])
            if v > 20.0:  # tanh(log1p(exp(x))) == 1 in float64 here; n * n would overflow further on
                out[i] = v
            else:
                n = math.exp(v)
                p = n * (n + 2.0)
                out[i] = v * p / (p + 2.0)
    elif op == SOFTPLUS:  # torch.nn.Softplus: x if beta x > threshold else log1p(exp(beta x)) / beta
        beta, threshold = np.float32(a), np.float32(b)  # torch compares in the input's dtype
        for i in range(x.size):
            bx = x[i] * beta
            out[i] = x[i] if bx > threshold else math.log1p(math.exp(np.float64(bx))) / a
    elif op == ERF:  # torch.erf
        for i in range(x.size):
            out[i] = math.erf(np.float64(x[i]))
    elif op == EXP:  # torch.exp (overflows to inf when stored)
        for i in range(x.size):
            out[i] = math.exp(np.float64(x[i]))
    elif op == LOG:  # torch.log: -inf at 0, NaN below
        for i in range(x.size):
            out[i] = np.log(np.float64(x[i]))
    elif op == POW:  # torch.pow(x, a)
        for i in range(x.size):
            out[i] = np.float64(x[i]) ** a
    else:  # RPOW: torch.pow(a, x)
        for i in range(x.size):
            out[i] = a ** np.float64(x[i])


@njit(cache=True, error_model="numpy")
def prelu(x, w, out):
    """torch.nn.PReLU: ``x if x > 0 else w[c] * x`` on ``[N, C, S]``; ``w`` has C or 1 entries."""
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            wc = w[c if w.size > 1 else 0]
            for i in range(x.shape[2]):
                v = x[n, c, i]
                out[n, c, i] = v if v > 0 else wc * v


@njit(cache=True, error_model="numpy")
def _max_nan(m, v):
    """``max(m, v)`` that propagates NaN (torch.amax): once NaN, nothing compares greater."""
    return v if (v > m or np.isnan(v)) else m


@njit(cache=True, error_model="numpy")
def _row_reduce(row, op):
    """``op`` over a contiguous float32 row in ``_LANES`` independent partial results, so the loop
    vectorises (a single running sum would serialise on the add latency)."""
    n = row.size - row.size % _LANES
    if op == MAX:
        part = np.empty(_LANES, dtype=np.float32)
        part[:] = row[0]
        for j in range(0, n, _LANES):
            for k in range(_LANES):
                part[k] = _max_nan(part[k], row[j + k])
        m = part[0]
        for k in range(1, _LANES):
            m = _max_nan(m, part[k])
        for j in range(n, row.size):
            m = _max_nan(m, row[j])
        return np.float64(m)
    acc = np.zeros(_LANES)
    for j in range(0, n, _LANES):
        for k in range(_LANES):
            acc[k] += row[j + k]
    s = acc.sum()
    for j in range(n, row.size):
        s += row[j]
    return s / row.size if op == MEAN else s


@njit(cache=True, error_model="numpy")
def _moments(x):
    """Mean and biased variance of a flat float32 array, two passes in float64."""
    mean = _row_reduce(x, MEAN)
    q = 0.0
    for i in range(x.size):
        d = x[i] - mean
        q += d * d
    return mean, q / x.size


@njit(cache=True, error_model="numpy")
def layer_norm(x, gamma, beta, eps, out):
    """torch.nn.LayerNorm on rows of ``[M, D]``: ``(x - mean) / sqrt(var + eps) * gamma + beta``
    with the biased variance; ``gamma``/``beta`` have D entries."""
    for m in range(x.shape[0]):
        mean, var = _moments(x[m])
        rstd = 1.0 / math.sqrt(var + eps)
        for i in range(x.shape[1]):
            out[m, i] = (x[m, i] - mean) * rstd * gamma[i] + beta[i]


@njit(cache=True, error_model="numpy")
def group_norm(x, groups, gamma, beta, eps, out):
    """torch.nn.GroupNorm on ``[N, C, S]``: each of ``groups`` channel groups of a sample is normalised
    with its own mean and biased variance, then scaled and shifted per channel."""
    cg = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            mean, var = _moments(x[n, g * cg:(g + 1) * cg].reshape(-1))
            rstd = 1.0 / math.sqrt(var + eps)
            for c in range(g * cg, (g + 1) * cg):
                scale = rstd * gamma[c]
                shift = beta[c] - mean * scale
                for i in range(x.shape[2]):
                    out[n, c, i] = x[n, c, i] * scale + shift


@njit(cache=True, error_model="numpy")
def softmax(x, out, log):
    """Softmax (``log``: log-softmax) along axis 1 of ``[A, D, B]`` (torch.softmax / log_softmax):
    ``exp(x - max) / sum`` and ``x - max - log(sum)``, the sum of exponentials in float64."""
    mx = np.empty(x.shape[2], dtype=np.float32)
    tot = np.empty(x.shape[2], dtype=np.float64)
    for a in range(x.shape[0]):
        xa, oa = x[a], out[a]
        mx[:] = xa[0]
        for d in range(1, x.shape[1]):
            for b in range(x.shape[2]):
                mx[b] = max(mx[b], xa[d, b])
        tot[:] = 0.0
        for d in range(x.shape[1]):
            for b in range(x.shape[2]):
                e = math.exp(xa[d, b] - mx[b])
                oa[d, b] = e
                tot[b] += e
        for d in range(x.shape[1]):
            for b in range(x.shape[2]):
                if log:
                    oa[d, b] = (np.float64(xa[d, b]) - mx[b]) - math.log(tot[b])
                else:
                    oa[d, b] = oa[d, b] / tot[b]


@njit(cache=True, error_model="numpy")
def attention_softmax(s, causal):
    """In-place row softmax of attention scores ``[B, L, S]``; ``causal`` keeps keys ``j <= i`` of
    query ``i`` and zeroes the rest (torch.nn.functional.scaled_dot_product_attention ``is_causal``:
    ``ones(L, S).tril()``, top-left aligned)."""
    for bl in range(s.shape[0]):
        for i in range(s.shape[1]):
            row = s[bl, i]
            n = min(i + 1, s.shape[2]) if causal else s.shape[2]
            mx = row[0]
            for j in range(1, n):
                mx = max(mx, row[j])
            tot = 0.0
            for j in range(n):
                e = math.exp(row[j] - mx)
                row[j] = e
                tot += e
            inv = 1.0 / tot
            for j in range(n):
                row[j] = row[j] * inv
            row[n:] = 0.0


@njit(cache=True, error_model="numpy")
def reduce(x, op, out):
    """``out[a, b] = op(x[a, :, b])`` on ``[A, R, B]`` with R >= 1: torch.sum / torch.mean (summed
    in float64) or torch.amax (NaN propagates)."""
    if x.shape[2] == 1:
        for a in range(x.shape[0]):
            out[a, 0] = _row_reduce(x[a].reshape(-1), op)
        return
    acc = np.empty(x.shape[2], dtype=np.float64)
    for a in range(x.shape[0]):
        xa, oa = x[a], out[a]
        if op == MAX:
            oa[:] = xa[0]
            for r in range(1, x.shape[1]):
                for b in range(x.shape[2]):
                    oa[b] = _max_nan(oa[b], xa[r, b])
        else:
            acc[:] = 0.0
            for r in range(x.shape[1]):
                for b in range(x.shape[2]):
                    acc[b] += xa[r, b]
            div = x.shape[1] if op == MEAN else 1
            for b in range(x.shape[2]):
                oa[b] = acc[b] / div


@njit(cache=True, error_model="numpy")
def multithreshold(x, thresholds, out_scale, out_bias, out):
    """qonnx multithreshold.py: ``out = out_scale * #{t in thresholds[c] : x >= t} + out_bias`` on
    ``[N, C, S]``; ``thresholds`` is ``[C or 1, T]`` (unsorted rows are fine: it counts). The
    affine step runs in float32, as qonnx's numpy code does on float32 inputs."""
    scale, bias = np.float32(out_scale), np.float32(out_bias)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            t = thresholds[c if thresholds.shape[0] > 1 else 0]
            for i in range(x.shape[2]):
                v = x[n, c, i]
                k = 0
                for j in range(t.size):
                    if v >= t[j]:
                        k += 1
                out[n, c, i] = scale * np.float32(k) + bias
