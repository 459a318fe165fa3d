"""Dataflow beyond chains on the FPGA XNOR engine: residual adds (DuplicateStreams + AddStreams on integer codes,
re-quantized by a Thresholding unit), concatenation, depthwise convolutions (VVAU), global average pooling (an
accumulating pool), per-channel weight scales, k-bit activations up to 8 bits and an 8-bit-image first layer.
Small Brevitas models (odd channel counts) exported to QONNX run bit-exactly against qonnx's executor and Brevitas;
FIFO depths are sized by the SimPy pipeline (a too-shallow bypass FIFO deadlocks, a too-shallow chain FIFO stalls);
bad input is refused in one line."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from _brevitas import export, trained_bn
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
import mapping
from hwsim.cli import main
from hwsim.errors import HwsimError, MappingError, UnsupportedOpError
from hwsim.fpga.cost import build_design, pipeline_frame_cycles
from hwsim.fpga.functional import run_program
from mapping.fpga import (
    AccPoolLayer,
    AddLayer,
    ConcatLayer,
    Enc,
    MVAULayer,
    ThresholdLayer,
    map_xnor,
)
from mapping.onnx import reference_outputs, source_values

qnn = pytest.importorskip("brevitas.nn")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
PRESETS = ("fpga/pynq-z1", "fpga/zc706")


def _wq(bits: int, per_channel: bool = False) -> dict:
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    if bits == 1:
        return {"weight_quant": SignedBinaryWeightPerTensorConst}
    return {"weight_bit_width": bits, "weight_scaling_per_output_channel": per_channel}


def _act(bits: int) -> nn.Module:
    from brevitas.quant import SignedBinaryActPerTensorConst

    if bits == 1:
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)
    return qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)


class ResDwNet(nn.Module):
    """8-bit image -> conv 3->7 -> residual block (7->7->7, both branches through one shared quantizer, the sum
    re-quantized) -> depthwise 3x3/2 with per-channel weight scales -> two pointwise convs (5 and 4 channels)
    concatenated through one shared quantizer -> global average pool -> linear 9->3 with a bias."""

    def __init__(self, wb: int, ab: int, relu_after_add: bool = False):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c0, self.b0 = qnn.QuantConv2d(3, 7, 3, padding=1, bias=False, **_wq(wb)), nn.BatchNorm2d(7)
        self.q = _act(ab)  # shared by both branches of the residual add: one scale
        self.c1, self.b1, self.a1 = qnn.QuantConv2d(7, 7, 3, padding=1, bias=False, **_wq(wb)), nn.BatchNorm2d(7), \
            _act(ab)
        self.c2, self.b2 = qnn.QuantConv2d(7, 7, 1, bias=False, **_wq(wb)), nn.BatchNorm2d(7)
        self.requant = (qnn.QuantReLU(bit_width=ab, return_quant_tensor=True) if relu_after_add
                        else _act(min(ab + 1, 8)))
        self.dw = qnn.QuantConv2d(7, 7, 3, stride=2, padding=1, groups=7, bias=False, **_wq(wb, per_channel=True))
        self.bdw, self.adw = nn.BatchNorm2d(7), _act(ab)
        self.pa, self.ba = qnn.QuantConv2d(7, 5, 1, bias=False, **_wq(wb)), nn.BatchNorm2d(5)
        self.pb, self.bb = qnn.QuantConv2d(7, 4, 1, bias=False, **_wq(wb)), nn.BatchNorm2d(4)
        self.qcat = _act(ab)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(9, 3, bias=True, **_wq(wb))

    def forward(self, x):
        h = self.q(self.b0(self.c0(self.inp(x))))
        y = self.q(self.b2(self.c2(self.a1(self.b1(self.c1(h))))))
        s = self.requant(y + h)
        d = self.adw(self.bdw(self.dw(s)))
        cat = torch.cat([self.qcat(self.ba(self.pa(d))), self.qcat(self.bb(self.pb(d)))], dim=1)
        return self.fc(torch.flatten(self.pool(cat), 1))


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _model(tmp_path, wb: int, ab: int, relu: bool = False) -> tuple[str, nn.Module, np.ndarray]:
    torch.manual_seed(10 * wb + ab)
    model = trained_bn(ResDwNet(wb, ab, relu), wb + 7 * ab)
    x = _x()
    return export(model, x, tmp_path / f"resdw_w{wb}a{ab}{'_relu' if relu else ''}.onnx"), model, x


def _check_codes(path: str, x: np.ndarray) -> set:
    """Every thresholded, added or concatenated value equals qonnx's value of that tensor exactly."""
    program = map_xnor(mapping.from_onnx(path, verify=False))
    _, kept = run_program(program, x, keep=True)
    ref = source_values(path, x)
    kinds = set()
    for layer in program.layers:
        if isinstance(layer, AccPoolLayer):  # an average in float32 in qonnx, an exact sum here: not compared
            continue
        enc = layer.out_enc if isinstance(layer, MVAULayer) else getattr(layer, "out", None)
        if enc is None or layer.name not in kept:
            continue
        v = kept[layer.name].astype(np.float64)
        dec = (2.0 * v - 1) * enc.scale if enc.kind == Enc.BINARY else (v - enc.offset) * enc.scale
        name = layer.nodes[-1] if isinstance(layer, MVAULayer) else layer.name
        np.testing.assert_array_equal(dec.astype(np.float32), ref[name], err_msg=name)
        kinds.add(type(layer).__name__)
    return kinds


# ----------------------------------------------------------------------------- bit-exact end to end
@pytest.mark.parametrize("wb,ab", [(1, 1), pytest.param(1, 2, marks=pytest.mark.slow), (2, 2),
                                   pytest.param(4, 4, marks=pytest.mark.slow)])
def test_residual_depthwise_concat_gap_bit_exact(tmp_path, wb, ab):
    path, model, x = _model(tmp_path, wb, ab)
    with torch.no_grad():
        brevitas_out = model(torch.from_numpy(x)).numpy()
    qonnx_out = reference_outputs(path, x)[0]
    tol = 1e-5 * np.abs(qonnx_out).max()
    for preset in PRESETS:
        r = hwsim.simulate(path, preset, x=x, folding="auto")
        np.testing.assert_allclose(r.outputs, qonnx_out, rtol=0, atol=tol)
        np.testing.assert_allclose(r.outputs, brevitas_out, rtol=0, atol=tol)
        rep = r.report
        assert rep.fits_on_chip and rep.fps > 0 and rep.luts > 0
        kinds = {lr.op for lr in rep.layers}
        assert {"mvau", "vvau", "add", "concat", "accpool", "dup"} <= kinds
        assert len(rep.fifo_depths) >= 8 and all(d >= 1 for _, d in rep.fifo_depths)
    kinds = _check_codes(path, x)
    assert {"AddLayer", "ConcatLayer", "MVAULayer"} <= kinds
    native = hwsim.simulate(mapping.from_onnx(path, verify=False), PRESETS[0], x=x, kbit="native").outputs
    np.testing.assert_array_equal(native, hwsim.simulate(path, PRESETS[0], x=x).outputs)


def test_program_structure_of_the_residual_net(tmp_path):
    path, _, _ = _model(tmp_path, 2, 2)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    adds = [x for x in program.layers if isinstance(x, AddLayer)]
    assert len(adds) == 1 and len(adds[0].src) == 2
    a = adds[0].out
    assert a.kind == Enc.CODES and a.offset == 4 and a.n_levels == 7  # two signed 2-bit codes (offset 2 each)
    assert any(isinstance(x, ThresholdLayer) and x.src == (adds[0].name,) for x in program.layers)
    dw = [m for m in program.mvaus if m.depthwise]
    assert len(dw) == 1 and dw[0].mw == 9 and dw[0].mh == 7
    cat = next(x for x in program.layers if isinstance(x, ConcatLayer))
    assert cat.shape[0] == 9
    pool = next(x for x in program.layers if isinstance(x, AccPoolLayer))
    assert pool.attrs.kernel == (4, 4) and pool.out.offset == 16 * pool.in_enc.offset
    design = build_design(program, [(1, 1)] * len(program.mvaus))
    vvau = next(r for r in design.layers if r.kind == "vvau")
    assert vvau.cycles == 4 * 4 * 9 * 7  # FINN VVAU: OFM pixels * k^2 / SIMD * C / PE


@pytest.mark.parametrize("ab", [6, pytest.param(8, marks=pytest.mark.slow)])
def test_wide_activations_and_8bit_image(tmp_path, ab):
    # k-bit activations up to 8 bits (the residual sum re-quantized to 8 bits too), the 8-bit image first layer
    path, model, x = _model(tmp_path, 2, ab)
    qonnx_out = reference_outputs(path, x)[0]
    r = hwsim.simulate(path, "fpga/zc706", x=x)
    np.testing.assert_allclose(r.outputs, qonnx_out, rtol=0, atol=1e-5 * np.abs(qonnx_out).max())
    program = map_xnor(mapping.from_onnx(path, verify=False))
    assert program.layers[0].out.bits == 8 and program.mvaus[0].in_enc.bits == 8
    assert max(m.out_enc.bits for m in program.mvaus if m.out_enc) == ab
    assert _check_codes(path, x) >= {"AddLayer", "MVAULayer"}


def test_quant_relu_after_the_residual_add(tmp_path):
    # Brevitas QuantReLU after the add exports Relu + Quant: the ReLU folds into the Thresholding unit
    path, model, x = _model(tmp_path, 2, 2, relu=True)
    with torch.no_grad():
        brevitas_out = model(torch.from_numpy(x)).numpy()
    qonnx_out = reference_outputs(path, x)[0]
    r = hwsim.simulate(path, "fpga/pynq-z1", x=x)
    tol = 1e-5 * np.abs(qonnx_out).max()
    np.testing.assert_allclose(r.outputs, qonnx_out, rtol=0, atol=tol)
    np.testing.assert_allclose(r.outputs, brevitas_out, rtol=0, atol=tol)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    thr = next(x for x in program.layers if isinstance(x, ThresholdLayer))
    assert thr.out.offset == 0 and "ThresholdLayer" in _check_codes(path, x)


# ----------------------------------------------------------------------------- FIFOs and folding
def test_fifo_depths_sized_by_simpy(tmp_path):
    path, _, _ = _model(tmp_path, 2, 2)
    g = mapping.from_onnx(path, verify=False)
    rep = hwsim.simulate(g, "fpga/pynq-z1", folding="auto").report
    depths = dict(rep.fifo_depths)
    program = map_xnor(g)
    add = next(x for x in program.layers if isinstance(x, AddLayer))
    bypass = next(d for k, d in depths.items() if k.endswith("->" + add.name) and k.split("->")[0] in add.src
                  and not k.startswith(program.mvaus[2].name))
    assert bypass > depths[f"{program.mvaus[0].name}->{program.mvaus[1].name}"]  # the bypass waits for the branch
    design = build_design(program, rep.folding)
    elems = int(np.prod(program.input_shape))
    t = pipeline_frame_cycles(design, elems, 3, depths)  # the sized depths never stall
    assert np.diff(t) == pytest.approx([design.ii_cycles] * 2)
    with pytest.raises(MappingError, match="deadlock"):  # a bypass FIFO too shallow for the long branch
        pipeline_frame_cycles(design, elems, 2, {k: (2 if k.split("->")[0] in add.src else d)
                                                 for k, d in depths.items()})


def test_shallow_fifo_stalls_a_chain():
    fold = [(16, 49), (8, 8), (8, 8), (10, 8)]
    free = hwsim.simulate("tfc-w1a1", "fpga/zc706", folding=fold).report
    tight = hwsim.simulate("tfc-w1a1", "fpga/zc706", folding=fold, fifo_depth=1).report
    assert tight.fps < free.fps and any("stall" in n for n in tight.notes)
    assert max(d for _, d in free.fifo_depths) > 1


def test_auto_folding_meets_a_target_on_a_residual_graph(tmp_path):
    path, _, x = _model(tmp_path, 1, 2)
    slow = hwsim.simulate(path, "fpga/pynq-z1", folding="auto", target_fps=2e4).report
    fast = hwsim.simulate(path, "fpga/pynq-z1", folding="auto").report
    assert slow.fps >= 2e4 and fast.fps >= slow.fps and slow.luts <= fast.luts
    assert len(slow.folding) == 7  # 6 convs (one depthwise) and the linear head


# ----------------------------------------------------------------------------- refused
class _TwoScales(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c1, self.a1 = qnn.QuantConv2d(3, 5, 3, padding=1, weight_bit_width=2), qnn.QuantIdentity(bit_width=2)
        self.c2, self.a2 = qnn.QuantConv2d(5, 5, 3, padding=1, weight_bit_width=2), qnn.QuantIdentity(bit_width=3)

    def forward(self, x):
        h = self.a1(self.c1(self.inp(x)))
        return self.a2(self.c2(h)) + h


class _Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.c1 = qnn.QuantConv2d(3, 5, 3, weight_bit_width=2)

    def forward(self, x):
        return torch.sigmoid(self.c1(self.inp(x)))


@pytest.mark.parametrize("case,error,fragment", [
    ("scales", MappingError, "adds branches of different scales"),
    ("sigmoid", UnsupportedOpError, "op 'sigmoid' (node"),
])
def test_bad_graphs_refused_in_one_line_exit_2(tmp_path, capsys, case, error, fragment):
    torch.manual_seed(0)
    model = (_TwoScales() if case == "scales" else _Sigmoid()).eval()
    x = _x(1)
    path = export(model, x, tmp_path / f"{case}.onnx")
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        hwsim.simulate(path, "fpga/zc706", x=x)
    assert issubclass(error, HwsimError)
    rc = main(["run", "--model", path, "--hw", "fpga/zc706"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("hwsim: error:") and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- random residual / concat graphs
class _RandomBlock(nn.Module):
    """Two branches (a binary or k-bit conv stack, and the identity or a strided 1x1 conv), quantized by one
    QuantAct, then added (or concatenated) and re-quantized."""

    def __init__(self, cin: int, width: int, stride: int, abits: int, concat: bool, seed: int):
        super().__init__()
        from nets.layers import BinaryConv2d, QuantAct, QuantConv2d

        g = torch.Generator().manual_seed(seed)
        wb = 1 + seed % 3
        def conv(a, b, k, s=1, p=0):
            return (BinaryConv2d(a, b, k, stride=s, padding=p) if wb == 1
                    else QuantConv2d(a, b, k, stride=s, padding=p, bits=wb))

        self.branch = nn.Sequential(conv(cin, width, 3, stride, 1), nn.BatchNorm2d(width), QuantAct(abits),
                                    conv(width, cin, 1), nn.BatchNorm2d(cin), QuantAct(abits))
        self.short = (nn.Identity() if stride == 1 else
                      nn.Sequential(conv(cin, cin, 1, stride), nn.BatchNorm2d(cin), QuantAct(abits)))
        self.concat, self.out = concat, QuantAct(abits)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 4 - 1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) * 4 + 0.5)
                    m.weight.copy_(torch.randn(m.num_features, generator=g))

    def forward(self, x):
        a, b = self.branch(x), self.short(x)
        return self.out(torch.cat([a, b], 1) if self.concat else a + b)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), cin=st.sampled_from([3, 5, 6]), width=st.integers(3, 7),
       stride=st.sampled_from([1, 2]), abits=st.sampled_from([2, 3, 4]), concat=st.booleans())
def test_random_residual_and_concat_graphs_bit_exact(seed, cin, width, stride, abits, concat):
    from hwsim.functional import run
    from nets.layers import QuantAct, QuantLinear

    torch.manual_seed(seed)
    block = _RandomBlock(cin, width, stride, abits, concat, seed)
    ch = 2 * cin if concat else cin
    model = nn.Sequential(QuantAct(abits), block, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          QuantLinear(ch, 4, bias=True, bits=2)).eval()
    x = torch.rand(2, cin, 8, 8)
    g = mapping.trace(model, tuple(x.shape))
    program = map_xnor(g)
    out, kept = run_program(program, x.numpy(), keep=True)
    _, ref = run(g, x.numpy(), keep=True)
    for layer in program.layers:
        if isinstance(layer, (AddLayer, ConcatLayer, ThresholdLayer)):
            enc = layer.out
            dec = (kept[layer.name].astype(np.float64) - enc.offset) * enc.scale
            np.testing.assert_array_equal(dec.astype(np.float32), ref[layer.name], err_msg=layer.name)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * max(np.abs(want).max(), 1e-3))
    rep = hwsim.simulate(g, "fpga/pynq-z1").report
    assert rep.fps > 0 and all(d >= 1 for _, d in rep.fifo_depths)


# ----------------------------------------------------------------------------- weights packed once
@pytest.mark.parametrize("wb,ab", [(1, 1), pytest.param(2, 1, marks=pytest.mark.slow),
                                   pytest.param(2, 2, marks=pytest.mark.slow)])
def test_weights_packed_once_per_program(tmp_path, monkeypatch, wb, ab):
    # binary inputs with ±1 weights (one plane), odd 2-bit weights (planes) and 2-bit codes: every MVAU's weight
    # planes are packed on the first run only; a second run repacks nothing and gives the same bits
    from hwsim.kernels import _binary_conv as BC
    from hwsim.kernels import _binary_gemm as G

    calls = {"conv": 0, "gemm": 0}
    conv_pack, gemm_pack = BC.pack_conv_weights, G.panels_of

    def count_conv(*a, **k):
        calls["conv"] += 1
        return conv_pack(*a, **k)

    def count_gemm(*a, **k):
        calls["gemm"] += 1
        return gemm_pack(*a, **k)

    monkeypatch.setattr(BC, "pack_conv_weights", count_conv)
    monkeypatch.setattr(G, "panels_of", count_gemm)
    path, _, x = _model(tmp_path, wb, ab)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    first, kept1 = run_program(program, x, keep=True)
    after_first = dict(calls)
    second, kept2 = run_program(program, x, keep=True)
    np.testing.assert_array_equal(first, second)
    assert kept1.keys() == kept2.keys() and all(np.array_equal(kept1[k], kept2[k]) for k in kept1)
    assert calls == after_first and after_first["gemm"] > 0  # nothing packed again
    binary_in = [m for m in program.mvaus if m.in_enc.kind == Enc.BINARY]
    assert (after_first["conv"] > 0) == (ab == 1) and bool(binary_in) == (ab == 1)
    if ab == 1:  # one packing per ±1 plane of each binary-input conv: weight_bits planes, or 1 plus the window sum
        convs = [m for m in binary_in if m.conv is not None]
        per_layer = [1 if wb == 1 else (1 + wb if m.weight_levels == "int" else wb) for m in convs]
        assert after_first["conv"] == sum(per_layer)
