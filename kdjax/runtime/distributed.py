"""Multi-host start-up: JAX's distributed runtime on Cloud TPU pods and GPU clusters; a no-op on one host.

`initialize()` (called by `kdjax.main` before JAX touches a device) decides from, in order:

1. explicit settings: `--coordinator_address`, `--num_processes`, `--process_id` (and `--local_device_ids`), or
   the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (KDJAX_* aliases
   accepted; JAX_LOCAL_DEVICE_IDS is read by JAX itself). With all three given, JAX's cluster auto-detection is
   switched off, so every local device stays visible unless local device ids are given (one process per node
   with all its GPUs; pass `--local_device_ids=$SLURM_LOCALID` for one process per GPU);
2. a Cloud TPU VM: `jax.distributed.initialize()` with no arguments (JAX reads the slice from the TPU metadata);
3. a Slurm job step with several tasks: JAX's Slurm detection (coordinator on the first node, one process per
   task; each process sees the GPU of its local task id);
4. otherwise nothing: one process.

`mode` "on" always initialises (JAX's own auto-detection: TPU, Slurm, Open MPI, Kubernetes, ...); "off" never does.
"""

import os
from typing import Optional, Sequence, Union

import jax

from kdjax.errors import KdjaxError


class FlagError(KdjaxError):
    """A multi-host flag or environment variable is wrong (the message starts with the flag)."""

    def __init__(self, flag: str, message: str):
        self.flag = flag
        super().__init__(f"{flag}: {message}")

_ENV = {
    "coordinator_address": ("KDJAX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("KDJAX_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("KDJAX_PROCESS_ID", "JAX_PROCESS_ID"),
}


def _env(name: str) -> Optional[str]:
    for var in _ENV[name]:
        value = os.environ.get(var)
        if value not in (None, ""):
            return value
    return None


def _int(value, flag: str) -> Optional[int]:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FlagError(flag, f"must be an integer, got {value!r}") from None


def parse_device_ids(value: Union[None, str, int, Sequence[int]]) -> Optional[list]:
    if value in (None, ""):
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise FlagError("--local_device_ids", f"must be comma-separated integers, got {value!r}") from None
    return [int(v) for v in value]


def running_on_cloud_tpu() -> bool:
    try:
        from jax._src.cloud_tpu_init import running_in_cloud_tpu_vm  # JAX's own check (private)

        return bool(running_in_cloud_tpu_vm)
    except ImportError:  # fall back on what TPU VM images set
        return bool(os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("TPU_ACCELERATOR_TYPE"))


def _slurm_tasks() -> int:
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if not all(v in os.environ for v in needed):
        return 0
    return _int(os.environ["SLURM_NTASKS"], "SLURM_NTASKS") or 0


def plan(coordinator_address=None, num_processes=None, process_id=None, local_device_ids=None,
         mode: str = "auto") -> Optional[dict]:
    """The keyword arguments `initialize` would pass to `jax.distributed.initialize`, or None for one process."""
    if mode not in ("auto", "on", "off"):
        raise FlagError("--distributed", f"must be auto, on or off, got {mode!r}")
    if mode == "off":
        return None
    coordinator = coordinator_address or _env("coordinator_address")
    num = _int(num_processes if num_processes is not None else _env("num_processes"), "--num_processes")
    pid = _int(process_id if process_id is not None else _env("process_id"), "--process_id")
    device_ids = parse_device_ids(local_device_ids)
    given = {k: v for k, v in (("coordinator_address", coordinator), ("num_processes", num),
                               ("process_id", pid)) if v is not None}
    if len(given) == 3:
        if num < 1 or not 0 <= pid < num:
            raise FlagError("--process_id", f"must be in [0, {num}) for --num_processes={num}, got {pid}")
        if num == 1 and mode == "auto":
            return None
        kwargs = dict(given, cluster_detection_method="deactivate")
        if device_ids is not None:
            kwargs["local_device_ids"] = device_ids
        return kwargs
    if given and (num is None or num > 1):
        missing = [f"--{k}" for k in ("coordinator_address", "num_processes", "process_id") if k not in given]
        raise FlagError(missing[0], f"multi-host runs need --coordinator_address, --num_processes and "
                                      f"--process_id together (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                                      f"JAX_PROCESS_ID); missing: {', '.join(missing)}")
    extra = {"local_device_ids": device_ids} if device_ids is not None else {}
    if mode == "on" or running_on_cloud_tpu() or _slurm_tasks() > 1:
        return extra
    return None


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, local_device_ids=None, mode: str = "auto") -> bool:
    """Start JAX's distributed runtime when several processes are expected; True if it is (now) running."""
    if jax.distributed.is_initialized():
        return True
    kwargs = plan(coordinator_address, num_processes, process_id, local_device_ids, mode)
    if kwargs is None:
        return False
    jax.distributed.initialize(**kwargs)
    return True


def barrier(name: str):
    """Wait for every process (a no-op on one), e.g. so that process 0's workdir changes are seen by all."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
