"""The in-memory-computing crossbar accelerator target: ``fit`` and ``simulate``.

    import hwsim, nets
    hwsim.fit(nets.get("itnet"), "imc/edge-small").fits
    r = hwsim.simulate("resnet18", "imc/isaac", mode="pipelined").report   # IMCReport
"""
from hwsim.imc.fit import FitReport, fit
from hwsim.imc.simulate import IMCReport, simulate
from hwsim.imc.spec import AdcMode, Duplication, IMCSpec, SignedWeights

__all__ = ["SPEC", "IMCSpec", "SignedWeights", "Duplication", "AdcMode", "FitReport", "fit", "IMCReport", "simulate",
           "cost_model_version"]

SPEC = IMCSpec  # the target contract (hwsim.target.Target): this target's spec class


def cost_model_version() -> str:
    """This target's cost-model version, part of every stored sweep row's key: a digest of its source
    (:func:`hwsim.target.source_version`), so any edit of its model recomputes stale rows."""
    from hwsim.target import source_version

    return source_version("imc")

