"""1-d convolutions and pools (nn.Conv1d, F.conv1d, Max/Avg/AdaptiveAvgPool1d; ONNX 1-D Conv, MaxPool,
AveragePool) run as 2-d ops on a unit height: outputs equal torch's / onnxruntime's on every target that runs them,
batch norm folds into them, and a keyword-spotting net runs int8 on a Cortex-M bit-exactly."""
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_cpu_int8 import assert_bit_exact

import hwsim
import mapping
from hwsim.cpu.int8 import quantize_int8
from hwsim.functional import run
from mapping.analysis import totals
from mapping.graph import Op
from mapping.passes.fold_bn import fold_bn


class Net1d(nn.Module):
    """Conv1d variants (stride, dilation, depthwise, no bias), BN1d, pools and a functional conv1d."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(10, 16, 5, stride=2, padding=2)
        self.bn = nn.BatchNorm1d(16)
        self.c2 = nn.Conv1d(16, 16, 3, padding=2, groups=16, dilation=2, bias=False)  # ORT: no "same" + dilation
        self.mp, self.ap, self.gap = nn.MaxPool1d(2), nn.AvgPool1d(3, stride=1, padding=1), nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.mp(F.relu(self.bn(self.c1(x))))
        y = self.ap(self.c2(y)) + F.max_pool1d(y, 3, 1, 1) + F.avg_pool1d(y, 1)
        y = F.conv1d(y, self.c2.weight, None, 1, 1, 1, 16)
        return self.fc(self.gap(y).flatten(1))


def _net() -> nn.Module:
    torch.manual_seed(0)
    m = Net1d().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def _x(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 10, 49, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("hw", ["cpu/host", "cpu/cortex-a72", "imc/isaac"])
def test_1d_layers_match_torch_on_each_target(hw):
    m, x = _net(), _x()
    res = hwsim.simulate(m, hw, x=x.numpy())
    np.testing.assert_allclose(res.outputs, m(x).detach().numpy(), atol=1e-4 if hw == "imc/isaac" else 1e-5)
    assert res.report.latency_s > 0


def test_counts_equal_torch_and_batch_norm_folds_into_the_1d_conv():
    m = _net()
    g = mapping.trace(m, (1, 10, 49))
    # the functional conv1d reads c2's weight again: one key, counted once, as torch's parameters() counts it
    assert totals(g).params == sum(p.numel() for p in m.parameters() if p is not m.bn.running_mean)
    folded = fold_bn(g)
    assert Op.BATCHNORM not in {n.op for n in folded.nodes}
    x = _x().numpy()
    np.testing.assert_allclose(run(folded, x)[0], m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript_export", "dynamo_export"])
def test_onnx_1d_layers_match_onnxruntime(dynamo):
    m, x = _net(), _x()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, x, buf, dynamo=dynamo, input_names=["x"],
                          dynamic_axes=None if dynamo else {"x": {0: "n"}})
    out = hwsim.simulate(onnx.load_from_string(buf.getvalue()), "cpu/host", x=x.numpy()).outputs
    np.testing.assert_allclose(out, m(x).detach().numpy(), atol=1e-5)


class Kws1d(nn.Module):
    """A keyword-spotting net over (N, 10 MFCC, 49 frames): Conv1d + BN1d + ReLU blocks, a max pool, a classifier."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(10, 32, 5, stride=2, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
                                  nn.Conv1d(32, 32, 3, padding=1, groups=32), nn.BatchNorm1d(32), nn.ReLU(),
                                  nn.Conv1d(32, 48, 1), nn.BatchNorm1d(48), nn.ReLU(), nn.MaxPool1d(5))
        self.fc = nn.Linear(48 * 5, 12)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_a_1d_kws_net_runs_int8_on_a_cortex_m_bit_exactly():
    torch.manual_seed(0)
    m = Kws1d().eval()
    g = fold_bn(mapping.trace(m, (1, 10, 49)))
    assert Op.BATCHNORM not in {n.op for n in g.nodes}
    rng = np.random.default_rng(0)
    p = quantize_int8(g, rng.standard_normal((16, 10, 49)).astype(np.float32))
    x = rng.standard_normal((4, 10, 49)).astype(np.float32)
    outs = assert_bit_exact(p, x)
    ref = run(g, x)[0]
    assert np.sqrt(np.mean((outs[0] - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)) < 0.05
    rep = hwsim.simulate(m, "cpu/cortex-m4", input_shape=(1, 10, 49)).report
    assert rep.latency_s > 0 and rep.energy_j > 0


def test_same_padding_and_a_conv1d_after_a_linear_view():
    class Same(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.conv = nn.Linear(12, 24), nn.Conv1d(4, 5, 3, padding="same", dilation=2)

        def forward(self, x):
            return self.conv(self.fc(x).view(-1, 4, 6))

    torch.manual_seed(0)
    m, x = Same().eval(), torch.randn(2, 12)
    np.testing.assert_allclose(hwsim.simulate(m, "cpu/host", x=x.numpy()).outputs, m(x).detach().numpy(), atol=1e-5)


def test_compression_quantizes_1d_convs_and_channel_surgery_names_them():
    from nets.compress import UnprunableError, analyze, quantize_ptq

    torch.manual_seed(0)
    m, x = Kws1d().eval(), torch.randn(8, 10, 49)
    res = quantize_ptq(m, x, (1, 10, 49))
    convs = [n for n in res.graph().nodes if n.op == Op.CONV2D]
    assert len(convs) == 3 and all(n.name in res.input_ranges for n in convs)  # every 1-d conv calibrated
    with pytest.raises(UnprunableError, match="Conv1d 'body.0'") as e:
        analyze(m, (1, 10, 49))
    assert "\n" not in str(e.value)
