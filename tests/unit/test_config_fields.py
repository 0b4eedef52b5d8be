"""Every config field has a type/range check (kdjax/config/fields.py), enumerated from the configs themselves: a new
field without a check, or a check that lets nonsense through, fails here.

Leaves come from base_config(), every configs/*.py and every preset each offers; `models.<name>.*` and
`losses.<name>.*` entries are checked against MODEL_FIELDS / LOSS_FIELDS (and each loss module's hyper-parameters).
"""

import glob
import math
import os

import ml_collections
import pytest

from conftest import REPO, load_config
from kdjax.config.check import check_config
from kdjax.config.defaults import base_config
from kdjax.config.fields import FIELDS, LOSS_FIELDS, MODEL_FIELDS, check_fields, leaves
from kdjax.errors import ConfigError

PRESETS = ("imagenet", "cifar100")


def _training_configs():
    """(name, config) of base_config, every training config file and each preset it accepts."""
    out = [("base_config", base_config())]
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        rel = os.path.relpath(path, REPO)
        if "sweep" in rel:  # a sweep config: its `base` is a base_config()
            out.append((rel + ".base", load_config(rel).base))
            continue
        if rel == os.path.join("configs", "paddleclas.py"):  # a PaddleClas YAML's translation: one per seed YAML
            out += [(f"{rel}:{method}", load_config(rel, path)) for method, path in _paddleclas_seed_yamls()]
            continue
        out.append((rel, load_config(rel)))
        for preset in PRESETS:
            try:
                out.append((f"{rel}:{preset}", load_config(rel, preset)))
            except ValueError:  # this config has no such preset
                pass
    return out


def _paddleclas_seed_yamls():
    """(method, path) of every seed-document YAML (Arch + Loss) with the common sections, written to a temp folder."""
    import tempfile

    seed = os.path.join(REPO, "tests", "data", "paddleclas_seed")
    directory = tempfile.mkdtemp(prefix="kdjax-fields-")
    with open(os.path.join(seed, "_common.yaml")) as f:
        common = f.read()
    out = []
    for path in sorted(glob.glob(os.path.join(seed, "[!_]*.yaml"))):
        method = os.path.basename(path)[:-5]
        with open(path) as f, open(os.path.join(directory, method + ".yaml"), "w") as g:
            g.write(common + "\n" + f.read())
        out.append((method, g.name))
    return out


CONFIGS = _training_configs()


def test_the_enumeration_sees_every_config_and_preset():
    names = [n for n, _ in CONFIGS]
    assert len([n for n in names if n.endswith(":imagenet")]) >= 10 and any(n.endswith(":cifar100") for n in names)
    assert len(FIELDS) >= 60


@pytest.mark.parametrize("name, config", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_every_leaf_has_a_check_and_passes_it(name, config):
    from kdjax.losses.registry import loss_types

    for path, value in leaves(config):
        if path == "models":
            for model, entry in value.items():
                unchecked = sorted(set(entry) - set(MODEL_FIELDS))
                assert not unchecked, f"{name}: models.{model}.{unchecked[0]} has no check in MODEL_FIELDS"
        elif path == "losses":
            for loss, entry in value.items():
                spec = loss_types()[entry.type]
                unchecked = sorted(set(entry) - set(LOSS_FIELDS) - set(spec.defaults))
                assert not unchecked, f"{name}: losses.{loss}.{unchecked[0]} has no check"
                for param in (entry.get("params") or {}):
                    assert param in spec.checks, f"{name}: losses.{loss}.params.{param} has no check in its module"
        else:
            assert path in FIELDS, f"{name}: config.{path} has no check in kdjax/config/fields.py FIELDS"
    check_fields(config)  # and every value the configs ship passes its check


def _plain_config(mutate=None, source="configs/dkd.py"):
    """A dkd config as a plain dict → ConfigDict: any type may be put anywhere (as a config file could)."""
    d = dict(CONFIGS)[source].to_dict()
    if mutate:
        mutate(d)
    return ml_collections.ConfigDict(d)


def _put(d, path, value):
    parts = path.split(".")
    for p in parts[:-1]:
        d = d[p]
    d[parts[-1]] = value


def _wrong_values(path, default):
    """Values no field accepts in place of `default`: another type, and for numbers non-finite ones."""
    if isinstance(default, bool):
        return ["yes", 1]
    if isinstance(default, (int, float)):
        return ["1", None, math.inf, -math.inf, math.nan, True]
    if isinstance(default, str) or default is None:
        return [3, [1]]
    if isinstance(default, (tuple, list)):
        return ["1,2", [math.inf] * max(1, len(default)), 5] if default else ["1,2", 5]
    if hasattr(default, "items"):
        return ["x", 5, {"kd": 3}]
    raise AssertionError(f"{path}: no wrong values known for {default!r}")


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_every_field_refuses_wrong_types_and_non_finite_numbers(path):
    # the YAML route's record (config.paddleclas.*) exists only in a translated YAML: the seed document's DKD
    source = "configs/paddleclas.py:dkd" if path.startswith("paddleclas.") else "configs/dkd.py"
    default = dict(leaves(dict(CONFIGS)[source]))[path]
    for bad in _wrong_values(path, default):
        config = _plain_config(lambda d: _put(d, path, bad), source)
        with pytest.raises(ConfigError) as e:
            check_fields(config)
        assert e.value.field == path, (path, bad, str(e.value))


# field → (value refused, a substring of the message); the findings of issue 17 and their like
RANGES = {
    "optim.weight_decay": (-1.0, ">= 0"),
    "optim.warmup_epochs": (-1.0, ">= 0"),
    "optim.lr": (0.0, "> 0"),
    "optim.momentum": (1.0, "< 1"),
    "optim.decay_rate": (0.0, "> 0"),
    "optim.grad_clip_norm": (-1.0, ">= 0"),
    "optim.milestones": ((30, 20), "increasing"),
    "pretrain.optim.weight_decay": (-0.1, ">= 0"),
    "train.eval_every_epochs": (0.0, "> 0"),
    "train.epochs": (0.0, "> 0"),
    "train.batch_size": (0, "> 0"),
    "train.log_every_steps": (0, "> 0"),
    "train.checkpoint_every_steps": (-5, "> 0"),
    "train.keep_checkpoints": (0, "> 0"),
    "train.grad_accum_steps": (2.5, "integer"),
    "train.max_skipped": (-1, ">= 0"),
    "data.train_limit": (-1, ">= 0"),
    "data.std": ((0.0,), "> 0"),
    "data.crop_scale": ((0.5, 0.1), "min <= max"),
    "data.unlabeled_ratio": (1.0, "< 1"),
    "data.eval_crop_ratio": (1.5, "<= 1"),
    "data.mixup_alpha": (-0.2, ">= 0"),
    "data.num_threads": (0, "> 0"),
    "mesh.data": (-2, ">= -1"),
    "seed": (-3, ">= 0"),
    "precision": ("float16", "float32"),
    "train.nonfinite": ("ignore", "stop"),
}


@pytest.mark.parametrize("path", sorted(RANGES))
def test_out_of_range_values_are_refused_naming_the_field(path):
    bad, words = RANGES[path]
    config = _plain_config(lambda d: _put(d, path, bad))
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert e.value.field == path and words in str(e.value), str(e.value)


@pytest.mark.parametrize("section, epochs", [("optim", "train.epochs"), ("pretrain.optim", "pretrain.epochs")])
def test_warmup_longer_than_the_run_is_refused(section, epochs):
    config = _plain_config(lambda d: (_put(d, epochs, 2.0), _put(d, f"{section}.warmup_epochs", 3.0)))
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert e.value.field == f"{section}.warmup_epochs" and "warming up" in str(e.value), str(e.value)
    check_config(_plain_config(lambda d: (_put(d, epochs, 2.0), _put(d, f"{section}.warmup_epochs", 2.0))))


def test_unknown_fields_are_refused_not_ignored():
    config = _plain_config(lambda d: _put(d, "train.epoch", 3.0))
    with pytest.raises(ConfigError, match=r"config.train.epoch: no such config field; did you mean "
                                          r"config.train.epochs\?"):
        check_config(config)
    config = _plain_config(lambda d: _put(d, "models.Student.freeze", True))
    with pytest.raises(ConfigError, match=r"config.models.Student.freeze: no such field of a model entry"):
        check_config(config)


# models.<name>.<field> → a value of the wrong shape
MODEL_CASES = {
    "arch": [5, ""], "frozen": ["yes", 1], "init": [5, None], "capture": ["blocks[1]", [3]],
    "kwargs": ["depth=2", [1]], "train_mode": ["yes", 1],
}


@pytest.mark.parametrize("field", sorted(MODEL_FIELDS))
def test_model_entry_fields_are_checked(field):
    for bad in MODEL_CASES[field]:
        config = _plain_config(lambda d: _put(d, f"models.Student.{field}", bad))
        with pytest.raises(ConfigError) as e:
            check_config(config)
        assert e.value.field == f"models.Student.{field}", (bad, str(e.value))
    config = _plain_config(lambda d: _put(d, "models.Student.kwargs", {"num_classes": -10}))
    with pytest.raises(ConfigError, match="config.models.Student.kwargs.num_classes"):
        check_config(config)


LOSS_CASES = {"type": [5, ""], "weight": ["1.0", math.inf, None], "key": [5, ""], "s_key": [5], "t_key": [[1]],
              "s_keys": ["feat"], "t_keys": [[1, 2]], "pairs": [[["Student"]], "Student"], "models": [[5]],
              "params": ["T=4"]}


@pytest.mark.parametrize("field", sorted(LOSS_FIELDS))
def test_loss_entry_fields_are_checked(field):
    for bad in LOSS_CASES[field]:
        config = _plain_config(lambda d: _put(d, f"losses.dkd.{field}", bad))
        with pytest.raises(ConfigError) as e:
            check_config(config)
        assert e.value.field.startswith(f"losses.dkd.{field}"), (bad, str(e.value))
