"""Crossbar mapping (row/column splits, slices, block-diagonal groups, duplication) and the fit verdict."""
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
import mapping
import nets
from hwsim.errors import MappingError
from hwsim.imc.spec import IMCSpec, SignedWeights
from mapping.imc import layer_geometry, map_graph


def _graph(module, shape):
    return mapping.trace(module.eval(), shape)


def test_dense_conv_splits():
    # 3x3 conv 64 -> 100: K = 576 rows -> 5 row splits of 128; 100 outputs x 4 cells (8-bit on 2-bit cells)
    # = 400 columns -> 4 column splits of 128 (offset); x2 for differential -> 7 (800 / 128)
    g = _graph(torch.nn.Conv2d(64, 100, 3, padding=1), (1, 64, 8, 8))
    lm = map_graph(g, IMCSpec(weight_bits=8, cell_bits=2)).layers[0]
    assert (lm.row_splits, lm.col_splits, lm.crossbars) == (5, 4, 20)
    assert lm.used_cells == 576 * 400 and lm.wasted_cells == 20 * 128 * 128 - 576 * 400
    lm = map_graph(g, IMCSpec(weight_bits=8, cell_bits=2, signed_weights=SignedWeights.DIFFERENTIAL)).layers[0]
    assert (lm.row_splits, lm.col_splits) == (5, 7)  # 100 x 2 x ceil(7/2)=4 -> 800 columns


def test_depthwise_block_diagonal():
    # depthwise 3x3 on 32 channels: K = 9, N = 1 -> 4 columns per group; 128 // 9 = 14 groups per
    # crossbar by rows, 128 // 4 = 32 by columns -> 14 per crossbar, ceil(32 / 14) = 3 crossbars
    g = _graph(torch.nn.Conv2d(32, 32, 3, groups=32, padding=1), (1, 32, 8, 8))
    lm = map_graph(g, IMCSpec(weight_bits=8, cell_bits=2)).layers[0]
    assert lm.groups_per_crossbar == 14 and lm.crossbars == 3
    assert lm.used_cells == 32 * 9 * 4 and lm.wasted_cells == 3 * 128 * 128 - 32 * 9 * 4


def test_large_groups_are_mapped_separately():
    # groups of K = 64*9 = 576 > 128 rows: each of the 2 groups is its own matrix of 5 row splits
    # x 1 column split (32 outputs x 4 cells = 128 columns)
    g = _graph(torch.nn.Conv2d(128, 64, 3, groups=2), (1, 128, 6, 6))
    lm = map_graph(g, IMCSpec(weight_bits=8, cell_bits=2)).layers[0]
    assert lm.groups_per_crossbar == 1 and lm.crossbars == 2 * 5 * 1 and lm.row_splits == 5


@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 300), cout=st.integers(1, 300), k=st.sampled_from([1, 3]), rows=st.sampled_from([64, 128, 256]),
       cell=st.sampled_from([1, 2, 4]), wbits=st.sampled_from([4, 8]))
def test_dense_crossbars_hold_every_weight(cin, cout, k, rows, cell, wbits):
    g = _graph(torch.nn.Conv2d(cin, cout, k), (1, cin, k + 1, k + 1))
    s = IMCSpec(rows=rows, cols=rows, cell_bits=cell, weight_bits=wbits)
    lm = map_graph(g, s).layers[0]
    assert lm.crossbars == math.ceil(cin * k * k / rows) * math.ceil(cout * math.ceil(wbits / cell) / rows)
    assert lm.crossbars * rows * rows >= cin * k * k * cout * s.columns_per_weight == lm.used_cells


def _itnet(T, shared):
    return hwsim.as_graph(nets.get("itnet", iterations=T, shared=shared), (1, 3, 32, 32))


@pytest.mark.parametrize("T", [2, 4])
def test_itnet_shared_needs_one_over_T_of_the_block(T):
    spec = hwsim.load_preset("imc/edge-small")
    sh, un = hwsim.fit(_itnet(T, True), spec), hwsim.fit(_itnet(T, False), spec)
    block_sh = sum(v for k, v in sh.crossbars_by_layer.items() if k.startswith("block."))
    block_un = sum(v for k, v in un.crossbars_by_layer.items() if k.startswith("blocks."))
    assert block_sh > 0 and block_un == T * block_sh
    other = sh.crossbars_needed - block_sh
    assert un.crossbars_needed == other + T * block_sh
    assert sh.executions == un.executions and sh.weight_matrices < un.weight_matrices


def test_fit_verdict_flips_on_edge_small():
    spec = hwsim.load_preset("imc/edge-small")
    sh, un = hwsim.fit(_itnet(4, True), spec), hwsim.fit(_itnet(4, False), spec)
    assert sh.fits and not sh.spilled_layers and sh.utilization <= 1
    assert not un.fits and un.spilled_layers and un.utilization > 1
    assert un.min_crossbars_to_fit == un.crossbars_needed > un.crossbars_available == spec.crossbars
    assert "spill" in un.reason and "blocks." in un.reason
    # the unshared twin fits once the chip has min_tiles_to_fit tiles
    bigger = dataclasses.replace(spec, tiles=un.min_tiles_to_fit)
    assert hwsim.fit(_itnet(4, False), bigger).fits
    assert not hwsim.fit(_itnet(4, False), dataclasses.replace(spec, tiles=un.min_tiles_to_fit - 1)).fits
    assert un.to_dict()["fits"] is False


def test_shared_key_placed_once_first_fit():
    g = mapping.passes.fold_bn(_itnet(3, True))
    m = map_graph(g, hwsim.load_preset("imc/isaac"))
    geo = layer_geometry(g)
    assert len(m.layers) == len(geo) == 5
    block = [lm for lm in m.layers if len(lm.geometry.nodes) == 3]
    assert len(block) == 3  # two block convs and the shared head, each executed 3 times
    firsts = sorted((lm.first_crossbar, lm.crossbars) for lm in m.layers)
    for (f0, c0), (f1, _) in zip(firsts, firsts[1:]):
        assert f1 == f0 + c0  # contiguous, non-overlapping


def test_duplication_balance_replicates_the_slowest():
    g = mapping.passes.fold_bn(hwsim.as_graph("resnet20"))
    s = dataclasses.replace(hwsim.load_preset("imc/edge-small"), tiles=16, duplication="balance")
    m = map_graph(g, s)
    assert m.crossbars_used <= s.crossbars and m.crossbars_used > m.crossbars_needed
    work = {lm.key: sum(lm.geometry.pixels) / lm.duplicates for lm in m.layers}
    first = m.layers[0]  # the stem conv works on the most pixels per crossbar
    assert first.duplicates > 1
    assert max(work.values()) < sum(first.geometry.pixels)  # the bottleneck got faster


def test_duplication_of_a_layer_larger_than_the_chip_is_an_error():
    spec = dataclasses.replace(hwsim.load_preset("imc/edge-small"), tiles=1, duplication="balance")
    with pytest.raises(MappingError, match="more than the whole chip"):
        map_graph(mapping.passes.fold_bn(_itnet(2, True)), spec)  # a block conv needs 20 of 16 crossbars


def test_fit_reports_the_largest_feature_maps_against_the_buffers(capsys):
    """The fit report compares the largest conv/linear input + output feature maps (input_bits) with the
    chip's buffers; the CLI JSON carries it with the derived utilization."""
    import json

    from hwsim.cli import main

    conv = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU()).eval()
    spec = IMCSpec(rows=128, cols=128, cell_bits=2, weight_bits=8, input_bits=8, tiles=2, crossbars_per_tile=4,
                   buffer_bytes_per_tile=16384)
    fr = hwsim.fit(conv, spec, input_shape=(1, 16, 32, 32))
    assert fr.largest_working_set_bytes == 16 * 32 * 32 + 32 * 32 * 32 and fr.activation_buffer_bytes == 32768
    assert not fr.activations_fit and "stream through DRAM" in fr.reason
    big = hwsim.fit(conv, dataclasses.replace(spec, buffer_bytes_per_tile=65536), input_shape=(1, 16, 32, 32))
    assert big.activations_fit and big.fits == fr.fits
    assert main(["fit", "--net", "itnet", "--hw", "imc/edge-small", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["activations_fit"] is True and d["utilization"] == d["crossbars_needed"] / d["crossbars_available"]
