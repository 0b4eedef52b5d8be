"""The accuracy sweep end to end on tiny real data: teacher once, methods × seeds, report, resume."""

import os

from conftest import load_config


def test_sweep_writes_report_and_resumes(tmp_path):
    from kdjax import sweep

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd")
        cfg.seeds = (0, 1)
        cfg.teacher_epochs = 1.0
        cfg.base.data.train_limit = 512
        cfg.base.data.test_limit = 200
        cfg.base.train.batch_size = 64
        cfg.base.train.epochs = 0.5
        cfg.base.train.log_every_steps = 2
        cfg.base.train.eval_batch_size = 100
    results = sweep.run_sweep(cfg, str(tmp_path))
    assert set(results["methods"]) == {"baseline", "kd"}
    for r in results["methods"].values():
        assert len(r["top1"]) == 2 and all(0.0 <= a <= 1.0 for a in r["top1"])
    report = (tmp_path / "results.md").read_text()
    assert "| baseline |" in report and "| kd |" in report and "0.9×kd(temperature=4.0)" in report
    assert (tmp_path / "results.png").stat().st_size > 10_000
    # a second invocation resumes: finished runs are not trained again
    summary = tmp_path / "runs" / "kd" / "seed1" / "summary.json"
    before = os.path.getmtime(summary)
    again = sweep.run_sweep(cfg, str(tmp_path))
    assert os.path.getmtime(summary) == before
    assert again["methods"]["kd"]["top1"] == results["methods"]["kd"]["top1"]
