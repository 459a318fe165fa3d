"""Numba inference kernels shared by the hwsim simulators.

- :mod:`hwsim.kernels.fp32`: float32 conv/linear/pool/activation/resampling (PyTorch semantics).
- :mod:`hwsim.kernels.int8`: integer conv/GEMM accumulators, requantization, (de)quantization.

All kernels take and return numpy arrays (NCHW) and raise ``ValueError`` on bad arguments.
Importing this package does not import torch.
"""
from hwsim.kernels import fp32, int8

__all__ = ["fp32", "int8"]

