"""Orbax checkpoints of a training phase: the state, the grain iterator position and a little metadata.

What must hold (README "When things go wrong"):

- A process killed at any moment (SIGKILL, a preempted VM) loses nothing but the steps since the last committed
  checkpoint. Orbax writes a step into a temporary directory and renames it when complete; leftover temporary
  directories of a killed save are removed when the manager opens (`cleanup_tmp_directories`).
- Restoring walks back from the newest step: a checkpoint that fails to restore (half-written, truncated) is
  reported, moved aside to `<phase>/checkpoints.unreadable/` (never deleted), and an older good one is used.
  When no checkpoint restores at all, nothing is moved and the run stops with a CheckpointError.
- A save that fails (disk full, read-only, permission: Orbax and TensorStore raise many exception types for these)
  is one OSError/CheckpointError naming the step and the OS reason; its temporary directory is removed, and the
  committed checkpoints stay as they are.
- Old checkpoints are pruned by kdjax, not by Orbax's `max_to_keep`: only after a newer step is committed on disk
  (Orbax would delete the old steps even when the newer save failed), so at least one complete checkpoint exists
  at every moment, and up to `keep + 1` while a save is in flight.
"""

import contextlib
import errno
import logging
import os
import shutil
import sys
import time
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp

from kdjax.errors import CheckpointError
from kdjax.runtime import preemption
from kdjax.runtime.oserrors import one_line, os_error_from, quiet_orbax_tracebacks

log = logging.getLogger("kdjax")

UNREADABLE_DIR = "checkpoints.unreadable"
quiet_orbax_tracebacks()  # a failed write is reported once, in one line (PhaseCheckpoints._writing)
# Orbax creates a save's temporary folder in a thread by default; when the save fails before that thread ran (a full
# disk), the folder appeared after the cleanup of the failed save and stayed. Created before the save, it goes with it.
SYNC_DIRECTORIES = ocp.options.AsyncOptions(create_directories_asynchronously=False)


def remove_partial(path: str, patience_s: float = 5.0) -> bool:
    """Delete what a failed Orbax save left at `path`; False if it kept coming back for `patience_s`.

    The first failed array write is raised while TensorStore's threads still write the save's other arrays (and
    create their folders), so files can appear while the tree is being deleted: delete until it stays gone."""
    deadline = time.monotonic() + patience_s
    pause = 0.05
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            time.sleep(pause)  # a write still in flight would show up now
            if not os.path.lexists(path):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


# OS errors that say nothing about the files' contents: a restore failing with these is not a damaged checkpoint
_NOT_DAMAGE = (errno.EACCES, errno.EPERM, errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM)


class PhaseCheckpoints:
    def __init__(self, directory: str, keep: int = 3, read_only: bool = False):
        """`read_only` (evaluation): never create, clean up, prune or move anything, e.g. while training runs."""
        self.directory = os.path.abspath(directory)
        self.keep = max(1, int(keep))
        self.read_only = read_only
        self._failed = False  # a failed save was reported: closing must not report it again
        self._pending: Optional[int] = None  # the step of the save in flight
        if read_only:
            logging.getLogger("absl").addFilter(_READ_ONLY_NOTICES)
            options = ocp.CheckpointManagerOptions(read_only=True, create=False)
        else:
            options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True, enable_async_checkpointing=True,
                                                   cleanup_tmp_directories=True, async_options=SYNC_DIRECTORIES)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self):
        return sorted(self.manager.all_steps())

    def latest_step(self) -> Optional[int]:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, data_iterator=None, meta: Optional[dict] = None, force: bool = False):
        with self._writing(step):
            self.manager.wait_until_finished()  # the previous save is committed (or failed) before pruning
            self._settled()
            self._prune()
            if step in self.manager.all_steps():
                return
            items = {"state": ocp.args.StandardSave(state)}
            if data_iterator is not None:
                items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
            if meta is not None:
                items["meta"] = ocp.args.JsonSave(meta)
            self._pending = step
            preemption.begin_write()  # a SIGTERM outside the loop waits until this save is complete
            self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def _settled(self):
        """The save in flight is complete (or failed): a SIGTERM that waited for it may now end the process."""
        if self._pending is not None:
            self._pending = None
            preemption.end_write()

    @contextlib.contextmanager
    def _writing(self, step: Optional[int]):
        """Turn a failed save (raised here or, for an async one, by the next wait) into one OSError naming the
        step and the OS reason (CheckpointError when no OS reason is given); remove its temporary directory."""
        try:
            yield
        except Exception as e:
            failed = self._pending if self._pending is not None else step
            self._failed = True
            self._remove_temporaries(failed)
            if self._pending is not None:
                self._pending = None
                preemption.end_write()
            if isinstance(e, CheckpointError):
                raise
            found = os_error_from(e)
            committed = self._committed()
            kept = f"; the newest complete checkpoint is step {committed[-1]}" if committed else ""
            if found is not None:  # (train.run adds what is saved)
                raise OSError(found.errno, f"{os.strerror(found.errno)} while writing checkpoint step {failed}",
                              self.directory) from None
            raise CheckpointError(f"cannot write checkpoint step {failed} in {self.directory} ({type(e).__name__}: "
                                  f"{one_line(e)}){kept}") from None

    def _committed(self):
        try:
            return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
        except OSError:
            return []

    def _remove_temporaries(self, step: Optional[int]):
        """The temporary directories of a failed save (they would only take space; a restart skips them)."""
        if self.read_only or jax.process_index() != 0:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if ".orbax-checkpoint-tmp" in name and (step is None or name.split(".", 1)[0] == str(step)):
                remove_partial(os.path.join(self.directory, name))

    def _prune(self):
        """Delete all but the newest `keep` committed steps (read from disk: a failed save is not counted)."""
        if self.read_only:
            return
        self.manager.reload()
        steps = self.steps()
        for step in steps[:-self.keep]:
            try:
                self.manager.delete(step)
            except FileNotFoundError:
                pass

    def restore(self, abstract_state, data_iterator=None) -> Optional[Any]:
        """Newest restorable (state, meta); None when there is no checkpoint. Moves `data_iterator` to its position.

        Unrestorable newer steps are moved aside once an older one restored; if none restores, CheckpointError.
        """
        bad = []
        for step in reversed(self.steps()):
            items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
            if data_iterator is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
            try:
                with _quiet_unraisable():
                    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # damaged files surface as many exception types
                _drop_closed_loop_noise()
                found = os_error_from(e)
                if found is not None and found.errno in _NOT_DAMAGE:  # the files may be fine: say why, move nothing
                    raise OSError(found.errno, f"{os.strerror(found.errno)} while reading checkpoint step {step}",
                                  found.filename or os.path.join(self.directory, str(step))) from None
                reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
                print(f"kdjax: warning: checkpoint step {step} in {self.directory} cannot be restored ({reason}); "
                      f"trying the previous one", file=sys.stderr, flush=True)
                bad.append((step, reason))
                continue
            if bad and not self.read_only:
                self._move_aside([s for s, _ in bad])
            return restored.state, dict(restored.meta or {})
        if bad:
            lines = "; ".join(f"step {s}: {r}" for s, r in bad[:3])
            raise CheckpointError(
                f"none of the checkpoints in {self.directory} can be restored ({lines}). They were left as they "
                f"are. If they were written by an older kdjax or another config, evaluate or copy them elsewhere; "
                f"to start this run fresh, pass --restart (moves the workdir aside, deletes nothing).")
        return None

    def _move_aside(self, steps):
        """Move unrestorable step directories out of Orbax's sight (kept for inspection, never deleted)."""
        if jax.process_index() == 0:
            target_root = os.path.join(os.path.dirname(self.directory), UNREADABLE_DIR)
            os.makedirs(target_root, exist_ok=True)
            for step in steps:
                source = os.path.join(self.directory, str(step))
                if not os.path.isdir(source):
                    continue
                target = os.path.join(target_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
                shutil.move(source, target)
                print(f"kdjax: warning: moved the unreadable checkpoint step {step} to {target}", file=sys.stderr,
                      flush=True)
        self.manager.reload()

    def wait(self):
        with self._writing(None):
            self.manager.wait_until_finished()
            self._settled()
            self._prune()

    def close(self):
        """Wait for the last save and close; a save failure already reported is not reported again."""
        try:
            if self._failed:
                try:
                    self.manager.wait_until_finished()
                except Exception:
                    pass
            else:
                with self._writing(None):
                    self.manager.wait_until_finished()
                    self._prune()
        finally:
            self._settled()
            try:
                self.manager.close()
            except Exception:
                if not self._failed:
                    raise


class _DropReadOnlyNotices(logging.Filter):
    """Orbax warns, as if something were wrong, whenever a manager is opened read-only ("Given directory is read
    only", "setting save_interval_steps=0"); evaluation opens it so on purpose, so users never see those two."""

    NOTICES = ("Given directory is read only", "read_only=True, setting save_interval_steps")

    def filter(self, record):
        return not any(n in str(record.getMessage()) for n in self.NOTICES)


_READ_ONLY_NOTICES = _DropReadOnlyNotices()


class _quiet_unraisable:
    """Orbax leaves failed read coroutines behind when a checkpoint is damaged; Python would print each one's
    traceback at garbage collection. The failure is already reported in one line, so silence those."""

    def __enter__(self):
        self._hook = sys.unraisablehook
        sys.unraisablehook = lambda *_: None
        return self

    def __exit__(self, *exc):
        import gc

        gc.collect()
        sys.unraisablehook = self._hook


def _drop_closed_loop_noise():
    """After a failed restore, Orbax's reader threads may still report "Event loop is closed" as unraisable
    exceptions, long after the failure was reported in one line; drop exactly those, pass on everything else."""
    previous = sys.unraisablehook
    if getattr(previous, "_kdjax_filter", False):
        return

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
            return
        previous(unraisable)

    hook._kdjax_filter = True
    sys.unraisablehook = hook
