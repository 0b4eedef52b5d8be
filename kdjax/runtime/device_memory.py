"""Does a compiled step fit in its device's memory? Decided from XLA's own estimate before the step first runs.

The rule (MARGIN): a step may plan at most 90% of the memory free for it; the rest is headroom for what XLA's
estimate does not count (allocator fragmentation, the input pipeline's prefetched batches, runtime workspace).

What is free: on GPU/TPU the device's `memory_stats()` limit minus what is already in use on it; on the CPU backend
the host's available memory (/proc/meminfo MemAvailable) shared by the process's CPU devices. When the step's
arguments (state, frozen models) are already on the devices — the first training step — only what the step adds
(outputs not written in place, temporaries, code) is compared with what is still free.

`KDJAX_DEVICE_MEMORY_BYTES` replaces the per-device free memory (to cap a shared device, and in tests).
"""

import os
from typing import Optional, Tuple

from kdjax.errors import ConfigError

MARGIN = 0.9
ENV_LIMIT = "KDJAX_DEVICE_MEMORY_BYTES"


def _host_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def free_bytes(device=None) -> Tuple[Optional[int], str]:
    """(bytes one device can still use, where that figure comes from); (None, why) when unknown."""
    import jax

    if os.environ.get(ENV_LIMIT):
        return int(float(os.environ[ENV_LIMIT])), f"${ENV_LIMIT}"
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        host = _host_available()
        if host is None:
            return None, "host memory unknown"
        n = sum(1 for d in jax.local_devices() if d.platform == "cpu")
        return host // max(n, 1), f"host MemAvailable / {n} CPU device{'s' if n > 1 else ''}"
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - some backends do not report
        stats = {}
    limit = stats.get("bytes_limit")
    if not limit:
        return None, f"{device.device_kind} reports no memory limit"
    return int(limit) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} memory_stats() bytes_limit - in use"


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if abs(n) >= 2 ** 28 else f"{n / 2 ** 20:.1f} MiB"


def check_fits(memory, config, *, arguments_resident: bool, what: str = "the train step", device=None) -> None:
    """Raise ConfigError (naming train.batch_size and train.grad_accum_steps) when `memory` (a
    `kdjax.runtime.compiled.Memory`) needs more than MARGIN of what one device has free."""
    free, source = free_bytes(device)
    if free is None:
        return
    need = memory.total - (memory.arguments if arguments_resident else 0)
    if need <= MARGIN * free:
        return
    batch = int(config.train.batch_size)
    accum = int(config.train.get("grad_accum_steps", 1) or 1)
    raise ConfigError(
        "train.batch_size",
        f"{what} needs {gib(need)} per device by XLA's estimate ({gib(memory.total)} in all: arguments "
        f"{gib(memory.arguments)}, temporaries {gib(memory.temporaries)}), more than {int(MARGIN * 100)}% of the "
        f"{gib(free)} free ({source}). Lower train.batch_size (now {batch}) or raise train.grad_accum_steps (now "
        f"{accum}: each micro-batch is batch_size / grad_accum_steps), or use more devices / mesh.fsdp")
