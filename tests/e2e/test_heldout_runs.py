"""A run with a held-out validation split: periodic evaluations on it, the best-validation weights kept and tested
once beside the last ones; a tuning run (train.final_test=False) never evaluates on the test split."""

import json
import os

import numpy as np

from conftest import load_config, tiny


def _config(final_test: bool):
    c = tiny(load_config("configs/kd.py"), train_limit=768, test_limit=300, epochs=3.0, pretrain_epochs=1.0)
    with c.unlocked():
        c.data.holdout = 256
        c.train.eval_every_epochs = 1.0
        c.train.final_test = final_test
    return c


def test_best_epoch_is_chosen_on_validation_and_tested_once(tmp_path):
    from kdjax import train
    from kdjax.evaluate import evaluate_export
    from kdjax.config.check import check

    config = _config(final_test=True)
    result = train.run(config, str(tmp_path))["eval"]
    with open(tmp_path / "metrics.jsonl") as f:
        evals = [json.loads(line) for line in f if '"eval"' in line]
    # every periodic evaluation read the 256 held-out examples, none the test split
    assert len(evals) == 3 and all(e["val/count"] == 256 and "Student/top1" not in e for e in evals)
    val = [e["val/Student/top1"] for e in evals]
    best = int(np.argmax(val))  # argmax: the earliest of equal maxima, as the run's rule
    assert result["best_step"] == evals[best]["step"]
    assert result["best/val/Student/top1"] == val[best] and result["val/Student/top1"] == val[-1]
    assert result["count"] == 300  # last weights, on the test split
    # the best weights' test accuracy, recomputed independently from the kept export through the export path
    checked = check(config, splits=("test",), inits=False)
    again = evaluate_export(str(tmp_path / "best"), checked.test, 100)
    np.testing.assert_allclose(result["best/Student/top1"], again["Student/top1"], atol=1.5 / 300)
    assert json.loads((tmp_path / "best.json").read_text())["step"] == result["best_step"]


def test_tuning_run_never_touches_the_test_split(tmp_path):
    from kdjax import train

    result = train.run(_config(final_test=False), str(tmp_path / "trial"))["eval"]
    assert "val/Student/top1" in result and "best/val/Student/top1" in result
    assert not any(k.startswith(("Student/", "Teacher/", "best/Student")) or k == "count" for k in result)
    assert os.path.isfile(tmp_path / "trial" / "best" / "spec.json")
