"""``simulate``: the IMC pipeline, stage by stage.

1. fold batch norms into the conv/linear weights (``mapping.passes.fold_bn``);
2. place every weight key on the crossbars (``mapping.imc.map_graph``);
3. cost every node (``hwsim.imc.cost.node_costs``);
4. schedule the nodes, layer-by-layer or pipelined (``hwsim.imc.schedule.schedule``);
5. when an input is given, quantize (``mapping.passes.quantize``) and run the graph with the
   crossbar kernels (``hwsim.imc.functional``);
6. assemble the :class:`IMCReport`.
Stages 1 and the geometry of 2 are cached per graph object (:func:`hwsim.imc.fit.prepare`), so a
sweep over specs re-runs only the cheap vectorised arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.cache import IdentityCache
from hwsim.errors import SpecError
from hwsim.imc import physics as ph
from hwsim.imc.cost import CrossbarCost, DigitalCost, node_costs, tile_area_mm2, tile_power_w
from hwsim.imc.fit import buffer_param_bytes, fit_from_mapping, prepare
from hwsim.imc.numerics import adc_exact
from hwsim.imc.spec import IMCSpec
from hwsim.report import ExitReport, LayerReport, Report, Result
from mapping.graph import Graph, Op
from mapping.imc import IMCMapping, map_graph
from mapping.passes.quantize import input_qmax

__all__ = ["IMCReport", "IMCLayerReport", "simulate", "prepare"]  # prepare lives in hwsim.imc.fit (fit needs it too)

MODES = ("pipelined", "layer")


@dataclass(frozen=True, kw_only=True)
class IMCLayerReport(LayerReport):
    """A layer row of the IMC target: the common fields plus its typed cost record and schedule.

    ``extra`` (the report's columns: the record's fields, ``compute_s`` for a crossbar node, ``start_s`` and
    ``finish_s``) is always built from them, so a row made with ``dataclasses.replace`` never carries the
    columns of the row it was made from. Reading IMC figures through ``extra[...]`` is deprecated
    (DeprecationWarning in this docstring; removed in the next release): read ``cost``, ``compute_s``,
    ``start_s`` and ``finish_s``."""

    cost: CrossbarCost | DigitalCost = DigitalCost()  # the figures of its kind of node
    compute_s: float = 0.0  # time of its MVMs, s (0 for a digital node)
    start_s: float = 0.0  # when it starts in the schedule, s
    finish_s: float = 0.0  # when it ends in the schedule, s

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", {**self.cost.columns(self.compute_s), "start_s": self.start_s,
                                           "finish_s": self.finish_s})


@dataclass(frozen=True, kw_only=True)
class IMCReport(Report):
    """The common report plus the crossbar figures of the IMC target."""

    mode: str = "pipelined"
    crossbars_needed: int = 0  # to hold every weight key once
    crossbars_available: int = 0
    crossbars_used: int = 0  # programmed, duplicates included
    tiles_used: int = 0
    cell_utilization: float = 0.0  # cells holding weights / cells of programmed crossbars
    spilled_layers: tuple[str, ...] = ()
    dram_bytes: int = 0  # weight bytes reloaded from DRAM during the inference
    dram_activation_bytes: int = 0  # activation bytes moved to and from DRAM (feature maps beyond the buffers)
    adc_conversions: int = 0
    tile_power_w: float = 0.0  # one tile with every crossbar busy

    @property
    def crossbar_utilization(self) -> float:
        return self.crossbars_used / self.crossbars_available if self.crossbars_available else 0.0

    def summary(self) -> str:
        extra = (f"crossbars: {self.crossbars_needed} needed, {self.crossbars_used} programmed of "
                 f"{self.crossbars_available} on {self.tiles_used} tiles ({100 * self.cell_utilization:.0f} % of "
                 f"their cells hold weights); {self.mode} schedule; area {self.area_mm2:.2f} mm^2")
        if self.dram_bytes:
            extra += f"; {self.dram_bytes / 1024:.0f} KiB of weights reloaded from DRAM"
        if self.dram_activation_bytes:
            extra += f"; {self.dram_activation_bytes / 1024:.0f} KiB of activations through DRAM"
        return Report.summary(self) + "\n" + extra


_QUANTIZED: IdentityCache[Graph] = IdentityCache("imc quantized graphs", maxsize=16)


def quantize_with_progress(graph: Graph, weight_bits: int, input_bits: int, progress: bool | None = None) -> Graph:
    """``mapping.passes.quantize.quantize(graph, weight_bits, input_bits)`` (per-channel weight scales, or the grid
    the weights already lie on when the node carries one — a k-bit layer's, or ``quantize_ptq(...).graph()``'s per
    tensor or per channel, exactly when its levels fit ``weight_bits``: :func:`mapping.passes.quantize.weight_grid`;
    the input scales the graph's nodes were calibrated with, else dynamic) on the conv/linear nodes, and likewise on the
    transposed convs (scales per output channel: :mod:`hwsim.imc.deconv`), with a progress bar over the weight
    matrices (VGG-16's take seconds). The integer weights it computes are kept in the crossbar kernels' caches
    (:func:`hwsim.imc.functional.weights_q`, :func:`hwsim.imc.deconv.weights_q`), so the run does not quantize them
    again."""
    from hwsim.functional import progress_bar
    from hwsim.imc import deconv
    from hwsim.imc.functional import weights_q
    from mapping.passes.quantize import QuantParams, weight_grid

    layers = (Op.CONV2D, Op.CONV_TRANSPOSE2D, Op.LINEAR)
    keys = {n.params["weight"]: n for n in graph.nodes if n.op in layers}  # first node of each key
    scales: dict[str, tuple[float, ...]] = {}
    with progress_bar(len(keys), f"{graph.name or 'graph'}: quantizing weights", progress, unit="matrix",
                      delay=0.0 if progress else 1.0) as bar:
        for key, nd in keys.items():
            _, sc = (deconv.weights_q(graph.params[key], nd.attrs.groups, weight_bits, True)  # per output channel
                     if nd.op == Op.CONV_TRANSPOSE2D else weights_q(graph.params[key], weight_bits, True,
                                                                    weight_grid(nd)))
            scales[key] = tuple(float(v) for v in sc)
            bar.update()
    producer = {n.name: n for n in graph.nodes}
    nodes = tuple(n.replace(meta={**n.meta, "quant": QuantParams(weight_bits, scales[n.params["weight"]], input_bits,
                                                                  *(_calibrated(n, input_bits)
                                                                    or _codes(n, producer, input_bits)))})
                  if n.op in layers else n for n in graph.nodes)
    return graph.replace(nodes=nodes)


_CODE_VIEWS = frozenset({Op.RESHAPE, Op.MAXPOOL})  # ops that pass a quantizer's codes through unchanged


def _codes(node, producer: dict, input_bits: int) -> tuple[float | None, bool | None]:
    """The step of the quantizer that feeds ``node`` (through reshapes and max pools) when its codes fit the chip's
    ``input_bits``: the crossbar then reads those codes exactly (a max-abs scale would re-quantize them onto another
    grid, and a next low-bit quantizer turns that rounding into a whole step). None, None: a dynamic scale."""
    src = producer.get(node.inputs[0])
    while src is not None and src.op in _CODE_VIEWS:
        src = producer.get(src.inputs[0])
    if src is None or src.op != Op.QUANTIZE or src.attrs.zero_point != 0.0 or src.attrs.rounding != "ROUND":
        return None, None
    q = src.attrs
    low = 2 ** (q.bits - 1) - (1 if q.narrow else 0) if q.signed else 0  # |most negative code|
    high = 2 ** (q.bits - 1) - 1 if q.signed else 2**q.bits - 1 - (1 if q.narrow else 0)
    fits = max(low, high) <= input_qmax(input_bits, q.signed)
    return (float(q.scale), bool(q.signed)) if fits and q.bits > 1 else (None, None)


def _calibrated(node, input_bits: int) -> tuple[float, bool] | None:
    """A fixed input scale the node's graph already carries (a calibration, e.g. ``quantize_ptq(...).graph()``'s
    ranges), at the chip's ``input_bits``: the same range ``input_scale · qmax`` over the chip's qmax. None: none."""
    qp = node.meta.get("quant")
    if qp is None or qp.input_scale is None:
        return None
    signed = bool(qp.input_signed)
    if input_qmax(input_bits, signed) < 1:
        raise SpecError(f"input_bits={input_bits} leaves the signed inputs of {node.name} (calibrated) no positive "
                        "level; use input_bits >= 2")
    return qp.input_scale * input_qmax(qp.input_bits, signed) / input_qmax(input_bits, signed), signed


def _quantized(folded: Graph, weight_bits: int, input_bits: int) -> Graph:
    """The quantize pass applied to ``folded``, cached per graph object and bit widths (last 16)."""
    return _QUANTIZED.get(folded, weight_bits, input_bits,
                          compute=lambda: quantize_with_progress(folded, weight_bits, input_bits))


def _outputs(folded: Graph, spec: IMCSpec, x: np.ndarray, seed: int, read_seed: int | None):
    from hwsim import functional
    from hwsim.imc.functional import check_pad_values, make_kernels

    gq = _quantized(folded, spec.weight_bits, spec.input_bits)
    check_pad_values(gq)  # a +-1 border its fixed input grid cannot hold: refused before any layer runs
    outs = functional.run(gq, x, make_kernels(spec, seed, read_index=read_seed))
    return outs[0] if len(outs) == 1 else outs


def _exit_energy(graph: Graph, costs, name: str) -> float:
    """Energy of the nodes output ``name`` depends on (itself and its ancestors): an early exit does not pay for
    the branches it does not read, as its dataflow finish time does not wait for them."""
    nodes, energy = {n.name: n for n in graph.nodes}, {c.name: c.energy_j for c in costs}
    seen, todo = set(), [name]
    while todo:
        v = todo.pop()
        if v not in seen and v in nodes:
            seen.add(v)
            todo.extend(nodes[v].inputs)
    return float(sum(energy.get(v, 0.0) for v in seen))


def simulate(graph: Graph, spec: IMCSpec, x: np.ndarray | None = None, *, seed: int = 0, mode: str = "pipelined",
             max_chunks: int = 8, read_seed: int | None = None) -> Result:
    """Map ``graph`` on ``spec``, cost and schedule it; compute the outputs when ``x`` is given.

    mode: "pipelined" (layers overlap, row chunks, SimPy) or "layer" (one layer at a time).
    max_chunks: row chunks per node in pipelined mode.
    seed: the chip (per-seed device draws: programming noise, stuck-at cells, drift exponents, ADC transfer; with
    the run's read index, read and ADC noise); the crossbars are programmed once per (graph, spec, seed) and cached, so batch after batch reuses them
    (``hwsim.imc.functional.clear_cache`` forgets them).
    read_seed: which inference's read and ADC noise (``spec.read_sigma``, ``spec.adc_noise_lsb``) to draw; None:
    the next one of this process for ``seed`` (every call reads fresh noise; the same sequence of calls in a fresh
    process repeats it).
    """
    if read_seed is not None and (isinstance(read_seed, bool) or not isinstance(read_seed, (int, np.integer))
                                  or read_seed < 0):
        raise SpecError(f"imc target: read_seed must be a non-negative integer or None, got {read_seed!r}")
    if mode not in MODES:
        raise SpecError(f"imc target: mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(max_chunks, int) or max_chunks < 1:
        raise SpecError(f"imc target: max_chunks must be a positive int, got {max_chunks!r}")
    if x is not None and ph.analog(spec):  # the nominal largest conductance already too wide for exact sums: refused
        ph.grid_bits(spec, 2**spec.cell_bits - 1 + ph.g_offset(spec))  # before any layer runs (noise may add later)
    from hwsim.imc.schedule import schedule

    folded, geo, st = prepare(graph)
    mp: IMCMapping = map_graph(folded, spec, geo)
    costs = node_costs(folded, mp, spec, st)
    start, finish = schedule(folded, costs, mode, max_chunks)
    outputs = _outputs(folded, spec, x, seed, read_seed) if x is not None else None

    layers = tuple(IMCLayerReport(
        name=c.name, op=c.op, module=c.module, macs=c.macs, cycles=c.latency_s * spec.clock_hz,
        latency_s=c.latency_s, energy_j=c.energy_j,
        energy_breakdown={k: v * 1e-12 for k, v in c.energy_pj.items()},
        weight_bytes=c.weight_bytes, activation_bytes=c.activation_bytes, placement=c.placement, bound=c.bound,
        cost=c.detail, compute_s=c.compute_s, start_s=start[c.name], finish_s=finish[c.name]) for c in costs)
    cum = np.cumsum([c.energy_j for c in costs])
    exits = tuple(ExitReport(name=o, latency_s=finish[o], energy_j=_exit_energy(folded, costs, o))
                  for o in folded.outputs)
    fr = fit_from_mapping(mp, spec, graph.name, st.working_set_bytes(folded.batch, spec),
                          buffer_param_bytes=buffer_param_bytes(folded, spec))
    onchip_w = sum(lm.geometry.weights for lm in mp.layers if lm.onchip) * spec.weight_bits // 8
    dram = sum(c.detail.dram_weight_bytes for c in costs if isinstance(c.detail, CrossbarCost))
    dram_act = sum(c.detail.dram_activation_bytes for c in costs)
    notes = []
    if not mp.fits:
        notes.append(f"{len(mp.spilled)} weight matrices reloaded from DRAM at every execution ({dram} B per inference)")
        if mp.crossbars_used >= mp.crossbars_available:  # hwsim.imc.cost.node_costs: no crossbar left free
            notes.append("no crossbar is left free for the spilled layers: they are costed on the whole chip, "
                         "overwriting resident weights whose reload is not charged (optimistic; a chip with a few "
                         "crossbars free runs them in passes on those, which can be slower)")
    last = None if outputs is None else (outputs[-1] if isinstance(outputs, list) else outputs)
    if last is not None and last.size > 1 and np.ptp(last) == 0:
        notes.append(f"every output value is {float(last.flat[0]):g}: the chip computes nothing that depends on the "
                     "input (every ADC code clipped or zero?); compare rel_rms_error with hwsim.evaluate")
    inexact = [lm.geometry for lm in mp.layers if not adc_exact(spec, lm.geometry.k)]
    if inexact:  # by design (the point of a few-bit ADC), but a user reading outputs must know they are approximate
        worst = max(inexact, key=lambda g: g.k)
        notes.append(f"{len(inexact)} of {len(mp.layers)} weight matrices have column sums the {spec.adc_bits}-bit ADC "
                     f"cannot represent exactly (up to {spec.partial_sum_max(worst.k)} > {2**spec.adc_bits - 1} on "
                     f"{worst.module or worst.key!r}, {min(worst.k, spec.rows)} rows): outputs are clipped or "
                     "rounded; hwsim.evaluate measures what that costs (rel_rms_error, accuracy)")
    if dram_act:
        n = sum(1 for c in costs if c.detail.dram_activation_bytes)
        notes.append(f"{n} layers' feature maps exceed the {spec.activation_buffer_bytes} B of buffers and "
                     f"go through DRAM ({dram_act} B per inference)")
    rep = IMCReport(
        target="imc", network=graph.name, spec_name=spec.name, batch=folded.batch, layers=layers,
        latency_s=max(finish.values(), default=0.0), energy_j=float(cum[-1]) if len(cum) else 0.0,
        onchip_weight_bytes=onchip_w, onchip_capacity_bytes=spec.capacity_bytes, fits_on_chip=mp.fits,
        fit_reason=fr.reason, peak_activation_bytes=st.peak_live * folded.batch * spec.input_bits // 8,
        exits=exits, area_mm2=spec.tiles * tile_area_mm2(spec), notes=tuple(notes), mode=mode,
        crossbars_needed=mp.crossbars_needed, crossbars_available=mp.crossbars_available,
        crossbars_used=mp.crossbars_used, tiles_used=mp.tiles_used, cell_utilization=mp.cell_utilization,
        spilled_layers=mp.spilled, dram_bytes=dram, dram_activation_bytes=dram_act,
        adc_conversions=int(sum(c.detail.adc_conversions for c in costs if isinstance(c.detail, CrossbarCost))),
        tile_power_w=sum(tile_power_w(spec).values()))
    return Result(outputs, rep)

