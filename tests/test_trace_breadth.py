"""The torch tracer's breadth: every op and form the IR has, subclass safety, verified import, the torch.export
fallback, refusals of what hwsim cannot map, and a few real torchvision/timm models.

Every model is traced with verification on, then run by ``hwsim.functional.run`` on a fresh input (another seed
than the tracer's sample) and compared with torch.
"""
from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwsim
import mapping
from hwsim.errors import ConversionError, HwsimError, UnsupportedOpError
from hwsim.functional import run
from mapping.graph import LeakyRelu, Op

mtrace = importlib.import_module("mapping.trace")  # the module (``mapping.trace`` is also the function)
RTOL = 1e-5


def _outs(y) -> list[np.ndarray]:
    ys = y if isinstance(y, (tuple, list)) else (y,)
    return [t.detach().numpy() for t in ys]


def _close(got, want, rtol=RTOL) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g).reshape(w.shape)
        scale = max(float(np.max(np.abs(w))), 1e-6)
        err = float(np.max(np.abs(g.astype(np.float64) - w))) if w.size else 0.0
        assert err <= rtol * scale, f"max |diff| {err:.3g} > {rtol} * {scale:.3g}"


def check(model: nn.Module, shape, ops=(), *, batch_fixed: bool | None = None, seed: int = 1):
    """Trace with verification, assert ``ops`` appear, and compare ``run`` with torch on a fresh input."""
    model.eval()
    g = mapping.trace(model, shape)
    present = {n.op for n in g}
    missing = [op.value for op in ops if op not in present]
    assert not missing, f"ops {missing} not in the graph:\n{g.summary()}"
    if batch_fixed is not None:
        assert g.batch_fixed is batch_fixed
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = _outs(model(torch.from_numpy(x.copy())))
    _close(run(g, x), want)
    return g


class Fn(nn.Module):
    """A module whose forward is ``fn(self, x)`` (with optional submodules and parameters)."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for k, v in children.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


def _p(*shape, seed=0):
    return nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


# ----------------------------------------------------------------------------------------------------- breadth
S4 = (2, 6, 9, 8)  # batch 2: the batch dimension is kept apart from the others
S3 = (2, 5, 8)  # (N, L, E) tokens

CASES = {
    # pools, functional forms
    "max_pool2d": (lambda s, x: F.max_pool2d(x, 3, 2, 1), S4, [Op.MAXPOOL]),
    "max_pool2d_ceil_dilated": (lambda s, x: F.max_pool2d(x, 2, stride=2, ceil_mode=True, dilation=1), S4, [Op.MAXPOOL]),
    "avg_pool2d": (lambda s, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), S4, [Op.AVGPOOL]),
    "avg_pool2d_kernel_only": (lambda s, x: F.avg_pool2d(x, 2), S4, [Op.AVGPOOL]),
    "adaptive_avg_pool2d": (lambda s, x: F.adaptive_avg_pool2d(x, (1, 1)).flatten(1), S4, [Op.ADAPTIVE_AVGPOOL]),
    "adaptive_avg_pool2d_3x2": (lambda s, x: F.adaptive_avg_pool2d(x, (3, 2)), S4, [Op.ADAPTIVE_AVGPOOL]),
    "adaptive_max_pool2d": (lambda s, x: F.adaptive_max_pool2d(x, 1), S4, [Op.REDUCE_MAX]),
    # reductions over spatial dims
    "mean_hw": (lambda s, x: x.mean((2, 3)), S4, [Op.REDUCE_MEAN]),
    "mean_hw_keepdim": (lambda s, x: x.mean((2, 3), keepdim=True) * x, S4, [Op.REDUCE_MEAN, Op.MUL]),
    "torch_mean_list": (lambda s, x: torch.mean(x, dim=[-1, -2]), S4, [Op.REDUCE_MEAN]),
    "sum_last": (lambda s, x: x.sum(-1), S4, [Op.REDUCE_SUM]),
    "sum_keepdim": (lambda s, x: torch.sum(x, dim=1, keepdim=True), S4, [Op.REDUCE_SUM]),
    "amax": (lambda s, x: x.amax(dim=(2, 3)), S4, [Op.REDUCE_MAX]),
    "max_dim_values": (lambda s, x: x.max(dim=1)[0] + x.max(1, keepdim=True).values.squeeze(1), S4,
                       [Op.REDUCE_MAX]),
    # padding
    "pad": (lambda s, x: F.pad(x, (1, 2, 0, 1)), S4, [Op.PAD]),
    "pad_value": (lambda s, x: F.pad(x, [1, 1, 2, 2], mode="constant", value=0.5), S4, [Op.PAD]),
    "pad_channels": (lambda s, x: F.pad(x, (0, 0, 0, 0, 1, 1)), S4, [Op.PAD]),
    # reshapes and permutes
    "flatten": (lambda s, x: torch.flatten(x, 1), S4, [Op.RESHAPE]),
    "flatten_method_2": (lambda s, x: x.flatten(2), S4, [Op.RESHAPE]),
    "view_size": (lambda s, x: x.view(x.size(0), -1), S4, [Op.RESHAPE]),
    "reshape_shape": (lambda s, x: x.reshape(x.shape[0], 3, 2, -1), S4, [Op.RESHAPE]),
    "unsqueeze_squeeze": (lambda s, x: x.unsqueeze(2).squeeze(2).unsqueeze(-1), S4, [Op.RESHAPE]),
    "permute": (lambda s, x: x.permute(0, 2, 3, 1), S4, [Op.PERMUTE]),
    "torch_permute": (lambda s, x: torch.permute(x, (0, 3, 1, 2)), S4, [Op.PERMUTE]),
    "transpose_contiguous": (lambda s, x: x.transpose(1, 3).contiguous().view(x.shape[0], -1), S4,
                             [Op.PERMUTE, Op.RESHAPE]),
    "torch_transpose": (lambda s, x: torch.transpose(x, -1, -2), S4, [Op.PERMUTE]),
    # splits and indexing
    "chunk": (lambda s, x: torch.cat(x.chunk(3, dim=1)[::-1], 1), S4, [Op.SLICE, Op.CONCAT]),
    "torch_chunk_uneven": (lambda s, x: torch.chunk(x, 2, dim=2)[1] * torch.chunk(x, 4, dim=3)[-1][:, :, :4, :1], S4,
                           [Op.SLICE]),
    "split_sizes": (lambda s, x: torch.split(x, [2, 4], dim=1)[1] * 2, S4, [Op.SLICE]),
    "split_int": (lambda s, x: sum(x.split(3, dim=3)[:2]), S4, [Op.SLICE, Op.ADD]),
    "cat_whole_tuple": (lambda s, x: torch.cat(torch.chunk(x, 2, 3), 1), S4, [Op.SLICE, Op.CONCAT]),
    "tuple_output": (lambda s, x: x.split(4, dim=1), S4, [Op.SLICE]),
    "unbind": (lambda s, x: torch.stack(x.unbind(1)[::2], 1), S4, [Op.SLICE, Op.CONCAT]),
    "getitem_steps": (lambda s, x: x[:, 1:5:2, ::2, 1:-1], S4, [Op.SLICE]),
    "getitem_int": (lambda s, x: x[:, 0] * x[:, -1, 2:3] + x[:, 3, -1, 2][:, None, None], S4, [Op.SLICE]),
    "getitem_none": (lambda s, x: x[:, None, 2:4], S4, [Op.SLICE, Op.RESHAPE]),
    "getitem_ellipsis_step": (lambda s, x: x[..., ::3], S4, [Op.SLICE]),
    "narrow": (lambda s, x: x.narrow(2, 1, 4) + x.narrow(-2, -5, 4), S4, [Op.SLICE]),
    # cat and stack
    "cat": (lambda s, x: torch.cat([x, x * 2, x[:, :1]], dim=1), S4, [Op.CONCAT]),
    "cat_negative_dim": (lambda s, x: torch.cat((x, -x), -1), S4, [Op.CONCAT]),
    "stack": (lambda s, x: torch.stack([x, x + 1], dim=2), S4, [Op.CONCAT]),
    "expand_cat": (lambda s, x: torch.cat([x[:, :1].expand(-1, 3, -1, -1), x], 1), S4, [Op.CONCAT]),
    "expand_new_dim": (lambda s, x: x.mean(1).unsqueeze(1).expand(2, 4, 9, 8).sigmoid(), S4, [Op.CONCAT]),
    "repeat": (lambda s, x: x.repeat(1, 2, 1, 3), S4, [Op.CONCAT]),
    "pixel_shuffle": (lambda s, x: F.pixel_shuffle(x[:, :4], 2) + F.pixel_unshuffle(x[:, :1, :8], 2)[:, :, :, :2]
                      .repeat(1, 1, 4, 4)[:, :1, :8, :8].mean(1, keepdim=True)[..., :1, :1], S4,
                      [Op.RESHAPE, Op.PERMUTE]),
    "stack_last": (lambda s, x: torch.stack([x, x * 3], -1).flatten(3), S4, [Op.CONCAT]),
    # arithmetic: tensor-tensor with broadcasting, tensor-scalar both orders
    "add_broadcast": (lambda s, x: x + x.mean((2, 3), keepdim=True), S4, [Op.ADD]),
    "sub_broadcast": (lambda s, x: torch.sub(x, x[:, :, :1]), S4, [Op.SUB]),
    "mul_broadcast": (lambda s, x: torch.mul(x, x[:, :1]), S4, [Op.MUL]),
    "div_broadcast": (lambda s, x: x / (x[..., :1].abs() + 1), S4, [Op.DIV]),
    "div_tensor": (lambda s, x: torch.div(x, torch.sigmoid(x) + 0.5), S4, [Op.DIV]),
    "scalar_right": (lambda s, x: torch.add(x, 1.5) - 2 * 1.0 + x * 3 / 4, S4, [Op.ADD, Op.SUB, Op.MUL, Op.DIV]),
    "scalar_left": (lambda s, x: 1.5 + x, S4, [Op.ADD]),
    "rsub": (lambda s, x: 2.0 - x, S4, [Op.SUB]),
    "rmul": (lambda s, x: 3 * x, S4, [Op.MUL]),
    "rdiv": (lambda s, x: 1.0 / (x.abs() + 1), S4, [Op.DIV]),
    "add_alpha_scalar": (lambda s, x: torch.add(x, 2.0, alpha=3), S4, [Op.ADD]),
    "inplace": (lambda s, x: (x * 1).add_(1).mul_(2).relu_(), S4, [Op.ADD, Op.MUL, Op.RELU]),
    "add_param": (lambda s, x: x + s.w, S4, [Op.ADD, Op.CONSTANT], {"w": _p(1, 6, 1, 1)}),
    "mul_buffer_per_sample": (lambda s, x: x * s.w, S4, [Op.MUL], {"w": _p(9, 8)}),
    "pow_sqrt_rsqrt": (lambda s, x: (x ** 2 + 1).sqrt() + torch.rsqrt(x * x + 1) + x.pow(3), S4,
                       [Op.POW, Op.SQRT, Op.RSQRT]),
    "exp_log_abs_neg": (lambda s, x: torch.exp(-x.abs()) + torch.log(x.abs() + 1) + torch.erf(x), S4,
                        [Op.EXP, Op.LOG, Op.ABS, Op.NEG, Op.ERF]),
    "fake_quant_round_floor_ceil": (lambda s, x: torch.round(x / 0.1).clamp(-8, 7) * 0.1 + x.floor() + torch.ceil(x)
                                    + x + (torch.round(x) - x).detach(), S4,
                                    [Op.DIV, Op.ROUND, Op.CLAMP, Op.MUL, Op.FLOOR, Op.CEIL]),
    # clamps
    "clamp": (lambda s, x: x.clamp(-0.5, 0.7), S4, [Op.CLAMP]),
    "clamp_min_kw": (lambda s, x: torch.clamp(x, min=0.1), S4, [Op.CLAMP]),
    "clamp_max": (lambda s, x: x.clamp_max(0.2) + x.clamp_min(-0.2) + torch.clip(x, -1, 1), S4, [Op.CLAMP]),
    "hardtanh": (lambda s, x: F.hardtanh(x, -2.0, 0.5), S4, [Op.CLAMP]),
    "hardtanh_module": (lambda s, x: s.m(x), S4, [Op.CLAMP], {"m": nn.Hardtanh(-1.5, 1.5)}),
    "relu6": (lambda s, x: F.relu6(x * 4), S4, [Op.RELU6]),
    "relu6_as_hardtanh": (lambda s, x: F.hardtanh(x * 4, 0.0, 6.0), S4, [Op.RELU6]),
    # activations: functional and method forms
    "f_relu": (lambda s, x: F.relu(x) + x.relu() + torch.relu(x), S4, [Op.RELU]),
    "f_leaky_relu": (lambda s, x: F.leaky_relu(x, 0.3), S4, [Op.LEAKY_RELU]),
    "f_prelu": (lambda s, x: F.prelu(x, s.w), S4, [Op.PRELU], {"w": nn.Parameter(torch.linspace(0.1, 0.6, 6))}),
    "f_gelu": (lambda s, x: F.gelu(x) + F.gelu(x, approximate="tanh"), S4, [Op.GELU]),
    "f_silu_mish": (lambda s, x: F.silu(x) + F.mish(x), S4, [Op.SILU, Op.MISH]),
    "f_softplus": (lambda s, x: F.softplus(x, beta=2.0, threshold=3.0), S4, [Op.SOFTPLUS]),
    "f_tanh_sigmoid": (lambda s, x: torch.tanh(x) + x.sigmoid() + F.sigmoid(x) + x.tanh(), S4,
                       [Op.TANH, Op.SIGMOID]),
    "f_hard": (lambda s, x: F.hardswish(x * 3) + F.hardsigmoid(x * 3), S4, [Op.HARDSWISH, Op.HARDSIGMOID]),
    "f_elu": (lambda s, x: F.elu(x, 0.7), S4, [Op.ELU]),
    # normalisation
    "layer_norm_last": (lambda s, x: s.ln(x), S3, [Op.LAYERNORM], {"ln": nn.LayerNorm(8)}),
    "layer_norm_two": (lambda s, x: s.ln(x), S3, [Op.LAYERNORM], {"ln": nn.LayerNorm((5, 8))}),
    "layer_norm_functional": (lambda s, x: F.layer_norm(x, (8,), s.w, s.b, 1e-3), S3, [Op.LAYERNORM],
                              {"w": _p(8), "b": _p(8, seed=1)}),
    "layer_norm_no_affine": (lambda s, x: s.ln(x), S4, [Op.LAYERNORM], {"ln": nn.LayerNorm([9, 8], elementwise_affine=False)}),
    "layer_norm_channels_last": (lambda s, x: s.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), S4,
                                 [Op.LAYERNORM, Op.PERMUTE], {"ln": nn.LayerNorm(6)}),
    "group_norm": (lambda s, x: s.gn(x), S4, [Op.GROUPNORM], {"gn": nn.GroupNorm(3, 6)}),
    "group_norm_functional": (lambda s, x: F.group_norm(x, 2, s.w, s.b), S4, [Op.GROUPNORM],
                              {"w": _p(6), "b": _p(6, seed=1)}),
    "batch_norm_functional": (lambda s, x: F.batch_norm(x, s.bn.running_mean, s.bn.running_var, s.bn.weight,
                                                        s.bn.bias, False), S4, [Op.BATCHNORM],
                              {"bn": nn.BatchNorm2d(6)}),
    "softmax": (lambda s, x: F.softmax(x, dim=-1) + x.softmax(1), S4, [Op.SOFTMAX]),
    "log_softmax": (lambda s, x: F.log_softmax(x, 2) + torch.log_softmax(x, dim=1), S4, [Op.SOFTMAX]),
    "softmax_modules": (lambda s, x: s.a(x) + s.b(x), S4, [Op.SOFTMAX], {"a": nn.Softmax(dim=1),
                                                                        "b": nn.LogSoftmax(dim=-1)}),
    # products of two activations
    "matmul_at": (lambda s, x: x @ x.transpose(1, 2), S3, [Op.MATMUL]),
    "torch_matmul_4d": (lambda s, x: torch.matmul(x, x.transpose(-1, -2)), S4, [Op.MATMUL]),
    "bmm": (lambda s, x: torch.bmm(x.transpose(1, 2), x), S3, [Op.MATMUL]),
    "einsum": (lambda s, x: torch.einsum("bld,bmd->blm", x, x * 2), S3, [Op.MATMUL]),
    "einsum_maxvit": (lambda s, x: torch.einsum("B G I D, B G J D -> B G I J", x, x + 1), S4, [Op.MATMUL]),
    "einsum_out_perm": (lambda s, x: torch.einsum("bcij,bcik->bkjc", x, x.sigmoid()), S4, [Op.MATMUL, Op.PERMUTE]),
    "einsum_outer": (lambda s, x: torch.einsum("bi,bj->bij", x.mean((2, 3)), x.mean((1, 2))), S4, [Op.MATMUL]),
    "einsum_weight": (lambda s, x: torch.einsum("bld,de->ble", x, s.w) + torch.einsum("bld,ed->ble", x, s.w.t()), S3,
                      [Op.LINEAR], {"w": _p(8, 4)}),
    "einsum_weight_permuted": (lambda s, x: torch.einsum("bld,de->bel", x, s.w), S3, [Op.MATMUL, Op.CONSTANT],
                               {"w": _p(8, 4)}),
    "matmul_weight": (lambda s, x: x @ s.w, S3, [Op.LINEAR], {"w": _p(8, 3)}),
    "linear_functional": (lambda s, x: F.linear(x, s.w, s.b), S3, [Op.LINEAR], {"w": _p(3, 8), "b": _p(3)}),
    "conv_functional": (lambda s, x: F.conv2d(x, s.w, None, 2, 1, 1, 2), S4, [Op.CONV2D], {"w": _p(4, 3, 3, 3)}),
    "interpolate": (lambda s, x: F.interpolate(x, scale_factor=2, mode="nearest")
                    + F.interpolate(x, size=(18, 16), mode="bilinear", align_corners=True), S4, [Op.UPSAMPLE]),
    # attention
    "sdpa": (lambda s, x: F.scaled_dot_product_attention(x, x * 2, x + 1), S4, [Op.ATTENTION]),
    "sdpa_causal": (lambda s, x: F.scaled_dot_product_attention(x, x * 0.5, x, is_causal=True), S4, [Op.ATTENTION]),
    "sdpa_mask_scale": (lambda s, x: F.scaled_dot_product_attention(x, x, x, attn_mask=s.bias, scale=0.3), S4,
                        [Op.ATTENTION], {"bias": _p(9, 9)}),
    "sdpa_keywords": (lambda s, x: F.scaled_dot_product_attention(query=x, key=x * 0.5, value=-x), S4,
                      [Op.ATTENTION]),
    "sdpa_bool_mask": (lambda s, x: F.scaled_dot_product_attention(x, x, x, attn_mask=s.keep), S4, [Op.ATTENTION],
                       {"keep": nn.Buffer(torch.ones(9, 9, dtype=torch.bool).tril())}),
    "sdpa_mask_per_head": (lambda s, x: F.scaled_dot_product_attention(x, x, x, s.bias), S4, [Op.ATTENTION],
                           {"bias": _p(6, 9, 9)}),
    # eval-mode identities
    "identities": (lambda s, x: s.seq(x), S4, [Op.RELU], {"seq": nn.Sequential(
        nn.Dropout(0.5), nn.Dropout2d(0.3), nn.AlphaDropout(0.1), nn.Identity(), nn.ReLU())}),
    "f_dropout": (lambda s, x: F.dropout(x, 0.5, training=s.training) + F.dropout2d(x, 0.2, s.training), S4,
                  [Op.ADD]),
    # torch.roll, F.normalize
    "roll": (lambda s, x: torch.roll(x, shifts=(2, -1), dims=(2, 3)), S4, [Op.SLICE, Op.CONCAT]),
    "vector_norm": (lambda s, x: x / x.norm(dim=-1, keepdim=True) + torch.linalg.vector_norm(x, dim=(2, 3))[..., None, None],
                    S4, [Op.SQRT, Op.REDUCE_SUM]),
    "upsample_scale_module": (lambda s, x: s.up(x) + s.up2(x), S4, [Op.UPSAMPLE],
                              {"up": nn.Upsample(scale_factor=2, mode="bilinear"),
                               "up2": nn.Upsample(scale_factor=(2, 2))}),
    "interpolate_recompute": (lambda s, x: F.interpolate(x, scale_factor=1.5, mode="bilinear",
                                                         recompute_scale_factor=True), S4, [Op.UPSAMPLE]),
    "roll_single": (lambda s, x: x.roll(3, 1), S4, [Op.CONCAT]),
    "normalize": (lambda s, x: F.normalize(x, dim=1) + F.normalize(x, p=2.0, dim=-1), S4, [Op.DIV]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_op_forms(case):
    fn, shape, ops, *kids = CASES[case]
    check(Fn(fn, **(kids[0] if kids else {})), shape, ops)


@pytest.mark.parametrize("case", list(CASES))
def test_op_forms_through_torch_export(case, monkeypatch):
    """The same forms as torch.export writes them (ATen ops), as the fallback sees them."""
    def no_fx(model):
        raise RuntimeError("fx disabled for this test")

    monkeypatch.setattr(mtrace, "_fx_module", no_fx)
    fn, shape, ops, *kids = CASES[case]
    check(Fn(fn, **(kids[0] if kids else {})), shape, ops)


@pytest.mark.parametrize("act,op", [
    (nn.ReLU(), Op.RELU), (nn.ReLU(inplace=True), Op.RELU), (nn.LeakyReLU(0.2), Op.LEAKY_RELU),
    (nn.PReLU(), Op.PRELU), (nn.PReLU(6, 0.3), Op.PRELU), (nn.GELU(), Op.GELU), (nn.GELU("tanh"), Op.GELU),
    (nn.SiLU(), Op.SILU), (nn.Mish(), Op.MISH), (nn.Softplus(0.5, 10.0), Op.SOFTPLUS), (nn.Tanh(), Op.TANH),
    (nn.Sigmoid(), Op.SIGMOID), (nn.Hardswish(), Op.HARDSWISH), (nn.Hardsigmoid(), Op.HARDSIGMOID),
    (nn.ELU(0.5), Op.ELU), (nn.ReLU6(), Op.RELU6),
], ids=lambda v: repr(v) if isinstance(v, nn.Module) else "")
def test_activation_modules(act, op):
    g = check(nn.Sequential(nn.Conv2d(6, 6, 1), act), S4, [op])
    node = next(n for n in g if n.op == op)
    if op == Op.GELU:
        assert node.attrs.approximate == act.approximate
    if op == Op.LEAKY_RELU:
        assert node.attrs.negative_slope == pytest.approx(0.2)


def test_inplace_activation_is_annotated():
    g = check(nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU(inplace=True)), S4, [Op.RELU])
    assert g.nodes[-1].meta.get("inplace") is True


class _Mha(nn.Module):
    def __init__(self, weights: bool = False):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.weights = weights

    def forward(self, x):
        if self.weights:
            return self.mha(x, x, x)[0]
        return self.mha(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("weights", [False, True])
def test_multihead_attention(weights):
    g = check(_Mha(weights), S3, [Op.ATTENTION, Op.LINEAR])
    assert sum(n.op == Op.LINEAR for n in g) == 4 and not g.batch_fixed


class _Block(nn.Module):
    """timm's ViT block: pre-norm attention with fused qkv, ``reshape -> permute(2, 0, 3, 1, 4) -> unbind(0)``."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(0.1), nn.Linear(dim * 2, dim))

    def attn(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q * self.scale) @ k.transpose(-2, -1)
        x = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim=16, patch=4, size=16, classes=5, sdpa=False):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.1)
        self.blocks = nn.Sequential(_Block(dim), _Block(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def test_tiny_vit_moves_the_batch_dimension():
    g = check(TinyViT(), (1, 3, 16, 16), [Op.CONV2D, Op.CONCAT, Op.CONSTANT, Op.LAYERNORM, Op.MATMUL, Op.SOFTMAX,
                                          Op.GELU, Op.PERMUTE], batch_fixed=True)
    assert g[g.outputs[0]].shape == (1, 5)


def test_tiny_vit_through_torch_export(monkeypatch):
    monkeypatch.setattr(mtrace, "_fx_module", lambda model: (_ for _ in ()).throw(RuntimeError("no fx")))
    check(TinyViT(), (1, 3, 16, 16), [Op.CONV2D, Op.CONCAT, Op.LAYERNORM, Op.MATMUL, Op.SOFTMAX], batch_fixed=True)


def test_sequence_first_attention_at_batch_1_goes_through_torch_export():
    """fx's converter refuses batch_first=False; torch.export's ATen decomposition of it maps at batch 1."""
    m = Holder(_mha(False), lambda layer, x: layer(x, x, x, need_weights=False)[0])
    check(m, (1, 5, 8), [Op.ATTENTION, Op.LINEAR], batch_fixed=True)


def test_tiny_vit_refuses_a_batch_it_would_merge():
    with pytest.raises(UnsupportedOpError, match="batch"):
        mapping.trace(TinyViT(), (2, 3, 16, 16))


def test_vit_without_batch_moves_keeps_the_batch():
    class Sdpa(_Block):
        def attn(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(0, 2, 3, 1, 4).unbind(1)
            x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
            return self.proj(x)

    g = check(nn.Sequential(Sdpa(), Sdpa()), (3, 7, 16), [Op.ATTENTION], batch_fixed=False)
    assert sum(n.op == Op.ATTENTION for n in g) == 2


def test_per_channel_layers_on_windows_merged_into_the_batch(monkeypatch):
    """Windows merged into the batch (EfficientViT-M, Swin): batch norm and PReLU still run along the channels."""
    m = _randomize_bn(Fn(lambda s, x: s.bn(x.reshape(-1, 6, 3, 8)).reshape(1, 6, 9, 8)
                         + s.act(x.reshape(-1, 6, 3, 8)).reshape(1, 6, 9, 8), bn=nn.BatchNorm2d(6), act=nn.PReLU(6, 0.2)))
    check(m, (1, 6, 9, 8), [Op.BATCHNORM, Op.PRELU, Op.PERMUTE], batch_fixed=True)
    monkeypatch.setattr(mtrace, "_fx_module", lambda model: (_ for _ in ()).throw(RuntimeError("no fx")))
    check(m, (1, 6, 9, 8), [Op.BATCHNORM, Op.PRELU, Op.PERMUTE], batch_fixed=True)  # ATen forms


def test_image_ops_on_windows_merged_into_the_batch():
    """EfficientViT-M's cascaded attention convolves each window: one conv node per window, weights stored once."""
    m = Fn(lambda s, x: F.max_pool2d(s.conv(x.reshape(-1, 3, 4, 8)), 2).reshape(1, -1), conv=nn.Conv2d(3, 5, 3, padding=1))
    g = check(m, (1, 3, 8, 8), [Op.CONV2D, Op.MAXPOOL, Op.CONCAT], batch_fixed=True)
    convs = [n for n in g if n.op == Op.CONV2D]
    assert len(convs) == 2 and {c.params["weight"] for c in convs} == {"conv.weight"}
    assert g.param_count == sum(p.numel() for p in m.parameters())


def test_device_checks_and_disabled_autocast_trace_with_fx():
    """timm's LiteMLA: ``if x.device.type != 'meta': with torch.autocast(..., enabled=False): ...``."""
    class M(nn.Module):
        def forward(self, x):
            if x.device.type != "meta":
                with torch.autocast(device_type=x.device.type, enabled=False):
                    y = x.float() @ x.transpose(-1, -2)
                return y.to(x.dtype)
            return x

    mtrace._fx_module(M())  # no proxy used as a condition
    check(M(), S3, [Op.MATMUL])


def test_drop_path_and_stochastic_depth_vanish_in_eval():
    from nets.external import import_torchvision
    import_torchvision()
    from timm.layers import DropPath
    from torchvision.ops import StochasticDepth, stochastic_depth

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(6, 6, 1)
            self.dp, self.sd = DropPath(0.3), StochasticDepth(0.2, "row")

        def forward(self, x):
            y = x + self.dp(self.c(x))
            return y + self.sd(y) + stochastic_depth(y, 0.5, "batch", self.training)

    g = check(M(), S4, [Op.CONV2D])
    assert [n.op for n in g].count(Op.ADD) == 3 and len(g) == 4


def test_constant_tensors_fold():
    class M(nn.Module):
        def forward(self, x):
            z = torch.zeros(1, 6, 1, 1) + torch.arange(6.0).view(1, 6, 1, 1)
            return x * z + torch.ones_like(x)

    check(M(), S4, [Op.MUL, Op.CONSTANT])


# ------------------------------------------------------------------------------------------------ subclass safety
class BnRelu(nn.BatchNorm2d):
    """timm's BatchNormAct2d pattern: a batch norm whose forward adds an activation."""

    def forward(self, x):
        return F.relu(super().forward(x))


def _randomize_bn(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return m


def test_batchnorm_subclass_with_an_activation_keeps_it():
    m = _randomize_bn(nn.Sequential(nn.Conv2d(3, 6, 3), BnRelu(6)))
    g = check(m, (2, 3, 8, 8), [Op.BATCHNORM, Op.RELU])
    assert [n.op for n in g] == [Op.CONV2D, Op.BATCHNORM, Op.RELU]


def test_timm_batchnorm_act_and_depthwise_separable_block():
    from nets.external import import_torchvision
    import_torchvision()
    from timm.layers import BatchNormAct2d
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv

    g = check(_randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 1), BatchNormAct2d(8, act_layer=nn.SiLU))),
              (2, 3, 6, 6), [Op.BATCHNORM, Op.SILU])
    assert [n.op for n in g] == [Op.CONV2D, Op.BATCHNORM, Op.SILU]
    block = _randomize_bn(DepthwiseSeparableConv(8, 8, norm_layer=BatchNormAct2d, act_layer=nn.ReLU6, pw_act=True))
    g = check(block, (2, 8, 7, 7), [Op.CONV2D, Op.BATCHNORM, Op.RELU6, Op.ADD])
    assert [n.op for n in g].count(Op.RELU6) == 2  # both BatchNormAct2d activations, none dropped


class ScaledConv(nn.Conv2d):
    """Overrides only ``_conv_forward`` (a weight-standardised / scaled conv): not a plain conv."""

    def _conv_forward(self, x, weight, bias):
        return F.conv2d(x, weight * 2.0, bias, self.stride, self.padding, self.dilation, self.groups)


def test_conv_subclass_overriding_a_helper_is_traced_through():
    m = nn.Sequential(ScaledConv(3, 4, 3, padding=1), nn.ReLU())
    g = check(m, (2, 3, 6, 6), [Op.CONV2D])
    conv = next(n for n in g if n.op == Op.CONV2D)
    np.testing.assert_allclose(g.param(conv, "weight"), 2 * m[0].weight.detach().numpy(), rtol=1e-6)


class ReprConv(nn.Conv2d):
    def extra_repr(self):
        return "custom " + super().extra_repr()


def test_subclass_adding_only_extra_repr_is_converted_as_its_base():
    m = nn.Sequential(ReprConv(3, 4, 3))
    g = check(m, (2, 3, 6, 6), [Op.CONV2D])
    assert len(g) == 1 and g.nodes[0].module == "0" and g.nodes[0].params["weight"] == "0.weight"
    assert mtrace._leaf_kind(m[0]) == "convert"


class CumsumBn(nn.BatchNorm2d):
    def forward(self, x):
        return torch.cumsum(super().forward(x), dim=1)


def test_subclass_with_an_unmappable_forward_is_refused_by_path():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(CumsumBn(4)))
    with pytest.raises(UnsupportedOpError, match=r"cumsum.*'1\.0'") as e:
        mapping.trace(m, (1, 3, 4, 4))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ verified import
def test_a_wrong_module_converter_is_caught_by_verification(monkeypatch):
    monkeypatch.setitem(mtrace._MODULES, nn.LeakyReLU,
                        lambda m, ins, out: mtrace.ModuleConversion(Op.LEAKY_RELU, LeakyRelu(0.5)))
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.Identity(), nn.LeakyReLU(0.1)))
    with pytest.raises(ConversionError) as e:
        mapping.trace(m, (1, 3, 5, 5))
    msg = str(e.value)
    g = mapping.trace(m, (1, 3, 5, 5), verify=False)  # skipped: the wrong graph comes back
    node = next(n for n in g if n.op == Op.LEAKY_RELU)
    assert f"node '{node.name}' (op leaky_relu, module '1.1')" in msg, msg
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    with torch.no_grad():
        assert not np.allclose(run(g, x)[0], m(torch.from_numpy(x)).numpy(), atol=1e-3)


def test_a_wrong_function_handler_is_caught_by_verification(monkeypatch):
    import mapping._torch_ops as ops

    def wrong(b, n):
        b.emit(n, Op.LEAKY_RELU, [b.ref(n.args[0], n)], LeakyRelu(0.5))

    monkeypatch.setitem(ops._BY_NAME, "leaky_relu", wrong)

    class Inner(nn.Module):
        def forward(self, x):
            return F.leaky_relu(x * 2, 0.05)

    m = nn.Sequential(nn.Conv2d(3, 4, 1), Inner())
    with pytest.raises(ConversionError, match=r"node 'leaky_relu' \(op leaky_relu, module '1'\)"):
        mapping.trace(m, (1, 3, 5, 5))
    assert len(mapping.trace(m, (1, 3, 5, 5), verify=False)) == 3


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_a_registered_converter_mapping_to_the_wrong_op_is_caught(monkeypatch):
    monkeypatch.setitem(mtrace._MODULES, Swish, lambda m, ins, out: mtrace.ModuleConversion(Op.SIGMOID))
    m = nn.Sequential(nn.Conv2d(3, 4, 1), Swish())
    with pytest.raises(ConversionError, match=r"node '_?1' \(op sigmoid, module '1'\)"):
        mapping.trace(m, (1, 3, 5, 5))
    monkeypatch.setitem(mtrace._MODULES, Swish, lambda m, ins, out: mtrace.ModuleConversion(Op.SILU))
    check(m, (1, 3, 5, 5), [Op.SILU])


def test_a_forward_pre_hook_that_changes_the_input_is_named():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    m[2].register_forward_pre_hook(lambda mod, args: (args[0] * 3,))
    with pytest.raises(ConversionError, match="hooks") as e:
        mapping.trace(m, (1, 3, 5, 5))
    assert "'2'" in str(e.value)


# ------------------------------------------------------------------------------------------------ torch.export
class ShapeLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        for i in range(x.shape[1] // 4):
            x = x + self.conv(x) * (i + 1)
        if x.shape[-1] > 4:
            x = F.avg_pool2d(x, 2)
        return x


def test_shape_dependent_control_flow_traces_through_torch_export():
    with pytest.raises((TypeError, torch.fx.proxy.TraceError)):
        mtrace._fx_module(ShapeLoop())  # fx cannot
    g = check(ShapeLoop(), (2, 8, 6, 6), [Op.CONV2D, Op.AVGPOOL])
    assert sum(n.op == Op.CONV2D for n in g) == 2
    g = check(ShapeLoop(), (2, 8, 4, 4), [Op.CONV2D])  # specialised to its input shape: no pool at width 4
    assert Op.AVGPOOL not in {n.op for n in g}


def test_data_dependent_control_flow_is_refused_with_both_reasons():
    class M(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedOpError, match="cannot trace") as e:
        mapping.trace(M(), (1, 3, 4, 4))
    assert "torch.fx:" in str(e.value) and "torch.export:" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ refusals
class Holder(nn.Module):
    """``body.layer`` is the module under test; ``fn`` how it is called."""

    def __init__(self, layer, fn=lambda layer, x: layer(x)):
        super().__init__()
        self.body = nn.Module()
        self.body.layer = layer
        self.fn = fn

    def forward(self, x):
        return self.fn(self.body.layer, x)


class Cumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def _mha(batch_first):
    return nn.MultiheadAttention(8, 2, batch_first=batch_first)


@pytest.mark.parametrize("layer,fn,shape,words", [
    (nn.LSTM(8, 8, batch_first=True, proj_size=4), lambda layer, x: layer(x)[0], (1, 5, 8),
     ["LSTM", "'body.layer'", "proj_size"]),
    (nn.ConvTranspose1d(3, 4, 2, 2), None, (1, 3, 4), ["ConvTranspose1d", "'body.layer'"]),
    (nn.ConvTranspose3d(3, 4, 1), None, (1, 3, 2, 4, 4), ["ConvTranspose3d", "'body.layer'"]),
    (Cumsum(), None, (1, 3, 4, 4), ["cumsum", "'body.layer'"]),
    (_mha(False), lambda layer, x: layer(x, x, x, need_weights=False)[0], (2, 5, 8),
     ["MultiheadAttention", "'body.layer'", "batch_first"]),
    (_mha(True), lambda layer, x: layer(x, x, x)[1], (2, 5, 8),
     ["MultiheadAttention", "'body.layer'", "attention weights"]),
    (nn.Embedding(10, 4), None, (1, 5), ["Embedding", "'body.layer'"]),
], ids=["lstm", "conv_transpose1d", "conv_transpose3d", "cumsum", "mha_seq_first", "mha_weights", "embedding"])
def test_unmappable_layers_are_refused_by_name_and_path(layer, fn, shape, words):
    m = Holder(layer, fn) if fn is not None else Holder(layer)
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(m, shape)
    msg = str(e.value)
    assert isinstance(e.value, HwsimError) and "\n" not in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("fn,words", [
    (lambda x: F.conv_transpose3d(x.unsqueeze(2), torch.ones(3, 4, 1, 1, 1)), ["conv_transpose3d"]),
    (lambda x: F.conv_transpose1d(x.flatten(2), torch.ones(3, 4, 2)), ["conv_transpose1d"]),
    (lambda x: x.cumsum(2), ["cumsum"]),
    (lambda x: x.sort(1)[0], ["sort"]),
    (lambda x: x[:, torch.tensor([0, 2])], ["indexing"]),
    (lambda x: x.mean(), ["batch"]),
    (lambda x: x.softmax(0), ["batch"]),
    (lambda x: x // 2, ["integer division"]),
    (lambda x: torch.max(x, x * 2), ["max", "elementwise maximum"]),
    (lambda x: F.interpolate(x, scale_factor=1.3), ["interpolate", "1/scale_factor"]),
    (lambda x: (x > 0).any(1, keepdim=True) * x, ["any", "bool"]),
], ids=["conv_transpose3d", "conv_transpose1d", "cumsum", "sort", "advanced_index", "mean_all", "softmax_batch",
        "floordiv", "max_two_tensors", "interpolate_fractional_scale", "bool_reduction"])
def test_unmappable_functions_are_refused_by_name_and_path(fn, words):
    m = Holder(Fn(lambda s, x: fn(x)))
    with pytest.raises(UnsupportedOpError) as e:
        mapping.trace(m, (2, 3, 6, 6))
    msg = str(e.value)
    assert "\n" not in msg and "'body.layer'" in msg, msg
    for w in words:
        assert w in msg, msg


# ------------------------------------------------------------------------------------------------ real models
REAL = [
    ("torchvision", "mobilenet_v3_small", (1, 3, 64, 64)),
    ("torchvision", "shufflenet_v2_x0_5", (1, 3, 64, 64)),
    ("torchvision", "squeezenet1_1", (1, 3, 64, 64)),
    ("timm", "efficientnet_lite0", None),  # BatchNormAct2d everywhere
    ("timm", "convnext_atto", None),
    ("timm", "deit_tiny_patch16_224", None),
    ("timm", "mobilevit_xxs", None),
    ("timm", "efficientvit_b0", None),  # torch.autocast(enabled=False) behind a device check, traced by fx
    ("torchvision", "swin_t", (1, 3, 112, 112)),  # shifted windows: fx leaves them opaque, torch.export maps them
]


@pytest.mark.parametrize("source,name,shape", [
    pytest.param(*r, id=r[1], marks=() if r[1] == "squeezenet1_1" else pytest.mark.slow) for r in REAL])
def test_real_models(source, name, shape):
    from nets.external import build_timm, build_torchvision

    model, default = (build_torchvision if source == "torchvision" else build_timm)(name)
    shape = shape or default
    _randomize_bn(model)
    g = mapping.trace(model, shape)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x.copy())).numpy()
    got = np.asarray(hwsim.simulate(g, "cpu/cortex-a72", x=x).outputs).reshape(want.shape)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    if name == "efficientnet_lite0":  # every BatchNormAct2d's ReLU6 is in the graph
        acts = sum(isinstance(m, nn.BatchNorm2d) and not isinstance(m.act, nn.Identity) for m in model.modules())
        assert sum(n.op == Op.RELU6 for n in g) == acts > 0
    lat = hwsim.simulate(g, "imc/isaac").report.latency_s
    assert math.isfinite(lat) and lat > 0


class _Mutates(nn.Module):
    """Returns a value an in-place op changed after it was computed (the op's own result unused)."""

    def __init__(self, how: str):
        super().__init__()
        self.c, self.r, self.how = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), how

    def forward(self, x):
        y = self.c(x)
        if self.how == "relu_module":
            self.r(y)
        elif self.how == "add_":
            y.add_(1.0)
        elif self.how == "view":
            y.view(y.shape[0], -1).mul_(2.0)
        elif self.how == "out":
            torch.clamp(y, min=0.0, out=y)
        elif self.how == "unsqueeze_":
            y.unsqueeze_(-1)
        return y


@pytest.mark.parametrize("how", ["relu_module", "add_", "view", "out", "unsqueeze_"])
def test_a_returned_value_changed_in_place_is_refused(how):
    """torch returns the value after the in-place op; the graph would hold it before: refused, verify or not."""
    for verify in (True, False):
        with pytest.raises(ConversionError, match=r"changed in place.*\['c'\]|\['c'\] changed in place") as e:
            mapping.trace(_Mutates(how), (1, 3, 6, 6), verify=verify)
        assert "\n" not in str(e.value)


def test_in_place_activations_whose_result_is_used_still_import():
    class Uses(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.r = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.r(self.c(x))
            y += 1.0
            return F.relu(y, inplace=True)

    check(Uses(), (1, 3, 6, 6), [Op.CONV2D, Op.RELU, Op.ADD, Op.RELU])


def test_a_dropout_left_in_training_mode_is_refused():
    """F.dropout's default training=True is not the identity the graph would make of it."""

    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return F.dropout(self.c(x), 0.5)

    with pytest.raises(UnsupportedOpError, match="training=True.*training=self.training"):
        mapping.trace(Drop(), (1, 3, 6, 6))


def test_a_model_returning_its_input_is_refused_with_the_reason():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.c(x), x

    with pytest.raises(ConversionError, match=r"returns its input \['x'\] unchanged"):
        mapping.trace(Both(), (1, 3, 4, 4))


def test_a_model_in_training_mode_is_computed_in_eval_mode_and_says_so():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())  # training mode, as nn.Module starts
    with pytest.warns(UserWarning, match=r"training mode.*eval mode.*module '1'"):
        g = mapping.trace(m, (2, 3, 6, 6))
    assert m.training  # the mode is restored
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run(g, x)[0], m.eval()(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapping.trace(m, (2, 3, 6, 6))  # in eval mode: no warning


def test_a_brevitas_model_is_sent_to_qonnx():
    qnn = pytest.importorskip("brevitas.nn")
    m = nn.Sequential(qnn.QuantIdentity(bit_width=4), qnn.QuantConv2d(3, 4, 3, weight_bit_width=4))
    with pytest.raises(UnsupportedOpError, match=r"Brevitas layers \(QuantIdentity\).*export_qonnx") as e:
        hwsim.simulate(m, "fpga/pynq-z1", input_shape=(1, 3, 8, 8))
    assert "\n" not in str(e.value)
