"""fp32 kernels against PyTorch (the reference), on hypothesis-generated odd shapes.

Acceptance: max|ours - torch| <= 1e-4 * max|torch| for every case (the issue's bound).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import fp32

REL_TOL = 1e-4
FAST = settings(max_examples=40, deadline=None)


def assert_close(ours: np.ndarray, ref: torch.Tensor) -> None:
    ref = ref.detach().numpy()
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    assert err <= REL_TOL * scale, f"max|err| = {err:.3e}, max|ref| = {scale:.3e}"


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3, "dw"]))
    cg = 1 if groups == "dw" else draw(st.integers(1, 7))
    g = draw(st.integers(1, 9)) if groups == "dw" else groups
    mult = draw(st.sampled_from([1, 2])) if groups == "dw" else draw(st.integers(1, 19))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 23))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 23))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(n=n, c=cg * g, o=mult * g, groups=g, h=h, w=w, k=(kh, kw), s=(sh, sw),
                p=(ph, pw), d=(dh, dw), bias=bias, seed=seed)


def _check_conv(case, parallel: bool) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["n"], case["c"], case["h"], case["w"])
    wt = rand(rng, case["o"], case["c"] // case["groups"], *case["k"])
    b = rand(rng, case["o"]) if case["bias"] else None
    ours = fp32.conv2d(x, wt, b, case["s"], case["p"], case["d"], case["groups"], parallel=parallel)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt),
                   None if b is None else torch.from_numpy(b),
                   case["s"], case["p"], case["d"], case["groups"])
    assert_close(ours, ref)


@FAST
@given(conv_cases())
def test_conv2d_matches_torch(case):
    _check_conv(case, parallel=False)


@settings(max_examples=15, deadline=None)
@given(conv_cases())
def test_conv2d_parallel_matches_torch(case):
    _check_conv(case, parallel=True)


@pytest.mark.parametrize("c,o,hw,k,s,p,groups", [
    (64, 64, 14, 3, 1, 1, 1),      # ResNet basic block, smaller map
    (32, 64, 15, 3, 2, 1, 1),      # stride-2 3x3 on an odd map
    (32, 64, 15, 1, 2, 0, 1),      # 1x1 stride-2 downsample
    (3, 24, 33, 7, 2, 3, 1),       # stem-like 7x7/2
    (48, 48, 13, 3, 2, 1, 48),     # depthwise stride 2
    (24, 15, 9, 3, 1, 1, 3),       # grouped, 5 output channels per group (8/4/2/1 row tails)
    (30, 120, 5, 1, 1, 0, 3),      # ShuffleNet-style grouped pointwise
    (150, 77, 7, 3, 1, 1, 1),      # K = 1350 spans several K blocks; O = 77 (8-row tail 5)
])
def test_conv2d_network_shapes(c, o, hw, k, s, p, groups):
    rng = np.random.default_rng(c * 1000 + o)
    x = rand(rng, 1, c, hw, hw)
    wt = rand(rng, o, c // groups, k, k)
    b = rand(rng, o)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), s, p, 1, groups)
    assert_close(fp32.conv2d(x, wt, b, s, p, 1, groups), ref)


@pytest.mark.parametrize("family", [0, 1, 2])
def test_conv2d_every_tile_family(monkeypatch, family):
    """Force each micro-kernel family (3, 4 or 8 vectors wide) over row tails and both the
    scattered and the in-place (unpadded 1x1) output paths."""
    from hwsim.kernels import _conv
    monkeypatch.setattr(_conv, "choose_family", lambda mg, nflat, nl: family)
    rng = np.random.default_rng(family)
    for c, o, hw, k, s, p, groups in [(6, 13, 11, 3, 1, 1, 1), (6, 15, 17, 1, 2, 0, 1),
                                      (8, 22, 9, 3, 2, 1, 2), (5, 31, 20, 1, 1, 0, 1)]:
        x = rand(rng, 2, c, hw, hw)
        wt = rand(rng, o, c // groups, k, k)
        b = rand(rng, o)
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), s, p, 1,
                       groups)
        assert_close(fp32.conv2d(x, wt, b, s, p, 1, groups), ref)


@pytest.mark.parametrize("family", [0, 1])
def test_conv2d_narrow_last_column_tile_and_shared_padding(monkeypatch, family):
    """Last column tiles of 1 to 5 vectors under each family (the 1- and 2-vector kernels, the
    3-vector family as family 1's tail), on stride-1 rows sharing their padding (3x3 / pad 1 and 2,
    5x5 / pad 2) and stride-2 phase pairs (odd and even widths, pad 0 to 3)."""
    from hwsim.kernels import _conv
    monkeypatch.setattr(_conv, "choose_family", lambda mg, nflat, nl: family)
    rng = np.random.default_rng(10 + family)
    for w in range(3, 24, 4):
        for k, s, p in [(3, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1), (7, 2, 3), (3, 2, 0)]:
            x = rand(rng, 1, 5, 6, w + s - 1)
            wt = rand(rng, 11, 5, k, k)
            b = rand(rng, 11)
            ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), s, p)
            assert_close(fp32.conv2d(x, wt, b, s, p), ref)


@pytest.mark.parametrize("parallel", [False, True])
def test_conv2d_row_aligned_tiles(parallel, monkeypatch):
    """Output rows a multiple of 16 wide on a wider phase grid (7x7/2 stems, padded 3x3 / 5x5) take
    the row-aligned tiles written straight into the output (bias, groups, row tails of 8 / 4 / 2 / 1
    output channels); the same through the int8 kernels' float64 path (8 lanes), bit-exact."""
    from hwsim.kernels import int8
    monkeypatch.setattr(int8, "USE_VNNI", False)  # the float64 path, not the VNNI one a VNNI host takes for 8 bits
    rng = np.random.default_rng(21)
    for c, o, hw, k, s, p, groups in [(3, 64, 32, 7, 2, 3, 1), (6, 15, 64, 3, 2, 1, 3), (4, 19, 16, 3, 1, 1, 1),
                                      (2, 5, 36, 5, 2, 2, 1)]:
        x = rand(rng, 2, c, hw, hw)
        wt = rand(rng, o, c // groups, k, k)
        b = rand(rng, o)
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), s, p, 1, groups)
        assert_close(fp32.conv2d(x, wt, b, s, p, 1, groups, parallel=parallel), ref)
        xi = rng.integers(0, 256, x.shape).astype(np.uint8)
        wi = rng.integers(-128, 128, wt.shape).astype(np.int8)
        refi = F.conv2d(torch.from_numpy(xi.astype(np.float64) - 7), torch.from_numpy(wi.astype(np.float64)),
                        None, s, p, 1, groups).numpy()
        got = int8.conv2d_int(xi, wi, (s, s), (p, p), (1, 1), groups, x_zero_point=7, parallel=parallel)
        assert np.array_equal(got, refi.astype(np.int64))


STRIDE2_PAIRED = [  # (C, O, map side, kernel, padding, groups): stride 2, every phase in a column pair
    (5, 13, 15, 3, 1, 1), (8, 37, 40, 3, 1, 1), (6, 10, 22, 3, 0, 2), (3, 9, 17, (2, 3), 2, 1),
    (4, 20, 13, (3, 2), 1, 1), (7, 11, 19, 5, 2, 1), (16, 48, 9, 3, 1, 1),
]


@pytest.mark.parametrize("parallel", [False, True])
def test_conv2d_stride2_column_phase_pairs(parallel, monkeypatch):
    """Stride-2 convolutions whose phases all come in column pairs, filled channel by channel with the
    input prefetched ahead (``_stride2_conv.pack_pairs``): odd and even maps, padding 0-2, kernels
    3x3 / 2x3 / 3x2 / 5x5, batch 2, channel counts off the tile sizes, groups, bias. The phase workspace
    is poisoned with NaN first, so a plane row left unfilled would show; the int8 kernels' float64 path,
    bit-exact."""
    from hwsim.kernels import _conv, int8
    monkeypatch.setattr(int8, "USE_VNNI", False)  # the float64 path, not the VNNI one a VNNI host takes
    rng = np.random.default_rng(31)
    for c, o, hw, k, p, groups in STRIDE2_PAIRED:
        kh, kw = (k, k) if isinstance(k, int) else k
        g = _conv.layout(c, hw, hw, (o, c // groups, kh, kw), (2, 2), (p, p), (1, 1), groups, 4,
                         _conv.choose_family)
        assert 2 * len(g.pairs) == len(g.ph_rh)  # every phase filled by the pair path
        x = rand(rng, 2, c, hw, hw)
        wt = rand(rng, o, c // groups, kh, kw)
        b = rand(rng, o)
        for dt in (np.float32, np.float64):
            _conv._workspace("planes", 1 << 20, dt)[:] = np.nan
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), 2, p, 1, groups)
        assert_close(fp32.conv2d(x, wt, b, 2, p, 1, groups, parallel=parallel), ref)
        xi = rng.integers(0, 256, x.shape).astype(np.uint8)
        wi = rng.integers(-128, 128, wt.shape).astype(np.int8)
        refi = F.conv2d(torch.from_numpy(xi.astype(np.float64) - 7), torch.from_numpy(wi.astype(np.float64)),
                        None, 2, p, 1, groups).numpy()
        got = int8.conv2d_int(xi, wi, (2, 2), (p, p), (1, 1), groups, x_zero_point=7, parallel=parallel)
        assert np.array_equal(got, refi.astype(np.int64))


def test_conv2d_layout_cached_per_geometry_dtype_and_family_chooser():
    """``_conv.layout`` (plan, tap offsets, tile family) is computed once per geometry: the same object
    again, read-only arrays, a separate entry per element size and per family chooser (so a test forcing
    a family by monkeypatching ``choose_family`` is not served a cached choice), emptied by
    ``hwsim.clear_caches()``."""
    from hwsim.kernels import _conv
    key = (64, 56, 56, (128, 64, 3, 3), (2, 2), (1, 1), (1, 1), 1)
    g = _conv.layout(*key, 4, _conv.choose_family)
    assert _conv.layout(*key, 4, _conv.choose_family) is g
    assert not (g.boff.flags.writeable or g.pairs.flags.writeable or g.ph_rh.flags.writeable)
    assert _conv.layout(*key, 8, _conv.choose_family).nr == g.nr // 2  # float64: 8 lanes a vector
    forced = _conv.layout(*key, 4, lambda mg, nflat, nl: 2)
    assert (forced.fam, forced.nr) == (2, 128) and g.fam != 2
    import hwsim
    hwsim.clear_caches()  # frees it: the next call computes a new, equal layout
    again = _conv.layout(*key, 4, _conv.choose_family)
    assert again is not g and np.array_equal(again.boff, g.boff) and np.array_equal(again.geo, g.geo)


def test_conv2d_accepts_ints_and_float64_and_leaves_inputs_alone():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 9, 8))  # float64 on purpose
    wt = rng.standard_normal((6, 4, 3, 3))
    x0, w0 = x.copy(), wt.copy()
    ours = fp32.conv2d(x, wt, None, 2, 1)
    ref = F.conv2d(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(wt.astype(np.float32)),
                   None, 2, 1)
    assert_close(ours, ref)
    assert np.array_equal(x, x0) and np.array_equal(wt, w0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=(1, 4, 8, 8), w=(6, 3, 3, 3)), "input channels per group"),
    (dict(x=(1, 4, 8, 8), w=(6, 2, 3, 3), groups=3), "groups=3 must divide"),
    (dict(x=(1, 4, 2, 2), w=(6, 4, 3, 3)), "does not fit"),
    (dict(x=(1, 4, 8, 8), w=(6, 4, 3, 3), stride=0), "stride must be >= 1"),
    (dict(x=(1, 4, 8, 8), w=(6, 4, 3, 3), padding=(1, -1)), "padding must be >= 0"),
    (dict(x=(4, 8, 8), w=(6, 4, 3, 3)), "x must be 4-D"),
    (dict(x=(1, 4, 8, 8), w=(6, 4, 3, 3), b=(5,)), "bias has 5 entries"),
    (dict(x=(1, 4, 8, 8), w=(6, 4, 3, 3), dilation=(1, 2, 3)), "dilation must be an int or a pair"),
])
def test_conv2d_rejects_bad_arguments(kwargs, match):
    x = np.zeros(kwargs.pop("x"), np.float32)
    wt = np.zeros(kwargs.pop("w"), np.float32)
    if "b" in kwargs:
        kwargs["b"] = np.zeros(kwargs["b"], np.float32)
    with pytest.raises(ValueError, match=match):
        fp32.conv2d(x, wt, **kwargs)


def test_linear_matches_torch():
    rng = np.random.default_rng(2)
    x, wt, b = rand(rng, 3, 37), rand(rng, 11, 37), rand(rng, 11)
    ref = F.linear(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b))
    assert_close(fp32.linear(x, wt, b), ref)
    assert_close(fp32.linear(x, wt), F.linear(torch.from_numpy(x), torch.from_numpy(wt)))
    with pytest.raises(ValueError, match="features"):
        fp32.linear(x, rand(rng, 11, 36))


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return dict(
        k=(kh, kw), s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        p=(draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))),
        h=draw(st.integers(kh, 19)), w=draw(st.integers(kw, 19)),
        n=draw(st.integers(1, 2)), c=draw(st.integers(1, 5)),
        ceil=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@FAST
@given(pool_cases(), st.integers(1, 2))
def test_max_pool2d_matches_torch(case, dil):
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["n"], case["c"], case["h"] + 2 * dil, case["w"] + 2 * dil)
    ref = F.max_pool2d(torch.from_numpy(x), case["k"], case["s"], case["p"], dil, case["ceil"])
    assert_close(fp32.max_pool2d(x, case["k"], case["s"], case["p"], dil, case["ceil"]), ref)


@FAST
@given(pool_cases(), st.booleans())
def test_avg_pool2d_matches_torch(case, count_include_pad):
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["n"], case["c"], case["h"], case["w"])
    ref = F.avg_pool2d(torch.from_numpy(x), case["k"], case["s"], case["p"], case["ceil"],
                       count_include_pad)
    ours = fp32.avg_pool2d(x, case["k"], case["s"], case["p"], case["ceil"], count_include_pad)
    assert_close(ours, ref)


def test_pool_defaults_and_errors():
    x = rand(np.random.default_rng(3), 1, 2, 9, 9)
    assert_close(fp32.max_pool2d(x, 2), F.max_pool2d(torch.from_numpy(x), 2))
    assert_close(fp32.avg_pool2d(x, 3), F.avg_pool2d(torch.from_numpy(x), 3))
    with pytest.raises(ValueError, match="at most half"):
        fp32.max_pool2d(x, 2, 1, 2)
    with pytest.raises(ValueError, match="at most half"):
        fp32.avg_pool2d(x, 3, 1, 2)


def test_max_pool2d_propagates_nan():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    ours = fp32.max_pool2d(x, 2, 2)
    ref = F.max_pool2d(torch.from_numpy(x), 2, 2).numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(ref)) and np.isnan(ours).sum() == 1


@FAST
@given(st.integers(1, 17), st.integers(1, 17), st.integers(1, 20), st.integers(1, 20),
       st.integers(0, 2**31 - 1))
def test_adaptive_avg_pool2d_matches_torch(h, w, oh, ow, seed):
    x = rand(np.random.default_rng(seed), 2, 3, h, w)
    ref = F.adaptive_avg_pool2d(torch.from_numpy(x), (oh, ow))
    assert_close(fp32.adaptive_avg_pool2d(x, (oh, ow)), ref)


@FAST
@given(st.integers(1, 13), st.integers(1, 13), st.integers(1, 31), st.integers(1, 31),
       st.integers(0, 2**31 - 1))
def test_upsample_matches_torch(h, w, oh, ow, seed):
    tx = torch.from_numpy(rand(np.random.default_rng(seed), 1, 2, h, w))
    x = tx.numpy()
    assert_close(fp32.upsample_nearest(x, (oh, ow)),
                 F.interpolate(tx, size=(oh, ow), mode="nearest"))
    for ac in (False, True):
        assert_close(fp32.upsample_bilinear(x, (oh, ow), ac),
                     F.interpolate(tx, size=(oh, ow), mode="bilinear", align_corners=ac))


def test_upsample_integer_factors():
    tx = torch.from_numpy(rand(np.random.default_rng(4), 1, 3, 7, 5))
    x = tx.numpy()
    assert_close(fp32.upsample_nearest(x, (14, 15)), F.interpolate(tx, scale_factor=(2, 3)))
    assert_close(fp32.upsample_bilinear(x, 14), F.interpolate(tx, size=14, mode="bilinear"))


ACTIVATIONS = [
    (fp32.relu, F.relu), (fp32.relu6, F.relu6), (fp32.hardswish, F.hardswish),
    (fp32.hardsigmoid, F.hardsigmoid), (fp32.sigmoid, torch.sigmoid), (fp32.silu, F.silu),
]


@pytest.mark.parametrize("ours,ref", ACTIVATIONS, ids=[a[0].__name__ for a in ACTIVATIONS])
def test_activations_match_torch(ours, ref):
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(997).astype(np.float32) * 5,
                        np.array([-200, -88, -6, -3, 0, 3, 6, 88, 200], np.float32)])
    x = x.reshape(1, 2, 1, -1)
    assert_close(ours(x), ref(torch.from_numpy(x)))
    # sigmoid/silu saturate without overflow warnings or NaN
    assert np.isfinite(ours(x)).all()


def test_sigmoid_silu_exp_approximation_accuracy():
    """The vectorised exp: within 2 float32 ulps of 1 (2.4e-7) of the float64 sigmoid."""
    x = np.linspace(-100, 100, 400_001).astype(np.float32)
    ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.abs(fp32.sigmoid(x) - ref).max() <= 2.4e-7
    assert np.abs(fp32.silu(x) - x * ref).max() <= 2.4e-7 * 100
    assert np.isnan(fp32.sigmoid(np.array([np.nan], np.float32))).all()


def test_batch_norm_matches_torch():
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 7, 5, 3)
    mean, gamma, beta = rand(rng, 7), rand(rng, 7), rand(rng, 7)
    var = np.abs(rand(rng, 7)) + 0.1
    t = [torch.from_numpy(a) for a in (x, mean, var, gamma, beta)]
    ref = F.batch_norm(t[0], t[1], t[2], t[3], t[4], training=False, eps=1e-3)
    assert_close(fp32.batch_norm(x, mean, var, gamma, beta, 1e-3), ref)
    ref = F.batch_norm(t[0], t[1], t[2], None, None, training=False)
    assert_close(fp32.batch_norm(x, mean, var), ref)
    with pytest.raises(ValueError, match="gamma has 6 entries"):
        fp32.batch_norm(x, mean, var, gamma[:6], beta)


def test_channel_shuffle_matches_torch():
    tx = torch.from_numpy(rand(np.random.default_rng(7), 2, 12, 3, 5))
    ref = torch.nn.ChannelShuffle(3)(tx)
    assert np.array_equal(fp32.channel_shuffle(tx.numpy(), 3), ref.numpy())
    with pytest.raises(ValueError, match="must divide"):
        fp32.channel_shuffle(tx.numpy(), 5)


def test_kernel_modules_do_not_import_torch():
    """torch is only a test/benchmark reference: no kernel module imports it (checked on the AST;
    importing ``hwsim`` itself may load torch through other subpackages)."""
    import ast
    from pathlib import Path

    import hwsim.kernels as pkg
    names = ["__init__", "fp32", "int8", "_checks", "_conv", "_microkernel", "_pool_fp32",
             "_elementwise", "_int_loops"]
    for name in names:
        tree = ast.parse((Path(pkg.__file__).parent / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "torch" for m in mods), f"{name}.py imports torch"


@st.composite
def dw3x3_cases(draw):
    k = draw(st.sampled_from([3, 5]))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, k // 2 + 1)), draw(st.integers(0, k // 2 + 1))
    h = draw(st.integers(max(1, k - 2 * ph), 30))
    w = draw(st.integers(max(1, k - 2 * pw), 30))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 40)), h=h, w=w, s=(sh, sw), p=(ph, pw), k=k,
                bias=draw(st.booleans()), parallel=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@FAST
@given(dw3x3_cases())
def test_depthwise3x3_direct_path_matches_torch(case):
    """The fused 3x3 / 5x5 depthwise path (``_conv.depthwise3x3``: stride phases filled per channel,
    nine / 25 taps per vector in registers): odd and even maps, both column parities of the stride-2
    fill, padding 0 to k//2 + 1, bias, serial and parallel."""
    from hwsim.kernels import _conv
    rng = np.random.default_rng(case["seed"])
    c = case["c"]
    x = rand(rng, case["n"], c, case["h"], case["w"])
    wt = rand(rng, c, 1, case["k"], case["k"])
    b = rand(rng, c) if case["bias"] else None
    ours = _conv.depthwise3x3(x, wt, b, case["s"], case["p"], case["parallel"])
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None if b is None else torch.from_numpy(b),
                   case["s"], case["p"], 1, c)
    assert_close(ours, ref)
    assert_close(fp32.conv2d(x, wt, b, case["s"], case["p"], 1, c, parallel=case["parallel"]), ref)
