"""Workdir housekeeping that must never lose a run: the run's identity recorded in the workdir (a workdir holding
another run is refused), and moving an old run aside instead of deleting it."""

import json
import os
import time

from kdjax.errors import ConfigError

# fields that define what a run computes; a workdir holding a run that differs in these is refused
_IDENTITY_FIELDS = ("seed", "models", "losses", "export_model", "optim", "pretrain", "precision")
_IDENTITY_DATA = ("name", "augment", "mean", "std", "num_classes")
_IDENTITY_TRAIN = ("batch_size", "epochs")


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


def _identity(config, dataset=None) -> dict:
    d = json.loads(config.to_json())
    out = {k: d.get(k) for k in _IDENTITY_FIELDS}
    out["data"] = {k: d["data"].get(k) for k in _IDENTITY_DATA}
    out["train"] = {k: d["train"].get(k) for k in _IDENTITY_TRAIN}
    if dataset:  # what was read (sizes, fingerprints of the contents, classes) and the normalisation it computed;
        # not where it lies: the same images moved or read through another route are the same run's data
        out["dataset"] = {k: v for k, v in dataset.items() if k not in ("reopen", "location", "route", "name")}
    return out


def _flat(d, prefix=""):
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _has_progress(workdir: str) -> bool:
    """Whether the workdir holds anything a run produced (checkpoints, exports, pretrained models)."""
    for sub in ("checkpoints", "export", "pretrain"):
        path = os.path.join(workdir, sub)
        if os.path.isdir(path) and os.listdir(path):
            return True
    return False


def check_workdir(config, workdir: str, dataset: dict = None):
    """Record the run's config (and `dataset`: what it reads, kdjax/data/preprocess.py `record`) in the workdir;
    refuse a workdir that holds a run of another config or on other data.

    A workdir whose earlier attempt never got to train (config.json only: it failed on bad input) is reused.
    """
    path = os.path.join(workdir, "config.json")
    mine = _identity(config, dataset)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                theirs = json.load(f)
        except (OSError, ValueError):
            theirs = None
        if theirs != mine and (theirs is None or _has_progress(workdir)):
            a, b = _flat(theirs or {}), _flat(mine)
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = "; ".join(f"{k}: {a.get(k, '(unset)')!r} there, {b.get(k, '(unset)')!r} now" for k in diff[:4])
            more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise ConfigError(diff[0] if diff else "workdir",
                              f"--workdir={workdir} holds a run of a different config ({shown}{more}). Use a new "
                              f"--workdir, or pass --restart to move that run aside and start fresh.")
        if theirs == mine:
            return
    import jax

    if jax.process_index() != 0:  # one writer on a shared workdir
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(mine, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
