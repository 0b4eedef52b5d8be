"""`kdjax.sweep --import_runs=REPORT`: a sweep whose workdir is lost is finished from its report. Only the same
experiment is imported (protocol, teacher accuracies, each method's losses and grid), two imported runs are rerun
and must reproduce their records exactly, and the report says how many runs came from where."""

import json

import pytest

from kdjax.errors import KdjaxError
from test_sweep import _tiny_sweep


def _first(tmp_path):
    from kdjax.tools import sweep

    cfg = _tiny_sweep()
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd")
        cfg.grids = {"baseline": (("optim.lr", (0.05, 0.1)),), "kd": (("losses.kd.weight", (0.5, 0.9)),)}
    return cfg, sweep.run_sweep(cfg, str(tmp_path / "first"))


def test_imported_runs_give_the_same_report_and_the_checks_reproduce(tmp_path):
    from kdjax.tools import sweep

    cfg, first = _first(tmp_path)
    report = str(tmp_path / "first" / "results.json")
    second = sweep.run_sweep(cfg, str(tmp_path / "second"), import_runs=report)
    for method in ("baseline", "kd"):
        for field in ("trials", "chosen", "settings", "last", "best", "best_step", "val_last", "val_best", "curves"):
            assert json.dumps(second["methods"][method][field]) == json.dumps(first["methods"][method][field]), field
    imported = second["protocol"]["imported"]
    # 2 methods × (2 trials + 2 seeds) = 8 runs; the baseline's seed 0 and kd's seed 0 ran again as checks
    assert (imported["runs"], imported["of"]) == (6, 8)
    assert [c["run"] for c in imported["checks"]] == ["runs/baseline/seed0", "runs/kd/seed0"]
    assert all(c["reproduced"] and "Student/top1" in c["keys"] for c in imported["checks"])
    assert not (tmp_path / "second" / "runs" / "kd" / "seed1" / "checkpoints").exists()  # imported, not trained
    assert (tmp_path / "second" / "runs" / "kd" / "seed0" / "export").is_dir()  # the check was trained
    text = (tmp_path / "second" / "results.md").read_text()
    assert "6 of the 8 runs" in text and "reproduced its record exactly" in text

    # a method whose grid changed is run again in full; the others are still imported
    with cfg.unlocked():
        cfg.grids = {"baseline": (("optim.lr", (0.05, 0.1)),), "kd": (("losses.kd.weight", (0.5, 0.7)),)}
    third = sweep.run_sweep(cfg, str(tmp_path / "third"), import_runs=report)
    assert third["protocol"]["imported"]["runs"] == 3  # the baseline's 2 trials and seed 1
    assert [t["settings"]["losses.kd.weight"] for t in third["methods"]["kd"]["trials"]] == [0.5, 0.7]
    assert (tmp_path / "third" / "tune" / "kd" / "trial1" / "export").is_dir()

    # another protocol is another experiment: refused in one line naming the field, nothing imported
    with cfg.unlocked():
        cfg.base.train.epochs = 2.0
    with pytest.raises(KdjaxError, match=r"--import_runs: .* another protocol \(epochs: 1\.0 there, 2\.0 here"):
        sweep.run_sweep(cfg, str(tmp_path / "fourth"), import_runs=report)
    assert not (tmp_path / "fourth" / "runs").exists()


def test_a_report_that_is_not_one_is_refused_in_one_line(tmp_path):
    from kdjax.tools import sweep_import

    bad = tmp_path / "results.json"
    bad.write_text('{"methods": {}}')
    with pytest.raises(KdjaxError, match="not a sweep report's results.json"):
        sweep_import._load(str(bad))
    with pytest.raises(KdjaxError, match="cannot read"):
        sweep_import._load(str(tmp_path / "missing.json"))
