"""The fused depthwise 3x3 / 5x5 kernel (``hwsim.kernels._dwconv``) against torch's ``F.conv2d``.

Acceptance as in ``test_kernels_fp32.py``: max|ours - torch| <= 1e-4 * max|torch|. Covers the shapes the
kernel's layout choices depend on: maps from 1x1 to 112x112 (rows shorter and longer than a vector, the
shared-padding row pitch of :func:`row_pitch`), padding 0 to k//2 + 1, strides 1 and 2 per axis, batch > 1
(the channel pipeline runs across images), 1 to 1152 channels, bias, float64, serial and parallel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import _dwconv, fp32

REL_TOL = 1e-4


def _check(n, c, h, w, k, stride, padding, bias=True, parallel=False, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, 1, k, k)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype) if bias else None
    ours = _dwconv.depthwise3x3(x, wt, b, stride, padding, parallel)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None if b is None else torch.from_numpy(b),
                   stride, padding, 1, c).numpy()
    assert ours.dtype == dtype and ours.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    assert err <= REL_TOL * scale, f"max|err| = {err:.3e}, max|ref| = {scale:.3e}"
    assert np.isfinite(ours).all()


NETWORK_LAYERS = [  # (channels, map side, k, stride): MobileNetV2 / EfficientNet-B0 / MnasNet depthwise layers
    (32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (144, 56, 3, 2), (192, 28, 3, 1), (384, 14, 3, 1),
    (576, 14, 3, 1), (960, 7, 3, 1), (144, 56, 5, 2), (240, 28, 5, 1), (480, 14, 5, 1), (672, 14, 5, 1),
    (672, 14, 5, 2), (1152, 7, 5, 1),
]


@pytest.mark.parametrize("c, hw, k, s", NETWORK_LAYERS)
def test_network_layers_match_torch(c, hw, k, s):
    _check(1, c, hw, hw, k, (s, s), (k // 2, k // 2), bias=False)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("hw", [1, 2, 3, 5, 7, 8, 9, 13, 14, 15, 16, 17, 31, 33])
@pytest.mark.parametrize("s", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_small_maps_every_padding(k, hw, s):
    """Maps up to two vectors wide, every padding the fused path accepts (0 .. k//2 + 1): the row pitch
    shrinks by the shared padding, so the reads past each row's end must all land in zeros."""
    for p in range(k // 2 + 2):
        if hw + 2 * p >= k:
            _check(1, 2, hw, hw, k, s, (p, p), bias=False, seed=hw * 10 + p + 1)
        if hw + 2 * p >= k and hw + 1 + 2 * max(0, p - 1) >= k:  # unequal sides and paddings
            _check(2, 3, hw, hw + 1, k, s, (p, max(0, p - 1)), seed=hw * 10 + p)


@pytest.mark.parametrize("k", [3, 5])
def test_batch_float64_and_parallel(k):
    _check(3, 17, 11, 10, k, (1, 1), (k // 2, k // 2), dtype=np.float64)
    _check(3, 17, 12, 13, k, (2, 2), (1, 2), dtype=np.float64)
    _check(2, 37, 14, 14, k, (1, 1), (k // 2, k // 2), parallel=True)
    _check(2, 37, 15, 14, k, (2, 2), (k // 2, k // 2), parallel=True)
    _check(2, 1, 9, 9, k, (2, 1), (1, 1), parallel=True)


def test_large_map_and_dispatch_through_conv2d():
    """112x112 (rows of seven vectors) directly and through the public ``fp32.conv2d``."""
    _check(1, 4, 112, 112, 3, (1, 1), (1, 1))
    _check(1, 3, 112, 111, 5, (2, 2), (2, 2))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 20, 9), dtype=np.float32)
    wt = rng.standard_normal((6, 1, 5, 5), dtype=np.float32)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None, 2, 2, 1, 6).numpy()
    ours = fp32.conv2d(x, wt, None, 2, 2, 1, 6)
    assert np.abs(ours - ref).max() <= REL_TOL * np.abs(ref).max()


def test_row_pitch_is_shared_padding():
    """Pitch W + pad for stride 1 (one shared padding run between rows); never below OW."""
    assert _dwconv.row_pitch(14, 5, 1, 2) == 16
    assert _dwconv.row_pitch(7, 3, 1, 1) == 8
    assert _dwconv.row_pitch(7, 5, 1, 0) == 7
    for w in range(1, 40):
        for k in (3, 5):
            for sw in (1, 2):
                for pw in range(k // 2 + 2):
                    if w + 2 * pw >= k:
                        ow = (w + 2 * pw - k) // sw + 1
                        assert ow <= _dwconv.row_pitch(w, k, sw, pw) <= -(-(w + 2 * pw) // sw)


def test_nonfinite_inputs_stay_in_their_window():
    """A NaN in one input pixel spoils exactly the outputs whose window covers it (junk columns, the
    shared padding and the slot pipeline never carry it elsewhere)."""
    x = np.ones((2, 3, 7, 7), np.float32)
    x[1, 2, 3, 4] = np.nan
    wt = np.ones((3, 1, 5, 5), np.float32)
    ours = _dwconv.depthwise3x3(x, wt, None, (1, 1), (2, 2), False)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None, 1, 2, 1, 3).numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    assert np.isnan(ours).sum() == 25


def test_rejects_other_kernels_and_strides():
    x = np.zeros((1, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="neither 3x3 nor 5x5"):
        _dwconv.depthwise3x3(x, np.zeros((2, 1, 7, 7), np.float32), None, (1, 1), (3, 3), False)
    with pytest.raises(ValueError, match="stride"):
        _dwconv.depthwise3x3(x, np.zeros((2, 1, 3, 3), np.float32), None, (3, 3), (1, 1), False)


@settings(max_examples=40, deadline=None)
@given(k=st.sampled_from([3, 5]), sh=st.integers(1, 2), sw=st.integers(1, 2), ph=st.integers(0, 3),
       pw=st.integers(0, 3), h=st.integers(1, 40), w=st.integers(1, 40), n=st.integers(1, 3),
       c=st.integers(1, 20), bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_random_shapes_match_torch(k, sh, sw, ph, pw, h, w, n, c, bias, seed):
    ph, pw = min(ph, k // 2 + 1), min(pw, k // 2 + 1)
    if h + 2 * ph < k or w + 2 * pw < k:
        return
    _check(n, c, h, w, k, (sh, sw), (ph, pw), bias=bias, seed=seed)


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_one_and_two_slot_pipelines_agree_with_torch(monkeypatch, limit):
    """The channel pipeline with one buffer slot (large planes) and with two (small planes), each forced
    on shapes that normally take the other, batch > 1 so that it runs across images."""
    monkeypatch.setattr(_dwconv, "PIPELINE_MAX_BYTES", limit)
    for k in (3, 5):
        _check(3, 5, 9, 7, k, (1, 1), (k // 2, k // 2), seed=k)
        _check(2, 3, 60, 57, k, (2, 2), (1, 2), seed=k + 1)
        _check(2, 4, 60, 57, k, (1, 2), (2, 1), seed=k + 2)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("s", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_channel_blocks_with_a_remainder(monkeypatch, k, s):
    """Maps vectorised across blocks of 16 (float32) / 8 (float64) channels (``_dwconv_small``; forced here
    for every map size), with channels left over for the per-channel path, batch > 1, odd sides, every
    padding, bias or none, serial and parallel."""
    monkeypatch.setattr(_dwconv, "BLOCK_MAX_BYTES", {3: 1 << 30, 5: 1 << 30})
    for p in range(k // 2 + 2):
        for h, w in ((7, 7), (14, 13), (3, 11), (1, 1)):
            if h + 2 * p >= k and w + 2 * p >= k:
                _check(2, 37, h, w, k, s, (p, p), bias=p % 2 == 0, seed=h * 7 + p)
    _check(2, 19, 9, 8, k, s, (1, k // 2), dtype=np.float64, seed=3)
    _check(1, 16, 28, 28, k, s, (k // 2, k // 2), seed=4)
    _check(3, 35, 9, 10, k, s, (k // 2, 1), parallel=True, seed=5)
