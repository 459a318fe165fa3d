"""Target options of hwsim.simulate: checked against the target's signature before any work."""
from __future__ import annotations

import pytest

import hwsim
import hwsim.cpu
from hwsim.errors import SpecError


def test_an_unknown_option_is_named_with_what_the_target_takes(monkeypatch):
    def no_trace(*a, **k):
        raise AssertionError("traced before the options were checked")

    monkeypatch.setattr(hwsim.api, "as_graph", no_trace)
    with pytest.raises(SpecError, match=r"imc target: unknown option 'mod'; it takes mode, "):
        hwsim.simulate("resnet20", "imc/isaac", mod="layer")
    with pytest.raises(SpecError, match=r"fpga target: unknown options 'fold', 'x2'; it takes folding"):
        hwsim.simulate("tfc-w1a1", "fpga/pynq-z1", fold="auto", x2=1)


def test_a_type_error_inside_a_simulation_is_not_reported_as_a_bad_option(monkeypatch):
    def broken(graph, spec, x=None, *, seed=0, threads=None):
        raise TypeError("Params.__init__() got an unexpected keyword argument 'p'")

    monkeypatch.setattr(hwsim.cpu, "simulate", broken)
    with pytest.raises(TypeError, match="unexpected keyword argument 'p'"):
        hwsim.simulate("resnet20", "cpu/host", threads=1)


def test_a_sweep_refuses_an_unknown_option_before_any_net_is_built(monkeypatch):
    import importlib

    sweep_mod = importlib.import_module("hwsim.codesign.sweep")  # the module (hwsim.codesign.sweep is the function)

    def no_nets(*a, **k):
        raise AssertionError("nets built before the options were checked")

    monkeypatch.setattr(sweep_mod, "as_net_refs", no_nets)
    with pytest.raises(SpecError, match=r"imc target: unknown option 'mod'; it takes mode"):
        hwsim.sweep(["resnet20"], ("imc/isaac", {"adc_bits": [5, 6]}), target_options={"mod": "layer"})


@pytest.mark.parametrize("target,options,words", [
    ("cpu/cortex-a72", {"fold_bn": "False"}, "fold_bn='False' must be true or false"),  # a truthy string
    ("cpu/cortex-a72", {"threads": 2.0}, "threads=2.0 must be an integer or null"),
    ("imc/isaac", {"max_chunks": True}, "max_chunks=True must be an integer"),
    ("fpga/pynq-z1", {"target_fps": "fast"}, "target_fps='fast' must be a number or null"),
])
def test_an_option_of_the_wrong_type_is_refused_before_any_work(monkeypatch, target, options, words):
    monkeypatch.setattr("hwsim.api.as_graph", lambda *a, **k: pytest.fail("traced before the refusal"))
    with pytest.raises(SpecError, match=words):
        hwsim.simulate("tfc-w1a1", target, **options)


def test_options_of_the_right_type_pass():
    import numpy as np

    r = hwsim.simulate("tfc-w1a1", "cpu/cortex-a72", fold_bn=np.bool_(False), threads=np.int64(1))
    assert r.report.latency_s > 0
