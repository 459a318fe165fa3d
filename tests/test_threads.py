"""hwsim never changes the thread count a user set in torch: Numba's OpenMP threading layer, started by the first
parallel kernel after torch's own pool has started, leaves torch at the machine's count; hwsim.simulate and
hwsim.evaluate put it back. Numba's layer is not started at import: a process holding OpenMP threads must not
fork, and the sweep workers fork from a server that imports hwsim."""
import subprocess
import sys

_SCRIPT = """
import numpy as np, torch
torch.set_num_threads(1)
assert torch.get_num_threads() == 1  # torch's pool started, as after running a model
import hwsim, numba
x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
hwsim.simulate("resnet20", "imc/isaac", x=x)  # its parallel kernels start Numba's threading layer
print(numba.threading_layer(), torch.get_num_threads())
hwsim.evaluate("resnet20", "imc/isaac", x, np.zeros(2, dtype=np.int64), workers=1)
print(torch.get_num_threads())
"""


def test_a_simulation_keeps_the_torch_thread_count_the_user_set():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2].split()[-1] == "1" and lines[-1] == "1", lines
