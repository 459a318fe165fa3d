"""Brevitas's TruncAvgPool2d on the FPGA XNOR engine: exported as a QONNX Trunc version 2 (rounding half to even
by default, an output scale, a clamp to its bit width), it is the accumulating pool's output right shift with
rounding and saturation. Every pooled code equals qonnx's value of the Trunc's output tensor, and the net's outputs
equal Brevitas's and qonnx's."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from _brevitas import export, trained_bn
from onnx import TensorProto, helper, numpy_helper

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


@pytest.mark.parametrize("bits,rounding", [(4, "round"), (3, "round"), (3, "floor"), (2, "round")])
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
    sums = _window_sums(kept, program, pool)
    if pool.shift:  # window sums that fall on a tie exercise the rounding
        assert np.any(sums % (1 << pool.shift) == 1 << (pool.shift - 1))


def _window_sums(kept, program, pool) -> np.ndarray:
    v = kept[pool.src[0]].astype(np.int64)
    return v[:, :, 0::2, 0::2] + v[:, :, 1::2, 0::2] + v[:, :, 0::2, 1::2] + v[:, :, 1::2, 1::2]


def _trunc_v2_net(tmp_path, rounding: str, signed: int):
    """8-bit input Quant -> conv 3->5 (3-bit weights) -> MultiThreshold (uint2) -> AveragePool 2x2 -> Mul 4 -> Trunc
    version 2 (sums of 4 bits, output scale 2: one bit dropped; 2 output bits: the clamp saturates)."""
    rng = np.random.default_rng(3)
    w = rng.integers(-3, 4, (5, 3, 3, 3))
    t1 = np.sort(rng.integers(-40, 40, (5, 3)) + 0.5, axis=1)
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zp", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Quant", ["w", "s_w", "zp", "b3"], ["wq"], domain=QDOMAIN, signed=1, narrow=1),
        helper.make_node("Conv", ["xq", "wq"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("MultiThreshold", ["conv", "t1"], ["a1"], domain=QDOMAIN, out_dtype="UINT2"),
        helper.make_node("AveragePool", ["a1"], ["avg"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["avg", "four"], ["sum"]),
        helper.make_node("Trunc", ["sum", "one", "zp", "b4", "two", "b2"], ["y"], domain=QDOMAIN,
                         rounding_mode=rounding, signed=signed, narrow=0),
    ]
    inits = {"s_in": 1 / 16, "zp": 0.0, "b8": 8.0, "w": w, "s_w": 1.0, "b3": 3.0, "t1": t1 / 16, "four": 4.0,
             "one": 1.0, "b4": 4.0, "two": 2.0, "b2": 2.0}
    graph = helper.make_graph(
        nodes, "trunc_v2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 3, 3])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QDOMAIN, 2)])
    path = tmp_path / f"trunc_v2_{rounding}_{signed}.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


@pytest.mark.parametrize("rounding", ["ROUND", "FLOOR"])
@pytest.mark.parametrize("signed", [0, 1])
def test_trunc_v2_clamp_saturates_bit_exact(tmp_path, rounding, signed):
    path = _trunc_v2_net(tmp_path, rounding, signed)
    x = (np.random.default_rng(0).standard_normal((2, 3, 6, 6)) * 2).astype(np.float32)
    ref = reference_outputs(path, x)[0]
    np.testing.assert_array_equal(hwsim.simulate(path, "fpga/pynq-z1", x=x).outputs, ref)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    pool = program.layers[-1]
    assert isinstance(pool, AccPoolLayer) and pool.shift == 1 and pool.rounding == rounding
    hi = 1 if signed else 3  # the largest integer of the Trunc's 2 output bits
    assert pool.clamp is not None and np.any(ref == hi * 2.0)
    _, kept = run_program(program, x, keep=True)
    sums = _window_sums(kept, program, pool)
    assert np.any(sums // 2 > hi) and np.any(sums % 2 == 1)  # saturated windows and ties both occur


def test_a_tie_rounds_to_even():
    from mapping.fpga_dag import _round_shift

    assert [_round_shift(v, 1, "ROUND") for v in range(-3, 4)] == [-2, -1, 0, 0, 0, 1, 2]  # -1.5 -> -2, 0.5 -> 0
    assert [_round_shift(v, 2, "ROUND") for v in (2, 6, 10, 5, 7)] == [0, 2, 2, 1, 2]
    assert [_round_shift(v, 2, "FLOOR") for v in (-1, 3, 4)] == [-1, 0, 1]
    assert [int(np.round(v / 2)) for v in range(-3, 4)] == [_round_shift(v, 1, "ROUND") for v in range(-3, 4)]
