"""Never lose a run: SIGKILL at a random step and right after a checkpoint, SIGTERM, a half-written Orbax save,
a truncated newest checkpoint and NaN/inf losses. Resumed runs must equal an uninterrupted one bit for bit (CPU).

Real processes (`python -m kdjax.main`) where a signal is needed, `train.run` in this process otherwise. Compiled
programs are shared through a persistent JAX compilation cache so that each process does not compile again.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from conftest import REPO
from test_bad_input import EVERY, STEPS_PER_EPOCH, TOTAL, compile_cache, finished_run  # noqa: F401


@pytest.fixture(scope="module")
def setup(tmp_path_factory, compile_cache):
    """The uninterrupted reference run (`setup.workdir`), shared with test_bad_input."""
    return finished_run(tmp_path_factory, compile_cache)


def export_leaves(workdir):
    from kdjax.weights.export_dir import load_export

    return jax.tree.leaves(load_export(str(workdir / "export"))[0])


def assert_same_student(a, b):
    la, lb = export_leaves(a), export_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


def committed(workdir):
    d = workdir / "checkpoints"
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if d.is_dir() else []


def last_step(workdir, since=0.0):
    """The last training step in metrics.jsonl logged at or after time `since` (complete lines only), 0 if none.

    A resumed run rewrites metrics.jsonl without the steps it replays, so records are told apart by time."""
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        data = f.read()
    steps = []
    for line in data.split(b"\n")[:-1]:
        if b'"kind": "train"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # read while the file was being rewritten
            continue
        if record["time"] >= since:
            steps.append(record["step"])
    return max(steps, default=0)


class Run:
    """`python -m kdjax.main` in the background, its output in files."""

    def __init__(self, setup, workdir, name):
        self.out, self.err = workdir.parent / f"{name}.out", workdir.parent / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(setup.command(workdir), cwd=REPO, stdout=out, stderr=err, env=setup.env)

    def logs(self):
        return self.out.read_text(), self.err.read_text()

    def wait_until(self, condition, timeout=300):
        start = time.time()
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"kdjax exited ({self.proc.returncode}) before the condition held:\n"
                                     + "\n".join(s[-3000:] for s in self.logs()))
            if time.time() - start > timeout:
                self.proc.kill()
                raise AssertionError("timed out")
            time.sleep(0.002)

    def finish(self, timeout=300):
        return self.proc.wait(timeout=timeout)


def test_sigkill_anywhere_and_sigterm_resume_bit_exact(setup, tmp_path, capsys):
    """One run interrupted three times: SIGKILL mid first epoch, SIGKILL right after a checkpoint (plus the
    temporary directory a save killed half-way leaves), SIGTERM; each time the same command resumes."""
    from kdjax import train

    wd = tmp_path / "run"
    rng = random.Random()

    # 1. SIGKILL at a random step in the middle of the first epoch
    kill_at = rng.randint(3, 12)
    run = Run(setup, wd, "a")
    run.wait_until(lambda: last_step(wd) >= kill_at)
    run.proc.kill()
    run.finish()
    killed = last_step(wd)
    assert killed < STEPS_PER_EPOCH and not (wd / "export").exists(), (kill_at, killed)

    # 2. the same command resumes from the newest committed checkpoint; SIGKILL right after the next one commits
    before = committed(wd)
    run = Run(setup, wd, "b")
    run.wait_until(lambda: set(committed(wd)) - set(before))
    run.proc.kill()
    run.finish()
    out, _ = run.logs()
    if before:
        assert f"resuming from step {before[-1]} of {TOTAL}" in out, (before, out)
    else:
        assert "resuming" not in out
    ckpt = committed(wd)[-1]
    assert ckpt < TOTAL - EVERY, (kill_at, killed, committed(wd))
    # what a save killed half-way leaves behind: an Orbax temporary directory of the next step
    half = wd / "checkpoints" / f"{ckpt + EVERY}.orbax-checkpoint-tmp-1700000000000000"
    (half / "state").mkdir(parents=True)
    (half / "state" / "_METADATA").write_text('{"tree_metadata": {')

    # 3. the same command resumes from that checkpoint and ignores (removes) the half-written one; SIGTERM
    since = time.time()
    run = Run(setup, wd, "c")
    run.wait_until(lambda: last_step(wd, since) >= ckpt + 2)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0, run.logs()[1][-3000:]
    out, err = run.logs()
    assert f"resuming from step {ckpt} of {TOTAL}" in out, out
    stopped = re.search(r"stopping early: saved step (\d+) in .*; run the same command again to resume", out)
    assert stopped, out
    saved = int(stopped.group(1))
    assert ckpt < saved < TOTAL and saved in committed(wd) and not half.exists()
    assert "Traceback" not in err

    # 4. the next start (here in this process) finishes the run: the student equals the uninterrupted run's
    train.run(setup.config(), str(wd))
    assert f"resuming from step {saved} of {TOTAL}" in capsys.readouterr().out
    assert_same_student(setup.workdir, wd)
    assert committed(wd) == [TOTAL - 2 * EVERY, TOTAL - EVERY, TOTAL]  # keep_checkpoints=3


def _truncate_largest(directory):
    files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    return largest


def test_truncated_newest_checkpoint_falls_back_to_the_previous(setup, tmp_path, capfd):
    from kdjax import train

    wd = tmp_path / "run"
    shutil.copytree(setup.workdir, wd)
    shutil.rmtree(wd / "export")
    _truncate_largest(wd / "checkpoints" / str(TOTAL) / "state")
    train.run(setup.config(), str(wd))
    out, err = capfd.readouterr()
    assert f"checkpoint step {TOTAL} in {wd / 'checkpoints'} cannot be restored" in err, err
    assert f"resuming from step {TOTAL - EVERY} of {TOTAL}" in out, out
    assert "Traceback" not in err
    moved = os.listdir(wd / "checkpoints.unreadable")
    assert len(moved) == 1 and moved[0].startswith(f"{TOTAL}-")  # kept for inspection, not deleted
    assert committed(wd) == [TOTAL - 2 * EVERY, TOTAL - EVERY, TOTAL]  # the step was written again
    assert_same_student(setup.workdir, wd)


def test_no_restorable_checkpoint_is_an_error_and_moves_nothing(setup, tmp_path):
    from kdjax.runtime.checkpoints import PhaseCheckpoints
    from kdjax.errors import CheckpointError

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(setup.workdir / "checkpoints", ckpts)
    for step in committed(tmp_path):
        _truncate_largest(ckpts / str(step) / "state")
    manager = PhaseCheckpoints(str(ckpts))
    try:
        with pytest.raises(CheckpointError, match="none of the checkpoints .* can be restored.*--restart"):
            manager.restore(None)
    finally:
        manager.close()
    assert committed(tmp_path) == [TOTAL - 2 * EVERY, TOTAL - EVERY, TOTAL]
    assert not (tmp_path / "checkpoints.unreadable").exists()


def test_old_checkpoints_are_deleted_only_after_a_newer_one_is_complete(tmp_path):
    from kdjax.runtime.checkpoints import PhaseCheckpoints

    state = {"w": np.arange(4, dtype=np.float32)}
    ckpts = PhaseCheckpoints(str(tmp_path / "checkpoints"), keep=1)
    ckpts.save(1, state, meta={})
    ckpts.wait()
    ckpts.save(2, {"w": state["w"] + 1}, meta={})  # in flight: step 1 is the only complete one and must stay
    assert (tmp_path / "checkpoints" / "1").is_dir()
    ckpts.close()
    assert committed(tmp_path) == [2]
    # a save killed half-way: its temporary directory is cleaned up when the manager opens, step 2 stays
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1700000000000000").mkdir()
    ckpts = PhaseCheckpoints(str(tmp_path / "checkpoints"), keep=1)
    restored, _ = ckpts.restore(None)
    ckpts.close()
    np.testing.assert_array_equal(restored["w"], state["w"] + 1)
    assert os.listdir(tmp_path / "checkpoints") == ["2"]


# ---- NaN / inf ----------------------------------------------------------------------------------------------------

def _nonfinite_config(setup, **train):
    c = setup.config(checkpoint_every_steps=1, **train)
    c.data.train_limit = 128  # 4 steps
    c.train.epochs = 1.0
    c.losses.dkd.weight = 1e38  # finite, but the loss overflows to inf once the first update has been applied
    return c


def _all_checkpoints_finite(workdir):
    import orbax.checkpoint as ocp

    steps = committed(workdir)
    manager = ocp.CheckpointManager(str(workdir / "checkpoints"),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        for step in steps:
            tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
            for leaf in jax.tree.leaves(tree):
                assert np.all(np.isfinite(np.asarray(leaf, dtype=np.float64))), step
    finally:
        manager.close()
    return steps


def test_nonfinite_loss_stops_naming_step_entries_and_last_good_checkpoint(setup, tmp_path):
    from kdjax import train
    from kdjax.runtime.loop import NonFiniteLoss

    wd = tmp_path / "run"
    with pytest.raises(NonFiniteLoss) as info:
        train.run(_nonfinite_config(setup), str(wd))
    message = str(info.value)
    steps = _all_checkpoints_finite(wd)
    assert steps and max(steps) < 4 and not (wd / "export").exists()
    first = max(steps) + 1  # the loss is checked (and checkpoints written) every step here
    assert f"non-finite (NaN/inf) at step {first}" in message, message
    assert "loss/dkd/Student-Teacher (config.losses.dkd)" in message, message
    assert f"last good checkpoint: step {max(steps)} in {wd / 'checkpoints'}" in message, message
    assert "losses.dkd.weight" in message and "train.nonfinite=skip" in message


def test_nonfinite_skip_drops_steps_up_to_max_skipped(setup, tmp_path):
    from kdjax import train
    from kdjax.runtime.loop import NonFiniteLoss

    wd = tmp_path / "skip"
    train.run(_nonfinite_config(setup, nonfinite="skip", max_skipped=10), str(wd))  # finishes, skipping
    records = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    skipped = [r.get("nonfinite_steps", 0) for r in records if r["kind"] == "train"]
    assert skipped[-1] >= 1 and skipped == sorted(skipped)
    assert _all_checkpoints_finite(wd)[-1] == 4 and (wd / "export").is_dir()

    wd = tmp_path / "over"
    with pytest.raises(NonFiniteLoss, match=r"1 step was skipped, more than train.max_skipped=0"):
        train.run(_nonfinite_config(setup, nonfinite="skip", max_skipped=0), str(wd))
    _all_checkpoints_finite(wd)


def test_health_counters_are_logged():
    """Dropped non-finite steps and skipped bad images (data.skip_bad_images) go into the logged metrics."""
    import types

    import jax.numpy as jnp
    import ml_collections

    from kdjax.data.badimages import BadImageCount
    from kdjax.trainer import Trainer

    counter = BadImageCount()
    counter.add(3)
    phase = types.SimpleNamespace(config=ml_collections.ConfigDict({"data": {"skip_bad_images": True}}),
                                  metric_labels={})  # kdjax names (config.metric_names="kdjax")
    state = types.SimpleNamespace(nonfinite_steps=jnp.asarray(2))
    logged = Trainer._with_counters(phase, {"loss": 1.0}, state, types.SimpleNamespace(bad_images=counter))
    assert logged == {"loss": 1.0, "nonfinite_steps": 2, "data/bad_images": 3}
