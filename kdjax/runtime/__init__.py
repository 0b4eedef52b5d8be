"""What a run needs around the step: devices and mesh, multi-host start-up, preemption, checkpoints, XLA flags, host
memory, the run log and workdir housekeeping. Importing this package imports nothing heavy (no JAX): `xla_flags` must
be importable before JAX starts."""
