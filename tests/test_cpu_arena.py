"""The TFLite-Micro-style arena planner (hwsim.cpu.arena) against hand-computed plans, and its invariants."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mapping
from hwsim.cpu.arena import Buffer, flash_bytes, plan_arena, plan_int8_arena, plan_program_arena, tensor_buffers
from hwsim.cpu.int8 import quantize_int8
from mapping.passes.fold_bn import fold_bn


def _no_overlap(plan) -> None:
    """No two buffers live at one scope share a byte."""
    bs = plan.buffers
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                oa, ob = plan.offsets[a.name], plan.offsets[b.name]
                assert oa + plan.size(a.name) <= ob or ob + plan.size(b.name) <= oa, (a, b, plan.offsets)


def test_chain_by_hand():
    # x -> a -> b -> c: lifetimes x [0,1], a [1,2], b [2,3], c [3,3]; aligned sizes 112, 208, 64, 16
    bufs, alias = tensor_buffers([("x", 100)], [("a", ("x",), 200, False), ("b", ("a",), 50, False),
                                            ("c", ("b",), 10, False)], ["c"])
    assert [(b.name, b.first, b.last) for b in bufs] == [("x", 0, 1), ("a", 1, 2), ("b", 2, 3), ("c", 3, 3)]
    plan = plan_arena(bufs)
    # a (largest) at 0; x overlaps a -> after it at 208; b overlaps a only -> 208; c overlaps b only -> fits at 0
    assert dict(plan.offsets) == {"a": 0, "x": 208, "b": 208, "c": 0}
    assert plan.arena_bytes == 320 and not alias
    _no_overlap(plan)


def test_residual_by_hand():
    # x -> a = conv(x); b = conv(a); c = add(a, b): a stays live across b
    ops = [("a", ("x",), 64, False), ("b", ("a",), 64, False), ("c", ("a", "b"), 64, False)]
    bufs, _ = tensor_buffers([("x", 48)], ops, ["c"])
    assert [(b.first, b.last) for b in bufs] == [(0, 1), (1, 3), (2, 3), (3, 3)]
    plan = plan_arena(bufs)
    # equal sizes: later-created first -> c at 0, b (meets c) at 64, a (meets b and c) at 128, x (meets a) at 0
    assert dict(plan.offsets) == {"c": 0, "b": 64, "a": 128, "x": 0}
    assert plan.arena_bytes == 192
    _no_overlap(plan)


def test_inplace_reshape_shares_the_buffer():
    ops = [("a", ("x",), 64, False), ("r", ("a",), 64, True), ("y", ("r",), 16, False)]
    bufs, alias = tensor_buffers([("x", 32)], ops, ["y"])
    assert alias == {"r": "a"}
    assert [(b.name, b.first, b.last) for b in bufs] == [("x", 0, 1), ("a", 1, 3), ("y", 3, 3)]
    plan = plan_arena(bufs, aliases=alias)
    assert dict(plan.offsets) == {"a": 0, "x": 64, "y": 64} and plan.arena_bytes == 96


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 12), st.integers(0, 6)), min_size=1, max_size=25))
def test_random_plans_never_overlap(spec):
    bufs = [Buffer(f"t{i}", s, f, f + d) for i, (s, f, d) in enumerate(spec)]
    plan = plan_arena(bufs)
    _no_overlap(plan)
    sizes = {b.name: plan.size(b.name) for b in plan.buffers}
    live_peak = max(sum(sizes[b.name] for b in plan.buffers if b.first <= t <= b.last) for t in range(20))
    assert live_peak <= plan.arena_bytes <= sum(sizes.values())


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)  # 8x8x8 = 512 B int8
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = self.c2(a)
        return self.fc(torch.flatten(torch.relu(a + b), 1))


def test_graph_plan_fuses_relus_and_aliases_the_flatten():
    g = fold_bn(mapping.trace(_Net().eval(), (1, 3, 8, 8)))
    plan = plan_int8_arena(g)
    names = [b.name for b in plan.buffers]
    # relu fused into c1 and into the add: no buffer for the conv / add outputs themselves; flatten aliases the add
    assert names == ["x", "relu", "c2", "relu_1", "fc"], names
    assert plan.aliases == {"flatten": "relu_1"}
    # x 192 B [0,1]; relu 512 [1,3]; c2 512 [2,3]; relu_1 512 [3,5] (read by fc through the flatten); fc 16 [5,5]
    # placed: relu_1 at 0, c2 (meets relu_1) 512, relu (meets both) 1024, x (meets relu) 0, fc (meets relu_1) 512
    assert dict(plan.offsets) == {"relu_1": 0, "c2": 512, "relu": 1024, "x": 0, "fc": 512}
    assert plan.arena_bytes == 1536
    _no_overlap(plan)
    # flash: int8 weights + int32 biases (c2 has none)
    assert flash_bytes(g) == (8 * 3 * 9 + 8 * 4) + 8 * 8 * 9 + (10 * 512 + 10 * 4)


def test_program_plan_matches_graph_plan_without_requantizations():
    torch.manual_seed(0)
    g = fold_bn(mapping.trace(_Net().eval(), (1, 3, 8, 8)))
    p = quantize_int8(g, np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))
    assert plan_program_arena(p).offsets == plan_int8_arena(g).offsets


def test_resnet20_plan_is_valid_and_greedy():
    import nets

    g = fold_bn(mapping.trace(nets.get("resnet20"), (1, 3, 32, 32)))
    plan = plan_int8_arena(g)
    _no_overlap(plan)
    last = max(b.last for b in plan.buffers)
    live = max(sum(plan.size(b.name) for b in plan.buffers if b.first <= t <= b.last) for t in range(last + 1))
    # three 16 KiB tensors live at once in a first-stage residual add; the greedy placement needs a fourth slot
    assert live == 3 * 16384 and plan.arena_bytes == 4 * 16384


def test_reshape_as_a_copy_when_asked():
    g = fold_bn(mapping.trace(_Net().eval(), (1, 3, 8, 8)))
    plan = plan_int8_arena(g, inplace_reshape=False)
    assert [b.name for b in plan.buffers] == ["x", "relu", "c2", "relu_1", "flatten", "fc"] and not plan.aliases
    _no_overlap(plan)
    assert plan.arena_bytes >= plan_int8_arena(g).arena_bytes


def test_a_zero_pad_folded_into_its_conv_has_no_tensor_in_the_arena():
    """TFLite's converter turns pad + conv into a SAME-padded conv: on cmsis-nn the conv reads the unpadded input
    (input 8x32x32 + output 16x16x16 = 12,288 B), where a PAD of its own adds an 8x33x33 tensor, live with the input."""
    class PadConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(8, 16, 3, stride=2)

        def forward(self, x):
            return torch.relu(self.c(nn.functional.pad(x, (1, 0, 1, 0))))

    g = fold_bn(mapping.trace(PadConv(), (1, 8, 32, 32)))
    kept = plan_int8_arena(g).arena_bytes
    folded = plan_int8_arena(g, runtime="cmsis-nn").arena_bytes
    assert folded == 8 * 32 * 32 + 16 * 16 * 16
    assert kept == 8 * 32 * 32 + 8 * 33 * 33 + (-(8 * 33 * 33) % 16)  # the input and the padded tensor (16-B aligned)
    assert plan_int8_arena(g, runtime="ncnn").arena_bytes == kept  # ncnn keeps its padding layer
