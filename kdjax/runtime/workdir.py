"""Workdir housekeeping that must never lose or mix a run.

- Identity: `config.json` records what the run computes (the config fields that matter) and what it is built from
  (a content fingerprint of every `init`, of the teacher cache and of the train/test data selection). A workdir
  holding a run that differs is refused with what changed and the two ways forward (a new --workdir, --restart);
  so is a workdir whose config.json is damaged or missing beside checkpoints (never rewritten before that check).
- A finished run (summary.json beside a complete export, same identity) run again changes nothing.
- `--restart` moves an old run aside (`WORKDIR.old-DATE`), never deletes it; a workdir that is a mount point
  cannot be renamed, so its contents move into `WORKDIR/old-DATE/` instead.
"""

import errno
import json
import os
import re
import time

from kdjax.errors import CheckpointError, ConfigError

IDENTITY_FILE = "config.json"
SUMMARY_FILE = "summary.json"
IDENTITY_VERSION = 2
_WAYS_FORWARD = "Use a new --workdir, or pass --restart to move that run aside and start fresh."
_OLD_SUBFOLDER = re.compile(r"^old-\d{8}-\d{6}(-\d+)?$")


# ---- the workdir path itself -----------------------------------------------------------------------------------

def check_workdir_path(workdir: str):
    """A --workdir that is a file, or lies under one, is refused before any work (one line)."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError("", f"--workdir={workdir} is a file, not a folder; give a folder (it is created if "
                              f"missing)")
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    if parent and not os.path.isdir(parent):
        raise ConfigError("", f"--workdir={workdir} lies under {parent}, which is a file, not a folder; give "
                              f"another --workdir")


# ---- moving a run aside ----------------------------------------------------------------------------------------

def _free_name(base: str) -> str:
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    return target


def _movable(workdir: str):
    """What --restart moves: everything but the lock and earlier runs already moved into old-DATE/ subfolders."""
    from kdjax.runtime.lock import LOCK_FILE

    return [n for n in os.listdir(workdir) if n != LOCK_FILE and not _OLD_SUBFOLDER.match(n)]


def move_aside(workdir: str) -> str:
    """Rename a non-empty `workdir` to `WORKDIR.old-DATE` (`-2`, `-3`, ... if taken); returns the new name.

    A mount point cannot be renamed (EBUSY): its contents then move into `WORKDIR/old-DATE/`."""
    workdir = workdir.rstrip("/")
    if not os.path.isdir(workdir) or not _movable(workdir):
        return ""
    stamp = time.strftime('%Y%m%d-%H%M%S')
    target = _free_name(f"{workdir}.old-{stamp}")
    try:
        os.rename(workdir, target)
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
        target = _free_name(os.path.join(workdir, f"old-{stamp}"))
        names = _movable(workdir)
        os.mkdir(target)
        for name in names:
            os.rename(os.path.join(workdir, name), os.path.join(target, name))
        print(f"--restart: {workdir} cannot be renamed ({os.strerror(e.errno)}: e.g. a mount point); moved the "
              f"previous run into {target}", flush=True)
        return target
    print(f"--restart: moved the previous run to {target}", flush=True)
    return target


# ---- identity --------------------------------------------------------------------------------------------------

def flat_fields(d, prefix=""):
    """{dotted path: value} of a nested dict (a recorded config.json, a run identity)."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(flat_fields(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _has_progress(workdir: str) -> bool:
    """Whether the workdir holds anything a run produced (checkpoints, exports, pretrained models)."""
    for sub in ("checkpoints", "export", "pretrain"):
        path = os.path.join(workdir, sub)
        if os.path.isdir(path) and os.listdir(path):
            return True
    return False


def _read_identity(path: str):
    """(identity dict, None) or (None, why it cannot be read)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot be read ({os.strerror(e.errno) if e.errno else e})"
    try:
        theirs = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        what = "empty" if not data.strip() else f"not valid JSON ({str(e).splitlines()[0][:80]})"
        return None, f"is damaged: {what}"
    if not isinstance(theirs, dict) or "models" not in theirs:
        return None, "is damaged: it is not a kdjax run identity"
    return theirs, None


def _built_from_diff(a: dict, b: dict, key: str) -> str:
    if key.startswith("models."):
        return f"{key}: the checkpoint it names holds other weights than when this run started ({a} then, {b} now)"
    if key.startswith("data."):
        split = key.split(".", 1)[1]
        ca, cb = (a or {}).get("count", "?"), (b or {}).get("count", "?")
        return (f"the {split} data differ from when this run started ({ca} examples, {(a or {}).get('digest')} "
                f"then; {cb} examples, {(b or {}).get('digest')} now)")
    return f"{key}: its contents changed since this run started ({a} then, {b} now)"


def _differences(theirs: dict, mine: dict):
    """(config diffs, built-from diffs): lists of (field, text)."""
    legacy = "identity_version" not in theirs  # written by an older kdjax: compare the fields it recorded
    a = flat_fields({k: v for k, v in theirs.items() if k not in ("built_from", "identity_version")})
    b = flat_fields({k: v for k, v in mine.items() if k not in ("built_from", "identity_version")})
    keys = set(a) if legacy else set(a) | set(b)
    fa, fb = theirs.get("built_from") or {}, mine.get("built_from") or {}
    config = []
    for k in sorted(keys):
        if a.get(k) == b.get(k):
            continue
        # an init moved to another path but holding the same weights is the same run
        if k.endswith(".init") and k in fa and fa.get(k) == fb.get(k):
            continue
        config.append((k, f"{k}: {a.get(k, '(unset)')!r} there, {b.get(k, '(unset)')!r} now"))
    built = [(k, _built_from_diff(fa.get(k), fb.get(k), k)) for k in sorted(set(fa) & set(fb))
             if fa[k] != fb[k]]
    # an init path that changed is reported once (as a config difference)
    built = [(k, t) for k, t in built if k not in {c for c, _ in config}]
    return config, built


def compare_workdir(workdir: str, mine: dict) -> str:
    """Read-only: "new" (nothing there), "same" (this run), "retry" (an earlier attempt that never trained);
    a different, damaged or missing identity beside a run's results raises a ConfigError/CheckpointError."""
    path = os.path.join(workdir, IDENTITY_FILE)
    progress = os.path.isdir(workdir) and _has_progress(workdir)
    if not os.path.isfile(path):
        if progress:
            raise CheckpointError(
                f"--workdir={workdir} holds results of a run (checkpoints or exports) but no {IDENTITY_FILE}, so "
                f"kdjax cannot tell what they were built from and will not guess. If {IDENTITY_FILE} was deleted by "
                f"mistake, put it back. {_WAYS_FORWARD}")
        return "new"
    theirs, problem = _read_identity(path)
    if theirs is None:
        if not progress:
            return "retry"
        raise CheckpointError(
            f"{path} {problem}, and --workdir={workdir} holds results of a run: kdjax cannot tell what they were "
            f"built from and will not guess. If you have a good copy of {IDENTITY_FILE}, put it back. "
            f"{_WAYS_FORWARD}")
    config, built = _differences(theirs, mine)
    if not config and not built:
        return "same"
    if not progress:
        return "retry"
    parts = []
    if config:
        shown = "; ".join(t for _, t in config[:4])
        more = f" and {len(config) - 4} more" if len(config) > 4 else ""
        parts.append(f"holds a run of a different config ({shown}{more})")
    if built:
        parts.append(("and it was " if config else "holds a run ") + "built from something else (" +
                     "; ".join(t for _, t in built[:3]) + ")")
    field = (config or built)[0][0]
    raise ConfigError(field if not field.startswith("data.") or config else "data",
                      f"--workdir={workdir} {' '.join(parts)}. {_WAYS_FORWARD}")


def record_identity(workdir: str, mine: dict):
    """Write config.json atomically (a temporary file renamed into place, removed if writing fails)."""
    from kdjax.runtime.preemption import writing

    path = os.path.join(workdir, IDENTITY_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with writing(), open(tmp, "w") as f:
            json.dump(mine, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str):
    try:
        os.remove(path)
    except OSError:
        pass


def check_workdir(workdir: str, mine: dict):
    """Refuse a workdir that holds another run (see compare_workdir), else record this run's identity `mine`
    (kdjax/config/identity.py) there.

    A workdir whose earlier attempt never got to train (config.json only: it failed on bad input) is reused."""
    import jax

    status = compare_workdir(workdir, mine)
    if jax.process_index() != 0:  # one writer on a shared workdir
        return
    if status == "same" and _recorded_version(workdir) >= IDENTITY_VERSION:
        return
    record_identity(workdir, mine)  # new, a retry, or the same run recorded by an older kdjax (now with fingerprints)


def _recorded_version(workdir: str) -> int:
    theirs, _ = _read_identity(os.path.join(workdir, IDENTITY_FILE))
    return int((theirs or {}).get("identity_version") or 1)


# ---- a finished run --------------------------------------------------------------------------------------------

def write_summary(workdir: str, summary: dict):
    write_json(os.path.join(workdir, SUMMARY_FILE), summary)


def write_json(path: str, obj):
    """Write a JSON file whole or not at all (a temporary renamed into place; removed if writing fails)."""
    from kdjax.runtime.preemption import writing

    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with writing(), open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
