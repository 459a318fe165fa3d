"""The parts of ``hwsim calibrate`` (:mod:`hwsim.cpu.calibrate` is the entry, :func:`hwsim.cpu.calibrate.calibrate`),
one job per module:

- :mod:`~hwsim.cpu.calibration.host`: facts about this machine and its PyTorch runtime (CPU model, caches, ISA,
  cores, memory; the runtime's dispatch thresholds), read, not timed;
- :mod:`~hwsim.cpu.calibration.workloads`: the probe layers: synthetic layers and layer chains (torch modules);
- :mod:`~hwsim.cpu.calibration.timing`: the measurement loops (peak throughput, bandwidths, overheads, layers)
  and one round of them;
- :mod:`~hwsim.cpu.calibration.fit`: fitting spec fields to measured times through the cost model;
- :mod:`~hwsim.cpu.calibration.child`: the all-thread timing child processes and the protocol with them.

What was measured on the calibration machine while these were designed:
``docs/targets/cpu-calibration.md``.
"""
