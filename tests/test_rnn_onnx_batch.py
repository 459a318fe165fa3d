"""Batch-first recurrent layers exported to ONNX with a dynamic batch (torch's Transpose -> sequence-first layers ->
Transpose) import at any batch, verified against onnxruntime at import and against torch here."""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
import mapping
from hwsim.errors import UnsupportedOpError

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class Seq(nn.Module):
    """A batch-first layer; ``read``: "y" the sequence, "h" torch's ``h_n[-1]``, "both" the two multiplied."""

    def __init__(self, kind: str, layers: int, bidirectional: bool, read: str):
        super().__init__()
        self.read = read
        self.rnn = getattr(nn, kind)(5, 4, num_layers=layers, batch_first=True, bidirectional=bidirectional)

    def forward(self, x):
        y, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h
        if self.read == "y":
            return y
        return h[-1] if self.read == "h" else y[:, -1, :4] * h[-1]


def _export(model, dynamo: bool = False) -> onnx.ModelProto:
    f = io.BytesIO()
    kw = {"dynamic_shapes": {"x": {0: torch.export.Dim("n")}}} if dynamo else {"dynamic_axes": {"x": {0: "n"}}}
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 6, 5),), f, dynamo=dynamo, input_names=["x"], **kw)
    return onnx.load_from_string(f.getvalue())


def _x(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 6, 5)).astype(np.float32)


@pytest.mark.parametrize("read", ["y", "h", "both"])
@pytest.mark.parametrize("kind,layers,bidirectional", [
    (k, n, b) for k in ("LSTM", "GRU", "RNN") for n in (1, 2) for b in (False, True)])
def test_dynamic_batch_export_runs_at_batch_1_and_3(kind, layers, bidirectional, read):
    _check(Seq(kind, layers, bidirectional, read), dynamo=False)


@pytest.mark.parametrize("read", ["y", "h"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])  # dynamo writes nn.RNN as per-step ops, no ONNX RNN node
def test_dynamo_export_runs_at_batch_1_and_3(kind, read):
    pytest.importorskip("onnxscript")
    _check(Seq(kind, 2, True, read), dynamo=True)


def _check(m: nn.Module, dynamo: bool) -> None:
    torch.manual_seed(3)
    m.eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.4)
    model = _export(m, dynamo)
    for batch in (1, 3):
        x = _x(batch)
        g = mapping.from_onnx(model, input_shape=x.shape)
        assert not g.batch_fixed
        assert not any(n.op is mapping.Op.PERMUTE for n in g.nodes)
        with torch.no_grad():
            want = m(torch.from_numpy(x)).numpy()
        got = np.asarray(hwsim.simulate(g, "cpu/host", x=x).outputs)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


class States(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 4, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[1][0]  # h_n whole: (layers, N, H), the batch second


def test_whole_final_state_needs_batch_1():
    torch.manual_seed(4)
    m = States().eval()
    model = _export(m)
    x = _x(1)
    got = hwsim.simulate(mapping.from_onnx(model, input_shape=x.shape), "cpu/host", x=x).outputs
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(got).reshape(-1), m(torch.from_numpy(x)).numpy().reshape(-1),
                                   atol=1e-5)
    with pytest.raises(UnsupportedOpError) as e:
        mapping.from_onnx(model, input_shape=(3, 6, 5))
    assert "\n" not in str(e.value) and "batch" in str(e.value)
