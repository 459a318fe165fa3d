"""FPGA XNOR/popcount engine: FINN-style folded streaming dataflow with bit-exact binary inference.

``simulate(graph, spec, x, *, seed=0, folding="auto", target_fps=None, kbit="decomposed")``
(normally reached through :func:`hwsim.simulate`) returns a ``Result`` whose report is an
:class:`FPGAReport` (``fps``, ``bram18``, ``luts``, per-layer ``pe``/``simd``/``cycles``).
"""
from hwsim.fpga.simulate import FPGAReport, simulate
from hwsim.fpga.spec import FPGASpec

__all__ = ["SPEC", "simulate", "FPGAReport", "FPGASpec", "cost_model_version"]

SPEC = FPGASpec  # the target contract (hwsim.target.Target): this target's spec class


def cost_model_version() -> str:
    """This target's cost-model version, part of every stored sweep row's key: a digest of its source
    (:func:`hwsim.target.source_version`), so any edit of its model recomputes stale rows."""
    from hwsim.target import source_version

    return source_version("fpga")

