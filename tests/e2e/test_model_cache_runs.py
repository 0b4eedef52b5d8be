"""A model trained first is trained once: a second run of another method with the same teacher identity reuses it
(and says so), a different seed retrains it, and an explicit init bypasses the cache."""

import os

import jax
import numpy as np

from conftest import load_config, tiny


def _run(path, workdir, capsys, **changes):
    from kdjax import train

    cfg = tiny(load_config(path), train_limit=256, test_limit=100, epochs=0.5, pretrain_epochs=1.0)
    with cfg.unlocked():
        cfg.train.eval_batch_size = 100
        for k, v in changes.items():  # "a.b.c" -> cfg.a.b.c = v
            target = cfg
            for part in k.split(".")[:-1]:
                target = target[part]
            target[k.split(".")[-1]] = v
    train.run(cfg, str(workdir))
    return capsys.readouterr().out


def _variables(export_dir):
    from kdjax.weights.export_dir import load_export

    return jax.tree.leaves(load_export(export_dir)[0])


def test_teacher_is_trained_once(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("KDJAX_CACHE", str(cache))
    out = _run("configs/kd.py", tmp_path / "kd", capsys)
    assert "training Teacher (convnet_teacher) first" in out and "kept in the cache" in out
    assert len(os.listdir(cache / "models")) == 1
    out = _run("configs/dkd.py", tmp_path / "dkd", capsys)  # another method, the same teacher identity
    assert "reusing the Teacher (convnet_teacher) trained earlier" in out and "training Teacher" not in out
    assert not os.path.exists(tmp_path / "dkd" / "pretrain" / "Teacher" / "checkpoints")
    for a, b in zip(_variables(tmp_path / "kd" / "pretrain" / "Teacher" / "export"),
                    _variables(tmp_path / "dkd" / "pretrain" / "Teacher" / "export")):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = _run("configs/dkd.py", tmp_path / "seed1", capsys, seed=1)  # another identity: trained again
    assert "training Teacher (convnet_teacher) first" in out and "reusing" not in out
    assert len(os.listdir(cache / "models")) == 2
    out = _run("configs/dkd.py", tmp_path / "given", capsys,
               **{"models.Teacher.init": str(tmp_path / "kd" / "pretrain" / "Teacher" / "export")})
    assert "reusing" not in out and "training Teacher" not in out  # an explicit init wins
    assert not os.path.exists(tmp_path / "given" / "pretrain")
