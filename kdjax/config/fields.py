"""The type and range of every scalar config field, in one table, so that no field can be set to nonsense unnoticed
(a negative weight decay, an infinite learning rate, zero evaluation interval).

`FIELDS` maps a dotted path of `base_config()` to a check returning an error message or None; a field that is not
in it (a typo in a config file: `c.train.epoch = 3`) is refused too, never silently ignored. `MODEL_FIELDS` and
`LOSS_FIELDS` check the structure of every `models.<name>.*` and `losses.<name>.*` entry (their meaning: the model
registry, kdjax/config/check.py and each loss module); `CROSS_FIELD` holds the rules between fields (a warm-up
longer than the run). tests/unit/test_config_fields.py enumerates every leaf of base_config(), of each configs/*.py
and of its presets, so a new field without a check here fails it.
"""

import math
import numbers
from typing import Callable, Dict, Optional

Check = Callable[[object], Optional[str]]


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def number(lo=None, hi=None, lo_open=False, integer=False, hi_open=False) -> Check:
    """A finite number (an integer with `integer`) within [lo, hi] (lo excluded with `lo_open`, hi with
    `hi_open`)."""
    def check(v):
        ok = _is_real(v) and (not integer or float(v) == int(v))
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if ok:
            return None
        kind = "an integer" if integer else "a finite number"
        bounds = []
        if lo is not None:
            bounds.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            bounds.append(f"{'<' if hi_open else '<='} {hi}")
        return f"must be {kind}{' ' + ' and '.join(bounds) if bounds else ''}, got {v!r}"
    return check


def one_of(*choices) -> Check:
    return lambda v: None if v in choices else f"must be one of {list(choices)}, got {v!r}"


def int_one_of(*choices) -> Check:
    """An integer (not a bool, not a float) among `choices`."""
    def check(v):
        ok = isinstance(v, int) and not isinstance(v, bool) and v in choices
        return None if ok else f"must be one of {list(choices)}, got {v!r}"
    return check


def boolean(v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def text(v):
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def optional_text(v):
    return None if v is None or isinstance(v, str) else f"must be a string or None, got {v!r}"


def floats(length=None, lo=None, lo_open=False, allow_empty=False) -> Check:
    """A tuple/list of finite numbers (of `length`), each above `lo`; empty only with `allow_empty` (= not set)."""
    def check(v):
        if allow_empty and isinstance(v, (list, tuple)) and not v:
            return None
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length) or not v:
            return f"must be a list of {length or 'one or more'} numbers, got {v!r}"
        for x in v:
            if not _is_real(x) or (lo is not None and (x <= lo if lo_open else x < lo)):
                return f"must hold finite numbers{f' > {lo}' if lo_open else (f' >= {lo}' if lo is not None else '')}, got {v!r}"
        return None
    return check


def crop_scale(v):
    problem = floats(2, lo=0, lo_open=True)(v)
    if problem:
        return problem
    return None if v[0] <= v[1] <= 1 else f"must be (min, max) with 0 < min <= max <= 1, got {v!r}"


def nonempty_text(v):
    return None if isinstance(v, str) and v.strip() else f"must be a non-empty string, got {v!r}"


def names(v):
    """A list of names (a single string is refused: it would be read as a list of characters)."""
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) and x for x in v):
        return None
    return f"must be a list of names (strings), e.g. ['blocks[1]'], got {v!r}"


def mapping(v):
    return None if isinstance(v, dict) else f"must be a dict, got {v!r}"


def milestones(v):
    if not isinstance(v, (list, tuple)) or any(not _is_real(x) or x <= 0 for x in v):
        return f"must be a list of epochs > 0, got {v!r}"
    return None if list(v) == sorted(v) else f"must be in increasing order, got {v!r}"


POSITIVE_INT = number(lo=0, lo_open=True, integer=True)
NON_NEGATIVE_INT = number(lo=0, integer=True)
POSITIVE = number(lo=0, lo_open=True)
NON_NEGATIVE = number(lo=0)

_OPTIM = {
    "name": one_of("sgd", "adamw", "dot"),  # dot: kdjax/optim/dot.py (its own rules: kdjax.optim.check_optimizer)
    "delta": NON_NEGATIVE,  # DOT's momentum split (task μ − δ, distillation μ + δ)
    "lr": POSITIVE, "momentum": number(0, 1, hi_open=True), "nesterov": boolean, "weight_decay": NON_NEGATIVE,
    "schedule": one_of("cosine", "step", "constant"), "warmup_epochs": NON_NEGATIVE, "milestones": milestones,
    "decay_rate": number(0, 1, lo_open=True), "grad_clip_norm": NON_NEGATIVE,
}

def strings(v):
    ok = isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
    return None if ok else f"must be a list of strings, got {v!r}"


def _string_pairs(v):
    ok = isinstance(v, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 and
                                              all(isinstance(x, str) for x in p) for p in v)
    return None if ok else f"must be a list of (string, string) pairs, got {v!r}"


def _metric_keys(v):
    """{loss name: [(unit label, [PaddleClas key, ...]), ...]} (kdjax/config/metric_names.py reads it)."""
    ok = isinstance(v, dict) and all(
        isinstance(units, (list, tuple)) and all(isinstance(u, (list, tuple)) and len(u) == 2 and isinstance(u[0], str)
                                                 and not strings(u[1]) for u in units) for units in v.values())
    return None if ok else f"must map each loss name to (unit label, [metric key, ...]) pairs, got {v!r}"


# The YAML route's record of a translation (kdjax/config/paddleclas/): written by it, read by describe and the logs.
PADDLECLAS_RECORD: Dict[str, Check] = {
    "paddleclas.yaml": text, "paddleclas.overrides": strings, "paddleclas.notes": strings,
    "paddleclas.sources": _string_pairs, "paddleclas.metric_keys": _metric_keys,
}
OPAQUE = ("models", "losses", "paddleclas.metric_keys")  # checked whole (their keys are names, not fields)

FIELDS: Dict[str, Check] = {
    "seed": number(0, 2 ** 32 - 1, integer=True),
    "export_model": nonempty_text,
    "precision": one_of("float32", "bfloat16"),
    "kernels": one_of("auto", "xla", "cpu_tuned", "onednn"),  # kdjax/kernels/__init__.py NAMES
    "teacher_cache": text, "teacher_cache_approximate": boolean, "data.replayable": boolean,
    "metric_names": one_of("kdjax", "paddleclas"),
    "data.name": text, "data.source": text,  # name "": the folder's name (IDX, lists), the only TFDS dataset
    "data.tfds_data_dir": optional_text, "data.data_dir": optional_text,
    "data.train_split": text, "data.test_split": text, "data.root": optional_text, "data.train_list": text,
    "data.test_list": text, "data.label_names_file": optional_text, "data.unlabeled_list": optional_text,
    "data.unlabeled_split": optional_text, "data.unlabeled_ratio": number(0, 1, lo_open=True, hi_open=True),
    "data.num_classes": NON_NEGATIVE_INT, "data.train_limit": NON_NEGATIVE_INT, "data.test_limit": NON_NEGATIVE_INT,
    "data.holdout": NON_NEGATIVE_INT, "data.holdout_seed": number(0, 2 ** 32 - 1, integer=True),
    "train.final_test": boolean,
    "data.mean": floats(allow_empty=True), "data.std": floats(lo=0, lo_open=True, allow_empty=True),
    "data.augment": text, "data.channels": int_one_of(0, 1, 3), "data.decode_once_mb": NON_NEGATIVE,
    "data.image_size": NON_NEGATIVE_INT, "data.eval_crop_ratio": number(0, 1, lo_open=True),
    "data.crop_scale": crop_scale, "data.interpolation": one_of("bilinear", "bicubic"), "data.mixup_alpha": NON_NEGATIVE,
    "data.cutmix_alpha": NON_NEGATIVE, "data.skip_bad_images": boolean, "data.num_threads": POSITIVE_INT,
    "data.num_workers": NON_NEGATIVE_INT, "data.prefetch": POSITIVE_INT, "data.device_prefetch": NON_NEGATIVE_INT,
    "train.batch_size": POSITIVE_INT, "train.epochs": POSITIVE, "train.log_every_steps": POSITIVE_INT,
    "train.checkpoint_every_steps": POSITIVE_INT, "train.keep_checkpoints": POSITIVE_INT,
    "train.eval_every_epochs": POSITIVE, "train.eval_batch_size": POSITIVE_INT,
    "train.nonfinite": one_of("stop", "skip"), "train.max_skipped": NON_NEGATIVE_INT,
    "train.stop_after_steps": NON_NEGATIVE_INT, "train.grad_accum_steps": POSITIVE_INT,
    **{f"optim.{k}": v for k, v in _OPTIM.items()},
    "pretrain.epochs": POSITIVE, "pretrain.batch_size": POSITIVE_INT,
    **{f"pretrain.optim.{k}": v for k, v in _OPTIM.items()},
    "mesh.data": number(lo=-1, integer=True), "mesh.fsdp": POSITIVE_INT, "mesh.fsdp_min_size": NON_NEGATIVE_INT,
}
FIELDS.update(PADDLECLAS_RECORD)


# every `models.<name>` entry (model_entry in kdjax/config/defaults.py); kwargs go to the model's constructor
MODEL_FIELDS: Dict[str, Check] = {
    "arch": nonempty_text, "frozen": boolean, "init": text, "capture": names, "kwargs": mapping,
    "train_mode": boolean,  # a frozen model run with batch statistics (OFD's teacher)
}
MODEL_KWARGS: Dict[str, Check] = {"num_classes": POSITIVE_INT}  # kwargs kdjax itself reads

# every `losses.<name>` entry (loss_entry); pairs/models/params are parsed by kdjax/losses/entries.py, which names
# the field, and each hyper-parameter is checked by its loss module
def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


LOSS_FIELDS: Dict[str, Check] = {
    "type": nonempty_text, "weight": number(), "key": nonempty_text, "s_key": _optional(nonempty_text),
    "t_key": _optional(nonempty_text), "s_keys": _optional(names), "t_keys": _optional(names),
    "pairs": lambda v: None, "models": lambda v: None, "params": lambda v: None,
}


def _warmup_within(section: str, epochs_field: str):
    def rule(config):
        warmup = _value(config, f"{section}.warmup_epochs")
        epochs = _value(config, epochs_field)
        if _is_real(warmup) and _is_real(epochs) and warmup > epochs:
            return (f"{section}.warmup_epochs", f"is {warmup} but {epochs_field} is {epochs}: the learning rate would "
                                                f"still be warming up when the run ends; use a warm-up <= {epochs}")
        return None
    return rule


# rules between fields: (config) -> (field, message) or None; only fields that passed their own checks are compared
CROSS_FIELD = (
    _warmup_within("optim", "train.epochs"),
    _warmup_within("pretrain.optim", "pretrain.epochs"),
)


def _value(config, path: str):
    node = config
    for part in path.split("."):
        if not hasattr(node, "get") or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_list"):
        return value.to_list()
    return value


def leaves(config, prefix: str = ""):
    """(dotted path, value) of every leaf of a config; `models` and `losses` entries are leaves themselves."""
    items = config.items() if hasattr(config, "items") else []
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if hasattr(value, "items") and value and path not in OPAQUE \
                and not prefix.startswith(("models", "losses")):
            yield from leaves(value, path)
        else:
            yield path, value


def _unknown(path: str) -> str:
    import difflib

    close = difflib.get_close_matches(path, list(FIELDS), n=1, cutoff=0.75)
    hint = f"; did you mean config.{close[0]}?" if close else "; see kdjax/config/defaults.py for the fields"
    return "no such config field" + hint


def check_fields(config) -> None:
    """Raise ConfigError naming the first field whose value is out of type or range (`FIELDS`), a field kdjax does
    not know, a malformed `models.<name>` / `losses.<name>` entry, or a broken rule between fields. A field of
    `FIELDS` that a config does not have is skipped (configs may drop optional ones)."""
    from kdjax.errors import ConfigError

    for path, value in leaves(config):
        if path in ("models", "losses") or path in FIELDS:
            continue
        raise ConfigError(path, _unknown(path))
    for path, check in FIELDS.items():
        value = _value(config, path)
        if value is _MISSING:
            continue
        problem = check(_plain(value))
        if problem:
            raise ConfigError(path, problem)
    _check_entries(config, "models", MODEL_FIELDS, required=("arch",))
    models = _value(config, "models")
    for name, entry in (models.items() if models not in (_MISSING, None) else ()):
        kwargs = _plain(entry.get("kwargs") or {})
        for key, check in MODEL_KWARGS.items():
            problem = check(kwargs[key]) if key in kwargs else None
            if problem:
                raise ConfigError(f"models.{name}.kwargs.{key}", problem)
    _check_entries(config, "losses", LOSS_FIELDS, required=("type",), open_ended=True)
    for rule in CROSS_FIELD:
        found = rule(config)
        if found:
            raise ConfigError(*found)


def _check_entries(config, section: str, table: Dict[str, Check], required=(), open_ended: bool = False):
    """Each `<section>.<name>` entry is a dict whose known fields pass `table` (`open_ended`: other fields are the
    loss module's hyper-parameters, checked there)."""
    from kdjax.errors import ConfigError

    entries = _value(config, section)
    if entries is _MISSING or entries is None:
        return
    for name, entry in entries.items():
        field = f"{section}.{name}"
        if not hasattr(entry, "items"):
            raise ConfigError(field, f"must be an entry dict (e.g. {'model_entry' if section == 'models' else 'loss_entry'}"
                                     f"(...) from kdjax.config), got {entry!r}")
        for key in required:
            if key not in entry or entry[key] is None:
                raise ConfigError(f"{field}.{key}", "missing")
        for key, value in entry.items():
            check = table.get(key)
            if check is None:
                if open_ended:
                    continue
                known = ", ".join(table)
                raise ConfigError(f"{field}.{key}", f"no such field of a model entry; its fields: {known}")
            problem = check(_plain(value))
            if problem:
                raise ConfigError(f"{field}.{key}", problem)
