"""Packed VNNI weights, built once per weight array and reused while its contents are unchanged.

``int8.gemm_int`` and ``int8.conv2d_int`` take raw weights on every call (their public signatures),
but a network calls them with the same weight arrays again and again, and reordering the weights
into the K-quad layouts of ``_vnni_gemm`` / ``_vnni_conv`` costs about one pass over them (on a
256 -> 256 3x3 layer at 14x14 that is a third of the VNNI compute time). So the packed form is kept
in a small LRU cache keyed by the array's address, shape, strides, dtype and the packing's own
parameters, next to a *copy* of the weights it was built from: a hit is used only if the current
weights are byte-for-byte equal to that copy (:func:`_same`, the C library's ``memcmp``, far cheaper
than the packing), so an array changed in place, or a new one at a freed address, is repacked: never a
stale result.
"""
from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict

import numpy as np

from hwsim.cache import on_clear

MAX_ENTRIES = 64  # packed weight arrays kept (a ResNet-50 has 53 convolutions and 1 classifier)
MAX_BYTES = 128 * 2**20  # and at most this many bytes of copies + packed forms (ResNet-50: 25.6 M weights, about 3 x 25 MB here)

_CACHE: OrderedDict = OrderedDict()  # key -> (copy of the weight bytes, payload, bytes counted)
_SIZE = [0]  # bytes counted over _CACHE
_LOCK = threading.Lock()  # the network's layers may run on several threads (evaluate, sweeps)


def _libc_memcmp():
    """The C library's ``memcmp`` through ctypes (None where there is no such library, e.g. Windows)."""
    try:
        fn = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError, TypeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    return fn


_MEMCMP = _libc_memcmp()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """``a == b`` for two flat, contiguous uint8 arrays: the C library's ``memcmp`` (a byte comparison that
    reads each array once, 2.3x faster than ``np.array_equal``'s elementwise ``==`` and reduction on 512 KB
    here, a fifth of a 64 x 512 x 1000 VNNI GEMM's time before), else numpy's comparison."""
    if a.shape != b.shape:
        return False
    if _MEMCMP is not None and a.flags.c_contiguous and b.flags.c_contiguous:
        return a.nbytes == 0 or _MEMCMP(a.ctypes.data, b.ctypes.data, a.nbytes) == 0
    return bool(np.array_equal(a, b))


def _nbytes(payload) -> int:
    """Bytes of the arrays in a payload (tuples and dicts included)."""
    total = 0
    for p in payload:
        if isinstance(p, np.ndarray):
            total += p.nbytes
        elif isinstance(p, (tuple, list)):
            total += _nbytes(p)
        elif isinstance(p, dict):
            total += _nbytes(list(p.values()))
    return total


def packed(tag: str, w: np.ndarray, params: tuple, make):
    """``make()`` (a tuple of arrays derived from ``w`` and ``params`` alone, possibly with a dict
    that the caller fills with further packings of them), cached as described in the module
    docstring. The returned arrays must not be modified by the caller. The byte budget counts each
    entry as it was made (packings added to its dict later are not counted)."""
    key = (tag, w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str, params)
    flat = np.ascontiguousarray(w).reshape(-1).view(np.uint8)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and _same(hit[0], flat):
            _CACHE.move_to_end(key)
            return hit[1]
    payload = make()  # outside the lock: another thread packing the same weights makes the same payload
    copy = flat.copy()
    with _LOCK:
        if key in _CACHE:
            _drop(key)
        _CACHE[key] = (copy, payload, copy.nbytes + _nbytes(payload))
        _SIZE[0] += _CACHE[key][2]
        while len(_CACHE) > 1 and (len(_CACHE) > MAX_ENTRIES or _SIZE[0] > MAX_BYTES):
            _drop(next(iter(_CACHE)))
    return payload


def _drop(key) -> None:
    _SIZE[0] -= _CACHE.pop(key)[2]


@on_clear
def clear() -> None:
    """Drop every cached packing (also done by ``hwsim.clear_caches()``)."""
    with _LOCK:
        _CACHE.clear()
        _SIZE[0] = 0
