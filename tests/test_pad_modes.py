"""Padding in torch's modes (constant, reflect, replicate, circular) and negative padding (a crop), on every target.

- the fp32 kernel (``hwsim.kernels.fp32.pad``) against ``F.pad`` over every mode, 1-d / 2-d / 3-d, amounts of both
  signs, and numpy's ``np.pad`` modes reflect / edge / wrap against torch's reflect / replicate / circular;
- the importers: ``F.pad`` (a crop becomes a SLICE), the pad modules (``nn.ReflectionPad1d/2d/3d``,
  ``ReplicationPad*``, ``CircularPad*``, ``ZeroPad/ConstantPad 1d/3d``), hand-built ONNX ``Pad`` in modes
  constant / reflect / edge / wrap (against onnxruntime), TorchScript- and dynamo-exported twins, and
  ``nn.Conv2d(padding_mode=...)`` (a PAD, then the conv), through ``hwsim.simulate`` on the CPU (fp32) and the IMC
  crossbar (a pad before a conv: the crossbar's output is that of the conv on torch's padded input, bit for bit;
  ``hw_aware``'s emulation of a padding_mode equals the simulator);
- the refusals, one line each: a reflect pad >= the size, a circular pad wrapping twice, a mode that is not one,
  a replicate / circular pad on the int8 CPU path, a non-constant pad on the FPGA's XNOR engine, binarizing a padding_mode conv;
- the CPU cost model: only a constant zero pad folds into its conv; the binary CPU: a reflect pad of ±1 is ±1; the
  IMC pipeline waits for the rows a pad copies; channel pruning goes through a spatial pad and keeps its mode.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwsim
import mapping
from hwsim.errors import HwsimError, ShapeError, UnsupportedOpError
from hwsim.functional import run
from hwsim.kernels import fp32
from hwsim.kernels._ops_fp32 import PAD_MODES, pad_problem
from mapping.graph import Op, Pad

MODES = ("constant", "reflect", "replicate", "circular")
SHAPES = {1: (2, 3, 7), 2: (2, 3, 5, 6), 3: (1, 2, 4, 5, 6)}  # N, C and 1, 2 or 3 padded dims


def sample(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_pad(x, pads, mode, value=0.0):
    """F.pad of numpy ``x`` with the IR's ``pads`` (one pair per dim, first dim first); None where torch refuses."""
    flat = [p for pair in reversed(pads[2:]) for p in pair]  # F.pad: last dim first, the batch and channels left
    try:
        return F.pad(torch.from_numpy(x), flat, mode=mode, **({"value": value} if mode == "constant" else {})).numpy()
    except RuntimeError:
        return None


# ----------------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_kernel_matches_torch_for_every_amount(mode, dims):
    """Every pair of amounts in [-3, 3] on each padded dim: hwsim's pad equals torch's, or hwsim refuses
    (ValueError) where torch refuses or, circular, reads memory it never wrote (a pad beyond the cropped size)."""
    x = sample(SHAPES[dims])
    checked = 0
    rng = np.random.default_rng(dims)
    amounts = list(itertools.product(range(-3, 4), repeat=2))
    for _ in range(60):
        pads = ((0, 0), (0, 0)) + tuple(amounts[i] for i in rng.integers(len(amounts), size=dims))
        ok = pad_problem(x.shape, pads, mode) is None
        want = torch_pad(x, pads, mode, 0.5)
        if not ok:
            with pytest.raises(ValueError, match="pad"):
                fp32.pad(x, pads, 0.5, mode)
            continue
        assert want is not None, (mode, pads)
        got = fp32.pad(x, pads, 0.5, mode)
        assert got.shape == want.shape and np.array_equal(got, want), (mode, pads)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_numpy_modes_are_torchs(mode):
    """np.pad's reflect / edge / wrap (the kernel's) are torch's reflect / replicate / circular, up to the limits."""
    x = sample((1, 2, 6, 5))
    for a, b in itertools.product(range(5), range(4)):
        pads = ((0, 0), (0, 0), (a, b), (b, a))
        want = torch_pad(x, pads, mode)
        assert want is not None
        assert np.array_equal(np.pad(x, pads, mode=PAD_MODES[mode]), want)


def test_kernel_refusals_name_the_rule():
    x = sample((1, 2, 4, 5))
    with pytest.raises(ValueError, match="reflect pad .* smaller than the size"):
        fp32.pad(x, ((0, 0), (0, 0), (0, 0), (5, 0)), mode="reflect")
    with pytest.raises(ValueError, match="wrap around at most once"):
        fp32.pad(x, ((0, 0), (0, 0), (5, 0), (0, 0)), mode="circular")
    with pytest.raises(ValueError, match="padding mode 'symmetric'"):
        fp32.pad(x, ((0, 0),) * 4, mode="symmetric")
    with pytest.raises(ValueError, match="Pad mode 'edge'"):
        Pad(((0, 0),), mode="edge")  # the IR speaks torch's names


# ----------------------------------------------------------------------------- torch import, CPU fp32
class Functional(nn.Module):
    def __init__(self, pad, mode, conv: bool = True, dims: int = 2):
        super().__init__()
        self.pad, self.mode = pad, mode
        self.conv = nn.Conv2d(3, 4, 3) if conv and dims == 2 else nn.Identity()

    def forward(self, x):
        return self.conv(F.pad(torch.relu(x) - 0.3, self.pad, mode=self.mode))


def hwsim_vs_torch(model, x, spec="cpu/host"):
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    got = np.asarray(hwsim.simulate(model, spec, x).outputs).reshape(want.shape)
    return got, want


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad,slices", [((1, 2, 2, 0), 0), ((-1, 2, 1, -2), 2), ((-2, -1, 0, 0), 1)])
def test_functional_pad_and_crop_import_and_run(mode, pad, slices):
    """F.pad in every mode, a crop included, traced (every node verified against torch) and run on the CPU: the
    crop is a SLICE (before the PAD in circular mode, after it otherwise), the PAD's amounts are >= 0."""
    model, x = Functional(pad, mode), sample((2, 3, 6, 7))
    g = mapping.trace(model, x.shape)
    ops = [n.op for n in g.nodes if n.op in (Op.PAD, Op.SLICE)]
    assert ops.count(Op.SLICE) == slices
    assert all(min(min(p) for p in n.attrs.pads) >= 0 and n.attrs.mode == mode for n in g.nodes if n.op == Op.PAD)
    if slices and Op.PAD in ops:
        assert (ops[0] == Op.SLICE) == (mode == "circular")
    got, want = hwsim_vs_torch(model, x)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims,pad", [(1, (2, -1)), (3, (1, 0, -1, 2, 2, 1))])
def test_functional_pad_of_1d_and_3d_values(mode, dims, pad):
    model, x = Functional(pad, mode, dims=dims), sample(SHAPES[dims])
    got, want = hwsim_vs_torch(model, x)
    assert np.array_equal(got, want)
    assert [n.op for n in mapping.trace(model, x.shape).nodes].count(Op.SLICE) == 1


PAD_MODULES = [(nn.ReflectionPad1d((2, 1)), 1), (nn.ReflectionPad2d((1, 0, 2, 3)), 2), (nn.ReflectionPad3d(1), 3),
               (nn.ReplicationPad1d((0, 3)), 1), (nn.ReplicationPad2d(2), 2), (nn.ReplicationPad3d((1, 2, 0, 1, 2, 0)), 3),
               (nn.CircularPad1d((3, 1)), 1), (nn.CircularPad2d((1, 2, 0, 1)), 2), (nn.CircularPad3d(1), 3),
               (nn.ZeroPad1d((1, 2)), 1), (nn.ConstantPad3d((0, 1, 1, 0, 2, 1), 0.25), 3),
               (nn.ReplicationPad2d((-1, 2, 1, -2)), 2)]  # a module's crop stays inside its PAD


@pytest.mark.parametrize("module,dims", PAD_MODULES, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_pad_modules_are_one_pad_node(module, dims):
    model, x = nn.Sequential(nn.ReLU(), module), sample(SHAPES[dims])
    g = mapping.trace(model, x.shape)
    assert [n.op for n in g.nodes] == [Op.RELU, Op.PAD]
    got, want = hwsim_vs_torch(model, x)
    assert np.array_equal(got, want)


def test_reflect_pad_not_smaller_than_the_size_is_one_line():
    with pytest.raises(HwsimError) as e:
        mapping.trace(nn.Sequential(nn.ReflectionPad1d((5, 0))), (1, 2, 5))
    assert "Padding size should be less than" in str(e.value) and "\n" not in str(e.value)


def test_a_circular_pad_wrapping_past_a_crop_is_refused():
    """torch computes F.pad(x, (-3, 3), "circular") on 5 values from memory it never wrote; hwsim refuses."""
    with pytest.raises(HwsimError, match="wrap around at most once") as e:
        mapping.trace(Functional((-3, 2, 0, 0), "circular", conv=False), (1, 3, 4, 4))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_mode_is_a_pad_then_the_conv(mode):
    """torch's definition of padding_mode (nn.Conv2d._conv_forward: F.pad in that mode, then the conv without
    padding); the tracer reaches it through torch.export, the module converter refusing the one-node form."""
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3, padding=(1, 2), padding_mode=mode))
    x = sample((2, 3, 6, 7))
    g = mapping.trace(model, x.shape)
    assert [n.op for n in g.nodes] == [Op.RELU, Op.PAD, Op.CONV2D] and g.nodes[2].attrs.padding == (0, 0)
    assert g.nodes[1].attrs.mode == mode and g.nodes[2].module == "1" and g.nodes[2].params["weight"] == "1.weight"
    got, want = hwsim_vs_torch(model, x)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


# ----------------------------------------------------------------------------- ONNX
def pad_model(mode: str, pads, opset: int = 19, shape=(2, 3, 5, 6)):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Pad", ["r", "pads"], ["y"], mode=mode)]
    graph = helper.make_graph(nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(pads, np.int64), "pads")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("mode,ir_mode", [("constant", "constant"), ("reflect", "reflect"), ("edge", "replicate"),
                                          ("wrap", "circular")])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 3, 1], [0, 1, 0, 0, 0, 2, 1, 0],  # ONNX: begins, then ends
                                  [0, 0, -1, 2, 0, 0, 2, -3]])  # crops: SLICEs
def test_onnx_pad_modes_match_onnxruntime(mode, ir_mode, pads):
    from mapping.onnx import reference_outputs

    m, x = pad_model(mode, pads), sample((2, 3, 5, 6))
    g = mapping.from_onnx(m)
    assert [n.attrs.mode for n in g.nodes if n.op == Op.PAD] == [ir_mode]
    assert sum(n.op == Op.SLICE for n in g.nodes) == sum(p < 0 for p in pads)
    assert np.array_equal(np.asarray(hwsim.simulate(m, "cpu/host", x).outputs), reference_outputs(m, x)[0])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("dims,pads", [(1, [0, 0, 2, 0, 1, 3]), (3, [0, 0, 1, 0, 2, 0, 0, 1, 2, 1])])
def test_onnx_pad_of_1d_and_3d_values(mode, dims, pads):
    from mapping.onnx import reference_outputs

    m, x = pad_model(mode, pads, shape=SHAPES[dims]), sample(SHAPES[dims])
    assert np.array_equal(run(mapping.from_onnx(m), x)[0], reference_outputs(m, x)[0])


def test_onnx_constant_crop_is_a_slice_after_the_pad():
    from mapping.onnx import reference_outputs

    m, x = pad_model("constant", [0, 0, -1, 2, 0, 0, 1, -3]), sample((2, 3, 5, 6))
    g = mapping.from_onnx(m)
    assert [n.op for n in g.nodes] == [Op.RELU, Op.PAD, Op.SLICE, Op.SLICE]
    assert np.array_equal(run(g, x)[0], reference_outputs(m, x)[0])


@pytest.mark.parametrize("mode,pads,words", [
    ("reflect", [0, 0, 5, 0, 0, 0, 0, 0], "Pad reflect"),  # onnxruntime's own refusal comes first
    ("wrap", [0, 0, 0, 0, 0, 0, 0, 7], "wrap around at most once"),  # onnxruntime wraps twice: torch's rule refuses
])
def test_onnx_pad_refusals_are_one_line(mode, pads, words):
    with pytest.raises(HwsimError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        mapping.from_onnx(pad_model(mode, pads))
    assert "\n" not in str(e.value) and "Pad" in str(e.value)


@pytest.mark.parametrize("mode,pad", [("reflect", (-1, 2, 1, -2)), ("replicate", (-1, 2, 1, -2)),
                                      ("circular", (1, 2, 1, 0))])  # its circular crop does not run in onnxruntime
def test_torchscript_export_of_a_pad_imports(mode, pad, tmp_path):
    """torch.onnx's TorchScript exporter: reflect / replicate become one Pad with computed pads (a crop: negative
    ones); circular becomes Slice and Concat nodes."""
    model, x = Functional(pad, mode), sample((1, 3, 6, 7))
    path = tmp_path / "crop.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17)
    want = model(torch.from_numpy(x)).detach().numpy()
    got = np.asarray(hwsim.simulate(str(path), "cpu/host", x).outputs).reshape(want.shape)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_dynamo_export_of_the_three_modes_imports(tmp_path):
    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return (self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")) + F.pad(x, (0, 0, 2, 0), mode="replicate")[..., 1:-1, :]
                    + F.pad(x, (1, 1, 0, 0), mode="circular")[:, :, :, 1:-1])

    model, x = Three().eval(), sample((1, 3, 6, 6))
    path = tmp_path / "pads.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=True)
    g = mapping.from_onnx(str(path))
    assert {n.attrs.mode for n in g.nodes if n.op == Op.PAD} == {"reflect", "replicate", "circular"}
    want = model(torch.from_numpy(x)).detach().numpy()
    assert np.max(np.abs(run(g, x)[0] - want)) <= 1e-5 * np.max(np.abs(want))


# ----------------------------------------------------------------------------- the targets
@pytest.mark.parametrize("spec", ["imc/isaac", "imc/edge-small"])
@pytest.mark.parametrize("module", [nn.ReflectionPad2d(1), nn.ReplicationPad2d((2, 0, 1, 1)), nn.CircularPad2d(1)],
                         ids=lambda m: type(m).__name__)
def test_imc_crossbar_reads_the_padded_input(spec, module):
    """The PAD is digital data movement: the crossbar's output equals that of the conv alone on torch's padded
    input (same layer names, same seed), and is far from the zero-padded conv's at the border."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    x = sample((2, 3, 8, 8))
    xp = module(torch.from_numpy(x)).numpy()
    got = np.asarray(hwsim.simulate(nn.Sequential(module, conv), spec, x).outputs)
    ref = np.asarray(hwsim.simulate(nn.Sequential(nn.Identity(), conv), spec, xp).outputs)
    assert np.array_equal(got, ref)


def test_int8_cpu_refuses_a_non_constant_pad_in_one_line():
    from hwsim.cpu.int8 import Int8UnsupportedError, check_int8

    g = mapping.trace(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReplicationPad2d(1), nn.Conv2d(4, 4, 3)), (1, 3, 8, 8))
    with pytest.raises(Int8UnsupportedError, match="replicate pad") as e:
        check_int8(g)
    assert "\n" not in str(e.value)


def test_fpga_refuses_a_non_constant_pad_in_one_line():
    from nets.layers import BinaryConv2d, BinarySign

    model = nn.Sequential(BinarySign(), nn.ReflectionPad2d(1), BinaryConv2d(3, 8, 3), nn.BatchNorm2d(8), BinarySign(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()
    with pytest.raises(UnsupportedOpError, match="reflect pad '.*' .*pads only with a constant") as e:
        hwsim.simulate(model, "fpga/pynq-z1", input_shape=(1, 3, 8, 8))
    assert "\n" not in str(e.value)


def test_only_a_constant_zero_pad_folds_into_its_conv():
    from hwsim.cpu.runtime.algorithms import pad_folds_into_conv, zero_pad_problem

    for module, folds in [(nn.ZeroPad2d(1), True), (nn.ReflectionPad2d(1), False), (nn.CircularPad2d(1), False)]:
        g = mapping.trace(nn.Sequential(nn.Conv2d(3, 4, 1), module, nn.Conv2d(4, 4, 3)), (1, 3, 8, 8))
        pad = next(n for n in g.nodes if n.op == Op.PAD)
        assert pad_folds_into_conv(g, pad, "cmsis-nn") is folds
        assert (zero_pad_problem(pad) is None) is folds


def test_binary_cpu_keeps_a_reflect_pad_of_pm1_values_pm1():
    from hwsim.cpu.binary import _pm1_values
    from nets.layers import BinarySign

    g = mapping.trace(nn.Sequential(BinarySign(), nn.ReflectionPad2d(1), nn.ZeroPad2d(1)), (1, 3, 6, 6))
    pads = [n.name for n in g.nodes if n.op == Op.PAD]
    assert pads[0] in _pm1_values(g) and pads[1] not in _pm1_values(g)  # a zero pad of ±1 is not ±1


def test_a_hand_built_reflect_pad_too_wide_is_refused_on_the_run():
    from mapping.graph import Graph, Input, Node

    pad = Node("p", Op.PAD, ("x",), (1, 2, 4, 12), Pad(((0, 0), (0, 0), (0, 0), (4, 4)), mode="reflect"))
    g = Graph((pad,), (Input("x", (1, 2, 4, 4)),), ("p",))
    with pytest.raises((ValueError, ShapeError), match="smaller than the size"):
        run(g, sample((1, 2, 4, 4)))


def test_binarizing_a_conv_with_a_padding_mode_is_refused_in_one_line():
    """nets.compress.binarize builds zero-padding binary convs: a reflect-padded conv would silently lose its mode."""
    from nets.compress.errors import CompressError
    from nets.compress.quantize import binarize

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
                          nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    with pytest.raises(CompressError, match="padding_mode='reflect'") as e:
        binarize(model, (1, 3, 8, 8))
    assert "\n" not in str(e.value)


class PadNet(nn.Module):
    """conv -> a spatial pad (module or functional, any mode) -> conv -> conv: the pad keeps each channel."""

    def __init__(self, pad):
        super().__init__()
        self.c1, self.c2, self.c3, self.pad = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 1), pad

    def forward(self, x):
        return self.c3(torch.relu(self.c2(self.pad(torch.relu(self.c1(x))))))


@pytest.mark.parametrize("pad", [nn.ReflectionPad2d(1), nn.CircularPad2d(1),
                                 lambda y: F.pad(y, (1, 1, 2, 0), mode="replicate")], ids=["reflect", "circular", "F"])
def test_channel_surgery_prunes_across_a_pad_and_keeps_its_mode(pad):
    from nets.compress import analyze, mask_channels, remove_channels

    model = PadNet(pad).eval()
    deps = analyze(model, (1, 3, 8, 8))
    assert [g.size for g in deps.groups] == [8, 8]  # c1's outputs are prunable through the pad
    remove = {int(c) for g in deps.groups for c in g.classes[::2]}
    pruned, masked = remove_channels(model, deps, remove), mask_channels(model, deps, remove)
    x = torch.from_numpy(sample((2, 3, 8, 8)))
    with torch.no_grad():
        assert float((pruned(x) - masked(x)).abs().max()) <= 1e-5 * float(masked(x).abs().max())
    assert [n.attrs.mode for n in mapping.trace(pruned, (1, 3, 8, 8)).nodes if n.op == Op.PAD] == \
        [n.attrs.mode for n in deps.graph.nodes if n.op == Op.PAD]


def test_channel_surgery_names_a_conv_padding_mode_it_cannot_follow():
    from nets.compress import UnprunableError, analyze

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, padding_mode="circular")).eval()
    with pytest.raises(UnprunableError, match="torch.export") as e:
        analyze(model, (1, 3, 8, 8))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("adc_bits", [8, 5])  # 8: the exact integer conv; 5: the clipping crossbar (bit-serial)
def test_hw_aware_emulates_a_conv_padding_mode_as_the_simulator(adc_bits):
    """hwsim.codesign.hw_aware: a conv with padding_mode pads the quantized input in that mode (a copy: the same
    codes as quantizing the padded input), then convolves without padding, as the simulator's PAD + CONV2D do."""
    from hwsim.codesign import hw_aware
    from hwsim.imc.spec import IMCSpec

    spec = IMCSpec(rows=128, cols=128, cell_bits=1, weight_bits=8, input_bits=8, dac_bits=1, adc_bits=adc_bits)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=(1, 2), padding_mode="reflect"), nn.ReLU(),
                          nn.Conv2d(6, 4, 3, stride=2, padding=1, padding_mode="circular")).eval()
    x = torch.from_numpy(sample((3, 1, 8, 8)))
    with torch.no_grad():
        emu = hw_aware(model, spec, input_shape=(1, 1, 8, 8))(x).numpy()
    sim = np.asarray(hwsim.simulate(model, spec, x=x.numpy()).outputs)
    assert np.abs(emu - sim).max() <= 1e-6 * np.abs(sim).max()
    want = model(x).detach().numpy()
    assert np.abs(emu - want).max() <= 0.1 * np.abs(want).max()  # and still the network: not zero padding


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("top,bottom", [(2, 1), (0, 3), (-2, 3)])
def test_imc_pipeline_waits_for_the_rows_a_pad_copies(mode, top, bottom):
    """The layer-pipelined IMC schedule: a chunk of a reflect / replicate / circular pad's first k output rows waits
    for the highest input row they copy (torch's own index of it: a circular pad's top rows are the last input rows);
    a constant pad keeps the proportional rule of every row-local node."""
    from hwsim.imc.schedule import _needed
    from mapping.graph import Node

    hout = 8 + top + bottom
    node = Node("p", Op.PAD, ("x",), (1, 2, hout, 8), Pad(((0, 0), (0, 0), (top, bottom), (0, 0)), mode=mode))
    rows = [_needed(node, k, (1, 2, 8, 8)) for k in range(1, hout + 1)]
    if mode == "constant":
        assert rows == [min(8, -(-k * 8 // hout)) for k in range(1, hout + 1)]
        return
    index = F.pad(torch.arange(8.0).view(1, 1, 8, 1), (0, 0, top, bottom), mode=mode)[0, 0, :, 0]
    assert rows == [int(index[:k].max()) + 1 for k in range(1, hout + 1)]
