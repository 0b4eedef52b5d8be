"""Model FLOP utilisation: a step's FLOPs (XLA's cost analysis) against the peak of the device it ran on.

Peaks: on the CPU backend a float32 matmul timed in this process (what XLA:CPU reaches on a large dense product
with the cores it has now, a measured ceiling rather than a datasheet one); on GPU/TPU the chip's published dense
(no sparsity) peak for the step's compute precision, from PEAKS. float32 steps are compared with the TF32
tensor-core peak on NVIDIA chips and the bf16 MXU peak on TPUs, since XLA computes float32 convolutions and dot
products there at that precision by default (JAX's default matmul precision).
"""

import time
from typing import Optional, Tuple

# TFLOP/s per chip, dense. NVIDIA: SXM datasheets (H100/H200 SXM5, A100 SXM4); "fp32" is the CUDA-core rate,
# "tf32" the tensor-core rate XLA uses for float32 by default. TPU: Google Cloud's per-chip bf16 peaks; TPUs have no
# separate float32 peak (float32 matmuls run as bf16 passes on the MXU).
PEAKS = {
    "H200": {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0},
    "H100": {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "TPU v4": {"bf16": 275.0},
    "TPU v5 lite": {"bf16": 197.0},   # v5e
    "TPU v5e": {"bf16": 197.0},
    "TPU v5p": {"bf16": 459.0},
    "TPU v5": {"bf16": 459.0},        # device_kind of a v5p
    "TPU v6 lite": {"bf16": 918.0},   # v6e (Trillium)
    "TPU v6e": {"bf16": 918.0},
}


def published_peak(device_kind: str, platform: str, precision: str) -> Optional[Tuple[float, str]]:
    """(FLOP/s, what it is) for a GPU/TPU `device_kind` at `precision` ('float32' | 'bfloat16'), or None."""
    # longest name first: "TPU v5 lite" before "TPU v5", "H200" before "H100"
    for name in sorted(PEAKS, key=len, reverse=True):
        if name.lower() in device_kind.lower():
            table = PEAKS[name]
            if precision == "bfloat16":
                key = "bf16"
            elif platform == "tpu":
                key = "bf16"   # float32 dots run as bf16 MXU passes by default
            else:
                key = "tf32"   # XLA:GPU's default for float32 convolutions and dots on Ampere and newer
            return table[key] * 1e12, f"{name} published {key} dense peak, {table[key]:g} TFLOP/s per chip"
    return None


def measured_cpu_peak(n: int = 2048, reps: int = 8) -> Tuple[float, str]:
    """(FLOP/s, what it is): a float32 n×n matmul, jitted, the fastest of `reps` runs after a warm-up (a peak: the
    median let a moment of machine load halve it and MFU pass 1). It is XLA's own matmul, so kernels faster than it
    (the oneDNN convolutions, kernels='onednn') can still show MFU above 1 on the CPU."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(mm(a, b))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(mm(a, b))
        times.append(time.perf_counter() - t)
    flops = 2.0 * n ** 3 / min(times)
    return flops, f"fastest float32 {n}x{n} matmul in this process, {flops / 1e9:.1f} GFLOP/s"


def peak(precision: str = "float32") -> Tuple[Optional[float], str]:
    """The peak to compare with, per device, for this process' devices: (FLOP/s or None, what it is)."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return measured_cpu_peak()
    found = published_peak(device.device_kind, device.platform, precision)
    if found is None:
        return None, f"no published peak known for {device.device_kind!r} (kdjax/tools/mfu.py PEAKS)"
    return found


def step_flops(compiled, devices: int) -> float:
    """FLOPs of one step over all devices: XLA's cost analysis describes one device's partitioned program; it counts
    custom calls as zero, so the oneDNN convolutions' (kernels='onednn') are added from the program's text."""
    from kdjax.kernels import onednn
    from kdjax.runtime.compiled import cost

    return (cost(compiled)["flops"] + onednn.hlo_flops(compiled.as_text())) * devices
