"""The IMC demo states the fit verdict flip, and every design it shows carries its top-1 agreement with the fp32
model (the ItNet is untrained: no labels), computed by hwsim.evaluate on the bit-level crossbar path."""
import re

import numpy as np
import pytest

import hwsim
import hwsim.imc.demo


@pytest.mark.slow  # 3-5 s; the quick run checks its design quality below and its fit verdict in test_imc_fit
def test_demo(tmp_path):
    text = hwsim.imc.demo.demo(tmp_path)
    assert "shared   weights: FITS" in text and "unshared weights: does NOT fit" in text
    assert (tmp_path / "imc_itnet_exits.png").stat().st_size > 0
    designs = re.findall(r"^- (\w+) +weights: .*top-1 agreement ([0-9.]+), relative RMS error ([0-9.]+)$", text,
                         re.MULTILINE)
    assert [d[0] for d in designs] == ["shared", "unshared"]  # each design shown, each with its numbers
    for _, agree, err in designs:
        # 8-bit weights and inputs, a 5-bit ADC: the logits are a few % off and the top-1 class almost always kept
        assert 0.75 <= float(agree) <= 1.0 and 0.0 < float(err) < 0.2
    assert f"on {hwsim.imc.demo.SAMPLES} random inputs" in text


def test_design_quality_is_an_evaluation_on_the_bit_level_path():
    import nets

    model = nets.get("itnet", iterations=2, channels=16)
    graph = hwsim.as_graph(model, (1, 3, 16, 16))
    spec = hwsim.load_preset("imc/edge-small")
    ev = hwsim.imc.demo.design_quality(graph, spec, samples=4)
    assert ev.samples == 4 and list(ev.table["seed"]) == [0] and "accuracy" not in ev.table.columns
    # the same numbers by hand: the crossbar outputs vs the IR's fp32 outputs on the same seeded inputs
    from hwsim.functional import run

    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    g4 = hwsim.as_graph(model, (4, 3, 16, 16))
    out, ref = hwsim.simulate(g4, spec, x).outputs[-1], run(g4, x)[-1]
    assert ev.top1_agreement_mean == np.mean(out.argmax(1) == ref.argmax(1))
    rel = np.sqrt(np.sum((out.astype(float) - ref) ** 2) / np.sum(ref.astype(float) ** 2))
    np.testing.assert_allclose(ev.rel_rms_error_mean, rel, rtol=1e-5)
