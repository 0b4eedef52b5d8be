"""Exported single models: Orbax-saved variables plus a JSON spec, loadable without a training config.

The same format serves the student a run exports, converted pretrained teachers (`kdjax.tools.convert`) and any
`init` a config names. Layout of an export directory:

    spec.json     {"arch", "kwargs", "num_classes", "input_size" [H, W, C], "mean", "std", "label_names", ...;
                   "user_module" {"file", "sha256", "class"} or {"module", "class"} for a user's own Flax module}
    variables/    Orbax StandardCheckpointer tree {"params": ..., "batch_stats": ...}
"""

import json
import os
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from kdjax.errors import CheckpointError

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
    """Write `variables` ({"params", "batch_stats"?}) and `spec` to `directory` (replacing an older export)."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, VARIABLES_DIR)
    host_vars = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), dict(variables))
    with ocp.StandardCheckpointer(**_single_writer_options()) as ckptr:
        ckptr.save(target, host_vars, force=True)
        ckptr.wait_until_finished()
    tmp = os.path.join(directory, SPEC_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=2)
    os.replace(tmp, os.path.join(directory, SPEC_FILE))
    return directory


def _single_writer_options() -> dict:
    """On multi-host runs only process 0 writes an export: no barrier may wait for the other processes."""
    if jax.process_count() == 1:
        return {}
    return {"multiprocessing_options": ocp.options.MultiprocessingOptions(
        primary_host=jax.process_index(), active_processes={jax.process_index()}, barrier_sync_key_prefix="export")}


def is_export_dir(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SPEC_FILE)) and os.path.isdir(os.path.join(directory, VARIABLES_DIR))


def load_spec(directory: str) -> dict:
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.isdir(directory):
        raise CheckpointError(f"export directory {directory!r} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(
            f"{directory!r} holds no {SPEC_FILE}: it is not a kdjax export. Point at the `export` folder of a "
            f"training workdir, or at a folder written by `python -m kdjax.tools.convert`.")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); re-export the model")


def load_export(directory: str) -> Tuple[dict, dict]:
    """Return (variables as numpy trees, spec)."""
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
