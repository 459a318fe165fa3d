"""IMC numerics: bit-serial x bit-sliced crossbar arithmetic against independent integer references."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
import nets
from hwsim import functional
from hwsim.imc import numerics as nm
from hwsim.imc.functional import make_kernels
from hwsim.imc.spec import AdcMode, IMCSpec, SignedWeights
from mapping.graph import Op
from mapping.passes import fold_bn, quantize
from mapping.passes.quantize import dequantize, input_scale, quantize_input, quantize_weights


# ----------------------------------------------------------------------------- independent references
def ref_conv_int(xq, qw, stride, padding, dilation, groups):
    """Direct int64 convolution: one numpy einsum per kernel tap (no im2col)."""
    n, c, h, w = xq.shape
    o, cg, kh, kw = qw.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), np.int64)
    xp[:, :, ph:ph + h, pw:pw + w] = xq
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = qw[g * og:(g + 1) * og].astype(np.int64)
        for a in range(kh):
            for b in range(kw):
                tap = xg[:, :, a * dh:a * dh + sh * (oh - 1) + 1:sh, b * dw:b * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", tap, wg[:, :, a, b])
    return out


def ref_crossbar(xq, qw, x_bits, x_signed, spec):
    """The crossbar model of the module docstring, written out with explicit int64 loops."""
    ox = 2 ** (x_bits - 1) if x_signed else 0
    u = xq.astype(np.int64) + ox
    if spec.signed_weights == SignedWeights.OFFSET:
        ow = 2 ** (spec.weight_bits - 1)
        mats = [(qw.astype(np.int64) + ow, 1)]
    else:
        ow = 0
        mats = [(np.maximum(qw, 0).astype(np.int64), 1), (np.maximum(-qw, 0).astype(np.int64), -1)]
    top = 2**spec.adc_bits - 1
    cmax = 2**spec.cell_bits - 1
    acc = np.zeros((u.shape[0], qw.shape[1]), np.int64)
    for mat, sign in mats:
        for r0 in range(0, qw.shape[0], spec.rows):
            rows = min(spec.rows, qw.shape[0] - r0)
            fs = rows * (2**spec.dac_bits - 1) * cmax
            if spec.column_flip:  # ISAAC: a column never holds more than half the full scale
                fs = rows * cmax // 2 * (2**spec.dac_bits - 1)
            e = 0
            while spec.adc_mode == AdcMode.SCALE and top * 2**e < fs:
                e += 1
            for j in range(spec.input_steps):
                xj = (u[:, r0:r0 + rows] >> (j * spec.dac_bits)) & (2**spec.dac_bits - 1)
                for s in range(spec.slices):
                    ws = (mat[r0:r0 + rows] >> (s * spec.cell_bits)) & cmax
                    flip = np.zeros(ws.shape[1], bool)
                    if spec.column_flip:
                        flip = 2 * ws.sum(axis=0) > rows * cmax
                    stored = np.where(flip[None, :], cmax - ws, ws)
                    p = xj @ stored
                    if spec.adc_mode == AdcMode.CLIP:
                        code = np.minimum(p, top)
                    else:  # round half to even, like np.rint
                        code = np.minimum(np.rint(p / 2**e).astype(np.int64), top) * 2**e
                    value = np.where(flip[None, :], cmax * xj.sum(axis=1, keepdims=True) - code, code)
                    acc += sign * (value << (j * spec.dac_bits + s * spec.cell_bits))
    acc -= ow * u.sum(axis=1, keepdims=True)
    acc -= ox * qw.astype(np.int64).sum(axis=0, keepdims=True)
    return acc


# ----------------------------------------------------------------------------- crossbar arithmetic
@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 300), n=st.integers(1, 12), xb=st.integers(2, 8), wb=st.integers(2, 8),
       signed=st.booleans(), diff=st.booleans(), cell=st.sampled_from([1, 2, 3]), dac=st.sampled_from([1, 2]),
       rows=st.sampled_from([16, 64, 128]), adc=st.integers(1, 12), mode=st.sampled_from(list(AdcMode)),
       flip=st.booleans(), seed=st.integers(0, 2**16))
def test_crossbar_matches_explicit_model(m, k, n, xb, wb, signed, diff, cell, dac, rows, adc, mode, flip, seed):
    cell, dac = min(cell, wb - 1 if diff else wb), min(dac, xb)
    spec = IMCSpec(rows=rows, cols=128, cell_bits=max(cell, 1), weight_bits=wb, input_bits=xb, dac_bits=dac,
                   adc_bits=adc, adc_mode=mode, column_flip=flip,
                   signed_weights=SignedWeights.DIFFERENTIAL if diff else SignedWeights.OFFSET)
    rng = np.random.default_rng(seed)
    lo = -(2 ** (xb - 1) - 1) if signed else 0
    hi = 2 ** (xb - 1) - 1 if signed else 2**xb - 1
    xq = rng.integers(lo, hi + 1, size=(m, k))
    qmax = 2 ** (wb - 1) - 1
    qw = rng.integers(-qmax, qmax + 1, size=(k, n))
    got = nm.crossbar_matmul(xq, qw, signed, spec)
    want = ref_crossbar(xq, qw, xb, signed, spec)
    assert np.array_equal(got, want.astype(np.float64))
    if nm.adc_exact(spec, min(k, rows)):  # enough ADC bits: bit-exact integer GEMM
        assert np.array_equal(want, xq.astype(np.int64) @ qw.astype(np.int64))


def test_column_flip_saves_one_adc_bit():
    """ISAAC's setting: 128 rows of 2-bit cells, 1-bit inputs, offset weights. Full scale 384 needs 9 bits;
    with column flips every partial sum is <= 192, so an 8-bit clipping ADC is exact (and without flips it
    clips on columns of large offset-encoded weights)."""
    rng = np.random.default_rng(3)
    xq, qw = rng.integers(224, 256, size=(6, 300)), rng.integers(64, 128, size=(300, 5))  # large inputs and weights
    plain = IMCSpec(rows=128, cell_bits=2, adc_bits=8, weight_bits=8, input_bits=8)
    flip = dataclasses.replace(plain, column_flip=True)
    exact = (xq @ qw).astype(np.float64)
    assert not nm.adc_exact(plain, 128) and nm.adc_exact(flip, 128)
    assert np.array_equal(nm.crossbar_matmul(xq, qw, False, flip), exact)
    assert not np.array_equal(nm.crossbar_matmul(xq, qw, False, plain), exact)


def test_clipping_adc_loses_information():
    spec = IMCSpec(rows=128, cell_bits=2, adc_bits=4, weight_bits=8, input_bits=8)
    rng = np.random.default_rng(1)
    xq, qw = rng.integers(0, 256, size=(4, 200)), rng.integers(-127, 128, size=(200, 3))
    assert not np.array_equal(nm.crossbar_matmul(xq, qw, False, spec), (xq @ qw).astype(np.float64))


# ----------------------------------------------------------------------------- layers with odd shapes
CONVS = [  # (cin, cout, k, stride, padding, dilation, groups, hw)
    (3, 5, 3, 1, 1, 1, 1, 7), (7, 6, 3, 2, 1, 1, 1, 9), (16, 8, 3, 1, 2, 2, 1, 8), (12, 12, 3, 1, 1, 1, 12, 6),
    (8, 12, 1, 2, 0, 1, 4, 7), (30, 9, 5, 2, 2, 1, 1, 11), (130, 4, 1, 1, 0, 1, 1, 3), (9, 6, (1, 3), 1, (0, 1), 1, 3, 5),
]


@pytest.mark.parametrize("cfg", CONVS)
@pytest.mark.parametrize("bitlevel", [False, True])
def test_conv_layer_bit_exact(cfg, bitlevel):
    cin, cout, k, s, p, d, g, hw = cfg
    conv = torch.nn.Conv2d(cin, cout, k, s, p, d, g, bias=True).eval()
    graph = quantize(hwsim.as_graph(conv, (2, cin, hw, hw)), 8, 6)
    node = graph.nodes[0]
    x = np.random.default_rng(0).normal(size=(2, cin, hw, hw)).astype(np.float32)
    spec = IMCSpec(rows=20, cols=64, cell_bits=1, adc_bits=5, weight_bits=8, input_bits=6)  # 20 rows x 1 x 1 <= 31
    got = make_kernels(spec, force_bitlevel=bitlevel)[Op.CONV2D](graph, node, [x])
    qw, sw = quantize_weights(graph.param(node, "weight"), 8)
    a = node.attrs

    def alone(xi):  # one sample, quantized with its own scale (a chip converts one input at a time)
        sx, signed = input_scale(xi, 6)
        acc = ref_conv_int(quantize_input(xi, 6, sx, signed), qw, a.stride, a.padding, a.dilation, a.groups)
        return dequantize(acc, sx, sw, graph.param(node, "bias"), channel_axis=1)

    assert np.array_equal(got, np.concatenate([alone(x[i:i + 1]) for i in range(len(x))]))
    ref = conv(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()  # and close to float


@pytest.mark.parametrize("cfg", CONVS[:4])
def test_conv_layer_bit_exact_with_column_flip(cfg):
    """20 rows of 2-bit cells, 1-bit inputs: full scale 60 needs 6 bits; with column flips 30 fits a 5-bit ADC.
    The bit-level path (flipped cells stored, digital correction) equals the int64 reference."""
    cin, cout, k, s, p, d, g, hw = cfg
    conv = torch.nn.Conv2d(cin, cout, k, s, p, d, g, bias=False).eval()
    graph = quantize(hwsim.as_graph(conv, (1, cin, hw, hw)), 8, 6)
    node = graph.nodes[0]
    x = np.random.default_rng(1).normal(size=(1, cin, hw, hw)).astype(np.float32)
    spec = IMCSpec(rows=20, cols=64, cell_bits=2, adc_bits=5, weight_bits=8, input_bits=6, column_flip=True)
    got = make_kernels(spec, force_bitlevel=True)[Op.CONV2D](graph, node, [x])
    sx, signed = input_scale(x, 6)
    qw, sw = quantize_weights(graph.param(node, "weight"), 8)
    a = node.attrs
    acc = ref_conv_int(quantize_input(x, 6, sx, signed), qw, a.stride, a.padding, a.dilation, a.groups)
    assert np.array_equal(got, dequantize(acc, sx, sw, None, channel_axis=1))


# ----------------------------------------------------------------------------- whole networks
def _each_sample(layer):
    """``layer`` (one sample -> outputs) run on every sample of a batch alone: the per-sample input scale."""
    return lambda g, n, xs: np.concatenate([layer(g, n, [xs[0][i:i + 1]]) for i in range(len(xs[0]))])


def _ref_kernels():
    def conv(g, n, xs):
        qp = n.meta["quant"]
        sx, signed = input_scale(xs[0], qp.input_bits)
        xq = quantize_input(xs[0], qp.input_bits, sx, signed)
        qw, sw = quantize_weights(g.param(n, "weight"), qp.weight_bits)
        a = n.attrs
        acc = ref_conv_int(xq, qw, a.stride, a.padding, a.dilation, a.groups)
        return dequantize(acc, sx, sw, g.param(n, "bias") if "bias" in n.params else None, 1)

    def linear(g, n, xs):
        qp = n.meta["quant"]
        sx, signed = input_scale(xs[0], qp.input_bits)
        xq = quantize_input(xs[0], qp.input_bits, sx, signed)
        qw, sw = quantize_weights(g.param(n, "weight"), qp.weight_bits)
        return dequantize(xq @ qw.T, sx, sw, g.param(n, "bias") if "bias" in n.params else None, 1)

    return {Op.CONV2D: _each_sample(conv), Op.LINEAR: _each_sample(linear)}


NETS = [("itnet", dict(iterations=2), (1, 3, 32, 32)), ("resnet20", {}, (1, 3, 32, 32)),
        ("vgg-small", {}, (1, 3, 32, 32)), ("mobilenetv2", dict(num_classes=10), (1, 3, 32, 32)),
        ("shufflenetv1", dict(num_classes=10), (1, 3, 32, 32))]


@pytest.mark.parametrize("name,kw,shape", NETS)
def test_zoo_net_bit_exact_with_covering_adc(name, kw, shape):
    try:
        model = nets.get(name, **kw)
    except hwsim.HwsimError as e:  # a builder argument this zoo version does not take
        pytest.fail(f"zoo changed: {e}")
    g = quantize(fold_bn(hwsim.as_graph(model, shape)), 8, 8)
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    spec = IMCSpec(rows=32, cell_bits=1, adc_bits=6, weight_bits=8, input_bits=8)  # 32 x 1 x 1 <= 63: exact
    got = functional.run(g, x, make_kernels(spec))
    want = functional.run(g, x, _ref_kernels())
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_itnet_bitlevel_equals_exact_path():
    g = quantize(fold_bn(hwsim.as_graph(nets.get("itnet", iterations=2, channels=16), (1, 3, 16, 16))), 6, 6)
    x = np.random.default_rng(4).normal(size=(1, 3, 16, 16)).astype(np.float32)
    spec = IMCSpec(rows=16, cell_bits=2, dac_bits=2, adc_bits=6, weight_bits=6, input_bits=6)  # 16 x 3 x 3 <= 63
    a = functional.run(g, x, make_kernels(spec, force_bitlevel=True))
    b = functional.run(g, x, make_kernels(spec))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("mode", list(AdcMode))
def test_error_vs_float_grows_as_adc_bits_shrink(mode):
    model = nets.get("itnet", iterations=2, channels=16)
    g = quantize(fold_bn(hwsim.as_graph(model, (2, 3, 16, 16))), 8, 8)
    x = np.random.default_rng(5).normal(size=(2, 3, 16, 16)).astype(np.float32)
    ref = np.concatenate([o.detach().numpy().ravel() for o in model(torch.from_numpy(x))])
    errs = []
    for bits in (9, 7, 6, 5, 4):  # 128 rows x 1 x 3: a 9-bit ADC covers the range (383 <= 511)
        spec = IMCSpec(rows=128, cell_bits=2, adc_bits=bits, weight_bits=8, input_bits=8, adc_mode=mode,
                       signed_weights=SignedWeights.DIFFERENTIAL)
        out = np.concatenate([o.ravel() for o in functional.run(g, x, make_kernels(spec))])
        errs.append(float(np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean(ref**2))))
    assert errs[0] < 0.02  # 8-bit quantization only
    assert all(a <= b for a, b in zip(errs, errs[1:])), errs  # clipping may not bite at first: ties allowed
    if mode == AdcMode.SCALE:  # every lost resolution bit shows
        assert all(a < b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] > 10 * errs[0], errs


def test_nonidealities_are_seeded():
    g = quantize(fold_bn(hwsim.as_graph(nets.get("itnet", iterations=1, channels=8), (1, 3, 8, 8))), 6, 6)
    x = np.random.default_rng(6).normal(size=(1, 3, 8, 8)).astype(np.float32)
    spec = IMCSpec(rows=64, cell_bits=2, adc_bits=8, weight_bits=6, input_bits=6, conductance_sigma=0.02,
                   stuck_at_rate=0.001, adc_noise_lsb=0.3, signed_weights=SignedWeights.DIFFERENTIAL)
    a, b = (functional.run(g, x, make_kernels(spec, seed=1, read_index=0))[0] for _ in range(2))  # one read: equal
    c = functional.run(g, x, make_kernels(spec, seed=2, read_index=0))[0]
    fresh = functional.run(g, x, make_kernels(spec, seed=1, read_index=1))[0]  # ADC noise is drawn again per run
    assert not np.array_equal(a, fresh)
    ideal = functional.run(g, x, make_kernels(dataclasses.replace(spec, conductance_sigma=0.0, stuck_at_rate=0.0,
                                                                  adc_noise_lsb=0.0)))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, ideal)
    # the perturbation grows with the conductance spread
    rels = []
    for sigma in (0.04, 0.08, 0.16):
        sp = dataclasses.replace(spec, conductance_sigma=sigma, stuck_at_rate=0.0, adc_noise_lsb=0.0)
        out = functional.run(g, x, make_kernels(sp, seed=1))[0]
        rels.append(float(np.sqrt(np.mean((out - ideal) ** 2) / np.mean(ideal**2))))
    assert 0 < rels[0] < rels[1] < rels[2], rels


@settings(max_examples=25, deadline=None)
@given(cin_g=st.integers(1, 6), cout_g=st.integers(1, 5), groups=st.integers(1, 3), k=st.sampled_from([1, 2, 3]),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2), hw=st.integers(5, 9),
       rows=st.sampled_from([8, 16, 40]), seed=st.integers(0, 1000))
def test_generated_conv_layers_bit_exact(cin_g, cout_g, groups, k, stride, pad, dil, hw, rows, seed):
    if dil * (k - 1) + 1 > hw + 2 * pad:
        return
    conv = torch.nn.Conv2d(cin_g * groups, cout_g * groups, k, stride, pad, dil, groups).eval()
    graph = quantize(hwsim.as_graph(conv, (1, cin_g * groups, hw, hw)), 6, 5)
    node = graph.nodes[0]
    x = np.random.default_rng(seed).normal(size=(1, cin_g * groups, hw, hw)).astype(np.float32)
    adc = int(np.ceil(np.log2(rows * 3 + 1)))  # covers rows x 1-bit inputs x 2-bit cells
    spec = IMCSpec(rows=rows, cols=64, cell_bits=2, adc_bits=adc, weight_bits=6, input_bits=5)
    got = make_kernels(spec, force_bitlevel=True)[Op.CONV2D](graph, node, [x])
    sx, signed = input_scale(x, 5)
    qw, sw = quantize_weights(graph.param(node, "weight"), 6)
    a = node.attrs
    acc = ref_conv_int(quantize_input(x, 5, sx, signed), qw, a.stride, a.padding, a.dilation, a.groups)
    assert np.array_equal(got, dequantize(acc, sx, sw, graph.param(node, "bias"), channel_axis=1))


def test_quantize_with_progress_equals_the_quantize_pass(capsys):
    from hwsim.imc.simulate import quantize_with_progress

    g = fold_bn(hwsim.as_graph(nets.get("resnet20"), (1, 3, 32, 32)))
    a, b = quantize_with_progress(g, 7, 6, progress=True), quantize(g, 7, 6)
    assert [n.meta.get("quant") for n in a.nodes] == [n.meta.get("quant") for n in b.nodes]
    assert "quantizing weights" in capsys.readouterr().err  # the bar was drawn (forced on)


# ----------------------------------------------------------------------------- fast ADC kernels vs the row-add kernel
def test_bit_planes_hold_every_level():
    from hwsim.imc import _bitplane as bp

    lv = np.random.default_rng(0).integers(0, 8, (150, 7))
    planes = bp.pack_planes(lv, 3, 2)  # [3 bits, 3 words, 7 pairs]
    rows = np.arange(150)
    bits = (planes[:, rows // 64, :] >> (rows % 64).astype(np.uint64)[None, :, None]) & np.uint64(1)
    assert np.array_equal((bits.astype(np.int64) << np.arange(3)[:, None, None]).sum(axis=0), lv)
    assert not (planes[:, 2, :] >> np.uint64(150 - 128)).any()  # rows beyond 150 are 0


KERNEL_CASES = [  # (rows, dac_bits, input bits, cell bits, adc bits, mode, lsb, noise, analog)
    (128, 1, 8, 2, 6, 0, 1.0, False, False), (100, 1, 8, 2, 5, 0, 1.0, False, False),
    (200, 1, 16, 2, 7, 0, 1.0, False, False), (40, 2, 6, 3, 4, 0, 1.0, False, False),
    (128, 1, 8, 2, 6, 1, 2.0, True, False), (70, 3, 9, 2, 5, 2, 1.0, False, False),
    (128, 1, 8, 2, 6, 3, 1.0, False, True), (27, 1, 8, 2, 6, 3, 2.0, False, True),
    (200, 1, 12, 2, 6, 3, 1.0, False, True), (64, 2, 8, 2, 5, 1, 1.0, True, True),
    (90, 1, 16, 2, 8, 2, 4.0, False, True), (33, 3, 7, 1, 4, 3, 1.0, False, True)]


@pytest.mark.parametrize("case", KERNEL_CASES)
def test_fast_adc_kernels_equal_the_row_add_kernel(case):
    """The popcount kernel (integer cells) and the analog kernel (grid conductances) give the row-add kernel's
    accumulators bit for bit: every ADC rule, 1-3-bit DAC steps, 1-16-bit inputs, 27-200 rows."""
    from hwsim.imc import _analog as an
    from hwsim.imc import _bitplane as bp
    from hwsim.imc import xbar as xb

    rows, d, nbits, cbits, adc, mode, lsb, noisy, analog = case
    r = np.random.default_rng(rows * 31 + mode)
    m, k0, q = 150, 5, 37
    u = r.integers(0, 2**nbits, (m, k0 + rows + 3))
    u[r.random(u.shape) < 0.4] = 0
    base, off = np.zeros(1, np.int64), np.arange(u.shape[1], dtype=np.int64)
    levels = r.integers(0, 2**cbits, (rows, q))
    levels[:, 3] = 0  # an empty pair
    colw = r.choice([-4.0, -1.0, 1.0, 2.0, 16.0], q)
    colout = r.integers(0, 6, q).astype(np.int64)
    top, jn = float(2**adc - 1), -(-nbits // d)
    thr = np.sort(r.uniform(0.3, top, int(top))) if mode == 2 else np.zeros(0)
    z = r.standard_normal((jn, m, q), dtype=np.float32) if noisy else np.zeros((0, 0, 0), np.float32)
    zs = 0.3 * lsb if noisy else 0.0
    acc0 = r.integers(-1000, 1000, (m, 6)).astype(np.float64)
    ref, got = acc0.copy(), acc0.copy()
    if analog:
        cells = (np.rint((levels + 0.1 * r.standard_normal(levels.shape)).clip(0) * 2**12) / 2**12).astype(np.float32)
        skip = -1 if noisy else 0
        xb.split_adc(u, base, off, 0, m, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, 0.0, skip, z, zs,
                     ref)
        fast32 = mode == 3 and an.codes_fit_float32(top, jn, d)
        for gb in (4, 8):  # rows per subset-sum group
            got = acc0.copy()
            an.split_adc_rows(u, base, off, 0, m, k0, rows, cells, jn, d, colw, colout, lsb, top, mode, thr, 0.0,
                              skip, z, zs, fast32, gb, got)
            assert np.array_equal(got, ref)
    else:
        skip = int(top // levels.max()) if mode == 0 else (-1 if noisy else 0)
        xb.split_adc(u, base, off, 0, m, k0, rows, levels.astype(np.int16), jn, d, colw, colout, lsb, top, mode, thr,
                     1.0, skip, z, zs, ref)
        planes = bp.pack_planes(levels, max(2, cbits), 2)
        bp.split_adc_bits(u, base, off, 0, m, k0, rows, planes, jn, d, colw, colout, lsb, top, mode, thr, skip, z, zs,
                          got)
        assert np.array_equal(got, ref)
        for gb in (4, 8):  # the subset-sum kernel on integer cells
            got = acc0.copy()
            an.split_adc_rows(u, base, off, 0, m, k0, rows, levels.astype(np.int16), jn, d, colw, colout, lsb, top,
                              mode, thr, 1.0, skip, z, zs, False, gb, got)
            assert np.array_equal(got, ref)
    assert not np.array_equal(ref, acc0)  # the case converts something
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("spec", [IMCSpec(rows=20, cols=64, cell_bits=1, adc_bits=5, weight_bits=8, input_bits=6),
                                  IMCSpec(weight_bits=8, input_bits=8)], ids=["clipping-adc", "exact"])
def test_a_samples_outputs_do_not_depend_on_its_batch(spec):
    """Inputs are quantized per sample (a chip converts one input at a time): a sample alone, beside a mate ten
    times larger, or beside one with no negative value (unsigned, the other group) gives the same outputs."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 6 * 6, 5)).eval()
    graph = hwsim.as_graph(net, (1, 3, 6, 6))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 3, 6, 6)).astype(np.float32)
    alone = hwsim.simulate(graph, spec, x).outputs
    for mate in (10 * rng.normal(size=x.shape), np.abs(rng.normal(size=x.shape))):
        both = hwsim.simulate(graph, spec, np.concatenate([mate.astype(np.float32), x])).outputs
        assert np.array_equal(both[1:], alone)
        assert np.array_equal(both[:1], hwsim.simulate(graph, spec, mate.astype(np.float32)).outputs)


def test_a_layer_fed_by_a_quantizer_reads_its_codes():
    """kws-mlp-w3a3: each linear reads a 3-bit quantizer's codes (step 0.125). The crossbar's input scale is that
    step when the codes fit input_bits (exact integer inputs), not a max-abs scale that puts them on another grid;
    a chip narrower than the codes keeps the dynamic scale."""
    import nets
    from hwsim.imc.simulate import quantize_with_progress

    g = hwsim.as_graph(nets.get("kws-mlp-w3a3").eval(), (1, 1, 10, 49))
    q = {n.name: n.meta["quant"] for n in quantize_with_progress(g, 8, 8).nodes if "quant" in n.meta}
    assert q["_5"].input_scale == 0.125 and q["_5"].input_signed is False
    assert q["_2"].input_scale == 0.00390625  # the 8-bit input quantizer's step
    narrow = {n.name: n.meta["quant"] for n in quantize_with_progress(g, 8, 2).nodes if "quant" in n.meta}
    assert narrow["_5"].input_scale is None  # 3-bit codes do not fit 2-bit inputs
