"""The sweep on two worker processes (kdjax/tools/sweep_workers.py): every run of the protocol trained exactly once,
a method's final runs only after all of its tuning trials, each worker on its own core, the report complete."""

import json
import os
import re

from test_sweep import _tiny_sweep


def test_two_workers_run_every_run_once_and_finals_after_their_method_is_tuned(tmp_path):
    from kdjax.tools import sweep

    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs 2 CPU cores")
    cfg = _tiny_sweep()
    with cfg.unlocked():
        cfg.workers = 2
    results = sweep.run_sweep(cfg, str(tmp_path))
    assert results["protocol"]["workers"] == 2
    expected = sweep.all_runs(cfg, str(tmp_path))
    assert all(os.path.isfile(os.path.join(d, "summary.json")) for d in expected)
    # every run was started by exactly one worker, and trained once: each logged step appears once
    logs = {i: (tmp_path / "logs" / f"worker{i}.log").read_text() for i in range(2)}
    started = [m for text in logs.values() for m in re.findall(r"run \d+/\d+: (.+?)(?:, about|\n)", text)]
    assert len(started) == len(expected) == len(set(started))
    assert all(re.search(r"run \d+/", text) for text in logs.values())  # both workers took runs
    for d in expected:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
        assert steps and len(steps) == len(set(steps)), d
    # a final run starts only once its method's trials are all finished (their summaries are older)
    for method in cfg.methods:
        trials_done = max(os.path.getmtime(os.path.join(sweep.trial_dir(str(tmp_path), method, k), "summary.json"))
                          for k in range(len(sweep.grid_trials(cfg, method))))
        for seed in sweep.seeds_of(cfg, method):
            config_written = os.path.getmtime(os.path.join(sweep.run_dir(str(tmp_path), method, seed), "config.json"))
            assert config_written >= trials_done, (method, seed)
    assert "Runs went 2 at a time, each process on" in (tmp_path / "results.md").read_text()


def test_sigterm_stops_every_worker_and_the_same_command_finishes_the_sweep(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from kdjax.tools import sweep, sweep_workers

    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs 2 CPU cores")
    command = [sys.executable, "-m", "kdjax.sweep", "--config=configs/sweep_fashion_mnist.py:quick",
               "--config.workers=2", f"--workdir={tmp_path}"]
    from conftest import REPO

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
    # no worker outlived the sweep: every run's claim is free
    cfg = _quick()
    for d in sweep.all_runs(cfg, str(tmp_path)):
        fd = sweep_workers._claim(str(tmp_path), d)
        assert fd is not None, d
        os.close(fd)
    done_before = sum(os.path.isfile(os.path.join(d, "summary.json")) for d in sweep.all_runs(cfg, str(tmp_path)))
    assert done_before < len(sweep.all_runs(cfg, str(tmp_path)))
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "results.md").is_file()
    assert all(os.path.isfile(os.path.join(d, "summary.json")) for d in sweep.all_runs(cfg, str(tmp_path)))


def _quick():
    from conftest import load_config

    return load_config("configs/sweep_fashion_mnist.py", "quick")
