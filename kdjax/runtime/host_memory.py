"""Host memory hygiene for XLA:CPU runs: return freed heap pages to the OS, and compile before the first step.

On the CPU backend "device memory" is the process heap (glibc malloc). Two things inflate a run's peak resident
memory without being used:

* Compiling a large step (LLVM, HLO passes) allocates a few hundred MB that are freed afterwards but stay in
  malloc's free lists, scattered between live blocks, so glibc does not give them back; the first execution then
  maps its buffers on top of them. `malloc_trim(0)` returns such free pages (glibc ≥ 2.8 also trims the middle
  of the heap), and `compile_then_release` puts it between compiling and running the step.
* Freed blocks of many threads' arenas (XLA's Eigen pool, grain's reader threads) linger the same way;
  `configure_malloc` (run by `kdjax.runtime.xla_flags` at start-up) caps the number of arenas.

All of it is a no-op where glibc is not the allocator.
"""

import ctypes
import ctypes.util
import gc
import os
from typing import Callable, Optional

_M_ARENA_MAX = -8

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
        except OSError:
            _LIBC = False
    return _LIBC or None


def configure_malloc(arena_max: int = 2) -> bool:
    """glibc malloc: at most `arena_max` arenas (default 8 per core), so memory freed by XLA's and grain's
    threads is pooled instead of lingering in one arena per thread. `KDJAX_MALLOC=0` skips it.

    Not changed, on purpose: the mmap threshold (fixing it makes every step's multi-MB buffers fresh mappings,
    whose page faults cost ~20% of a step here) and the trim threshold (same effect, smaller)."""
    libc = _libc()
    if libc is None or os.environ.get("KDJAX_MALLOC", "1") == "0":
        return False
    return libc.mallopt(_M_ARENA_MAX, int(arena_max)) == 1


def release_host_memory(clear_jax_caches: bool = False) -> None:
    """Collect Python garbage, then hand malloc's free pages back to the OS. `clear_jax_caches`: also drop JAX's
    trace and compilation caches first (executables that already ran keep their buffers until dropped)."""
    if clear_jax_caches or os.environ.get("KDJAX_CLEAR_CACHES") == "1":
        import jax

        jax.clear_caches()
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _signature(args):
    import jax

    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((getattr(a, "shape", None), getattr(a, "dtype", type(a)), getattr(a, "sharding", None),
                        getattr(a, "weak_type", None)) for a in leaves)


class CompileThenRelease:
    """Wraps a jitted function: the first call compiles it ahead of time (`lower(...).compile()`), releases the
    compiler's freed memory, then runs the compiled executable; later calls with the same argument shapes,
    dtypes and shardings reuse it (the same executable `jit` would build, donation and shardings included).
    Arguments of another signature go through the jitted function, which compiles as usual.

    `on_compiled(compiled)`, if given, sees the executable before it first runs (e.g. to refuse a step that will
    not fit in device memory, kdjax/runtime/device_memory.py); what it raises propagates."""

    def __init__(self, jitted: Callable, on_compiled: Optional[Callable] = None):
        self._jitted = jitted
        self._compiled = None
        self._signature = None
        self._on_compiled = on_compiled

    def __call__(self, *args):
        if self._compiled is None:
            compiled = self._jitted.lower(*args).compile()
            if self._on_compiled is not None:
                self._on_compiled(compiled)
            self._compiled = compiled
            self._signature = _signature(args)
            release_host_memory()
        elif _signature(args) != self._signature:
            return self._jitted(*args)
        return self._compiled(*args)

    def lower(self, *args, **kwargs):
        return self._jitted.lower(*args, **kwargs)

    @property
    def compiled(self) -> Optional[object]:
        return self._compiled


def compile_then_release(jitted: Callable, on_compiled: Optional[Callable] = None) -> CompileThenRelease:
    return CompileThenRelease(jitted, on_compiled)
