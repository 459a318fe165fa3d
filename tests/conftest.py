"""Suite-wide settings: one torch thread, so tests behave the same on a loaded 2-core machine
(numbers are never timed in tests; benchmarks set their own threads).

Markers (registered in pyproject.toml): ``slow`` (more than ~10 s on a quiet 2-core machine) and ``subprocess``
(starts fresh Python processes). The README's command runs everything; the quick run leaves the slow tests out::

    python -m pytest -m "not slow" tests

Hypothesis profiles (``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE=NAME``); none has a deadline or the
too-slow health check, since both time the machine, not the code. A test's own ``@settings(max_examples=...)``
wins over the profile's:

- ``dev`` (default): random examples, remembered in ``.hypothesis/`` so a failure replays first;
- ``ci``: derandomized (the same examples on every run) and no example database: reproducible CI runs;
- ``thorough``: 10x the examples of tests that do not set their own count, for a hunt before a release.
"""
import os

import matplotlib
import torch
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")
torch.set_num_threads(1)

_UNTIMED = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("dev", **_UNTIMED)
settings.register_profile("ci", derandomize=True, database=None, **_UNTIMED)
settings.register_profile("thorough", max_examples=1000, **_UNTIMED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
