"""Process settings kdjax applies before JAX starts: import this module before `jax` (kdjax.main, kdjax.tools.bench).

XLA flags (CPU only, appended to XLA_FLAGS; a flag already named in the environment's XLA_FLAGS wins, so
`XLA_FLAGS=--xla_cpu_use_fusion_emitters=true python -m kdjax.main ...` turns one back). Measured on the
resnet32x4→resnet8x4 DKD step (benchmarks/README.md), each alternately against its absence:

  --xla_cpu_experimental_ynn_fusion_type=   (empty: no YNNPACK fusions)
      XLA:CPU hands convolutions to YNNPACK by default, which runs a convolution with ≤ 64 channels (all of the
      32×32 stage of a CIFAR ResNet) on ONE thread: 92 GF/s on 2 cores, where XLA's Eigen convolution reaches
      159 (cores busy 1.00 vs 1.85, idle machine). Without YNNPACK the step is 18-21% faster (in-process
      alternation, ratio 0.79-0.82), at +55 MB of temporary buffers.
  --xla_cpu_enable_concurrency_optimized_scheduler=false
      XLA:CPU's default scheduler orders the step so independent ops can run side by side, which keeps more
      activations alive at once: 350 → 241 MB of temporary buffers; step time unchanged (ratio 0.999).
  --xla_cpu_use_fusion_emitters=false
      the older loop emitters for elementwise fusions: compiling peaks ~200 MB lower and the executable is
      ~30 MB smaller; step time unchanged (0.99).
  --xla_cpu_parallel_codegen_split_count=1
      one LLVM module instead of 32 chunks: ~25 MB less resident code; compiles ~2 s slower on this step.

JAX's persistent compilation cache in `<kdjax cache>/xla` (kdjax/runtime/cache_dir.py; KDJAX_COMPILE_CACHE=0 or a
JAX_COMPILATION_CACHE_DIR of your own: not this one), and glibc malloc's arena count (`kdjax.runtime.host_memory.configure_malloc`: 2 arenas instead of 8 per core).

`KDJAX_XLA_FLAGS=0` sets no XLA flag, `KDJAX_MALLOC=0` leaves malloc alone. Neither changes results beyond
float rounding; the tests pass with and without them.
"""

import os

CPU_FLAGS = {
    "--xla_cpu_experimental_ynn_fusion_type": "",
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "--xla_cpu_use_fusion_emitters": "false",
    "--xla_cpu_parallel_codegen_split_count": "1",
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

from kdjax.runtime import cache_dir, host_memory  # noqa: E402  (no jax import at module level)

host_memory.configure_malloc()
cache_dir.use_compilation_cache()
