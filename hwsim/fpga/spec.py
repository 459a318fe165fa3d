"""``FPGASpec``: an FPGA running a FINN-style streaming dataflow of xnor-popcount MVAUs.

Every field carries its unit in its name. Presets live in ``hwsim/presets/fpga/*.yaml`` (resource
counts from the AMD/Xilinx product tables; each constant cites its source there);
``dataclasses.replace(spec, clock_hz=...)`` makes a variant.

Power model (used by :mod:`hwsim.fpga.cost`): ``static_power_w`` is drawn all the time; a
layer that is busy for one clock cycle spends ``lut_energy_pj`` per LUT it occupies and
``bram18_energy_pj`` per BRAM18 it reads. Energy per frame in the steady state of the pipeline
= static power x initiation interval + sum over layers of busy cycles x (LUTs x e_lut + BRAM18 x
e_bram).
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import SpecError
from hwsim.specs import check_positive, spec_class

__all__ = ["FPGASpec", "BRAM18_BITS"]

BRAM18_BITS = 18 * 1024  # one RAMB18E1/E2 holds 18 Kib (UG473 7-series / UG573 UltraScale memory resources)


@spec_class("fpga")
@dataclass(frozen=True, slots=True)
class FPGASpec:
    """An FPGA for the XNOR/popcount dataflow engine.

    name: preset name, e.g. ``"fpga/pynq-z1"``.
    device: FPGA part, e.g. ``"xc7z020"``.
    clock_hz: fabric clock of the dataflow pipeline in Hz.
    luts: 6-input LUTs available in the programmable logic.
    bram18: 18 Kib block RAMs available (one RAMB36 = two RAMB18).
    dsps: DSP slices available (the binary engine uses none; k-bit native MVAUs may).
    static_power_w: static (leakage) power of the device in W.
    lut_energy_pj: dynamic energy in pJ of one occupied LUT per busy clock cycle (logic + routing).
    bram18_energy_pj: dynamic energy in pJ of one BRAM18 read per busy clock cycle.
    """

    name: str = "fpga"
    device: str = ""
    clock_hz: float = 100e6
    luts: int = 53200
    bram18: int = 280
    dsps: int = 220
    static_power_w: float = 0.14
    lut_energy_pj: float = 0.15
    bram18_energy_pj: float = 10.0

    def __post_init__(self) -> None:
        for f in ("name", "device"):
            if not isinstance(getattr(self, f), str):
                raise SpecError(f"FPGASpec.{f} must be a string, got {getattr(self, f)!r}")
        for f in ("luts", "bram18", "dsps"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(f"FPGASpec.{f} must be an integer, got {v!r}")
        check_positive(self, "clock_hz", "luts", "bram18")
        check_positive(self, "dsps", "static_power_w", "lut_energy_pj", "bram18_energy_pj", allow_zero=True)

    @property
    def bram_bytes(self) -> int:
        """On-chip block RAM capacity in bytes."""
        return self.bram18 * BRAM18_BITS // 8
