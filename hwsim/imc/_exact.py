"""The exact integer accumulators of the IMC target where no ADC can clip: ``Σ q_x·w`` of a conv or a linear layer,
in float32 when every partial sum stays below 2^24 (exact in any summation order), else on the int8 kernels' float64
path (exact below 2^53: inputs and weights of <= 16 bits). Used by :mod:`hwsim.imc.numerics` and
:mod:`hwsim.imc.functional`.
"""
from __future__ import annotations

import numpy as np

from hwsim.imc import xbar as xb
from hwsim.kernels import fp32 as fp
from hwsim.kernels import int8 as ik

__all__ = ["exact_conv", "exact_linear", "conv_exact", "absmax", "operand", "int_dtype"]


def int_dtype(bits: int, signed: bool):
    """Smallest operand dtype of the integer kernels holding ``bits``-bit values."""
    if signed:
        return np.int8 if bits <= 8 else (np.int16 if bits <= 16 else np.int32)
    return np.uint8 if bits <= 8 else (np.int16 if bits <= 15 else np.int32)


def operand(xq: np.ndarray, bits: int, signed: bool) -> tuple[np.ndarray, int]:
    """Integer inputs in the narrowest dtype of the int8 kernels, with a zero point for unsigned 16-bit values
    (stored as ``x − 2^15`` in int16, zero point −2^15): the kernels' float64 path stays exact (span·span·K < 2^53)."""
    if bits <= 8 or (signed and bits <= 16) or bits <= 15:
        return xq.astype(int_dtype(bits, signed), copy=False), 0
    return (xq.astype(np.int32) - 2**15).astype(np.int16), -(2**15)


def exact_conv(xq: np.ndarray, qw: np.ndarray, x_bits: int, x_signed: bool, w_bits: int, attrs,
               parallel: bool = False) -> np.ndarray:
    """Exact integer conv accumulators [N, O, OH, OW] (:func:`conv_exact`: float32 below 2^24, else the int8
    kernels' float64 implicit GEMM, exact below 2^53, which holds for inputs and weights of <= 16 bits)."""
    return conv_exact(xq, absmax(xq), x_bits, x_signed, qw.astype(int_dtype(w_bits, True), copy=False), attrs,
                       attrs.groups, parallel)


def absmax(a: np.ndarray) -> int:
    """max |a| of an integer array (0 if empty), without an |a| copy."""
    return max(-int(a.min()), int(a.max())) if a.size else 0


def conv_exact(xq: np.ndarray, xmax: int, x_bits: int, x_signed: bool, w: np.ndarray, attrs, groups: int,
                parallel: bool) -> np.ndarray:
    """``Σ q_x·w`` over every window (padded taps 0) [N, O, OH, OW], exact. Float32 implicit GEMM
    (:func:`hwsim.kernels.fp32.conv2d`) when every product and partial sum is an integer below 2^24 in magnitude
    (``max|q_x| · max_o Σ_k |w[o, k]| < 2^24``: float32 holds them exactly in any summation order, fused or not);
    otherwise the int8 kernels' exact float64 path (:func:`hwsim.kernels.int8.conv2d_int`)."""
    wsum = int(np.abs(w.reshape(w.shape[0], -1), dtype=np.int64).sum(axis=1).max()) if w.size else 0
    if xmax * wsum < 2**24:
        return fp.conv2d(xq.astype(np.float32), w.astype(np.float32), None, attrs.stride, attrs.padding,
                         attrs.dilation, groups, parallel)
    xd, zx = operand(xq, x_bits, x_signed)
    return ik.conv2d_int(xd, w, attrs.stride, attrs.padding, attrs.dilation, groups, x_zero_point=zx,
                         parallel=parallel)


def exact_linear(xq: np.ndarray, qw: np.ndarray) -> np.ndarray:
    """Exact integer GEMM [M, K] x [N, K] -> [M, N] float64."""
    return xb.exact_gemm(xq, qw.T)
