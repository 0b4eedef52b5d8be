"""Exported single models: Orbax-saved variables plus a JSON spec, loadable without a training config.

The same format serves the student a run exports, converted pretrained teachers (`kdjax.tools.convert`) and any
`init` a config names. Layout of an export directory:

    spec.json     {"arch", "kwargs", "num_classes", "input_size" [H, W, C], "mean", "std", "label_names", ...;
                   "user_module" {"file", "sha256", "class"} or {"module", "class"} for a user's own Flax module}
    variables/    Orbax StandardCheckpointer tree {"params": ..., "batch_stats": ...}
"""

import json
import os
import shutil
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from kdjax.errors import CheckpointError
from kdjax.runtime.checkpoints import SYNC_DIRECTORIES, remove_partial

SPEC_FILE = "spec.json"
VARIABLES_DIR = "variables"
FORMAT_VERSION = 1


def make_spec(arch: str, kwargs: dict, num_classes: int, input_size, mean=None, std=None,
              label_names=None, **extra) -> dict:
    spec = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "kwargs": dict(kwargs),
        "num_classes": int(num_classes),
        "input_size": [int(v) for v in input_size],
        "mean": [float(v) for v in (mean if mean is not None else [0.0] * int(input_size[-1]))],
        "std": [float(v) for v in (std if std is not None else [1.0] * int(input_size[-1]))],
        "label_names": list(label_names) if label_names is not None else None,
    }
    spec.update(extra)
    from kdjax.models import user_module

    if user_module.is_user_arch(arch):  # where the class came from: loading needs it there
        spec["user_module"] = user_module.provenance(arch)
    return spec


def save_export(directory: str, variables: Any, spec: dict) -> str:
    """Write `variables` ({"params", "batch_stats"?}) and `spec` to `directory`, replacing an older export only
    once the new one is complete (see `_swap_in`): a kill or a full disk at any moment leaves a complete export."""
    directory = os.path.abspath(directory.rstrip("/"))
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    recover_export(directory)
    if os.path.isdir(directory) and os.listdir(directory) and not is_export_dir(directory):
        raise CheckpointError(f"{directory} exists and is not a kdjax export (no {SPEC_FILE} + {VARIABLES_DIR}/); "
                              f"kdjax replaces only an earlier export there. Move it away or choose another folder")
    _remove_dead_temporaries(directory)
    tmp = f"{directory}{_TMP_INFIX}{os.getpid()}"
    from kdjax.runtime.oserrors import quiet_orbax_tracebacks
    from kdjax.runtime.preemption import writing

    quiet_orbax_tracebacks()  # a failed write is reported once, in one line
    try:
        with writing():  # a SIGTERM now waits until the export is complete
            _write_export(tmp, variables, spec)
            _swap_in(tmp, directory)
    except BaseException as e:
        remove_partial(tmp)
        if isinstance(e, Exception) and not isinstance(e, (OSError, CheckpointError)):
            raise _as_os_error(e, directory) from None
        raise
    return directory


_TMP_INFIX = ".tmp-"
_OLD_SUFFIX = ".old"


def _write_export(directory: str, variables: Any, spec: dict):
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    host_vars = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), dict(variables))
    with ocp.StandardCheckpointer(async_options=SYNC_DIRECTORIES, **_single_writer_options()) as ckptr:
        ckptr.save(os.path.join(directory, VARIABLES_DIR), host_vars)
        ckptr.wait_until_finished()
    with open(os.path.join(directory, SPEC_FILE), "w") as f:
        json.dump(spec, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _swap_in(tmp: str, directory: str):
    """`directory` ← `tmp`: the old export is renamed to `directory.old` first and deleted last, so at every
    moment `directory` or `directory.old` is a complete export (`recover_export` undoes a swap cut short)."""
    old = directory + _OLD_SUFFIX
    if os.path.lexists(directory):
        if os.path.lexists(old):
            shutil.rmtree(old)  # a leftover of an earlier swap: `directory` is the complete one
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def recover_export(directory: str) -> bool:
    """After a swap cut short between its two renames, put `directory.old` back; True if it did."""
    directory = directory.rstrip("/")
    old = directory + _OLD_SUFFIX
    if not os.path.lexists(directory) and _complete(old):
        os.rename(old, directory)
        return True
    return False


def _remove_dead_temporaries(directory: str):
    """`directory.tmp-PID` folders of processes that no longer run (an export killed half-way)."""
    parent, base = os.path.split(directory)
    for name in os.listdir(parent):
        pid = name[len(base) + len(_TMP_INFIX):] if name.startswith(base + _TMP_INFIX) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_os_error(e: Exception, directory: str):
    """Orbax/TensorStore failures quote the OS error in their text: the OSError itself when it can be told, else
    one CheckpointError line."""
    from kdjax.runtime.oserrors import one_line, os_error_from

    found = os_error_from(e)
    if found is not None:
        return OSError(found.errno, f"{os.strerror(found.errno)} while writing the export", directory)
    return CheckpointError(f"cannot write the export {directory} ({type(e).__name__}: {one_line(e)})")


def _single_writer_options() -> dict:
    """On multi-host runs only process 0 writes an export: no barrier may wait for the other processes."""
    if jax.process_count() == 1:
        return {}
    return {"multiprocessing_options": ocp.options.MultiprocessingOptions(
        primary_host=jax.process_index(), active_processes={jax.process_index()}, barrier_sync_key_prefix="export")}


def _complete(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SPEC_FILE)) and os.path.isdir(os.path.join(directory, VARIABLES_DIR))


def _readable(directory: str) -> str:
    """`directory`, or `directory.old` while a swap cut short between its renames left only that (read-only
    callers read it there; the next save puts it back)."""
    stripped = str(directory).rstrip("/")
    if stripped and not os.path.lexists(stripped) and _complete(stripped + _OLD_SUFFIX):
        return stripped + _OLD_SUFFIX
    return directory


def is_export_dir(directory: str) -> bool:
    return _complete(_readable(directory))


def load_spec(directory: str) -> dict:
    directory = _readable(directory)
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.isdir(directory):
        raise CheckpointError(f"export directory {directory!r} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(
            f"{directory!r} holds no {SPEC_FILE}: it is not a kdjax export. Point at the `export` folder of a "
            f"training workdir, or at a folder written by `python -m kdjax.tools.convert`.")
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"cannot read {path} ({os.strerror(e.errno) if e.errno else e})") from None
    except (UnicodeDecodeError, ValueError) as e:  # garbage bytes, cut short, not JSON
        raise CheckpointError(f"{path} is damaged: not valid JSON ({str(e).splitlines()[0][:120]}); re-export "
                              f"the model") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str):
        raise CheckpointError(f"{path} is damaged: not a kdjax export spec (no 'arch'); re-export the model")
    return spec


def load_export(directory: str) -> Tuple[dict, dict]:
    """Return (variables as numpy trees, spec)."""
    directory = _readable(directory)
    spec = load_spec(directory)
    target = os.path.join(os.path.abspath(directory), VARIABLES_DIR)
    if not os.path.isdir(target):
        raise CheckpointError(f"{directory!r} has a spec but no {VARIABLES_DIR}/ folder; re-export the model")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            variables = ckptr.restore(target)
    except Exception as e:  # orbax raises many types for damaged files
        raise CheckpointError(f"cannot read the variables in {target}: {e}") from None
    return dict(variables), spec


def build_from_spec(spec: dict):
    """The Flax module an export's spec describes (a user's module from the file its spec records)."""
    from kdjax.models import get_model, user_module
    from kdjax.models.registry import with_num_classes

    arch = user_module.arch_from_spec(spec) if "user_module" in spec else spec["arch"]
    kwargs = with_num_classes(arch, dict(spec.get("kwargs") or {}), spec["num_classes"])
    return get_model(arch, field="spec.arch", **kwargs)


def export_logits_fn(directory: str, variables: Optional[dict] = None, spec: Optional[dict] = None):
    """A jitted `images_nhwc_float -> logits` for an export (normalisation is the caller's job)."""
    if variables is None or spec is None:
        variables, spec = load_export(directory)
    model = build_from_spec(spec)

    @jax.jit
    def logits(x):
        return model.apply(variables, x, train=False)

    return logits, spec
