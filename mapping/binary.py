"""Tracer support for the binary and k-bit layers of ``nets.layers``.

``register_layers`` (called by ``nets/layers.py`` when it is imported, so this module never
imports ``nets``) maps each layer onto an IR op with ``meta`` annotations:

* BinarySign -> ``Op.SIGN`` (sign(0) = +1).
* QuantAct(bits, scale) -> ``Op.QUANTIZE`` with ``Quantize(bits, scale, signed=False)``.
* BinaryConv2d / BinaryLinear -> ``Op.CONV2D`` / ``Op.LINEAR`` whose ``weight`` parameter holds the
  ±1 weights the forward pass uses, ``meta = {"weight_bits": 1, "weight_scale": 1.0,
  "weight_levels": "odd", "pad_value": 0|+1|-1}``.
* QuantConv2d / QuantLinear(bits) -> same ops, ``weight`` = the quantized float weights
  ``w_int * s`` (``w_int`` odd, |w_int| <= 2^bits - 1), ``meta weight_bits=bits, weight_scale=s``.

The input encoding of a layer (binary ±1, k-bit codes, raw image) is not a property of the layer
but of its producer; ``mapping.fpga`` derives it from the graph.
"""
from __future__ import annotations

from typing import Any

from mapping.graph import Conv2d, Linear, Op, Quantize
from mapping.trace import ModuleConversion, register_module

__all__ = ["register_layers"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _weight_meta(m: Any, binary: bool) -> tuple[tuple[str, Any], ...]:
    bits = 1 if binary else int(m.bits)
    scale = 1.0 if binary else float(m.weight_scale)
    meta = [("weight_bits", bits), ("weight_scale", scale), ("weight_levels", "odd")]
    if hasattr(m, "pad_value"):
        meta.append(("pad_value", float(m.pad_value)))
    return tuple(meta)


def _conv_converter(binary: bool):
    def convert(m, ins, out) -> ModuleConversion:
        attrs = Conv2d(m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride), _pair(m.padding),
                       _pair(m.dilation), m.groups, m.bias is not None)
        wattr = "binary_weight" if binary else "quant_weight"
        params = (("weight", wattr),) + ((("bias", "bias"),) if m.bias is not None else ())
        return ModuleConversion(Op.CONV2D, attrs, params, _weight_meta(m, binary))

    return convert


def _linear_converter(binary: bool):
    def convert(m, ins, out) -> ModuleConversion:
        wattr = "binary_weight" if binary else "quant_weight"
        params = (("weight", wattr),) + ((("bias", "bias"),) if m.bias is not None else ())
        return ModuleConversion(Op.LINEAR, Linear(m.in_features, m.out_features, m.bias is not None), params,
                                _weight_meta(m, binary))

    return convert


def _sign(m, ins, out) -> ModuleConversion:
    return ModuleConversion(Op.SIGN)


def _quant_act(m, ins, out) -> ModuleConversion:
    return ModuleConversion(Op.QUANTIZE, Quantize(int(m.bits), float(m.scale), False))


def register_layers(*, BinarySign: type, BinaryConv2d: type, BinaryLinear: type, QuantConv2d: type,
                    QuantLinear: type, QuantAct: type) -> None:
    """Register the converters of the six layer classes with :func:`mapping.trace.register_module`."""
    register_module(BinarySign, _sign)
    register_module(QuantAct, _quant_act)
    register_module(BinaryConv2d, _conv_converter(True))
    register_module(BinaryLinear, _linear_converter(True))
    register_module(QuantConv2d, _conv_converter(False))
    register_module(QuantLinear, _linear_converter(False))
