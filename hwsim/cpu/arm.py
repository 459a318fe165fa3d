"""Arm cores as hardware records, independent of any runtime.

One frozen :class:`ArmCore` per core hwsim models. A board is a core plus its clock, caches, memories and core
count (the :class:`~hwsim.cpu.spec.CPUSpec` fields, set by a preset); a runtime (:mod:`hwsim.cpu.runtime`) decides
which instructions a layer runs as. The figures here are the ones the runtime models use:

``fp32_fma_per_cycle``
    fp32 fused multiply-adds one core completes per cycle at its peak issue rate: SIMD lanes × vector-FMA
    instructions per cycle (Cortex-A: Q-form ``FMLA`` throughput in the core's Software Optimization Guide, SWOG;
    Cortex-M: ``VFMA.F32`` of the FPU, or Helium ``VFMA`` beats).
``int8_mac_per_cycle``
    int8 multiply-accumulates per cycle with the instruction a tuned int8 kernel uses (``int8_instr``): ``SDOT``
    (16 MACs per Q-form instruction) on Armv8.2-A cores with the dot-product extension (A55, A76, A78); ``SMLAL`` /
    ``SMLAL2`` widening to 16 bits (8 MACs per Q-form instruction) on Armv8.0-A cores (A53, A57, A72, A73); ``SMLAD``
    (two 16 × 16-bit MACs per instruction, the operands sign-extended from int8 first) on the Armv7E-M / Armv8-M
    Mainline DSP extension (M4, M7, M33); Helium ``VMLADAV.S8`` / ``VMLA.S8`` (16 MACs per instruction over 4 beats)
    on Armv8.1-M (M55, M85); ``MULS`` + ``ADDS`` on the M0+ (Armv6-M, no DSP).
``fp16_fma_per_cycle``
    fp16 FMAs per cycle on the Armv8.2-A cores with FP16 vector arithmetic (A55, A76, A78: a Q-form ``FMLA`` on
    8 halves); ncnn runs its "fp32" models in fp16 there by default (:mod:`hwsim.cpu.runtime`).
``issue_width`` / ``out_of_order``
    instructions decoded per cycle and whether the core reorders them (the in-order cores stall on load latency
    unless the kernel interleaves loads by hand, the reason ncnn ships A53/A55-specific assembly).
``fma_latency_cycles``
    cycles from an fp32 (vector) FMA's issue to its result usable by a dependent FMA (accumulator chains: a GEMM
    micro-kernel needs latency × throughput independent accumulators to reach peak).

Sources per core are in each record's ``source``. A78AE (NVIDIA Orin) is an A78 with split-lock: same pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import UnknownNameError

__all__ = ["ArmCore", "CORES", "CORE_NAMES", "A_PROFILE", "M_PROFILE", "core"]


@dataclass(frozen=True, slots=True)
class ArmCore:
    """One Arm core (see the module docstring for the meaning of each figure)."""

    name: str
    profile: str  # "A" (application, NEON) | "M" (microcontroller)
    arch: str  # Arm architecture version
    issue_width: int  # instructions decoded per cycle
    out_of_order: bool
    simd_bits: int  # vector register width (NEON / Helium 128; 32 = scalar DSP / FPU registers)
    fp32_fma_per_cycle: float  # fp32 FMAs per cycle per core (lanes x vector FMA issue rate)
    int8_mac_per_cycle: float  # int8 MACs per cycle per core with int8_instr
    int8_instr: str
    fma_latency_cycles: int
    source: str
    fp16_fma_per_cycle: float = 0.0  # fp16 FMAs per cycle (Armv8.2 FP16 vector arithmetic: 8 lanes per Q-form
    # FMLA, twice the fp32 rate); 0 = no fp16 vector arithmetic (Armv8.0 cores, Cortex-M but Helium)


_A_SRC = "Arm Cortex-{} Software Optimization Guide, ASIMD instruction tables; Cortex-{} TRM, introduction"
CORES: dict[str, ArmCore] = {c.name: c for c in (
    # in-order dual-issue, 64-bit NEON datapath: a Q-form FMLA holds the MAC pipe two cycles (throughput 1/2);
    # a dependent FMLA chain recurs every 4 cycles (the addend forwards). Arm publishes no A53 optimization guide:
    # the timings are Arm's "Cortex-A53 Software Optimisation Specification - Instruction Timings" as transcribed in
    # LLVM's llvm/lib/Target/AArch64/AArch64SchedA53.td (A53WriteFMACQ: ReleaseAtCycles 2; A53ReadFPMA4)
    ArmCore("cortex-a53", "A", "Armv8.0-A", 2, False, 128, 2.0, 4.0, "smlal (8x int16 MAC per Q-form, half rate)", 4,
            "Cortex-A53 TRM (DDI 0500), introduction; LLVM AArch64SchedA53.td (Q-form ASIMD ops occupy the 64-bit "
            "FP/ASIMD pipe 2 cycles; FP MAC chain every 4 cycles)"),
    # in-order dual-issue; two 64-bit FP/ASIMD pipes, a Q-form op takes both for one cycle (LLVM's
    # AArch64SchedA55.td: CortexA55WriteVq uses [FPALU, FPALU]); dot-product extension (Armv8.2): SDOT Q-form 16 MACs;
    # FMLA / SDOT Q-form 1 per cycle
    ArmCore("cortex-a55", "A", "Armv8.2-A", 2, False, 128, 4.0, 16.0, "sdot (16x int8 MAC per Q-form)", 4,
            _A_SRC.format("A55", "A55") + " (ARM-EPM-128372, DDI 0442); LLVM AArch64SchedA55.td (Q-form on both "
            "64-bit FP/ASIMD pipes)", fp16_fma_per_cycle=8.0),
    # 3-wide out-of-order; FP/ASIMD pipes F0/F1, Q-form FMLA throughput 1 per cycle, latency 10 (chained 5)
    ArmCore("cortex-a57", "A", "Armv8.0-A", 3, True, 128, 4.0, 8.0, "smlal (8x int16 MAC per Q-form)", 10,
            _A_SRC.format("A57", "A57") + " (UAN 0015B, DDI 0488)"),
    # 3-wide out-of-order; Q-form FMLA throughput 1 per cycle (8 fp32 FLOP/cycle), latency 7
    ArmCore("cortex-a72", "A", "Armv8.0-A", 3, True, 128, 4.0, 8.0, "smlal (8x int16 MAC per Q-form)", 7,
            _A_SRC.format("A72", "A72") + " (UAN 0016A, DDI 0488)"),
    # 2-wide out-of-order; Q-form FMLA throughput 1 per cycle
    ArmCore("cortex-a73", "A", "Armv8.0-A", 2, True, 128, 4.0, 8.0, "smlal (8x int16 MAC per Q-form)", 7,
            _A_SRC.format("A73", "A73") + " (DDI 0557)"),
    # 4-wide out-of-order; two 128-bit ASIMD pipes V0/V1: FMLA and SDOT Q-form throughput 2 per cycle, FMLA latency 4
    ArmCore("cortex-a76", "A", "Armv8.2-A", 4, True, 128, 8.0, 32.0, "sdot (16x int8 MAC per Q-form, 2 pipes)", 4,
            _A_SRC.format("A76", "A76") + " (PJDOC-466751330-7215, DDI 0552)", fp16_fma_per_cycle=16.0),
    # as A76 (two 128-bit ASIMD pipes); A78AE identical pipeline
    ArmCore("cortex-a78", "A", "Armv8.2-A", 4, True, 128, 8.0, 32.0, "sdot (16x int8 MAC per Q-form, 2 pipes)", 4,
            _A_SRC.format("A78", "A78") + " (PJDOC-1505342170-538636, DDI 0585)", fp16_fma_per_cycle=16.0),
    # Armv6-M, 2-stage, no DSP, no FPU: MULS (1 cycle with the fast multiplier) + ADDS per MAC; fp32 in software
    # (~50 cycles per soft-float multiply-add, Arm compiler's __aeabi_fmul/__aeabi_fadd)
    ArmCore("cortex-m0plus", "M", "Armv6-M", 1, False, 32, 0.02, 0.5, "muls + adds", 1,
            "Cortex-M0+ TRM (DDI 0484), instruction timing; CMSIS-NN Source/ConvolutionFunctions (no DSP path)"),
    # Armv7E-M, 3-stage single-issue: SMLAD 2 MACs in 1 cycle; FPv4-SP VFMA.F32 3 cycles
    ArmCore("cortex-m4", "M", "Armv7E-M", 1, False, 32, 1 / 3, 2.0, "smlad (2x int16 MAC)", 3,
            "Cortex-M4 TRM (DDI 0439), instruction timing and FPU instruction set"),
    # Armv7E-M, 6-stage dual-issue superscalar: SMLAD 1 per cycle (one MAC pipe), loads dual-issued;
    # FPv5 VFMA.F32 pipelined, 1 per cycle, latency 3
    ArmCore("cortex-m7", "M", "Armv7E-M", 2, False, 32, 1.0, 2.0, "smlad (2x int16 MAC, loads dual-issued)", 3,
            "Cortex-M7 TRM (DDI 0489), processor pipeline; Arm Cortex-M7 technical reference, FPU"),
    # Armv8-M Mainline with DSP extension, 3-stage: SMLAD 1 cycle; FPv5-SP VFMA.F32 3 cycles
    ArmCore("cortex-m33", "M", "Armv8-M", 1, False, 32, 1 / 3, 2.0, "smlad (2x int16 MAC)", 3,
            "Cortex-M33 TRM (100230), instruction timing"),
    # Armv8.1-M + Helium (MVE), dual-beat: 64 bits of a 128-bit vector per cycle: 8 int8 MACs, 2 fp32 FMAs
    ArmCore("cortex-m55", "M", "Armv8.1-M", 1, False, 128, 2.0, 8.0, "vmladav.s8 (Helium, dual-beat)", 4,
            "Cortex-M55 TRM (101051), MVE beats per tick; Arm Helium technology M-profile vector extension guide"),
    # Armv8.1-M + Helium dual-beat, dual-issue scalar 7-stage pipeline
    ArmCore("cortex-m85", "M", "Armv8.1-M", 2, False, 128, 2.0, 8.0, "vmladav.s8 (Helium, dual-beat)", 4,
            "Cortex-M85 TRM (101924), MVE beats per tick"),
)}
CORE_NAMES = tuple(CORES)
A_PROFILE = tuple(n for n, c in CORES.items() if c.profile == "A")
M_PROFILE = tuple(n for n, c in CORES.items() if c.profile == "M")


def core(name: str) -> ArmCore:
    """The :class:`ArmCore` called ``name`` (``"cortex-a72"``); an unknown name raises :class:`UnknownNameError`."""
    if name not in CORES:
        raise UnknownNameError("Arm core", name, CORES)
    return CORES[name]
