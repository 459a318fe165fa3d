"""The zoo registry: builders registered by name, with published reference counts.

A builder is a plain function ``fn(**kw) -> torch.nn.Module``; :func:`register` attaches a
:class:`NetInfo` (default input shape, task, citation, published parameter and MAC counts) to it.
:func:`get` checks the keyword arguments against the builder's signature, builds the model under
a fixed seed (without disturbing the caller's global RNG) and returns it in ``eval()`` mode.

Counting conventions used for ``published_params`` / ``published_macs`` (see ``tests/test_zoo.py``
and ``benchmarks/zoo_counts.py``): parameters = number of distinct parameter elements (a block
shared across iterations counts once); MACs = conv ``OH*OW*Cout*(Cin/groups)*kh*kw`` + linear
``in*out``, nothing else (BN, activations, pooling, adds are not counted).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hwsim.errors import HwsimError, UnknownNameError

__all__ = [
    "NetInfo",
    "UnknownNetError",
    "NetArgumentError",
    "register",
    "get",
    "names",
    "info",
]

TASKS = ("classification", "segmentation", "anomaly-detection")


class UnknownNetError(UnknownNameError):
    """A network name that is not in the zoo (suggests the closest registered names)."""

    def __init__(self, name: str, choices):
        super().__init__("net", name, choices)


class NetArgumentError(HwsimError, TypeError):
    """A keyword argument a zoo builder does not accept, or a value out of its range."""


@dataclass(frozen=True, slots=True)
class NetInfo:
    """What the zoo knows about one registered network.

    input_shape: default input shape including batch 1, e.g. ``(1, 3, 224, 224)``.
    task: ``"classification"`` or ``"segmentation"``.
    source: citation of the paper / official repository the layer configuration follows.
    published_params: parameter count from ``counts_source`` (number of weights, not millions), or None.
    published_macs: multiply-accumulates per image from ``counts_source``, or None.
    counts_source: which table/figure of which paper the published counts come from.
    notes: why our counts differ from the published ones (where they do by more than 2 %), and
        any modelling choice a user should know.
    tags: free labels, e.g. ``("binary",)``, ``("iterative",)``, ``("cifar",)``.
    """

    name: str
    input_shape: tuple[int, ...]
    task: str
    source: str
    published_params: float | None = None
    published_macs: float | None = None
    counts_source: str = ""
    notes: str = ""
    tags: tuple[str, ...] = ()


_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}
_INFOS: dict[str, NetInfo] = {}


def register(
    name: str,
    *,
    input_shape: tuple[int, ...],
    task: str,
    source: str,
    published_params: float | None = None,
    published_macs: float | None = None,
    counts_source: str = "",
    notes: str = "",
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering ``builder(**kw) -> nn.Module`` under ``name``.

    The same builder may be decorated several times (e.g. ``resnet18`` and ``resnet34`` from one
    function through ``functools.partial``-style wrappers). Registering a name twice is an error.
    """
    if not isinstance(name, str) or not name:
        raise NetArgumentError(f"net name must be a non-empty string, got {name!r}")
    if task not in TASKS:
        raise NetArgumentError(f"net {name!r}: task must be one of {TASKS}, got {task!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or shape[0] != 1 or any(s <= 0 for s in shape):
        raise NetArgumentError(f"net {name!r}: input_shape must start with batch 1 and be positive, got {input_shape!r}")
    net_info = NetInfo(
        name=name,
        input_shape=shape,
        task=task,
        source=source,
        published_params=None if published_params is None else float(published_params),
        published_macs=None if published_macs is None else float(published_macs),
        counts_source=counts_source,
        notes=notes,
        tags=tuple(tags),
    )

    def deco(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _BUILDERS:
            raise NetArgumentError(f"net {name!r} is registered twice")
        _BUILDERS[name] = builder
        _INFOS[name] = net_info
        return builder

    return deco


def names() -> list[str]:
    """All registered network names, sorted."""
    return sorted(_BUILDERS)


def info(name: str) -> NetInfo:
    """The :class:`NetInfo` of ``name``; raises :class:`UnknownNetError` for an unknown name."""
    if name not in _INFOS:
        raise UnknownNetError(name, names())
    return _INFOS[name]


def keywords(name: str) -> list[str]:
    """The keyword arguments the builder of ``name`` accepts (``seed`` is always accepted by :func:`get`)."""
    if name not in _BUILDERS:
        raise UnknownNetError(name, names())
    return sorted(_accepted(_BUILDERS[name]))


def _accepted(builder: Callable[..., torch.nn.Module]) -> set[str]:
    params = inspect.signature(builder).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def get(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    """Build network ``name`` with builder keywords ``kw``, initialised under ``torch.manual_seed(seed)``.

    The caller's global torch RNG state is left untouched. The model is returned in ``eval()`` mode.
    Raises :class:`UnknownNetError` for an unknown name and :class:`NetArgumentError` for a keyword
    the builder does not take (the message lists the valid ones).
    """
    if name not in _BUILDERS:
        raise UnknownNetError(name, names())
    builder = _BUILDERS[name]
    valid = _accepted(builder)
    bad = sorted(set(kw) - valid)
    if bad:
        raise NetArgumentError(
            f"net {name!r} got unknown keyword argument(s) {', '.join(bad)}; "
            f"valid: {', '.join(sorted(valid | {'seed'}))}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise NetArgumentError(f"net {name!r}: seed must be an int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = builder(**kw)
        except (ValueError, ZeroDivisionError) as e:  # e.g. torch: "out_channels must be divisible by groups"
            raise NetArgumentError(f"net {name!r} cannot be built with {kw}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise NetArgumentError(f"builder of net {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    # let hwsim.simulate/fit use the zoo's default input shape for this module (plain attributes)
    model.hwsim_name = name
    model.hwsim_input_shape = _INFOS[name].input_shape
    return model.eval()


def check(cond: bool, msg: str) -> None:
    """Raise :class:`NetArgumentError` with ``msg`` unless ``cond`` (for builders' value checks)."""
    if not cond:
        raise NetArgumentError(msg)
