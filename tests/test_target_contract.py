"""The target contract (hwsim.target): what a package hwsim.<target> provides, checked by load_target."""
from __future__ import annotations

import dataclasses
import importlib
import sys
import types

import pytest

from hwsim.errors import HwsimError, UnknownNameError
from hwsim.target import TARGETS, Target, TargetContractError, contract_problems, load_target, source_version

FAKE = "hwsim.faketarget"


class FakeSpec:
    target = "faketarget"  # what @spec_class("faketarget") sets (not registered here: the registry stays as it is)


def _package(**names):
    mod = types.ModuleType(FAKE)
    base = {"SPEC": FakeSpec, "cost_model_version": lambda: "fake-1",
            "simulate": lambda graph, spec, x=None, **kw: None}
    for k, v in {**base, **names}.items():
        if v is not None:
            setattr(mod, k, v)
    return mod


@pytest.fixture
def install(monkeypatch):
    def put(mod):
        monkeypatch.setitem(sys.modules, FAKE, mod)
        return mod
    return put


def test_a_package_that_implements_the_contract_is_returned(install):
    mod = install(_package())
    assert load_target("faketarget") is mod and isinstance(mod, Target)
    with_fit = install(_package(fit=lambda graph, spec: True))
    assert load_target("faketarget") is with_fit  # fit is optional, and checked when present


@pytest.mark.parametrize("names, missing", [
    ({"SPEC": None}, "SPEC"),
    ({"SPEC": object()}, "SPEC"),
    ({"cost_model_version": None}, "cost_model_version()"),
    ({"cost_model_version": "v1"}, "cost_model_version()"),
    ({"simulate": None}, "simulate("),
    ({"simulate": "not callable"}, "simulate("),
    ({"fit": 42}, "fit(graph, spec)"),
])
def test_what_is_missing_is_named_in_one_line(install, names, missing):
    install(_package(**names))
    with pytest.raises(TargetContractError, match="hwsim.faketarget does not implement the target contract") as e:
        load_target("faketarget")
    assert missing in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, HwsimError)


def test_a_spec_class_of_another_target_is_refused(install):
    from hwsim.cpu.spec import CPUSpec

    install(_package(SPEC=CPUSpec))
    with pytest.raises(TargetContractError, match=r"SPEC registered for target 'faketarget'.*CPUSpec is for 'cpu'"):
        load_target("faketarget")


def test_unknown_and_malformed_names():
    with pytest.raises(UnknownNameError, match="unknown target 'cpux'; did you mean 'cpu'"):
        load_target("cpux")
    for bad in (3, None, "", "cpu.spec", "../cpu"):
        with pytest.raises(HwsimError, match="target must be a target name"):
            load_target(bad)


def test_a_failing_import_inside_a_target_is_not_reported_as_an_unknown_target(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="scipy"):
        load_target("imc")


@pytest.mark.parametrize("name", TARGETS)
def test_the_shipped_targets_simulate_and_export_their_registered_spec_class(name):
    """The shipped packages provide the whole contract: simulate (and fit where present), SPEC, cost_model_version,
    and the spec class registered for their name, exported under its class name."""
    from hwsim.specs import _SPECS, _ensure_targets

    _ensure_targets()
    mod = importlib.import_module(f"hwsim.{name}")
    registered = _SPECS[name]
    assert getattr(mod, registered.__name__) is registered
    assert contract_problems(mod, name) == []
    assert hasattr(mod, "fit") == (name == "imc")


@pytest.mark.parametrize("name", TARGETS)
def test_the_shipped_targets_implement_the_contract(name):
    from hwsim.specs import _SPECS, _ensure_targets

    mod = load_target(name)
    _ensure_targets()
    assert mod.SPEC is _SPECS[name] and isinstance(mod, Target)
    assert mod.cost_model_version() == source_version(name)


def test_the_source_version_follows_the_target_source_and_the_common_sources():
    versions = {t: source_version(t) for t in TARGETS}
    assert len(set(versions.values())) == len(TARGETS)  # each target's own source is part of it
    assert all(len(v) == 12 and int(v, 16) >= 0 for v in versions.values())
    assert source_version("cpu") == versions["cpu"]  # stable within a process


def test_the_source_digest_changes_with_any_edit(tmp_path, monkeypatch):
    import hwsim.target as target

    (tmp_path / "hwsim" / "demo").mkdir(parents=True)
    f = tmp_path / "hwsim" / "demo" / "cost.py"
    f.write_text("PJ_PER_MAC = 1.0\n")
    monkeypatch.setattr(target, "_root", lambda: tmp_path)
    before = target.source_digest.__wrapped__("hwsim/demo")
    f.write_text("PJ_PER_MAC = 1.1\n")
    assert target.source_digest.__wrapped__("hwsim/demo") != before


@dataclasses.dataclass(frozen=True)
class _FakeDataSpec:
    target = "faketarget"  # a hardware spec (a dataclass with its target) of the fake package, not registered


def test_simulate_fit_and_the_sweep_key_go_through_the_contract(install):
    """hwsim.simulate / hwsim.fit and a sweep row's cost-model version use load_target: a package that lacks part of
    the contract is refused in one line before it runs, one that implements it is used as it is."""
    import torch

    import hwsim
    from hwsim.codesign.points import cost_model_version

    net, shape, spec = torch.nn.Linear(4, 2), (1, 4), _FakeDataSpec()
    install(_package(SPEC=_FakeDataSpec, simulate=lambda graph, spec, x=None, **kw: ("ran", graph.name)))
    assert hwsim.simulate(net, spec, input_shape=shape)[0] == "ran"
    assert cost_model_version("faketarget") == "fake-1"
    with pytest.raises(HwsimError, match="fit\\(\\) is defined for IMC specs"):
        hwsim.fit(net, spec, input_shape=shape)
    install(_package(SPEC=_FakeDataSpec, fit=lambda graph, spec: "fits"))
    assert hwsim.fit(net, spec, input_shape=shape) == "fits"
    install(_package(SPEC=_FakeDataSpec, cost_model_version=None))
    for call in (lambda: hwsim.simulate(net, spec, input_shape=shape), lambda: cost_model_version("faketarget")):
        with pytest.raises(TargetContractError, match="missing cost_model_version"):
            call()


@pytest.mark.parametrize("name", TARGETS)
def test_a_sweep_row_key_carries_the_targets_own_version(name):
    from hwsim.codesign.points import cost_model_version

    assert cost_model_version(name) == load_target(name).cost_model_version() == source_version(name)


def test_hwsim_exports_clear_caches_and_the_contract_modules():
    import hwsim
    import hwsim.cache

    assert hwsim.clear_caches is hwsim.cache.clear_caches and "clear_caches" in hwsim.__all__
    assert {"cache", "target", "clear_caches"} <= set(dir(hwsim)) and hwsim.target.load_target is load_target
