"""The chunked subset-sum kernel of analog splits (hwsim.imc._gather) against the reference row-add kernel."""
from __future__ import annotations

import numpy as np
import pytest

from hwsim.imc import _analog as an
from hwsim.imc import _gather as ga
from hwsim.imc import xbar as xb


def _grid_cells(r, rows, q, negative):
    """Conductances near 2-bit levels on the 2^-12 grid (float32), a reference column subtracted when negative."""
    g = (r.integers(0, 4, (rows, q)) * (1 + 0.05 * r.standard_normal((rows, q)))).clip(0)
    g[:, q - 1] = 0.0 if q > 1 else g[:, q - 1]  # an empty pair
    if negative:
        g = g - r.uniform(0.5, 1.5, rows)[:, None]
    return (np.rint(g * 2**12) / 2**12).astype(np.float32)


def _conv_operands(r, n_img, c, h, bits):
    """Padded encoded images [N, C·(H+2)²] and the base/off addressing of a 3x3 conv, stride 1, padding 1."""
    hp = h + 2
    xp = np.zeros((n_img, c, hp, hp), np.uint16)
    x = r.integers(0, 2**bits, (n_img, c, h, h))
    x[r.random(x.shape) < 0.5] = 0
    xp[:, :, 1:-1, 1:-1] = x
    base = (np.arange(h)[:, None] * hp + np.arange(h)[None, :]).ravel().astype(np.int64)
    off = (np.arange(c)[:, None, None] * hp * hp + np.arange(3)[None, :, None] * hp
           + np.arange(3)[None, None, :]).ravel().astype(np.int64)
    return xp.reshape(n_img, -1), base, off


def _both(xp, base, off, m0, m1, k0, rows, cells, jn, lsb, top, n_out, seed):
    """(reference accumulators, the chunked kernel's, their common start)."""
    r = np.random.default_rng(seed)
    q = cells.shape[1]
    colw = r.choice([-16.0, -4.0, -1.0, 1.0, 4.0, 16.0], q)
    colout = r.integers(0, n_out, q).astype(np.int64)
    acc0 = r.integers(-1000, 1000, (m1, n_out)).astype(np.float64)
    want, got = acc0.copy(), acc0.copy()
    empty = np.zeros((0, 0, 0), np.float32)
    xb.split_adc(xp, base, off, m0, m1, k0, rows, cells, jn, 1, colw, colout, lsb, top, xb.ADC_RINT32, np.zeros(0),
                 0.0, 0, empty, 0.0, want)
    ga.split_adc_chunks(xp, base, off, m0, m1, k0, rows, cells, jn, colw, colout, lsb, top, got)
    assert not np.array_equal(want, acc0)  # something was converted
    return want, got, acc0


@pytest.mark.parametrize("rows,q,bits,lsb,negative", [
    (128, 96, 8, 1.0, False), (27, 37, 8, 2.0, False), (8, 16, 4, 1.0, True), (64, 17, 12, 1.0, True),
    (200, 50, 16, 4.0, False), (100, 1, 1, 1.0, False)])
def test_chunked_kernel_equals_the_row_add_kernel(rows, q, bits, lsb, negative):
    """Matrix inputs, 1-16-bit inputs, 8-200 rows (groups past the rows, a second bit-plane word), pair counts that
    are not multiples of 16, conductances of both signs: the reference's accumulators bit for bit."""
    r = np.random.default_rng(rows * 7 + q)
    m, k0 = 1100, 3  # more than one work item of BLOCK pixels
    u = r.integers(0, 2**bits, (m, k0 + rows + 2))
    u[r.random(u.shape) < 0.4] = 0
    u[5] = 0  # a pixel with no set bit: no conversion, the accumulator untouched
    base, off = np.zeros(1, np.int64), np.arange(u.shape[1], dtype=np.int64)
    cells = _grid_cells(r, rows, q, negative)
    top = 63.0
    assert an.codes_fit_float32(top, bits, 1) and ga.fits(rows, q)
    want, got, acc0 = _both(u, base, off, 0, m, k0, rows, cells, bits, lsb, top, 5, rows)
    assert np.array_equal(got, want)
    assert np.array_equal(got[5], acc0[5])


def test_chunked_kernel_on_conv_addressing_and_a_pixel_range():
    """Padded images read in place (base/off of a 3x3 conv, several images) from pixel m0 on: the same bits."""
    r = np.random.default_rng(3)
    xp, base, off = _conv_operands(r, 3, 16, 10, 8)
    cells = _grid_cells(r, 128, 40, False)
    want, got, acc0 = _both(xp, base, off, 37, 300, 16, 128, cells, 8, 1.0, 31.0, 7, 4)
    assert np.array_equal(got, want)
    assert np.array_equal(got[:37], acc0[:37])  # pixels before m0 untouched


def test_chunk_table_holds_the_subset_sums():
    """T[(c·ng + g)·256 + mask][l] is the sum of the cells of the rows in mask of group g, pair 16c + l."""
    r = np.random.default_rng(5)
    cells = _grid_cells(r, 20, 21, True)
    ng, nch = 3, 2
    t = ga.chunk_table(cells, ng, nch).reshape(nch, ng, 256, ga.LANES)
    padded = np.zeros((ng * 8, nch * ga.LANES), np.float64)
    padded[:20, :21] = cells
    for c, g, mask in [(0, 0, 0), (0, 0, 255), (1, 2, 0b1011), (1, 1, 0b10000001), (0, 2, 0b1111)]:
        sel = [8 * g + b for b in range(8) if mask >> b & 1]
        want = padded[sel, c * ga.LANES:(c + 1) * ga.LANES].sum(axis=0)
        assert np.array_equal(t[c, g, mask].astype(np.float64), want)


def test_wide_splits_and_other_modes_take_the_row_kernel():
    """A table beyond TABLE_BYTES, 2-bit DAC steps or float64 codes go to the row kernel: still the reference's bits."""
    assert not ga.fits(128, 384) and ga.fits(128, 256)
    r = np.random.default_rng(9)
    rows, q, m = 128, 384, 40
    u = r.integers(0, 256, (m, rows))
    base, off = np.zeros(1, np.int64), np.arange(rows, dtype=np.int64)
    cells = _grid_cells(r, rows, q, False)
    colw, colout = np.ones(q), (np.arange(q) % 9).astype(np.int64)
    empty = np.zeros((0, 0, 0), np.float32)
    for d, jn in [(1, 8), (2, 4)]:
        want, got = np.zeros((m, 9)), np.zeros((m, 9))
        xb.split_adc(u, base, off, 0, m, 0, rows, cells, jn, d, colw, colout, 1.0, 63.0, xb.ADC_RINT32, np.zeros(0),
                     0.0, 0, empty, 0.0, want)
        an.split_adc_rows(u, base, off, 0, m, 0, rows, cells, jn, d, colw, colout, 1.0, 63.0, xb.ADC_RINT32,
                          np.zeros(0), 0.0, 0, empty, 0.0, True, 8, got)
        assert np.array_equal(got, want) and want.any()
