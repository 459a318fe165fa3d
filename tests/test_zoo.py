"""The network zoo: registry contract, forward passes, published counts, determinism, bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nets
from hwsim.errors import HwsimError
from nets.counts import count_macs, count_ops_condensenet_convention, count_params, layer_macs
from nets.registry import NetArgumentError, UnknownNetError
from nets.variants import VARIANTS, rounding_tolerance

TOL = 0.02  # relative tolerance against published counts

NAMES = nets.names()
BIG = {"vgg16", "resnet50", "densenet121", "hardnet68", "hardnet85", "ghostnet", "alexnet"}  # slow: left out of the quick run
# The quick run builds a representative of each family; these members, each of a family a cheaper net of the quick
# run represents (resnet18, mobilenet-v1-w4a4, threshnet95, g-ghostnet, quicknet-small, cnv-w1a1, triplenet-s,
# condensenet86, mobilenetv2 / efficientnet-b0, vgg-small), run with --slow (0.2-1.3 s each).
ALSO_SLOW = {"resnet34", "resnet50-w1a2", "threshnet79", "c-ghostnet", "quicknet", "quicknet-large", "birealnet18",
             "vgg-small-w1a1", "triplenet-b", "condensenet", "mnasnet1.0", "proxylessnas-mobile", "vgg8"}


def _zoo_params(names, slow) -> list:
    return [pytest.param(n, marks=pytest.mark.slow if n in slow else ()) for n in names]
FOUNDATION = ["resnet18", "resnet20", "vgg8", "vgg-small", "mobilenetv2", "itnet"]
# Forward passes and traces of the ImageNet-size nets run at 64x64 (all their pools are adaptive; 64 px
# survives five stride-2 stages) and the CamVid net at 96x128, to keep the suite fast on 2 cores. Their
# counts at the default shape are checked on the meta device (test_counts_match_published).
REDUCED = {"itnet-seg": (1, 3, 96, 128), "alexnet": (1, 3, 227, 227)}  # AlexNet's FC layers need 227x227


def _run_shape(name: str) -> tuple[int, ...]:
    shape = nets.info(name).input_shape
    if name in REDUCED:
        return REDUCED[name]
    return (1, 3, 64, 64) if len(shape) == 4 and shape[-1] >= 224 else shape


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batch-1 forward passes of small nets gain nothing from intra-op threads; one thread avoids spin-waiting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _outputs(y) -> tuple[torch.Tensor, ...]:
    return y if isinstance(y, tuple) else (y,)


def _meta_build(name: str, **kw) -> nn.Module:
    """Build on the meta device: shapes and counts without filling weights (fast for ImageNet nets)."""
    with torch.device("meta"):
        return nets.get(name, **kw)


def _counts(name: str, shape, **kw) -> tuple[int, int]:
    """(params, MACs) of ``nets.get(name, **kw)`` at ``shape``; built on meta when the net allows it."""
    try:
        m = _meta_build(name, **kw)
        return count_params(m), count_macs(m, shape)
    except (RuntimeError, NotImplementedError):  # a net that cannot run on meta: count the real one
        m = nets.get(name, **kw)
        return count_params(m), count_macs(m, shape)


# ---------------------------------------------------------------- registry contract
def test_names_sorted_and_foundation_present():
    assert NAMES == sorted(NAMES)
    for n in FOUNDATION:
        assert n in NAMES


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNetError) as e:
        nets.get("resnet19")
    assert isinstance(e.value, HwsimError)
    assert "resnet18" in str(e.value)
    with pytest.raises(HwsimError):
        nets.info("no-such-net")


def test_bad_keyword_names_valid_ones():
    with pytest.raises(NetArgumentError) as e:
        nets.get("resnet18", widht=2)
    msg = str(e.value)
    assert isinstance(e.value, HwsimError)
    assert "widht" in msg and "num_classes" in msg and "base_width" in msg


@pytest.mark.parametrize("name,kw", [("mobilenetv2", {"width_mult": -1.0}), ("resnet20", {"num_classes": 0}),
                                     ("itnet", {"iterations": 0}), ("itnet-seg", {"mode": "bicubic"})])
def test_bad_keyword_value(name, kw):
    with pytest.raises(HwsimError):
        nets.get(name, **kw)


def test_register_twice_rejected():
    with pytest.raises(HwsimError):
        nets.register("resnet18", input_shape=(1, 3, 8, 8), task="classification", source="x")(lambda: nn.Identity())


@pytest.mark.parametrize("name", NAMES)
def test_info_fields(name):
    i = nets.info(name)
    assert i.name == name
    assert i.input_shape[0] == 1 and len(i.input_shape) == (2 if "autoencoder" in i.tags else 4)
    assert i.task in ("classification", "segmentation", "anomaly-detection")
    assert i.source
    if i.published_params is not None or i.published_macs is not None:
        assert i.counts_source
    assert isinstance(i.tags, tuple)


# ---------------------------------------------------------------- forward passes
@pytest.mark.parametrize("name", _zoo_params(NAMES, BIG | ALSO_SLOW))
def test_forward_and_ir_counts(name):
    """Forward pass (finite outputs of the right shape, eval mode), and the IR's independent counts.

    mapping.analysis (graph walk) and nets.counts (forward hooks) are independent counters: they must agree.
    """
    from mapping import trace
    from mapping.analysis import totals

    m = nets.get(name)
    assert not m.training
    shape = _run_shape(name)
    with torch.no_grad():
        outs = _outputs(m(torch.randn(shape)))
    i = nets.info(name)
    for y in outs:
        assert torch.isfinite(y).all()
        if i.task == "classification":
            assert y.shape[0] == 1 and y.dim() == 2
        else:
            assert y.shape[0] == 1 and y.shape[-2:] == shape[-2:]
    t = totals(trace(m, shape))
    assert t.params == count_params(m)
    assert t.macs == count_macs(m, shape)


@pytest.mark.parametrize("name", _zoo_params([n for n in NAMES if "num_classes" in nets.keywords(n)], ALSO_SLOW))
def test_num_classes_kwarg(name):
    shape = nets.info(name).input_shape
    try:
        m = _meta_build(name, num_classes=7)
        outs = _outputs(m(torch.empty(shape, device="meta")))
    except (RuntimeError, NotImplementedError):  # not runnable on meta
        with torch.no_grad():
            outs = _outputs(nets.get(name, num_classes=7)(torch.zeros(shape)))
    for y in outs:
        assert y.shape[1] == 7


@pytest.mark.parametrize("name", _zoo_params([n for n in NAMES if nets.info(n).input_shape[-1] <= 64], ALSO_SLOW))
def test_deterministic(name):
    shape = nets.info(name).input_shape
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a = _outputs(nets.get(name)(x))
        b = _outputs(nets.get(name)(x))
    assert torch.equal(torch.random.get_rng_state(), state)  # get() leaves the global RNG alone
    for ya, yb in zip(a, b):
        assert torch.equal(ya, yb)
    # another seed gives other weights (outputs of untrained low-bit nets may saturate, so compare weights)
    w0, w1 = nets.get(name).state_dict(), nets.get(name, seed=1).state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0 if w0[k].is_floating_point())


# ---------------------------------------------------------------- counts
PUBLISHED = [n for n in NAMES if nets.info(n).published_params is not None or nets.info(n).published_macs is not None]


@pytest.mark.parametrize("name", _zoo_params(PUBLISHED, ALSO_SLOW | {"densenet121"}))  # densenet121: 0.9 s on meta
def test_counts_match_published(name):
    i = nets.info(name)
    p, macs = _counts(name, i.input_shape)
    if i.published_params is not None:
        assert abs(p / i.published_params - 1) <= TOL or i.notes, (p, i.published_params)
        if abs(p / i.published_params - 1) > TOL:
            assert "params" in i.notes.lower() or "parameter" in i.notes.lower()
    if i.published_macs is not None:
        assert abs(macs / i.published_macs - 1) <= TOL or i.notes, (macs, i.published_macs)
        if abs(macs / i.published_macs - 1) > TOL:
            assert "mac" in i.notes.lower() or "flop" in i.notes.lower()


def test_anchor_counts():
    """The brief's anchors, exactly as published (2 % tolerance)."""
    anchors = {"resnet18": (11.69e6, 1.814e9), "resnet50": (25.56e6, 4.09e9), "mobilenetv1": (4.2e6, 569e6),
               "mobilenetv2": (3.50e6, 300e6)}
    for name, (p, macs) in anchors.items():
        ours_p, ours_macs = _counts(name, nets.info(name).input_shape)
        assert abs(ours_p / p - 1) <= TOL
        assert abs(ours_macs / macs - 1) <= TOL


def test_mac_counter_on_hand_computed_net():
    """Independent check of the counter: a conv (groups, stride, padding) and a linear, counted by hand."""
    m = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(6 * 5 * 5, 3))
    # conv: OH=OW=5 (9 -> 5), Cout 6, Cin/groups 2, 3x3 -> 25*6*2*9 = 2700; linear 150*3 = 450
    assert layer_macs(m, (1, 4, 9, 9)) == [("0", 2700), ("2", 450)]
    assert count_params(m) == 6 * 2 * 9 + 6 + 150 * 3 + 3


def _variant_params() -> list:
    """Every variant; the quick run checks the first variant of each net, --slow the others."""
    seen: set[str] = set()
    params = []
    for v in VARIANTS:
        params.append(pytest.param(v, id=v.label, marks=pytest.mark.slow if v.name in seen else ()))
        seen.add(v.name)
    return params


@pytest.mark.parametrize("v", _variant_params())
def test_variants_match_published(v):
    """Non-default configurations against their published counts: 2 % plus the rounding of the published figure."""
    m = _meta_build(v.name, **v.kwargs)
    shape = v.input_shape or nets.info(v.name).input_shape
    if v.published_params is not None:
        p = count_params(m)
        assert abs(p / v.published_params - 1) <= TOL + rounding_tolerance(v.published_params), (p, v.source)
    if v.published_macs is not None:
        counter = count_ops_condensenet_convention if v.macs_convention == "condensenet" else count_macs
        macs = counter(m, shape)
        assert abs(macs / v.published_macs - 1) <= TOL + rounding_tolerance(v.published_macs), (macs, v.source)


# ---------------------------------------------------------------- iterative nets
@pytest.mark.parametrize("name", ["itnet", "itnet-seg"])
def test_iterative_weight_sharing(name):
    shape = _run_shape(name)
    t3, t6 = nets.get(name, iterations=3), nets.get(name, iterations=6)
    with torch.no_grad():
        assert len(t3(torch.randn(shape))) == 3
    # shared: parameters independent of T, compute grows linearly with T
    assert count_params(t3) == count_params(t6)
    per_iter = (count_macs(t6, shape) - count_macs(t3, shape)) / 3
    assert per_iter > 0
    assert count_macs(t3, shape) + per_iter == count_macs(nets.get(name, iterations=4), shape)
    # the block is one module object called T times
    calls = []
    h = t3.block.register_forward_hook(lambda mod, i, o: calls.append(id(mod)))
    with torch.no_grad():
        t3(torch.randn(shape))
    h.remove()
    assert calls == [id(t3.block)] * 3
    # unshared: T distinct blocks of identical shapes
    u = nets.get(name, iterations=3, shared=False)
    block_params = count_params(t3.block)
    assert count_params(u) == count_params(t3) + 2 * block_params
    assert count_macs(u, shape) == count_macs(t3, shape)
    assert len({id(b) for b in u.blocks}) == 3


def test_itnet_exits_differ_and_heads_option():
    m = nets.get("itnet")
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 32, 32))
    assert len(outs) == 4 and not torch.equal(outs[0], outs[-1])
    sep = nets.get("itnet", shared_heads=False)
    assert count_params(sep) == count_params(m) + 3 * count_params(m.head)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "ghostnet", "shufflenetv2", "hardnet39ds", "condensenet"])
def test_imagenet_builds_deterministic(name):
    a, b = nets.get(name).state_dict(), nets.get(name).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- building blocks
def test_channel_shuffle_matches_definition():
    from nets.common import ChannelShuffle

    x = torch.arange(2 * 12 * 2 * 2, dtype=torch.float32).reshape(2, 12, 2, 2)
    y = ChannelShuffle(3)(x)
    # output channel j*g + i comes from input channel i*(C/g) + j (Zhang et al. Fig. 1c)
    g, c = 3, 12
    perm = [i * (c // g) + j for j in range(c // g) for i in range(g)]
    assert torch.equal(y, x[:, perm])
    assert torch.equal(y, torch.channel_shuffle(x, 3))


def test_channel_split():
    from nets.common import ChannelSplit

    x = torch.randn(1, 10, 3, 3)
    a, b = ChannelSplit(4)(x)
    assert torch.equal(a, x[:, :4]) and torch.equal(b, x[:, 4:])


def test_ghost_module_odd_channels():
    from nets.ghostnet import GhostModule

    g = GhostModule(8, 7).eval()  # ceil(7/2) = 4 intrinsic + 4 cheap, trimmed to 7
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        y = g(x)
        primary = g.primary_conv(x)
    assert y.shape == (1, 7, 5, 5)
    assert torch.equal(y[:, :4], primary)  # the first maps are the intrinsic ones
    assert g.cheap_operation[0].groups == 4  # cheap op is depthwise over the intrinsic maps


def test_harmonic_links_definition():
    """Layer k links to k - 2^n for every 2^n dividing k (Chao et al. Sec. 3.1)."""
    from nets.hardnet import harmonic_links

    for k in range(1, 33):
        expected = [k - 2**n for n in range(6) if k % 2**n == 0]
        assert harmonic_links(k, 64, 14, 1.7)[2] == expected
    # width: growth * m^(#links-1), rounded to even; layer 4 has links {3, 2, 0}: 14 * 1.7^2 = 40.46 -> 40
    assert harmonic_links(4, 64, 14, 1.7)[0] == 40
    # input channels of layer 4 = widths of layers 3, 2 and the block input
    assert harmonic_links(4, 64, 14, 1.7)[1] == harmonic_links(3, 64, 14, 1.7)[0] + harmonic_links(2, 64, 14, 1.7)[0] + 64


def test_mgic_levels_follow_official_recursion():
    from nets.mgic import MGICBlock

    assert MGICBlock(64).widths == (64, 32, 16, 8)
    assert MGICBlock(256).widths == (256, 128, 64, 32, 16, 8)
    b = MGICBlock(64).eval()
    x = torch.randn(1, 64, 6, 6)
    with torch.no_grad():
        assert b(x).shape == x.shape
    # restriction/prolongation are grouped 1x1 convs with group size 16 on the fine side
    assert [r.groups for r in b.restrict] == [4, 2, 1]


def test_condensenet_convention_counter_by_hand():
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2, 2),
                      nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(4, 3))
    conv = 6 * 6 * 4 * 2 * 9  # 2592
    relu = 4 * 6 * 6          # one op per ReLU input element
    pool = 4 * 3 * 3 * 4      # k*k per AvgPool2d output element
    gap = 4 * 3 * 3           # one op per AdaptiveAvgPool2d input element
    lin = 4 * 3 + 3           # weights + bias
    assert count_ops_condensenet_convention(m, (1, 2, 6, 6)) == conv + relu + pool + gap + lin


def test_rounding_tolerance():
    assert rounding_tolerance(0.5e6) == pytest.approx(0.1)
    assert rounding_tolerance(138e6) == pytest.approx(0.5 / 138)
    assert rounding_tolerance(6.06e6) == pytest.approx(0.005 / 6.06)


def test_builder_value_error_becomes_hwsim_error():
    with pytest.raises(NetArgumentError) as e:
        nets.get("shufflenetv1", groups=8, width_mult=0.5)  # 192 - 12 channels not divisible by 8
    assert "divisible" in str(e.value)
    with pytest.raises(NetArgumentError):
        nets.get("resnet18", seed="0")


def test_only_the_autoencoder_lacks_num_classes():
    assert [n for n in NAMES if "num_classes" not in nets.keywords(n)] == ["tiny-autoencoder"]


def test_register_validates():
    with pytest.raises(HwsimError):
        nets.register("x-bad-task", input_shape=(1, 3, 8, 8), task="detection", source="x")
    with pytest.raises(HwsimError):
        nets.register("x-bad-shape", input_shape=(2, 3, 8, 8), task="classification", source="x")
    assert "x-bad-task" not in nets.names() and "x-bad-shape" not in nets.names()


def test_itnet_seg_nearest_mode_and_shape():
    m = nets.get("itnet-seg", mode="nearest", iterations=2, num_classes=5)
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 48, 64))
    assert len(outs) == 2 and all(o.shape == (1, 5, 48, 64) for o in outs)
