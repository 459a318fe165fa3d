"""``CPUSpec``: an embedded CPU (Cortex-A / Cortex-M) or the host, as a frozen validated dataclass.

Every field carries its unit in its name or docstring. Presets live in ``hwsim/presets/cpu/*.yaml``
(each constant cites its source there); ``dataclasses.replace(spec, cores=1)`` makes a variant.

The model covers fp32 and int8 inference (``precision``): weights and activations take
4 or 1 bytes per element. The cost formulas that use these fields are in :mod:`hwsim.cpu.cost`.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import SpecError
from hwsim.specs import check_choice, check_positive, check_range, spec_class

__all__ = ["CPUSpec", "BYTES_PER_ELEMENT", "RUNTIMES", "PRECISIONS"]

BYTES_PER_ELEMENT = 4  # fp32 weights and activations
RUNTIMES = ("pytorch", "ncnn", "xnnpack", "cmsis-nn", "x-cube-ai", "dabnn")
PRECISIONS = ("fp32", "int8")
# Which cores each runtime runs on: ncnn and XNNPACK are Cortex-A (and x86) libraries; CMSIS-NN and X-CUBE-AI
# are Cortex-M libraries (X-CUBE-AI: STM32 parts, all Cortex-M); PyTorch needs an OS (Cortex-A or the host).
_A_RUNTIMES = ("pytorch", "ncnn", "xnnpack")
_M_RUNTIMES = ("cmsis-nn", "x-cube-ai")


@spec_class("cpu")
@dataclass(frozen=True, slots=True)
class CPUSpec:
    """An embedded CPU.

    Compute
        clock_hz: core clock in Hz (the sustained clock under load).
        cores: number of cores a layer may use (>= 1).
        simd_bits: width of one vector register in bits (128 for NEON, 512 for AVX-512, 32 for a scalar
            FPU); fp32 lanes = simd_bits / 32.
        fma_per_cycle: vector fused multiply-add instructions issued per cycle per core (0.5 when a
            128-bit FMA takes two cycles, 1/3 for a 3-cycle scalar VFMA). Peak FLOP/s per core =
            clock_hz · lanes · fma_per_cycle · 2.
        eff_conv / eff_depthwise / eff_pointwise / eff_linear / eff_elementwise / eff_pool: fraction
            (0, 1] of that peak a real kernel reaches on dense k×k convs, depthwise convs, 1×1 convs
            (and convs run as im2col + GEMM), fully connected layers, elementwise ops (activations,
            adds, global pooling; one op per lane per FMA slot) and windowed max/avg pooling.
        gemm_k_half: reduction length K (= Cin/groups·kh·kw, or in_features) at which a conv / linear
            kernel reaches half of its efficiency: the kernel's utilisation is K / (K + gemm_k_half)
            (accumulators loaded and stored once per output tile, amortised over K FMAs); 0 = no ramp.
        gemm_n_half / gemm_m_half: a conv run as a plain GEMM call (``pointwise``, ``im2col`` kernels) packs its
            input (K×M) and weight (N×K) panels on every call, and the packed input is reused by N = Cout/groups
            outputs, the packed weights by M = batch·OH·OW pixels: the GEMM's utilisation is
            N / (N + gemm_n_half) · M / (M + gemm_m_half) instead of the lane utilisation over Cout (the GEMM
            vectorises the pixel dimension). 0 (default) = lane utilisation over Cout (the blocked conv
            kernels of the embedded presets).
        gemm_conv_max_input_elements: the runtime's kernel choice: a conv with groups = 1 and a kernel
            of at most 3×3 whose input has at most this many elements per sample runs as im2col +
            GEMM (unfolded matrix written and read, GEMM at ``eff_im2col``). 0 = never (direct/blocked
            conv kernels for every shape).
        eff_im2col: fraction of peak of the GEMM of such an im2col conv.
        unfold_row_s / unfold_element_s: time in s per copy call / per copied element of the unfold (im2col
            copy) of a conv run as im2col + GEMM: the runtime copies the unfolded matrix (K·OH·OW elements,
            K = Cin·kh·kw) one output row per call when the stride is 1 (K·OH calls) and one element per call
            when it is strided (K·OH·OW calls; a strided 1×1 conv run as a GEMM is unfolded too). PyTorch:
            ``unfolded2d_copy`` in aten/src/ATen/native/cpu/Unfold2d.cpp (a ``memcpy`` per row for ``dW == 1``,
            per element otherwise). 0 (default) = no such cost.
        eff_resample: fraction of the elementwise peak an upsampling kernel (nearest, bilinear) reaches per source
            tap: it computes source indices and weights per output and gathers, no straight vector stream.
            0 (default) = ``eff_elementwise`` (the embedded presets: no measurement of such a kernel there).
        resample_output_ops: ops per output of an upsampling kernel besides its source taps (computing the source
            index and interpolation weights); 0 (default) = none.
        conv_m_half: output pixels (batch·OH·OW) at which a direct dense or grouped conv kernel reaches half its
            efficiency: utilisation × M / (M + conv_m_half). The kernel blocks its output row by row in register
            tiles; on a small map the blocks are short and their fixed work (loading and storing accumulators,
            loop and address setup) weighs more. 0 (default) = no such ramp. (On the calibrated host the per-call
            weight copy, ``weight_reorder_bw_bytes_s``, accounts for what this ramp used to fit; the refit sets it to ~0.)
        reorder_activations: the runtime's direct conv kernels (kinds conv, grouped, depthwise) compute in a
            channel-blocked layout and, on every call, copy the NCHW input into it and the output back (PyTorch
            eager fp32 on oneDNN: ONEDNN_VERBOSE shows a ``reorder`` primitive before and after every such conv);
            each copy reads and writes the tensor once (:func:`hwsim.cpu.cost._reorder_s`). A conv whose input
            has fewer channels than the SIMD lanes reads the plain input (oneDNN's first-layer kernels: only the
            output is copied). False (default): the kernels work in the tensors' own layout.
        weight_reorder_bw_bytes_s: a direct conv (kinds conv, grouped, depthwise) also copies its weights into the
            kernel's blocked layout on every call (PyTorch eager holds plain OIHW weights; ONEDNN_VERBOSE shows a
            weight ``reorder`` before each such conv: 0.19 ms for 256x256x3x3, 0.76-0.82 ms for 512x512x3x3 inside
            ResNet-18 here): weight bytes / (this rate · (1 + (n - 1)·parallel_eff)) on n cores, in place of the
            read of weights beyond L2 when longer. 0 (default) = the kernels read their weights in place.
        pool_output_ops: ops per output of a pooling kernel besides its window taps, at ``eff_pool``: PyTorch's
            fp32 CPU pools loop per output element, computing the window bounds and storing the result (max pool
            also the int64 index of the maximum: ``cpu_max_pool`` in aten/src/ATen/native/cpu/MaxPoolKernel.cpp,
            ``cpu_avg_pool`` and ``cpu_adaptive_avg_pool`` in AvgPoolKernel.cpp / AdaptiveAvgPoolKernel.cpp);
            0 (default) = none.
        eff_grouped: fraction of peak of a grouped k×k conv that is not depthwise (1 < groups < Cin, e.g.
            CondenseNet's learned group convs): runtimes run one small direct conv per group, far below a
            dense conv's efficiency when a group has few channels. 0 (default) = no separate kernel, use
            ``eff_conv`` (the embedded presets: no measurement of such a kernel on those cores).
        parallel_eff: fraction (0, 1] of an extra core's throughput a large layer gains (speed-up with n
            cores = 1 + (n - 1)·parallel_eff·W/(W + parallel_flops_half) for a layer of W FLOPs).
        parallel_flops_half: FLOPs at which a layer gains half of ``parallel_eff`` (work split over threads
            has fixed costs: small layers barely speed up); 0 (default) = every layer gains all of it.
        layer_overhead_s: fixed time per executed layer in s (dispatch, kernel set-up, and for a layer
            inside a network the cold caches it meets).
        overhead_conv_s / overhead_depthwise_s: extra fixed time in s per call of the runtime's conv
            kernel (a dense k×k conv that is not run as im2col + GEMM; a 1×1 conv above
            ``pointwise_gemm_max_threads``) / per depthwise conv call (primitive creation, layout reorders).
        overhead_batchnorm_s: extra fixed time in s per batch norm that is not folded into a conv (PyTorch's
            eval-mode ``batch_norm`` computes each channel's scale and shift from the running statistics, in
            separate small kernels, before its elementwise pass); 0 (default) = none.
        overhead_gemm_s: extra fixed time in s per conv the runtime runs as a plain GEMM call (1×1
            convs, im2col convs); 0 (default) = none.
        overhead_per_group_s: extra fixed time in s per group beyond the first of a grouped 1×1 conv run
            as GEMM calls, one per group; 0 (default) = none (one call covers all groups).
        pointwise_gemm_max_threads: a 1×1 conv runs as a GEMM, except when it is strided or runs on more
            threads than this *and* it is grouped or its input has more than
            ``gemm_conv_max_input_elements`` elements: then the generic conv kernel runs it (PyTorch: 1,
            ``use_mkldnn`` in aten/src/ATen/native/Convolution.cpp). 0 (default) = always a GEMM.
        parallel_grain_elements: an elementwise, pooling or data-movement op with fewer output elements
            than this runs on one thread (no speed-up, no fork/join cost); PyTorch: ``at::internal::GRAIN_SIZE``
            = 32768 (aten/src/ATen/Parallel.h). 0 (default) = every op uses every core.
        overhead_grouped_s: extra fixed time in s per grouped (non-depthwise) k×k conv call, on top of
            ``overhead_conv_s`` (the runtime's grouped kernel: primitive set-up, per-group loop); 0 (default) = none.
        overhead_view_s: fixed time in s of a view op (a channel slice of an NCHW tensor: dispatch only, no data
            moved, no cache touched), which then pays this instead of ``layer_overhead_s``; 0 (default) = a
            view pays ``layer_overhead_s`` like any layer.
        parallel_overhead_s: extra time per layer in s when it runs on more than one core (fork/join; on the
            host fitted on synthetic layer chains run on all threads, since a layer timed over and over alone
            hides it).

    Memory hierarchy
        l1d_bytes: L1 data cache per core in bytes (0: no data cache, operands are blocked in registers).
        l2_bytes: L2 cache in bytes (0 if none); per core when ``l2_per_core`` else shared.
        l3_bytes: shared last-level cache in bytes (0 if none).
        l2_bw_bytes_s / l3_bw_bytes_s: bandwidth in B/s that serves misses of the level above
            (per core for a per-core L2); 0 = not modelled (never the bottleneck).
        dram_bw_bytes_s: sustained bandwidth in B/s of the main memory (DRAM on a Cortex-A, SRAM on
            a Cortex-M), shared by all cores.
        ram_bytes: memory for activations (and weights when ``flash_bytes`` is 0) in bytes.
        flash_bytes: non-volatile memory that holds the weights in bytes (0: weights live in RAM).
        flash_bw_bytes_s: bandwidth in B/s of reading weights from flash (used when flash_bytes > 0).

    Runtime and core
        runtime: the inference runtime whose kernels the cost model follows: ``"pytorch"`` (eager PyTorch, the
            host model above, fp32 only), ``"ncnn"`` and ``"xnnpack"`` (TFLite) on Cortex-A cores or the host,
            ``"cmsis-nn"`` (TFLite Micro + CMSIS-NN, int8 only) and ``"x-cube-ai"`` (ST's runtime) on Cortex-M,
            ``"dabnn"`` (JDAI-CV/dabnn's binary-network engine: aarch64 Cortex-A, fp32, one thread, every layer by
            its own kernels, :mod:`hwsim.cpu.runtime.dabnn`). See :mod:`hwsim.cpu.runtime`.
        precision: ``"fp32"`` or ``"int8"`` (per-channel int8 weights, per-tensor int8 activations, int32
            accumulation: 1 byte per weight and activation element).
        core: the Arm core (:data:`hwsim.cpu.arm.CORE_NAMES`, e.g. ``"cortex-a72"``) whose issue width and SIMD /
            DSP throughput the non-PyTorch runtimes use; ``""`` = a core described only by the flat fields above
            (the host).
        board_cores: cores on the chip, the most threads ``cores`` may ask for; 0 = not stated (no check).

    Power
        active_power_w_per_core: power in W a busy core adds above idle.
        idle_power_w: power in W of the chip/board while inference runs, cores excluded (static).
        mem_energy_j_per_byte: energy in J per byte moved to/from main memory (DRAM); 0 where the
            datasheet run-mode power already includes the memory (MCUs).
    """

    name: str = "cpu"
    clock_hz: float = 1.5e9
    cores: int = 1
    simd_bits: int = 128
    fma_per_cycle: float = 1.0
    l1d_bytes: int = 32768
    l2_bytes: int = 0
    l3_bytes: int = 0
    l2_per_core: bool = False
    l2_bw_bytes_s: float = 0.0
    l3_bw_bytes_s: float = 0.0
    dram_bw_bytes_s: float = 4e9
    ram_bytes: int = 2**30
    flash_bytes: int = 0
    flash_bw_bytes_s: float = 0.0
    eff_conv: float = 0.5
    eff_depthwise: float = 0.2
    eff_pointwise: float = 0.5
    eff_linear: float = 0.5
    eff_elementwise: float = 0.25
    eff_pool: float = 0.25
    gemm_conv_max_input_elements: int = 0
    eff_im2col: float = 0.4
    unfold_row_s: float = 0.0
    unfold_element_s: float = 0.0
    eff_grouped: float = 0.0
    eff_resample: float = 0.0
    resample_output_ops: float = 0.0
    pool_output_ops: float = 0.0
    reorder_activations: bool = False
    weight_reorder_bw_bytes_s: float = 0.0
    gemm_k_half: float = 0.0
    gemm_n_half: float = 0.0
    gemm_m_half: float = 0.0
    conv_m_half: float = 0.0
    parallel_eff: float = 0.9
    parallel_flops_half: float = 0.0
    layer_overhead_s: float = 5e-6
    parallel_overhead_s: float = 0.0
    overhead_conv_s: float = 0.0
    overhead_depthwise_s: float = 0.0
    overhead_view_s: float = 0.0
    overhead_grouped_s: float = 0.0
    overhead_gemm_s: float = 0.0
    overhead_batchnorm_s: float = 0.0
    overhead_per_group_s: float = 0.0
    pointwise_gemm_max_threads: int = 0
    parallel_grain_elements: int = 0
    active_power_w_per_core: float = 1.0
    idle_power_w: float = 1.0
    mem_energy_j_per_byte: float = 0.0
    runtime: str = "pytorch"
    precision: str = "fp32"
    core: str = ""
    board_cores: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"CPUSpec.name must be a non-empty string, got {self.name!r}")
        check_positive(self, "clock_hz", "cores", "simd_bits", "fma_per_cycle", "dram_bw_bytes_s", "ram_bytes")
        check_positive(self, "l1d_bytes", "l2_bytes", "l3_bytes", "l2_bw_bytes_s", "l3_bw_bytes_s", "flash_bytes",
                       "flash_bw_bytes_s", "layer_overhead_s", "parallel_overhead_s", "overhead_conv_s",
                       "overhead_depthwise_s", "overhead_view_s", "overhead_grouped_s", "overhead_gemm_s", "overhead_per_group_s",
                       "overhead_batchnorm_s", "resample_output_ops", "pool_output_ops",
                       "unfold_row_s", "unfold_element_s", "pointwise_gemm_max_threads", "parallel_grain_elements", "gemm_conv_max_input_elements",
                       "parallel_flops_half",
                       "gemm_k_half", "gemm_n_half", "gemm_m_half", "conv_m_half", "active_power_w_per_core",
                       "weight_reorder_bw_bytes_s",
                       "idle_power_w", "mem_energy_j_per_byte", allow_zero=True)
        for f in ("cores", "board_cores", "simd_bits", "l1d_bytes", "l2_bytes", "l3_bytes", "ram_bytes", "flash_bytes",
                  "gemm_conv_max_input_elements", "pointwise_gemm_max_threads", "parallel_grain_elements"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(f"CPUSpec.{f} must be an integer, got {v!r}")
        for f in ("l2_per_core", "reorder_activations"):
            if not isinstance(getattr(self, f), bool):
                raise SpecError(f"CPUSpec.{f} must be true or false, got {getattr(self, f)!r}")
        if self.simd_bits % 32:
            raise SpecError(f"CPUSpec.simd_bits must be a multiple of 32 (fp32 lanes), got {self.simd_bits}")
        for f in ("eff_conv", "eff_depthwise", "eff_pointwise", "eff_linear", "eff_elementwise", "eff_pool", "eff_im2col",
                  "parallel_eff"):
            check_range(self, f, 1e-4, 1.0)
        for f in ("eff_grouped", "eff_resample"):  # 0 = fall back to eff_conv / eff_elementwise
            if getattr(self, f) != 0:
                check_range(self, f, 1e-4, 1.0)
        _check_runtime(self)
        if self.flash_bytes > 0 and self.flash_bw_bytes_s <= 0:
            raise SpecError("CPUSpec.flash_bw_bytes_s must be > 0 when flash_bytes > 0 (weights are read from flash)")

    # -- derived figures
    @property
    def bytes_per_element(self) -> int:
        """Bytes of one weight or activation element at this spec's precision (4 for fp32, 1 for int8)."""
        return 1 if self.precision == "int8" else BYTES_PER_ELEMENT

    @property
    def lanes(self) -> int:
        """fp32 lanes per vector register."""
        return self.simd_bits // 32

    @property
    def peak_flops_per_core(self) -> float:
        """Peak fp32 FLOP/s of one core: clock · lanes · FMA issue · 2 (an FMA is two FLOPs)."""
        return self.clock_hz * self.lanes * self.fma_per_cycle * 2.0

    @property
    def peak_flops(self) -> float:
        """Peak fp32 FLOP/s of all cores."""
        return self.peak_flops_per_core * self.cores

    @property
    def weights_in_flash(self) -> bool:
        return self.flash_bytes > 0


def _check_runtime(spec: CPUSpec) -> None:
    """Refuse a runtime, precision, core and thread count that do not go together (one-line errors naming the field)."""
    from hwsim.cpu.arm import CORE_NAMES, M_PROFILE

    check_choice(spec, "runtime", RUNTIMES)
    check_choice(spec, "precision", PRECISIONS)
    if spec.core != "":
        check_choice(spec, "core", CORE_NAMES)
    if spec.core in M_PROFILE and spec.runtime in _A_RUNTIMES:
        raise SpecError(f"CPUSpec.runtime={spec.runtime!r} cannot run on core={spec.core!r} (a microcontroller); "
                        f"use one of {list(_M_RUNTIMES)}")
    if spec.core not in M_PROFILE and spec.runtime in _M_RUNTIMES:
        where = f"core={spec.core!r}" if spec.core else "a core described by the flat fields (core='')"
        raise SpecError(f"CPUSpec.runtime={spec.runtime!r} is a Cortex-M runtime and cannot run on {where}; "
                        f"use one of {list(_A_RUNTIMES)}")
    if spec.runtime != "pytorch" and not spec.core:
        raise SpecError(f"CPUSpec.core must name an Arm core for runtime={spec.runtime!r} (its cost model uses the "
                        "core's issue rates, hwsim.cpu.arm); set core or use runtime='pytorch'")
    if spec.runtime == "pytorch" and spec.precision != "fp32":
        raise SpecError("CPUSpec.precision='int8' is not modelled for runtime='pytorch' (its cost model is fp32); "
                        "use runtime 'ncnn' or 'xnnpack'")
    if spec.runtime == "cmsis-nn" and spec.precision != "int8":
        raise SpecError("CPUSpec.precision must be 'int8' for runtime='cmsis-nn' (CMSIS-NN has no fp32 kernels); "
                        "use runtime 'x-cube-ai' for fp32 on a Cortex-M")
    if spec.runtime == "dabnn":
        _check_dabnn(spec)
    if spec.core in M_PROFILE and spec.cores != 1:
        raise SpecError(f"CPUSpec.cores must be 1 on core={spec.core!r} (a single-core microcontroller), got {spec.cores}")
    if spec.board_cores and spec.cores > spec.board_cores:
        raise SpecError(f"CPUSpec.cores={spec.cores} threads exceed the chip's board_cores={spec.board_cores}")


def _check_dabnn(spec: CPUSpec) -> None:
    """daBNN (JDAI-CV/dabnn @ 6916de5) runs its optimized kernels on aarch64 NEON only (``#ifdef __aarch64__`` in
    dabnn/bconv.h), in fp32 with bit-packed binary layers (no int8 path), on one thread (no threading in dabnn/)."""
    from hwsim.cpu.binary import ASIMD_INT_Q_PER_CYCLE

    if spec.core not in ASIMD_INT_Q_PER_CYCLE:
        raise SpecError(f"CPUSpec.runtime='dabnn' needs an aarch64 Cortex-A core with NEON "
                        f"({', '.join(ASIMD_INT_Q_PER_CYCLE)}), got core={spec.core!r}")
    if spec.precision != "fp32":
        raise SpecError(f"CPUSpec.precision={spec.precision!r} is not available with runtime='dabnn' (daBNN runs "
                        "fp32 float layers and bit-packed binary layers, no int8); use precision='fp32'")
    if spec.cores != 1:
        raise SpecError(f"CPUSpec.cores={spec.cores}: daBNN is single-threaded (no threading in dabnn/); "
                        "set cores=1 for runtime='dabnn'")
