"""Conv2d/linear kernels of the IMC target for :func:`hwsim.functional.run` (and, from :mod:`hwsim.imc.deconv`, the
transposed conv's).

Each kernel quantizes its input (per tensor: the pass's calibrated scale, or max-abs of the
actual tensor), quantizes the weights (per output channel, from ``meta["quant"]``), computes the
integer accumulators as the crossbars do (:mod:`hwsim.imc.numerics`; the exact integer kernels
when no ADC can clip) and dequantizes: ``acc · s_x · s_w[o] + bias`` (float64, rounded to
float32). Every other op runs on the fp32 kernels (the chip's digital units).

A conv whose border holds a non-zero value (``meta["pad_value"]`` = ±1: the Larq / daBNN padding of
``nets.layers.BinaryConv2d``) has its input padded explicitly with that value before it is quantized; the crossbars
then run a padding-0 conv over the padded input, exactly as with any other input (same MVMs, same rows per MVM as
a zero-padded conv: the cost model's counts hold). A dynamic input scale covers the pad value (it is part of the
input); a fixed (calibrated) scale whose grid cannot hold it (a negative value on an unsigned grid, or beyond the
range) is refused (:func:`check_pad_values`) rather than clipped.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numba
import numpy as np

from hwsim.cache import IdentityCache, on_clear
from hwsim.errors import UnsupportedOpError
from hwsim.imc import numerics as nm
from hwsim.imc import physics as ph
from hwsim.imc.spec import IMCSpec
from mapping.graph import Graph, Node, Op
from mapping.passes.quantize import (
    QuantParams,
    dequantize,
    input_qmax,
    input_scale,
    input_scales,
    quantize_input,
    quantize_weights,
    weight_grid,
)

__all__ = ["make_kernels", "conv_acc", "linear_acc", "clear_cache", "next_read_index", "pad_value",
           "check_pad_values"]


_WEIGHTS: IdentityCache[tuple[np.ndarray, np.ndarray]] = IdentityCache("imc quantized weights", maxsize=512)


def weights_q(w: np.ndarray, bits: int, per_channel: bool, grid: tuple[float, ...] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights and scales of ``w`` (a k-bit layer's on its own ``grid``:
    :func:`mapping.passes.quantize.weight_grid`), cached per weight array (the chip programs them once; the last 512
    arrays are kept, by identity: :mod:`hwsim.cache`)."""
    return _WEIGHTS.get(w, bits, per_channel, grid, compute=lambda: _quantize_chunked(w, bits, per_channel, grid))


def _quantize_chunked(w: np.ndarray, bits: int, per_channel: bool, grid=None) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_weights(w, bits, per_channel, grid)`` with the integers in the narrowest dtype, computed over
    blocks of output channels (per-channel scales are row-wise, so the result is identical) to bound the float64
    temporaries: VGG-16's 25088 x 4096 matrix would need 2.5 GB at once. A ``grid`` (small quantized layers) is
    applied in one block."""
    rows = max(1, (1 << 22) // max(1, w[0].size))
    if not per_channel or w.shape[0] <= rows or grid is not None:
        q, sc = quantize_weights(w, bits, per_channel, grid)
        return q.astype(nm.int_dtype(bits, True)), sc
    q = np.empty(w.shape, dtype=nm.int_dtype(bits, True))
    scs = []
    for r0 in range(0, w.shape[0], rows):
        qq, ss = quantize_weights(w[r0:r0 + rows], bits, True)
        q[r0:r0 + rows] = qq
        scs.append(ss)
    return q, np.concatenate(scs)


_PCACHE: OrderedDict[tuple, tuple] = OrderedDict()
PCACHE_BYTES = 384 << 20  # programmed conductances kept, bytes
_RUN = [0]  # the current functional run (make_kernels), for the cache's eviction rule
STREAM_BYTES = 256 << 20  # a linear layer whose program would exceed this is programmed one row split at a time
_READS: dict[int, int] = {}  # functional runs so far per seed with per-read noise (the next read index)


_LOCK = threading.Lock()  # guards _PCACHE and _READS: evaluate and sweeps may run seeds on threads


@on_clear
def clear_cache() -> None:
    """Forget every programmed crossbar, quantized weight and read counter (the next run programs afresh); also
    done by ``hwsim.clear_caches()``."""
    with _LOCK:
        _PCACHE.clear()
        _READS.clear()
    _WEIGHTS.clear()


def next_read_index(seed: int) -> int:
    """The index of the next inference's read noise for ``seed``: 0, 1, 2, ... per process (see make_kernels)."""
    with _LOCK:
        i = _READS.get(seed, 0)
        _READS[seed] = i + 1
    return i


def _split_rng(spec: IMCSpec, seed: int, key: str, gi: int):
    """The per-seed generator of each row split of group gi of weight ``key`` (None without per-seed effects)."""
    if not ph.per_seed(spec):
        return None
    return lambda k0: nm.rng_for(seed, "cells", key, str(gi), str(k0))


def _programmed(qw_full: np.ndarray, gi: int, wg: np.ndarray, spec: IMCSpec, seed: int, key: str) -> nm.Program:
    """The crossbar program of group ``gi`` of the integer weights ``qw_full``, cached per array, group, spec and
    (with per-seed device effects or a seeded ADC transfer) seed: the device non-idealities are drawn and folded
    into the conductances once, then read at every execution. The cache holds at most ``PCACHE_BYTES`` of programs
    and is emptied by :func:`clear_cache`. Eviction is least-recently-used among the programs the current run has
    not used: a net whose programs exceed the budget keeps its first layers cached run after run (plain LRU would
    evict each one before its next use); a program that does not fit is rebuilt, identically, at each use."""
    seeded = ph.per_seed(spec) or ph.nonlinear_adc(spec)
    ck = (id(qw_full), gi, spec, seed if seeded else None, key)
    with _LOCK:
        hit = _PCACHE.get(ck)
        if hit is not None and hit[0] is qw_full:
            _PCACHE[ck] = (qw_full, hit[1], _RUN[0])
            _PCACHE.move_to_end(ck)
            return hit[1]
    prog = nm.program(wg, spec, _split_rng(spec, seed, key, gi), nm.rng_for(seed, "adc-transfer"))
    with _LOCK:  # a program another thread made meanwhile is the same value: either copy may stay
        held = sum(v[1].nbytes for v in _PCACHE.values())
        for old in [k for k, v in _PCACHE.items() if v[2] < _RUN[0]]:  # least recently used first
            if held + prog.nbytes <= PCACHE_BYTES:
                break
            held -= _PCACHE.pop(old)[1].nbytes
        if held + prog.nbytes <= PCACHE_BYTES:
            _PCACHE[ck] = (qw_full, prog, _RUN[0])
    return prog


def _x_groups(qp: QuantParams, x: np.ndarray, per_sample: bool) -> list[tuple]:
    """The layer's integer inputs: ``(samples, q_x, s_x, signed)`` per group of samples that share a signedness
    (one group with a fixed, calibrated scale). A dynamic scale is each sample's own (max-abs of its input along
    axis 0, or of the whole tensor when not ``per_sample``: a graph whose batch axis holds parts of one sample), as
    a chip converting one input at a time has it; the kernels take one signedness per call, so a batch mixing
    signed and unsigned samples runs as two groups."""
    if qp.input_scale is None and not per_sample:
        s, signed = input_scale(x, qp.input_bits)
        qp = dataclasses.replace(qp, input_scale=s, input_signed=signed)
    if qp.input_scale is not None:
        s, signed = qp.input_scale, bool(qp.input_signed)
        return [(slice(None), quantize_input(x, qp.input_bits, s, signed), s, signed)]
    scales, signed = input_scales(x, qp.input_bits)
    if signed.all() or not signed.any():
        return [(slice(None), quantize_input(x, qp.input_bits, scales, bool(signed[0])), scales, bool(signed[0]))]
    return [(idx, quantize_input(x[idx], qp.input_bits, scales[idx], sg), scales[idx], sg)
            for sg in (False, True) for idx in [np.flatnonzero(signed == sg)]]


def pad_value(node: Node) -> float:
    """The value of a conv's padded border: ``meta["pad_value"]`` (0, +1 or -1: :mod:`mapping.binary`), else 0."""
    return float(node.meta.get("pad_value", 0.0))


def _pads_nonzero(node: Node) -> bool:
    return node.op == Op.CONV2D and pad_value(node) != 0.0 and any(node.attrs.padding)


def _check_pad_code(node: Node, qp: QuantParams) -> None:
    """Refuse a non-zero pad value that the node's fixed input grid (``qp.input_scale``, signedness) would clip; a
    value inside the range is rounded to the grid like any input value. Nothing to check with a dynamic scale."""
    if qp.input_scale is None or not _pads_nonzero(node):
        return
    v, s, signed = pad_value(node), float(qp.input_scale), bool(qp.input_signed)
    hi = input_qmax(qp.input_bits, signed)
    lo = -hi if signed else 0
    if not lo <= np.rint(v / s) <= hi:
        raise UnsupportedOpError(
            f"imc target: conv {node.name!r} (module {node.module!r}) pads with {v:+g} (pad_value), which its fixed "
            f"{qp.input_bits}-bit {'signed' if signed else 'unsigned'} input grid [{lo * s:g}, {hi * s:g}] cannot "
            "hold (it would be clipped)")


def check_pad_values(graph: Graph) -> None:
    """Refuse (:class:`UnsupportedOpError`, one line naming the layer and the value) every conv of a quantize-annotated
    ``graph`` whose non-zero pad value its fixed input grid cannot hold; cheap, to be called before a run."""
    for n in graph.nodes:
        if "quant" in n.meta:
            _check_pad_code(n, n.meta["quant"])


def _explicitly_padded(node: Node, x: np.ndarray) -> tuple[Node, np.ndarray]:
    """``(node, x)`` unchanged, or for a conv with a non-zero pad value: the node with padding (0, 0) and ``x``
    padded with that value (float32, as torch's ``F.pad``), the input the crossbars then read."""
    if not _pads_nonzero(node):
        return node, x
    ph_, pw = node.attrs.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph_, ph_), (pw, pw)), constant_values=np.float32(pad_value(node)))
    return node.replace(attrs=dataclasses.replace(node.attrs, padding=(0, 0))), xp


def _read(prog: nm.Program, spec: IMCSpec, seed: int, read_index: int | None, node: Node, gi: int) -> nm.Program:
    if read_index is None or not ph.per_read(spec):
        return prog
    return nm.read_program(prog, spec, nm.rng_for(seed, "read", str(read_index), node.name, str(gi)))


def conv_acc(graph: Graph, node: Node, xq: np.ndarray, signed: bool, qw: np.ndarray, spec: IMCSpec, seed: int,
             force_bitlevel: bool = False, read_index: int | None = None) -> np.ndarray:
    """Integer-valued accumulators [N, O, OH, OW] of a conv node (float64). Padded taps hold the integer 0; a
    node with a non-zero pad value is refused (its caller pads the float input first: ``make_kernels``)."""
    if _pads_nonzero(node):
        raise UnsupportedOpError(f"imc conv_acc: conv {node.name!r} (module {node.module!r}) pads with "
                                 f"{pad_value(node):+g}; pad its input explicitly and pass a padding-0 node")
    a = node.attrs
    oh, ow = node.shape[2], node.shape[3]
    if not force_bitlevel and nm.exact_matmul_needed(spec, a.rows):
        qp = node.meta["quant"]
        return nm.exact_conv(xq, qw, qp.input_bits, signed, qp.weight_bits, a, numba.get_num_threads() > 1)
    qp = node.meta["quant"]
    n = xq.shape[0]
    og, kg = a.out_channels // a.groups, a.rows
    key = node.params.get("weight", node.name)
    noise = ph.adc_noise_rng(spec, seed, read_index, node.name)
    progs = [_read(_programmed(qw, gi, qw[gi * og:(gi + 1) * og].reshape(og, kg).T, spec, seed, key), spec, seed,
                   read_index, node, gi) for gi in range(a.groups)]
    out = np.empty((n, oh * ow, a.out_channels), dtype=np.float64)
    cg = a.in_channels // a.groups
    par = numba.get_num_threads() > 1
    for gi, prog in enumerate(progs):
        out[:, :, gi * og:(gi + 1) * og] = nm.apply_conv(prog, xq[:, gi * cg:(gi + 1) * cg], qp.input_bits, signed,
                                                         spec, a, oh, ow, noise, par).reshape(n, oh * ow, og)
    return out.reshape(n, oh, ow, a.out_channels).transpose(0, 3, 1, 2)


def linear_acc(graph: Graph, node: Node, xq: np.ndarray, signed: bool, qw: np.ndarray, spec: IMCSpec, seed: int,
               force_bitlevel: bool = False, read_index: int | None = None) -> np.ndarray:
    """Integer-valued accumulators [M, O] of a linear node on [M, F] inputs."""
    if not force_bitlevel and nm.exact_matmul_needed(spec, qw.shape[1]):
        return nm.exact_linear(xq, qw)
    key = node.params.get("weight", node.name)
    noise = ph.adc_noise_rng(spec, seed, read_index, node.name)
    if nm.program_bytes(qw.shape[1], qw.shape[0], spec) > STREAM_BYTES:  # program, run, drop one split at a time
        wt = qw.T  # a view: the splits take their rows
        ox = 2 ** (node.meta["quant"].input_bits - 1) if signed else 0
        read = (nm.rng_for(seed, "read", str(read_index), node.name, "0")
                if read_index is not None and ph.per_read(spec) else None)
        return nm.apply_streaming(wt, xq.astype(np.int64) + ox, spec, _split_rng(spec, seed, key, 0),
                                  nm.rng_for(seed, "adc-transfer"), noise, ox, read)
    wt = np.ascontiguousarray(qw.T)
    prog = _read(_programmed(qw, 0, wt, spec, seed, key), spec, seed, read_index, node, 0)
    return nm.crossbar_matmul(xq, wt, signed, spec, None, noise, prog=prog)


def make_kernels(spec: IMCSpec, seed: int = 0, force_bitlevel: bool = False, read_index: int | None = None) -> dict:
    """``{Op.CONV2D: ..., Op.LINEAR: ..., Op.CONV_TRANSPOSE2D: ...}`` for ``functional.run`` on a quantize-annotated
    graph (the transposed conv: :mod:`hwsim.imc.deconv`).

    ``read_index``: which inference's read and ADC noise (``spec.read_sigma``, ``spec.adc_noise_lsb``) the run
    draws; None takes the next index of
    this process for ``seed`` (:func:`next_read_index`): repeated runs read fresh noise, and the same sequence of
    runs after :func:`clear_cache` (or in a fresh process) gives the same outputs.
    """
    if read_index is None and ph.per_inference(spec):
        read_index = next_read_index(seed)
    with _LOCK:
        _RUN[0] += 1

    def conv(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        qp = n.meta["quant"]
        qw, sw = weights_q(g.param(n, "weight"), qp.weight_bits, len(qp.weight_scale) > 1, weight_grid(n))
        b = g.param(n, "bias") if "bias" in n.params else None
        y = np.empty((len(xs[0]),) + tuple(n.shape[1:]), np.float32)
        _check_pad_code(n, qp)
        run_node, x = _explicitly_padded(n, xs[0])
        for idx, xq, sx, signed in _x_groups(qp, x, not g.batch_fixed):
            acc = conv_acc(g, run_node, xq, signed, qw, spec, seed, force_bitlevel, read_index)
            y[idx] = dequantize(np.asarray(acc), sx, sw, b, channel_axis=1)
        return y

    def linear(g: Graph, n: Node, xs: Sequence[np.ndarray]) -> np.ndarray:
        qp = n.meta["quant"]
        x = xs[0]
        qw, sw = weights_q(g.param(n, "weight"), qp.weight_bits, len(qp.weight_scale) > 1, weight_grid(n))
        b = g.param(n, "bias") if "bias" in n.params else None
        y = np.empty(x.shape[:-1] + (qw.shape[0],), np.float32)
        rows = x[0].size // x.shape[-1]  # rows of the GEMM per sample
        for idx, xq, sx, signed in _x_groups(qp, x, not g.batch_fixed):
            acc = linear_acc(g, n, xq.reshape(-1, x.shape[-1]), signed, qw, spec, seed, force_bitlevel, read_index)
            sx_rows = np.repeat(sx, rows) if np.ndim(sx) else sx
            y[idx] = dequantize(np.asarray(acc), sx_rows, sw, b, channel_axis=1).reshape(xq.shape[:-1] + (-1,))
        return y

    from hwsim.imc import deconv  # it builds on this module's crossbar programs

    return {Op.CONV2D: conv, Op.LINEAR: linear,
            Op.CONV_TRANSPOSE2D: deconv.make_kernel(spec, seed, force_bitlevel, read_index)}
