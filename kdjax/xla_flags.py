"""Process settings kdjax applies before JAX starts: import this module before `jax` (kdjax.main, kdjax.bench).

XLA flags (CPU only, appended to XLA_FLAGS; a flag already named in the environment's XLA_FLAGS wins, so
`XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true python -m kdjax.main ...` turns one back):

  --xla_cpu_enable_concurrency_optimized_scheduler=false
      XLA:CPU's default scheduler orders a step to run independent ops side by side; on the
      resnet32x4→resnet8x4 step that keeps more activations alive at once: 350 → 241 MB of temporary buffers,
      same speed (measured alternately, benchmarks/README.md).

and glibc malloc's arena count (`kdjax.host_memory.configure_malloc`: 2 arenas instead of 8 per core).

`KDJAX_XLA_FLAGS=0` sets no XLA flag, `KDJAX_MALLOC=0` leaves malloc alone. Neither changes results beyond
float rounding; the tests pass with and without them.
"""

import os

CPU_FLAGS = {
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
}


def apply(flags=None) -> str:
    """Add `flags` (default CPU_FLAGS) to XLA_FLAGS unless already named there; returns the resulting XLA_FLAGS.
    Only effective before JAX creates its CPU backend (the first computation)."""
    current = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("KDJAX_XLA_FLAGS", "1") == "0":
        return current
    named = {item.split("=", 1)[0] for item in current.split()}
    extra = [f"{k}={v}" for k, v in (CPU_FLAGS if flags is None else flags).items() if k not in named]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current] + extra).strip()
    return os.environ.get("XLA_FLAGS", "")


apply()

from kdjax import host_memory  # noqa: E402  (no jax import at module level)

host_memory.configure_malloc()
