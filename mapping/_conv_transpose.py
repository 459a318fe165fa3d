"""The transposed convolution of the IR (``Op.CONV_TRANSPOSE2D``): its attributes, re-exported by
:mod:`mapping.graph` (which is at its size limit), and the rule every importer builds them by.

Semantics are torch's ``F.conv_transpose2d`` (ONNX ConvTranspose is the same operation): each input pixel ``(iy, ix)``
of input channel ``ci`` in group ``g`` adds ``x · weight[ci, co, ky, kx]`` to output pixel
``(iy·stride - padding + ky·dilation, ix·stride - padding + kx·dilation)`` of output channel ``g·Cout/groups + co``;
``output_padding`` extends the output on the bottom / right (rows that only the bias reaches when it exceeds the
padding). Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import UnsupportedOpError

__all__ = ["ConvTranspose2d", "conv_transpose_attrs", "conv_transpose_size"]


@dataclass(frozen=True, slots=True)
class ConvTranspose2d:
    """Attributes of ``Op.CONV_TRANSPOSE2D``. Params: ``weight`` f32[Cin, Cout/groups, kh, kw] (torch's layout, not
    a Conv2d's) and, when ``bias``, ``bias`` f32[Cout]. Output size per spatial dim: :func:`conv_transpose_size`."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Output (H, W) for an input of spatial size ``hw``."""
        return tuple(conv_transpose_size(hw[i], self.kernel[i], self.stride[i], self.padding[i],
                                         self.output_padding[i], self.dilation[i]) for i in range(2))


def conv_transpose_size(size: int, k: int, stride: int, padding: int, output_padding: int, dilation: int) -> int:
    """``(size - 1)·stride - 2·padding + dilation·(k - 1) + output_padding + 1`` (torch's ConvTranspose2d docs)."""
    return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise UnsupportedOpError(f"{len(v)} spatial values {tuple(v)} (a 2-d transposed convolution takes 2)")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_transpose_attrs(weight_shape, stride, padding, output_padding, dilation, groups, bias: bool,
                         in_channels: int, what: str) -> ConvTranspose2d:
    """The :class:`ConvTranspose2d` of a weight of ``weight_shape`` (Cin, Cout/groups, kh, kw) and the given
    hyper-parameters (ints or pairs), checked as torch checks them (strides and dilations >= 1, paddings >= 0,
    ``output_padding`` below the stride or the dilation, Cin divisible by the groups) against an input of
    ``in_channels`` channels; a one-line :class:`UnsupportedOpError` starting with ``what`` otherwise."""
    try:
        if len(weight_shape) != 4:
            raise UnsupportedOpError(f"a weight of rank {len(weight_shape)} (only 2-d transposed convolutions)")
        s, p, op, d, g = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation), int(groups)
        cin, cout_g, kh, kw = (int(v) for v in weight_shape)
        if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(op) < 0 or g < 1 or min(kh, kw) < 1:
            raise UnsupportedOpError(f"stride {s}, dilation {d}, padding {p}, output_padding {op}, groups {g}")
        if any(op[i] >= max(s[i], d[i]) for i in range(2)):
            raise UnsupportedOpError(f"output_padding {op} must be smaller than the stride {s} or the dilation {d}")
        if cin != in_channels or cin % g:
            raise UnsupportedOpError(f"a weight of {cin} input channels in {g} groups for an input of "
                                     f"{in_channels} channels")
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{what}: {e}") from None
    return ConvTranspose2d(cin, cout_g * g, (kh, kw), s, p, op, d, g, bool(bias))
