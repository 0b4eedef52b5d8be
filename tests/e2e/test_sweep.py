"""The accuracy sweep end to end on tiny real data: teacher once, tuning on the validation split, final paired
seeds, last/best epoch, report with paired statistics, resume."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from conftest import load_config


def _tiny_sweep():
    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd", "multi_teacher")
        cfg.grids = {"baseline": (("optim.lr", (0.05, 0.1)),), "kd": (("losses.kd.weight", (0.5, 0.9)),),
                     "multi_teacher": (("losses.kd_teacher1.weight,losses.kd_teacher2.weight", (0.2, 0.45)),)}
        cfg.seeds = (0, 1)
        cfg.seeds_for.multi_teacher = (1,)  # fewer seeds: no pair for a test (n < 2), reported without one
        cfg.teacher_epochs = 0.5
        cfg.base.data.train_limit, cfg.base.data.holdout, cfg.base.data.test_limit = 512, 128, 200
        cfg.base.train.batch_size = 64
        cfg.base.train.epochs = 1.0
        cfg.base.train.eval_every_epochs = 0.5
        cfg.base.train.log_every_steps = 2
        cfg.base.train.eval_batch_size = 100
        cfg.label = "tiny test sweep"
        cfg.workers = 1  # in this process (test_sweep_workers.py runs the same sweep on two worker processes)
    return cfg


def test_sweep_tunes_on_validation_runs_paired_seeds_reports_and_resumes(tmp_path):
    from kdjax.tools import sweep

    cfg = _tiny_sweep()
    results = sweep.run_sweep(cfg, str(tmp_path))
    assert set(results["methods"]) == {"baseline", "kd", "multi_teacher"}
    for method, r in results["methods"].items():
        # tuning: one run per trial with the tuning seed, judged on validation only, the best one chosen
        scores = []
        for k in range(2):
            e = json.loads((tmp_path / "tune" / method / f"trial{k}" / "summary.json").read_text())["eval"]
            assert not any(key.startswith("Student/") or key == "count" for key in e)  # no test evaluation
            scores.append(e["val/Student/top1"])
        assert [t["val_top1"] for t in r["trials"]] == scores
        assert r["chosen"] == int(np.argmax(scores))
        for seed in r["seeds"]:
            assert json.loads((tmp_path / "runs" / method / f"seed{seed}" / "config.json").read_text())["seed"] == seed
        assert json.loads((tmp_path / "tune" / method / "trial0" / "config.json").read_text())["seed"] == 100
        assert len(r["last"]) == len(r["best"]) == (1 if method == "multi_teacher" else 2)
        assert all(0.0 <= a <= 1.0 for a in r["last"] + r["best"])
    kd_trial = results["methods"]["kd"]["trials"][results["methods"]["kd"]["chosen"]]["settings"]
    kd_run = json.loads((tmp_path / "runs" / "kd" / "seed1" / "config.json").read_text())
    assert kd_run["losses"]["kd"]["weight"] == kd_trial["losses.kd.weight"]
    # the paired statistics equal scipy's paired t-test on the per-seed accuracies
    b = 100 * np.asarray(results["methods"]["baseline"]["last"])
    k = 100 * np.asarray(results["methods"]["kd"]["last"])
    st = results["stats"]["last"]["kd"]
    assert st["mean"] == pytest.approx((k - b).mean()) and st["p"] == pytest.approx(stats.ttest_rel(k, b).pvalue)
    assert results["stats"]["last"]["multi_teacher"] is None  # one common seed: no paired test
    report = (tmp_path / "results.md").read_text()
    for text in ("tiny test sweep", "**Protocol.**", "## Last epoch", "## Best epoch", "## Tuning", "| kd | 1 |",
                 "Beat the baseline at p < 0.05", "Extra teacher Teacher2 (`ConvNet`"):
        assert text in report, text
    assert (tmp_path / "teachers" / "Teacher2" / "export" / "spec.json").is_file()
    assert (tmp_path / "results.png").stat().st_size > 10_000
    # the report regenerates from results.json alone
    from kdjax.tools import sweep_report

    out = tmp_path / "regenerated"
    assert sweep_report.main(["sweep_report", str(tmp_path / "results.json"), str(out)]) == 0
    assert (out / "results.md").read_text() == report
    # a second invocation resumes: finished runs are not trained again
    summary = tmp_path / "runs" / "kd" / "seed1" / "summary.json"
    before = os.path.getmtime(summary)
    again = sweep.run_sweep(cfg, str(tmp_path))
    assert os.path.getmtime(summary) == before
    assert again["methods"]["kd"]["last"] == results["methods"]["kd"]["last"]
    # a partial report (--partial_report) uses the final runs finished so far, pairs on the seeds they share
    os.rename(summary, str(summary) + ".away")
    partial = sweep.collect(cfg, str(tmp_path), partial=True)
    assert partial["methods"]["kd"]["seeds"] == [0] and partial["methods"]["baseline"]["seeds"] == [0, 1]
    assert partial["methods"]["kd"]["last"] == results["methods"]["kd"]["last"][:1]
    assert partial["protocol"]["label"].startswith("PARTIAL REPORT") and "4 of 5" in partial["protocol"]["label"]


def test_multi_teacher_method_gets_each_frozen_model_its_own_teacher():
    from kdjax.tools import sweep_configs

    cfg = load_config("configs/sweep_fashion_mnist.py")
    assert sweep_configs.teachers_needed(cfg, "multi_teacher") == ("", "Teacher2")
    assert sweep_configs.teachers_needed(cfg, "kd") == ("",) and sweep_configs.teachers_needed(cfg, "baseline") == ()
    c = sweep_configs.method_config(cfg, "multi_teacher", 1, {"": "/t/main", "Teacher2": "/t/second"})
    assert (c.models.Teacher1.arch, c.models.Teacher1.init) == (cfg.teacher.arch, "/t/main")
    assert (c.models.Teacher2.arch, c.models.Teacher2.init) == ("ConvNet", "/t/second")
    assert dict(c.models.Teacher2.kwargs) == {"depth": 2, "stem_stride": 2}
    assert (c.models.Student.arch, c.seed) == (cfg.student.arch, 1)
    assert set(c.losses) == {"gt_ce", "kd_teacher1", "kd_teacher2"}
    # a plain string still means "every frozen model gets the main teacher"
    assert sweep_configs.method_config(cfg, "kd", 0, "/t/main").models.Teacher.init == "/t/main"


def test_protocol_is_refused_without_a_validation_split_or_with_unequal_budgets(tmp_path):
    from kdjax.errors import ConfigError
    from kdjax.tools import sweep

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.base.data.holdout = 0
    with pytest.raises(ConfigError, match="base.data.holdout"):
        sweep.run_sweep(cfg, str(tmp_path))
    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.tune_seed = 2
    with pytest.raises(ConfigError, match="tune_seed"):
        sweep.run_sweep(cfg, str(tmp_path))
