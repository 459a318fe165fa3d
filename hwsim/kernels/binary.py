"""Binary (xnor-popcount) and k-bit integer kernels of the XNOR engine.

Bit encoding (FINN/QONNX convention): **bit 1 = +1, bit 0 = -1**. Rows of K bits are packed
little-endian into uint64 words (element ``k`` is bit ``k % 64`` of word ``k // 64``); the tail of
the last word is 0 in both operands. For two packed ±1 rows the dot product is
``2 * popcount(xnor(a, w)) - K`` where the popcount runs over the K valid bits; the xnor of the
zero tail bits is 1, so ``64 * words - K`` is subtracted from the raw count.

Zero padding of a binary convolution (torch semantics, value 0 is not a bit) uses a per-row
validity mask: ``dot = 2 * popcount(xnor(a, w) & m) - popcount(m)``.

GEMM and convolution run on the register-tiled LLVM micro-kernel of ``_binary_microkernel.py``
(``llvm.ctpop.v8i64``: ``vpopcntq zmm`` on AVX-512 VPOPCNTDQ hosts, LLVM's ``vpshufb`` look-up
popcount on AVX2 hosts) driven by ``_binary_gemm.py``; convolutions are implicit GEMMs over
channel-packed activations (``_binary_conv.py``). With fewer than ``MR`` rows (a matrix-vector
product) a scalar 1x4 / 2x2 register-blocked loop (``llvm.ctpop.i64`` through
:func:`numba.extending.intrinsic`) is used instead.

k-bit layers (``kbit_matmul_decomposed``): unsigned k_a-bit codes ``q = sum_m 2^m b_m`` and odd
k_w-bit weights ``w = sum_k 2^k t_k`` (t, s in {-1,+1}, ``s_m = 2 b_m - 1``) give
``sum_n w_n q_n = ( sum_{m,k} 2^(m+k) D_mk + (2^k_a - 1) * sum_n w_n ) / 2`` with ``D_mk`` the
xnor-popcount dot of activation plane m with weight plane k (Sun et al., arXiv 2106.09886,
encoding decomposition). Padding with code 0 is exact without a mask (its planes are all -1 and the
``sum_n w_n`` term cancels them).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from hwsim.kernels import _binary_conv as BC
from hwsim.kernels import _binary_gemm as G

__all__ = [
    "popcount64", "aligned_empty", "pack_bits", "words_for", "pack_gemm_weights", "xnor_gemm", "xnor_gemm_parallel",
    "xnor_gemm_masked", "im2col", "pack_conv_weights", "binary_conv2d", "binary_linear", "kbit_matmul_native",
    "kbit_matmul_decomposed", "pack_kbit_weights", "kbit_matmul_packed", "kbit_conv2d", "threshold", "max_pool_codes",
    "weight_planes",
]


# ----------------------------------------------------------------------------- popcount intrinsic
@intrinsic
def popcount64(typingctx, x):
    """Population count of a 64-bit word via ``llvm.ctpop.i64``."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return sig, codegen


# ----------------------------------------------------------------------------- packing
def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(n + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n].view(dtype).reshape(shape)


def words_for(k: int) -> int:
    """uint64 words needed for K bits."""
    return (int(k) + 63) // 64


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array (K elements) into ``ceil(K/64)`` little-endian uint64 words
    (64-byte aligned, tail bits 0)."""
    bits = np.asarray(bits)
    k = bits.shape[-1]
    nw = words_for(k)
    lead = bits.shape[:-1]
    padded = np.zeros(lead + (nw * 64,), dtype=np.uint8)
    padded[..., :k] = bits != 0
    packed = np.packbits(padded, axis=-1, bitorder="little")
    out = aligned_empty(lead + (nw,), np.uint64)
    out[...] = packed.view("<u8").reshape(lead + (nw,))
    return out


# ----------------------------------------------------------------------------- GEMM kernels
@njit(cache=True, inline="always")
def _dot1(a, w, i, j, nw):
    s = 0
    for t in range(nw):
        s += popcount64(~(a[i, t] ^ w[j, t]))
    return s


@njit(cache=True, inline="always")
def _block2x2(a, w, i, j, nw, k, tail, out):
    # 2x2 register block: each loaded word is used twice (about 2x the throughput of the plain loop)
    s0 = 0
    s1 = 0
    s2 = 0
    s3 = 0
    for t in range(nw):
        x0 = a[i, t]
        x1 = a[i + 1, t]
        y0 = w[j, t]
        y1 = w[j + 1, t]
        s0 += popcount64(~(x0 ^ y0))
        s1 += popcount64(~(x0 ^ y1))
        s2 += popcount64(~(x1 ^ y0))
        s3 += popcount64(~(x1 ^ y1))
    out[i, j] = 2 * (s0 - tail) - k
    out[i, j + 1] = 2 * (s1 - tail) - k
    out[i + 1, j] = 2 * (s2 - tail) - k
    out[i + 1, j + 1] = 2 * (s3 - tail) - k


@njit(cache=True, inline="always")
def _row_pair(a, w, i, nw, k, tail, out):
    n = w.shape[0]
    n2 = n - n % 2
    for j in range(0, n2, 2):
        _block2x2(a, w, i, j, nw, k, tail, out)
    if n2 < n:
        out[i, n - 1] = 2 * (_dot1(a, w, i, n - 1, nw) - tail) - k
        out[i + 1, n - 1] = 2 * (_dot1(a, w, i + 1, n - 1, nw) - tail) - k


@njit(cache=True, inline="always")
def _row_single(a, w, i, nw, k, tail, out):
    # one row (a matrix-vector product): 1x4 register block, each input word used four times
    n = w.shape[0]
    n4 = n - n % 4
    for j in range(0, n4, 4):
        s0 = 0
        s1 = 0
        s2 = 0
        s3 = 0
        for t in range(nw):
            x = a[i, t]
            s0 += popcount64(~(x ^ w[j, t]))
            s1 += popcount64(~(x ^ w[j + 1, t]))
            s2 += popcount64(~(x ^ w[j + 2, t]))
            s3 += popcount64(~(x ^ w[j + 3, t]))
        out[i, j] = 2 * (s0 - tail) - k
        out[i, j + 1] = 2 * (s1 - tail) - k
        out[i, j + 2] = 2 * (s2 - tail) - k
        out[i, j + 3] = 2 * (s3 - tail) - k
    for j in range(n4, n):
        out[i, j] = 2 * (_dot1(a, w, i, j, nw) - tail) - k


@njit(cache=True)
def _xnor_gemm_serial(a, w, k, out):
    m, nw = a.shape
    tail = nw * 64 - k
    m2 = m - m % 2
    for i in range(0, m2, 2):
        _row_pair(a, w, i, nw, k, tail, out)
    if m2 < m:
        _row_single(a, w, m - 1, nw, k, tail, out)


@njit(cache=True)
def _xnor_gemm_masked(a, msk, w, out):
    m, nw = a.shape
    n = w.shape[0]
    for i in range(m):
        valid = 0
        for t in range(nw):
            valid += popcount64(msk[i, t])
        for j in range(n):
            s = 0
            for t in range(nw):
                s += popcount64(~(a[i, t] ^ w[j, t]) & msk[i, t])
            out[i, j] = 2 * s - valid


def _check_packed(a: np.ndarray, w: np.ndarray, k: int) -> None:
    if a.dtype != np.uint64 or w.dtype != np.uint64 or a.ndim != 2 or w.ndim != 2:
        raise ValueError(f"packed operands must be 2-D uint64, got {a.dtype}{a.shape} and {w.dtype}{w.shape}")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"packed operands have {a.shape[1]} and {w.shape[1]} words per row")
    if not 0 < k <= 64 * a.shape[1] or k <= 64 * (a.shape[1] - 1):
        raise ValueError(f"K={k} does not fit {a.shape[1]} words")


def pack_gemm_weights(w: np.ndarray) -> G.Panels:
    """Packed weight rows (N, words) arranged once into the column panels the tiled kernel reads;
    pass the result to :func:`xnor_gemm` / :func:`xnor_gemm_parallel` in place of ``w`` to skip
    that step on every call (a few microseconds per 100 KB of weights)."""
    if not isinstance(w, np.ndarray) or w.dtype != np.uint64 or w.ndim != 2:
        raise ValueError(f"packed weights must be a 2-D uint64 array, got {type(w).__name__}")
    return G.panels_of(w)


def xnor_gemm(a: np.ndarray, w: np.ndarray | G.Panels, k: int) -> np.ndarray:
    """±1 dot products of packed rows: ``out[i, j] = sum_k a_ik * w_jk`` (int32, shape (M, N)),
    single-threaded. ``a``: (M, words), ``w``: (N, words) uint64 (or :func:`pack_gemm_weights` of
    it), K valid bits per row (tail bits 0 in both). With ``MR`` rows or more the register-tiled
    micro-kernel (weight panels packed on every call unless given); fewer rows use the scalar
    register-blocked loop."""
    rows = w.rows if isinstance(w, G.Panels) else w
    _check_packed(a, rows, k)
    if a.shape[0] >= G.MR:
        return G.gemm(a, w, int(k))
    out = np.empty((a.shape[0], rows.shape[0]), dtype=np.int32)
    _xnor_gemm_serial(np.ascontiguousarray(a), np.ascontiguousarray(rows), int(k), out)
    return out


def xnor_gemm_parallel(a: np.ndarray, w: np.ndarray | G.Panels, k: int) -> np.ndarray:
    """:func:`xnor_gemm` with the tiles split over Numba's threads (a distinct compiled function)."""
    _check_packed(a, w.rows if isinstance(w, G.Panels) else w, k)
    return G.gemm(a, w, int(k), parallel=True)


def xnor_gemm_masked(a: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    """±1 dot products counting only the taps whose ``mask`` bit is 1 (zero padding)."""
    if mask.shape != a.shape or mask.dtype != np.uint64:
        raise ValueError(f"mask must be uint64 of shape {a.shape}, got {mask.dtype}{mask.shape}")
    _check_packed(a, w, 64 * a.shape[1])
    out = np.empty((a.shape[0], w.shape[0]), dtype=np.int32)
    _xnor_gemm_masked(np.ascontiguousarray(a), np.ascontiguousarray(mask), np.ascontiguousarray(w), out)
    return out


# ----------------------------------------------------------------------------- convolution
def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(x: np.ndarray, kernel, stride, padding, dilation, groups: int, pad: int = 0):
    """Patches of an (N, C, H, W) integer array: returns ``(cols, OH, OW)`` with ``cols`` of shape
    (groups, N*OH*OW, C/groups*kh*kw), rows ordered (n, oh, ow), columns (c, kh, kw) like torch's
    weight layout. The border is filled with ``pad``."""
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kernel} does not fit input {h}x{wd} with padding {padding}")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad) if (ph or pw) else x
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    cg = c // groups
    cols = cols.reshape(n * oh * ow, groups, cg * kh * kw).transpose(1, 0, 2)
    return np.ascontiguousarray(cols), oh, ow


def pack_conv_weights(w_pm1: np.ndarray, groups: int = 1) -> BC.PackedConvWeights:
    """(Cout, C/groups, kh, kw) ±1 weights packed once (rows, GEMM panels, padding-correction sums);
    pass the result to :func:`binary_conv2d` in place of ``w_pm1`` to skip that work on every call
    (reading int64 ±1 weights costs more than the binary GEMM itself on deep layers)."""
    return BC.pack_conv_weights(w_pm1, groups)


def binary_conv2d(x_bits: np.ndarray, w_pm1: np.ndarray | BC.PackedConvWeights, stride=(1, 1), padding=(0, 0),
                  dilation=(1, 1), groups: int = 1, pad_value: float = 0.0, parallel: bool = False) -> np.ndarray:
    """Binary convolution: ``x_bits`` (N, C, H, W) in {0, 1} (bit 1 = +1; any numeric dtype, nonzero
    = 1), ``w_pm1`` (Cout, C/g, kh, kw) in {-1, +1} or its :func:`pack_conv_weights`. Returns the
    int32 ±1 dot products (N, Cout, OH, OW). The border is ``pad_value``: +1, -1, or 0 (taps
    contribute nothing, torch zero padding). An implicit GEMM over channel-packed activations, packed
    from the caller's NCHW layout in one pass with the border (``_binary_conv.py``)."""
    pk = w_pm1 if isinstance(w_pm1, BC.PackedConvWeights) else None
    wshape = pk.shape if pk is not None else getattr(w_pm1, "shape", ())
    if getattr(x_bits, "ndim", 0) != 4 or len(wshape) != 4:
        raise ValueError(f"binary_conv2d: expected a 4-D input and 4-D weights, got {getattr(x_bits, 'shape', '?')} "
                         f"and {wshape}")
    if pk is not None and pk.groups != groups:
        raise ValueError(f"binary_conv2d: weights were packed for groups={pk.groups}, called with groups={groups}")
    n, c, h, wd = x_bits.shape
    cout, cg, kh, kw = wshape
    if c != cg * groups or cout % groups:
        raise ValueError(f"binary_conv2d: input has {c} channels, weights {tuple(wshape)} with groups={groups}")
    oh = BC.out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = BC.out_size(wd, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {(kh, kw)} does not fit input {h}x{wd} with padding {padding}")
    if pk is None:
        pk = BC.pack_conv_weights(w_pm1, groups)
    return BC.conv_packed(x_bits, pk, tuple(stride), tuple(padding), tuple(dilation), float(pad_value), parallel,
                          (oh, ow))


def binary_linear(x_bits: np.ndarray, w_pm1: np.ndarray) -> np.ndarray:
    """``x_bits`` (N, K) in {0, 1}, ``w_pm1`` (Cout, K) in {-1, +1} -> int32 (N, Cout) dot products."""
    return xnor_gemm(pack_bits(x_bits), pack_bits(w_pm1 > 0), x_bits.shape[1])


# ----------------------------------------------------------------------------- k-bit layers
def kbit_matmul_native(x_int: np.ndarray, w_int: np.ndarray) -> np.ndarray:
    """Exact integer product ``x_int @ w_int.T`` (int64) — the native k-bit MVAU. Computed in float64
    (exact: every partial sum is an integer below 2^53, checked)."""
    bound = float(np.abs(x_int).max(initial=0)) * float(np.abs(w_int).max(initial=0)) * x_int.shape[-1]
    if bound >= 2.0**53:
        raise ValueError(f"integer accumulation bound {bound:.3g} exceeds 2^53")
    return np.rint(x_int.astype(np.float64) @ w_int.astype(np.float64).T).astype(np.int64)


def weight_planes(w_int: np.ndarray, bits: int) -> list[np.ndarray]:
    """{-1,+1} planes ``t_k`` (as 0/1 bit arrays, bit 1 = +1) with ``w = sum_k 2^k t_k`` for odd
    ``w`` in [-(2^bits-1), 2^bits-1]."""
    u = (w_int.astype(np.int64) + (2**bits - 1)) // 2
    return [((u >> kk) & 1).astype(np.uint8) for kk in range(bits)]


def pack_kbit_weights(w_int: np.ndarray, w_bits: int) -> tuple[list, np.ndarray]:
    """Odd ``w_bits``-bit weights (N, K) packed once for :func:`kbit_matmul_packed`: the GEMM panels of their ±1
    planes (``w = sum_k 2^k t_k``, :func:`weight_planes`) and ``sum w`` per row (int64, N)."""
    return ([pack_gemm_weights(pack_bits(p)) for p in weight_planes(w_int, w_bits)],
            w_int.astype(np.int64).sum(axis=1))


def kbit_matmul_packed(x_codes: np.ndarray, x_bits: int, planes: list, row_sums: np.ndarray, k: int) -> np.ndarray:
    """``x_codes`` (M, K) unsigned codes < 2^x_bits times odd weights packed by :func:`pack_kbit_weights`, by
    x_bits * w_bits xnor-popcount branches recombined exactly: with ``q = sum_m 2^m q_m`` and bits as ±1 values
    ``s = 2 q_m - 1``, ``2 sum w q = sum_m sum_k 2^(m+k) (s_m . t_k) + (2^x_bits - 1) sum w`` (module docstring).
    int64 (M, N)."""
    acc = np.zeros((x_codes.shape[0], row_sums.shape[0]), dtype=np.int64)
    for m in range(x_bits):
        a = pack_bits((x_codes >> m) & 1)
        for kk, w in enumerate(planes):
            acc += np.int64(2 ** (m + kk)) * xnor_gemm(a, w, k)
    acc += (2**x_bits - 1) * row_sums[None, :]
    if np.any(acc & 1):  # pragma: no cover - algebraic identity
        raise AssertionError("decomposed k-bit recombination is not even")
    return acc // 2


def kbit_matmul_decomposed(x_codes: np.ndarray, x_bits: int, w_int: np.ndarray, w_bits: int) -> np.ndarray:
    """``x_codes`` (M, K) unsigned codes < 2^x_bits times odd weights ``w_int`` (N, K) of w_bits, by
    x_bits * w_bits xnor-popcount branches recombined exactly (:func:`kbit_matmul_packed`). int64 (M, N)."""
    planes, row_sums = pack_kbit_weights(w_int, w_bits)
    return kbit_matmul_packed(x_codes, x_bits, planes, row_sums, x_codes.shape[1])


def kbit_conv2d(x_codes: np.ndarray, x_bits: int, w_int: np.ndarray, w_bits: int, stride=(1, 1),
                padding=(0, 0), dilation=(1, 1), groups: int = 1, decomposed: bool = True) -> np.ndarray:
    """Integer conv of unsigned codes (N, C, H, W) with odd k-bit weights (Cout, C/g, kh, kw), zero
    (code 0) padding; int64 (N, Cout, OH, OW). ``decomposed`` picks the multi-branch binary path,
    otherwise the native integer product."""
    n = x_codes.shape[0]
    cout = w_int.shape[0]
    cols, oh, ow = im2col(x_codes.astype(np.int64, copy=False), w_int.shape[2:], stride, padding, dilation,
                          groups, 0)
    og = cout // groups
    wm = w_int.reshape(groups, og, -1)
    out = np.empty((n * oh * ow, cout), dtype=np.int64)
    for g in range(groups):
        if decomposed:
            out[:, g * og:(g + 1) * og] = kbit_matmul_decomposed(cols[g], x_bits, wm[g], w_bits)
        else:
            out[:, g * og:(g + 1) * og] = kbit_matmul_native(cols[g], wm[g])
    return np.ascontiguousarray(out.reshape(n, oh, ow, cout).transpose(0, 3, 1, 2))


# ----------------------------------------------------------------------------- thresholds, pooling
@njit(cache=True)
def _threshold(acc, thr, out):
    n, c, p = acc.shape
    nt = thr.shape[1]
    for i in range(n):
        for ch in range(c):
            for q in range(p):
                v = acc[i, ch, q]
                cnt = 0
                for j in range(nt):
                    if v >= thr[ch, j]:
                        cnt += 1
                out[i, ch, q] = cnt


def threshold(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Multi-threshold activation (FINN MultiThreshold, comparator >=): for accumulators ``acc``
    (N, C, ...) and per-channel integer thresholds ``thr`` (C, T) return the codes
    ``sum_j [acc >= thr[c, j]]`` (one threshold: a bit, 1 = +1), uint8 up to 255 thresholds, wider above
    (codes 0..T must not wrap: 9-bit and wider activations have 511 and more)."""
    shape = acc.shape
    a = np.ascontiguousarray(acc.reshape(shape[0], shape[1], -1), dtype=np.int64)
    nt = thr.shape[1]
    out = np.empty(a.shape, dtype=np.uint8 if nt <= 255 else np.uint16 if nt <= 65535 else np.int64)
    _threshold(a, np.ascontiguousarray(thr, dtype=np.int64), out)
    return out.reshape(shape)


def max_pool_codes(x: np.ndarray, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode: bool = False):
    """Max pooling of non-negative codes (N, C, H, W) uint8; on bits (bit 1 = +1) this is an OR.
    The border is code 0 (the minimum, so it never wins: same as torch's -inf padding)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation

    def osz(size, k, s, p, d):
        num = size + 2 * p - d * (k - 1) - 1
        o = (-(-num // s) if ceil_mode else num // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        return o

    oh, ow = osz(h, kh, sh, ph, dh), osz(w, kw, sw, pw, dw)
    eh = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - h - ph)
    ew = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - w - pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)))
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            np.maximum(out, patch, out=out)
    return out
