"""fp32 transposed convolution (``F.conv_transpose2d`` semantics): one GEMM, then a col2im scatter-add.

This is how ncnn's Deconvolution computes it with ``use_sgemm_convolution`` (its default; Tencent/ncnn
src/layer/arm/deconvolution_arm.cpp, a4d2ea1: a Gemm layer of M = maxk·num_output, N = w·h, K = num_input, then a
col2im loop adding each row of the product into the output at stride steps), and Caffe's Deconvolution layer
(``col2im`` after a GEMM: the backward pass of a convolution). Per group g, for every sample:

``cols = W_g^T X_g``  (Cout/g·kh·kw × Cin/g) @ (Cin/g × H·W): one batched ``numpy.matmul`` (BLAS sgemm); a group of one
input channel (depthwise) is an outer product, a broadcast multiply.

col2im: the H×W plane of ``cols`` for kernel tap (ky, kx) adds into the rows ``iy·sh + ky·dh`` and columns
``ix·sw + kx·dw`` of a bordered output of ``(H−1)·sh + dh·(kh−1) + 1`` rows (and columns alike): one strided numpy
slice-add per tap. The output is that bordered map cropped by ``padding`` on both sides and extended by
``output_padding`` at the bottom / right (torch's output size ``(H−1)·sh − 2·ph + dh·(kh−1) + oph + 1``; rows past
the bordered map are reached by the bias alone), plus the bias.

Summation order differs from torch's (the GEMM's, then the taps in order): results agree to fp32 rounding.
"""
from __future__ import annotations

import numpy as np

from hwsim.kernels import _checks as chk

__all__ = ["conv_transpose2d", "conv_transpose2d_node", "col2im"]


def conv_transpose2d(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                     groups: int = 1) -> np.ndarray:
    """2-D transposed convolution, ``F.conv_transpose2d`` semantics.

    x: f32[N, C, H, W]; w: f32[C, O/groups, kh, kw] (torch's layout); b: f32[O] or None.
    Returns f32[N, O, OH, OW] with ``OH = (H − 1)·sh − 2·ph + dh·(kh − 1) + oph + 1`` (module docstring).
    """
    x = chk.nchw("x", x)
    w = chk.f32("w", w, 4)
    s, p, d = chk.pair("stride", stride, 1), chk.pair("padding", padding, 0), chk.pair("dilation", dilation, 1)
    op = chk.pair("output_padding", output_padding, 0)
    groups = int(groups)
    n, c, h, wd = x.shape
    if groups < 1 or c % groups or w.shape[0] != c:
        raise ValueError(f"conv_transpose2d: weight {w.shape} (Cin first) and groups {groups} do not fit an input of "
                         f"{c} channels")
    cin_g, cout_g, kh, kw = c // groups, w.shape[1], w.shape[2], w.shape[3]
    cout = cout_g * groups
    if b is not None:
        b = chk.f32("b", b, 1)
        if b.shape[0] != cout:
            raise ValueError(f"bias has {b.shape[0]} entries, expected {cout} (output channels)")
    full = ((h - 1) * s[0] + d[0] * (kh - 1) + 1, (wd - 1) * s[1] + d[1] * (kw - 1) + 1)  # the bordered output
    out = (full[0] - 2 * p[0] + op[0], full[1] - 2 * p[1] + op[1])
    if min(out) < 1:
        raise ValueError(f"conv_transpose2d: output size {out} < 1 (input {h}x{wd}, padding {p})")
    # cols[n, g, co·kh·kw, H·W] = Σ_ci w[g·cin_g + ci, co, ky, kx] · x[n, g·cin_g + ci, iy, ix]
    xg = x.reshape(n, groups, cin_g, h * wd)
    wg = w.reshape(groups, cin_g, cout_g * kh * kw)
    if cin_g == 1:  # an outer product per group: a broadcast multiply instead of K=1 GEMMs
        cols = wg[None, :, 0, :, None] * xg[:, :, 0, None, :]
    else:
        cols = np.matmul(wg.transpose(0, 2, 1)[None], xg)
    y = col2im(cols.reshape(n, cout, kh, kw, h, wd), s, p, d, out)
    if b is not None:
        y = y + b[None, :, None, None]
    return np.ascontiguousarray(y, dtype=np.float32)


def col2im(cols: np.ndarray, stride, padding, dilation, out_hw) -> np.ndarray:
    """Scatter-add ``cols`` [N, Cout, kh, kw, H, W] into the [N, Cout, OH, OW] (``out_hw``) output, in ``cols``'
    dtype (integer-valued float64 sums stay exact): tap (ky, kx) of input pixel (iy, ix) lands on row
    ``iy·sh + ky·dh`` and column ``ix·sw + kx·dw`` of the bordered map, which is then cropped by the padding (rows
    past it, from ``output_padding``, stay 0)."""
    n, cout, kh, kw, h, w = cols.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    full = ((h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1)
    buf = np.zeros((n, cout, max(full[0], ph + out_hw[0]), max(full[1], pw + out_hw[1])), cols.dtype)
    for ky in range(kh):
        for kx in range(kw):
            buf[:, :, ky * dh:ky * dh + (h - 1) * sh + 1:sh, kx * dw:kx * dw + (w - 1) * sw + 1:sw] += cols[:, :, ky, kx]
    return buf[:, :, ph:ph + out_hw[0], pw:pw + out_hw[1]]


def conv_transpose2d_node(graph, node, xs) -> np.ndarray:
    """The kernel of ``Op.CONV_TRANSPOSE2D`` in :func:`hwsim.functional.run`'s signature ``fn(graph, node, inputs)``
    (attributes: :class:`mapping._conv_transpose.ConvTranspose2d`)."""
    a = node.attrs
    b = graph.param(node, "bias") if "bias" in node.params else None
    return conv_transpose2d(xs[0], graph.param(node, "weight"), b, a.stride, a.padding, a.output_padding, a.dilation,
                            a.groups)
