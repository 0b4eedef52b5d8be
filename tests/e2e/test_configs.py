"""Every method config trains end to end for a few steps on real data; presets validate and say what is missing."""

import os

import numpy as np
import pytest

from conftest import load_config, tiny

METHODS = ["kd", "dkd", "dml", "udml", "ssld", "afd", "dist", "mgd", "wsl", "rkd"]


@pytest.fixture(scope="module")
def teacher_export(tmp_path_factory):
    """One tiny convnet_teacher, trained once, used as the frozen teacher of every config."""
    from kdjax import train

    cfg = tiny(load_config("configs/kd.py"), train_limit=512, epochs=0.25, pretrain_epochs=1.0)
    workdir = tmp_path_factory.mktemp("teacher")
    train.run(cfg, str(workdir))
    return str(workdir / "pretrain" / "Teacher" / "export")


@pytest.mark.parametrize("method", METHODS)
def test_method_config_trains_a_few_steps(method, teacher_export, tmp_path):
    from kdjax import train

    cfg = tiny(load_config(f"configs/{method}.py"), train_limit=256, epochs=1.0)
    with cfg.unlocked():
        for m in cfg.models.values():
            if m.init == "train":
                m.init = teacher_export
    summary = train.run(cfg, str(tmp_path))
    ev = summary["eval"]
    assert 0.0 <= ev["Student/top1"] <= 1.0
    with open(tmp_path / "metrics.jsonl") as f:
        last = [line for line in f if '"train"' in line][-1]
    import json

    rec = json.loads(last)
    assert np.isfinite(rec["loss"])
    # every configured loss entry contributed a finite term
    for name, entry in cfg.losses.items():
        assert any(k.startswith(f"loss/{entry.type}") for k in rec), (name, sorted(rec))
    assert os.path.isfile(tmp_path / "export" / "spec.json")


@pytest.mark.parametrize("path", ["configs/dkd.py:imagenet", "configs/dkd.py:cifar100", "configs/kd.py:cifar100"]
                         + [f"configs/{m}.py:imagenet" for m in METHODS if m not in ("dml", "udml", "dkd")])
def test_presets_need_a_teacher(path):
    from kdjax.config.check import check_config
    from kdjax.errors import ConfigError

    cfg = load_config(*path.split(":"))
    with pytest.raises(ConfigError, match=r"models\.Teacher\.init"):
        check_config(cfg)


@pytest.mark.parametrize("path", ["configs/dkd.py:imagenet", "configs/dkd.py:cifar100"])
def test_presets_without_data_say_what_to_provide(path, tmp_path):
    from kdjax import train
    from kdjax.errors import DataError

    cfg = load_config(*path.split(":"))
    teacher = tmp_path / "teacher.pdparams"
    teacher.write_bytes(b"")
    with cfg.unlocked():
        cfg.models.Teacher.init = str(teacher)
        cfg.data.tfds_data_dir = str(tmp_path / "no_tfds_here")
    with pytest.raises(DataError) as e:
        train.run(cfg, str(tmp_path / "run"))
    assert "tfds_data_dir" in str(e.value) or "data_dir" in str(e.value)
