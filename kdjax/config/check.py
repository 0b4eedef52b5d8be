"""Validate a config before any compute: every problem is one ConfigError naming the field and the fix.

Order of the checks a run makes (train.run), all before the workdir is touched:
  check_config        the config alone: archs, frozen models' inits, losses (types, weights, params, pairs, keys)
  check_inits         every `init` path exists and holds the configured arch (reads spec.json only)
  check_data          the opened data: label range against the number of classes, batch size against its size
  check_model_outputs (Phase) captured features exist, logits cover the classes, the losses can pair the
                      output shapes (jax.eval_shape: shapes only, no compute)
  check_workdir       the workdir holds no run of another config
"""

import json
import numbers
import os

import numpy as np

from kdjax.errors import ConfigError, DataError
from kdjax.models import list_models

# fields that define what a run computes; a workdir holding a run that differs in these is refused
_IDENTITY_FIELDS = ("seed", "models", "losses", "export_model", "optim", "pretrain", "precision")
_IDENTITY_DATA = ("name", "augment", "mean", "std", "num_classes")
_IDENTITY_TRAIN = ("batch_size", "epochs")
TRAIN_FIRST = "train"  # models.<name>.init value: train that model with ground-truth CE first


def _positive(value, field, integer=False):
    ok = isinstance(value, numbers.Number) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        raise ConfigError(field, f"must be a positive {'integer' if integer else 'number'}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool) and np.isfinite(float(value))


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
        weight = entry.get("weight", 1.0) if hasattr(entry, "get") else 1.0  # (not a dict: _check_losses says so)
        if not _is_number(weight):
            raise ConfigError(f"losses.{name}.weight", f"must be a finite number (e.g. 1.0), got {weight!r}")
    t = config.train
    _positive(t.batch_size, "train.batch_size", integer=True)
    _positive(t.epochs, "train.epochs")
    _positive(t.log_every_steps, "train.log_every_steps", integer=True)
    _positive(t.checkpoint_every_steps, "train.checkpoint_every_steps", integer=True)
    _positive(t.eval_batch_size, "train.eval_batch_size", integer=True)
    _positive(t.get("keep_checkpoints", 3), "train.keep_checkpoints", integer=True)
    if t.nonfinite not in ("stop", "skip"):
        raise ConfigError("train.nonfinite", f"must be 'stop' or 'skip', got {t.nonfinite!r}")
    if any(m.get("init") == TRAIN_FIRST for m in config.models.values()):
        _positive(config.pretrain.batch_size, "pretrain.batch_size", integer=True)
        _positive(config.pretrain.epochs, "pretrain.epochs")
        _positive(config.pretrain.optim.lr, "pretrain.optim.lr")
    _positive(config.optim.lr, "optim.lr")
    from kdjax.steps import check_optimizer

    check_optimizer(config.optim, "optim")
    if config.get("precision", "float32") not in ("float32", "bfloat16"):
        raise ConfigError("precision", f"must be 'float32' or 'bfloat16', got {config.precision!r}")
    prefetch = config.data.get("device_prefetch", 2)
    if not (isinstance(prefetch, numbers.Integral) and not isinstance(prefetch, bool) and prefetch >= 0):
        raise ConfigError("data.device_prefetch", f"must be an integer >= 0 (0: no read-ahead), got {prefetch!r}")
    if len(config.data.mean) != len(config.data.std):
        raise ConfigError("data.std", "data.mean and data.std must have one value per channel")
    for field in ("data_dir", "tfds_data_dir", "root"):
        path = config.data.get(field)
        if path and not os.path.isdir(os.path.expanduser(path)):
            raise DataError(f"config.data.{field}: {path!r} does not exist or is not a directory; fix the path "
                            f"(or unset it to use the default data)")
    _check_losses(config)


def loss_field(config, field: str) -> str:
    """`losses[1].pairs` (the loss package numbers entries) → `losses.dkd.pairs` (what users override)."""
    if field.startswith("losses["):
        names = list(config.losses)
        index = int(field[len("losses["):field.index("]")])
        if 0 <= index < len(names):
            return f"losses.{names[index]}" + field[field.index("]") + 1:]
    return field


def _renamed(config, e: ConfigError) -> ConfigError:
    message = getattr(e, "message", None) or str(e).split(": ", 1)[-1]
    return ConfigError(loss_field(config, e.field), message)


def _check_losses(config):
    from kdjax.losses import validate_losses

    captured = {n: set(m.get("capture", []) or []) | {"logits"} for n, m in config.models.items()}
    frozen = {n: bool(m.get("frozen")) for n, m in config.models.items()}
    try:
        validate_losses(list(config.losses.values()), list(config.models), captured, frozen)
    except ConfigError as e:  # the registry numbers entries; users address them by name
        raise _renamed(config, e) from None


def check_inits(config, num_classes: int):
    """Every configured `init` (other than 'train') exists and holds this arch with this many classes, read from
    its spec.json only (`num_classes`: what the models get from the data unless their kwargs say otherwise)."""
    from kdjax.weights.init import check_init_path

    for name, m in config.models.items():
        if m.get("init") and m.init != TRAIN_FIRST:
            check_init_path(name, m, num_classes)


# ---- data ------------------------------------------------------------------------------------------------------

def _max_label(source):
    """Largest label of a source, cheaply: from its label array (IDX, list files) or its metadata (TFDS)."""
    n, s = len(source), source
    for _ in range(6):
        labels = getattr(s, "labels", None)
        if labels is not None and hasattr(labels, "__len__"):
            labels = np.asarray(labels)[:n]
            return int(labels.max()) if len(labels) else None
        if hasattr(s, "labeled"):  # SSLD mixture: the labeled part
            s = s.labeled
            n = len(s)
        elif getattr(s, "num_classes", 0):  # TFDS: the ClassLabel's size
            return int(s.num_classes) - 1
        elif hasattr(s, "_source"):  # LimitedSource / SubstituteBadImages keep the first n records
            s = s._source
        else:
            break
    return None


def check_data(config, info, **splits):
    """Labels fit the number of classes the models get; the training split holds at least one batch."""
    configured = int(config.data.get("num_classes") or 0)
    num_classes = configured or int(info.num_classes)
    for split, source in splits.items():
        top = _max_label(source)
        if top is not None and top >= num_classes:
            where = getattr(source, "description", split)
            if configured:
                raise ConfigError("data.num_classes",
                                  f"is {configured} but the {split} data ({where}) has labels up to {top}; set "
                                  f"data.num_classes={top + 1} (or 0 to take it from the dataset)")
            raise ConfigError("data.num_classes",
                              f"the dataset declares {num_classes} classes but the {split} data ({where}) has "
                              f"labels up to {top}; set data.num_classes={top + 1}")
    train = splits.get("train")
    if train is not None:
        batches = [("train.batch_size", int(config.train.batch_size))]
        if any(m.get("init") == TRAIN_FIRST for m in config.models.values()):
            batches.append(("pretrain.batch_size", int(config.pretrain.batch_size)))
        for field, batch in batches:
            if batch > len(train):
                raise ConfigError(field, f"batch size {batch} is larger than the training data ({len(train)} "
                                         f"examples in {getattr(train, 'description', 'the train split')}); lower "
                                         f"{field} or use more data (data.train_limit)")


# ---- model outputs ---------------------------------------------------------------------------------------------

def check_captures(config, feature_names: dict):
    """Every `capture` name exists in its model (feature_names: model name → names the model records)."""
    for name, m in config.models.items():
        for key in m.get("capture", []) or []:
            if key not in feature_names[name]:
                raise ConfigError(f"models.{name}.capture",
                                  f"{m.arch} records no feature {key!r}; it records: {', '.join(feature_names[name])}")


def _output_shapes(model, sample):
    """{model: {"logits": ShapeDtypeStruct, captured feature: ...}} without running anything."""
    import jax

    def run(x):
        rng = jax.random.PRNGKey(0)
        variables = model.init_variables(rng, x)
        params = {n: variables[n]["params"] for n in model.trainable}
        stats = {n: variables[n]["batch_stats"] for n in model.trainable if "batch_stats" in variables[n]}
        frozen = {n: variables[n] for n in model.frozen}
        outputs, _ = model.apply(params, stats, frozen, x, train=False, rng=rng)
        return outputs

    return jax.eval_shape(run, sample)


def check_model_outputs(config, model, losses, sample, num_classes: int):
    """Captured features exist, every model's logits cover the data's classes, and every loss can pair the
    shapes it reads (e.g. `distance` between blocks of different shapes) — from jax.eval_shape, before compute."""
    check_captures(config, {n: model.feature_names(n, sample) for n in model.names})
    outputs = _output_shapes(model, sample)
    for name, out in outputs.items():
        classes = int(out["logits"].shape[-1])
        if classes < num_classes:
            kwargs = config.models[name].get("kwargs") or {}
            field = f"models.{name}.kwargs.num_classes" if "num_classes" in kwargs else "data.num_classes"
            raise ConfigError(field, f"models.{name} ({config.models[name].arch}) outputs {classes} classes but the "
                                     f"data has {num_classes}; labels >= {classes} would be silently wrong. Give the "
                                     f"model num_classes={num_classes} (or fix data.num_classes)")
    try:
        losses.shape_check(outputs)
        if losses.reads_teachers:  # OFD: the teacher BatchNorms its margins come from
            import jax

            shapes = jax.eval_shape(model.init_variables, jax.random.PRNGKey(0), sample)
            losses.check_teachers({n: shapes[n] for n in model.frozen}, outputs)
    except ConfigError as e:
        raise _renamed(config, e) from None


# ---- workdir ---------------------------------------------------------------------------------------------------

def _identity(config) -> dict:
    d = json.loads(config.to_json())
    out = {k: d.get(k) for k in _IDENTITY_FIELDS}
    out["data"] = {k: d["data"].get(k) for k in _IDENTITY_DATA}
    out["train"] = {k: d["train"].get(k) for k in _IDENTITY_TRAIN}
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


def check_workdir(config, workdir: str):
    """Record the run's config in the workdir; refuse a workdir that holds a run of another config.

    A workdir whose earlier attempt never got to train (config.json only: it failed on bad input) is reused.
    """
    path = os.path.join(workdir, "config.json")
    mine = _identity(config)
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
