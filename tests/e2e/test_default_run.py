"""The one-command slice end to end on a few hundred real Fashion-MNIST images: teacher first, then DKD."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, load_config, tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from kdjax import train

    cfg = tiny(load_config("configs/dkd.py"))
    workdir = tmp_path_factory.mktemp("dkd")
    summary = train.run(cfg, str(workdir))
    return cfg, workdir, summary


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_teacher_is_trained_first_then_student_learns(trained):
    cfg, wd, summary = trained
    assert (wd / "pretrain" / "Teacher" / "export" / "spec.json").is_file()
    ev = summary["eval"]
    assert ev["count"] == 500
    # 10 classes: chance is 10%; a few dozen steps on real images already go far beyond it
    assert ev["Teacher/top1"] > 0.55, ev
    assert ev["Student/top1"] > 0.35, ev
    assert ev["Student/top5"] >= ev["Student/top1"]


def test_metrics_and_tensorboard_written(trained):
    _, wd, _ = trained
    records = _read_jsonl(wd / "metrics.jsonl")
    train_recs = [r for r in records if r["kind"] == "train"]
    assert train_recs and all(np.isfinite(r["loss"]) for r in train_recs)
    assert {"loss/gt_ce/Student", "lr", "top1/Student"} <= set(train_recs[-1])
    assert any(r["kind"] == "eval" for r in records)
    assert train_recs[-1]["loss"] < train_recs[0]["loss"]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(wd / "tensorboard"))


def test_export_reproduces_training_time_student(trained):
    from kdjax.config.check import check
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn
    from kdjax.trainer import Trainer

    cfg, wd, _ = trained
    with cfg.unlocked():
        cfg.models.Teacher.init = str(wd / "pretrain" / "Teacher" / "export")
    checked = check(cfg)  # the training split's statistics: the normalisation the run computed
    test_src, info = checked.test, checked.info
    phase = Trainer(cfg, str(wd), test_src, test_src, info, "check")
    state, _, step = phase.restore_latest()
    images = np.stack([test_src[i]["image"] for i in range(16)])
    x = normalize(images, phase.mean, phase.std)
    student = phase.submodels["Student"].module
    expected = student.apply({"params": state.params["Student"], "batch_stats": state.batch_stats["Student"]}, x,
                             train=False)
    logits_fn, spec = export_logits_fn(str(wd / "export"))
    np.testing.assert_allclose(np.asarray(logits_fn(x)), np.asarray(expected), rtol=1e-5, atol=1e-5)
    assert spec["arch"] == "convnet_student" and spec["label_names"][9] == "Ankle boot"
    assert tuple(spec["mean"]) == phase.mean and tuple(spec["std"]) == phase.std


def test_infer_cli_prints_top5_per_image(trained, tmp_path):
    _, wd, _ = trained
    out = subprocess.run([sys.executable, "-m", "kdjax.infer", f"--export_dir={wd / 'export'}", "--from_dataset=3",
                          f"--samples_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3 and len(os.listdir(tmp_path)) == 3
    for r in rows:
        assert len(r["class_ids"]) == 5 and len(r["label_names"]) == 5
        assert r["scores"] == sorted(r["scores"], reverse=True) and 0.0 <= r["scores"][0] <= 1.0


def test_eval_mode_matches_final_evaluation(trained):
    from kdjax import evaluate as eval_mode

    cfg, wd, summary = trained
    result = eval_mode.run(cfg, str(wd))
    assert result["Student/top1"] == pytest.approx(summary["eval"]["Student/top1"], abs=1e-6)
    exported = eval_mode.run(cfg, str(wd), export_dir=str(wd / "export"))
    assert exported["Student/top1"] == pytest.approx(summary["eval"]["Student/top1"], abs=1e-6)


def _export_vars(path):
    from kdjax.weights.export_dir import load_export

    return jax.tree.leaves(load_export(str(path))[0])


def test_resume_after_interruption_equals_uninterrupted_run(trained, tmp_path):
    from kdjax import train

    _, wd, _ = trained
    teacher = str(wd / "pretrain" / "Teacher" / "export")

    def cfg(**train_over):
        c = tiny(load_config("configs/dkd.py"), train_limit=384, epochs=1.0)
        with c.unlocked():
            c.models.Teacher.init = teacher
            c.train.checkpoint_every_steps = 100
            c.train.update(train_over)
        return c

    train.run(cfg(), str(tmp_path / "straight"))
    stopped = train.run(cfg(stop_after_steps=4), str(tmp_path / "resumed"))
    assert stopped == {"preempted": True, "step": 4}
    assert not (tmp_path / "resumed" / "export").exists()
    train.run(cfg(), str(tmp_path / "resumed"))  # same command again: resumes at step 4
    assert not (tmp_path / "resumed" / "pretrain").exists()  # the configured teacher init was used
    for a, b in zip(_export_vars(tmp_path / "straight" / "export"), _export_vars(tmp_path / "resumed" / "export")):
        np.testing.assert_array_equal(a, b)


_DEVICE_RUN = r"""
import json, sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
import jax
from conftest import load_config, tiny
from kdjax import train
c = tiny(load_config("configs/dkd.py"), train_limit=512, epochs=1.0)
with c.unlocked():
    c.models.Teacher.init = {teacher!r}
    c.train.log_every_steps = 1
train.run(c, {workdir!r})
print(json.dumps({{"devices": jax.device_count()}}))
"""


def test_one_and_eight_devices_give_the_same_losses(trained, tmp_path):
    _, wd, _ = trained
    teacher = str(wd / "pretrain" / "Teacher" / "export")
    losses = {}
    for n in (1, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        code = _DEVICE_RUN.format(repo=REPO, tests=os.path.join(REPO, "tests"), teacher=teacher,
                                  workdir=str(tmp_path / f"d{n}"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout.strip().splitlines()[-1])["devices"] == n
        losses[n] = [r["loss"] for r in _read_jsonl(tmp_path / f"d{n}" / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses[1]) == len(losses[8]) == 8
    np.testing.assert_allclose(losses[8], losses[1], rtol=2e-4)
