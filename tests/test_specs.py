"""Spec registry, YAML loader and validation helpers (with a toy target, independent of the real ones)."""
import dataclasses
import enum

import pytest

import hwsim
from hwsim.errors import HwsimError, PresetError, SpecError, UnknownNameError
from hwsim.specs import (
    check_choice,
    check_positive,
    check_range,
    load_preset,
    spec_class,
    spec_from_dict,
    spec_to_dict,
)


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@spec_class("toy")
@dataclasses.dataclass(frozen=True, slots=True)
class ToySpec:
    size_bytes: int
    clock_hz: float
    bits: int = 8
    mode: Mode = Mode.FAST
    shape: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        check_positive(self, "size_bytes", "clock_hz")
        check_range(self, "bits", 1, 16)
        check_choice(self, "mode", list(Mode))


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yaml_roundtrip_converts_types(tmp_path):
    p = write(tmp_path, "target: toy\nsize_bytes: 1024\nclock_hz: 1e9  # YAML 1.1 reads this as a string\n"
                        "mode: slow\nshape: [3, 4]\n")
    s = load_preset(p)
    assert s == ToySpec(1024, 1e9, mode=Mode.SLOW, shape=(3, 4))
    assert spec_from_dict(spec_to_dict(s)) == s


def test_replace_makes_a_validated_variant():
    s = ToySpec(10, 1.0)
    assert dataclasses.replace(s, bits=4).bits == 4
    with pytest.raises(SpecError, match=r"ToySpec.bits must be in \[1, 16\], got 17"):
        dataclasses.replace(s, bits=17)


@pytest.mark.parametrize("text,match", [
    ("target: toy\nsize_bytes: 1\nclock_hz: 1\nsize_bytes: 2\n", "duplicate key 'size_bytes'"),
    ("target: toy\nsize_bytes: 1\nclock_hz: 1\ncolour: red\n", r"unknown ToySpec field\(s\) \['colour'\]"),
    ("target: toy\nsize_bytes: [1\n", "malformed YAML"),
    ("target: toy\nclock_hz: 1\n", r"missing ToySpec field\(s\) \['size_bytes'\]"),
    ("size_bytes: 1\nclock_hz: 1\n", "missing 'target:'"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_yaml_is_a_preset_error(tmp_path, text, match):
    with pytest.raises(PresetError, match=match):
        load_preset(write(tmp_path, text))


@pytest.mark.parametrize("text,match", [
    ("target: toy\nsize_bytes: 0\nclock_hz: 1\n", "size_bytes must be > 0, got 0"),
    ("target: toy\nsize_bytes: 1\nclock_hz: -3\n", "clock_hz must be > 0"),
    ("target: toy\nsize_bytes: 1\nclock_hz: 1\nmode: medium\n", "mode must be one of"),
    ("target: toy\nsize_bytes: one\nclock_hz: 1\n", "size_bytes must be int"),
])
def test_out_of_range_values_name_the_field(tmp_path, text, match):
    with pytest.raises(SpecError, match=match):
        load_preset(write(tmp_path, text))


def test_base_inherits_and_overrides(tmp_path):
    base = write(tmp_path, "target: toy\nsize_bytes: 64\nclock_hz: 2.0\nbits: 4\n", "base.yaml")
    child = write(tmp_path, f"base: {base}\nbits: 6\n", "child.yaml")
    assert load_preset(child) == ToySpec(64, 2.0, bits=6)


def test_unknown_preset_suggests_close_names():
    names = hwsim.preset_names()
    if names:
        wrong = names[0][:-1] + "x"
        with pytest.raises(UnknownNameError, match="did you mean"):
            load_preset(wrong)
    with pytest.raises(HwsimError):
        load_preset("nothing/like-this-at-all")
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset("missing.yaml")


def test_every_shipped_preset_loads_and_roundtrips():
    for name in hwsim.preset_names():
        spec = load_preset(name)
        assert spec_from_dict(spec_to_dict(spec)) == spec, name
