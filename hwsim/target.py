"""The target contract: what a simulator package ``hwsim.<target>`` provides, and :func:`load_target`, which imports
one and checks it before :func:`hwsim.simulate` or :func:`hwsim.fit` uses it.

A target package (``hwsim.cpu``, ``hwsim.imc``, ``hwsim.fpga``) implements :class:`Target` with module-level names:

- ``SPEC``: its spec class, a frozen dataclass registered with ``@spec_class("<target>")`` (:mod:`hwsim.specs`);
- ``simulate(graph, spec, x=None, *, seed=0, **options) -> Result``;
- ``cost_model_version() -> str``: the version of its cost model, part of every stored result's key (a resumed
  sweep recomputes rows an older model wrote instead of reusing them). The shipped targets derive it from their
  source with :func:`source_version`, so nothing is bumped by hand;
- optionally ``fit(graph, spec)``: whether the network's weights fit the hardware's on-chip memory.

How to add a target against this contract: docs/contributing.md ("Adding a target").
"""
from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hwsim.errors import HwsimError, UnknownNameError

if TYPE_CHECKING:
    import numpy as np

    from hwsim.report import Result
    from mapping.graph import Graph

__all__ = ["Target", "TargetContractError", "load_target", "contract_problems", "source_version", "TARGETS",
           "COMMON_SOURCES"]

TARGETS = ("cpu", "imc", "fpga")  # the target packages hwsim ships
# What every target's numbers go through besides its own package: folders and files under the repository root.
COMMON_SOURCES = ("hwsim/kernels", "hwsim/functional.py", "hwsim/report.py", "hwsim/specs.py", "hwsim/api.py",
                  "hwsim/evaluate.py", "hwsim/evaluate_data.py", "hwsim/codesign/sweep_eval.py", "mapping")


class TargetContractError(HwsimError):
    """``hwsim.<target>`` exists but does not implement :class:`Target` (a programming error in the package)."""


@runtime_checkable
class Target(Protocol):
    """What ``hwsim.<target>`` provides (module-level names; ``fit`` is optional and checked by
    :func:`load_target` when present)."""

    SPEC: type

    def simulate(self, graph: Graph, spec: Any, x: np.ndarray | None = None, *, seed: int = 0,
                 **options: Any) -> Result: ...

    def cost_model_version(self) -> str: ...


def contract_problems(module: Any, name: str) -> list[str]:
    """What ``module`` lacks of the contract for target ``name`` (empty: it implements it)."""
    problems = []
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, type):
        problems.append("SPEC (its spec class)")
    elif getattr(spec, "target", None) != name:
        problems.append(f"SPEC registered for target {name!r} (@spec_class({name!r}); "
                        f"{spec.__name__} is for {getattr(spec, 'target', None)!r})")
    if not callable(getattr(module, "simulate", None)):
        problems.append("simulate(graph, spec, x=None, *, seed=0, **options)")
    if not callable(getattr(module, "cost_model_version", None)):
        problems.append("cost_model_version() -> str")
    if hasattr(module, "fit") and not callable(module.fit):
        problems.append("fit(graph, spec) callable (or no fit at all)")
    return problems


def load_target(name: str) -> Target:
    """The target package ``hwsim.<name>``, checked against :class:`Target`: a one-line
    :class:`~hwsim.errors.UnknownNameError` for a name with no package ``hwsim.<name>``, a one-line
    :class:`TargetContractError` naming what is missing for a package that does not implement the contract."""
    if not isinstance(name, str) or not name.isidentifier():
        raise HwsimError(f"target must be a target name such as {TARGETS[0]!r}, got {name!r}")
    module_name = f"hwsim.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise UnknownNameError("target", name, TARGETS) from None
    problems = contract_problems(module, name)
    if problems:
        raise TargetContractError(f"{module_name} does not implement the target contract (hwsim.target.Target): "
                                  f"missing {'; '.join(problems)}")
    return module  # type: ignore[return-value]


def _root() -> Path:
    return Path(__file__).resolve().parent.parent  # the repository root: the parent of the hwsim package


@functools.lru_cache(maxsize=16)
def source_digest(*parts: str) -> str:
    """SHA-256 prefix (12 hex digits) of the ``.py`` files under ``parts`` (folders, recursively, or files; relative
    to the repository root): their relative paths and bytes, in sorted order. Computed once per process."""
    root = _root()
    files: list[Path] = []
    for part in parts:
        p = root / part
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else [])
    h = hashlib.sha256()
    for f in sorted(set(files)):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def source_version(name: str) -> str:
    """A target's cost-model version derived from its source: a digest of ``hwsim/<name>/`` and
    :data:`COMMON_SOURCES`. Any edit there (a cost formula, a kernel, a mapping rule, also a comment) gives a new
    version; nothing has to be bumped by hand. (The same digest as
    :func:`hwsim.codesign.points.cost_model_version`.)"""
    return source_digest(f"hwsim/{name}", *COMMON_SOURCES)
