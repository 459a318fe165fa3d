"""Cycle-approximate latency, energy and area of a mapped graph on an IMC chip.

Per execution of a conv/linear node with P = output pixels x batch matrix-vector products (MVMs),
on a layer with g groups of K x N, row splits rs, column splits cs, ``xb`` crossbars, d copies:

- time: all crossbars of a copy work in parallel on one MVM; one MVM takes
  ``input_steps · step_time`` (:attr:`IMCSpec.step_time_s`: read time and ADC sharing), so
  ``t_compute = ceil(P / d) · mvm_time``. The layer is also bounded by its activation traffic:
  ``t_buffer = buffer bits / (buffer bandwidth · tiles)`` and ``t_noc = NoC bits / (NoC bandwidth ·
  tiles)``; latency = max of the three (the ``bound`` column says which).
- actions: ADC conversions ``P·J·(g·N·cpw)·rs`` (every weight column of every row split, every
  input step; rs = 1 for block-diagonal groups), DAC ``P·J·(g·K)·cs``, crossbar reads
  ``P·J·xb`` (read energy and array area x ``(cols + 1)/cols`` with a reference column: one more bit line
  per crossbar, :attr:`IMCSpec.bitline_scale`; its subtraction is analog, so the ADC, S&H and shift-add
  counts are unchanged, and the subtracting circuit itself is not costed), S&H and shift-add one per
  conversion; buffer bits ``P·(g·K + g·N)·input_bits`` (im2col reads, output writes); NoC bits: the
  output once, plus partial sums between tiles when row splits span several tiles; digital ops: the adds
  merging row splits and the dequantization, ``P·g·N·rs``.
- a transposed conv (:mod:`hwsim.imc.deconv`) is the layer of K = Cin/g rows by N = (Cout/g)·kh·kw columns with
  P = input pixels x batch MVMs, costed as above, plus its col2im on the digital units (:func:`col2im_adds`):
  ``adds = batch·(H·W·Cout·kh·kw + Cout·OH·OW)`` (one per crossbar output, one bias add per output element) at
  ``digital_energy_pj_per_op``; each crossbar output is added into its output accumulator in the buffers (one more
  read, ``P·g·N·input_bits`` buffer bits); time ``adds / (digital_ops_per_cycle · clock · tiles)``, overlapped with the
  MVMs (a fourth term of the max; ``bound`` = "digital" when it dominates).
- weights that did not fit (spilled) are reloaded from DRAM at every execution:
  ``weights·weight_bits`` bits at the DRAM bandwidth and energy, programmed at
  ``write_time_s_per_row`` per row and ``write_energy_pj_per_cell``; they compute on the crossbars
  left free by resident layers (in ``passes = ceil(xb / free)`` passes), the whole chip when none
  are free. Passes over different column groups each stream the input again (``n_in = min(passes,
  cs)`` input reads); when one column group needs more crossbars than are free, its
  ``row_passes = ceil(passes / cs)`` passes leave partial sums (``psum_bits``) that are written and
  read back once per extra pass: ``2·(row_passes-1)·P·g·N·psum_bits``.
- activations: the chip holds ``tiles · buffer_bytes_per_tile`` bytes of them. A layer whose
  working set (input + output feature maps + one column group's partial sums) fits keeps them in
  the buffers. One that does not reads its input from DRAM and writes its output to DRAM once,
  and holds in the buffers the input, the partial sums, both or neither, over as many pixel tiles
  as needed for them to fit; what is not held streams through DRAM (the input ``n_in`` times, the
  partial sums at every extra row pass) and spilled weights are reloaded once per pixel tile.
  The choice costing the least DRAM energy is taken (:func:`_spill_activations`); DRAM time adds
  to the layer's latency (no overlap). Halos of pixel tiles are not counted.
- digital nodes (everything but conv/linear: ReLU, add, pooling, softmax, norms, GELU, the products of two
  activations MATMUL and ATTENTION, ...) run on the tiles' digital units, ``digital_ops_per_cycle`` ops per
  clock per tile in use, each op of one of three classes (:func:`digital_work`):
  ``alu`` ops (add, max, compare, select: ``elementwise_ops``) at ``digital_energy_pj_per_op``;
  ``mac`` multiply-accumulates at the activation precision (MATMUL / ATTENTION: ``node_macs``; the slope
  multiply of LeakyReLU / PReLU) at ``digital_mac_energy_pj``; ``fp`` fp32 multiply-adds of the ops evaluated
  as functions (``elementwise_ops · mapping.analysis.function_ops``: softmax, layer / group norm, GELU, exp,
  division, ..., and attention's softmax) at ``digital_fp_energy_pj`` (both Horowitz ISSCC'14 45 nm energies
  scaled to ``tech_node_nm``: :class:`~hwsim.imc.spec.IMCSpec`). Their activations are read from and
  written to the buffers (DRAM when the node's input + output (+ attention's scores) exceed the chip's
  buffers; then each crosses DRAM once and the re-reads stay in the buffers); a product of activations
  reads its operands through an output-stationary block of r x r accumulators, r = √digital_ops_per_cycle:
  ``2·MACs / r`` operand reads (at least its inputs once), and attention's ``L·S`` score matrix is written
  by q k^T, read and written by the softmax (its read by the second product is among the operand reads).
  An activation function whose only input is a conv/linear output read by nothing else is fused: applied
  on the way to the buffer, it moves no data. A CONSTANT reads its parameter (stored in the tile buffers,
  not the crossbars) and writes its output; its input only gives the batch size.
- the rest of a tile (``tile_other_power_w``: registers, bus, sigmoid/pool units) burns while its
  layer runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hwsim.imc.spec import IMCSpec
from hwsim.report import StrEnum
from mapping.analysis import (
    PRODUCT_OPS,
    conv_transpose_in_hw,
    elementwise_ops,
    function_ops,
    node_macs,
    peak_live_elements,
)
from mapping.graph import ACTIVATIONS, Graph, Node, Op
from mapping.imc import CROSSBAR_OPS, IMCMapping, LayerMapping

__all__ = ["NodeCost", "CrossbarCost", "DigitalCost", "Activations", "Statics", "statics", "digital_work", "col2im_adds",
           "node_costs", "tile_power_w", "tile_area_mm2", "COMPONENTS"]

SLOPE_OPS = frozenset({Op.LEAKY_RELU, Op.PRELU})  # one multiply by the slope per element

COMPONENTS = ("adc", "dac", "crossbar", "sample_hold", "shift_add", "buffer", "noc", "dram", "write", "digital",
              "other")


class Activations(StrEnum):
    """Where a node's feature maps go (the ``activations`` column of a layer)."""

    ONCHIP = "onchip"  # read from and written to the tile buffers
    DRAM = "dram"  # they exceed the chip's buffers: read from / written to DRAM (module docstring)
    FUSED = "fused"  # an activation function applied on its producer's outputs on their way to the buffer: none moved


@dataclass(frozen=True, slots=True)
class CrossbarCost:
    """What a conv/linear node on the crossbars costs beyond :class:`NodeCost`'s common fields (one execution,
    whole batch). Field names are the report's column names."""

    crossbars: int  # crossbars holding one copy of its weight key
    duplicates: int  # copies of the weight key the mapping programmed
    row_splits: int  # crossbar rows blocks the K inputs are split over
    col_splits: int  # crossbar column blocks the N outputs are split over
    adc_conversions: int  # ADC conversions, count
    tiles: int  # tiles its activation traffic spreads over, count
    passes: int  # passes over the free crossbars (1 on chip), count
    dram_s: float  # DRAM time (weight reloads + feature maps), s; part of the node's latency
    weight_loads: int  # times its weights are loaded from DRAM (0 on chip), count
    activations: Activations  # ONCHIP or DRAM
    held_on_chip: str  # what the buffers hold: "input+output+psums", "input", "psums", "input+psums" or "none"
    pixel_tiles: int  # pixel tiles its feature maps are cut into to fit the buffers, count
    dram_weight_bytes: int  # weight bytes read from DRAM, B
    dram_activation_bytes: int  # activation bytes moved to and from DRAM, B

    def columns(self, compute_s: float) -> dict[str, Any]:
        """The report's columns of this record (and ``compute_s``, the node's MVM time in s, in its old place)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
            if f.name == "passes":
                d["compute_s"] = compute_s
        return d


@dataclass(frozen=True, slots=True)
class DigitalCost:
    """What a node on the tiles' digital units costs beyond :class:`NodeCost`'s common fields (one execution, whole
    batch; module docstring)."""

    activations: Activations = Activations.ONCHIP
    dram_activation_bytes: int = 0  # feature map bytes moved to and from DRAM, B
    dram_s: float = 0.0  # DRAM time of those bytes, s; part of the node's latency
    alu_ops: int = 0  # add / max / compare / select ops, count
    mac_ops: int = 0  # multiply-accumulates at the activation precision, count
    fp32_ops: int = 0  # fp32 multiply-adds of function-evaluated ops, count

    def columns(self, compute_s: float = 0.0) -> dict[str, Any]:
        """The report's columns: the placement and DRAM traffic when not in the buffers, the op classes when the
        node uses more than the ALU (``compute_s`` is 0 for a digital node and not a column)."""
        d: dict[str, Any] = {}
        if self.activations == Activations.DRAM:
            d = {"activations": self.activations, "dram_activation_bytes": self.dram_activation_bytes,
                 "dram_s": self.dram_s}
        elif self.activations == Activations.FUSED:
            d = {"activations": self.activations}
        if self.mac_ops or self.fp32_ops:
            d.update(alu_ops=self.alu_ops, mac_ops=self.mac_ops, fp32_ops=self.fp32_ops)
        return d


@dataclass(frozen=True, slots=True)
class NodeCost:
    """Cost of one node execution (whole batch)."""

    name: str
    op: str
    module: str
    macs: int
    latency_s: float  # busy time of the node
    compute_s: float  # time of its MVMs (0 for digital nodes)
    energy_pj: dict  # component -> pJ
    placement: str  # "onchip", "dram" (spilled weights), "digital"
    bound: str  # "compute", "buffer", "noc", "dram", "digital"
    resource: str  # what it occupies: a weight key, "swap" for spilled weights, "" for digital
    chunks_of: int  # output rows (for pipelining)
    detail: CrossbarCost | DigitalCost  # the figures of its kind of node
    weight_bytes: int
    activation_bytes: int
    buffer_s: float = 0.0  # time its activation traffic occupies the buffers of its tiles
    tiles: tuple[int, ...] = ()  # tiles holding its crossbars (on chip)

    @property
    def energy_j(self) -> float:
        return sum(self.energy_pj.values()) * 1e-12

    @property
    def dram_s(self) -> float:
        """Time of its DRAM traffic (s), part of ``latency_s``."""
        return self.detail.dram_s

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated (DeprecationWarning; removed in the next release): the old string-keyed dict, built from
        :attr:`detail`; read ``detail`` (a :class:`CrossbarCost` or :class:`DigitalCost`) instead."""
        return self.detail.columns(self.compute_s)


def tile_power_w(spec: IMCSpec) -> dict[str, float]:
    """Power of one tile with every crossbar busy, per component (W).

    Rates at full activity: each crossbar finishes one input step every ``step_time``: its
    ``cols`` columns are converted (``cols/step_time`` conversions/s over its ADCs, S&H and
    shift-adders), its ``rows`` DACs fire, its array is read once; the buffer and the router run
    at their bandwidths; the rest of the tile burns ``tile_other_power_w``.
    """
    n, st = spec.crossbars_per_tile, spec.step_time_s
    conv_rate = n * spec.cols / st
    return {
        "adc": conv_rate * spec.adc_energy_eff_pj * 1e-12,
        "dac": n * spec.rows / st * spec.dac_energy_pj * 1e-12,
        "crossbar": n / st * spec.crossbar_read_energy_pj * spec.bitline_scale * 1e-12,
        "sample_hold": conv_rate * spec.sample_hold_energy_pj * 1e-12,
        "shift_add": conv_rate * spec.shift_add_energy_pj * 1e-12,
        "buffer": spec.buffer_bandwidth_bytes_s * 8 * spec.buffer_energy_pj_per_bit * 1e-12,
        "noc": spec.noc_bandwidth_bytes_s * 8 * spec.noc_energy_pj_per_bit * 1e-12,
        "other": spec.tile_other_power_w,
    }


def tile_area_mm2(spec: IMCSpec) -> float:
    """Area of one tile: its crossbars with their ADCs, shift-adders, DACs and S&H, plus the rest."""
    per_xbar_um2 = (spec.crossbar_area_um2 * spec.bitline_scale
                    + spec.adcs_per_crossbar * (spec.adc_area_eff_um2 + spec.shift_add_area_um2)
                    + spec.rows * spec.dac_area_um2 + spec.cols * spec.sample_hold_area_um2)
    return spec.crossbars_per_tile * per_xbar_um2 * 1e-6 + spec.tile_other_area_mm2


@dataclass(frozen=True, slots=True)
class Statics:
    """Spec-independent per-node counts of a graph (per sample), computed once per graph."""

    numel: tuple[int, ...]  # output elements
    in_elements: tuple[int, ...]  # input elements (all inputs)
    ops: tuple[int, ...]  # elementwise ops (digital nodes)
    macs: tuple[int, ...]
    peak_live: int  # peak live activation elements
    fused: tuple[bool, ...]  # activation functions applied on their conv/linear producer's output
    max_working: int  # largest input + output elements of a conv/linear node
    mac_ops: tuple[int, ...] = ()  # digital multiply-accumulates (products of activations, slope multiplies)
    fp_ops: tuple[int, ...] = ()  # digital fp32 multiply-adds (function-evaluated ops)
    scores: tuple[int, ...] = ()  # attention's L·S score elements (all heads), else 0

    def working_set_bytes(self, batch: int, spec: IMCSpec) -> int:
        """Bytes of input + output feature maps (at ``input_bits``, whole batch) of the largest conv/linear node."""
        return self.max_working * batch * spec.input_bits // 8


def statics(graph: Graph) -> Statics:
    numel, ins, ops, macs, fused, mac_ops, fp_ops, scores = [], [], [], [], [], [], [], []
    by_name = {n.name: n for n in graph.nodes}
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    for node in graph.nodes:
        src = by_name.get(node.inputs[0]) if len(node.inputs) == 1 else None
        fused.append(node.op in ACTIVATIONS and src is not None and src.op in CROSSBAR_OPS
                     and len(consumers.get(src.name, ())) == 1 and src.name not in outputs)
        numel.append(node.numel)
        # a CONSTANT reads its parameter, one value per output element; its input only gives the batch size
        ins.append(node.numel if node.op == Op.CONSTANT else
                   sum(int(np.prod(graph.shape_of(i)[1:], dtype=np.int64)) for i in node.inputs))
        macs.append(node_macs(node, graph))
        if node.op in CROSSBAR_OPS or node.op == Op.RESHAPE:
            work = (0, 0, 0, 0)
        else:
            work = digital_work(graph, node)
        ops.append(work[0])
        mac_ops.append(work[1])
        fp_ops.append(work[2])
        scores.append(work[3])
    working = max((i + o for n, i, o in zip(graph.nodes, ins, numel) if n.op in CROSSBAR_OPS), default=0)
    in_place = [n.name for n, f in zip(graph.nodes, fused) if f]  # a fused activation has no buffer of its own
    return Statics(tuple(numel), tuple(ins), tuple(ops), tuple(macs), peak_live_elements(graph, in_place), tuple(fused),
                   working, tuple(mac_ops), tuple(fp_ops), tuple(scores))


def digital_work(graph: Graph, node: Node) -> tuple[int, int, int, int]:
    """(alu ops, multiply-accumulates, fp32 multiply-adds, attention score elements) of a digital node per sample
    (see the module docstring)."""
    ew = elementwise_ops(graph, node)
    fn = function_ops(node)
    macs = node_macs(node, graph) if node.op in PRODUCT_OPS else 0  # products of activations
    scores = ew if node.op == Op.ATTENTION else 0  # elementwise_ops of attention counts its L·S scores
    if fn:
        return 0, macs, ew * fn, scores
    if node.op in SLOPE_OPS:
        return 0, ew, 0, 0
    return ew, macs, 0, 0


def col2im_adds(node: Node) -> int:
    """Digital ops of a transposed conv's col2im per sample (:mod:`hwsim.imc.deconv`): one add per crossbar output,
    ``H·W·Cout·kh·kw`` (every input pixel's every column, those cropped by the padding included), plus the bias,
    one add per output element ``Cout·OH·OW``; 0 for any other node."""
    if node.op != Op.CONV_TRANSPOSE2D:
        return 0
    a = node.attrs
    h, w = conv_transpose_in_hw(node)
    return h * w * a.out_channels * a.kernel[0] * a.kernel[1] + (node.numel if "bias" in node.params else 0)


def _rows_of(shape: tuple[int, ...]) -> int:
    return int(shape[2]) if len(shape) == 4 else 1


def _spill_activations(spec: IMCSpec, lm: LayerMapping, wbits: int, in_bits: int, out_bits: int, psum_store: int,
                       psum_xfer_bits: int, n_in: int, cap_bits: int) -> tuple[int, int, tuple[str, ...], int]:
    """DRAM schedule of a layer whose feature maps do not fit the chip's buffers.

    The input is read from DRAM and the output written to it at least once. The buffers hold the
    input, the partial sums of a column group, both or neither, for ``S`` pixel tiles small
    enough to fit (``S = ceil(held bits / capacity)``): what is not held streams through DRAM
    (the input once per column group, ``n_in`` times; the partial sums at every extra row pass),
    and spilled weights are reloaded once per pixel tile. The choice costing the least DRAM and
    write energy is taken. Returns (weight loads, activation DRAM bits, held, S).
    """
    reload_pj = 0.0 if lm.onchip else wbits * spec.dram_energy_pj_per_bit + lm.used_cells * spec.write_energy_pj_per_cell
    best = None
    for hold_in in (False, True):
        for hold_psum in ((False, True) if psum_store else (False,)):
            held = (in_bits if hold_in else 0) + (psum_store if hold_psum else 0)
            tiles = max(1, math.ceil(held / cap_bits))
            bits = in_bits * (1 if hold_in else n_in) + out_bits + (0 if hold_psum else psum_xfer_bits)
            cost = bits * spec.dram_energy_pj_per_bit + (tiles - 1) * reload_pj
            names = tuple(n for n, h in (("input", hold_in), ("psums", hold_psum)) if h)
            if best is None or cost < best[0]:
                best = (cost, (0 if lm.onchip else tiles), bits, names, tiles)
    return best[1:]


def _weight_node(node: Node, lm: LayerMapping, spec: IMCSpec, batch: int, free_xbars: int, pixels: int,
                 macs: int, numel: int, ins: int) -> NodeCost:
    g = lm.geometry
    P = pixels * batch
    J = spec.input_steps
    cpw = spec.columns_per_weight
    ntot, ktot = g.groups * g.n, g.groups * g.k
    onchip = lm.onchip
    dup = lm.duplicates if onchip else 1
    # a spilled layer computes on the free crossbars (or the whole chip) in passes
    passes = 1 if onchip else math.ceil(lm.crossbars / max(1, free_xbars))
    cs = lm.col_splits
    # passes over different column groups each stream the whole input again; passes within one
    # column group (when it needs more crossbars than are free) leave partial sums to merge later
    n_in = min(passes, cs)
    row_passes = math.ceil(passes / cs) if passes > cs else 1
    t_comp = math.ceil(P / dup) * spec.mvm_time_s * passes
    conv = P * J * ntot * cpw * lm.row_splits
    e = {
        "adc": conv * spec.adc_energy_eff_pj,
        "dac": P * J * ktot * lm.col_splits * spec.dac_energy_pj,
        "crossbar": P * J * lm.crossbars * spec.crossbar_read_energy_pj * spec.bitline_scale,
        "sample_hold": conv * spec.sample_hold_energy_pj,
        "shift_add": conv * spec.shift_add_energy_pj,
    }
    tiles = max(1, len(lm.tiles)) if onchip else max(1, min(spec.tiles, math.ceil(lm.crossbars / spec.crossbars_per_tile)))
    psum_bits = spec.input_bits + spec.weight_bits + math.ceil(math.log2(max(2, g.k)))
    psum_xfer_bits = 2 * (row_passes - 1) * P * ntot * psum_bits  # written, then read back by the next pass
    wbits = g.weights * spec.weight_bits
    # activation working set: input and output feature maps, plus one column group's partial sums
    in_bits, out_bits = ins * batch * spec.input_bits, numel * batch * spec.input_bits
    psum_store = P * math.ceil(ntot / cs) * psum_bits if row_passes > 1 else 0
    cap_bits = spec.activation_buffer_bytes * 8
    loads, act_bits, held, px_tiles = (0 if onchip else 1), 0, ("input", "output", "psums"), 1
    if in_bits + out_bits + psum_store > cap_bits:
        loads, act_bits, held, px_tiles = _spill_activations(spec, lm, wbits, in_bits, out_bits, psum_store,
                                                             psum_xfer_bits, n_in, cap_bits)
    psum_buf = psum_xfer_bits if "psums" in held else 0
    col2im = col2im_adds(node) * batch  # a transposed conv's scatter-adds (and bias), on the digital units
    acc_reads = P * ntot * spec.input_bits if col2im else 0  # each add reads its output accumulator back
    buf_bits = P * (ktot * n_in + ntot) * spec.input_bits + psum_buf + acc_reads
    noc_bits = P * ntot * spec.input_bits + P * ntot * (min(lm.row_splits, tiles) - 1) * psum_bits
    e["buffer"] = buf_bits * spec.buffer_energy_pj_per_bit
    e["noc"] = noc_bits * spec.noc_energy_pj_per_bit
    e["digital"] = (P * ntot * lm.row_splits + col2im) * spec.digital_energy_pj_per_op
    t_buf = buf_bits / 8 / (spec.buffer_bandwidth_bytes_s * tiles)
    t_noc = noc_bits / 8 / (spec.noc_bandwidth_bytes_s * tiles)
    t_dram = 0.0
    if loads:
        t_dram = loads * (wbits / 8 / spec.dram_bandwidth_bytes_s + g.k * spec.write_time_s_per_row * passes)
        e["write"] = loads * lm.used_cells * spec.write_energy_pj_per_cell
    t_dram += act_bits / 8 / spec.dram_bandwidth_bytes_s
    if loads or act_bits:
        e["dram"] = (loads * wbits + act_bits) * spec.dram_energy_pj_per_bit
    times = {"compute": t_comp, "buffer": t_buf, "noc": t_noc}
    if col2im:  # the digital units scatter-add while the crossbars compute (pipelined per input pixel)
        times["digital"] = col2im / (spec.digital_ops_per_cycle * spec.clock_hz * tiles)
    bound = max(times, key=times.get)
    lat = times[bound] + t_dram
    if t_dram > times[bound]:
        bound = "dram"
    e["other"] = spec.tile_other_power_w * tiles * lat * 1e12
    detail = CrossbarCost(lm.crossbars, lm.duplicates, lm.row_splits, lm.col_splits, conv, tiles, passes, t_dram,
                          loads, Activations.DRAM if act_bits else Activations.ONCHIP, "+".join(held) or "none",
                          px_tiles, loads * wbits // 8, act_bits // 8)
    return NodeCost(node.name, node.op.value, node.module, macs, lat, t_comp, e, "onchip" if onchip else "dram",
                    bound, lm.key if onchip else "swap", _rows_of(node.shape), detail, wbits // 8,
                    numel * batch * spec.input_bits // 8, t_buf, lm.tiles if onchip else ())


def _digital_node(node: Node, spec: IMCSpec, batch: int, tiles: int, st: Statics, i: int) -> NodeCost:
    """A node computed by the tiles' digital units (module docstring); ``st.fused[i]``: applied to its producer's
    outputs on their way to the buffer (an activation function after a conv/linear), so it moves no activations."""
    ins, numel, fused = st.in_elements[i], st.numel[i], st.fused[i]
    alu, mac, fp = st.ops[i] * batch, st.mac_ops[i] * batch, st.fp_ops[i] * batch
    if node.op == Op.RESHAPE:
        alu = mac = fp = bits = traffic = 0
    elif fused:
        bits = traffic = 0
    else:
        # operand reads: a product of activations through an r x r block of accumulators, 2·MACs / r (>= inputs)
        reads = max(ins, 2 * st.macs[i] / math.sqrt(spec.digital_ops_per_cycle)) if node.op in PRODUCT_OPS else ins
        bits = (ins + numel + st.scores[i]) * batch * spec.input_bits  # its working set
        traffic = (reads + numel + 3 * st.scores[i]) * batch * spec.input_bits  # scores: written, read, written
    # feature maps that do not fit the chip's buffers stream from and to DRAM (each value once)
    dram_bits = bits if bits > spec.activation_buffer_bytes * 8 else 0
    buf_bits = traffic - dram_bits
    t = (alu + mac + fp) / (spec.digital_ops_per_cycle * spec.clock_hz * tiles)
    t = max(t, buf_bits / 8 / (spec.buffer_bandwidth_bytes_s * tiles))
    t += dram_bits / 8 / spec.dram_bandwidth_bytes_s
    e = {"digital": alu * spec.digital_energy_pj_per_op + mac * spec.digital_mac_energy_pj
         + fp * spec.digital_fp_energy_pj,
         "buffer": buf_bits * spec.buffer_energy_pj_per_bit, "other": spec.tile_other_power_w * t * 1e12}
    detail = DigitalCost(alu_ops=alu, mac_ops=mac, fp32_ops=fp)
    if dram_bits:
        e["dram"] = dram_bits * spec.dram_energy_pj_per_bit
        detail = DigitalCost(Activations.DRAM, int(dram_bits // 8), dram_bits / 8 / spec.dram_bandwidth_bytes_s,
                             alu, mac, fp)
    elif fused:
        detail = DigitalCost(Activations.FUSED, alu_ops=alu, mac_ops=mac, fp32_ops=fp)
    return NodeCost(node.name, node.op.value, node.module, st.macs[i] * batch, t, 0.0, e, "digital",
                    "dram" if dram_bits else "digital", "", _rows_of(node.shape), detail, 0,
                    numel * batch * spec.input_bits // 8)


def node_costs(graph: Graph, mapping: IMCMapping, spec: IMCSpec, st: Statics | None = None) -> list[NodeCost]:
    """Cost of every node of ``graph`` (in order) on ``spec`` with ``mapping``."""
    st = statics(graph) if st is None else st
    batch = graph.batch
    free = mapping.crossbars_available - mapping.crossbars_used
    free = free if free > 0 else mapping.crossbars_available
    tiles_dig = max(1, mapping.tiles_used)
    out = []
    for i, node in enumerate(graph.nodes):
        if node.op in CROSSBAR_OPS:
            lm = mapping.layer_of(node.name)
            idx = lm.geometry.nodes.index(node.name)
            out.append(_weight_node(node, lm, spec, batch, free, lm.geometry.pixels[idx], st.macs[i] * batch,
                                    st.numel[i], st.in_elements[i]))
        else:
            out.append(_digital_node(node, spec, batch, tiles_dig, st, i))
    return out
