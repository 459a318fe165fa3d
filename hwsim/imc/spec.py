"""The IMC accelerator spec: one frozen, validated dataclass (``IMCSpec``).

The machine: ``tiles`` tiles of ``crossbars_per_tile`` crossbars of ``rows`` x ``cols`` cells, each
cell storing ``cell_bits`` bits of a ``weight_bits`` weight (a weight occupies
``ceil(weight_bits / cell_bits)`` adjacent columns, x2 for differential signed weights). Inputs
enter ``dac_bits`` bits at a time (1 = bit-serial) over ``ceil(input_bits / dac_bits)`` steps; every
column's analog partial sum is digitised by an ADC of ``adc_bits`` bits shared by ``cols_per_adc``
columns, then shifted and added digitally. Each field documents its unit; presets in
``hwsim/presets/imc/*.yaml`` cite the source of every constant.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from hwsim.errors import SpecError
from hwsim.specs import check_choice, check_positive, check_range, spec_class

__all__ = ["IMCSpec", "SignedWeights", "Duplication", "AdcMode", "HOROWITZ_45NM_PJ"]

# Energy per operation at 45 nm, 0.9 V (Horowitz, "Computing's energy problem (and what we can do about it)",
# ISSCC 2014, Fig. 1.1.9): the digital unit's multipliers and fp32 arithmetic, scaled to a chip's tech_node_nm.
HOROWITZ_45NM_PJ = {
    "int8_mult": 0.2,  # 8-bit integer multiply
    "int32_add": 0.1,  # 32-bit integer add (the accumulator of a multiply-accumulate)
    "fp32_mult": 3.7,  # 32-bit floating-point multiply
    "fp32_add": 0.9,  # 32-bit floating-point add
}
HOROWITZ_NODE_NM = 45.0


class SignedWeights(str, enum.Enum):
    """How signed weights are stored in (non-negative) conductances.

    OFFSET: w + 2^(b-1) stored unsigned in b bits; the offset 2^(b-1)·Σx is subtracted digitally.
    DIFFERENTIAL: |w| in a positive and a negative column (b-1 magnitude bits each, 2x columns).
    """

    OFFSET = "offset"
    DIFFERENTIAL = "differential"


class Duplication(str, enum.Enum):
    """NONE: every weight matrix placed once. BALANCE: spare crossbars replicate the slowest layers."""

    NONE = "none"
    BALANCE = "balance"


class AdcMode(str, enum.Enum):
    """How a partial sum p (an integer >= 0) becomes an ADC code.

    CLIP: LSB = 1 (one unit of input-step x cell value); codes saturate at 2^adc_bits - 1.
    SCALE: LSB = the smallest power of two 2^s with (2^adc_bits - 1)·2^s >= the largest partial sum
      the crossbar can produce; code = round(p / 2^s) (resolution is lost, nothing clips).
    Both are exact when 2^adc_bits - 1 covers the partial-sum range.
    """

    CLIP = "clip"
    SCALE = "scale"


@spec_class("imc")
@dataclass(frozen=True, slots=True)
class IMCSpec:
    """An in-memory-computing crossbar accelerator. Units are in the field names or comments.

    The defaults are ISAAC's figures (8-bit weights and inputs instead of 16); their sources are
    cited in ``hwsim/presets/imc/isaac.yaml``. Use a preset (``hwsim.load_preset("imc/isaac")``)
    or ``dataclasses.replace`` on one for real studies.
    """

    name: str = "imc"  # preset name, for reports
    # --- array geometry
    rows: int = 128  # word lines per crossbar
    cols: int = 128  # bit lines per crossbar
    cell_bits: int = 2  # bits stored per cell
    weight_bits: int = 8  # bits per weight (symmetric signed quantization)
    input_bits: int = 8  # bits per input activation
    dac_bits: int = 1  # input bits applied per step (1 = bit-serial)
    adc_bits: int = 8  # ADC resolution, bits
    adc_mode: AdcMode = AdcMode.CLIP
    adc_ref_bits: int = 0  # resolution the ADC energy/area/rate figures are for; 0: adc_bits (no scaling)
    cols_per_adc: int = 1  # columns multiplexed onto one ADC
    crossbars_per_tile: int = 96
    tiles: int = 168
    buffer_bytes_per_tile: int = 65536  # activation buffer (eDRAM/SRAM) per tile, bytes
    signed_weights: SignedWeights = SignedWeights.OFFSET
    # ISAAC §5 encoding: in each row split, a (slice, column) pair whose cells sum to more than half of
    # rows·(2^cell_bits - 1) stores their complement (2^cell_bits - 1 - cell) and the digital periphery
    # adds back (2^cell_bits - 1)·Σ inputs: every partial sum stays within half the full scale (one ADC bit less)
    column_flip: bool = False
    duplication: Duplication = Duplication.NONE
    # --- timing
    clock_hz: float = 1.0e9  # digital clock (buffers, shift-add, NoC), Hz
    read_time_s: float = 100e-9  # one crossbar read (one input step, analog settle + sample), s
    adc_rate_hz: float = 1.28e9  # conversions per second of one ADC
    sample_hold: bool = True  # S&H lets the ADCs convert step i while the array reads step i+1
    # ops per clock per tile of the tiles' digital units (lanes x one op per cycle): elementwise ops (relu, add, pool),
    # multiply-accumulates of two activations (matmul, attention) and fp32 multiply-adds (softmax, norms, GELU) alike
    digital_ops_per_cycle: int = 64
    buffer_bandwidth_bytes_s: float = 32e9  # activation buffer bandwidth per tile, bytes/s
    noc_bandwidth_bytes_s: float = 32e9  # bytes/s one tile can send over the network-on-chip
    dram_bandwidth_bytes_s: float = 25.6e9  # off-chip bandwidth, bytes/s
    write_time_s_per_row: float = 0.0  # programming one crossbar row (weight reload), s
    # --- energy per action
    adc_energy_pj: float = 1.67  # per conversion
    dac_energy_pj: float = 0.417  # per row per input step
    crossbar_read_energy_pj: float = 30.0  # per crossbar per read (all rows driven)
    sample_hold_energy_pj: float = 0.001  # per column per read
    shift_add_energy_pj: float = 0.021  # per ADC code shifted and added
    buffer_energy_pj_per_bit: float = 20.45 / 256  # activation buffer access
    noc_energy_pj_per_bit: float = 20.74 / 256  # router traversal
    dram_energy_pj_per_bit: float = 8.0  # off-chip access
    # one elementwise op (add, max, compare) at the activation precision, as given (the presets' 0.03 pJ is
    # Horowitz's 45 nm 8-bit add, not scaled by tech_node_nm: the costs of the ops it prices predate that field)
    digital_energy_pj_per_op: float = 0.03
    # process node of the digital logic, nm: the digital unit's multiply-accumulates and fp32 multiply-adds take
    # Horowitz's 45 nm energies (HOROWITZ_45NM_PJ) x (tech_node_nm / 45)^2: digital_mac_energy_pj, digital_fp_energy_pj
    tech_node_nm: float = 32.0
    write_energy_pj_per_cell: float = 0.0  # programming one cell (weight reload)
    tile_other_power_w: float = 0.0  # rest of a tile while busy (registers, bus, sigmoid/pool units), W
    # --- area
    adc_area_um2: float = 1200.0
    dac_area_um2: float = 0.166
    crossbar_area_um2: float = 25.0
    sample_hold_area_um2: float = 0.04  # per column
    shift_add_area_um2: float = 60.0  # per ADC
    tile_other_area_mm2: float = 0.0  # buffer, bus, router share, registers per tile, mm^2
    # --- non-idealities (all off by default; seeded)
    conductance_sigma: float = 0.0  # relative std of each cell's conductance (multiplicative, fixed per seed)
    stuck_at_rate: float = 0.0  # fraction of cells stuck (half at 0, half at the maximum level)
    adc_noise_lsb: float = 0.0  # std of Gaussian noise added before ADC rounding, in ADC LSB (per conversion, every run)
    # --- device and circuit physics (hwsim/imc/physics.py has the equations; all off by default; seeded)
    # g_max / g_min of a cell, dimensionless; 0 means infinite (g_min = 0, the ideal). NeuroSim V1.4 Param.cpp: RRAM
    # on/off 17 (Ron 100 kOhm); aihwkit's PCM converter maps weights to [0, 25 uS] (g_min 0)
    on_off_ratio: float = 0.0
    # relative std of each cell's conductance drawn again at every functional run (1/f read noise; the samples of one
    # batch share a draw), dimensionless;
    # aihwkit PCMLikeNoiseModel: 0.0088 / (g/g_max)^0.65 x sqrt(ln((t + t_read) / (2 t_read))), ~0.037 at g_max, t = 20 s
    read_sigma: float = 0.0
    drift_time_s: float = 0.0  # time since programming at which the chip is read, s (drift acts when > drift_t0_s)
    drift_t0_s: float = 20.0  # drift reference time t0, s (aihwkit PCMLikeNoiseModel t_0 = 20 s)
    # mean and std across cells of the PCM drift exponent nu, g(t) = g0 (t / t0)^-nu, dimensionless (aihwkit
    # PCMLikeNoiseModel after Nandakumar et al. ICECS 2019: mean 0.049-0.1, std 0.008-0.045 by conductance)
    drift_nu_mean: float = 0.0
    drift_nu_std: float = 0.0
    drift_compensation: bool = False  # global drift compensation: read-out scaled by sum g(t0) / sum g(t) per row block
    # ADC transfer: peak integral non-linearity (a mid-scale bow) and std of each code's width error, in LSB; datasheets
    # state both in LSB (e.g. a SAR ADC "INL/DNL < 0.5 LSB"); the transfer is fixed per seed, shared by all ADCs
    adc_inl_lsb: float = 0.0
    adc_dnl_lsb: float = 0.0
    # IR drop: fraction of its current the row farthest from the sense amplifier loses on the bit line, dimensionless;
    # row k of R is attenuated by 1 - ir_drop k / (R - 1) (static linear model; an assumed knob, no cited value)
    ir_drop: float = 0.0
    # a reference column of level-0 (g_min) cells per crossbar whose bit-line current is subtracted from every column's
    # before the ADC, cancelling the g_min leakage of OFFSET weights (bool; needs on_off_ratio > 1 and offset weights:
    # differential pairs cancel it already). After NeuroSim's dummy column (DNN_NeuroSim V1.3,
    # Inference_pytorch/modules/quantization_cpu_np_infer.py: one dummy column per sub-array, subtracted from every
    # column's output; there it holds the mid level and is digitised); here level 0, subtracted in analog (the ADC count
    # is unchanged), costed as one more bit line per crossbar (bitline_scale)
    reference_column: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "rows", "cols", "cell_bits", "weight_bits", "input_bits", "dac_bits", "cols_per_adc",
                       "crossbars_per_tile", "tiles", "buffer_bytes_per_tile", "clock_hz", "read_time_s",
                       "adc_rate_hz", "digital_ops_per_cycle", "tech_node_nm", "buffer_bandwidth_bytes_s",
                       "noc_bandwidth_bytes_s", "dram_bandwidth_bytes_s")
        for n in ("rows", "cols", "cell_bits", "weight_bits", "input_bits", "dac_bits", "adc_bits", "adc_ref_bits",
                  "cols_per_adc",
                  "crossbars_per_tile", "tiles", "buffer_bytes_per_tile", "digital_ops_per_cycle"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(f"IMCSpec.{n} must be an int, got {v!r}")
        check_range(self, "adc_bits", 1, 16)
        check_range(self, "adc_ref_bits", 0, 16)
        check_range(self, "weight_bits", 2, 16)
        check_range(self, "input_bits", 1, 16)
        check_positive(self, "write_time_s_per_row", "adc_energy_pj", "dac_energy_pj", "crossbar_read_energy_pj",
                       "sample_hold_energy_pj", "shift_add_energy_pj", "buffer_energy_pj_per_bit",
                       "noc_energy_pj_per_bit", "dram_energy_pj_per_bit", "digital_energy_pj_per_op",
                       "write_energy_pj_per_cell", "tile_other_power_w", "adc_area_um2", "dac_area_um2",
                       "crossbar_area_um2", "sample_hold_area_um2", "shift_add_area_um2", "tile_other_area_mm2",
                       "conductance_sigma", "adc_noise_lsb", "read_sigma", "drift_time_s", "drift_nu_mean",
                       "drift_nu_std", "adc_inl_lsb", "adc_dnl_lsb", allow_zero=True)
        check_positive(self, "drift_t0_s")
        check_range(self, "stuck_at_rate", 0.0, 1.0)
        check_range(self, "ir_drop", 0.0, 0.99)
        if self.on_off_ratio != 0 and not (isinstance(self.on_off_ratio, (int, float)) and self.on_off_ratio > 1):
            raise SpecError(f"IMCSpec.on_off_ratio must be > 1 (or 0 for infinite), got {self.on_off_ratio!r}")
        if self.cell_bits > self.weight_bits:
            raise SpecError(f"IMCSpec.cell_bits ({self.cell_bits}) must be <= weight_bits ({self.weight_bits})")
        if self.dac_bits > self.input_bits:
            raise SpecError(f"IMCSpec.dac_bits ({self.dac_bits}) must be <= input_bits ({self.input_bits})")
        if self.cols_per_adc > self.cols:
            raise SpecError(f"IMCSpec.cols_per_adc ({self.cols_per_adc}) must be <= cols ({self.cols})")
        for f in ("column_flip", "sample_hold", "drift_compensation", "reference_column"):
            if not isinstance(getattr(self, f), bool):
                raise SpecError(f"IMCSpec.{f} must be true or false, got {getattr(self, f)!r}")
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"IMCSpec.name must be a non-empty string, got {self.name!r}")
        check_choice(self, "signed_weights", list(SignedWeights))
        check_choice(self, "duplication", list(Duplication))
        check_choice(self, "adc_mode", list(AdcMode))
        if self.reference_column and self.signed_weights != SignedWeights.OFFSET:
            raise SpecError("IMCSpec.reference_column needs signed_weights='offset' (differential column pairs already "
                            "cancel the g_min leakage)")
        if self.reference_column and self.on_off_ratio == 0:
            raise SpecError("IMCSpec.reference_column needs a finite on_off_ratio (> 1): with g_min = 0 there is no "
                            "leakage to subtract")
        if self.columns_per_weight > self.cols:
            raise SpecError(f"IMCSpec.cols ({self.cols}) is narrower than one weight "
                            f"({self.columns_per_weight} columns)")

    # -- derived geometry (properties: never stale)
    @property
    def magnitude_bits(self) -> int:
        """Bits stored per weight column group: weight_bits (offset) or weight_bits - 1 (differential)."""
        return self.weight_bits if self.signed_weights == SignedWeights.OFFSET else self.weight_bits - 1

    @property
    def slices(self) -> int:
        """Cells (columns) per weight and sign: ceil(magnitude_bits / cell_bits)."""
        return math.ceil(self.magnitude_bits / self.cell_bits)

    @property
    def columns_per_weight(self) -> int:
        """Physical columns one weight occupies: slices, x2 for differential."""
        return self.slices * (2 if self.signed_weights == SignedWeights.DIFFERENTIAL else 1)

    @property
    def bitline_scale(self) -> float:
        """Bit lines per crossbar over ``cols``: (cols + 1) / cols with the reference column, else 1. The array's area
        and read energy are taken proportional to its bit lines (the reference column's cells and read current)."""
        return (self.cols + 1) / self.cols if self.reference_column else 1.0

    @property
    def input_steps(self) -> int:
        """Input steps per MVM: ceil(input_bits / dac_bits)."""
        return math.ceil(self.input_bits / self.dac_bits)

    # -- the digital unit (activation x activation products, nonlinear functions, normalisations)
    @property
    def digital_energy_scale(self) -> float:
        """Dynamic energy at tech_node_nm relative to 45 nm: (tech_node_nm / 45)^2 (stated rule of thumb: switched
        capacitance and the square of the supply voltage both shrink with the node; not a measured figure)."""
        return (self.tech_node_nm / HOROWITZ_NODE_NM) ** 2

    @property
    def digital_mac_energy_pj(self) -> float:
        """One multiply-accumulate of two ``input_bits`` activations on the digital unit, pJ: an integer multiply
        (Horowitz 8-bit 0.2 pJ x (input_bits / 8)^2: an array multiplier's area grows with the square of the
        width, as his own 32-bit figure, 3.1 pJ ~ 16 x 0.2, shows) plus a 32-bit accumulator add (0.1 pJ), x the
        node scale."""
        h = HOROWITZ_45NM_PJ
        return (h["int8_mult"] * (self.input_bits / 8) ** 2 + h["int32_add"]) * self.digital_energy_scale

    @property
    def digital_fp_energy_pj(self) -> float:
        """One fp32 multiply-add of the digital unit (exp / erf polynomials, normalisation, softmax), pJ: Horowitz
        fp32 multiply 3.7 pJ + add 0.9 pJ at 45 nm, x the node scale."""
        h = HOROWITZ_45NM_PJ
        return (h["fp32_mult"] + h["fp32_add"]) * self.digital_energy_scale

    @property
    def crossbars(self) -> int:
        """Crossbars on the chip."""
        return self.tiles * self.crossbars_per_tile

    @property
    def adcs_per_crossbar(self) -> int:
        return math.ceil(self.cols / self.cols_per_adc)

    # -- the ADC at adc_bits, from figures given at adc_ref_bits (when set):
    # energy per conversion x 2^(B - ref) (Walden figure of merit: energy per conversion-step is
    # constant, so energy grows with the 2^B levels; Murmann's ADC survey), area x 2^(B - ref)
    # (comparator/capacitor array; ZigZag's IMC area model also grows as ~2^B), conversion rate x
    # ref / B (a SAR resolves one bit per cycle; ZigZag's delay model is linear in B).
    @property
    def _adc_delta(self) -> int:
        return 0 if self.adc_ref_bits == 0 else self.adc_bits - self.adc_ref_bits

    def partial_sum_max(self, rows_used: int) -> int:
        """Largest analog partial sum of a row split of ``rows_used`` rows (one input step, one cell column),
        halved by the column-flip encoding."""
        full = min(rows_used, self.rows) * (2**self.dac_bits - 1) * (2**self.cell_bits - 1)
        if self.column_flip:
            return min(rows_used, self.rows) * (2**self.cell_bits - 1) // 2 * (2**self.dac_bits - 1)
        return full

    @property
    def adc_energy_eff_pj(self) -> float:
        """Energy per conversion at adc_bits, pJ."""
        return self.adc_energy_pj * 2.0**self._adc_delta

    @property
    def adc_area_eff_um2(self) -> float:
        """Area of one ADC at adc_bits, um^2."""
        return self.adc_area_um2 * 2.0**self._adc_delta

    @property
    def adc_rate_eff_hz(self) -> float:
        """Conversions per second of one ADC at adc_bits."""
        return self.adc_rate_hz if self.adc_ref_bits == 0 else self.adc_rate_hz * self.adc_ref_bits / self.adc_bits

    @property
    def step_time_s(self) -> float:
        """Time of one input step of one crossbar, s.

        With sample-and-hold (ISAAC): the read of step i+1 overlaps the conversions of step i, so a
        step takes max(read_time, cols_per_adc / adc_rate) (adc_rate at adc_bits, see above). Without (NeuroSim's column mux): each
        of the cols_per_adc mux positions needs its own read and conversion:
        cols_per_adc · (read_time + 1 / adc_rate).
        """
        if self.sample_hold:
            return max(self.read_time_s, self.cols_per_adc / self.adc_rate_eff_hz)
        return self.cols_per_adc * (self.read_time_s + 1.0 / self.adc_rate_eff_hz)

    @property
    def mvm_time_s(self) -> float:
        """One matrix-vector product through one crossbar (all input steps), s."""
        return self.input_steps * self.step_time_s

    @property
    def capacity_weights(self) -> int:
        """Weights the whole chip stores (dense packing)."""
        return self.crossbars * self.rows * (self.cols // self.columns_per_weight)

    @property
    def capacity_bytes(self) -> int:
        """On-chip weight capacity in bytes of weight_bits weights."""
        return self.capacity_weights * self.weight_bits // 8

    @property
    def activation_buffer_bytes(self) -> int:
        """Activations the chip holds: every tile's buffer (reachable over the NoC), bytes."""
        return self.tiles * self.buffer_bytes_per_tile
