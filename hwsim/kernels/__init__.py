"""Numba inference kernels shared by the hwsim simulators.

- :mod:`hwsim.kernels.fp32`: float32 conv/linear/pool/activation/resampling (PyTorch semantics).
- :mod:`hwsim.kernels.int8`: integer conv/GEMM accumulators, requantization, (de)quantization.

All kernels take and return numpy arrays (NCHW) and raise ``ValueError`` on bad arguments.
Importing this package does not import torch. It starts Numba's threading layer: when that layer is OpenMP, its
start resets the OpenMP thread count, which torch (sharing libgomp) then reports and uses as its own; a count the
user set in torch before (``torch.set_num_threads(1)``) is put back, so a simulation never changes it.
"""
import sys

import numba

from hwsim.kernels import fp32, int8

__all__ = ["fp32", "int8"]


def _start_numba_threads() -> None:
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()  # launches the threading layer now, not at the first parallel kernel
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


_start_numba_threads()
