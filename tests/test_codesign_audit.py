"""The co-design audit's defects 3-8 (NetCut, search, pareto_front): a TRN's output is checked, functional-flatten
chains are accepted, bad arguments are one-line HwsimErrors before the costing, a float field's range is searched
as floats, and int column names work."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nets
from hwsim.codesign import netcut, pareto_front
from hwsim.codesign.netcut import TrainFnError
from hwsim.codesign.search_space import fingerprint, range_kind
from hwsim.errors import HwsimError

SHP = (1, 1, 8, 8)
M7 = "cpu/cortex-m7"


class Tiny(nn.Module):
    """conv-bn-relu twice, global pool, linear (the audit's net)."""

    def __init__(self, c2=8):
        super().__init__()
        self.c1, self.b1, self.r1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.c2, self.b2, self.r2 = nn.Conv2d(8, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU()
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, 10)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.r2(self.b2(self.c2(self.r1(self.b1(self.c1(x)))))))))


class Lenet(nn.Module):
    """A chain whose classifier flattens a (C, H, W) map functionally (no pooling)."""

    def __init__(self, flatten_module=False):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.c2, self.r2, self.p = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        if flatten_module:
            self.flat = nn.Flatten()  # registered after fc: applied before it in forward

    def forward(self, x):
        return self.fc(torch.flatten(self.p(self.r2(self.c2(self.r1(self.c1(x))))), 1))


def _tiny(c2=8):
    torch.manual_seed(0)
    return Tiny(c2).eval()


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_head_without_pool_and_flatten_is_refused_naming_head_fn():
    head = lambda c, n: nn.Linear(c, n)  # noqa: E731 - forgot pool + flatten
    with pytest.raises(HwsimError, match=r"head_fn .*\(1, 8, 8, 10\), not \(1, 10\)") as e:
        netcut(_tiny(), M7, 1.0, input_shape=SHP, head_fn=head)  # shapes coincide: ran and ranked before
    _one_line(e)
    with pytest.raises(HwsimError, match=r"head_fn .*fails on the output") as e:  # 16 channels != W = 8
        netcut(_tiny(16), M7, 1.0, input_shape=SHP, head_fn=head, cut_points=["r2"])
    assert "input of shape" not in _one_line(e)
    r = netcut(_tiny(), M7, 1.0, input_shape=SHP)  # the default head gives (N, classes)
    for trn in r.models.values():
        assert tuple(trn(torch.zeros(2, 1, 8, 8)).shape) == (2, 10)


@pytest.mark.parametrize("flatten_module", [False, True])
def test_functional_flatten_chain_is_accepted(flatten_module):
    torch.manual_seed(0)
    m = Lenet(flatten_module).eval()
    blocks = [(n, c) for n, c in m.named_children() if n in ("c1", "r1", "c2", "r2", "p")]
    for kw in ({}, {"blocks": blocks}):
        r = netcut(m, M7, 1.0, input_shape=SHP, **kw)
        assert list(r.candidates["cut"]) == ["r1", "r2", "p"]
        body = r.models["p"][:-1]  # the TRN's body equals the model's layers up to the pool
        x = torch.randn(3, *SHP[1:])
        with torch.no_grad():
            assert torch.equal(body(x), m.p(m.r2(m.c2(m.r1(m.c1(x))))))


def test_not_a_chain_with_explicit_blocks_gets_advice_about_blocks():
    torch.manual_seed(0)
    m = Lenet().eval()
    swapped = [("c1", m.c1), ("c2", m.c2), ("r1", m.r1)]  # not the execution order
    with pytest.raises(HwsimError, match="check that blocks=") as e:
        netcut(m, M7, 1.0, input_shape=SHP, blocks=swapped)
    assert "pass blocks=" not in _one_line(e)


def test_zoo_name_is_built():
    by_name = netcut("resnet20", M7, 1.0, cut_points=[2])
    by_module = netcut(nets.get("resnet20"), M7, 1.0, cut_points=[2])
    assert list(by_name.candidates["est_latency_s"]) == list(by_module.candidates["est_latency_s"])
    with pytest.raises(HwsimError, match="model must be a torch module or a zoo name"):
        netcut(3, M7, 1.0, input_shape=SHP)


@pytest.mark.parametrize("bad", [-3, 0, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_int(bad):
    with pytest.raises(HwsimError, match="num_classes must be an integer >= 1") as e:
        netcut(_tiny(), M7, 1.0, input_shape=SHP, num_classes=bad)
    _one_line(e)


def test_num_classes_sets_the_head():
    r = netcut(_tiny(), M7, 1.0, input_shape=SHP, num_classes=3)
    assert {trn.head[-1].out_features for trn in r.models.values()} == {3}


def test_train_fn_exception_is_wrapped_and_bad_callables_refused_first():
    def finetune(m):
        return 1 / 0

    with pytest.raises(TrainFnError, match=r"train_fn .*finetune raised on the TRN cut after 'r1': "
                                           r"ZeroDivisionError") as e:
        netcut(_tiny(), M7, 1.0, input_shape=SHP, train_fn=finetune)
    _one_line(e)
    assert isinstance(e.value.__cause__, ZeroDivisionError)
    for arg in ("train_fn", "head_fn"):
        with pytest.raises(HwsimError, match=f"{arg} must be callable"):
            netcut(_tiny(), M7, 1.0, input_shape=SHP, **{arg: 0.5})


def test_explicit_cut_between_a_layer_and_its_batch_norm_is_refused():
    with pytest.raises(HwsimError, match=r"cut point 0 \(after 'c1'\) separates .*BatchNorm2d 'b1'") as e:
        netcut(_tiny(), M7, 1.0, input_shape=SHP, cut_points=[0])
    _one_line(e)
    with pytest.raises(HwsimError, match="separates .*ReLU 'r2'"):
        netcut(_tiny(), M7, 1.0, input_shape=SHP, cut_points=["b2"])
    assert list(netcut(_tiny(), M7, 1.0, input_shape=SHP, cut_points=[2, "r2"]).candidates["cut"]) == ["r1", "r2"]


def test_range_kind_follows_the_field_type():
    from hwsim.api import as_spec

    imc = type(as_spec("imc/isaac"))
    assert range_kind(imc, "adc_noise_lsb", (0, 2)) == "float"  # a float field with int bounds
    assert range_kind(imc, "adc_bits", (4.0, 8.0)) == "int"  # an int field with float bounds
    assert range_kind(None, None, (1, 3)) == "int" and range_kind(None, None, (1, 3.5)) == "float"  # net keywords
    assert range_kind(imc, "adc_noise_lsb", [0, 2]) is None  # a choice


def test_int_bounds_on_a_float_field_are_another_space_than_before():
    from hwsim.api import as_spec

    base = as_spec("imc/isaac")
    fp = lambda hw: fingerprint({"itnet": {}}, base, hw, {"latency_s": "min"})["hardware space"]  # noqa: E731
    assert fp({"adc_noise_lsb": (0, 2)}) != fp({"adc_noise_lsb": (0.0, 2.0)})
    assert fp({"adc_bits": (4, 8)}) == fp({"adc_bits": (4, 8)})


def test_search_int_bounds_on_a_float_field_search_floats():
    pytest.importorskip("optuna")
    from hwsim.codesign import search

    r = search({"itnet": {"channels": [8], "iterations": [1]}}, "imc/isaac", {"adc_noise_lsb": (0, 2)}, n_trials=4,
               input_shape=(1, 3, 8, 8), population_size=2)
    vals = r.trials["hw.adc_noise_lsb"].tolist()
    assert all(0.0 <= v <= 2.0 for v in vals) and any(v != int(v) for v in vals)


@pytest.mark.parametrize("empty", [[], (), {}])
def test_search_empty_objectives_refused_naming_objectives(empty):
    pytest.importorskip("optuna")
    from hwsim.codesign import search

    with pytest.raises(HwsimError, match="search: objectives must name at least one figure") as e:
        search({"itnet": {"channels": [8]}}, "imc/isaac", objectives=empty, n_trials=1, input_shape=(1, 3, 8, 8))
    _one_line(e)


def test_pareto_front_int_column_names():
    import pandas as pd

    df = pd.DataFrame({0: [1.0, 2.0, 3.0], 1: [2.0, 1.0, 3.0]})
    assert list(pareto_front(df, [0, 1]).index) == [0, 1]
    assert list(pareto_front(df, {0: "max", 1: "min"}).index) == [1, 2]
    with pytest.raises(HwsimError, match=r"objective column\(s\) \[2\] not in the table"):
        pareto_front(df, [0, 2])
    with pytest.raises(HwsimError, match="is not a column name"):
        pareto_front(df, [[0]])


def test_input_that_does_not_fit_the_first_block_names_input_shape():
    from hwsim.errors import ShapeError

    with pytest.raises(ShapeError, match=r"first block 'c1' cannot take input_shape=\(1, 3, 8, 8\)") as e:
        netcut(_tiny(), M7, 1.0, input_shape=(1, 3, 8, 8))
    _one_line(e)
