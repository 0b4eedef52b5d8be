"""A save that fails (a full disk) leaves no temporary folder behind, also while other writes of it still run.

CI saw `export.tmp-PID/variables.orbax-checkpoint-tmp/ocdbt.process_0` left after ENOSPC in ~1 run of 4: the first
failed array write is raised while TensorStore's threads still write the other arrays, so the delete of the failed
save met files created under it. Orbax's folder creation in a thread is a second such race. Both are made certain here.
"""

import asyncio
import errno
import os
import threading
import time

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.path import atomicity

from kdjax.runtime.checkpoints import PhaseCheckpoints, remove_partial
from kdjax.weights.export_dir import make_spec, save_export


@pytest.fixture
def slow_folders_and_full_disk(monkeypatch):
    create = atomicity._create_paths

    async def slow_create(*args, **kwargs):
        await asyncio.sleep(0.3)
        return await create(*args, **kwargs)

    async def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomicity, "_create_paths", slow_create)
    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full)


def everything_under(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs)


def test_failed_export_leaves_no_temporary_folder(tmp_path, slow_folders_and_full_disk):
    variables = {"params": {"w": jnp.ones((3,))}}
    with pytest.raises(OSError) as raised:
        save_export(str(tmp_path / "export"), variables, make_spec("convnet_student", {}, 10, (28, 28, 1)))
    assert raised.value.errno == errno.ENOSPC
    time.sleep(0.6)  # past the slowed folder creation
    assert everything_under(tmp_path) == []


def test_failed_checkpoint_leaves_no_temporary_folder(tmp_path, slow_folders_and_full_disk):
    checkpoints = PhaseCheckpoints(str(tmp_path / "checkpoints"))
    with pytest.raises(OSError) as raised:
        checkpoints.save(4, {"w": jnp.ones((3,))}, meta={"step": 4})
        checkpoints.wait()
    assert raised.value.errno == errno.ENOSPC
    time.sleep(0.6)
    assert [n for n in everything_under(tmp_path) if "tmp" in n] == []


def test_a_tree_still_being_written_is_removed_once_the_writes_stop(tmp_path):
    target = tmp_path / "export.tmp-1" / "variables.orbax-checkpoint-tmp"
    target.mkdir(parents=True)
    writing = threading.Event()

    def late_writer():  # like TensorStore finishing the other arrays of a failed save
        writing.set()
        for i in range(40):
            try:
                os.makedirs(target / "ocdbt.process_0", exist_ok=True)
                (target / "ocdbt.process_0" / f"d{i}").write_bytes(b"x" * 4096)
            except FileNotFoundError:  # deleted between the two calls
                pass
            time.sleep(0.01)

    writer = threading.Thread(target=late_writer)
    writer.start()
    writing.wait()
    assert remove_partial(str(tmp_path / "export.tmp-1"))
    writer.join()
    assert everything_under(tmp_path) == []
