"""hwsim.kernels.binary against an independent exact integer reference (numpy int64 loops)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from hwsim.kernels import _binary_gemm as G
from hwsim.kernels import binary as B


def ref_conv_int(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups, pad=0) -> np.ndarray:
    """Direct int64 convolution with an explicit border value ``pad`` (no im2col, no packing)."""
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.full((n, c, h + 2 * ph, wd + 2 * pw), pad, dtype=np.int64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, cout, oh, ow), dtype=np.int64)
    og = cout // groups
    for o in range(cout):
        g = o // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j].astype(np.int64))
    return out


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), k=st.integers(1, 200), seed=st.integers(0, 2**31))
def test_xnor_gemm_matches_integer_dot(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, (m, k))
    w = rng.integers(0, 2, (n, k))
    ref = (2 * a - 1) @ (2 * w - 1).T
    pa, pw = B.pack_bits(a), B.pack_bits(w)
    assert np.array_equal(B.xnor_gemm(pa, pw, k), ref)
    assert np.array_equal(B.xnor_gemm_parallel(pa, pw, k), ref)


def test_pack_bits_layout_and_alignment():
    bits = np.zeros((3, 70), dtype=np.uint8)
    bits[0, 0] = bits[1, 63] = bits[2, 64] = bits[2, 69] = 1
    p = B.pack_bits(bits)
    assert p.dtype == np.uint64 and p.shape == (3, 2) and p.ctypes.data % 64 == 0
    assert p[0, 0] == 1 and p[1, 0] == 1 << 63 and p[2, 1] == 1 | (1 << 5) and p[2, 0] == 0


conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "groups": st.sampled_from([1, 2, 3]), "cg": st.integers(1, 5), "og": st.integers(1, 3),
    "h": st.integers(3, 9), "w": st.integers(3, 9), "k": st.sampled_from([1, 2, 3]), "stride": st.sampled_from([1, 2]),
    "pad": st.integers(0, 2), "dil": st.sampled_from([1, 2]), "pad_value": st.sampled_from([0.0, 1.0, -1.0]),
    "seed": st.integers(0, 2**31)})


def _fit(c):
    """Grow H, W so the (dilated) kernel fits the padded input."""
    need = c["dil"] * (c["k"] - 1) + 1 - 2 * c["pad"]
    c["h"], c["w"] = max(c["h"], need), max(c["w"], need)


@settings(max_examples=40, deadline=None)
@given(c=conv_cases)
def test_binary_conv_matches_reference(c):
    rng = np.random.default_rng(c["seed"])
    cin, cout = c["groups"] * c["cg"], c["groups"] * c["og"]
    _fit(c)
    x_bits = rng.integers(0, 2, (c["n"], cin, c["h"], c["w"])).astype(np.uint8)
    w = rng.choice([-1, 1], (cout, c["cg"], c["k"], c["k"]))
    args = ((c["stride"],) * 2, (c["pad"],) * 2, (c["dil"],) * 2, c["groups"])
    got = B.binary_conv2d(x_bits, w, *args, pad_value=c["pad_value"])
    ref = ref_conv_int(2 * x_bits.astype(np.int64) - 1, w, *args, pad=int(c["pad_value"]))
    assert np.array_equal(got, ref)


@settings(max_examples=30, deadline=None)
@given(xb=st.integers(2, 4), wb=st.integers(2, 4), c=conv_cases)
def test_kbit_conv_decomposed_equals_native_equals_reference(xb, wb, c):
    rng = np.random.default_rng(c["seed"])
    cin, cout = c["groups"] * c["cg"], c["groups"] * c["og"]
    _fit(c)
    q = rng.integers(0, 2**xb, (c["n"], cin, c["h"], c["w"]))
    w = 2 * rng.integers(0, 2**wb, (cout, c["cg"], c["k"], c["k"])) - (2**wb - 1)
    args = ((c["stride"],) * 2, (c["pad"],) * 2, (c["dil"],) * 2, c["groups"])
    ref = ref_conv_int(q, w, *args, pad=0)
    assert np.array_equal(B.kbit_conv2d(q, xb, w, wb, *args, decomposed=True), ref)
    assert np.array_equal(B.kbit_conv2d(q, xb, w, wb, *args, decomposed=False), ref)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_weight_planes_reconstruct(bits):
    w = np.arange(-(2**bits - 1), 2**bits, 2)
    planes = B.weight_planes(w, bits)
    assert np.array_equal(sum((2 * p.astype(np.int64) - 1) * 2**k for k, p in enumerate(planes)), w)


def test_threshold_and_pool():
    rng = np.random.default_rng(0)
    acc = rng.integers(-20, 20, (2, 3, 4, 4))
    thr = np.sort(rng.integers(-20, 20, (3, 3)), axis=1)
    ref = (acc[:, :, None] >= thr[None, :, :, None, None]).sum(axis=2)
    assert np.array_equal(B.threshold(acc, thr), ref)
    bits = rng.integers(0, 2, (2, 3, 5, 5)).astype(np.uint8)
    pooled = B.max_pool_codes(bits, (2, 2), (2, 2))
    ref = bits[:, :, 0:4:2, 0:4:2] | bits[:, :, 1:5:2, 0:4:2] | bits[:, :, 0:4:2, 1:5:2] | bits[:, :, 1:5:2, 1:5:2]
    assert np.array_equal(pooled, ref)  # max of ±1 is an OR of bits


def test_bad_packed_operands():
    a = B.pack_bits(np.ones((2, 10)))
    with pytest.raises(ValueError):
        B.xnor_gemm(a, B.pack_bits(np.ones((2, 100))), 10)
    with pytest.raises(ValueError):
        B.xnor_gemm(a, a, 65)


# ----------------------------------------------------------------------------- register-tiled kernel paths
def _int64_reference(a_bits: np.ndarray, w_bits: np.ndarray) -> np.ndarray:
    return (2 * a_bits.astype(np.int64) - 1) @ (2 * w_bits.astype(np.int64) - 1).T


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 3 * G.MR + 1), n=st.integers(1, 2 * G.NP + 3), k=st.integers(1, 1100),
       seed=st.integers(0, 2**31))
def test_tiled_gemm_edges_and_tails(m, n, k, seed):
    """Row blocks and panels overlapping at the edges (M, N not multiples of the tile), operands
    smaller than a tile, K not a multiple of 64 or 512: serial and parallel drivers against int64."""
    rng = np.random.default_rng(seed)
    a, w = rng.integers(0, 2, (m, k)), rng.integers(0, 2, (n, k))
    ref = _int64_reference(a, w)
    pa, pw = B.pack_bits(a), B.pack_bits(w)
    assert np.array_equal(G.gemm(pa, pw, k), ref)
    assert np.array_equal(G.gemm(pa, pw, k, parallel=True), ref)
    assert np.array_equal(B.xnor_gemm(pa, pw, k), ref)


@pytest.mark.parametrize("m,n,k", [(G.MR, G.NP, 512), (37, 70, 4097), (300, 33, 63), (2 * G.MR, 5 * G.NP, 1537),
                                   (3, 40, 200)])
def test_tiled_gemm_larger_shapes_and_prepacked_weights(m, n, k):
    rng = np.random.default_rng(m * n + k)
    a, w = rng.integers(0, 2, (m, k)), rng.integers(0, 2, (n, k))
    ref = _int64_reference(a, w)
    pa, pw = B.pack_bits(a), B.pack_bits(w)
    panels = B.pack_gemm_weights(pw)
    assert np.array_equal(B.xnor_gemm(pa, pw, k), ref)
    assert np.array_equal(B.xnor_gemm_parallel(pa, pw, k), ref)
    assert np.array_equal(B.xnor_gemm(pa, panels, k), ref)  # fewer than MR rows: the scalar path
    assert np.array_equal(B.xnor_gemm_parallel(pa, panels, k), ref)


def test_prepacked_weights_checked():
    with pytest.raises(ValueError, match="2-D uint64"):
        B.pack_gemm_weights(np.ones((4, 2), dtype=np.int64))
    panels = B.pack_gemm_weights(B.pack_bits(np.ones((4, 100))))
    with pytest.raises(ValueError, match="words per row"):
        B.xnor_gemm(B.pack_bits(np.ones((8, 300))), panels, 300)


@pytest.mark.parametrize("cin,cout,hw,stride,pad,dil,groups,pad_value", [
    (64, 40, 7, 1, 1, 1, 1, 0.0), (65, 33, 6, 2, 1, 1, 1, 0.0), (130, 8, 5, 1, 2, 2, 1, -1.0),
    (128, 70, 9, 2, 0, 1, 2, 0.0), (63, 36, 4, 1, 1, 1, 3, 1.0), (200, 16, 3, 1, 1, 1, 1, 0.0)])
def test_binary_conv_multiword_channels(cin, cout, hw, stride, pad, dil, groups, pad_value):
    """Channel counts around and above one 64-bit word, strides, dilation, groups, the three border
    values: the implicit GEMM on channel-packed activations against the direct int64 convolution."""
    rng = np.random.default_rng(cin + cout + hw)
    x = rng.integers(0, 2, (2, cin, hw, hw)).astype(np.uint8)
    w = rng.choice([-1, 1], (cout, cin // groups, 3, 3))
    args = ((stride,) * 2, (pad,) * 2, (dil,) * 2, groups)
    ref = ref_conv_int(2 * x.astype(np.int64) - 1, w, *args, pad=int(pad_value))
    assert np.array_equal(B.binary_conv2d(x, w, *args, pad_value=pad_value), ref)
    assert np.array_equal(B.binary_conv2d(x, w, *args, pad_value=pad_value, parallel=True), ref)
    packed = B.pack_conv_weights(w.astype(np.float32), groups)  # packed once, reused (a network's layer)
    for _ in range(2):
        assert np.array_equal(B.binary_conv2d(x, packed, *args, pad_value=pad_value), ref)
    assert np.array_equal(B.binary_conv2d(x.astype(np.float32) * 3, packed, *args, pad_value=pad_value,
                                          parallel=True), ref)  # nonzero = bit 1, any dtype


@pytest.mark.parametrize("n,cin,cout,h,w,stride", [(1, 64, 64, 8, 8, 1), (3, 70, 48, 5, 7, 1), (2, 64, 17, 9, 4, 2),
                                                   (1, 3, 16, 3, 3, 1)])
def test_binary_conv_nchw_tile_edges(n, cin, cout, h, w, stride):
    """The NCHW-storing tile (8 positions x 16 channels on AVX-512): positions a multiple of 8 in one
    image (register transposition), tiles across images and fewer than 8 positions (element stores),
    channel counts not a multiple of the panel (overlapping last panel), zero-padding classes."""
    rng = np.random.default_rng(n * cin + h)
    x = rng.integers(0, 2, (n, cin, h, w)).astype(np.uint8)
    wt = rng.choice([-1, 1], (cout, cin, 3, 3)).astype(np.int64)
    args = ((stride,) * 2, (1, 1), (1, 1), 1)
    ref = ref_conv_int(2 * x.astype(np.int64) - 1, wt, *args)
    got = B.binary_conv2d(x, B.pack_conv_weights(wt), *args)
    assert got.dtype == np.int32 and got.flags.c_contiguous and np.array_equal(got, ref)


@pytest.mark.parametrize("h, w", [(4, 5), (8, 8), (9, 11)])
def test_pack_channels_one_pass_matches_numpy(h, w):
    """Channel packing with the border, from uint8 0/1, other nonzero values, int8, bool and float32;
    maps under 64 pixels (masked IR blocks), of exactly 64 and over 64 (overlapping last block)."""
    from hwsim.kernels import _binary_conv as BC

    rng = np.random.default_rng(5)
    for c, pad_bit in [(3, 0), (64, 1), (70, 1), (130, 0)]:
        bits = rng.integers(0, 2, (2, c, h, w)).astype(np.uint8)
        full = np.full((2, h + 2, w + 4, (c + 63) // 64 * 64), 0, np.uint8)
        full[..., :c] = pad_bit
        full[:, 1:h + 1, 2:w + 2, :c] = bits.transpose(0, 2, 3, 1)
        ref = np.packbits(full, axis=-1, bitorder="little").view("<u8").reshape(2, h + 2, w + 4, -1)
        for x in (bits, bits * np.uint8(7), bits.astype(np.int8) * np.int8(-3), bits.astype(bool), bits.astype(np.float32)):
            assert np.array_equal(BC.pack_channels(x, (1, 2), pad_bit), ref)


def test_binary_conv_bad_groups():
    with pytest.raises(ValueError, match="groups"):
        B.binary_conv2d(np.zeros((1, 6, 4, 4), np.uint8), np.ones((4, 4, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="packed for groups=1"):
        B.binary_conv2d(np.zeros((1, 8, 4, 4), np.uint8), B.pack_conv_weights(np.ones((4, 8, 3, 3))), groups=2)
    with pytest.raises(ValueError, match="groups"):
        B.pack_conv_weights(np.ones((5, 4, 3, 3)), groups=2)


def test_tiled_kernel_uses_the_vector_popcount():
    """The compiled driver's assembly holds ``vpopcntq`` on AVX-512 VPOPCNTDQ targets and LLVM's
    ``vpshufb`` look-up popcount otherwise."""
    drive = njit(G.drive.py_func)  # a fresh compilation: Numba cannot show the assembly of cached code
    a, w = B.pack_bits(np.ones((G.MR, 70))), B.pack_bits(np.ones((G.NP, 70)))
    panels, starts = G.pack_panels(w)
    c = np.empty((G.MR, G.NP), np.int32)
    drive(a.reshape(-1), np.arange(G.MR) * 2, G.MR, np.arange(2), panels, starts, 2, c.reshape(-1), G.NP, 70)
    assert np.all(c == 70)
    asm = "\n".join(drive.inspect_asm().values())
    if G.has_avx512_popcount():
        assert "vpopcntq" in asm and "zmm" in asm
    else:
        assert "vpshufb" in asm and "vpopcntq" not in asm


_AVX2_SCRIPT = """
import numpy as np
from numba import njit
from hwsim.kernels import _binary_gemm as G, binary as B
assert (G.MR, G.NV) == (4, 1) and G.NCHW_NV is None, (G.MR, G.NV, G.NCHW_NV)
rng = np.random.default_rng(0)
# K of 31 words (one full byte-accumulator chunk), 32, 62 and 63 + 5 bits (chunk boundaries, a partial last chunk)
for m, n, k in [(3, 5, 70), (9, 11, 700), (40, 17, 64), (5, 9, 64 * 31), (6, 8, 64 * 32), (4, 10, 64 * 62),
                (7, 12, 64 * 62 + 5)]:
    a, w = rng.integers(0, 2, (m, k)), rng.integers(0, 2, (n, k))
    assert np.array_equal(B.xnor_gemm(B.pack_bits(a), B.pack_bits(w), k), (2 * a - 1) @ (2 * w - 1).T)
for k in (64 * 31, 64 * 93):  # every bit differs: each byte accumulator reaches 31 * 8 = 248 before its flush
    a, w = np.ones((4, k), np.int64), np.zeros((8, k), np.int64)
    assert np.array_equal(B.xnor_gemm(B.pack_bits(a), B.pack_bits(w), k), np.full((4, 8), -k))
for cin in (70, 256):  # 18 and 36 words per output (the latter over one byte-accumulator chunk)
    x = rng.integers(0, 2, (1, cin, 6, 6)).astype(np.uint8)
    wt = rng.choice([-1, 1], (9, cin, 3, 3))
    got = B.binary_conv2d(x, wt, (1, 1), (1, 1))
    xs = np.pad(2 * x.astype(np.int64) - 1, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.einsum("nchwij,ocij->nohw", np.lib.stride_tricks.sliding_window_view(xs, (3, 3), axis=(2, 3)), wt)
    assert np.array_equal(got, ref)
from hwsim.kernels import _binary_conv as BC
for h, w in [(4, 5), (9, 11)]:  # the IR channel packer: masked and whole 64-pixel blocks
    bits = rng.integers(0, 2, (2, 64, h, w)).astype(np.uint8)
    padded = np.pad(bits.transpose(0, 2, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    assert np.array_equal(BC.pack_channels(bits, (1, 1), 0), np.packbits(padded, axis=-1, bitorder="little").view("<u8"))
drive = njit(G.drive.py_func)
panels, starts = G.pack_panels(B.pack_bits(np.ones((G.NP, 70))))
c = np.empty((G.MR, G.NP), np.int32)
drive(B.pack_bits(np.ones((G.MR, 70))).reshape(-1), np.arange(G.MR) * 2, G.MR, np.arange(2), panels, starts, 2,
      c.reshape(-1), G.NP, 70)
assert np.all(c == 70)
asm = "\\n".join(drive.inspect_asm().values())
assert "vpshufb" in asm and "vpopcntq" not in asm and "zmm" not in asm
print("avx2-ok")
"""

_HASWELL = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,+movbe,+pclmul,"
            "+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt")


@pytest.mark.slow
def test_avx2_fallback_compiles_and_is_exact(tmp_path):
    """The AVX2 build (tile 4 x 1, ``vpshufb`` popcount), compiled for Haswell in a fresh process
    (runs on this AVX-512 host: Haswell code is a subset), bit-exact against integer references."""
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_HASWELL, NUMBA_CACHE_DIR=str(tmp_path))
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and "avx2-ok" in res.stdout, res.stderr[-2000:]


def test_host_uarch_table():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _host

    assert _host.uarch("AuthenticAMD", 26, 2) == "zen5"
    assert _host.uarch("AuthenticAMD", 25, 0x11) == "zen4"
    assert _host.uarch("GenuineIntel", 6, 0x8F) == "golden-cove"
    assert _host.uarch("GenuineIntel", 6, 0x3C) == "unknown"
    assert set(_host.ISSUE_RATES) >= {"zen4", "zen5", "golden-cove"}
