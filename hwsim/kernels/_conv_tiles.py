"""Micro-kernel dispatch of the convolution driver (``_conv.py``): the largest register tile of a
family that fits the rows left, and the narrow (1-, 2- or 3-vector) tiles of a last column tile.

Numba caches ``_conv.py``'s compiled functions keyed on that file only: after editing this file,
touch ``_conv.py``.
"""
from __future__ import annotations

from numba import njit

from hwsim.kernels import _microkernel as K


@njit(cache=True, inline="always")
def lanes_of(a):
    """Vector lanes of the micro-kernels for ``a``'s dtype (16 float32, 8 float64)."""
    return 64 // a.itemsize


@njit(cache=True)
def _mk_rows(fam, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc):
    """Run the largest micro-kernel of family ``fam`` fitting ``left`` rows; return rows done."""
    if fam == 0:
        if left >= 8:
            K.MK3_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 8
        if left >= 4:
            K.MK3_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        if left >= 2:
            K.MK3_2(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 2
        K.MK3_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    if fam == 1:
        if left >= 6:
            K.MK4_6(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 6
        if left >= 4:
            K.MK4_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        if left >= 2:
            K.MK4_2(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 2
        K.MK4_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    K.MK8_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    return 1


@njit(cache=True)
def _mk_narrow(nv, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc):
    """Run the largest ``nv``-vector micro-kernel (1, 2 or 3 vectors: the narrow last column tile)
    fitting ``left`` rows; return rows done."""
    if nv == 3:
        return _mk_rows(0, left, w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    if nv == 2:
        if left >= 8:
            K.MK2_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 8
        if left >= 4:
            K.MK2_4(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
            return 4
        K.MK2_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 1
    if left >= 8:
        K.MK1_8(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
        return 8
    K.MK1_1(w, a0, k, P, b0, boff, k0, kn, dst, d0, ld, acc)
    return 1
