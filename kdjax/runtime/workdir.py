"""Workdir housekeeping that must never lose a run: moving an old run aside instead of deleting it."""

import os
import time


def move_aside(workdir: str) -> str:
    """Rename a non-empty `workdir` to `WORKDIR.old-DATE` (`-2`, `-3`, ... if taken); returns the new name."""
    workdir = workdir.rstrip("/")
    if not os.path.isdir(workdir) or not os.listdir(workdir):
        return ""
    base = f"{workdir}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    os.rename(workdir, target)
    print(f"--restart: moved the previous run to {target}", flush=True)
    return target
