"""A tuning trial whose training turns non-finite is a result of the grid (that setting diverged): recorded, shown
as diverged, never chosen, and the sweep goes on. A final run that diverges stops the sweep; a grid whose every
trial diverged is refused naming the grid."""

import json
import os

import pytest

from conftest import load_config


def _sweep():
    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd")
        cfg.seeds = (0, 1)
    return cfg


def test_a_diverged_tuning_trial_is_recorded_and_never_chosen(tmp_path, monkeypatch):
    from kdjax import train
    from kdjax.errors import ConfigError
    from kdjax.runtime.loop import NonFiniteLoss
    from kdjax.tools import sweep, sweep_configs, sweep_report

    def diverge(config, directory, restart=False):
        os.makedirs(directory, exist_ok=True)
        raise NonFiniteLoss("[distill] training became non-finite (NaN/inf) at step 3")

    monkeypatch.setattr(train, "run", diverge)
    cfg, w = _sweep(), str(tmp_path)
    trial = sweep.trial_dir(w, "kd", 1)
    config = sweep_configs.run_config(cfg, "kd", 100, {"": "/t"}, sweep.grid_trials(cfg, "kd")[1], final_test=False)
    assert sweep.execute(config, trial) == {}
    assert "non-finite" in json.loads(open(os.path.join(trial, sweep.DIVERGED)).read())["error"]
    assert sweep.finished(trial)
    # the others finish normally; the diverged one scores None and is skipped when choosing
    for k, val in ((0, 0.80), (2, 0.70), (3, 0.75)):
        d = sweep.trial_dir(w, "kd", k)
        os.makedirs(d)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump({"eval": {"val/Student/top1": val}}, f)
    assert sweep.trial_scores(cfg, w, "kd") == [0.80, None, 0.70, 0.75]
    assert sweep.chosen(cfg, w, "kd")[0] == 0
    lines = sweep_report._tuning({"methods": {"kd": {"chosen": 0, "trials": [
        {"settings": t, "val_top1": v, "seconds": None}
        for t, v in zip(sweep.grid_trials(cfg, "kd"), sweep.trial_scores(cfg, w, "kd"))]}}})
    assert "| diverged |" in lines[3] and "**yes**" in lines[2]
    # a final run that diverges is an error: its seed would be missing from the paired comparison
    final = sweep_configs.run_config(cfg, "kd", 0, {"": "/t"}, sweep.grid_trials(cfg, "kd")[0])
    with pytest.raises(NonFiniteLoss):
        sweep.execute(final, sweep.run_dir(w, "kd", 0))
    assert not sweep.finished(sweep.run_dir(w, "kd", 0))
    # every trial diverged: refused, naming the grid
    with pytest.raises(ConfigError, match=r"grids\.kd: every trial diverged"):
        from kdjax.tools import sweep_grid

        sweep_grid.choose([None, None, None, None], "kd")
