"""Where kdjax keeps what it can reuse between runs: `$KDJAX_CACHE`, else `$XDG_CACHE_HOME/kdjax` or
`~/.cache/kdjax`; `KDJAX_CACHE=off` turns caching off. Two things live there:

  models/  models trained first (init='train'), reused by later runs with the same identity (weights/model_cache.py)
  xla/     JAX's persistent compilation cache: a rerun, a resumed run or the next sweep trial with the same step
           loads the compiled executable instead of compiling it again (the default run's 1-epoch smoke: 21 s -> 12 s;
           results identical). Set before JAX starts (runtime/xla_flags.py); a JAX_COMPILATION_CACHE_DIR of your own
           wins, KDJAX_COMPILE_CACHE=0 turns only this one off
           (kdjax.tools.bench sets it: its compile_s must time a compile). JAX keys each entry by the program, the compile
           options, the JAX/XLA version and the device, so a changed program compiles afresh. Bounded at 2 GiB
           (least recently used entries go first; JAX_COMPILATION_CACHE_MAX_SIZE of your own wins).
"""

import os
from typing import Optional

OFF = ("", "0", "off", "none", "false", "no")
MAX_BYTES = 2 * 1024 ** 3


def cache_root() -> Optional[str]:
    """The cache directory, or None when KDJAX_CACHE turns it off."""
    value = os.environ.get("KDJAX_CACHE")
    if value is not None:
        return None if value.strip().lower() in OFF else os.path.abspath(os.path.expanduser(value))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kdjax")


def use_compilation_cache() -> Optional[str]:
    """Point JAX's persistent compilation cache at `<cache_root>/xla` (via JAX_COMPILATION_CACHE_DIR, read when JAX
    is imported) unless the user named one or turned it off; returns the directory in effect, or None."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return os.environ["JAX_COMPILATION_CACHE_DIR"] or None
    root = cache_root()
    if root is None or os.environ.get("KDJAX_COMPILE_CACHE", "1").strip().lower() in OFF:
        return None
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(root, "xla")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(MAX_BYTES))
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
