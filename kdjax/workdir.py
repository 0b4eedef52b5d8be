"""Workdir housekeeping that must never lose a run: moving an old run aside instead of deleting it."""

import os
import time


def move_aside(workdir: str) -> str:
    if not os.path.isdir(workdir) or not os.listdir(workdir):
        return ""
    target = f"{workdir.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(workdir, target)
    print(f"--restart: moved the previous run to {target}", flush=True)
    return target
