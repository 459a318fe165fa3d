"""IMCSpec validation and the shipped IMC presets."""
import dataclasses

import pytest

import hwsim
from hwsim.errors import SpecError
from hwsim.imc.spec import IMCSpec, SignedWeights


@pytest.mark.parametrize("name", ["imc/isaac", "imc/neurosim-rram-22nm", "imc/edge-small"])
def test_presets_load(name):
    s = hwsim.load_preset(name)
    assert isinstance(s, IMCSpec) and s.name == name
    assert s.crossbars == s.tiles * s.crossbars_per_tile


def test_isaac_geometry():
    s = hwsim.load_preset("imc/isaac")
    assert (s.rows, s.cols, s.cell_bits, s.weight_bits) == (128, 128, 2, 16)
    assert s.slices == 8 and s.columns_per_weight == 8  # 16-bit weights over 8 cells
    assert s.input_steps == 16  # 1-bit DAC, 16-bit inputs
    assert s.crossbars == 168 * 96
    assert s.step_time_s == pytest.approx(100e-9)  # 128 columns at 1.28 GS/s = the 100 ns read


def test_edge_small_inherits_neurosim():
    base, small = hwsim.load_preset("imc/neurosim-rram-22nm"), hwsim.load_preset("imc/edge-small")
    assert small.tiles < base.tiles and small.rows == base.rows and small.adc_bits == base.adc_bits


def test_differential_doubles_columns():
    s = IMCSpec(weight_bits=8, cell_bits=2, signed_weights=SignedWeights.DIFFERENTIAL)
    assert s.slices == 4 and s.columns_per_weight == 8  # 7 magnitude bits over 2-bit cells, x2
    assert IMCSpec(weight_bits=8, cell_bits=2).columns_per_weight == 4


@pytest.mark.parametrize("field,value,words", [
    ("adc_bits", 0, "adc_bits"), ("adc_bits", 17, "adc_bits"), ("rows", 0, "rows"), ("cols", -4, "cols"),
    ("cell_bits", 9, "cell_bits"), ("tiles", 0, "tiles"), ("signed_weights", "both", "signed_weights"),
    ("duplication", "max", "duplication"), ("stuck_at_rate", 1.5, "stuck_at_rate"), ("dac_bits", 9, "dac_bits"),
    ("rows", 12.5, "rows"),
])
def test_bad_fields_raise_spec_error(field, value, words):
    with pytest.raises(SpecError, match=words):
        dataclasses.replace(IMCSpec(), **{field: value})


def test_cell_bits_above_weight_bits_message():
    with pytest.raises(SpecError, match=r"cell_bits \(9\) must be <= weight_bits \(8\)"):
        IMCSpec(cell_bits=9, weight_bits=8)


def test_bad_error_is_hwsim_error():
    with pytest.raises(hwsim.HwsimError):
        IMCSpec(adc_bits=20)


def test_cli_fit_and_bad_preset_exit_codes(tmp_path, capsys):
    from hwsim.cli import main

    assert main(["fit", "--net", "itnet", "--hw", "imc/edge-small"]) == 0
    assert "FITS" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: imc/edge-small\nadc_bits: 20\n")
    assert main(["fit", "--net", "itnet", "--hw", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "adc_bits" in err and len(err.strip().splitlines()) == 1


def test_adc_figures_scale_with_resolution():
    isaac = hwsim.load_preset("imc/isaac")  # figures given for its 8-bit ADC
    assert isaac.adc_energy_eff_pj == isaac.adc_energy_pj and isaac.adc_rate_eff_hz == isaac.adc_rate_hz
    six = dataclasses.replace(isaac, adc_bits=6)
    assert six.adc_energy_eff_pj == pytest.approx(isaac.adc_energy_pj / 4)  # 2^B levels
    assert six.adc_area_eff_um2 == pytest.approx(isaac.adc_area_um2 / 4)
    assert six.adc_rate_eff_hz == pytest.approx(isaac.adc_rate_hz * 8 / 6)  # one bit per SAR cycle
    e = [hwsim.simulate("resnet20", dataclasses.replace(isaac, adc_bits=b), mode="layer").report.energy_breakdown["adc"]
         for b in (6, 7, 8)]
    assert e[0] < e[1] < e[2]
    assert IMCSpec(adc_bits=4).adc_energy_eff_pj == IMCSpec().adc_energy_pj  # no reference bits: no scaling


def test_reference_column_is_off_by_default_and_costed_as_one_more_bit_line():
    from hwsim.imc.cost import tile_area_mm2, tile_power_w

    base = IMCSpec(on_off_ratio=17.0)
    assert not base.reference_column and base.bitline_scale == 1.0
    ref = dataclasses.replace(base, reference_column=True)
    assert ref.bitline_scale == pytest.approx(129 / 128)
    assert tile_power_w(ref)["crossbar"] == pytest.approx(tile_power_w(base)["crossbar"] * 129 / 128)
    assert tile_power_w(ref)["adc"] == tile_power_w(base)["adc"]  # subtracted in analog: no extra conversions
    extra = base.crossbars_per_tile * base.crossbar_area_um2 / 128 * 1e-6
    assert tile_area_mm2(ref) == pytest.approx(tile_area_mm2(base) + extra)
    e = [hwsim.simulate("resnet20", s, mode="layer").report.energy_breakdown for s in (base, ref)]
    assert e[1]["crossbar"] == pytest.approx(e[0]["crossbar"] * 129 / 128) and e[1]["adc"] == e[0]["adc"]


@pytest.mark.parametrize("kw,words", [
    (dict(reference_column=True), "finite on_off_ratio"),
    (dict(reference_column=True, on_off_ratio=17.0, signed_weights=SignedWeights.DIFFERENTIAL), "signed_weights"),
    (dict(reference_column="yes", on_off_ratio=17.0), "reference_column"),
])
def test_reference_column_validation(kw, words):
    with pytest.raises(SpecError, match=words) as e:
        IMCSpec(**kw)
    assert "\n" not in str(e.value)
