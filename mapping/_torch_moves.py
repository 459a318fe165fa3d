"""Data-movement handlers of the torch tracer (reshapes, permutes, splits, indexing, concatenation, padding,
resampling), and the helpers every handler module shares. See :mod:`mapping._torch_ops` for the dispatch."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx

from hwsim.errors import UnsupportedOpError
from mapping._builder import Builder
from mapping.graph import ChannelShuffle, Concat, Op, Pad, Permute, Reshape, Slice

__all__ = ["MISSING", "Handler", "arg", "moves"]

Handler = Callable[[Builder, fx.Node], None]
MISSING = object()


def arg(n: fx.Node, i: int, name: str, default=MISSING):
    if len(n.args) > i:
        return n.args[i]
    if name in n.kwargs:
        return n.kwargs[name]
    if default is MISSING:
        raise UnsupportedOpError(f"'{n.target}' without its argument '{name}'")
    return default


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if v else (0, 0)
    return int(v), int(v)


def _inplace(n: fx.Node) -> dict | None:
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    return {"inplace": True} if (n.kwargs.get("inplace") or name.endswith("_") and not name.startswith("_")) else None


def _x(b: Builder, n: fx.Node) -> str:
    return b.ref(n.args[0], n)


def _first_only(b: Builder, g: fx.Node, i: int, n: fx.Node) -> None:
    if i != 0:
        raise UnsupportedOpError(f"{b.what(g)}: output {i} of {n.target} is not supported")
    b.ir[g.name] = n.name


# ---------------------------------------------------------------------------------------------- data movement
def _reshape(b: Builder, n: fx.Node) -> None:
    src = _x(b, n)
    out = b.out_shape(n)
    if out == b.shapes[src]:
        b.ir[n.name] = src
    else:
        b.emit(n, Op.RESHAPE, [src], Reshape(out[1:]))


def _alias(b: Builder, n: fx.Node) -> None:
    b.alias(n, n.args[0])


def _dropout(b: Builder, n: fx.Node) -> None:
    """Dropout at inference is its input; a functional dropout called with ``training=True`` (``F.dropout``'s
    default; ``torch.dropout``'s ``train``) zeroes random values at every call, in eval mode too: refused."""
    p = arg(n, 1, "p", 0.5)
    training = arg(n, 2, "training", MISSING)
    training = arg(n, 2, "train", True) if training is MISSING else training
    if float(p) > 0 and bool(training):
        raise UnsupportedOpError(f"{b.what(n)} with training=True (F.dropout's default) zeroes random values at every "
                                 "call, in eval mode too: pass training=self.training")
    _alias(b, n)


def _expand(b: Builder, n: fx.Node) -> None:
    """x.expand(...): a reshape when no element repeats; left to its readers when they broadcast (arithmetic);
    else copies concatenated along each expanded dim."""
    if b.values[n.name].numel() == b.values[n.args[0].name].numel():
        _reshape(b, n)
        return
    src, out = b.ref(n.args[0], n), b.out_shape(n)
    from mapping._torch_ops import _name_of
    readers = list(n.users)
    if readers and all(u.op in ("call_function", "call_method") and _name_of(u) in ("add", "sub", "mul", "div")
                       for u in readers) and len(b.shapes[src]) == len(out):
        b.ir[n.name] = src  # its readers broadcast it themselves (numpy semantics)
        return
    shape = b.shapes[src]
    if len(shape) < len(out):  # new leading dims (behind the batch)
        shape = shape[:1] + (1,) * (len(out) - len(shape)) + shape[1:]
        src = b.emit(n, Op.RESHAPE, [src], Reshape(shape[1:]), name=f"{n.name}_r", shape=shape)
    _tile(b, n, src, [o // s if s != o else 1 for s, o in zip(shape, out)])


def _repeat(b: Builder, n: fx.Node) -> None:
    """x.repeat(*sizes): copies concatenated along each repeated dim."""
    reps = n.args[1:] if len(n.args) > 2 or isinstance(n.args[1], int) else n.args[1]
    reps = [int(r) for r in reps]
    x, src = n.args[0], b.ref(n.args[0], n)
    rank, shape = len(b.tshape(x)), b.shapes[src]
    if len(reps) > rank or b.offset(x) == 0 and reps[0] != 1:
        raise UnsupportedOpError(f"{b.what(n)} repeats along the batch dimension")
    _tile(b, n, src, [1] * (len(shape) - len(reps)) + reps)


def _tile(b: Builder, n: fx.Node, src: str, reps: list[int]) -> None:
    if reps[0] != 1:
        raise UnsupportedOpError(f"{b.what(n)} repeats along the batch dimension")
    todo = [d for d, r in enumerate(reps) if r > 1]
    for j, d in enumerate(todo):
        shape = b.shapes[src]
        shape = shape[:d] + (shape[d] * reps[d],) + shape[d + 1:]
        last = j == len(todo) - 1
        src = b.emit(n, Op.CONCAT, [src] * reps[d], Concat(d), name=None if last else f"{n.name}_{d}", shape=shape)
    if src != n.name:
        b.ir[n.name] = src


def _narrow(b: Builder, n: fx.Node) -> None:
    x = n.args[0]
    d, start, length = int(arg(n, 1, "dim")) % len(b.tshape(x)), int(arg(n, 2, "start")), int(arg(n, 3, "length"))
    start %= b.tshape(x)[d]
    _index(b, n, x, (slice(None),) * d + (slice(start, start + length),))


def _pixel_shuffle(b: Builder, n: fx.Node) -> None:
    """pixel_shuffle / pixel_unshuffle as RESHAPE, PERMUTE, RESHAPE."""
    r = int(arg(n, 1, "upscale_factor" if "unshuffle" not in str(n.target) else "downscale_factor"))
    shape = b.ishape(n.args[0])
    if len(shape) != 4 or b.offset(n.args[0]):
        raise UnsupportedOpError(f"{b.what(n)} of a value of shape {b.tshape(n.args[0])}")
    nb, c, h, w = shape
    if "unshuffle" in getattr(n.target, "__name__", str(n.target)):
        mid, perm = (nb, c, h // r, r, w // r, r), (0, 1, 3, 5, 2, 4)
    else:
        mid, perm = (nb, c // (r * r), r, r, h, w), (0, 1, 4, 2, 5, 3)
    v = b.emit(n, Op.RESHAPE, [_x(b, n)], Reshape(mid[1:]), name=f"{n.name}_v", shape=mid)
    p = b.emit(n, Op.PERMUTE, [v], Permute(perm), name=f"{n.name}_p", shape=tuple(mid[i] for i in perm))
    b.emit(n, Op.RESHAPE, [p], Reshape(b.out_shape(n)[1:]))


def _permute_dims(n: fx.Node, rank: int) -> tuple[int, ...]:
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    if "transpose" in name or "swapaxes" in name:
        d0, d1 = int(n.args[1]) % rank, int(n.args[2]) % rank
        perm = list(range(rank))
        perm[d0], perm[d1] = perm[d1], perm[d0]
        return tuple(perm)
    if name in ("t", "t_") or name.startswith("t."):
        return tuple(reversed(range(rank)))
    dims = n.args[1:] if len(n.args) > 2 or isinstance(n.args[1], int) else n.args[1]
    if not dims and "dims" in n.kwargs:
        dims = n.kwargs["dims"]
    return tuple(int(d) % rank for d in dims)


def _permute(b: Builder, n: fx.Node) -> None:
    x = n.args[0]
    rank = len(b.tshape(x))
    perm = _permute_dims(n, rank)
    if perm == tuple(range(rank)):
        b.alias(n, x)
        return
    src, off_in, out = b.ref(x, n), b.offset(x), b.out_shape(n)
    if off_in == 0 and perm[0] == 0:
        b.emit(n, Op.PERMUTE, [src], Permute(perm))
        return
    # batch 1, the batch moves: permute the torch dims behind one leading unit dim, then view as the IR shape
    full = (1,) + b.tshape(x)
    if off_in == 0:
        src = b.emit(n, Op.RESHAPE, [src], Reshape(full[1:]), name=f"{n.name}_in", shape=full)
    tout = (1,) + b.tshape(n)
    p = b.emit(n, Op.PERMUTE, [src], Permute((0,) + tuple(d + 1 for d in perm)),
               name=f"{n.name}_p" if out != tout else None, shape=tout)
    if out != tout:
        b.emit(n, Op.RESHAPE, [p], Reshape(out[1:]))


def _cat(b: Builder, n: fx.Node) -> None:
    tensors = arg(n, 0, "tensors")
    d = int(arg(n, 1, "dim", 0))
    ref = next((t for t in tensors if b.kind(t) == "data"), tensors[0])
    ins = [b.ref(t, n) for t in tensors]
    if not all(len(b.shapes[i]) == len(b.shapes[ins[0]]) for i in ins):
        raise UnsupportedOpError(f"{b.what(n)} of operands of different ranks")
    b.emit(n, Op.CONCAT, ins, Concat(b.dim(ref, d, n)))


def _stack(b: Builder, n: fx.Node) -> None:
    tensors = arg(n, 0, "tensors")
    d = int(arg(n, 1, "dim", 0))
    out = b.out_shape(n)
    rank = len(b.tshape(n))
    ir_dim = d % rank + (len(out) - rank)
    if ir_dim == 0:
        raise UnsupportedOpError(f"{b.what(n)} along the batch dimension")
    ins = []
    for i, t in enumerate(tensors):
        shape = out[:ir_dim] + (1,) + out[ir_dim + 1:]
        ins.append(b.emit(n, Op.RESHAPE, [b.ref(t, n)], Reshape(shape[1:]), name=f"{n.name}_in{i}", shape=shape))
    b.emit(n, Op.CONCAT, ins, Concat(ir_dim))


def _split(b: Builder, n: fx.Node) -> None:
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    parts = b.values[n.name]
    x = n.args[0]
    unbind = "unbind" in name
    d = int(arg(n, 1 if unbind else 2, "dim", 0))
    rank = len(b.tshape(x))
    d = d % rank
    ir_dim = b.dim(x, d, n, batch_ok=b.batch == 1)
    bounds, start = [], 0
    for p in parts:
        size = 1 if unbind else p.shape[d]
        bounds.append((start, start + size))
        start += size

    def take(i: int, g: fx.Node) -> None:
        lo, hi = bounds[i]
        src = b.ref(x, g)
        if ir_dim == 0:  # batch 1: the whole tensor (unbind of the unit batch)
            b.emit(g, Op.RESHAPE, [src], Reshape(b.out_shape(g)[1:]))
            return
        if unbind:
            shp = list(b.shapes[src])
            shp[ir_dim] = 1
            s = b.emit(g, Op.SLICE, [src], Slice(ir_dim, lo, hi), name=f"{g.name}_s", shape=tuple(shp))
            b.emit(g, Op.RESHAPE, [s], Reshape(b.out_shape(g)[1:]))
        else:
            b.emit(g, Op.SLICE, [src], Slice(ir_dim, lo, hi))

    b.parts[n.name] = take


def _getitem(b: Builder, n: fx.Node) -> None:
    src, idx = n.args
    if isinstance(src, fx.Node) and src.name in b.parts and isinstance(idx, slice):  # parts[1:]: a tuple
        picked = list(range(len(b.values[src.name])))[idx]
        b.parts[n.name] = lambda j, g, part=b.parts[src.name]: part(picked[j], g)
    elif isinstance(src, fx.Node) and src.name in b.parts:
        b.parts[src.name](int(idx), n)
    elif isinstance(b.values.get(src.name), torch.Tensor):
        _index(b, n, src, idx)
    else:
        raise UnsupportedOpError(f"{b.what(n)}: indexing a {type(b.values.get(src.name)).__name__}")


def _index(b: Builder, n: fx.Node, src: fx.Node, idx) -> None:
    """x[...]: ints, slices with a positive step, None and one Ellipsis -> SLICE nodes, then a RESHAPE."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    idx = tuple(slice(b.val(i.start), b.val(i.stop), b.val(i.step)) if isinstance(i, slice) else
                (b.val(i) if isinstance(i, fx.Node) and b.kind(i) == "python" else i) for i in idx)
    shape = b.tshape(src)
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in idx):
        raise UnsupportedOpError(f"{b.what(n)}: indexing with a tensor or list (advanced indexing)")
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(shape) - n_real) + idx[k + 1:]
    cur, d = b.ref(src, n), 0
    for i in idx:
        if i is None:
            continue
        size = shape[d]
        lo, hi, step = (i % size, i % size + 1, 1) if isinstance(i, int) else i.indices(size)
        hi = max(hi, lo)
        if (lo, hi, step) != (0, size, 1):
            ir_dim = b.dim(src, d, n, batch_ok=b.batch == 1)
            if ir_dim == 0 and (lo, hi) != (0, 1):
                raise UnsupportedOpError(f"{b.what(n)} selects along the batch dimension")
            if ir_dim != 0:
                shp = list(b.shapes[cur])
                shp[ir_dim] = len(range(lo, hi, step))
                cur = b.emit(n, Op.SLICE, [cur], Slice(ir_dim, lo, hi, step), name=f"{n.name}_d{d}", shape=tuple(shp))
        d += 1
    out = b.out_shape(n)
    if b.shapes[cur] == out and cur != b.ref(src, n):
        b.nodes[-1] = b.nodes[-1].replace(name=n.name)  # the last slice is the result
        b.shapes[n.name] = out
        b.ir[n.name] = n.name
    elif b.shapes[cur] == out:
        b.ir[n.name] = cur
    else:
        b.emit(n, Op.RESHAPE, [cur], Reshape(out[1:]))


def _pad(b: Builder, n: fx.Node) -> None:
    """F.pad in every mode (constant, reflect, replicate, circular) -> PAD; a negative amount (a crop) -> a SLICE of
    that dim, placed as torch crops (hwsim.kernels.fp32.pad_plan)."""
    from hwsim.kernels._ops_fp32 import pad_plan  # the kernel's rule (imported here: it loads Numba)
    from mapping._trace_modules import torch_pads

    constant_nd = n.target is torch.ops.aten.constant_pad_nd.default
    mode = "constant" if constant_nd else arg(n, 2, "mode", "constant")
    value = arg(n, 2 if constant_nd else 3, "value", None)
    shape = b.ishape(n.args[0])
    try:
        pads = torch_pads(arg(n, 1, "pad"), shape, mode)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)}: {e}") from None
    steps, cur = pad_plan(shape, pads, mode), _x(b, n)
    if not steps:
        b.emit(n, Op.PAD, [cur], Pad(tuple(pads), float(value or 0.0), mode))
    for i, (kind, what, out) in enumerate(steps):
        attrs = Pad(what, float(value or 0.0), mode) if kind == "pad" else Slice(*what)
        last = i == len(steps) - 1
        cur = b.emit(n, Op.PAD if kind == "pad" else Op.SLICE, [cur], attrs, name=None if last else f"{n.name}_{i}",
                     shape=None if last else out)


def _interpolate(b: Builder, n: fx.Node) -> None:
    from mapping.trace import upsample_attrs
    name = getattr(n.target, "__name__", str(n.target))
    if "nearest" in name:  # aten.upsample_nearest2d.vec(x, size, scales)
        mode, ac, scale = "nearest", False, arg(n, 2, "scale_factors", None)
    elif "bilinear" in name:  # aten.upsample_bilinear2d.vec(x, size, align_corners, scales)
        mode, ac, scale = "bilinear", bool(arg(n, 2, "align_corners", False)), arg(n, 3, "scale_factors", None)
    else:
        mode, ac, scale = arg(n, 3, "mode", "nearest"), arg(n, 4, "align_corners", None), arg(n, 2, "scale_factor", None)
        if arg(n, 5, "recompute_scale_factor", None):
            scale = None
        if arg(n, 6, "antialias", False):
            raise UnsupportedOpError(f"{b.what(n)} with antialias=True")
    try:
        attrs = upsample_attrs(mode, ac, b.out_shape(n), b.tshape(n.args[0]), scale)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{b.what(n)}: {e}") from None
    b.emit(n, Op.UPSAMPLE, [_x(b, n)], attrs)


def _channel_shuffle(b: Builder, n: fx.Node) -> None:
    b.emit(n, Op.CHANNEL_SHUFFLE, [_x(b, n)], ChannelShuffle(int(arg(n, 1, "groups"))))


def _roll(b: Builder, n: fx.Node) -> None:
    """torch.roll along given dims: two slices and a concat per dim."""
    shifts, dims = arg(n, 1, "shifts"), arg(n, 2, "dims", None)
    if dims is None or dims == []:
        raise UnsupportedOpError(f"{b.what(n)} of the flattened tensor")
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    cur, x = b.ref(n.args[0], n), n.args[0]
    for j, (sh, d) in enumerate(zip(shifts, dims)):
        ir = b.dim(x, int(d), n)
        shape = b.shapes[cur]
        k = int(sh) % shape[ir]
        if k == 0:
            continue
        parts = []
        for tag, (lo, hi) in (("a", (shape[ir] - k, shape[ir])), ("b", (0, shape[ir] - k))):
            shp = shape[:ir] + (hi - lo,) + shape[ir + 1:]
            parts.append(b.emit(n, Op.SLICE, [cur], Slice(ir, lo, hi), name=f"{n.name}_{j}{tag}", shape=shp))
        last = j == len(dims) - 1
        cur = b.emit(n, Op.CONCAT, parts, Concat(ir), name=None if last else f"{n.name}_{j}", shape=shape)
    if cur != n.name:
        b.ir[n.name] = cur




def _slice(b: Builder, n: fx.Node) -> None:
    """aten.slice.Tensor(x, dim, start, end, step): ``x[..., start:end:step]`` along one dim."""
    x = n.args[0]
    d = int(arg(n, 1, "dim", 0)) % len(b.tshape(x))
    start, end, step = arg(n, 2, "start", None), arg(n, 3, "end", None), arg(n, 4, "step", 1)
    _index(b, n, x, (slice(None),) * d + (slice(start, end, step),))


def _select(b: Builder, n: fx.Node) -> None:
    """aten.select.int(x, dim, index): ``x[..., index]`` (a SLICE and a RESHAPE dropping the dim)."""
    x = n.args[0]
    d = int(arg(n, 1, "dim")) % len(b.tshape(x))
    _index(b, n, x, (slice(None),) * d + (int(arg(n, 2, "index")),))


def moves() -> dict[str, Handler]:
    """The data-movement handlers by function, method and ATen name."""
    return {
        "view": _reshape, "reshape": _reshape, "_unsafe_view": _reshape, "flatten": _reshape, "unflatten": _reshape,
        "squeeze": _reshape, "unsqueeze": _reshape, "view_as": _reshape, "reshape_as": _reshape, "expand": _expand,
        "expand_as": _expand, "repeat": _repeat, "narrow": _narrow, "pixel_shuffle": _pixel_shuffle,
        "pixel_unshuffle": _pixel_shuffle,
        "permute": _permute, "transpose": _permute, "swapaxes": _permute, "t": _permute,
        "contiguous": _alias, "clone": _alias, "detach": _alias, "to": _alias, "float": _alias, "type_as": _alias,
        "alias": _alias, "_to_copy": _alias, "lift_fresh_copy": _alias, "dropout": _dropout, "dropout1d": _dropout,
        "dropout2d": _dropout, "dropout3d": _dropout, "alpha_dropout": _dropout, "feature_alpha_dropout": _dropout,
        "feature_dropout": _alias, "stochastic_depth": _alias, "drop_path": _alias,
        "cat": _cat, "concat": _cat, "concatenate": _cat, "stack": _stack,
        "split": _split, "split_with_sizes": _split, "chunk": _split, "unbind": _split, "tensor_split": _split,
        "getitem": _getitem, "slice": _slice, "select": _select, "pad": _pad, "constant_pad_nd": _pad,
        "interpolate": _interpolate, "upsample_nearest2d": _interpolate, "upsample_bilinear2d": _interpolate,
        "roll": _roll, "channel_shuffle": _channel_shuffle, "native_channel_shuffle": _channel_shuffle,
    }
