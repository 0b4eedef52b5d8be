"""Orbax checkpoints of a training phase: the state, the grain iterator position and a little metadata.

Restoring walks back from the newest step: a checkpoint that fails to restore (half-written, truncated) is
reported and skipped, and an older good one is used. Orbax only deletes old steps after a newer one is committed.
"""

import logging
import os
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp

log = logging.getLogger("kdjax")


class PhaseCheckpoints:
    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True),
        )

    def steps(self):
        return sorted(self.manager.all_steps())

    def latest_step(self) -> Optional[int]:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, data_iterator=None, meta: Optional[dict] = None, force: bool = False):
        if step in self.manager.all_steps():
            return
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(meta)
        self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, abstract_state, data_iterator=None) -> Optional[Any]:
        """Newest restorable (state, meta); None when there is no checkpoint. Moves `data_iterator` to its position."""
        for step in reversed(self.steps()):
            items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
            if data_iterator is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # damaged files surface as many exception types
                log.warning("checkpoint step %d in %s cannot be restored (%s: %s); trying the previous one",
                            step, self.directory, type(e).__name__, str(e).splitlines()[0][:200])
                continue
            return restored.state, dict(restored.meta or {})
        return None

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree, sharding):
    """ShapeDtypeStructs with `sharding`, the restore target Orbax needs."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
