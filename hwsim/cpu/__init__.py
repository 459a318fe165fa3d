"""Embedded-CPU target: Cortex-A (A53, A72, A76), Cortex-M (M4, M7) and the calibrated host.

``simulate(graph, spec, x=None, *, seed=0, threads=None, fold_bn=True) -> Result`` runs the fp32
functional model and the per-layer roofline cost model (:mod:`hwsim.cpu.cost`);
``calibrate(out_path=None, quick=False, rounds=None) -> CPUSpec`` measures this machine and writes a ``cpu/host``
preset (:mod:`hwsim.cpu.calibrate`).
"""
from hwsim.cpu.simulate import cost_report, memory_verdict, simulate
from hwsim.cpu.spec import CPUSpec

__all__ = ["SPEC", "CPUSpec", "simulate", "cost_report", "memory_verdict", "calibrate", "cost_model_version"]

SPEC = CPUSpec  # the target contract (hwsim.target.Target): this target's spec class


def cost_model_version() -> str:
    """This target's cost-model version, part of every stored sweep row's key: a digest of its source
    (:func:`hwsim.target.source_version`), so any edit of its model recomputes stale rows."""
    from hwsim.target import source_version

    return source_version("cpu")



def calibrate(out_path=None, quick: bool = False, rounds: int | None = None) -> CPUSpec:
    """Measure this machine and write a host preset; see :func:`hwsim.cpu.calibrate.calibrate`."""
    from hwsim.cpu.calibrate import calibrate as _calibrate

    return _calibrate(out_path=out_path, quick=quick, rounds=rounds)
