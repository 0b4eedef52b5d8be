"""A student defined only in this test's temporary directory (`arch="<tmp>/my_student.py:TinyNet"`) distils from the
default CNN teacher with a FitNet hint on a submodule captured by its module path; the export re-loads (spec records
the file) and reproduces the trained student's logits; `kdjax.infer` runs it."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import REPO, load_config, tiny

STUDENT = textwrap.dedent('''
    import flax.linen as nn
    import jax.numpy as jnp


    class Stage(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Conv(self.width, (3, 3), strides=2, padding=1, use_bias=False)(x)
            return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))


    class Backbone(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x, train: bool):
            return Stage(2 * self.width, name="stage2")(Stage(self.width, name="stage1")(x, train), train)


    class TinyNet(nn.Module):
        num_classes: int = 10
        width: int = 8

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = Backbone(self.width, name="backbone")(x, train)
            x = nn.Dropout(0.1, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
            return nn.Dense(self.num_classes, name="head")(x)
''')


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from kdjax import train
    from kdjax.config.defaults import loss_entry, model_entry

    folder = tmp_path_factory.mktemp("user_module")
    path = folder / "my_student.py"
    path.write_text(STUDENT)
    cfg = tiny(load_config("configs/kd.py"), train_limit=256, test_limit=250, epochs=1.0, pretrain_epochs=1.0)
    with cfg.unlocked():
        cfg.models.Teacher.capture = ("blocks[1]",)  # [N, 7, 7, 64]
        cfg.models.Student = model_entry(f"{path}:TinyNet", capture=["backbone/stage2"], width=8)  # [N, 7, 7, 16]
        cfg.losses.fitnet = loss_entry("fitnet", 1.0, pairs=[["Student", "Teacher"]], s_key="backbone/stage2",
                                       t_key="blocks[1]")
    workdir = folder / "run"
    summary = train.run(cfg, str(workdir))
    return cfg, str(workdir), summary, str(path)


def test_feature_loss_on_a_module_path_is_logged_and_finite(user_run):
    _, workdir, summary, _ = user_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rec = json.loads([line for line in f if '"train"' in line][-1])
    for term in ("loss/fitnet/Student-Teacher", "loss/kd/Student-Teacher", "loss/gt_ce/Student"):
        assert np.isfinite(rec[term]), rec
    assert rec["loss/fitnet/Student-Teacher"] > 0
    assert 0.0 <= summary["eval"]["Student/top1"] <= 1.0


def test_export_reloads_and_gives_the_training_time_logits(user_run):
    from kdjax.data.sources import open_source
    from kdjax.models.distillation import normalize
    from kdjax.trainer import Trainer
    from kdjax.weights.export_dir import export_logits_fn, load_spec

    cfg, workdir, _, path = user_run
    spec = load_spec(os.path.join(workdir, "export"))
    assert spec["arch"] == f"{path}:TinyNet" and spec["user_module"]["file"] == path
    assert spec["kwargs"] == {"width": 8}

    # the trained student as training evaluates it: the last checkpoint, eval mode
    with cfg.unlocked():  # the teacher trained first (init='train' in the config)
        cfg.models.Teacher.init = os.path.join(workdir, "pretrain", "Teacher", "export")
    train_src, info = open_source(cfg.data, "train")
    test_src, _ = open_source(cfg.data, "test")
    phase = Trainer(cfg, workdir, train_src, test_src, info, "check")
    state, _, _ = phase.restore_latest()
    sub = phase.submodels["Student"]
    images = np.stack([test_src[i]["image"] for i in range(16)])
    x = normalize(images, spec["mean"], spec["std"])
    variables = {"params": state.params["Student"], "batch_stats": state.batch_stats["Student"]}
    trained = np.asarray(jax.jit(lambda v, x: sub.module.apply(v, x, train=False))(variables, x))

    logits_fn, _ = export_logits_fn(os.path.join(workdir, "export"))
    np.testing.assert_allclose(np.asarray(logits_fn(x)), trained, rtol=1e-5, atol=1e-6)


def test_infer_cli_runs_the_exported_user_module(user_run, tmp_path):
    _, workdir, _, _ = user_run
    proc = subprocess.run([sys.executable, "-m", "kdjax.infer", f"--export_dir={os.path.join(workdir, 'export')}",
                           "--from_dataset=2", f"--samples_dir={tmp_path}"], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(lines) == 2 and all(len(r["class_ids"]) == 5 for r in lines)
