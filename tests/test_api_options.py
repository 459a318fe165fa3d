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


# options whose annotation is no scalar: checked by their target (a one-line error there, tested with it)
TARGET_CHECKED = {("cpu", "calib"), ("fpga", "folding")}


def test_every_target_option_is_type_checked_before_work():
    """An option added with an annotation :data:`hwsim.api._SCALAR_OPTIONS` does not know (``Optional[int]``, a new
    spelling) would go unchecked: each is either a known scalar or named as its target's to check."""
    import inspect

    from hwsim.api import _SCALAR_OPTIONS, annotation_key
    from hwsim.target import load_target

    for target in ("cpu", "imc", "fpga"):
        params = inspect.signature(load_target(target).simulate).parameters
        for name, p in params.items():
            if p.kind is p.KEYWORD_ONLY and name != "seed":
                assert annotation_key(p.annotation) in _SCALAR_OPTIONS or (target, name) in TARGET_CHECKED, \
                    (target, name, p.annotation)


@pytest.mark.parametrize("annotation, key", [("int | None", "int|None"), ("Optional[int]", "int|None"),
                                             ("typing.Optional[float]", "float|None"), (bool, "bool"),
                                             ("Sequence[tuple[int, int]] | str", "Sequence[tuple[int,int]]|str")])
def test_annotation_spellings_name_one_check(annotation, key):
    from hwsim.api import annotation_key

    assert annotation_key(annotation) == key


def test_an_optional_int_option_is_checked(monkeypatch):
    from typing import Optional

    def simulate(graph, spec, x=None, *, seed: int = 0, rows: Optional[int] = None):  # noqa: UP045 (the spelling tested)
        raise AssertionError("ran before its option was checked")

    from hwsim.api import check_options

    with pytest.raises(SpecError, match=r"rows='4' must be an integer or null"):
        check_options(simulate, "imc", {"rows": "4"})


@pytest.mark.parametrize("calib, words", [("abc", "calib must be an array of real numbers"),
                                          ([1.0, 2.0], r"calib of shape \(2,\) does not match")])
def test_a_calibration_set_that_is_no_batch_is_named(calib, words):
    import numpy as np

    from hwsim.errors import ShapeError

    with pytest.raises(ShapeError, match=words):
        hwsim.simulate("resnet20", "cpu/cortex-m4", np.zeros((1, 3, 32, 32), np.float32), calib=calib)


def test_the_cli_refuses_an_unknown_option_before_the_net_is_built(monkeypatch, capsys):
    import hwsim.cli as cli

    def no_net(*a, **k):
        raise AssertionError("net built before the options were checked")

    monkeypatch.setattr(cli, "_net_and_shape", no_net)
    assert cli.main(["run", "-q", "--net", "resnet50", "--hw", "imc/isaac", "--option", "max_chunk=4"]) == 2
    assert "imc target: unknown option 'max_chunk'; it takes mode, max_chunks" in capsys.readouterr().err
