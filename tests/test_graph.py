"""The IR: tracing, shapes, shared parameters, multiple outputs, refusals at trace time."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mapping
from hwsim.errors import HwsimError, ShapeError, UnsupportedOpError
from mapping.graph import Graph, Input, Node, Op


class Shared(nn.Module):
    """A block executed T times with shared weights, one head per iteration."""

    def __init__(self, t=3):
        super().__init__()
        self.t = t
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for _ in range(self.t):
            x = self.block(x) + x
            outs.append(self.head(torch.flatten(self.pool(x), 1)))
        return tuple(outs)


def test_shared_block_params_counted_once_and_one_node_per_execution():
    m = Shared(t=4)
    g = mapping.trace(m, (1, 3, 16, 16))
    convs = [n for n in g if n.op == Op.CONV2D]
    assert len(convs) == 1 + 4  # stem + 4 executions of the block conv
    keys = {n.params["weight"] for n in convs[1:]}
    assert keys == {"block.0.weight"}
    assert g.param_count == sum(p.numel() for p in m.parameters())
    assert len(g.outputs) == 4
    assert all(g[o].shape == (1, 5) for o in g.outputs)


def test_shapes_match_torch_for_every_node():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
            self.mp = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.ap = nn.AvgPool2d(2)

        def forward(self, x):
            y = self.mp(F.relu6(self.c(x)))
            return F.interpolate(self.ap(y), scale_factor=2, mode="bilinear", align_corners=False)

    g = mapping.trace(M(), (2, 4, 17, 23))
    with torch.no_grad():
        ref = M()(torch.zeros(2, 4, 17, 23))
    assert g[g.outputs[0]].shape == tuple(ref.shape)
    conv = next(n for n in g if n.op == Op.CONV2D)
    a = conv.attrs
    assert (a.kernel, a.stride, a.padding, a.dilation, a.groups) == ((3, 5), (2, 1), (1, 2), (1, 2), 2)
    up = next(n for n in g if n.op == Op.UPSAMPLE)
    assert up.attrs.mode == "bilinear" and not up.attrs.align_corners


def test_channel_shuffle_split_cat_and_broadcast_mul_are_recognised():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(8, 8, 1)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Hardsigmoid())

        def forward(self, x):
            n, c, h, w = x.size()
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            a, b = x.chunk(2, dim=1)
            y = torch.cat([a, self.c(torch.cat([a, b], 1))[:, :4]], dim=1)
            return y * self.se(y)

    g = mapping.trace(M(), (1, 8, 5, 5))
    ops = [n.op for n in g]
    assert Op.CHANNEL_SHUFFLE in ops and ops.count(Op.SLICE) == 3 and Op.CONCAT in ops
    shuffle = next(n for n in g if n.op == Op.CHANNEL_SHUFFLE)
    assert shuffle.attrs.groups == 2
    mul = next(n for n in g if n.op == Op.MUL)
    assert [g.shape_of(i) for i in mul.inputs] == [(1, 8, 5, 5), (1, 8, 1, 1)]


def test_dropout_and_identity_vanish():
    m = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Identity(), nn.Linear(12, 3))
    g = mapping.trace(m, (1, 3, 2, 2))
    assert [n.op for n in g] == [Op.RESHAPE, Op.LINEAR]


def test_scalar_arithmetic_is_kept_as_constant_operand():
    class M(nn.Module):
        def forward(self, x):
            return (x * 0.5 + 1.0 - 2.0) / 4.0

    g = mapping.trace(M(), (1, 2, 3, 3))
    assert [n.op for n in g] == [Op.MUL, Op.ADD, Op.SUB, Op.DIV]  # subtraction and division as torch computes them
    assert [n.attrs.value for n in g] == [0.5, 1.0, 2.0, 4.0]


def test_unsupported_op_names_op_and_module_path():
    class Inner(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    m = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.ReLU(), Inner()))
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(m, (1, 3, 4, 4))
    assert "cumsum" in str(e.value) and "1.1" in str(e.value)
    assert isinstance(e.value, HwsimError)


def test_unsupported_module_is_refused_at_trace_time():
    m = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Unfold(2))
    with pytest.raises(UnsupportedOpError):
        mapping.trace(m, (1, 3, 4, 4))


def test_data_dependent_control_flow_is_a_clear_error():
    class M(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedOpError, match="cannot trace"):
        mapping.trace(M(), (1, 3, 4, 4))


@pytest.mark.parametrize("shape", [(1, 3, 0, 4), (1, 3), (1, 5, 8, 8)])
def test_bad_input_shape(shape):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ShapeError):
        mapping.trace(m, shape)


def test_graph_validates_references():
    n = Node("a", Op.RELU, ("missing",), (1, 2))
    with pytest.raises(ValueError, match="before they are produced"):
        Graph((n,), (Input("x", (1, 2)),), ("a",))
    n = Node("a", Op.LINEAR, ("x",), (1, 2), params={"weight": "w"})
    with pytest.raises(ValueError, match="missing parameter"):
        Graph((n,), (Input("x", (1, 2)),), ("a",))
    g = Graph((Node("a", Op.RELU, ("x",), (1, 2)),), (Input("x", (1, 2)),), ("a",), {"w": np.zeros(3)})
    assert g.param_count == 0  # unreferenced parameters are not counted


def test_trace_restores_training_mode():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    m.train()
    mapping.trace(m, (1, 3, 8, 8))
    assert m.training


def test_graph_pickles_for_process_executors():
    import pickle

    g = mapping.trace(Shared(t=2), (1, 3, 8, 8))
    h = pickle.loads(pickle.dumps(g))
    assert [n.name for n in h] == [n.name for n in g] and h.outputs == g.outputs
    assert all(np.array_equal(h.params[k], g.params[k]) for k in g.params)
    assert h.nodes[1].params == g.nodes[1].params and h.param_count == g.param_count
