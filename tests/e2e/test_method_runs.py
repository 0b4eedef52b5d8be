"""The methods beyond the seed trained end to end on real data (a few steps): the multi-teacher config (both teachers
trained first), and one run whose config holds every later loss type at once (plus mixup soft labels), which checks
that CRD's memory bank is in the checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import load_config, tiny


def _last_train_record(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return json.loads([line for line in f if '"train"' in line][-1])


@pytest.fixture(scope="module")
def multi_teacher_run(tmp_path_factory):
    """configs/multi_teacher.py, tiny: both teachers are trained first (two init='train' models), then the student."""
    from kdjax import train

    cfg = tiny(load_config("configs/multi_teacher.py"), train_limit=256, test_limit=250, epochs=1.0,
               pretrain_epochs=1.0)
    workdir = tmp_path_factory.mktemp("multi_teacher")
    summary = train.run(cfg, str(workdir))
    return str(workdir), summary


def test_multi_teacher_config_trains_both_teachers_first(multi_teacher_run):
    workdir, summary = multi_teacher_run
    assert set(summary["pretrained"]) == {"Teacher1", "Teacher2"}
    for name in ("Teacher1", "Teacher2"):
        assert os.path.isfile(os.path.join(workdir, "pretrain", name, "export", "spec.json"))
    rec = _last_train_record(workdir)
    k1, k2 = rec["loss/kd/Student-Teacher1"], rec["loss/kd/Student-Teacher2"]
    assert np.isfinite(k1) and np.isfinite(k2) and k1 != k2  # two different teachers, one term each
    assert 0.0 <= summary["eval"]["Student/top1"] <= 1.0


def test_every_new_loss_trains_in_one_run_and_crd_memory_is_checkpointed(multi_teacher_run, tmp_path):
    """configs/crd.py plus the loss entries of every other new config, with mixup soft labels on."""
    from kdjax import train
    from kdjax.data.sources import open_source
    from kdjax.trainer import Trainer

    teacher = os.path.join(multi_teacher_run[0], "pretrain", "Teacher1", "export")
    cfg = tiny(load_config("configs/crd.py"), train_limit=256, test_limit=250, epochs=1.0)
    keys = ["blocks[0]", "blocks[1]", "blocks[2]", "avg_pool"]
    with cfg.unlocked():
        cfg.models.Teacher.init = teacher
        cfg.models.Teacher.capture = keys
        cfg.models.Student.capture = keys
        cfg.losses.crd.params.nce_k = 16
        cfg.data.mixup_alpha = 0.2
        for method in ("fitnet", "at", "kd_ls", "dkd_ls", "skd", "pefd"):
            for name, entry in load_config(f"configs/{method}.py").losses.items():
                if entry.type != "gt_ce":
                    cfg.losses[f"{method}_{name}"] = entry
    summary = train.run(cfg, str(tmp_path))
    rec = _last_train_record(str(tmp_path))
    for kind in ("gt_ce", "crd", "fitnet", "at", "kd", "dkd", "skd", "pefd"):
        values = [v for k, v in rec.items() if k.startswith(f"loss/{kind}/")]
        assert values and all(np.isfinite(values)), (kind, sorted(rec))
    assert 0.0 <= summary["eval"]["Student/top1"] <= 1.0

    # the memory bank is part of the checkpointed train state
    train_src, info = open_source(cfg.data, "train")
    test_src, _ = open_source(cfg.data, "test")
    phase = Trainer(cfg, str(tmp_path), train_src, test_src, info, "check")
    state, _, step = phase.restore_latest()
    bank = state.loss_state["crd_Student_Teacher"]
    assert step == 4 and bank["memory_s"].shape == (256, 128)
    assert float(bank["z_s"]) > 0 and float(bank["z_t"]) > 0  # set by the first step
    fresh = phase.losses.init_state(jax.random.PRNGKey(int(cfg.seed) + 98), 256)["crd_Student_Teacher"]
    moved = np.any(np.asarray(bank["memory_t"]) != np.asarray(fresh["memory_t"]), axis=1)
    assert 0 < moved.sum() <= 256
