"""The accuracy sweep end to end on tiny real data: teacher once, methods × seeds, report, resume."""

import os

from conftest import load_config


def test_sweep_writes_report_and_resumes(tmp_path):
    from kdjax.tools import sweep

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd", "multi_teacher")
        cfg.seeds = (0, 1)
        cfg.seeds_for.multi_teacher = (0,)
        cfg.teacher_epochs = 1.0
        cfg.base.data.train_limit = 512
        cfg.base.data.test_limit = 200
        cfg.base.train.batch_size = 64
        cfg.base.train.epochs = 0.5
        cfg.base.train.log_every_steps = 2
        cfg.base.train.eval_batch_size = 100
    results = sweep.run_sweep(cfg, str(tmp_path))
    assert set(results["methods"]) == {"baseline", "kd", "multi_teacher"}
    for method, r in results["methods"].items():
        assert len(r["top1"]) == (1 if method == "multi_teacher" else 2) and all(0.0 <= a <= 1.0 for a in r["top1"])
    report = (tmp_path / "results.md").read_text()
    assert "| baseline |" in report and "| kd |" in report and "0.9×kd(temperature=4.0)" in report
    # multi-teacher KD got the second teacher, trained once like the main one and named in the report
    assert (tmp_path / "teachers" / "Teacher2" / "export" / "spec.json").is_file()
    assert "Extra teacher Teacher2 (`ConvNet`" in report and "| multi_teacher |" in report
    assert (tmp_path / "results.png").stat().st_size > 10_000
    # a second invocation resumes: finished runs are not trained again
    summary = tmp_path / "runs" / "kd" / "seed1" / "summary.json"
    before = os.path.getmtime(summary)
    again = sweep.run_sweep(cfg, str(tmp_path))
    assert os.path.getmtime(summary) == before
    assert again["methods"]["kd"]["top1"] == results["methods"]["kd"]["top1"]


def test_multi_teacher_method_gets_each_frozen_model_its_own_teacher():
    from kdjax.tools import sweep

    cfg = load_config("configs/sweep_fashion_mnist.py")
    assert sweep.teachers_needed(cfg, "multi_teacher") == ("", "Teacher2")
    assert sweep.teachers_needed(cfg, "kd") == ("",) and sweep.teachers_needed(cfg, "baseline") == ()
    c = sweep.method_config(cfg, "multi_teacher", 1, {"": "/t/main", "Teacher2": "/t/second"})
    assert (c.models.Teacher1.arch, c.models.Teacher1.init) == (cfg.teacher.arch, "/t/main")
    assert (c.models.Teacher2.arch, c.models.Teacher2.init) == ("ConvNet", "/t/second")
    assert dict(c.models.Teacher2.kwargs) == {"depth": 2, "stem_stride": 2}
    assert (c.models.Student.arch, c.seed) == (cfg.student.arch, 1)
    assert set(c.losses) == {"gt_ce", "kd_teacher1", "kd_teacher2"}
    # a plain string still means "every frozen model gets the main teacher"
    assert sweep.method_config(cfg, "kd", 0, "/t/main").models.Teacher.init == "/t/main"
