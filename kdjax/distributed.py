"""Multi-host start-up: JAX's distributed runtime on Cloud TPU pods and GPU clusters; a no-op on one host."""

import os

import jax


def initialize():
    """Initialise when several processes are expected (env vars or TPU pod metadata); otherwise do nothing."""
    if jax.distributed.is_initialized() if hasattr(jax.distributed, "is_initialized") else False:
        return
    coordinator = os.environ.get("KDJAX_COORDINATOR_ADDRESS") or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num = os.environ.get("KDJAX_NUM_PROCESSES") or os.environ.get("JAX_NUM_PROCESSES")
    pid = os.environ.get("KDJAX_PROCESS_ID") or os.environ.get("JAX_PROCESS_ID")
    if coordinator and num and pid is not None and int(num) > 1:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(num), process_id=int(pid))
    elif os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()
