"""Export any sub-model of a training workdir: from any of its checkpoints (`--step=N`, default the newest) or its
best model (`--best`), as a standard export directory (spec.json + variables/, what `kdjax.infer`, `--mode=eval
--export_dir` and `init=` read).

A run records each sub-model's spec (arch, kwargs, classes, input size, normalisation, label names, its init)
in `WORKDIR/models.json` when it starts, so exporting needs neither the config nor the dataset. A trainable model's
variables come from the checkpoint's train state (read without rebuilding the optimizer); a frozen model never
changes, so its variables come from its init at any step.
"""

import json
import os
from types import SimpleNamespace
from typing import Optional

from kdjax.errors import CheckpointError
from kdjax.weights.export_dir import is_export_dir, load_export, make_spec, save_export

MODELS_FILE = "models.json"
BEST_DIR = "best"


def submodel_spec(trainer, name: str, **extra) -> dict:
    """The export spec of sub-model `name` of a Trainer (its own class count when its kwargs set one)."""
    sub = trainer.submodels[name]
    kwargs = {k: v for k, v in sub.kwargs.items() if k != "num_classes"}
    classes = int(sub.kwargs.get("num_classes") or trainer.num_classes)
    from kdjax.data.preprocess import export_fields

    fields = dict(export_fields(trainer.info, trainer.test_source), **extra)  # identity, eval preprocessing
    return make_spec(sub.arch, kwargs, classes, trainer.info.image_shape, trainer.mean, trainer.std,
                     trainer.info.label_names, model_name=name, **fields)


def write_model_specs(trainer):
    """WORKDIR/models.json: every sub-model's spec, frozen flag and init (process 0 writes, atomically)."""
    import jax

    if jax.process_index() != 0:
        return
    models = {name: {"spec": submodel_spec(trainer, name), "frozen": sub.frozen, "init": sub.init}
              for name, sub in trainer.submodels.items()}
    from kdjax.runtime.workdir import write_json

    os.makedirs(trainer.directory, exist_ok=True)
    write_json(os.path.join(trainer.directory, MODELS_FILE), {"export_model": trainer.config.export_model,
                                                              "models": models})


def read_model_specs(workdir: str) -> dict:
    path = os.path.join(workdir, MODELS_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{workdir} holds no {MODELS_FILE}: it is not a kdjax training workdir (or was written "
                              f"by a kdjax without it; export with its WORKDIR/export instead)")
    with open(path) as f:
        return json.load(f)


def best_record(workdir: str) -> Optional[dict]:
    """{"step", "top1", "model"} of WORKDIR/best, or None when the run has no best model yet."""
    directory = os.path.join(workdir, BEST_DIR)
    if not is_export_dir(directory):
        return None
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    best = spec.get("best")
    return dict(best, model=spec.get("model_name")) if best else None


def _checkpoint_state(workdir: str, step: Optional[int]):
    """(raw train-state tree, step) of checkpoint `step` (None: the newest)."""
    import orbax.checkpoint as ocp

    from kdjax.runtime.checkpoints import PhaseCheckpoints

    ckpts = PhaseCheckpoints(os.path.join(workdir, "checkpoints"), read_only=True)
    try:
        steps = ckpts.steps()
        if not steps:
            raise CheckpointError(f"{workdir}/checkpoints holds no checkpoint")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"{workdir}/checkpoints has no step {step}; it has {', '.join(map(str, steps))} "
                                  f"(the newest train.keep_checkpoints are kept)")
        try:
            restored = ckpts.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        except Exception as e:  # damaged files surface as many exception types
            raise CheckpointError(f"checkpoint step {step} in {workdir}/checkpoints cannot be read: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None
        return restored.state, step
    finally:
        ckpts.close()


def _frozen_variables(workdir: str, name: str, entry: dict):
    from kdjax.weights.init import load_init

    spec = entry["spec"]
    sub = SimpleNamespace(init=entry["init"], arch=spec["arch"],
                          kwargs=dict(spec.get("kwargs") or {}, num_classes=spec["num_classes"]))
    if not sub.init:
        raise CheckpointError(f"models.{name} is frozen but has no init recorded in {workdir}/{MODELS_FILE}")
    return load_init(name, sub, os.path.join(workdir, "imported"))


def export_from_workdir(workdir: str, out: str, model: Optional[str] = None, step: Optional[int] = None,
                        best: bool = False) -> dict:
    """Write sub-model `model` (default: the run's export model) of `workdir` to the export directory `out`, from
    checkpoint `step` (default the newest) or, with `best`, from the best model. Returns what was written."""
    import numpy as np

    if best and step is not None:
        raise CheckpointError("give --step or --best, not both")
    workdir = os.path.abspath(workdir)
    recorded = read_model_specs(workdir)
    model = model or recorded["export_model"]
    if model not in recorded["models"]:
        raise CheckpointError(f"{workdir} has no model {model!r}; its models: {', '.join(recorded['models'])}")
    entry = recorded["models"][model]
    spec = dict(entry["spec"])
    source = {"workdir": workdir, "model": model}
    if best:
        record = best_record(workdir)
        if record is None:
            raise CheckpointError(f"{workdir} has no best model yet ({BEST_DIR}/ is written at each evaluation that "
                                  f"improves top-1)")
        source.update(best=True, step=int(record["step"]), top1=float(record["top1"]))
        if model == record["model"]:
            variables, best_spec = load_export(os.path.join(workdir, BEST_DIR))
            spec = dict(best_spec, source=source)
            save_export(out, variables, spec)
            return source
        step = int(record["step"])  # another model at the best step: from that checkpoint (frozen: its init)
    if entry["frozen"]:
        variables = _frozen_variables(workdir, model, entry)
        source.update(frozen=True, step=step)
    else:
        state, step = _checkpoint_state(workdir, step)
        params = state.get("params") or {}
        if model not in params:
            raise CheckpointError(f"checkpoint step {step} of {workdir} holds no parameters of {model!r}")
        variables = {"params": params[model]}
        stats = (state.get("batch_stats") or {}).get(model)
        if stats:
            variables["batch_stats"] = stats
        source["step"] = int(step)
    variables = {k: __import__("jax").tree.map(np.asarray, v) for k, v in variables.items()}
    save_export(out, variables, dict(spec, source=source))
    return source
