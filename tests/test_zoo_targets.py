"""Every zoo net traces at its default input shape and simulates (cost model) on a CPU and an IMC
preset; binary nets also on the FPGA engine. Reports are consistent with the graph's counts."""
import functools

import pytest

import hwsim
import mapping
import nets
from mapping.analysis import totals


@functools.lru_cache(maxsize=None)
def graph(name):
    return mapping.trace(nets.get(name), nets.info(name).input_shape)


# the quick run (plain pytest) keeps a cheap member of most families; --slow (the README's command) runs the whole zoo
QUICK = {"resnet20", "itnet", "itnet-seg", "mobilenetv1", "shufflenetv2", "effcnet", "augshufflenet", "tfc-w1a1",
         "sfc-w1a1"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in QUICK else pytest.mark.slow) for n in nets.names()])
@pytest.mark.parametrize("hw", ["cpu/cortex-a72", "imc/isaac"])
def test_zoo_net_simulates(name, hw):
    g = graph(name)
    rep = hwsim.simulate(g, hw).report
    assert rep.latency_s > 0 and rep.energy_j > 0
    assert rep.macs == totals(g).macs  # every MAC of the network is costed exactly once
    assert len(rep.exits) == len(g.outputs)
    assert rep.to_pandas()["latency_s"].ge(0).all()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n == "vgg-small-w1a1" else ())  # 1 s; cnv-w1a1
                                  for n in nets.names() if "binary" in nets.info(n).tags])  # is a binary CIFAR VGG too
def test_binary_zoo_net_runs_on_the_xnor_engine(name):
    rep = hwsim.simulate(graph(name), "fpga/zc706").report
    assert rep.fps > 0 and rep.latency_s > 0 and rep.luts > 0


def test_a_float_net_is_refused_by_the_xnor_engine_with_the_layer_named():
    with pytest.raises(hwsim.UnsupportedOpError, match="conv1"):
        hwsim.simulate(graph("resnet20"), "fpga/pynq-z1")
