"""Co-design loops: hardware sweeps, Pareto fronts, multi-objective search, NetCut trimming.

Importing this package is cheap: torch, Optuna and Dask are imported inside the functions that
use them. Each name below is the function, not the submodule of the same name (bound after the
submodules are imported, so ``hwsim.codesign.sweep`` is always the function).
"""
from __future__ import annotations

from hwsim.codesign.hw_aware import hw_aware as hw_aware
from hwsim.codesign.netcut import NetCutResult, netcut
from hwsim.codesign.pareto import pareto_front
from hwsim.codesign.search import SearchResult, search
from hwsim.codesign.sweep import sweep, sweep_from_yaml

__all__ = ["sweep", "sweep_from_yaml", "pareto_front", "search", "netcut", "NetCutResult", "SearchResult"]
