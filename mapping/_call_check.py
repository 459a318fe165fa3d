"""The end-to-end check of :func:`mapping.trace.trace`: the traced graph module computes what *calling* the model
computes (a hook on the model, a forward replaced on the instance, autocast, a value frozen by tracing would
otherwise give a verified graph of something else)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from hwsim.errors import ConversionError, first_line
from mapping._model_state import eval_mode

__all__ = ["check_calls"]


def _leaves(v: Any) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, dict):
        v = list(v.values())
    return [t for e in v for t in _leaves(e)] if isinstance(v, (list, tuple)) else []


def check_calls(model: nn.Module, gm: fx.GraphModule, x: torch.Tensor) -> None:
    """The traced graph module ``gm`` (what the IR was converted from, node by node) computes what calling the model
    computes, on the sample ``x`` and on two other inputs (values in [0, 1), and wide ones; skipped where the model
    itself raises): a hook on the model itself, a forward replaced on the instance, autocast, or a value computed
    from the input and frozen by tracing (``.item()``, ``.tolist()``, a Python branch on values) would otherwise give
    a verified graph of something else. The model runs with torch's fused attention fast path off (the path tracing
    takes: the same function, other rounding, 1.5e-5 apart on wide inputs to nn.TransformerEncoder)."""
    rng = np.random.default_rng(1)
    others = [rng.random(tuple(x.shape)), 30.0 * rng.standard_normal(tuple(x.shape))]  # image-like, wide
    fast = torch.backends.mha.get_fastpath_enabled()
    for what, xi in [("the check input", x)] + [("another input", torch.from_numpy(o.astype(np.float32))) for o in others]:
        try:
            torch.backends.mha.set_fastpath_enabled(False)
            with torch.no_grad(), eval_mode(model):  # as traced (the user's train/eval flags come back after)
                want, got = _leaves(model(xi)), _leaves(gm(xi))
        except Exception as e:  # a model that refuses such values (a range check): nothing to compare there
            if what == "another input":
                continue
            raise ConversionError(f"{type(model).__name__}: calling the model on the check input fails after "
                                  f"tracing it: {first_line(e)}") from None
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
        same = len(want) == len(got) and all(
            w.numel() == g.numel() and torch.allclose(g.reshape(w.shape).float(), w.float(), rtol=1e-5,
                                                      atol=1e-6 * _finite_max(w), equal_nan=True)
            for w, g in zip(want, got))
        if not same:
            raise ConversionError(f"{type(model).__name__}: its traced graph computes other outputs than calling the "
                                  f"model on {what}: a hook on the model, a forward replaced on the instance, autocast, "
                                  "or a value computed from the input that tracing froze (.item(), .tolist(), a branch "
                                  "on values); hwsim converts the module's own forward only")


def _finite_max(w: torch.Tensor) -> float:
    """The largest finite magnitude of ``w`` (0 when none: a NaN or inf output must not make the tolerance one)."""
    finite = w[torch.isfinite(w)].abs()
    return float(finite.max()) if finite.numel() else 0.0
