"""``torch.einsum`` of one operand (a permutation and sums) through the torch tracer and the ONNX importer, one rule
for both (``mapping._torch_einsum.letters`` / ``sum_then_permute``), verified against torch and onnxruntime."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import hwsim
from hwsim.errors import UnsupportedOpError
from mapping import Op, from_onnx, trace

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class _One(nn.Module):
    """``torch.einsum(eq, conv(x))`` (the conv makes the operand a computed value); ``view`` reshapes first."""

    def __init__(self, eq: str, view: tuple[int, ...] | None = None):
        super().__init__()
        self.conv, self.eq, self.view = nn.Conv2d(4, 4, 1) if view != (5, 5) else nn.Conv2d(1, 1, 1), eq, view

    def forward(self, x):
        y = self.conv(x)
        return torch.einsum(self.eq, y if self.view is None else y.reshape(y.shape[0], *self.view))


CASES = {  # name: (equation, view of the conv's (N, 4, 5, 6) output, the IR ops expected)
    "nchw->nhwc": ("nchw->nhwc", None, {Op.PERMUTE}),
    "bij->bji": ("bij->bji", (20, 6), {Op.PERMUTE}),
    "bij->b": ("bij->b", (20, 6), {Op.REDUCE_SUM}),
    "nchw->nwc": ("nchw->nwc", None, {Op.REDUCE_SUM, Op.PERMUTE}),
    "implicit_transpose": ("bji", (20, 6), {Op.PERMUTE}),  # implicit output "bij": a transpose
    "identity": ("nchw->nchw", None, set()),
}


def _x(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 4, 5, 6)).astype(np.float32)


def _export(m: nn.Module, x: np.ndarray) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), buf, dynamo=False, input_names=["x"], opset_version=17)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_one_operand_einsum_matches_torch_and_its_onnx_export(name, batch):
    eq, view, ops = CASES[name]
    torch.manual_seed(0)
    m = _One(eq, view).eval()
    x = _x(batch)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    g = trace(m, x.shape)
    assert not g.batch_fixed
    assert ops <= {n.op for n in g.nodes} and not {Op.MATMUL, Op.LINEAR} & {n.op for n in g.nodes[1:]}
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, want, rtol=1e-5, atol=1e-5)
    mp = _export(m, x)
    assert "Einsum" in {n.op_type for n in mp.graph.node}
    go = from_onnx(mp, input_shape=x.shape)
    assert ops <= {n.op for n in go.nodes}
    np.testing.assert_allclose(hwsim.simulate(go, "cpu/host", x=x).outputs, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eq", ["nchw->cnhw", "nchw->chw"])
def test_moving_or_summing_the_batch_runs_at_batch_1_only(eq):
    m = _One(eq).eval()
    x = _x(1)
    g = trace(m, x.shape)
    assert g.batch_fixed
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hwsim.simulate(g, "cpu/host", x=x).outputs, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(UnsupportedOpError) as e:
        trace(m, (3, 4, 5, 6))
    assert "\n" not in str(e.value) and "batch" in str(e.value), str(e.value)


def test_a_diagonal_is_refused_in_one_line():
    m = _One("bii->bi", (5, 5)).eval()
    with pytest.raises(UnsupportedOpError) as e:
        trace(m, (2, 1, 5, 5))
    assert "\n" not in str(e.value) and "diagonal" in str(e.value) and "einsum" in str(e.value), str(e.value)
