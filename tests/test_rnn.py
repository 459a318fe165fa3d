"""Recurrent layers (nn.LSTM / nn.GRU / nn.RNN, ONNX LSTM / GRU / RNN) unrolled over time with shared weights."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import hwsim
import mapping
from hwsim.errors import UnsupportedOpError

MODULES = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN, "RNN_relu": lambda *a, **k: nn.RNN(*a, nonlinearity="relu",
                                                                                           **k)}


class Seq(nn.Module):
    """A recurrent layer returning its whole output: ``(output, h_n[, c_n])`` whole at batch 1; at a larger batch
    (``h_n`` keeps the batch on dim 1) each layer's state ``h_n[k]`` (what a net reads)."""

    def __init__(self, kind: str, batch_first: bool, layers: int, bidirectional: bool, bias: bool = True,
                 states: str = "whole"):
        super().__init__()
        self.rnn = MODULES[kind](4, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                                 bias=bias)
        self.batch_first, self.states, self.lstm = batch_first, states, kind == "LSTM"
        self.count = layers * (2 if bidirectional else 1)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, st = self.rnn(x)
        if not self.batch_first:
            out = out.transpose(0, 1)
        st = (st[0], st[1]) if self.lstm else (st,)  # (traced: st is a proxy, never a tuple)
        if self.states == "whole":
            return (out, *st)
        return (out, *[s[k] for s in st for k in range(self.count)])


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch(model, x):
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    from mapping._call_check import _leaves

    return [t.numpy() for t in _leaves(y)]


def _close(got, want, atol=1e-5):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
@pytest.mark.parametrize("kind", list(MODULES))
def test_rnn_outputs_match_torch_at_batch_1(kind, batch_first, layers, bidirectional):
    torch.manual_seed(0)
    m = Seq(kind, batch_first, layers, bidirectional).eval()
    x = _x((1, 6, 4))
    res = hwsim.simulate(m, "cpu/host", x=x)
    _close(res.outputs, _torch(m, x))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", list(MODULES))
def test_batch_first_rnn_runs_at_any_batch(kind, layers, bidirectional):
    torch.manual_seed(1)
    m = Seq(kind, True, layers, bidirectional, states="each").eval()
    x = _x((3, 5, 4), seed=2)
    g = mapping.trace(m, x.shape)
    assert not g.batch_fixed
    _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))


def test_sequence_first_at_a_larger_batch_is_refused_clearly():
    m = Seq("LSTM", False, 1, False).eval()
    with pytest.raises(UnsupportedOpError, match="batch 1"):
        mapping.trace(m, (3, 6, 4))
    bare = nn.GRU(4, 5)  # (L, N, F) straight from the input: the traced input's first dim is the batch
    with pytest.raises(UnsupportedOpError, match="batch_first=True") as e:
        mapping.trace(bare, (6, 1, 4))
    assert "\n" not in str(e.value) and "GRU" in str(e.value)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bare_layer_no_bias_and_weights_stored_once(kind):
    torch.manual_seed(3)
    m = MODULES[kind](4, 6, batch_first=True, bias=False, num_layers=2).eval()
    x = _x((1, 7, 4), seed=4)
    g = mapping.trace(m, x.shape)
    assert g.param_count == sum(p.numel() for p in m.parameters())
    linears = [n for n in g.nodes if n.op is mapping.Op.LINEAR]
    assert len(linears) == 2 * 2 * 7 and len({n.params["weight"] for n in linears}) == 4
    _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))


class Readers(nn.Module):
    """The ways nets read the final states, at any batch."""

    def __init__(self, idiom: str):
        super().__init__()
        self.idiom = idiom
        bi = idiom != "squeeze"
        self.lstm = nn.LSTM(4, 5, batch_first=True, bidirectional=bi, num_layers=2 if bi else 1)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        if self.idiom == "squeeze":
            return h.squeeze(0), torch.squeeze(c, 0)
        if self.idiom == "cat":
            return torch.cat((h[-2], h[-1]), dim=1)
        if self.idiom == "transpose":
            return h.transpose(0, 1).reshape(x.shape[0], -1), c.permute(1, 0, 2)
        return h[-2:].sum(0)  # a slice of the states: batch 1 only


@pytest.mark.parametrize("idiom", ["squeeze", "cat", "transpose"])
def test_final_state_reading_idioms_at_batch_3(idiom):
    torch.manual_seed(13)
    m = Readers(idiom).eval()
    x = _x((3, 6, 4), seed=14)
    _close(hwsim.simulate(m, "cpu/host", x=x).outputs, _torch(m, x))


def test_other_reads_of_the_final_state_need_batch_1():
    torch.manual_seed(13)
    m = Readers("slice").eval()
    with pytest.raises(UnsupportedOpError, match="h_n") as e:
        mapping.trace(m, (3, 6, 4))
    assert "\n" not in str(e.value) and "batch 1" in str(e.value)
    x = _x((1, 6, 4))
    g = mapping.trace(m, x.shape)
    assert g.batch_fixed
    _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))


class Unbatched(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 5, bidirectional=True)

    def forward(self, x):
        out, h = self.gru(x[0])  # (L, F): torch's unbatched input
        return out.unsqueeze(0), h


def test_unbatched_sequence_inside_a_model():
    torch.manual_seed(15)
    m = Unbatched().eval()
    x = _x((1, 6, 4))
    _close(hwsim.simulate(m, "cpu/host", x=x).outputs, _torch(m, x))


class Inner(nn.Module):
    """A sequence-first layer whose batch of 3 lies inside one sample: (1, L, 3, F) -> (L, 3, F)."""

    def __init__(self, kind: str):
        super().__init__()
        self.rnn = MODULES[kind](4, 5, bidirectional=True, num_layers=2)

    def forward(self, x):
        out, st = self.rnn(x[0])
        return out, (st[0] if isinstance(self.rnn, nn.LSTM) else st)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_batch_inside_one_sample(kind):
    torch.manual_seed(16)
    m = Inner(kind).eval()
    x = _x((1, 5, 3, 4))
    g = mapping.trace(m, x.shape)
    assert g.batch_fixed
    _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))


class Initial(nn.Module):
    def __init__(self, kind: str, h0: str):
        super().__init__()
        self.kind, self.h0 = kind, h0
        self.rnn = MODULES[kind](4, 5, batch_first=True, num_layers=2)
        self.register_buffer("h", torch.full((2, 1, 5), 0.3))

    def forward(self, x):
        if self.h0 == "zeros":
            h = torch.zeros(2, x.shape[0], 5)
        elif self.h0 == "buffer":
            h = self.h.expand(2, x.shape[0], 5).contiguous()
        else:
            h = x[:, :2].transpose(0, 1).repeat(1, 1, 2)[..., :5]
        out, _ = self.rnn(x, (h, torch.zeros_like(h)) if self.kind == "LSTM" else h)
        return out[:, -1]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_constant_initial_states(kind):
    torch.manual_seed(5)
    for h0, extra in (("zeros", 0), ("buffer", 2 * 5)):
        m = Initial(kind, h0).eval()
        x = _x((3, 4, 4))
        g = mapping.trace(m, x.shape)
        assert g.param_count == sum(p.numel() for p in m.rnn.parameters()) + extra  # zeros store nothing
        _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))
    with pytest.raises(UnsupportedOpError, match="initial state is computed from the input"):
        mapping.trace(Initial(kind, "input").eval(), (1, 4, 4))


def test_proj_size_is_refused_in_one_line():
    class P(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6, proj_size=3, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0]

    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(P(), (1, 5, 4))
    msg = str(e.value)
    assert "\n" not in msg and "proj_size" in msg and "'lstm'" in msg


# ------------------------------------------------------------------------------------------------ a KWS net
class KWS(nn.Module):
    """Keyword spotting over 49 frames of 10 MFCCs: an LSTM, its last step, a classifier."""

    def __init__(self, hidden: int = 32, classes: int = 12):
        super().__init__()
        self.lstm = nn.LSTM(10, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def test_kws_lstm_counts_and_cpu():
    torch.manual_seed(6)
    m, (steps, f, h) = KWS().eval(), (49, 10, 32)
    g = mapping.trace(m, (1, steps, f))
    torch_params = sum(p.numel() for p in m.parameters())
    assert g.param_count == torch_params  # the recurrent weights stored once
    from mapping.analysis import totals

    assert totals(g).macs == steps * 4 * h * (f + h) + h * 12  # hand count: L · 4H(F + H), then the classifier
    x = _x((2, steps, f), seed=7)
    res = hwsim.simulate(m, "cpu/cortex-a72", x=x)
    _close(res.outputs, _torch(m, x))
    assert res.report.macs == 2 * totals(g).macs


def test_kws_lstm_on_imc_maps_the_recurrent_weights_once():
    torch.manual_seed(6)
    m = KWS().eval()
    g = mapping.trace(m, (1, 49, 10))
    spec = hwsim.load_preset("imc/isaac")
    fit = hwsim.fit(g, spec)
    assert fit.weight_matrices == 3 and fit.executions == 2 * 49 + 1
    assert set(fit.crossbars_by_layer) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "fc.weight"}
    x = _x((1, 49, 10), seed=8)
    res = hwsim.simulate(g, spec, x=x)
    weights = sum(p.numel() for k, p in m.named_parameters() if "weight" in k)
    assert res.report.onchip_weight_bytes == weights * spec.weight_bits // 8  # each matrix once, not 49 times
    np.testing.assert_allclose(res.outputs, _torch(m, x)[0], atol=1e-3)


# ------------------------------------------------------------------------------------------------ ONNX
def _export(model, x, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"dynamo": True, "verbose": False} if dynamo else {"dynamo": False, "opset_version": 17}
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(model, (torch.from_numpy(x),), str(path), **kw)
    return path


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("kind,layers,bidirectional", [
    ("LSTM", 1, False), ("LSTM", 2, True), ("GRU", 1, True), ("GRU", 2, False), ("RNN", 1, True), ("RNN_relu", 2, False),
])
def test_onnx_export_matches_torch(tmp_path, kind, layers, bidirectional, dynamo):
    pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(9)
    m = Seq(kind, True, layers, bidirectional, states="each").eval()
    x = _x((1, 5, 4), seed=10)
    path = _export(m, x, tmp_path / "rnn.onnx", dynamo)
    res = hwsim.simulate(str(path), "cpu/host", x=x)
    _close(res.outputs, _torch(m, x))


def test_onnx_dynamic_sequence_length_is_fixed_at_import(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(17)
    m = KWS(hidden=8, classes=3).eval()
    path = tmp_path / "kws.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(1, 49, 10),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {1: "frames"}})
    for steps in (49, 20):
        x = _x((1, steps, 10), seed=steps)
        g = mapping.from_onnx(path, input_shape=x.shape)
        assert sum(n.op is mapping.Op.LINEAR for n in g.nodes) == 2 * steps + 1
        _close(hwsim.simulate(g, "cpu/host", x=x).outputs, _torch(m, x))


def _onnx_cell(op: str, transpose: bool = True, **attrs):
    """One ONNX recurrent node (hidden 2, hand-made weights) over a (1, L=3, F=2) input transposed to the
    sequence-first layout 0 (onnxruntime runs no other), or over a (3, 1, 2) input itself (``transpose`` False)."""
    import onnx  # noqa: F401
    from onnx import TensorProto, helper, numpy_helper

    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    rng = np.random.default_rng(11)
    w = numpy_helper.from_array(rng.standard_normal((dirs, gates * 2, 2)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.standard_normal((dirs, gates * 2, 2)).astype(np.float32), "R")
    b = numpy_helper.from_array(rng.standard_normal((dirs, 2 * gates * 2)).astype(np.float32), "B")
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])] if transpose else []
    nodes.append(helper.make_node(op, ["xt" if transpose else "x", "W", "R", "B"], ["y", "yh"], name="cell",
                                  hidden_size=2, **attrs))
    shape = [1, 3, 2] if transpose else [3, 1, 2]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("yh", TensorProto.FLOAT, None)], [w, r, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("op,attrs", [
    ("LSTM", {"direction": "reverse"}), ("GRU", {"direction": "bidirectional", "linear_before_reset": 1}),
    ("RNN", {"activations": ["Relu"]}), ("LSTM", {"direction": "bidirectional"}),
    ("GRU", {"direction": "bidirectional"}),  # linear_before_reset=0, ONNX's default
])
def test_onnx_cells_match_onnxruntime(op, attrs):
    pytest.importorskip("onnxruntime")
    from mapping.onnx import reference_outputs

    with pytest.raises(UnsupportedOpError, match="time axis is the first dim of its input"):
        mapping.from_onnx(_onnx_cell(op, transpose=False, **attrs))  # time is the input's first dim
    model = _onnx_cell(op, **attrs)
    x = _x((1, 3, 2), seed=12)
    g = mapping.from_onnx(model)
    assert g.batch_fixed and g.param_count == sum(int(np.prod(a.dims)) for a in model.graph.initializer)
    res = hwsim.simulate(model, "cpu/host", x=x)
    _close(res.outputs, reference_outputs(model, x))


@pytest.mark.parametrize("op,attrs,words", [
    ("LSTM", {"clip": 3.0}, "clip"),
    ("GRU", {"activations": ["Sigmoid", "Relu"], "linear_before_reset": 1}, "activations"),
    ("LSTM", {"input_forget": 1}, "input_forget"),
])
def test_onnx_unsupported_cells_are_refused_in_one_line(op, attrs, words):
    pytest.importorskip("onnxruntime")
    with pytest.raises(UnsupportedOpError) as e:
        mapping.from_onnx(_onnx_cell(op, **attrs))
    msg = str(e.value)
    assert "\n" not in msg and words in msg and "'cell'" in msg, msg


def test_an_unrolled_recurrent_layer_pays_one_fixed_runtime_cost():
    """ncnn / TFLite run an LSTM as one fused op: its ~800 unrolled nodes share one layer's fixed cost
    (mapping.analysis.layer_share), instead of paying it each (56 ms for 264k MACs on a Cortex-A72)."""
    import hwsim
    from hwsim.cpu.runtime import fixed_s, runtime_params
    from hwsim.specs import load_preset

    class Kws(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.LSTM(10, 32, batch_first=True), nn.Linear(32, 12)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    spec = load_preset("cpu/cortex-a72")
    rep = hwsim.simulate(Kws().eval(), spec, input_shape=(1, 49, 10)).report
    cell = [lr for lr in rep.layers if lr.module == "rnn"]
    assert len(cell) > 400
    n = cell[0].extra["cores_used"]
    assert sum(lr.extra["overhead_s"] for lr in cell) == pytest.approx(fixed_s(runtime_params(spec), spec.clock_hz, n))
    assert any("one fixed ncnn layer cost per recurrent layer" in s for s in rep.notes)
