"""Brevitas's TruncAvgPool2d on the FPGA XNOR engine: exported as a QONNX Trunc version 2 (rounding half to even
by default, an output scale, a clamp to its bit width), it is the accumulating pool's output right shift with
rounding and saturation; the net's outputs equal Brevitas's and qonnx's. (Hand-built version-2 graphs whose clamp
saturates: tests/test_fpga_trunc_threshold.py.)"""
import numpy as np
import pytest
import torch
import torch.nn as nn
from _brevitas import export, trained_bn

import hwsim
import mapping
from hwsim.fpga.functional import run_program
from mapping.fpga import AccPoolLayer, map_xnor
from mapping.onnx import reference_outputs

qnn = pytest.importorskip("brevitas.nn")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
QDOMAIN = "qonnx.custom_op.general"


class PoolNet(nn.Module):
    """2-bit activations, a 2x2 TruncAvgPool2d to ``bits`` (window sums 0..12: 4 bits), a 2-bit linear layer."""

    def __init__(self, bits: int, rounding: str):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.conv = qnn.QuantConv2d(3, 5, 3, padding=1, bias=False, weight_bit_width=2)
        self.bn = nn.BatchNorm2d(5)
        self.act = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
        self.pool = qnn.TruncAvgPool2d(kernel_size=2, stride=2, bit_width=bits, float_to_int_impl_type=rounding)
        self.fc = qnn.QuantLinear(5 * 3 * 3, 4, bias=False, weight_bit_width=2)

    def pooled(self, x):
        return self.pool(self.act(self.bn(self.conv(self.inp(x)))))

    def forward(self, x):
        return self.fc(self.pooled(x).flatten(1))


@pytest.mark.parametrize("bits,rounding", [pytest.param(4, "round", marks=pytest.mark.slow), (3, "round"),
                                           pytest.param(3, "floor", marks=pytest.mark.slow), (2, "round")])
def test_brevitas_trunc_avgpool_bit_exact(tmp_path, bits, rounding):
    torch.manual_seed(bits)
    model = trained_bn(PoolNet(bits, rounding), bits)
    x = (np.random.default_rng(bits).standard_normal((6, 3, 6, 6)) * 2).astype(np.float32)
    path = export(model, x, tmp_path / f"pool{bits}{rounding}.onnx")
    with torch.no_grad():
        brevitas_out = model(torch.from_numpy(x)).numpy()
    qonnx_out = reference_outputs(path, x)[0]
    tol = 1e-5 * np.abs(qonnx_out).max()
    for preset in ("fpga/pynq-z1", "fpga/zc706"):
        out = hwsim.simulate(path, preset, x=x, folding="auto").outputs
        np.testing.assert_allclose(out, qonnx_out, rtol=0, atol=tol)
        np.testing.assert_allclose(out, brevitas_out, rtol=0, atol=tol)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    pool = next(layer for layer in program.layers if isinstance(layer, AccPoolLayer))
    assert pool.shift == 4 - bits and pool.rounding == rounding.upper()
    _, kept = run_program(program, x, keep=True)
    v = kept[pool.src[0]].astype(np.int64)
    sums = v[:, :, 0::2, 0::2] + v[:, :, 1::2, 0::2] + v[:, :, 0::2, 1::2] + v[:, :, 1::2, 1::2]
    if pool.shift:  # window sums that fall on a tie exercise the rounding
        assert np.any(sums % (1 << pool.shift) == 1 << (pool.shift - 1))
