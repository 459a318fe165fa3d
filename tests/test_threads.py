"""hwsim never changes the thread count a user set in torch. Numba's OpenMP threading layer, when it starts after
torch's own OpenMP pool has started, leaves torch reporting (and using) the machine's thread count instead of the
one set; hwsim.kernels therefore starts that layer at import and puts torch's count back."""
import subprocess
import sys

_SCRIPT = """
import torch
torch.set_num_threads(1)
assert torch.get_num_threads() == 1  # torch's pool started, as after running a model
import hwsim, numba, numpy as np
hwsim.simulate("resnet20", "cpu/host", x=np.ones((1, 3, 32, 32), np.float32))  # loads hwsim.kernels
numba.get_num_threads()  # Numba's threading layer runs (a parallel kernel starts it the same way)
print(torch.get_num_threads())
"""


def test_importing_hwsim_keeps_the_torch_thread_count_the_user_set():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"
