"""A resumed sweep reuses a finished run only for the settings it ran with: a grid changed in an existing workdir is
refused in one line naming the run and the field, never reported under the new settings."""

import json
import os

import pytest

from conftest import load_config
from kdjax.errors import KdjaxError
from kdjax.tools import sweep, sweep_configs
from kdjax.tools.sweep_consistency import check_finished_runs


def _sweep():
    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd")
        cfg.grids = {"baseline": (("optim.lr", (0.05, 0.1)),), "kd": (("losses.kd.weight", (0.5, 0.9)),)}
    return cfg


def _finish(directory, config, val=0.8):
    """A run as train.run leaves it: its config.json and summary.json."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, default=list)
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump({"eval": {"val/Student/top1": val}}, f)


def test_a_changed_grid_in_an_existing_workdir_is_refused(tmp_path):
    cfg, w, exports = _sweep(), str(tmp_path), {"": "/t/export"}
    for k, settings in enumerate(sweep.grid_trials(cfg, "kd")):
        _finish(sweep.trial_dir(w, "kd", k), sweep_configs.run_config(cfg, "kd", 100, exports, settings, final_test=False),
                val=0.8 + k / 100)
    chosen = sweep.grid_trials(cfg, "kd")[1]
    _finish(sweep.run_dir(w, "kd", 0), sweep_configs.run_config(cfg, "kd", 0, exports, chosen))
    check_finished_runs(cfg, w, exports)  # what it ran is what the config gives: reused
    with cfg.unlocked():
        cfg.grids = {"baseline": cfg.grids["baseline"], "kd": (("losses.kd.weight", (0.5, 0.7)),)}
    with pytest.raises(KdjaxError, match=r"tune/kd/trial1 .* ran with losses\.kd\.weight=0\.9; the sweep config "
                                         r"now gives 0\.7"):
        check_finished_runs(cfg, w, exports)
    with cfg.unlocked():  # the base recipe changed under the final run (another weight decay)
        cfg.grids = {"baseline": cfg.grids["baseline"], "kd": (("losses.kd.weight", (0.5, 0.9)),)}
        cfg.base.optim.weight_decay = 1e-4
    with pytest.raises(KdjaxError, match=r"optim\.weight_decay=0\.0005; the sweep config now gives 0\.0001"):
        check_finished_runs(cfg, w, exports)
