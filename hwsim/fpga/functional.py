"""Functional execution of an :class:`~mapping.fpga.XnorProgram`: what the FPGA computes, bit for bit.

Values travel as bits (uint8 0/1, bit 1 = +scale), unsigned codes (uint8/uint16; value ``(q - offset) * scale``)
or, for the network input, float32. Each MVAU computes its integer accumulator with the kernels of
:mod:`hwsim.kernels.binary` (xnor-popcount for binary operands; for k-bit operands either the
decomposed multi-branch xnor-popcount or the native integer product), then thresholds it.
An MVAU without activation (the classifier) returns ``z`` in float32, computed from the exact
integer accumulator by its float ops in graph order (scale, bias, BatchNorm, scale/bias constants).
"""
from __future__ import annotations

import numpy as np

from hwsim.cache import IdentityCache
from hwsim.errors import ShapeError
from hwsim.kernels import binary as B
from hwsim.kernels import fp32 as K
from mapping.fpga import (
    AccPoolLayer,
    AddLayer,
    ConcatLayer,
    Enc,
    InputLayer,
    MVAULayer,
    PoolLayer,
    ReshapeLayer,
    ThresholdLayer,
    XnorProgram,
)

__all__ = ["run_program", "mvau_accumulator"]


def _input_layer(layer: InputLayer, x: np.ndarray) -> np.ndarray:
    """Bits or unsigned codes of the network input, as the host driver sends them."""
    out, a = layer.out, layer.quant
    for op, arg in layer.pre:  # the network's preprocessing, as the functional executor computes it
        x = _arith(x, op, arg)
    if a is None:  # SIGN
        return (x >= 0).astype(np.uint8)  # sign(0) = +1
    y = K.quantize(x, a.bits, a.scale, a.signed, a.zero_point, a.narrow, a.rounding)  # float32, as qonnx / torch
    if out.kind == Enc.BINARY:
        return (y > 0).astype(np.uint8)
    q = np.rint(y / np.float32(a.scale)) + out.offset  # y = integer * scale: the division gives the integer back
    return q.astype(np.uint8 if out.n_levels <= 256 else np.uint16)


def _raw_integers(layer: MVAULayer, x: np.ndarray) -> np.ndarray:
    xi = np.rint(x)
    if not np.array_equal(xi, x):
        bad = x[xi != x].ravel()[:3]
        raise ShapeError(f"layer {layer.name!r} ({layer.module}) is binary/quantized but is fed non-integer "
                         f"values (e.g. {bad.tolist()}): binarize its input with BinarySign or quantize it with "
                         "QuantAct, or feed an integer (8-bit) image")
    return xi.astype(np.int64)


def _conv_args(layer: MVAULayer):
    c = layer.conv
    return (c.stride, c.padding, c.dilation, c.groups) if c is not None else None


def _channels(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-output-channel vector shaped to broadcast over an (N, C, ...) accumulator."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# Weight-derived operands of an MVAU (the split of "int" weights, the packed ±1 planes), made once per layer: a
# layer is immutable once its program is built, so they are remembered by the layer's identity (emptied by
# hwsim.clear_caches()). Key: (layer, role) with role "w" (the weights), "ones" (the window-sum operand of the
# "int" decomposition) or "odd" (its odd levels 2w + e).
_OPERANDS: IdentityCache[np.ndarray] = IdentityCache("xnor engine weight operands", maxsize=128)
_PACKED: IdentityCache[list] = IdentityCache("xnor engine packed weight planes", maxsize=128)


def _operand(layer: MVAULayer, role: str) -> np.ndarray:
    """The weight array playing ``role`` in the accumulator of ``layer`` (see ``_OPERANDS``)."""
    def make() -> np.ndarray:
        w = layer.weight
        if role == "w":
            return w
        if role == "ones":
            return np.ones_like(w)
        return 2 * w + _flips(layer).reshape((-1,) + (1,) * (w.ndim - 1))  # odd levels on weight_bits planes
    return _OPERANDS.get(layer, role, compute=make)


def _flips(layer: MVAULayer) -> np.ndarray:
    return _OPERANDS.get(layer, "flip", compute=lambda: np.where(layer.flip, -1, 1).astype(np.int64))


def _row_sums(layer: MVAULayer) -> np.ndarray:
    w = layer.weight
    return _OPERANDS.get(layer, "row_sums", compute=lambda: w.reshape(w.shape[0], -1).sum(axis=1))


def _pack_pm1(w_pm1: np.ndarray, conv: bool, groups: int):
    """±1 weights in the form the binary kernels read: conv weight panels, or GEMM panels of packed rows."""
    if conv:
        return B.pack_conv_weights(w_pm1, groups)
    return B.pack_gemm_weights(B.pack_bits(w_pm1 > 0))


def _binary_planes(layer: MVAULayer, role: str, conv: bool, groups: int) -> list:
    """``[(2^k, packed ±1 plane k)]`` with ``w = sum_k 2^k t_k`` for the weights playing ``role``: one plane for ±1
    weights, ``weight_bits`` planes for odd k-bit weights (:func:`hwsim.kernels.binary.weight_planes`). Packed on the
    first call for (layer, role), then reused by every run of the program."""
    def make() -> list:
        w = _operand(layer, role)
        if np.all(np.abs(w) == 1):
            return [(1, _pack_pm1(w, conv, groups))]
        return [(2**kk, _pack_pm1(2 * plane.astype(np.int64) - 1, conv, groups))
                for kk, plane in enumerate(B.weight_planes(w, layer.weight_bits))]
    return _PACKED.get(layer, role, conv, groups, compute=make)


def mvau_accumulator(layer: MVAULayer, x: np.ndarray, decomposed: bool = True) -> np.ndarray:
    """The integer accumulator (N, Cout[, OH, OW]) of one MVAU on its encoded input ``x``: ``sum w * v`` with ``v``
    the input's integers (±1 for bits, ``q - offset`` for codes). See :mod:`mapping.fpga` for the decomposition of
    ``weight_levels="int"`` weights and the offset correction."""
    enc = layer.in_enc
    args = _conv_args(layer)
    if enc.kind == Enc.CODES and enc.offset and args is not None and any(args[1]):
        (ph, pw) = args[1]  # pad with the code of value 0 (FMPadding's pad value), then convolve without padding
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=enc.offset)
        args = (args[0], (0, 0), args[2], args[3])
    if layer.weight_levels == "int" and decomposed and enc.kind != Enc.RAW:
        window_sum = _product(layer, x, "ones", args, False)  # shared by the PEs
        twice = _product(layer, x, "odd", args, True) - _channels(_flips(layer), window_sum.ndim) * window_sum
        if np.any(twice & 1):  # pragma: no cover - algebraic identity
            raise AssertionError("int-weight recombination is not even")
        acc = twice // 2
    else:
        acc = _product(layer, x, "w", args, decomposed)
    if enc.kind == Enc.CODES and enc.offset:  # codes q = v + offset: a per-channel constant (in the thresholds)
        acc = acc - enc.offset * _channels(_row_sums(layer), acc.ndim)
    return acc


def _binary_product(layer: MVAULayer, x: np.ndarray, role: str, args) -> np.ndarray:
    """``sum w * x`` for bits ``x`` (±1) by xnor-popcount on the weights' packed ±1 planes."""
    conv = args is not None
    planes = _binary_planes(layer, role, conv, args[3] if conv else 1)
    if not conv:
        a = B.pack_bits(x)
        k = x.shape[1]
    acc = None
    for scale, pk in planes:
        part = (B.binary_conv2d(x, pk, *args, pad_value=layer.pad_value) if conv else B.xnor_gemm(a, pk, k))
        part = part.astype(np.int64) * scale if scale != 1 else part.astype(np.int64)
        acc = part if acc is None else acc + part
    return acc


def _product(layer: MVAULayer, x: np.ndarray, role: str, args, decomposed: bool) -> np.ndarray:
    """``sum w * x`` on the encoded input (bits: ±1; codes: the unsigned codes; raw: integers), ``w`` the weights
    playing ``role`` (see ``_OPERANDS``)."""
    enc = layer.in_enc.kind
    conv = args is not None
    if enc == Enc.BINARY:  # ±1 weights: one xnor-popcount; odd k-bit weights: sum_k 2^k (±1 x ±1 plane k)
        planes = _binary_planes(layer, role, conv, args[3] if conv else 1)
        if len(planes) > 1 and not decomposed:
            return _native(2 * x.astype(np.int64) - 1, _operand(layer, role), args, pad=layer.pad_value)
        return _binary_product(layer, x, role, args)
    w = _operand(layer, role)
    if enc == Enc.CODES:
        if decomposed:
            return _codes_product(layer, x, role, args)
        if conv:
            return B.kbit_conv2d(x, layer.in_enc.bits, w, layer.weight_bits, *args, decomposed=False)
        return B.kbit_matmul_native(x, w)
    return _native(_raw_integers(layer, x), w, args, pad=layer.pad_value)  # raw integer image


def _codes_planes(layer: MVAULayer, role: str, groups: int) -> list:
    """Per group ``(planes, row sums)``: the GEMM panels of the weights' packed ±1 planes ``t_k`` (``w = sum_k 2^k
    t_k``, odd ``w``) and ``sum w`` per output row, made on the first call for (layer, role)."""
    def make() -> list:
        w = _operand(layer, role)
        wm = w.reshape(groups, w.shape[0] // groups, -1)
        return [B.pack_kbit_weights(wg, layer.weight_bits) for wg in wm]
    return _PACKED.get(layer, role, "codes", groups, compute=make)


def _codes_product(layer: MVAULayer, x: np.ndarray, role: str, args) -> np.ndarray:
    """``sum w * q`` for unsigned codes ``q`` of ``b`` bits and odd weights, by ``b * weight_bits`` xnor-popcount
    branches on the weights packed once (:func:`hwsim.kernels.binary.kbit_matmul_packed`; zero (code 0) padding as
    :func:`~hwsim.kernels.binary.kbit_conv2d`)."""
    xb = layer.in_enc.bits
    conv = args is not None
    groups = args[3] if conv else 1
    per_group = _codes_planes(layer, role, groups)
    if conv:
        cols, oh, ow = B.im2col(x.astype(np.int64, copy=False), layer.weight.shape[2:], args[0], args[1], args[2],
                                groups, 0)
    else:
        cols = x.astype(np.int64, copy=False)[None]
    out = [B.kbit_matmul_packed(cols[g], xb, planes, sums, cols.shape[2]) for g, (planes, sums) in enumerate(per_group)]
    acc = np.concatenate(out, axis=1) if len(out) > 1 else out[0]
    if not conv:
        return acc
    return np.ascontiguousarray(acc.reshape(x.shape[0], oh, ow, -1).transpose(0, 3, 1, 2))


def _native(xv: np.ndarray, w: np.ndarray, args, pad: float) -> np.ndarray:
    if args is None:
        return B.kbit_matmul_native(xv, w)
    stride, padding, dilation, groups = args
    n = xv.shape[0]
    cout = w.shape[0]
    cols, oh, ow = B.im2col(xv, w.shape[2:], stride, padding, dilation, groups, int(pad))
    og = cout // groups
    wm = w.reshape(groups, og, -1)
    out = np.empty((n * oh * ow, cout), dtype=np.int64)
    for g in range(groups):
        out[:, g * og:(g + 1) * og] = B.kbit_matmul_native(cols[g], wm[g])
    return np.ascontiguousarray(out.reshape(n, oh, ow, cout).transpose(0, 3, 1, 2))


def _float_output(layer: MVAULayer, acc: np.ndarray) -> np.ndarray:
    """The float32 ops of a layer without activation (``float_out``), replayed in graph order on the exact
    accumulator."""
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    y = acc.astype(np.float32)
    for op, arg in layer.float_out:
        if op == "scale":  # one weight scale, or one per output channel
            y = y * (np.float32(arg) if np.ndim(arg) == 0 else np.asarray(arg, np.float32).reshape(shape))
        elif op == "bias":
            y = y + arg.reshape(shape)
        elif op == "bn":
            mean, var, gamma, beta, eps = arg
            y = (y - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + np.float32(eps))
            if gamma is not None:
                y = y * gamma.reshape(shape)
            if beta is not None:
                y = y + beta.reshape(shape)
        elif op == "relu":
            y = np.maximum(y, np.float32(0))
        else:
            y = _arith(y, op, arg)
    return np.asarray(y, dtype=np.float32)


def _arith(y: np.ndarray, op: str, arg) -> np.ndarray:
    """``y`` mul / div / add / sub a Scalar value or a constant, or the constant minus / over ``y`` ("rsub",
    "rdiv"), as the functional executor computes them."""
    if op in ("rsub", "rdiv"):
        return K.binary(arg, y, op[1:])
    return K.binary(y, arg, op)


def _decode(enc, v: np.ndarray) -> np.ndarray:
    if enc is None:
        return v
    if enc.kind == Enc.BINARY:
        return ((2.0 * v.astype(np.float32) - 1.0) * np.float32(enc.scale)).astype(np.float32)
    if enc.kind == Enc.CODES:
        return ((v.astype(np.float32) - np.float32(enc.offset)) * np.float32(enc.scale)).astype(np.float32)
    return v


def _codes_dtype(enc) -> type:
    return np.uint8 if enc.n_levels <= 256 else np.uint16 if enc.n_levels <= 65536 else np.int64


def _acc_pool(layer: AccPoolLayer, v: np.ndarray) -> np.ndarray:
    """Window sums of the codes (bits: the count of +1s), exact in int64, right-shifted when a Trunc follows."""
    (kh, kw), (sh, sw) = layer.attrs.kernel, layer.attrs.stride
    n, c, h, w = v.shape
    oh, ow = layer.out_shape[1], layer.out_shape[2]
    x = v.astype(np.int64)
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            out += x[:, :, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
    if layer.shift:  # a Trunc: the output right shift, the accumulator preloaded with shift_add
        out += layer.shift_add
        dropped = out & ((1 << layer.shift) - 1)
        out >>= layer.shift
        if layer.rounding == "ROUND":  # half to even: the floored value minus its offset decides a tie
            half = 1 << (layer.shift - 1)
            out += (dropped > half) | ((dropped == half) & ((out - layer.out.offset - _clamp_lo(layer)) & 1 == 1))
    if layer.clamp is not None:  # a Trunc version 2: saturate to its bit width, codes counted from the lowest kept
        out = np.clip(out, *layer.clamp) - layer.clamp[0]
    return out.astype(_codes_dtype(layer.out))


def _clamp_lo(layer: AccPoolLayer) -> int:
    """How far a clamp moved the output offset (the shift's offset is ``out.offset + clamp[0]``)."""
    return layer.clamp[0] if layer.clamp is not None else 0


def _step(layer, ins: list[np.ndarray], enc_in, decomposed: bool, kept: dict | None):
    """One layer on its encoded inputs; returns (value, encoding of the value)."""
    v = ins[0]
    if isinstance(layer, InputLayer):
        return _input_layer(layer, v), layer.out
    if isinstance(layer, MVAULayer):
        if layer.in_enc.kind == Enc.RAW and enc_in is not None:
            v = _decode(enc_in, v)
        acc = mvau_accumulator(layer, v, decomposed)
        if kept is not None:
            kept[layer.name + ":acc"] = acc
        if layer.thresholds is None:
            return _float_output(layer, acc), None
        return B.threshold(acc, layer.thresholds), layer.out_enc
    if isinstance(layer, PoolLayer):
        a = layer.attrs
        return B.max_pool_codes(v, a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode), layer.enc
    if isinstance(layer, ReshapeLayer):
        return v.reshape((v.shape[0],) + layer.out_shape), enc_in
    if isinstance(layer, AddLayer):
        return (v.astype(np.int64) + ins[1]).astype(_codes_dtype(layer.out)), layer.out
    if isinstance(layer, ConcatLayer):
        return np.concatenate(ins, axis=1).astype(_codes_dtype(layer.out)), layer.out
    if isinstance(layer, ThresholdLayer):
        return B.threshold(v.astype(np.int64), layer.thresholds), layer.out
    if isinstance(layer, AccPoolLayer):
        return _acc_pool(layer, v), layer.out
    raise TypeError(f"unknown XNOR layer {type(layer).__name__}")  # pragma: no cover


def run_program(program: XnorProgram, x: np.ndarray, decomposed: bool = True, keep: bool = False):
    """Run ``program`` on float32 input ``x`` (N, *input_shape). Returns the float32 output (±1 for
    bits, ``q * scale`` for codes, ``z`` for a final layer without activation); with ``keep`` also a
    dict layer name -> encoded value (bits / codes / accumulators) for inspection. Layers read the
    layers named in their ``src`` (a value read twice is FINN's DuplicateStreams)."""
    vals: dict[str, tuple[np.ndarray, object]] = {"input": (np.ascontiguousarray(x, dtype=np.float32), None)}
    kept: dict = {}
    last = "input"
    for layer, srcs in zip(program.layers, program.sources()):
        ins = [vals[s][0] for s in srcs]
        vals[layer.name] = _step(layer, ins, vals[srcs[0]][1], decomposed, kept if keep else None)
        if keep:
            kept[layer.name] = vals[layer.name][0]
        last = layer.name
    v, enc = vals[program.output_layer or last]
    out = _decode(enc, v)
    return (out, kept) if keep else out
