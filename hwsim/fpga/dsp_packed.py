"""Cycles of FINN's DSP-packed first convolution (``ConvDoublePacked_Batch``, finn-experimental), the stem of
finn-examples' ResNet-50 W1A2 on the U250 in its 2021 build.

The layer is ``ConvolutionalLayerMMV_Same_Batch_kernel_stride_dsp_packed`` (finn-experimental
``hlslib_extensions/double_packed_conv.hpp``): an 8-bit image, 8-bit weights, two 8x8 products per DSP48, and
``MMV`` output pixels computed per pass (a multi-vector MVAU). It is a dataflow of stages with II = 1 each, so its
cycles per frame are those of its slowest stage:

* ``SameResize`` (padding to the 'same' grid): ``D^2`` cycles, one pixel of all channels per cycle, with
  ``D = K + S (OFM - 1)`` and ``OFM = 1 + (IFM - S) / S + ((IFM - S) % S > 0)``.
* ``ConvolutionMMVInputGenerator_kernel_stride``: ``D K + OFM max(OFM K^2 / MMV, D S)`` cycles (its ``baseIter``).
* ``MatrixMultiVector_Precision_Batch_dsp_packed``: ``(OFM^2 / MMV) (MW / SIMD) (MH / PE)`` cycles, MW = K^2 C,
  MH = OFM channels (the MVAU loop with one input word per MMV pixels).
* the output width converter and serializer: ``OFM^2`` cycles (one output pixel per cycle).
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import MappingError

__all__ = ["DoublePackedConv", "double_packed_conv_cycles"]


@dataclass(frozen=True, slots=True)
class DoublePackedConv:
    """Parameters of a ConvDoublePacked_Batch node: kernel K, stride S, input channels C and width IFM (square),
    output channels, SIMD, PE, MMV (output pixels per pass)."""

    kernel: int
    stride: int
    in_channels: int
    ifm_dim: int
    out_channels: int
    simd: int
    pe: int
    mmv: int

    @property
    def ofm_dim(self) -> int:
        s = self.stride
        return 1 + (self.ifm_dim - s) // s + int((self.ifm_dim - s) % s > 0)


def double_packed_conv_cycles(p: DoublePackedConv) -> dict[str, int]:
    """Cycles per frame of each stage of the layer (see the module docstring) and ``"layer"``, their maximum.
    Refuses a folding the HLS code rejects (``CASSERT``: SIMD | MW, PE | MH, an even MMV dividing OFM^2)."""
    k, s, c = p.kernel, p.stride, p.in_channels
    ofm = p.ofm_dim
    mw, mh = k * k * c, p.out_channels
    if min(k, s, c, p.ifm_dim, mh, p.simd, p.pe, p.mmv) <= 0:
        raise MappingError(f"ConvDoublePacked: every parameter must be > 0, got {p}")
    if mw % p.simd or mh % p.pe or p.mmv % 2 or (ofm * ofm) % p.mmv:
        raise MappingError(f"ConvDoublePacked: SIMD={p.simd} must divide MW={mw}, PE={p.pe} MH={mh}, and MMV="
                           f"{p.mmv} must be even and divide OFM^2={ofm * ofm}")
    d = k + s * (ofm - 1)
    stages = {
        "same_resize": d * d,
        "input_generator": d * k + ofm * max(ofm * k * k // p.mmv, d * s),
        "mvau": (ofm * ofm // p.mmv) * (mw // p.simd) * (mh // p.pe),
        "serializer": ofm * ofm,
    }
    return {**stages, "layer": max(stages.values())}
