"""The sweep on two worker processes (kdjax/tools/sweep_workers.py), through its command line: SIGTERM stops every
worker (exit 0, no run left claimed), the same command finishes the protocol without training a finished run again,
a method's final runs start only after all of its tuning trials, and the report says how the runs were executed."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, load_config


def _runs_started(text: str):
    return re.findall(r"run \d+/\d+: (.+?)(?:, about [^\n]*)?\n", text)


def test_sigterm_stops_every_worker_and_the_same_command_finishes_the_sweep(tmp_path):
    from kdjax.tools import sweep, sweep_workers

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPU cores")
    cfg = load_config("configs/sweep_fashion_mnist.py", "quick")
    runs = sweep.all_runs(cfg, str(tmp_path))
    command = [sys.executable, "-m", "kdjax.sweep", "--config=configs/sweep_fashion_mnist.py:quick",
               "--config.workers=2", f"--workdir={tmp_path}"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    logs = [tmp_path / "logs" / f"worker{i}.log" for i in range(2)]
    deadline = time.time() + 600
    while time.time() < deadline and not all(p.is_file() and "run " in p.read_text() for p in logs):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert not (tmp_path / "results.md").exists()
    for d in runs:  # no worker outlived the sweep: every run's claim is free
        fd = sweep_workers._claim(str(tmp_path), d)
        assert fd is not None, d
        os.close(fd)
    finished_first = {d for d in runs if os.path.isfile(os.path.join(d, "summary.json"))}
    assert len(finished_first) < len(runs)

    again = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(os.path.isfile(os.path.join(d, "summary.json")) for d in runs)
    # the second invocation started each unfinished run once, on either worker, and no finished one
    started = _runs_started(again.stdout)
    assert len(started) == len(set(started)) == len(runs) - len(finished_first), again.stdout
    assert "[worker 0]" in again.stdout and "[worker 1]" in again.stdout
    # a final run starts only once its method's trials are all finished
    for method in cfg.methods:
        tuned_at = max(os.path.getmtime(os.path.join(sweep.trial_dir(str(tmp_path), method, k), "summary.json"))
                       for k in range(len(sweep.grid_trials(cfg, method))))
        for seed in sweep.seeds_of(cfg, method):
            assert os.path.getmtime(os.path.join(sweep.run_dir(str(tmp_path), method, seed), "config.json")) >= tuned_at
    assert re.search(r"Runs went 2 at a time, each process on \d+ CPU cores?", (tmp_path / "results.md").read_text())
