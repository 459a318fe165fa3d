"""NetCut's checks (:mod:`hwsim.codesign.netcut`): its arguments, the decomposition of a model into blocks, each
trimmed network's output, and the user's ``train_fn`` — every failure a one-line :class:`HwsimError`."""
from __future__ import annotations

import time
from typing import Any

from hwsim.errors import HwsimError, ShapeError
from hwsim.specs import is_integer, is_real

__all__ = ["TrainFnError", "as_model", "check_num_classes", "check_decomposition", "check_trn_output", "train"]

_POOLS = ("AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "MaxPool", "Flatten", "Dropout", "Identity")


class TrainFnError(HwsimError):
    """The user's ``train_fn`` raised, or returned something that is not an accuracy in [0, 1]."""


def fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def as_model(model: Any) -> Any:
    """A torch module: a zoo name is built with ``nets.get`` (seed 0, eval mode); anything else that is not a
    torch module is refused in one line."""
    from torch import nn

    if isinstance(model, str):
        import nets

        return nets.get(model)
    if not isinstance(model, nn.Module):
        raise HwsimError(f"netcut: model must be a torch module or a zoo name, got {type(model).__name__}")
    return model


def check_num_classes(num_classes: Any) -> None:
    if num_classes is not None and (not is_integer(num_classes) or num_classes < 1):
        raise HwsimError(f"netcut: num_classes must be an integer >= 1 (or None: the model's last linear layer), "
                         f"got {num_classes!r}")


def _tail_variants(z, tail, how: str):
    """The model's classifier tail on the last block's output ``z``: before the first module that holds a linear
    layer, a feature map (N, C, H, W) is kept as is (``"as is"``: the module flattens it itself), flattened
    (``"flatten"``: ``torch.flatten(x, 1)`` in forward, VGG/LeNet style) or globally averaged and flattened
    (``"pool"``: ``x.mean((2, 3))`` in forward, ResNet style). Pooling/flatten modules met after the features
    are already flat are skipped (a ``Flatten`` registered after ``fc``)."""
    import torch
    from torch import nn

    for m in tail:
        if z.dim() == 2 and type(m).__name__.startswith(_POOLS):
            continue
        if z.dim() == 4 and how != "as is" and any(isinstance(c, nn.Linear) for c in m.modules()):
            z = torch.flatten(z.mean(dim=(2, 3)) if how == "pool" else z, 1)
        z = m(z)
    return z


def check_decomposition(model, blocks, input_shape, explicit: bool) -> list[tuple[int, ...]]:
    """Run the blocks one after the other; check that they, followed by the model's remaining children (its
    classifier tail, see :func:`_tail_variants`), reproduce the model's forward pass; return each block's output
    shape."""
    import torch

    from mapping.trace import eval_mode

    who = type(model).__name__
    advice = ("check that blocks=[(name, module), ...] lists every layer before the classifier in execution order"
              if explicit else "pass blocks=[(name, module), ...] in execution order")
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    shapes = []
    with eval_mode(model), torch.no_grad():
        y = x
        for name, m in blocks:
            try:
                y = m(y)
            except Exception as e:
                why = str(e).splitlines()[0] if str(e) else repr(e)
                if not shapes:  # the first block: the input does not fit
                    raise ShapeError(f"{who}: its first block {name!r} cannot take input_shape="
                                     f"{tuple(input_shape)}: {why}") from None
                raise HwsimError(f"{who} is not a plain chain of its children (block {name!r} fails on the "
                                 f"previous block's output: {why}); {advice}") from None
            shapes.append(tuple(y.shape))
        names = {n for n, _ in blocks}
        tail = [m for n, m in model.named_children()
                if n not in names and not any(b.startswith(n + ".") for b in names)]
        try:
            ref = model(x)
        except Exception as e:
            raise HwsimError(f"{who} fails on input_shape={tuple(input_shape)}: {type(e).__name__}: {e}") from None
        for how in ("as is", "flatten", "pool"):
            try:
                z = _tail_variants(y, tail, how)
            except Exception:
                continue
            if isinstance(ref, torch.Tensor) and ref.shape == z.shape and torch.allclose(ref, z, atol=1e-4, rtol=1e-4):
                return shapes
    tail_names = [type(m).__name__ for m in tail]
    raise HwsimError(f"{who}: its blocks followed by its classifier tail {tail_names} (a feature map flattened, "
                     f"or averaged, before the first linear layer) do not reproduce its forward pass; {advice}")


def check_trn_output(trn, input_shape, num_classes: int, head_fn, cut: str) -> None:
    """Run the trimmed network once on zeros: its output must be a (N, num_classes) tensor, else a one-line error
    naming ``head_fn`` (a head that forgot the pooling and flatten gives (N, H, W, classes))."""
    import torch

    from mapping.trace import eval_mode

    name = fn_name(head_fn)
    want = (int(input_shape[0]), int(num_classes))
    try:
        with eval_mode(trn), torch.no_grad():
            out = trn(torch.zeros(*input_shape))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise HwsimError(f"netcut: head_fn {name} gives a head that fails on the output of the cut after {cut!r}: "
                         f"{type(e).__name__}: {msg} (a head takes an (N, C, H, W) feature map and returns (N, "
                         f"num_classes) logits)") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != want:
        raise HwsimError(f"netcut: head_fn {name} gives a trimmed network (cut after {cut!r}) whose output is "
                         f"{shape}, not {want} (N, num_classes): a head must pool and flatten the feature map "
                         "before its linear layer")


def train(train_fn, model, cut: str) -> tuple[float, float]:
    """(accuracy, wall time in s) of ``train_fn(model)``; the accuracy must be a fraction in [0, 1]. An exception in
    ``train_fn`` becomes a one-line :class:`TrainFnError` naming it and the cut."""
    name = fn_name(train_fn)
    t0 = time.perf_counter()
    try:
        out = train_fn(model)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise TrainFnError(f"train_fn {name} raised on the TRN cut after {cut!r}: {type(e).__name__}: {msg}") from e
    dt = time.perf_counter() - t0
    acc = out.get("accuracy") if isinstance(out, dict) else out
    if not is_real(acc) or not 0.0 <= float(acc) <= 1.0:  # NaN fails the range test too
        raise TrainFnError(f"train_fn {name} returned {out!r} for the TRN cut after {cut!r}: it must return an "
                           "accuracy in [0, 1] (a fraction, not a percentage) or a dict with such an 'accuracy'")
    return float(acc), dt
