"""Counts and costs of the transformer / imported-model ops on the cpu, imc and fpga targets (hand-built graphs)."""
import math

import numpy as np
import pytest

import hwsim
from hwsim.cpu.cost import kernel_kind, layer_cost, placement
from mapping.analysis import elementwise_ops, function_ops, node_macs, totals
from mapping.graph import (
    Attention,
    Clamp,
    Conv2d,
    Elu,
    Gelu,
    Graph,
    GroupNorm,
    Input,
    LayerNorm,
    LeakyRelu,
    Linear,
    MultiThreshold,
    NoAttrs,
    Node,
    Op,
    Pad,
    Permute,
    Reduce,
    Reshape,
    Scalar,
    Slice,
    Softmax,
    Softplus,
    Trunc,
)

RNG = np.random.default_rng(0)


def _p(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _linear(name, src, shape, fin, fout, params):
    params[f"{name}.weight"], params[f"{name}.bias"] = _p(fout, fin), _p(fout)
    return Node(name, Op.LINEAR, (src,), shape, Linear(fin, fout),
                {"weight": f"{name}.weight", "bias": f"{name}.bias"}, module=name)


def _layernorm(name, src, shape, params):
    params[f"{name}.weight"], params[f"{name}.bias"] = _p(shape[-1]), _p(shape[-1])
    return Node(name, Op.LAYERNORM, (src,), shape, LayerNorm((shape[-1],)),
                {"gamma": f"{name}.weight", "beta": f"{name}.bias"}, module=name)


def block(L=16, D=32, heads=4, hidden=64, batch=1) -> Graph:
    """A pre-norm transformer block on (batch, L, D) tokens, attention as one ATTENTION node."""
    e, p = D // heads, {}
    t, t3 = (batch, L, D), (batch, 3, heads, L, e)
    nodes = [_layernorm("ln1", "x", t, p), _linear("qkv", "ln1", (batch, L, 3 * D), D, 3 * D, p),
             Node("r1", Op.RESHAPE, ("qkv",), (batch, L, 3, heads, e), Reshape((L, 3, heads, e))),
             Node("p1", Op.PERMUTE, ("r1",), t3, Permute((0, 2, 3, 1, 4)))]
    for i, nm in enumerate("qkv"):
        nodes += [Node(f"{nm}_s", Op.SLICE, ("p1",), (batch, 1, heads, L, e), Slice(1, i, i + 1)),
                  Node(f"{nm}_h", Op.RESHAPE, (f"{nm}_s",), (batch, heads, L, e), Reshape((heads, L, e)))]
    nodes += [Node("att", Op.ATTENTION, ("q_h", "k_h", "v_h"), (batch, heads, L, e), Attention(), module="attn"),
              Node("p2", Op.PERMUTE, ("att",), (batch, L, heads, e), Permute((0, 2, 1, 3))),
              Node("r2", Op.RESHAPE, ("p2",), t, Reshape((L, D))), _linear("proj", "r2", t, D, D, p),
              Node("add1", Op.ADD, ("x", "proj"), t), _layernorm("ln2", "add1", t, p),
              _linear("fc1", "ln2", (batch, L, hidden), D, hidden, p),
              Node("gelu", Op.GELU, ("fc1",), (batch, L, hidden), Gelu()),
              _linear("fc2", "gelu", t, hidden, D, p), Node("add2", Op.ADD, ("add1", "fc2"), t)]
    return Graph(tuple(nodes), (Input("x", t),), ("add2",), p, name="block")


def cnn() -> Graph:
    """pad -> conv -> group norm -> PReLU -> + a CONSTANT positional map -> mean over H, W -> linear -> softmax."""
    p = {"conv.weight": _p(8, 3, 3, 3), "conv.bias": _p(8), "gn.weight": _p(8), "gn.bias": _p(8), "act.weight": _p(8),
         "pos": _p(1, 8, 16, 16), "fc.weight": _p(10, 8), "fc.bias": _p(10)}
    f = (1, 8, 16, 16)
    nodes = (Node("pad", Op.PAD, ("x",), (1, 3, 18, 18), Pad(((0, 0), (0, 0), (1, 1), (1, 1)))),
             Node("conv", Op.CONV2D, ("pad",), f, Conv2d(3, 8, (3, 3)), {"weight": "conv.weight", "bias": "conv.bias"},
                  module="conv"),
             Node("gn", Op.GROUPNORM, ("conv",), f, GroupNorm(2), {"gamma": "gn.weight", "beta": "gn.bias"}),
             Node("act", Op.PRELU, ("gn",), f, params={"weight": "act.weight"}),
             Node("pos", Op.CONSTANT, ("x",), f, params={"value": "pos"}, module="pos_embed"),
             Node("add", Op.ADD, ("act", "pos"), f),
             Node("mean", Op.REDUCE_MEAN, ("add",), (1, 8), Reduce((2, 3))),
             Node("fc", Op.LINEAR, ("mean",), (1, 10), Linear(8, 10), {"weight": "fc.weight", "bias": "fc.bias"},
                  module="fc"),
             Node("sm", Op.SOFTMAX, ("fc",), (1, 10), Softmax(1)))
    return Graph(nodes, (Input("x", (1, 3, 16, 16)),), ("sm",), p, name="cnn")


def elementwise_zoo() -> Graph:
    """Every remaining new op once, on a (1, 4, 6, 6) map (values are irrelevant: cost only)."""
    s = (1, 4, 6, 6)
    chain = [(Op.LEAKY_RELU, LeakyRelu(0.1)), (Op.ELU, Elu()), (Op.MISH, None), (Op.SOFTPLUS, Softplus()),
             (Op.CLAMP, Clamp(-1.0, 1.0)), (Op.ABS, None), (Op.SQRT, None), (Op.RSQRT, None), (Op.LOG, None),
             (Op.EXP, None), (Op.ERF, None), (Op.NEG, None), (Op.POW, Scalar(3.0)), (Op.POW, Scalar(2.5)),
             (Op.SUB, Scalar(1.0)), (Op.TRUNC, Trunc(8, 4, 0.1)), (Op.ROUND, None), (Op.FLOOR, None), (Op.CEIL, None)]
    nodes, prev = [], "x"
    for i, (op, attrs) in enumerate(chain):
        nodes.append(Node(f"n{i}", op, (prev,), s, NoAttrs() if attrs is None else attrs))
        prev = f"n{i}"
    p = {"thr": np.sort(_p(4, 3), axis=1)}
    nodes += [Node("div", Op.DIV, (prev, "x"), s), Node("mt", Op.MULTITHRESHOLD, ("div",), s, MultiThreshold(),
                                                           {"thresholds": "thr"}),
              Node("strided", Op.SLICE, ("mt",), (1, 4, 3, 6), Slice(2, 0, 6, 2)),
              Node("rsum", Op.REDUCE_SUM, ("strided",), (1, 4), Reduce((2, 3))),
              Node("rmax", Op.REDUCE_MAX, ("rsum",), (1, 1), Reduce((1,), keepdim=True)),
              Node("mm", Op.MATMUL, ("x", "x"), s)]
    return Graph(tuple(nodes), (Input("x", s),), ("rmax", "mm"), p, name="zoo")


# ----------------------------------------------------------------------------- counts
def test_macs_of_a_transformer_block_equal_the_hand_count():
    g = block()
    macs = {n.name: node_macs(n, g) for n in g.nodes if node_macs(n, g)}
    assert macs == {"qkv": 16 * 32 * 96, "att": 4 * (16 * 16 * 8 + 16 * 16 * 8), "proj": 16 * 32 * 32,
                    "fc1": 16 * 32 * 64, "fc2": 16 * 64 * 32}
    assert totals(g).macs == sum(macs.values()) == 147456
    with pytest.raises(ValueError, match="needs the graph"):
        node_macs(g["att"])


def test_matmul_macs_per_leading_element_with_broadcasting():
    for b_shape in ((1, 2, 7, 3), (1, 1, 7, 3)):
        g = Graph((Node("mm", Op.MATMUL, ("a", "b"), (1, 2, 5, 3)),), (Input("a", (1, 2, 5, 7)), Input("b", b_shape)),
                  ("mm",))
        assert node_macs(g["mm"], g) == 2 * 5 * 7 * 3
        assert elementwise_ops(g, g["mm"]) == 0


def test_elementwise_ops_and_parameters_of_the_new_ops():
    g, c = block(), cnn()
    assert elementwise_ops(g, g["ln1"]) == 16 * 32 and elementwise_ops(g, g["gelu"]) == 16 * 64
    assert elementwise_ops(g, g["att"]) == 4 * 16 * 16  # its softmax over the scores
    assert [elementwise_ops(g, g[n]) for n in ("p1", "q_s", "r2")] == [0, 0, 0]
    assert [elementwise_ops(c, c[n]) for n in ("pad", "pos")] == [0, 0]
    assert elementwise_ops(c, c["mean"]) == 8 * 16 * 16  # one per input element
    assert elementwise_ops(c, c["gn"]) == elementwise_ops(c, c["act"]) == 8 * 16 * 16
    z = elementwise_zoo()
    assert elementwise_ops(z, z["mt"]) == 4 * 36 * 3  # one compare per threshold
    assert function_ops(c["sm"]) == 14 and function_ops(z["n12"]) == 2 and function_ops(z["n13"]) == 21
    # CONSTANT / PReLU / group norm / layer norm / MultiThreshold parameters are parameters
    assert c.param_count == 8 * 27 + 8 + 8 + 8 + 8 + 8 * 256 + 80 + 10
    assert g.param_count == sum(v.size for v in g.params.values()) and z.param_count == 12


NEW_OPS = {Op.GELU, Op.LEAKY_RELU, Op.PRELU, Op.ELU, Op.MISH, Op.SOFTPLUS, Op.CLAMP, Op.EXP, Op.LOG, Op.SQRT, Op.RSQRT,
           Op.ERF, Op.ABS, Op.NEG, Op.POW, Op.SUB, Op.DIV, Op.LAYERNORM, Op.GROUPNORM, Op.SOFTMAX, Op.REDUCE_MEAN,
           Op.REDUCE_SUM, Op.REDUCE_MAX, Op.PERMUTE, Op.PAD, Op.CONSTANT, Op.MATMUL, Op.ATTENTION, Op.TRUNC,
           Op.MULTITHRESHOLD, Op.ROUND, Op.FLOOR, Op.CEIL}


def test_the_graphs_cover_every_new_op():
    assert NEW_OPS <= {n.op for make in (block, cnn, elementwise_zoo) for n in make().nodes}


# ----------------------------------------------------------------------------- every node costs something
@pytest.mark.parametrize("spec", ["cpu/cortex-a72", "cpu/cortex-m7", "imc/isaac"])
@pytest.mark.parametrize("make", [block, cnn, elementwise_zoo])
def test_every_node_gets_a_finite_positive_cost(spec, make):
    g = make()
    rep = hwsim.simulate(g, spec).report
    assert [lr.name for lr in rep.layers] == [n.name for n in g.nodes]
    for lr in rep.layers:
        if lr.op == "reshape":  # a view: free on every target
            assert lr.latency_s == 0
            continue
        if lr.op == "pad" and spec == "cpu/cortex-m7":  # a zero pad before a conv: folded into it by CMSIS-NN
            assert lr.latency_s == 0 and lr.extra["kernel"] == "fused"
            continue
        assert 0 < lr.latency_s < 1 and math.isfinite(lr.energy_j) and lr.energy_j > 0, (spec, lr.name)
    assert {lr.name: lr.macs for lr in rep.layers if lr.op in ("matmul", "attention")} == \
        {n.name: node_macs(n, g) * g.batch for n in g.nodes if n.op in (Op.MATMUL, Op.ATTENTION)}


def test_cpu_kernel_kinds_of_the_new_ops():
    g, c, z = block(), cnn(), elementwise_zoo()
    spec = hwsim.load_preset("cpu/cortex-a72")
    kinds = {n.name: kernel_kind(n, spec) for gr in (g, c, z) for n in gr.nodes}
    assert (kinds["att"], kinds["mm"], kinds["p1"], kinds["pad"], kinds["pos"]) == \
        ("attention", "matmul", "move", "move", "view")
    assert {kinds[n] for n in ("ln1", "gelu", "gn", "act", "mean", "sm", "div", "mt", "rsum", "n0", "n15")} == \
        {"elementwise"}


def _attention(L, E=64, heads=4):
    s = (1, heads, L, E)
    return Graph((Node("att", Op.ATTENTION, ("q", "k", "v"), s, Attention()),),
                 tuple(Input(n, s) for n in "qkv"), ("att",))


@pytest.mark.parametrize("name", ["cpu/cortex-a72", "cpu/cortex-m7"])
def test_attention_cpu_cost_grows_quadratically_with_tokens(name):
    spec = hwsim.load_preset(name)
    t = []
    for L in (256, 512):
        g = _attention(L)
        t.append(layer_cost(g, g.nodes[0], spec, placement(g, spec, 0, spec.cores), spec.cores).latency_s)
    assert 3.5 < t[1] / t[0] < 4.3


def test_attention_cost_counts_the_score_matrix_traffic():
    spec = hwsim.load_preset("cpu/cortex-a72")
    g = _attention(512)
    c = layer_cost(g, g.nodes[0], spec, placement(g, spec, 0, 1), 1)
    qkvo = 4 * 4 * 512 * 64 * 4
    assert c.main_memory_bytes >= qkvo + 4 * 4 * 512 * 512 * 4  # 4 MiB of scores, 4 passes, do not fit the L2


# ----------------------------------------------------------------------------- imc
def test_imc_puts_weights_on_crossbars_and_the_rest_on_the_digital_unit():
    spec = hwsim.load_preset("imc/isaac")
    g = block()
    rep = hwsim.simulate(g, spec).report
    by = {lr.name: lr for lr in rep.layers}
    assert {by[n].placement for n in ("qkv", "proj", "fc1", "fc2")} == {"onchip"}
    assert by["qkv"].extra["adc_conversions"] > 0
    for n in ("att", "ln1", "ln2", "gelu", "p1", "add1"):
        assert by[n].placement == "digital"
    # the per-op energies: Horowitz ISSCC'14 at 45 nm scaled by (32 nm / 45 nm)^2, 16-bit activations on ISAAC
    scale = (32 / 45) ** 2
    assert math.isclose(spec.digital_mac_energy_pj, (0.2 * 4 + 0.1) * scale)
    assert math.isclose(spec.digital_fp_energy_pj, (3.7 + 0.9) * scale)
    e_att = 16384 * spec.digital_mac_energy_pj + 4 * 16 * 16 * 15 * spec.digital_fp_energy_pj
    assert math.isclose(by["att"].energy_breakdown["digital"], e_att * 1e-12, rel_tol=1e-12)
    assert math.isclose(by["ln1"].energy_breakdown["digital"], 16 * 32 * 6 * spec.digital_fp_energy_pj * 1e-12)
    assert math.isclose(by["gelu"].energy_breakdown["digital"], 16 * 64 * 17 * spec.digital_fp_energy_pj * 1e-12)
    assert by["gelu"].extra["activations"] == "fused"  # applied on fc1's outputs on their way to the buffer
    assert math.isclose(by["add1"].energy_breakdown["digital"], 16 * 32 * spec.digital_energy_pj_per_op * 1e-12)
    assert by["att"].macs == 16384 and by["att"].extra["mac_ops"] == 16384
    c = hwsim.simulate(cnn(), spec).report
    sm = next(lr for lr in c.layers if lr.name == "sm")
    assert sm.placement == "digital" and math.isclose(sm.energy_breakdown["digital"],
                                                      10 * 14 * spec.digital_fp_energy_pj * 1e-12)
    layer = hwsim.simulate(g, spec, mode="layer").report
    assert layer.latency_s >= rep.latency_s > 0


def test_imc_pipeline_waits_for_all_keys_and_values():
    from hwsim.imc.schedule import _needed

    g = block()
    att, shape = g["att"], g.shape_of("q_h")  # (1, heads, L, e): rows are the L tokens
    assert [_needed(att, 4, shape, i) for i in range(3)] == [4, 16, 16]  # queries row by row, keys and values whole
    assert _needed(g["p2"], 1, g.shape_of("att"), 0) == 16  # a permute moving the rows needs its whole input


def test_imc_linear_over_tokens_is_one_mvm_per_token():
    rep = hwsim.simulate(block(), "imc/isaac", mode="layer").report
    qkv = next(lr for lr in rep.layers if lr.name == "qkv")
    spec = hwsim.load_preset("imc/isaac")
    # 16 tokens = 16 MVMs of one crossbar copy: 16 x (16 input bits x 100 ns)
    assert math.isclose(qkv.extra["compute_s"], 16 * spec.mvm_time_s)


def test_fit_counts_only_conv_and_linear_weights():
    fr = hwsim.fit(block(), "imc/isaac")
    assert set(fr.crossbars_by_layer) == {"qkv.weight", "proj.weight", "fc1.weight", "fc2.weight"}
    assert fr.weight_matrices == 4 and fr.fits
    assert fr.buffer_param_bytes == 4 * 32 * 16 // 8  # the two layer norms' gamma and beta, 16-bit
    fc = hwsim.fit(cnn(), "imc/isaac")
    assert set(fc.crossbars_by_layer) == {"conv.weight", "fc.weight"}
    assert fc.buffer_param_bytes == (8 + 8 + 8 + 8 * 256) * 2  # group norm, PReLU, the positional CONSTANT
    assert "tile buffers, not the crossbars" in fc.reason


# ----------------------------------------------------------------------------- xnor
def test_fpga_engine_refuses_with_the_node_named():
    with pytest.raises(hwsim.UnsupportedOpError, match=r"'layernorm' \(node 'ln1'"):
        hwsim.simulate(block(), "fpga/pynq-z1")
    s = (1, 4, 8)
    g = Graph((Node("self_att", Op.ATTENTION, ("x", "x", "x"), s, Attention(), module="blocks.0.attn"),),
              (Input("x", s),), ("self_att",))
    with pytest.raises(hwsim.UnsupportedOpError) as e:
        hwsim.simulate(g, "fpga/pynq-z1")
    msg = str(e.value)
    assert "non-binary attention (node 'self_att'" in msg and "blocks.0.attn" in msg and "\n" not in msg
    with pytest.raises(hwsim.UnsupportedOpError, match=r"'constant' \(node 'pos', module 'pos_embed'\)"):
        hwsim.simulate(cnn().replace(nodes=cnn().nodes[4:5], outputs=("pos",)), "fpga/pynq-z1")
