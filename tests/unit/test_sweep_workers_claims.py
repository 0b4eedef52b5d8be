"""Pieces of the parallel sweep: core shares, run claims (one holder, released when it closes or dies), the order
in which runs become ready, and the one-line refusals of a bad `workers`."""

import json
import os
import subprocess
import sys

import pytest

from conftest import load_config


def test_cores_are_split_into_near_equal_contiguous_shares():
    from kdjax.tools.sweep_workers import shares

    assert shares([3, 1, 0, 2, 5, 4], 4) == [[0, 1], [2, 3], [4], [5]]
    assert shares([0, 1], 2) == [[0], [1]]
    assert shares(range(3), 1) == [[0, 1, 2]]


def test_a_run_is_claimed_by_one_holder_until_it_closes_or_its_process_dies(tmp_path):
    from kdjax.tools.sweep_workers import _claim

    (tmp_path / ".claims").mkdir()
    run = str(tmp_path / "tune" / "kd" / "trial0")
    fd = _claim(str(tmp_path), run)
    assert fd is not None and _claim(str(tmp_path), run) is None  # a second holder is refused
    assert _claim(str(tmp_path), str(tmp_path / "tune" / "kd" / "trial1")) is not None  # other runs are free
    os.close(fd)
    fd = _claim(str(tmp_path), run)
    assert fd is not None
    os.close(fd)
    # another process holding it: refused while it lives, free once it is killed
    code = ("import sys, time; sys.path.insert(0, %r); from kdjax.tools.sweep_workers import _claim; "
            "assert _claim(%r, %r) is not None; print('held', flush=True); time.sleep(60)"
            % (os.getcwd(), str(tmp_path), run))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _claim(str(tmp_path), run) is None
    finally:
        holder.kill()
        holder.wait()
    fd = _claim(str(tmp_path), run)
    assert fd is not None
    os.close(fd)


def _finish(directory, val=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump({"eval": {"val/Student/top1": val}}, f)


def test_final_runs_become_ready_only_when_every_trial_of_their_method_is_finished(tmp_path):
    from kdjax.tools import sweep

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.methods = ("baseline", "kd")
        cfg.seeds = (0, 1)
    w = str(tmp_path)
    exports = {"": "/t"}

    def ready():
        return [os.path.relpath(d, w) for d, _, _ in sweep.pending_runs(cfg, w, exports)]

    assert ready() == [f"tune/{m}/trial{k}" for m in ("baseline", "kd") for k in range(4)]
    for k, val in enumerate((0.5, 0.9, 0.7, 0.6)):
        _finish(sweep.trial_dir(w, "baseline", k), val)
    _finish(sweep.trial_dir(w, "kd", 0), 0.8)
    # the baseline's finals are ready (with its best trial, 1), kd's are not until its last trials finish
    assert ready() == [f"tune/kd/trial{k}" for k in (1, 2, 3)] + ["runs/baseline/seed0", "runs/baseline/seed1"]
    d, what, config = next(r for r in sweep.pending_runs(cfg, w, exports) if "runs/baseline" in r[0])
    assert config().optim.lr == sweep.grid_trials(cfg, "baseline")[1]["optim.lr"] and config().seed == 0
    assert "baseline, seed 0" in what
    # once every method is tuned, the final runs go seed by seed across methods (a cut-short sweep stays paired)
    for k in (1, 2, 3):
        _finish(sweep.trial_dir(w, "kd", k), 0.1)
    assert ready() == ["runs/baseline/seed0", "runs/kd/seed0", "runs/baseline/seed1", "runs/kd/seed1"]


def test_a_bad_worker_count_is_refused_in_one_line_naming_the_field(tmp_path):
    from kdjax.errors import ConfigError
    from kdjax.tools import sweep, sweep_workers

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.workers = -1
    with pytest.raises(ConfigError, match=r"config\.workers: is -1"):
        sweep.run_sweep(cfg, str(tmp_path))
    too_many = len(os.sched_getaffinity(0)) + 1
    with pytest.raises(ConfigError, match=rf"config\.workers: is {too_many}, but this process may use"):
        sweep_workers.check(cfg, too_many)
    assert not os.listdir(tmp_path)  # refused before anything was written
