"""Brevitas models exported to QONNX (``brevitas.export.export_qonnx``) on the FPGA XNOR engine: W1A1, W1A2, W2A2,
W4A4 MLPs (8x8 digits-size input) and CNNs with odd channel counts run through ``hwsim.simulate(path, "fpga/...")``
with every activation code equal to qonnx's executor and the output equal to qonnx's and Brevitas's within fp32
rounding; integer-weight decomposition, signed codes and threshold rules; ops the engine cannot stream refused."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
from _brevitas import export, trained_bn

import hwsim
import mapping
from hwsim.cli import main
from hwsim.errors import UnsupportedOpError
from hwsim.fpga.cost import build_design
from hwsim.fpga.functional import mvau_accumulator, run_program
from hwsim.kernels import fp32 as K
from mapping.fpga import Enc, Encoding, MVAULayer, XnorProgram, map_xnor
from mapping.fpga_streamline import act_encoding, integer_thresholds
from mapping.graph import Conv2d, Node, Op, Quantize
from mapping.onnx import reference_outputs, source_values

qnn = pytest.importorskip("brevitas.nn")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
PRESETS = ("fpga/pynq-z1", "fpga/zc706")


# ----------------------------------------------------------------------------- small Brevitas models
def _wq(bits: int) -> dict:
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    return {"weight_quant": SignedBinaryWeightPerTensorConst} if bits == 1 else {"weight_bit_width": bits}


def _act(bits: int, kind: str) -> nn.Module:
    """1 bit: sign (BipolarQuant; ``kind="scaled"``: +-0.5); k bits: QuantReLU, QuantIdentity (signed) or
    QuantHardTanh (signed, narrow)."""
    from brevitas.quant import SignedBinaryActPerTensorConst

    if bits == 1:
        quant = SignedBinaryActPerTensorConst
        if kind == "scaled":
            quant = quant.let(min_val=-0.5, max_val=0.5)
        return qnn.QuantIdentity(act_quant=quant, return_quant_tensor=True)
    if kind == "relu":
        return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
    if kind == "hardtanh":
        return qnn.QuantHardTanh(bit_width=bits, max_val=1.0, min_val=-1.0, narrow_range=True, return_quant_tensor=True)
    return qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)


class ScaleBias(nn.Module):
    """A float per-class scale and bias after the last layer (exported as Mul and Add of constants)."""

    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.rand(n) + 0.5)
        self.b = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return x * self.w + self.b


def mlp(wb: int, ab: int) -> nn.Module:
    """8x8 digits-size MLP 64 -> 13 -> 11 -> 10: a signed activation, then a hard-tanh one; float scale/bias head."""
    return nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True), nn.Flatten(),
        qnn.QuantLinear(64, 13, bias=False, **_wq(wb)), nn.BatchNorm1d(13), _act(ab, "scaled" if ab == 1 else "ident"),
        qnn.QuantLinear(13, 11, bias=True, **_wq(wb)), nn.BatchNorm1d(11), _act(ab, "hardtanh"),
        qnn.QuantLinear(11, 10, bias=False, **_wq(wb)), ScaleBias(10))


def cnn(wb: int, ab: int) -> nn.Module:
    """3 -> 7 -> 5 channels with a max pool, then a linear head with a bias."""
    return nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(3, 7, 3, padding=1, bias=False, **_wq(wb)), nn.BatchNorm2d(7), _act(ab, "relu"),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(7, 5, 3, bias=True, **_wq(wb)), nn.BatchNorm2d(5), _act(ab, "relu"),
        nn.Flatten(), qnn.QuantLinear(5 * 2 * 2, 3, bias=True, **_wq(wb)))


def _inputs(kind: str, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(5)
    if kind == "mlp":  # digits-like: 17 grey levels, centred, some beyond the 8-bit quantizer's range
        return (rng.integers(0, 17, (n, 1, 8, 8)) / 8.0 - 1.0).astype(np.float32)
    return rng.standard_normal((n, 3, 8, 8)).astype(np.float32)


def _check_codes(path: str, x: np.ndarray, decomposed: bool) -> int:
    """Every thresholded value the engine produces equals qonnx's value of that tensor exactly."""
    program = map_xnor(mapping.from_onnx(path, verify=False))
    _, kept = run_program(program, x, decomposed=decomposed, keep=True)
    ref = source_values(path, x)
    checked = 0
    for layer in program.layers:
        enc = layer.out if hasattr(layer, "out") else getattr(layer, "out_enc", None)
        if enc is None:
            continue
        v = kept[layer.name]
        dec = (2.0 * v - 1) * enc.scale if enc.kind == Enc.BINARY else (v.astype(np.float64) - enc.offset) * enc.scale
        name = layer.nodes[-1] if isinstance(layer, MVAULayer) else layer.name
        np.testing.assert_array_equal(dec.astype(np.float32), ref[name], err_msg=name)
        assert len(np.unique(v)) > 1, name  # the test exercises several levels
        checked += 1
    return checked


# ----------------------------------------------------------------------------- bit-exact end to end
# the quick run: a binary MLP, a conv net with 2-bit activations, 4-bit weights and activations, 8-bit weights (their
# float32 weights lie up to 2^-24 |level| off the grid); --slow: all 10
_QUICK_BITS = {("mlp", 1, 1), ("cnn", 1, 2), ("mlp", 4, 4), ("cnn", 8, 4)}


@pytest.mark.parametrize("arch,wb,ab", [
    pytest.param(arch, wb, ab, marks=() if (arch, wb, ab) in _QUICK_BITS else pytest.mark.slow)
    for arch in ("mlp", "cnn") for wb, ab in [(1, 1), (1, 2), (2, 2), (4, 4), (8, 4)]])
def test_brevitas_qonnx_on_the_xnor_engine(tmp_path, arch, wb, ab):
    torch.manual_seed(10 * wb + ab)
    model = trained_bn((mlp if arch == "mlp" else cnn)(wb, ab), wb + ab)
    x = _inputs(arch)
    path = export(model, x, tmp_path / f"{arch}_w{wb}a{ab}.onnx")
    with torch.no_grad():
        brevitas_out = model(torch.from_numpy(x)).numpy()
    qonnx_out = reference_outputs(path, x)[0]
    tol = 1e-5 * np.abs(qonnx_out).max()
    outs = {}
    for preset in PRESETS:
        r = hwsim.simulate(path, preset, x=x, folding="auto")
        np.testing.assert_allclose(r.outputs, qonnx_out, rtol=0, atol=tol)
        np.testing.assert_allclose(r.outputs, brevitas_out, rtol=0, atol=tol)
        rep = r.report
        assert rep.fps > 0 and rep.luts > 0 and rep.bram18 >= 0 and rep.fits_on_chip
        assert len(rep.folding) == 3
        outs[preset] = r.outputs
    assert np.array_equal(outs[PRESETS[0]], outs[PRESETS[1]])
    assert _check_codes(path, x, decomposed=True) == 3  # the input quantizer and two hidden activations
    g = mapping.from_onnx(path, verify=False)
    native = hwsim.simulate(g, PRESETS[0], x=x, kbit="native").outputs
    assert np.array_equal(native, outs[PRESETS[0]])


def test_signed_input_and_levels_of_the_program(tmp_path):
    torch.manual_seed(0)
    x = _inputs("mlp")
    path = export(trained_bn(mlp(2, 2), 1), x, tmp_path / "m.onnx")
    program = map_xnor(mapping.from_onnx(path, verify=False))
    inp, first = program.layers[0], program.mvaus[0]
    assert inp.out.kind == Enc.CODES and inp.out.bits == 8 and inp.out.offset == 128 and str(inp.out) == "int8"
    assert first.in_enc.offset == 128 and first.weight_levels == "int" and first.weight_bits == 2
    assert program.mvaus[0].out_enc.offset == 2  # QuantIdentity(bit_width=2): integers -2..1
    assert program.mvaus[1].out_enc.n_levels == 3 and program.mvaus[1].out_enc.offset == 1  # hard tanh: narrow
    assert program.mvaus[1].thresholds.shape[1] == 2
    assert [op for op, _ in program.mvaus[2].float_out] == ["scale", "mul", "add"]


def test_bipolar_activation_with_a_scale_rescales_the_encoding(tmp_path):
    torch.manual_seed(1)
    x = _inputs("mlp")
    path = export(trained_bn(mlp(1, 1), 2), x, tmp_path / "m.onnx")
    program = map_xnor(mapping.from_onnx(path, verify=False))
    first, second = program.mvaus[:2]
    assert first.out_enc.kind == Enc.BINARY and first.out_enc.scale == 0.5
    assert second.in_enc.scale == 0.5 and second.out_enc.scale == 1.0


def test_per_channel_weight_scales_fold_into_the_gain(tmp_path):
    # a weight scale per output channel (as a QONNX per-channel weight quantizer gives) is a per-channel gain
    from hwsim.functional import run

    torch.manual_seed(3)
    x = _inputs("cnn")
    g = mapping.from_onnx(export(trained_bn(cnn(2, 2), 4), x, tmp_path / "c.onnx"), verify=False)
    conv = [n for n in g.nodes if n.op == Op.CONV2D][1]
    f = np.array([1.0, 0.5, 2.0, 0.75, 1.25])
    scale = conv.meta["weight_scale"] * f
    params = dict(g.params)
    key = conv.params["weight"]
    params[key] = (np.rint(params[key] / conv.meta["weight_scale"]) * scale[:, None, None, None]).astype(np.float32)
    meta = dict(conv.meta, weight_scale=tuple(scale))
    g = g.replace(nodes=tuple(n.replace(meta=meta) if n is conv else n for n in g.nodes), params=params)
    program = map_xnor(g)
    out, kept = run_program(program, x, keep=True)
    ref_out, ref = run(g, x, keep=True)
    layer = program.mvaus[1]
    np.testing.assert_array_equal((kept[layer.name] - layer.out_enc.offset) * np.float32(layer.out_enc.scale),
                                  ref[layer.nodes[-1]])
    np.testing.assert_allclose(out, ref_out[0], rtol=0, atol=1e-5 * np.abs(ref_out[0]).max())


# ----------------------------------------------------------------------------- decomposition and thresholds
def _layer(weight, in_enc, conv=None, flip=None, levels="int", bits=3, pad=0.0):
    cout = weight.shape[0]
    return MVAULayer(name="l", module="m", nodes=("l",), conv=conv, in_shape=(), out_shape=(), weight=weight,
                     flip=np.zeros(cout, bool) if flip is None else flip, weight_bits=bits, in_enc=in_enc,
                     pad_value=pad, gain=np.ones(cout), offset=np.zeros(cout), thresholds=None, out_enc=None,
                     weight_levels=levels)


@pytest.mark.parametrize("enc", [Encoding(Enc.CODES, 2, 1.0, offset=2), Encoding(Enc.CODES, 3),
                                 Encoding(Enc.BINARY)])
@pytest.mark.parametrize("conv", [None, Conv2d(6, 5, (3, 3), padding=(1, 1), bias=False),
                                  Conv2d(6, 4, (3, 3), stride=(2, 2), padding=(1, 1), groups=2, bias=False)])
def test_int_weights_decomposed_equal_native_and_float(enc, conv):
    rng = np.random.default_rng(3)
    bits = 3
    wshape = (conv.out_channels, 6 // conv.groups, 3, 3) if conv else (5, 17)
    w = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), wshape)  # full range, -4 included
    flip = rng.random(wshape[0]) < 0.5
    w = np.where(flip.reshape((-1,) + (1,) * (w.ndim - 1)), -w, w)  # a flipped row may hold +4
    layer = _layer(w, enc, conv, flip, bits=bits)
    x = rng.integers(0, enc.n_levels, (2, 6, 7, 7) if conv else (2, 17)).astype(np.uint8)
    dec = mvau_accumulator(layer, x, decomposed=True)
    nat = mvau_accumulator(layer, x, decomposed=False)
    v = 2.0 * x - 1 if enc.kind == Enc.BINARY else x.astype(np.float64) - enc.offset
    if conv:
        ref = torch.nn.functional.conv2d(torch.from_numpy(v), torch.from_numpy(w.astype(np.float64)),
                                         stride=conv.stride, padding=conv.padding, groups=conv.groups).numpy()
    else:
        ref = v @ w.T
    np.testing.assert_array_equal(dec, ref)
    np.testing.assert_array_equal(nat, ref)


def test_window_sum_unit_is_costed():
    # int weights cost the odd-level layer's k_w * k_a branches (same cycles) plus the window-sum unit's LUTs
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, (8, 16))
    designs = []
    for layer in (_layer(w, Encoding(Enc.CODES, 2), bits=2), _layer(2 * w + 1, Encoding(Enc.CODES, 2), levels="odd",
                                                                    bits=2)):
        layer = dataclasses.replace(layer, thresholds=np.zeros((8, 1), np.int64), out_enc=Encoding(Enc.BINARY),
                                    in_shape=(16,), out_shape=(8,))
        designs.append(build_design(XnorProgram("p", (16,), (layer,), "l"), [(2, 4)], True))
    a, b = designs
    assert a.layers[0].cycles == b.layers[0].cycles == 4 * 4 * 4  # ceil(16/4) * ceil(8/2) * (2 x 2 branches)
    assert a.layers[0].extra["window_sum_luts"] > 0 == b.layers[0].extra["window_sum_luts"]
    assert a.luts == b.luts + a.layers[0].extra["window_sum_luts"]


@pytest.mark.parametrize("rounding", ["ROUND", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("signed,narrow,bits", [(True, False, 3), (True, True, 2), (False, False, 2),
                                                (False, True, 3), (True, False, 1)])
@pytest.mark.parametrize("relu", [False, True])
def test_thresholds_equal_the_quantizer(rounding, signed, narrow, bits, relu):
    # z = gain * acc + offset hits every decision level exactly (dyadic numbers): the tie rules are exercised
    scale = 0.25
    q = Quantize(bits, scale, signed, 0.0, narrow, rounding)
    enc = act_encoding(Node("q", Op.QUANTIZE, ("x",), (1, 3), q))
    gain = np.array([0.125, 0.0625, 0.03125])
    offset = np.array([-0.5, 0.3125, 0.0])
    acc = np.arange(-200, 201)
    z = (gain[:, None] * acc[None, :] + offset[:, None]).astype(np.float32)
    thr = integer_thresholds(gain, offset, enc, relu=relu)
    codes = (acc[None, :, None] >= thr[:, None, :]).sum(axis=2)
    zr = np.maximum(z, 0) if relu else z
    ref = K.quantize(zr, bits, scale, signed, 0.0, narrow, rounding)
    if enc.kind == Enc.BINARY:
        np.testing.assert_array_equal(np.where(codes == 1, scale, -scale), ref)
    else:
        np.testing.assert_array_equal((codes - enc.offset) * scale, ref)


# ----------------------------------------------------------------------------- refused
class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c1, self.a1 = qnn.QuantConv2d(3, 5, 3, padding=1, weight_bit_width=2), qnn.QuantIdentity(bit_width=2)
        self.c2, self.a2 = qnn.QuantConv2d(5, 5, 3, padding=1, weight_bit_width=2), qnn.QuantIdentity(bit_width=2)

    def forward(self, x):  # the add reads c2's un-quantized accumulator: not a stream of integer codes
        h = self.a1(self.c1(self.inp(x)))
        return self.a2(self.c2(h) + h)


@pytest.mark.parametrize("case,fragment", [
    ("gelu", "op 'gelu' (node"),
    ("residual", "un-quantized output of layer"),
])
def test_unstreamable_qonnx_is_refused_with_the_node_and_exit_2(tmp_path, capsys, case, fragment):
    torch.manual_seed(0)
    if case == "gelu":
        model = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                              qnn.QuantConv2d(3, 5, 3, weight_bit_width=2), nn.GELU(),
                              qnn.QuantIdentity(bit_width=2), nn.Flatten(), qnn.QuantLinear(5 * 6 * 6, 3, bias=True))
    else:
        model = _Residual()
    x = _inputs("cnn", 1)
    path = export(model.eval(), x, tmp_path / f"{case}.onnx")
    with pytest.raises(UnsupportedOpError, match=fragment.replace("(", r"\(")):
        hwsim.simulate(path, "fpga/zc706", x=x)
    rc = main(["run", "--model", path, "--hw", "fpga/zc706"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("hwsim: error:") and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_runs_a_brevitas_export(tmp_path, capsys):
    torch.manual_seed(2)
    x = _inputs("cnn", 1)
    path = export(trained_bn(cnn(1, 1), 3), x, tmp_path / "w1a1.onnx")
    rc = main(["run", "--model", path, "--hw", "fpga/zc706", "--functional"])
    out, _ = capsys.readouterr()
    assert rc == 0 and "fps" in out and "LUTs" in out


def test_a_one_bit_quant_relu_export_is_refused_with_its_cause(tmp_path):
    """Brevitas exports QuantReLU(bit_width=1) (values {0, scale}) as Relu + BipolarQuant (values +-scale, here
    always +scale): the graph is refused on every target, naming the export as the cause; a Brevitas model with a
    1-bit integer quantizer is told so when it is passed to hwsim before its export."""
    torch.manual_seed(0)
    model = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                          qnn.QuantConv2d(3, 4, 3, bias=False, weight_bit_width=2), nn.BatchNorm2d(4),
                          qnn.QuantReLU(bit_width=1, return_quant_tensor=True), nn.Flatten(),
                          qnn.QuantLinear(4 * 36, 3, bias=False, weight_bit_width=2)).eval()
    x = _inputs("cnn", 2)
    path = export(model, x, tmp_path / "relu1.onnx")
    for preset in (PRESETS[0], "imc/isaac", "cpu/cortex-a72"):  # refused at import, on every target
        with pytest.raises(UnsupportedOpError, match=r"constant \+scale.*QuantReLU\(bit_width=1\)"):
            hwsim.simulate(path, preset, x=x)
    with pytest.raises(UnsupportedOpError, match=r"QuantIdentity '0' is a 1-bit integer quantizer"):
        mapping.trace(nn.Sequential(qnn.QuantIdentity(bit_width=1)), (1, 3, 4, 4))  # told before it exports


def test_a_1d_quant_conv_net_is_refused_for_what_it_is(tmp_path):
    """Every conv of a QuantConv1d net is quantized, but the 1-d -> 2-d lowering puts a reshape between a conv and
    its quantizer: the XNOR engine refuses the net naming the reshape and 1-d convolutions (it asked for a
    quantizer that is there), while the CPU target runs it as qonnx does."""
    torch.manual_seed(0)
    model = trained_bn(nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                                     qnn.QuantConv1d(3, 5, 3, padding=1, bias=False, weight_bit_width=4),
                                     nn.BatchNorm1d(5), qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
                                     qnn.QuantConv1d(5, 4, 3, bias=True, weight_bit_width=4)), 1)
    x = np.random.default_rng(12).standard_normal((2, 3, 11)).astype(np.float32)
    path = export(model, x, tmp_path / "conv1d.onnx")
    with pytest.raises(UnsupportedOpError, match=r"reshape .*1-d convolutions.*are not mapped"):
        hwsim.simulate(path, PRESETS[0], x=x)
    np.testing.assert_allclose(hwsim.simulate(path, "cpu/cortex-a72", x=x).outputs, reference_outputs(path, x)[0],
                               rtol=1e-5, atol=1e-6)
