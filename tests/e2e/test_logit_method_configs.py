"""The newer logit-method configs (MLKD, MLKD + LS, NKD, USKD, CTKD, CTKD + LS) validate, their presets name what is
missing, and each trains a few steps on real data with every logged loss term finite; CTKD's learnable temperature
is in the checkpointed train state and moves."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import load_config, tiny

CONFIGS = ["mlkd", "mlkd_ls", "nkd", "uskd", "ctkd", "ctkd_ls", "ctkd:dkd"]


def _load(name):
    path, _, arg = name.partition(":")
    return load_config(f"configs/{path}.py", arg or None)


@pytest.fixture(scope="module")
def teacher_export(tmp_path_factory):
    """One tiny convnet_teacher, trained once, the frozen teacher of every config."""
    from kdjax import train

    cfg = tiny(load_config("configs/kd.py"), train_limit=512, epochs=0.25, pretrain_epochs=1.0)
    workdir = tmp_path_factory.mktemp("teacher")
    train.run(cfg, str(workdir))
    return str(workdir / "pretrain" / "Teacher" / "export")


def _last_train_record(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return json.loads([line for line in f if '"train"' in line][-1])


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_a_few_steps_with_finite_terms(name, teacher_export, tmp_path):
    from kdjax import train
    from kdjax.config.check import check_config

    cfg = tiny(_load(name), train_limit=256, epochs=1.0)
    with cfg.unlocked():
        for m in cfg.models.values():
            if m.init == "train":
                m.init = teacher_export
    check_config(cfg)
    summary = train.run(cfg, str(tmp_path))
    rec = _last_train_record(str(tmp_path))
    assert np.isfinite(rec["loss"])
    for entry in cfg.losses.values():
        terms = [v for k, v in rec.items() if k.startswith(f"loss/{entry.type}/")]
        assert terms and all(np.isfinite(terms)), (entry.type, sorted(rec))
    if name == "mlkd":  # its four parts, the strong view's included
        assert {k.rsplit("/", 1)[1] for k in rec if k.startswith("loss/mlkd/")} == {"ce", "kd", "cc", "bc"}
    assert 0.0 <= summary["eval"]["Student/top1"] <= 1.0
    assert os.path.isfile(tmp_path / "export" / "spec.json")
    if name.startswith("ctkd"):
        _check_temperature_parameter(cfg, tmp_path)


def _check_temperature_parameter(cfg, workdir):
    """g lives in params['_losses'], is restored from the checkpoint, and was trained (moved from its init)."""
    from kdjax.data.sources import open_source
    from kdjax.steps import LOSS_PARAMS
    from kdjax.trainer import Trainer

    train_src, info = open_source(cfg.data, "train")
    test_src, _ = open_source(cfg.data, "test")
    phase = Trainer(cfg, str(workdir), train_src, test_src, info, "check")
    state, _, step = phase.restore_latest()
    g = float(jax.device_get(state.params[LOSS_PARAMS]["ctkd_Student_Teacher"]["global_t"]))
    assert step == 4 and np.isfinite(g) and g != cfg.losses.ctkd.params.init


@pytest.mark.parametrize("name", ["mlkd:cifar100", "mlkd_ls:cifar100", "nkd:cifar100", "ctkd:cifar100",
                                  "ctkd_ls:cifar100"])
def test_presets_need_a_teacher(name):
    from kdjax.config.check import check_config
    from kdjax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"models\.Teacher\.init"):
        check_config(_load(name))


def test_uskd_preset_is_self_distillation():
    from kdjax.config.check import check_config

    cfg = _load("uskd:cifar100")
    check_config(cfg)
    assert list(cfg.models) == ["Student"] and cfg.models.Student.arch == "resnet8x4"


def test_mlkd_refuses_a_teacher_cache(monkeypatch):
    """The strong view needs the teacher run live: a config whose teacher comes from a cache is refused, naming
    teacher_cache."""
    from kdjax.config import check
    from kdjax.data import teacher_cache
    from kdjax.errors import ConfigError

    cfg = _load("mlkd")
    manifest = {"model": "Teacher", "arch": cfg.models.Teacher.arch}
    monkeypatch.setattr(teacher_cache, "read_manifest", lambda directory: manifest)
    with cfg.unlocked():
        cfg.teacher_cache = "/nonexistent/cache"
        cfg.data.augment = "none"
    with pytest.raises(ConfigError, match=r"teacher_cache.*strong"):
        check.check_teacher_cache(cfg)
