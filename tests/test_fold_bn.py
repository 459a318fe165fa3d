"""fold_bn: the folded conv/linear equals conv/linear + batch norm up to fp32 rounding."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mapping
from mapping.graph import Op
from mapping.passes import fold_bn


def _randomize_bn(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g))
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.1)
            mod.weight.data.copy_(torch.randn(n, generator=g))  # includes negative gammas
            mod.bias.data.copy_(torch.randn(n, generator=g))
    return m.eval()


def test_conv_bn_folds_exactly():
    m = _randomize_bn(nn.Sequential(nn.Conv2d(5, 7, 3, stride=2, padding=1, groups=1, bias=False),
                                    nn.BatchNorm2d(7), nn.ReLU()))
    g = fold_bn(mapping.trace(m, (2, 5, 9, 9)))
    assert [n.op for n in g] == [Op.CONV2D, Op.RELU]
    conv = g.nodes[0]
    x = torch.randn(2, 5, 9, 9)
    y = F.relu(F.conv2d(x, torch.from_numpy(g.param(conv, "weight")), torch.from_numpy(g.param(conv, "bias")),
                        stride=2, padding=1))
    with torch.no_grad():
        ref = m(x)
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_depthwise_and_linear_fold():
    m = _randomize_bn(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6),
                                    nn.Flatten(), nn.Linear(6 * 16, 4), nn.BatchNorm1d(4)), seed=3)
    g = fold_bn(mapping.trace(m, (3, 6, 4, 4)))
    assert [n.op for n in g] == [Op.CONV2D, Op.RESHAPE, Op.LINEAR]
    c, lin = g.nodes[0], g.nodes[2]
    x = torch.randn(3, 6, 4, 4)
    y = F.conv2d(x, torch.from_numpy(g.param(c, "weight")), torch.from_numpy(g.param(c, "bias")), padding=1, groups=6)
    y = F.linear(y.flatten(1), torch.from_numpy(g.param(lin, "weight")), torch.from_numpy(g.param(lin, "bias")))
    with torch.no_grad():
        ref = m(x)
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_bn_after_shared_conv_keeps_one_folded_copy_and_distinct_bns_make_copies():
    class M(nn.Module):
        def __init__(self, shared_bn):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bns = nn.ModuleList([nn.BatchNorm2d(4)] if shared_bn else [nn.BatchNorm2d(4) for _ in range(3)])

        def forward(self, x):
            for i in range(3):
                x = self.bns[i % len(self.bns)](self.conv(x))
            return x

    one = fold_bn(mapping.trace(_randomize_bn(M(True)), (1, 4, 6, 6)))
    three = fold_bn(mapping.trace(_randomize_bn(M(False)), (1, 4, 6, 6)))
    assert len({n.params["weight"] for n in one}) == 1
    assert len({n.params["weight"] for n in three}) == 3
    assert one.param_count == 4 * 4 * 9 + 4


def test_fold_bn_does_not_mutate_and_skips_bn_not_after_conv():
    m = _randomize_bn(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3)))
    g = mapping.trace(m, (1, 3, 4, 4))
    before = [n.op for n in g]
    g2 = fold_bn(g)
    assert [n.op for n in g] == before
    assert [n.op for n in g2] == before  # BN after ReLU cannot fold
    np.testing.assert_array_equal(g2.params["0.weight"], g.params["0.weight"])


def test_fold_bn_cached_folds_each_graph_once():
    import nets
    from mapping.passes.fold_bn import fold_bn_cached

    model = nets.get("resnet20").eval()
    g1 = mapping.trace(model, (1, 3, 32, 32))
    g2 = mapping.trace(model, (1, 3, 32, 32))
    a = fold_bn_cached(g1)
    assert fold_bn_cached(g1) is a  # the same graph object: folded once
    b = fold_bn_cached(g2)
    assert b is not a
    assert [n.op for n in a.nodes] == [n.op for n in fold_bn(g1).nodes] == [n.op for n in b.nodes]
    assert not any(n.op == Op.BATCHNORM for n in a.nodes)


def test_bn_before_a_sign_is_kept_so_exact_ties_do_not_flip():
    """A binary layer's integer sum often equals the BN mean exactly: unfolded, BN gives 0 and sign(0) = +1;
    folded, the fp32-rounded weights give a tiny ± value and a random sign. Such BNs stay unfolded."""
    import hwsim
    import nets

    model = nets.get("tfc-w1a1")
    g = mapping.trace(model, (1, 1, 28, 28))
    g2 = fold_bn(g)
    ops = {n.name: n.op for n in g2}
    assert [ops[n.inputs[0]] for n in g2 if n.op == Op.SIGN][1:] == [Op.BATCHNORM] * 3  # the first reads the input
    assert [n.op for n in g2][-1] == Op.LINEAR  # the last BN, read by no sign, folds
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    table = hwsim.evaluate(model, "cpu/cortex-a72", x).table  # fp32 CPU run with folding vs the fp32 reference
    assert table["top1_agreement"].iloc[0] == 1.0 and table["rel_rms_error"].iloc[0] == 0.0
