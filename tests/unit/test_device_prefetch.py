"""kdjax.data.device_prefetch: same batches in the same order, the position of the batches TAKEN (not read
ahead) in checkpoints, errors raised at the batch where they occurred, clean shutdown; data.device_prefetch
validated before any compute."""

import grain
import numpy as np
import pytest

from conftest import load_config
from kdjax.data.device_prefetch import DevicePrefetch
from kdjax.data.resumable import ResumableBatches


def _batches(n=12, fail_at=None):
    def make(i):
        if fail_at is not None and i == fail_at:
            raise ValueError(f"bad batch {i}")
        return {"x": np.full((2,), i, np.int32)}

    return ResumableBatches(grain.MapDataset.range(n).map(make),
                            lambda ds: ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_same_batches_and_taken_position(depth):
    it = DevicePrefetch(iter(_batches()), lambda b: {k: v * 10 for k, v in b.items()}, depth)
    got = [int(next(it)["x"][0]) for _ in range(5)]
    assert got == [0, 10, 20, 30, 40]
    assert it.get_state() == {"step": 5}           # not what the thread has read ahead
    it.close()
    # a new iterator at that position continues with batch 5, as a resume does
    again = DevicePrefetch(iter(_batches()), lambda b: b, depth)
    again.set_state({"step": 5})
    assert [int(next(again)["x"][0]) for _ in range(7)] == list(range(5, 12))
    with pytest.raises(StopIteration):
        next(again)
    again.close()


def test_error_raised_at_its_batch_and_again_after():
    it = DevicePrefetch(iter(_batches(fail_at=3)), lambda b: b, 2)
    assert [int(next(it)["x"][0]) for _ in range(3)] == [0, 1, 2]
    for _ in range(2):
        with pytest.raises(ValueError, match="bad batch 3"):
            next(it)
    assert it.get_state() == {"step": 3}
    it.close()


def test_close_while_the_thread_waits_on_a_full_queue():
    it = DevicePrefetch(iter(_batches(n=1000)), lambda b: b, 1)
    next(it)
    it.close()
    assert it._thread is None


@pytest.mark.parametrize("value", [-1, -3, True])
def test_bad_device_prefetch_is_a_config_error(value):
    from kdjax.config.check import check_config
    from kdjax.errors import ConfigError

    cfg = load_config("configs/kd.py")
    with cfg.unlocked():
        cfg.data.device_prefetch = value
    with pytest.raises(ConfigError, match="data.device_prefetch"):
        check_config(cfg)


@pytest.mark.slow
def test_data_wait_is_measured_as_device_idle_time(tmp_path, monkeypatch):
    """The reported data wait sees a pipeline slower than the step: each host->device transfer here sleeps 250 ms
    on the loop thread (device_prefetch=0), far longer than a tiny step, so the loop's blocked time is at least
    steps x 250 ms and nearly all of it counts as device idle time (the previous step had long finished)."""
    import json
    import time

    from conftest import tiny
    from kdjax import train
    from kdjax.runtime.mesh import Parallel

    slow = Parallel.put_batch

    def put_batch(self, batch):
        time.sleep(0.25)
        return slow(self, batch)

    monkeypatch.setattr(Parallel, "put_batch", put_batch)
    cfg = tiny(load_config("configs/kd.py"), train_limit=640, epochs=1.0, pretrain_epochs=1.0)
    with cfg.unlocked():
        cfg.models.Teacher.arch = cfg.models.Student.arch  # two tiny students: a fast step
        cfg.models.Teacher.init = "train"
        cfg.train.checkpoint_every_steps = 1000
        cfg.data.device_prefetch = 0
    train.run(cfg, str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    blocked_s = result["data_blocked_fraction"] * result["seconds"]
    idle_s = result["data_wait_fraction"] * result["seconds"]
    assert blocked_s >= result["steps"] * 0.25, result
    assert idle_s > 0.5 * result["steps"] * 0.25, result
    assert result["data_blocked_fraction"] >= result["data_wait_fraction"]
