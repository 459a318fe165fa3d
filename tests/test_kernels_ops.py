"""fp32 kernels of the IR's transformer-era and QONNX ops against their references.

Every op runs through ``hwsim.functional.FP32_KERNELS[op](graph, node, inputs)`` on a one-node graph
(or through the ``hwsim.kernels.fp32`` wrapper) and is compared with torch's own function: max|err| <=
1e-5 * max|ref| over the finite reference values, non-finite ones (inf, NaN) matched exactly. QUANTIZE,
TRUNC and MULTITHRESHOLD must equal qonnx's numpy implementations bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwsim.functional import FP32_KERNELS, run
from hwsim.kernels import fp32
from mapping.graph import (
    Attention,
    Clamp,
    Elu,
    Gelu,
    Graph,
    GroupNorm,
    Input,
    LayerNorm,
    LeakyRelu,
    MultiThreshold,
    NoAttrs,
    Node,
    Op,
    Pad,
    Permute,
    Quantize,
    Reduce,
    Scalar,
    Slice,
    Softmax,
    Softplus,
    Trunc,
)

RTOL = 1e-5
EDGES = np.array([-100, -20, -2.5, -1e-8, 0, 1e-8, 2.5, 20, 20.0001, 100], np.float32)


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def close(ours: np.ndarray, ref, rtol: float = RTOL) -> None:
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert ours.shape == ref.shape and ref.dtype == np.float32  # a float32 reference
    finite = np.isfinite(ref)
    same = (ours == ref) | (np.isnan(ours) & np.isnan(ref))
    assert (same | finite).all(), "inf/NaN differ from the reference"
    if finite.any():
        scale = max(float(np.abs(ref[finite]).max()), 1e-30)
        err = float(np.abs(ours[finite].astype(np.float64) - ref[finite]).max())
        assert err <= rtol * scale, f"max|err| = {err:.3e}, max|ref| = {scale:.3e}"


def node_run(op: Op, attrs, *xs: np.ndarray, params: dict | None = None, shape=None) -> np.ndarray:
    """Run one node of ``op`` through the executor's kernel table; the output must be fresh f32 C-order."""
    names = tuple(f"x{i}" for i in range(len(xs)))
    params = params or {}
    node = Node("y", op, names, tuple(shape or xs[0].shape), attrs, {r: f"m.{r}" for r in params})
    g = Graph((node,), tuple(Input(n, x.shape) for n, x in zip(names, xs)), ("y",),
              {f"m.{r}": v for r, v in params.items()})
    y = FP32_KERNELS[op](g, node, list(xs))
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert not any(np.shares_memory(y, x) for x in xs)
    return y


def test_every_op_has_an_fp32_kernel():
    assert set(Op) == set(FP32_KERNELS)


# ----------------------------------------------------------------------------- elementwise
ACTIVATIONS = [
    (Op.GELU, Gelu(), lambda t: F.gelu(t)),
    (Op.GELU, Gelu("tanh"), lambda t: F.gelu(t, approximate="tanh")),
    (Op.LEAKY_RELU, LeakyRelu(0.2), lambda t: F.leaky_relu(t, 0.2)),
    (Op.ELU, Elu(0.7), lambda t: F.elu(t, 0.7)),
    (Op.MISH, NoAttrs(), F.mish),
    (Op.SOFTPLUS, Softplus(), F.softplus),
    (Op.SOFTPLUS, Softplus(beta=2.0, threshold=5.0), lambda t: F.softplus(t, 2.0, 5.0)),  # 2.5: 2x == threshold
    (Op.SOFTPLUS, Softplus(beta=0.5, threshold=1.0), lambda t: F.softplus(t, 0.5, 1.0)),
    (Op.CLAMP, Clamp(-1.0, 2.0), lambda t: t.clamp(-1.0, 2.0)),
    (Op.CLAMP, Clamp(None, 0.5), lambda t: t.clamp(max=0.5)),
    (Op.CLAMP, Clamp(-0.3, None), lambda t: t.clamp(min=-0.3)),
    (Op.CLAMP, Clamp(1.0, -1.0), lambda t: t.clamp(1.0, -1.0)),  # lo > hi: hi everywhere
    (Op.ERF, NoAttrs(), torch.erf),
    (Op.EXP, NoAttrs(), torch.exp),
    (Op.LOG, NoAttrs(), torch.log),
    (Op.SQRT, NoAttrs(), torch.sqrt),
    (Op.RSQRT, NoAttrs(), torch.rsqrt),
    (Op.ABS, NoAttrs(), torch.abs),
    (Op.NEG, NoAttrs(), torch.neg),
    (Op.ROUND, NoAttrs(), torch.round),  # half to even
    (Op.FLOOR, NoAttrs(), torch.floor),
    (Op.CEIL, NoAttrs(), torch.ceil),
    (Op.POW, Scalar(2.0), lambda t: t.pow(2.0)),
    (Op.POW, Scalar(3.0), lambda t: t.pow(3.0)),
    (Op.POW, Scalar(-1.5), lambda t: t.pow(-1.5)),
    (Op.POW, Scalar(0.5), lambda t: t.pow(0.5)),
    (Op.POW, Scalar(1.1, reverse=True), lambda t: torch.pow(1.1, t)),
    (Op.POW, Scalar(0.5, reverse=True), lambda t: torch.pow(0.5, t)),
]


@pytest.mark.parametrize("op,attrs,ref", ACTIVATIONS, ids=[f"{a[0].value}-{a[1]}" for a in ACTIVATIONS])
def test_elementwise_matches_torch(op, attrs, ref):
    """Random values, the edges (0, +-1e-8, softplus' threshold, overflow of exp) and NaN; log/sqrt/pow
    see negative inputs and zero too (NaN / inf as torch gives them)."""
    x = np.concatenate([rand(1, 997, scale=4.0), EDGES, [np.nan]]).astype(np.float32).reshape(1, 2, -1)
    with torch.no_grad():
        close(node_run(op, attrs, x), ref(torch.from_numpy(x)))


@pytest.mark.parametrize("c", [1, 5])
def test_prelu_with_one_or_c_weights(c):
    w = np.linspace(-0.5, 0.8, c, dtype=np.float32)
    for x in (rand(2, 2, 5, 3, 7), rand(3, 3, 5)):
        close(node_run(Op.PRELU, NoAttrs(), x, params={"weight": w}), F.prelu(torch.from_numpy(x), torch.from_numpy(w)))
    with pytest.raises(ValueError, match="weight has 4 entries"):
        fp32.prelu(rand(2, 2, 5, 3), np.ones(4, np.float32))


SHAPE_PAIRS = [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (1, 3, 1, 5)), ((2, 1, 4, 1), (1, 3, 1, 5)),
               ((2, 3, 5), (5,)), ((1, 7), (3, 1))]


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV])
@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS)
def test_arithmetic_broadcasts_two_inputs(op, sa, sb):
    a, b = rand(4, *sa), rand(5, *sb)
    fn = {Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div}[op]
    ref = fn(torch.from_numpy(a), torch.from_numpy(b))
    close(node_run(op, NoAttrs(), a, b, shape=tuple(ref.shape)), ref)


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV])
@pytest.mark.parametrize("reverse", [False, True])
def test_arithmetic_with_a_scalar(op, reverse):
    x = np.concatenate([rand(6, 1, 3, 11), np.zeros((1, 3, 1), np.float32)], axis=2)  # zeros: x / 0, 2.5 / 0
    t = torch.from_numpy(x)
    fn = {Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div}[op]
    ref = fn(torch.full_like(t, 2.5), t) if reverse else fn(t, 2.5)
    close(node_run(op, Scalar(2.5, reverse), x), ref)


def test_division_by_zero_and_broadcast_errors():
    y = fp32.binary(np.array([1, -1, 0], np.float32), np.float32(0), "div")
    assert y[0] == np.inf and y[1] == -np.inf and np.isnan(y[2])
    with pytest.raises(ValueError, match="x and y of shapes"):
        fp32.binary(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32), "add")
    with pytest.raises(ValueError, match="op must be one of"):
        fp32.binary(1, 2, "pow")


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("shape,norm", [((2, 7, 5), (5,)), ((3, 4, 3, 9), (3, 9)), ((2, 13), (13,))])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_layer_norm_matches_torch(shape, norm, affine, offset):
    """Against torch in float64 (rounded to float32), as for GroupNorm below: torch's own float32 GroupNorm
    is off by 1.6e-5 on 2-element groups with mean 5 (cancellation in its variance); ours is not."""
    x = rand(7, *shape) + np.float32(offset)  # an offset mean tests the variance's numerics
    params = {"gamma": rand(8, *norm), "beta": rand(9, *norm)} if affine else {}
    ref = F.layer_norm(torch.from_numpy(x).double(), norm, *(torch.from_numpy(params[r]).double() for r in params),
                       eps=1e-3).float()
    close(node_run(Op.LAYERNORM, LayerNorm(norm, 1e-3), x, params=params), ref)


@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 3), 1), ((2, 6, 5, 3), 6), ((2, 6, 5, 3), 3),
                                          ((3, 4, 7), 2), ((2, 6), 3)])
@pytest.mark.parametrize("affine", [False, True])
def test_group_norm_matches_torch(shape, groups, affine):
    x = rand(10, *shape, scale=3.0) + np.float32(5.0)
    c = shape[1]
    params = {"gamma": rand(11, c), "beta": rand(12, c)} if affine else {}
    ref = F.group_norm(torch.from_numpy(x).double(), groups, *(torch.from_numpy(params[r]).double() for r in params),
                       eps=1e-5).float()
    close(node_run(Op.GROUPNORM, GroupNorm(groups), x, params=params), ref)


def test_norm_argument_errors():
    with pytest.raises(ValueError, match="groups=4 must divide the 6 channels"):
        fp32.group_norm(rand(1, 2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) must be the trailing dims"):
        fp32.layer_norm(rand(1, 2, 6, 3), (4,))
    with pytest.raises(ValueError, match="gamma has 2 entries, expected 3"):
        fp32.layer_norm(rand(1, 2, 6, 3), (3,), np.ones(2, np.float32))


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -3])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_torch(dim, log):
    x = rand(13, 2, 5, 3, 7, scale=30.0)  # large logits: the max subtraction matters
    x[0, 1, 2, :3] = -np.inf  # masked entries
    t = torch.from_numpy(x)
    ref = torch.log_softmax(t, dim) if log else torch.softmax(t, dim)
    close(node_run(Op.SOFTMAX, Softmax(dim, log), x), ref)
    with pytest.raises(ValueError, match=r"dim must be an int in \[-4, 3\]"):
        fp32.softmax(x, 4)


REDUCTIONS = [(Op.REDUCE_MEAN, torch.mean), (Op.REDUCE_SUM, torch.sum), (Op.REDUCE_MAX, torch.amax)]


@pytest.mark.parametrize("op,fn", REDUCTIONS, ids=[r[0].value for r in REDUCTIONS])
@pytest.mark.parametrize("dims", [(1,), (-1,), (2, 3), (1, 3), (3, 1), (1, 2, 3), (-2,)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_match_torch(op, fn, dims, keepdim):
    x = rand(14, 2, 5, 3, 7) + np.float32(3.0)
    ref = fn(torch.from_numpy(x), dim=dims, keepdim=keepdim)
    close(node_run(op, Reduce(dims, keepdim), x, shape=tuple(ref.shape)), ref)


def test_reduce_max_propagates_nan_and_rejects_bad_dims():
    x = rand(15, 2, 4, 6)
    x[1, 2, 3] = np.nan
    close(fp32.reduce(x, (1,), "max"), torch.from_numpy(x).amax(1))
    with pytest.raises(ValueError, match="distinct"):
        fp32.reduce(x, (1, -2))
    with pytest.raises(ValueError, match="op must be one of"):
        fp32.reduce(x, (1,), "min")


# ----------------------------------------------------------------------------- data movement
@pytest.mark.parametrize("perm", [(0, 2, 1), (0, 3, 1, 2), (0, -1, -3, -2)])
def test_permute_matches_torch(perm):
    x = rand(16, *((2, 3, 5) if len(perm) == 3 else (2, 3, 4, 5)))
    close(node_run(Op.PERMUTE, Permute(perm), x, shape=torch.from_numpy(x).permute(perm).shape),
          torch.from_numpy(x).permute(perm))
    with pytest.raises(ValueError, match="permutation"):
        fp32.permute(x, (0,) * x.ndim)


@pytest.mark.parametrize("pads,value", [(((0, 0), (1, 2), (0, 3), (2, 0)), 0.0),
                                        (((0, 0), (0, 0), (3, 1), (1, 1)), -1.5),
                                        (((0, 0), (2, -1), (-2, 1), (0, -3)), 0.25)])  # negative pads crop
def test_pad_matches_torch(pads, value):
    x = rand(17, 2, 3, 4, 5)
    torch_pads = [p for pair in reversed(pads) for p in pair]  # F.pad: last dim first
    ref = F.pad(torch.from_numpy(x), torch_pads, value=value)
    close(node_run(Op.PAD, Pad(pads, value), x, shape=ref.shape), ref)
    with pytest.raises(ValueError, match="pads has 3 pairs"):
        fp32.pad(x, pads[:3])


@pytest.mark.parametrize("dim,start,stop,step", [(2, 1, 6, 2), (1, 0, 3, 2), (3, 1, 3, 1), (1, 2, 3, 3)])
def test_slice_with_step(dim, start, stop, step):
    x = rand(18, 2, 3, 7, 4)
    ref = torch.from_numpy(x)[(slice(None),) * dim + (slice(start, stop, step),)]
    assert np.array_equal(node_run(Op.SLICE, Slice(dim, start, stop, step), x, shape=ref.shape), ref.numpy())


def test_constant_broadcasts_over_the_run_batch():
    value = rand(19, 1, 3, 4)
    x = rand(20, 5, 2)  # batch 5, while the node was traced with batch 1
    y = node_run(Op.CONSTANT, NoAttrs(), x, params={"value": value}, shape=(1, 3, 4))
    assert y.shape == (5, 3, 4) and np.array_equal(y, np.repeat(value, 5, axis=0))


# ----------------------------------------------------------------------------- products
@pytest.mark.parametrize("sa,sb", [((2, 4, 5), (2, 5, 3)), ((2, 3, 4, 5), (2, 3, 5, 6)),
                                   ((2, 1, 4, 5), (1, 3, 5, 6)), ((2, 3, 1, 5), (2, 3, 5, 1))])
def test_matmul_matches_torch(sa, sb):
    a, b = rand(21, *sa), rand(22, *sb)
    ref = torch.matmul(torch.from_numpy(a), torch.from_numpy(b))
    close(node_run(Op.MATMUL, NoAttrs(), a, b, shape=ref.shape), ref)
    with pytest.raises(ValueError, match="columns"):
        fp32.matmul(a, a)


@pytest.mark.parametrize("lq,s,e,ev", [(5, 5, 8, 8), (4, 7, 8, 3), (7, 3, 6, 5), (1, 9, 4, 4)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
@pytest.mark.parametrize("heads", [(), (3,)])
def test_attention_matches_torch(lq, s, e, ev, causal, scale, heads):
    q, k, v = rand(23, 2, *heads, lq, e), rand(24, 2, *heads, s, e), rand(25, 2, *heads, s, ev)
    ref = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
                                         is_causal=causal, scale=scale)
    close(node_run(Op.ATTENTION, Attention(scale, causal), q, k, v, shape=ref.shape), ref)


def test_attention_argument_errors():
    q = rand(26, 2, 4, 8)
    with pytest.raises(ValueError, match="k has 6 features per key, q has 8"):
        fp32.attention(q, rand(1, 2, 5, 6), rand(2, 2, 5, 8))
    with pytest.raises(ValueError, match="v has 4 keys, k has 5"):
        fp32.attention(q, rand(1, 2, 5, 8), rand(2, 2, 4, 8))


# ----------------------------------------------------------------------------- QONNX ops
def _f32(v) -> np.ndarray:
    return np.array(v, dtype=np.float32)  # QONNX initializers are float32 tensors


QUANT_CASES = [(bits, signed, narrow, zp, rnd) for bits in (1, 2, 4, 8) for signed in (False, True)
               for narrow in (False, True) for zp in (0.0, 1.5) for rnd in ("ROUND", "CEIL", "FLOOR")]


@pytest.mark.parametrize("bits,signed,narrow,zp,rounding", QUANT_CASES)
def test_quantize_equals_qonnx_quant(bits, signed, narrow, zp, rounding):
    int_quant = pytest.importorskip("qonnx.custom_op.general.intquant").int_quant
    scale = 0.25
    halves = np.arange(-700, 700, dtype=np.float32) * np.float32(scale / 2)  # exact .5 ties of x / scale
    x = np.concatenate([halves, rand(27, 301, scale=20.0), [np.nan]]).reshape(1, 2, -1).astype(np.float32)
    ref = int_quant(x, _f32(scale), _f32(zp), _f32(bits), signed, narrow, rounding)
    y = node_run(Op.QUANTIZE, Quantize(bits, scale, signed, zp, narrow, rounding), x)
    assert ref.dtype == np.float32 and np.array_equal(y, ref, equal_nan=True)


def test_quantize_ranges_and_rounding_document_the_semantics():
    x = np.array([[-100.0, -2.5, -0.5, 0.5, 1.5, 100.0]], np.float32)
    assert fp32.quantize(x, 4, 1.0, signed=True).tolist() == [[-8, -2, -0, 0, 2, 7]]  # half to even
    assert fp32.quantize(x, 4, 1.0, signed=True, narrow=True).tolist() == [[-7, -2, 0, 0, 2, 7]]
    assert fp32.quantize(x, 4, 1.0, narrow=True).tolist() == [[0, 0, 0, 0, 2, 14]]  # unsigned narrow: top end
    assert fp32.quantize(x, 4, 1.0, signed=True, rounding="CEIL").tolist() == [[-8, -2, 0, 1, 2, 7]]
    assert fp32.quantize(x, 1, 1.0, signed=True).tolist() == [[-1, -1, -1, 1, 1, 1]]  # qonnx: bipolar
    with pytest.raises(ValueError, match="rounding must be one of"):
        fp32.quantize(x, 4, 1.0, rounding="NEAREST")


@pytest.mark.parametrize("in_bits,out_bits", [(8, 4), (8, 8), (6, 1), (16, 7)])
@pytest.mark.parametrize("zp", [0.0, 2.0])
@pytest.mark.parametrize("rounding", ["FLOOR", "ROUND", "CEIL", "HALF_UP", "DOWN"])
@pytest.mark.parametrize("scale", [0.125, 0.3])
def test_trunc_equals_qonnx_trunc(in_bits, out_bits, zp, rounding, scale):
    trunc_v1 = pytest.importorskip("qonnx.custom_op.general.trunc").trunc_v1
    codes = np.arange(-(2 ** (in_bits - 1)), 2 ** (in_bits - 1), max(1, 2 ** in_bits // 512), dtype=np.float32)
    x = np.concatenate([codes * np.float32(scale), rand(28, 97, scale=4.0)]).reshape(1, 1, -1).astype(np.float32)
    ref = trunc_v1(x, _f32(scale), _f32(zp), _f32(in_bits), _f32(out_bits), rounding)
    y = node_run(Op.TRUNC, Trunc(in_bits, out_bits, scale, zp, rounding), x)
    assert ref.dtype == np.float32 and np.array_equal(y, ref)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5, 4)])
@pytest.mark.parametrize("rows", ["channel", "global"])
@pytest.mark.parametrize("out_scale,out_bias", [(1.0, 0.0), (0.1, -0.35)])
def test_multithreshold_equals_qonnx(shape, rows, out_scale, out_bias):
    multithreshold = pytest.importorskip("qonnx.custom_op.general.multithreshold").multithreshold
    c = shape[1] if rows == "channel" else 1
    thresholds = rand(29, c, 15, scale=2.0)
    thresholds[:, ::3] = np.sort(thresholds[:, ::3])  # unsorted rows are allowed: it counts
    x = rand(30, *shape, scale=2.5)
    flat = x.reshape(-1)
    flat[: min(flat.size, 5)] = thresholds[0, :5][: flat.size]  # ties: x == t counts (>=)
    flat[-1] = np.nan
    ref = multithreshold(x, thresholds, out_scale, out_bias)
    y = node_run(Op.MULTITHRESHOLD, MultiThreshold(out_scale, out_bias), x, params={"thresholds": thresholds})
    assert ref.dtype == np.float32 and np.array_equal(y, ref)
    with pytest.raises(ValueError, match="thresholds has 2 rows"):
        fp32.multithreshold(np.ones((1, 3), np.float32), np.ones((2, 4), np.float32))


# ----------------------------------------------------------------------------- whole graphs, imports
def test_run_executes_a_graph_of_new_ops_at_another_batch_size():
    """LAYERNORM -> ADD(CONSTANT) -> GELU -> ATTENTION(self) -> SOFTMAX -> REDUCE_MEAN, traced at batch 1, run at 3."""
    value, gamma = rand(31, 1, 4, 6), rand(32, 6)
    nodes = (Node("ln", Op.LAYERNORM, ("x",), (1, 4, 6), LayerNorm((6,)), {"gamma": "ln.w"}),
             Node("pos", Op.CONSTANT, ("x",), (1, 4, 6), NoAttrs(), {"value": "pos"}),
             Node("add", Op.ADD, ("ln", "pos"), (1, 4, 6)),
             Node("act", Op.GELU, ("add",), (1, 4, 6), Gelu("tanh")),
             Node("att", Op.ATTENTION, ("act", "act", "add"), (1, 4, 6), Attention(causal=True)),
             Node("sm", Op.SOFTMAX, ("att",), (1, 4, 6), Softmax(-1, log=True)),
             Node("mean", Op.REDUCE_MEAN, ("sm",), (1, 6), Reduce((1,))))
    g = Graph(nodes, (Input("x", (1, 4, 6)),), ("mean",), {"ln.w": gamma, "pos": value})
    x = rand(33, 3, 4, 6)
    t = F.layer_norm(torch.from_numpy(x), (6,), torch.from_numpy(gamma)) + torch.from_numpy(value)
    a = F.gelu(t, approximate="tanh")
    ref = torch.log_softmax(F.scaled_dot_product_attention(a, a, t, is_causal=True), -1).mean(1)
    (y,) = run(g, x)
    close(y, ref)


def test_new_kernel_modules_do_not_import_torch():
    import ast
    from pathlib import Path

    import hwsim.kernels as pkg
    for name in ("_nn_fp32", "_ops_fp32"):
        tree = ast.parse((Path(pkg.__file__).parent / f"{name}.py").read_text())
        mods = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(m.split(".")[0] in ("torch", "qonnx") for m in mods), f"{name}.py imports torch/qonnx"


def test_round_is_half_to_even_and_floor_ceil_follow_torch_at_the_boundaries():
    x = np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 3.49999, -3.50001, 1e30, np.inf, -np.inf, np.nan],
                 dtype=np.float32)
    t = torch.from_numpy(x)
    for fn, ref in (("round", torch.round), ("floor", torch.floor), ("ceil", torch.ceil)):
        np.testing.assert_array_equal(fp32.unary(x, fn), ref(t).numpy())
