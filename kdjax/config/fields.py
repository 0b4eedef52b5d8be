"""The type and range of every scalar config field, in one table, so that no field can be set to nonsense unnoticed
(a negative weight decay, an infinite learning rate, zero evaluation interval).

`FIELDS` maps a dotted path of `base_config()` to a check returning an error message or None. Sub-model entries
(`models.<name>.*`) and loss entries (`losses.<name>.*`) are checked by kdjax/config/check.py and the loss modules;
the data source's own fields by its SourceKind. tests/unit/test_config_fields.py enumerates base_config() so a new
field without a check here fails it.
"""

import math
import numbers
from typing import Callable, Dict, Optional

Check = Callable[[object], Optional[str]]


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def number(lo=None, hi=None, lo_open=False, integer=False) -> Check:
    """A finite number (an integer with `integer`) within [lo, hi] (lo excluded with `lo_open`)."""
    def check(v):
        ok = _is_real(v) and (not integer or float(v) == int(v))
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v <= hi
        if ok:
            return None
        kind = "an integer" if integer else "a finite number"
        bounds = []
        if lo is not None:
            bounds.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            bounds.append(f"<= {hi}")
        return f"must be {kind}{' ' + ' and '.join(bounds) if bounds else ''}, got {v!r}"
    return check


def one_of(*choices) -> Check:
    return lambda v: None if v in choices else f"must be one of {list(choices)}, got {v!r}"


def boolean(v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def text(v):
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def optional_text(v):
    return None if v is None or isinstance(v, str) else f"must be a string or None, got {v!r}"


def floats(length=None, lo=None, lo_open=False) -> Check:
    """A tuple/list of finite numbers (of `length`), each above `lo`."""
    def check(v):
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length) or not v:
            return f"must be a list of {length or 'one or more'} numbers, got {v!r}"
        for x in v:
            if not _is_real(x) or (lo is not None and (x <= lo if lo_open else x < lo)):
                return f"must hold finite numbers{f' > {lo}' if lo_open else (f' >= {lo}' if lo is not None else '')}, got {v!r}"
        return None
    return check


def milestones(v):
    if not isinstance(v, (list, tuple)) or any(not _is_real(x) or x <= 0 for x in v):
        return f"must be a list of epochs > 0, got {v!r}"
    return None if list(v) == sorted(v) else f"must be in increasing order, got {v!r}"


POSITIVE_INT = number(lo=0, lo_open=True, integer=True)
NON_NEGATIVE_INT = number(lo=0, integer=True)
POSITIVE = number(lo=0, lo_open=True)
NON_NEGATIVE = number(lo=0)

_OPTIM = {
    "name": one_of("sgd", "adamw"),
    "lr": POSITIVE, "momentum": number(0, 1), "nesterov": boolean, "weight_decay": NON_NEGATIVE,
    "schedule": one_of("cosine", "step", "constant"), "warmup_epochs": NON_NEGATIVE, "milestones": milestones,
    "decay_rate": number(0, 1, lo_open=True), "grad_clip_norm": NON_NEGATIVE,
}

FIELDS: Dict[str, Check] = {
    "seed": NON_NEGATIVE_INT,
    "export_model": text,
    "precision": one_of("float32", "bfloat16"),
    "teacher_cache": text,
    "metric_names": one_of("kdjax", "paddleclas"),
    "data.name": text, "data.source": text, "data.tfds_data_dir": optional_text, "data.data_dir": optional_text,
    "data.train_split": text, "data.test_split": text, "data.root": optional_text, "data.train_list": text,
    "data.test_list": text, "data.label_names_file": optional_text, "data.unlabeled_list": optional_text,
    "data.unlabeled_split": optional_text, "data.unlabeled_ratio": number(0, 1, lo_open=True),
    "data.num_classes": NON_NEGATIVE_INT, "data.train_limit": NON_NEGATIVE_INT, "data.test_limit": NON_NEGATIVE_INT,
    "data.mean": floats(), "data.std": floats(lo=0, lo_open=True), "data.augment": text,
    "data.image_size": NON_NEGATIVE_INT, "data.eval_crop_ratio": number(0, 1, lo_open=True),
    "data.crop_scale": floats(2, lo=0, lo_open=True), "data.mixup_alpha": NON_NEGATIVE,
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


def _value(config, path: str):
    node = config
    for part in path.split("."):
        if not hasattr(node, "get") or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_fields(config) -> None:
    """Raise ConfigError naming the first field of `FIELDS` whose value is out of type or range. A field a config
    does not have is skipped (configs may drop optional ones); one it has with a wrong value is not."""
    from kdjax.errors import ConfigError

    for path, check in FIELDS.items():
        value = _value(config, path)
        if value is _MISSING:
            continue
        if hasattr(value, "to_dict") or hasattr(value, "to_list"):
            value = value.to_dict() if hasattr(value, "to_dict") else value.to_list()
        problem = check(value)
        if problem:
            raise ConfigError(path, problem)
