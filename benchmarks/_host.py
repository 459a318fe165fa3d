"""The x86 host a kernel benchmark runs on: CPU model, ISA extensions, clock and rooflines.

Rooflines (ops = 2 per multiply-accumulate; one thread):

* binary (xnor-popcount): ``popcount issue rate [zmm/cycle] x 512 bit-MACs x 2 x clock``;
* fp32: ``FMA issue rate [zmm/cycle] x 16 lanes x 2 x clock``;
* int8 VNNI: ``vpdpbusd issue rate [zmm/cycle] x 64 MACs x 2 x clock``; AMX int8 (where
  ``amx_tile`` is present): 1024 MACs/cycle x 2 x clock (one TDPBUSD, 16x64 by 64x16 int8 tiles =
  16,384 MACs, issues every 16 cycles: Intel 64 and IA-32 Architectures Optimization Reference
  Manual, chapter "Intel AMX", TMUL throughput).

Issue rates per micro-architecture (``ISSUE_RATES``, instructions per cycle on 512-bit registers),
with their sources:

* Ice Lake-SP / Sapphire Rapids / Emerald Rapids / Granite Rapids (Sunny/Golden/Redwood Cove):
  VPOPCNTQ zmm 1/cycle, port 5 only (uops.info, "VPOPCNTQ (ZMM, ZMM)", ICL/ADL-P rows); FMA zmm
  2/cycle on Xeon parts with the second 512-bit FMA unit on port 5 (Intel Optimization Reference
  Manual, "Intel AVX-512 ... two FMA units"); VPDPBUSD zmm 2/cycle (same two FMA ports, ibid.).
* Zen 4: VPOPCNTQ zmm 1/cycle, FMA zmm 1/cycle, VPDPBUSD zmm 1/cycle: 512-bit operations occupy
  two 256-bit pipes (uops.info Zen 4 rows; Agner Fog, "The microarchitecture of Intel, AMD and VIA
  CPUs", Zen 4 chapter).
* Zen 5 (family 26): VPOPCNTQ zmm 2/cycle, FMA zmm 2/cycle, VPDPBUSD zmm 2/cycle: full 512-bit
  datapaths (AMD, "Software Optimization Guide for the AMD Zen5 Microarchitecture", pub. 58455).
  Measured on the development host (EPYC, family 26, KVM, 2 vCPUs) with :func:`measure_rates`:
  popcount 2.00, FMA 2.00, VNNI 1.98 per cycle at 4.22 GHz.

AVX2 (hosts without VPOPCNTDQ, or a Numba build for an AVX2-only target): ``alu256`` 256-bit vector ALU ops
per cycle / :data:`AVX2_OPS_PER_WORD` x 256 bit-MACs x 2 x clock, the *AVX2 op-mix roofline*: every op of the
``vpshufb`` nibble-table popcount mix runs on the vector ALU pipes, so their issue width bounds it. Zen 4 / Zen 5:
4 vector ALU pipes FP0-FP3 (AMD Software Optimization Guides for Zen 4, pub. 57647, and Zen 5, pub. 58455,
"Floating-Point Unit"); Golden Cove / Sunny Cove: 3 vector ALU ports 0, 1 and 5 (Intel Optimization Reference
Manual, execution-port table). Shuffles and shifts go to a subset of those pipes on every one of these cores,
but the mix has 3 of them per 8 ops, which fits. ``avx2_mix`` (:func:`_avx2_body`) measures the mix on the
host: 3.92-4.05 ops/cycle on the development host (Zen 5; clock error included), i.e. the table's 4 pipes, with nothing else binding.

Unknown micro-architectures use the rates measured by :func:`measure_rates` (independent
instruction chains in an inline-assembly loop, the minimum time of many short repeats). The
measured ``xor + popcount + add`` rate per 64-bit word pair is the *op-mix bound* of an
xnor-popcount kernel: 3 vector ALU micro-ops per word, i.e. 4/3 words per cycle on Zen 5 (4 ALU
pipes) and 2/3 on Golden Cove (ports 0 and 5): 67 % of the popcount roofline in both cases. The
``csa_mix`` rate (AVX-512 IFMA hosts) is that of a 3:2-compression mix with precomputed xor planes,
8 micro-ops per 3 words (:func:`_csa_body`): 75 % of the popcount roofline on Zen 5, measured only
(docs/targets/kernels.md explains why no GEMM uses it).

The clock is measured (a chain of dependent register adds, one per cycle; the faster of two
measurements around the issue-rate loops) because a VM's /proc/cpuinfo reports the TSC frequency,
not the boost clock the benchmark runs at. It varied between 3.9 and 4.4 GHz from run to run on the
shared development host, so a fraction of a roofline carries that uncertainty (about ±6 %). On a shared
host every measurement is the minimum of many short repeats; the load average goes with it.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import llvmlite.binding as llb
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

FLAGS = ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni", "avx512_bitalg", "avx512ifma", "avx_vnni",
         "amx_tile", "amx_int8")


@dataclass(frozen=True)
class IssueRates:
    """512-bit instructions per cycle (one core) and their source."""

    popcnt: float  # VPOPCNTQ zmm per cycle
    fma: float  # VFMADD231PS zmm per cycle
    vnni: float  # VPDPBUSD zmm per cycle
    source: str
    alu256: float = 0.0  # 256-bit vector integer ALU ops (vpxor/vpand/vpaddb/vpshufb/vpsrlw) per cycle


ISSUE_RATES = {
    "golden-cove": IssueRates(1.0, 2.0, 2.0, "uops.info VPOPCNTQ zmm (p5); Intel Optimization Reference Manual", 3.0),
    "sunny-cove": IssueRates(1.0, 2.0, 2.0, "uops.info VPOPCNTQ zmm (p5); Intel Optimization Reference Manual", 3.0),
    "zen4": IssueRates(1.0, 1.0, 1.0, "uops.info Zen 4; Agner Fog microarchitecture guide, Zen 4", 4.0),
    "zen5": IssueRates(2.0, 2.0, 2.0, "AMD Zen 5 Software Optimization Guide 58455; measured 2.00/2.00/1.98", 4.0),
}
# AVX2 xnor-popcount without VPOPCNTDQ (the ``_binary_microkernel._k_loop_avx2`` op mix): per 256-bit word pair
# vpxor, vpand, vpsrlw, vpand, 2 vpshufb, 2 vpaddb (byte accumulators; their vpsadbw + vpaddq fold once per 31
# words, not counted) = 8 vector ALU ops. LLVM's own ctpop.v4i64 lowering costs 9 (vpsadbw + vpaddq per word).
AVX2_OPS_PER_WORD = 8


def uarch(vendor: str, family: int, model: int) -> str:
    """Micro-architecture name from the CPUID vendor, family and model ("unknown" otherwise)."""
    if vendor == "AuthenticAMD":
        if family == 26:
            return "zen5"
        if family == 25 and (0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF):
            return "zen4"
    if vendor == "GenuineIntel" and family == 6:
        if model in (0x8F, 0xCF, 0xAD, 0xAE):  # Sapphire, Emerald, Granite Rapids
            return "golden-cove"
        if model in (0x6A, 0x6C, 0x7D, 0x7E, 0x8C, 0x8D):  # Ice Lake-SP/-D/client, Tiger Lake
            return "sunny-cove"
    return "unknown"


def read_cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """First processor's fields of /proc/cpuinfo (empty dict where the file does not exist)."""
    try:
        text = open(path).read()
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, val = line.partition(":")
        info[key.strip()] = val.strip()
    return info


# ----------------------------------------------------------------------------- asm micro-benchmarks
def _asm_loop(body: str, reps: int, clobbers: str):
    """An intrinsic ``f(n)`` running ``n`` iterations of ``body`` repeated ``reps`` times."""
    llb.initialize_native_asmparser()

    @intrinsic
    def f(typingctx, n):
        def codegen(context, builder, signature, args):
            fty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
            asm = "1:\n" + "\n".join([body] * reps) + "\ndec $0\njnz 1b"
            builder.asm(fty, asm, "=r,0," + clobbers, [args[0]], side_effect=True)
            return ir.Constant(ir.IntType(64), 0)

        return types.int64(types.int64), codegen

    return njit(lambda n: f(n))


_ZMM = ",".join(f"~{{xmm{i}}}" for i in range(16)) + ",~{cc}"


def _bodies() -> dict:
    """Instruction mixes: name -> (asm body, instructions counted per body, clobbers)."""
    def indep(op):
        return "\n".join(op.format(i=i) for i in range(1, 13))
    mix = "\n".join(f"vpxorq %zmm0, %zmm13, %zmm{i}\nvpopcntq %zmm{i}, %zmm{i}\nvpaddq %zmm{i}, %zmm{i + 6}, %zmm{i + 6}"
                    for i in range(1, 7))
    return {
        **_csa_body(), **_avx2_body(),
        "add_chain": ("add %rdx, %rax", 1, "~{rax},~{rdx},~{cc}"),
        "popcnt": (indep("vpopcntq %zmm0, %zmm{i}"), 12, _ZMM),
        "xnor_mix": (mix, 6, _ZMM),
        "fma": (indep("vfmadd231ps %zmm0, %zmm13, %zmm{i}"), 12, _ZMM),
        "vnni": (indep("vpdpbusd %zmm0, %zmm13, %zmm{i}"), 12, _ZMM),
    }


def _csa_body() -> dict:
    """``csa_mix``: 3:2 compression of three xor words with precomputed xor planes, per triple
    ``d = w12^a12; t = d & (w13^a13); c = t^w1^a1; s = w123^a123; acc += pc(s); acc += 2*pc(c)``
    (vpxorq, 2 vpternlogq, vpxorq, 2 vpopcntq, vpaddq, vpmadd52luq: 8 vector ops for 3 words, the
    activation planes as {1to8} broadcasts from memory), 6 independent chains. Counted in words per
    cycle like ``xnor_mix`` (3 per chain): 4 ALU pipes allow 1.5, i.e. 75 % of the popcount
    roofline on Zen 5, against 67 % for xor+popcount+add."""
    zmm = ",".join(f"~{{xmm{i}}}" for i in range(32)) + ",~{cc}"
    lines = []
    for c in range(6):
        t, s, acc = 8 + 3 * c, 9 + 3 * c, 10 + 3 * c
        m = [f"{8 * q + 64 * c}(%rsp){{1to8}}" for q in range(4)]
        lines += [f"vpxorq {m[1]}, %zmm0, %zmm{t}", f"vpternlogq $$0x28, {m[2]}, %zmm5, %zmm{t}",
                  f"vpternlogq $$0x96, {m[0]}, %zmm6, %zmm{t}", f"vpxorq {m[3]}, %zmm7, %zmm{s}",
                  f"vpopcntq %zmm{t}, %zmm{t}", f"vpopcntq %zmm{s}, %zmm{s}", f"vpaddq %zmm{s}, %zmm{acc}, %zmm{acc}",
                  f"vpmadd52luq %zmm{t}, %zmm1, %zmm{acc}"]
    return {"csa_mix": ("\n".join(lines), 18, zmm)}


def _avx2_body() -> dict:
    """``avx2_mix``: the AVX2 xnor-popcount op mix of :data:`AVX2_OPS_PER_WORD` ops per 256-bit word
    (``t = a ^ w; acc += lut[t & 15] + lut[(t >> 4) & 15]``, byte accumulators), 4 independent chains in the
    16 ymm registers (ymm14 table, ymm15 mask, ymm0 / ymm13 the operands), counted in ops per cycle."""
    lines = []
    for c in range(4):
        t, h, acc = 1 + 3 * c, 2 + 3 * c, 3 + 3 * c
        lines += [f"vpxor %ymm0, %ymm13, %ymm{t}", f"vpsrlw $$4, %ymm{t}, %ymm{h}", f"vpand %ymm15, %ymm{t}, %ymm{t}",
                  f"vpand %ymm15, %ymm{h}, %ymm{h}", f"vpshufb %ymm{t}, %ymm14, %ymm{t}",
                  f"vpshufb %ymm{h}, %ymm14, %ymm{h}", f"vpaddb %ymm{t}, %ymm{acc}, %ymm{acc}",
                  f"vpaddb %ymm{h}, %ymm{acc}, %ymm{acc}"]
    return {"avx2_mix": ("\n".join(lines), 4 * AVX2_OPS_PER_WORD, _ZMM)}


def _best_seconds(fn, n: int, repeats: int) -> float:
    fn(8)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return best


def measure_clock_hz(repeats: int = 200) -> float:
    """Core clock from a dependent ``add`` chain (1 cycle per add), the fastest of ``repeats``."""
    body, per, clob = _bodies()["add_chain"]
    reps, n = 100, 2000
    return n * reps * per / _best_seconds(_asm_loop(body, reps, clob), n, repeats)


def measure_rates(flags: tuple[str, ...], clock_hz: float, repeats: int = 200) -> dict:
    """Measured instructions per cycle of each mix the CPU supports (``avx2_mix``: 256-bit ops per cycle)."""
    need = {"popcnt": ("avx512_vpopcntdq",), "xnor_mix": ("avx512_vpopcntdq",),
            "csa_mix": ("avx512_vpopcntdq", "avx512ifma"), "fma": ("avx512f",), "vnni": ("avx512_vnni",),
            "avx2_mix": ("avx2",)}
    out = {}
    n, reps = 2000, 10
    for name, (body, per, clob) in _bodies().items():
        if name in need and all(f in flags for f in need[name]):
            t = _best_seconds(_asm_loop(body, reps, clob), n, repeats)
            out[name] = n * reps * per / (t * clock_hz)
    return out


# ----------------------------------------------------------------------------- host and rooflines
@dataclass(frozen=True)
class Host:
    """The CPU of this run, its clock and its one-thread rooflines."""

    model: str
    vendor: str
    uarch: str
    flags: tuple[str, ...]
    clock_ghz: float  # measured core clock, GHz
    cpuinfo_mhz: float  # /proc/cpuinfo "cpu MHz" (the TSC rate in a VM), MHz
    rates: dict  # instructions/cycle used for the rooflines: popcnt, fma, vnni, xnor_mix
    rates_source: str
    measured_rates: dict  # instructions/cycle measured on this host
    binary_roofline_gops: float  # popcount issue rate x 512 x 2 x clock, GOP/s
    binary_opmix_bound_gops: float  # xor+popcount+add rate x 512 x 2 x clock, GOP/s
    binary_avx2_roofline_gops: float  # alu256 / AVX2_OPS_PER_WORD x 256 x 2 x clock, GOP/s (AVX2 op-mix roofline)
    fp32_roofline_gflops: float  # FMA rate x 16 x 2 x clock, GFLOP/s
    int8_vnni_roofline_gops: float  # VPDPBUSD rate x 64 x 2 x clock, GOP/s (0 without VNNI)
    int8_amx_roofline_gops: float  # 1024 x 2 x clock, GOP/s (0 without AMX)
    load_average_1min: float

    def as_dict(self) -> dict:
        return asdict(self)


def detect(repeats: int = 200) -> Host:
    """Detect the CPU, measure clock and issue rates, and compute the rooflines."""
    info = read_cpuinfo()
    flags = tuple(f for f in FLAGS if f in info.get("flags", "").split())
    vendor = info.get("vendor_id", "unknown")
    arch = uarch(vendor, int(info.get("cpu family", 0) or 0), int(info.get("model", 0) or 0))
    hz = measure_clock_hz(repeats)
    measured = measure_rates(flags, hz, repeats)
    hz2 = measure_clock_hz(repeats)  # the faster of two: a run that lost the core reads too slow
    if hz2 > hz:
        measured = {k: v * hz / hz2 for k, v in measured.items()}
        hz = hz2
    table = ISSUE_RATES.get(arch)
    rates = dict(measured)
    if table is not None:
        rates.update(popcnt=table.popcnt, fma=table.fma, vnni=table.vnni, alu256=table.alu256)
    elif "avx2_mix" in measured:
        rates["alu256"] = measured["avx2_mix"]
    src = table.source if table else "measured on this host (micro-architecture not in the table)"
    ghz = hz / 1e9
    has = flags.__contains__
    return Host(
        model=info.get("model name", platform.processor() or platform.machine()), vendor=vendor, uarch=arch,
        flags=flags, clock_ghz=ghz, cpuinfo_mhz=float(info.get("cpu MHz", 0) or 0), rates=rates,
        rates_source=src, measured_rates=measured,
        binary_roofline_gops=rates.get("popcnt", 0.0) * 512 * 2 * ghz,
        binary_opmix_bound_gops=rates.get("xnor_mix", 0.0) * 512 * 2 * ghz,
        binary_avx2_roofline_gops=rates.get("alu256", 0.0) / AVX2_OPS_PER_WORD * 256 * 2 * ghz if has("avx2") else 0.0,
        fp32_roofline_gflops=rates.get("fma", 0.0) * 16 * 2 * ghz,
        int8_vnni_roofline_gops=rates.get("vnni", 0.0) * 64 * 2 * ghz if has("avx512_vnni") else 0.0,
        int8_amx_roofline_gops=1024 * 2 * ghz if has("amx_int8") else 0.0,
        load_average_1min=os.getloadavg()[0])


if __name__ == "__main__":
    for key, val in detect().as_dict().items():
        print(f"{key:26s} {val}")
