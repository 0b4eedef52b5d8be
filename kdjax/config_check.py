"""Validate a config before any compute: every problem is one ConfigError naming the field and the fix."""

import json
import numbers
import os

from kdjax.errors import ConfigError
from kdjax.models import list_models

# fields that define what a run computes; a workdir holding a run that differs in these is refused
_IDENTITY_FIELDS = ("seed", "models", "losses", "export_model", "optim", "pretrain", "precision")
_IDENTITY_DATA = ("name", "augment", "mean", "std", "num_classes")
_IDENTITY_TRAIN = ("batch_size", "epochs")


def _positive(value, field, integer=False):
    ok = isinstance(value, numbers.Number) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        raise ConfigError(field, f"must be a positive {'integer' if integer else 'number'}, got {value!r}")


def check_config(config):
    if not config.get("models"):
        raise ConfigError("models", "no sub-models configured; add e.g. config.models.Student = model_entry('resnet8x4')")
    known = set(list_models())
    for name, m in config.models.items():
        if not m.get("arch"):
            raise ConfigError(f"models.{name}.arch", "missing")
        if m.arch not in known:
            raise ConfigError(f"models.{name}.arch", f"unknown arch {m.arch!r}; known archs: {', '.join(sorted(known))}")
        if m.get("frozen") and not m.get("init"):
            raise ConfigError(f"models.{name}.init",
                              f"models.{name} is frozen but has no init: give a checkpoint (export dir, converted "
                              f"dir, .pdparams or .pth), or init='train' to train it first with ground-truth CE")
    if config.export_model not in config.models:
        raise ConfigError("export_model", f"{config.export_model!r} is not one of the models "
                                          f"({', '.join(config.models)})")
    if not config.get("losses"):
        raise ConfigError("losses", "no losses configured")
    for name, entry in config.losses.items():
        if not isinstance(entry.get("weight", 1.0), numbers.Number) or isinstance(entry.get("weight"), bool):
            raise ConfigError(f"losses.{name}.weight", f"must be a number, got {entry.get('weight')!r}")
    t = config.train
    _positive(t.batch_size, "train.batch_size", integer=True)
    _positive(t.epochs, "train.epochs")
    _positive(t.log_every_steps, "train.log_every_steps", integer=True)
    _positive(t.checkpoint_every_steps, "train.checkpoint_every_steps", integer=True)
    if t.nonfinite not in ("stop", "skip"):
        raise ConfigError("train.nonfinite", f"must be 'stop' or 'skip', got {t.nonfinite!r}")
    _positive(config.optim.lr, "optim.lr")
    if config.get("precision", "float32") not in ("float32", "bfloat16"):
        raise ConfigError("precision", f"must be 'float32' or 'bfloat16', got {config.precision!r}")
    if len(config.data.mean) != len(config.data.std):
        raise ConfigError("data.std", "data.mean and data.std must have one value per channel")
    _check_losses(config)


def _check_losses(config):
    from kdjax.losses import validate_losses

    names = list(config.losses)
    captured = {n: set(m.get("capture", []) or []) | {"logits"} for n, m in config.models.items()}
    frozen = {n: bool(m.get("frozen")) for n, m in config.models.items()}
    try:
        validate_losses(list(config.losses.values()), list(config.models), captured, frozen)
    except ConfigError as e:  # the registry numbers entries; users address them by name
        field = e.field
        if field.startswith("losses["):
            index = int(field[len("losses["):field.index("]")])
            field = f"losses.{names[index]}" + field[field.index("]") + 1:]
        raise ConfigError(field, str(e).split(": ", 1)[1]) from None


def check_captures(config, feature_names: dict):
    """Every `capture` name exists in its model (feature_names: model name → names the model records)."""
    for name, m in config.models.items():
        for key in m.get("capture", []) or []:
            if key not in feature_names[name]:
                raise ConfigError(f"models.{name}.capture",
                                  f"{m.arch} records no feature {key!r}; it records: {', '.join(feature_names[name])}")


def _identity(config) -> dict:
    d = json.loads(config.to_json())
    out = {k: d.get(k) for k in _IDENTITY_FIELDS}
    out["data"] = {k: d["data"].get(k) for k in _IDENTITY_DATA}
    out["train"] = {k: d["train"].get(k) for k in _IDENTITY_TRAIN}
    return out


def check_workdir(config, workdir: str):
    """Record the run's config in the workdir; refuse a workdir that holds a run of another config."""
    path = os.path.join(workdir, "config.json")
    mine = _identity(config)
    if os.path.isfile(path):
        with open(path) as f:
            theirs = json.load(f)
        if theirs != mine:
            diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise ConfigError(diff[0] if diff else "workdir",
                              f"--workdir={workdir} holds a run of a different config (differs in: {', '.join(diff)}). "
                              f"Use a new --workdir, or pass --restart to move that run aside and start fresh.")
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(mine, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
