"""QONNX MultiThreshold and Trunc on the FPGA XNOR engine, on small hand-built QONNX graphs: a MultiThreshold
after a conv becomes that MVAU's thresholds, a standalone one a Thresholding unit, and a Trunc after an average
pool (AveragePool, Mul by the window, Trunc: Brevitas's TruncAvgPool; version 1, or version 2 with its clamp) the
pool's output right shift (rounding down or half to even, saturating). Every output
equals qonnx's executor exactly (integers times dyadic scales); what the engine cannot stream is refused in one
line."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwsim
import mapping
from hwsim.errors import HwsimError, UnsupportedOpError
from hwsim.fpga.functional import run_program
from mapping.fpga import AccPoolLayer, Enc, MVAULayer, ThresholdLayer, map_xnor
from mapping.onnx import reference_outputs, source_values

pytest.importorskip("qonnx")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
QDOMAIN = "qonnx.custom_op.general"


def _model(tmp_path, nodes, inits, in_shape, out_shape, name="hand", qonnx_opset=1):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid(QDOMAIN, qonnx_opset)])
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


def _pool_front():
    """(nodes, inits) of 8-bit input Quant -> conv 3->5 (3-bit weights) -> MultiThreshold (3 per channel, uint2)
    -> AveragePool 2x2 -> Mul 4: window sums of 4 bits in "sum"."""
    rng = np.random.default_rng(3)
    w = rng.integers(-3, 4, (5, 3, 3, 3))
    t1 = np.sort(rng.integers(-40, 40, (5, 3)) + 0.5, axis=1)  # between integer accumulators times the scale
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zp", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Quant", ["w", "s_w", "zp", "b3"], ["wq"], domain=QDOMAIN, signed=1, narrow=1),
        helper.make_node("Conv", ["xq", "wq"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("MultiThreshold", ["conv", "t1"], ["a1"], domain=QDOMAIN, out_dtype="UINT2"),
        helper.make_node("AveragePool", ["a1"], ["avg"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["avg", "four"], ["sum"]),
    ]
    inits = {"s_in": 1 / 16, "zp": 0.0, "b8": 8.0, "w": w, "s_w": 1.0, "b3": 3.0, "t1": t1 / 16, "four": 4.0}
    return nodes, inits


def _kbit_net(tmp_path, rounding="FLOOR", trunc_scale=1.0, mt2_bias=-0.5, name="kbit"):
    """:func:`_pool_front` -> Trunc (4 -> 2 bits) -> MultiThreshold (2 per channel, codes with offset 1, scale 0.5)."""
    nodes, inits = _pool_front()
    t2 = np.array([[0.5, 1.5], [1.0, 2.0], [-0.5, 0.5], [1.5, 2.5], [0.0, 1.0]])
    nodes += [
        helper.make_node("Trunc", ["sum", "s_t", "zp", "b4", "b2"], ["tr"], domain=QDOMAIN, rounding_mode=rounding),
        helper.make_node("MultiThreshold", ["tr", "t2"], ["y"], domain=QDOMAIN, out_dtype="INT2", out_scale=0.5,
                         out_bias=mt2_bias),
    ]
    inits.update({"s_t": trunc_scale, "b4": 4.0, "b2": 2.0, "t2": t2})
    return _model(tmp_path, nodes, inits, (2, 3, 6, 6), (2, 5, 3, 3), name)


def _trunc_v2_net(tmp_path, rounding: str, signed: int):
    """:func:`_pool_front` -> Trunc version 2 (sums of 4 bits, output scale 2: one bit dropped; 2 output bits: the
    clamp saturates)."""
    nodes, inits = _pool_front()
    nodes.append(helper.make_node("Trunc", ["sum", "one", "zp", "b4", "two", "b2"], ["y"], domain=QDOMAIN,
                                  rounding_mode=rounding, signed=signed, narrow=0))
    inits.update({"one": 1.0, "b4": 4.0, "two": 2.0, "b2": 2.0})
    return _model(tmp_path, nodes, inits, (2, 3, 6, 6), (2, 5, 3, 3), f"trunc_v2_{rounding}_{signed}", qonnx_opset=2)


def _window_sums(kept, pool) -> np.ndarray:
    """The 2x2 window sums of the codes an accumulating pool reads."""
    v = kept[pool.src[0]].astype(np.int64)
    return v[:, :, 0::2, 0::2] + v[:, :, 1::2, 0::2] + v[:, :, 0::2, 1::2] + v[:, :, 1::2, 1::2]


@pytest.mark.parametrize("rounding", ["ROUND", "FLOOR"])
@pytest.mark.parametrize("signed", [0, 1])
def test_trunc_v2_clamp_saturates_bit_exact(tmp_path, rounding, signed):
    """QONNX Trunc version 2 (what Brevitas's TruncAvgPool2d exports) after a pool: the shift rounds (half to even
    or down) and the clamp to the output bit width saturates, code for code as qonnx's executor."""
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
    sums = _window_sums(kept, pool)
    assert np.any(sums // 2 > hi) and np.any(sums % 2 == 1)  # saturated windows and ties both occur


def test_a_tie_rounds_to_even():
    from mapping.fpga_dag import _round_shift

    assert [_round_shift(v, 1, "ROUND") for v in range(-3, 4)] == [-2, -1, 0, 0, 0, 1, 2]  # -1.5 -> -2, 0.5 -> 0
    assert [_round_shift(v, 2, "ROUND") for v in (2, 6, 10, 5, 7)] == [0, 2, 2, 1, 2]
    assert [_round_shift(v, 2, "FLOOR") for v in (-1, 3, 4)] == [-1, 0, 1]
    assert [int(np.round(v / 2)) for v in range(-3, 4)] == [_round_shift(v, 1, "ROUND") for v in range(-3, 4)]


def _binary_net(tmp_path):
    """8-bit input -> conv 3->6 (bipolar weights) -> MultiThreshold (one threshold, out_scale 2, out_bias -1:
    bipolar) -> conv 6->4 (bipolar weights) -> MultiThreshold (2 per channel, uint2)."""
    rng = np.random.default_rng(5)
    w1 = rng.choice([-1.0, 1.0], (6, 3, 3, 3))
    w2 = rng.choice([-1.0, 1.0], (4, 6, 3, 3))
    t1 = rng.integers(-6, 6, (6, 1)) + 0.5
    t2 = np.sort(rng.integers(-20, 20, (4, 2)), axis=1).astype(np.float64)
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zp", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("BipolarQuant", ["w1", "one"], ["w1q"], domain=QDOMAIN),
        helper.make_node("BipolarQuant", ["w2", "one"], ["w2q"], domain=QDOMAIN),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("MultiThreshold", ["c1", "t1"], ["a1"], domain=QDOMAIN, out_dtype="BIPOLAR", out_scale=2.0,
                         out_bias=-1.0),
        helper.make_node("Conv", ["a1", "w2q"], ["c2"]),
        helper.make_node("MultiThreshold", ["c2", "t2"], ["y"], domain=QDOMAIN, out_dtype="UINT2"),
    ]
    inits = {"s_in": 1 / 4, "zp": 0.0, "b8": 8.0, "one": 1.0, "w1": w1, "w2": w2, "t1": t1 / 4, "t2": t2}
    return _model(tmp_path, nodes, inits, (2, 3, 6, 6), (2, 4, 4, 4), "binary")


def _x(shape=(2, 3, 6, 6), seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 2).astype(np.float32)


@pytest.mark.parametrize("preset", ["fpga/pynq-z1", "fpga/zc706"])
def test_multithreshold_and_trunc_pool_bit_exact(tmp_path, preset):
    path, x = _kbit_net(tmp_path), _x()
    ref = reference_outputs(path, x)[0]
    r = hwsim.simulate(path, preset, x=x)
    np.testing.assert_array_equal(r.outputs, ref)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    mvau = program.mvaus[0]
    assert mvau.thresholds.shape == (5, 3) and mvau.out_enc.kind == Enc.CODES and mvau.out_enc.offset == 0
    pool = next(x for x in program.layers if isinstance(x, AccPoolLayer))
    assert pool.shift == 2 and pool.out.bits == 2
    thr = next(x for x in program.layers if isinstance(x, ThresholdLayer))
    assert thr.out.offset == 1 and thr.out.scale == 0.5
    _, kept = run_program(program, x, keep=True)  # every intermediate code equals qonnx's value of its tensor
    vals = source_values(path, x)
    np.testing.assert_array_equal(kept[mvau.name].astype(np.float32), vals["a1"])
    np.testing.assert_array_equal(((kept[pool.name] - pool.out.offset) * pool.out.scale).astype(np.float32),
                                  vals["tr"])
    kinds = {row.op for row in r.report.layers}
    assert {"mvau", "accpool", "thresholding"} <= kinds


def test_bipolar_multithreshold_absorbed_into_mvaus(tmp_path):
    path, x = _binary_net(tmp_path), _x(seed=1)
    ref = reference_outputs(path, x)[0]
    np.testing.assert_array_equal(hwsim.simulate(path, "fpga/pynq-z1", x=x).outputs, ref)
    program = map_xnor(mapping.from_onnx(path, verify=False))
    first, second = program.mvaus
    assert isinstance(first, MVAULayer) and first.out_enc.kind == Enc.BINARY and second.in_enc.kind == Enc.BINARY
    assert second.thresholds.shape == (4, 2)
    assert not any(isinstance(x, ThresholdLayer) for x in program.layers)


@pytest.mark.parametrize("kwargs,match", [
    ({"rounding": "CEIL"}, "rounds CEIL"),
    ({"trunc_scale": 0.75}, "are not the pool's sums"),
    ({"mt2_bias": -0.3}, "not minus an integer multiple"),
])
def test_unstreamable_trunc_and_multithreshold_refused(tmp_path, kwargs, match):
    path = _kbit_net(tmp_path, name="bad", **kwargs)
    with pytest.raises(HwsimError, match=match) as e:
        map_xnor(mapping.from_onnx(path, verify=False))
    assert "\n" not in str(e.value)


def test_trunc_not_after_a_pool_refused(tmp_path):
    nodes = [
        helper.make_node("Quant", ["x", "s", "zp", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Quant", ["w", "s_w", "zp", "b3"], ["wq"], domain=QDOMAIN, signed=1, narrow=1),
        helper.make_node("Conv", ["xq", "wq"], ["c"]),
        helper.make_node("MultiThreshold", ["c", "t"], ["a"], domain=QDOMAIN, out_dtype="UINT2"),
        helper.make_node("Trunc", ["a", "one", "zp", "b2", "b1"], ["y"], domain=QDOMAIN, rounding_mode="FLOOR"),
    ]
    inits = {"s": 0.25, "zp": 0.0, "b8": 8.0, "w": np.ones((2, 3, 1, 1)), "s_w": 1.0, "b3": 3.0,
             "t": [[0.0, 1.0, 2.0]] * 2, "one": 1.0, "b2": 2.0, "b1": 1.0}
    path = _model(tmp_path, nodes, inits, (1, 3, 4, 4), (1, 2, 4, 4), "trunc_conv")
    with pytest.raises(UnsupportedOpError, match="does not follow an average pool"):
        map_xnor(mapping.from_onnx(path, verify=False))


@pytest.mark.parametrize("count", [255, 300, 511])
def test_multithreshold_codes_above_255_do_not_wrap(tmp_path, count):
    """A MultiThreshold of more than 255 thresholds per channel (a 9-bit and wider activation) gives codes up to
    ``count``: the engine's codes are exact (uint8 codes wrapped modulo 256 before)."""
    rng = np.random.default_rng(0)
    w = rng.integers(-8, 8, (4, 3, 3, 3))
    thr = np.sort(rng.uniform(-0.5, 0.5, (4, count)), axis=1)
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zp", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Quant", ["w", "s_w", "zp", "b4"], ["wq"], domain=QDOMAIN, signed=1, narrow=0),
        helper.make_node("Conv", ["xq", "wq"], ["acc"], pads=[1, 1, 1, 1]),
        helper.make_node("MultiThreshold", ["acc", "thr"], ["y"], domain=QDOMAIN, out_scale=1.0, out_bias=0.0),
    ]
    inits = {"s_in": 1 / 64, "zp": 0.0, "b8": 8.0, "w": w, "s_w": 0.01, "b4": 4.0, "thr": thr}
    path, x = _model(tmp_path, nodes, inits, (2, 3, 6, 6), (2, 4, 6, 6), f"mt{count}"), _x(seed=1)
    ref = reference_outputs(path, x)[0]
    assert ref.max() > min(count - 1, 255)  # the data reaches codes a uint8 cannot hold (for count > 255)
    np.testing.assert_array_equal(hwsim.simulate(path, "fpga/pynq-z1", x=x, folding="auto").outputs, ref)
