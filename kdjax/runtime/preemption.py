"""Preemption: SIGTERM (Kubernetes, Slurm, spot VMs) ends every kdjax command promptly with exit code 0.

- Inside a training loop, the loop owns SIGTERM: it finishes the current step, checkpoints, and stops cleanly, on
  every host at the same step (`Preemption`).
- Anywhere else (start-up, checks, compilation, restore, `--mode=eval`, `kdjax.infer`, a finished run run again)
  nothing is lost by stopping, so the process exits at once: a thread woken by `signal.set_wakeup_fd` exits even
  while the main thread is inside a long XLA compilation or evaluation, where a Python handler would wait.
- Except while something is being written (`writing()`: an export, config.json, an async checkpoint in flight):
  then the exit waits until the write is complete, so no partial file is left.
- Multi-process runs never exit alone (the others would wait for them forever): the next loop stops after its
  first step on every process together.
"""

import contextlib
import os
import signal
import sys
import threading

import jax
import numpy as np

_EARLY_SIGTERM = []  # SIGTERMs that arrived outside a training loop and could not end the process at once
_STATE = {"loop": 0, "busy": 0, "multi": False, "watching": False}
_LOCK = threading.RLock()


def listen_for_sigterm(pending: bool = False, multi: bool = False):
    """The CLI calls this first (again after jax.distributed takes SIGTERM over, with `multi`). `pending`: a
    SIGTERM arrived already (caught by the CLI while importing)."""
    _STATE["multi"] = bool(multi)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        return
    _watch()
    if pending:
        _on_sigterm()


def _on_sigterm(*_):
    with _LOCK:
        if _STATE["loop"]:  # (the loop's own handler is installed then; this is the watcher's call)
            return
        _EARLY_SIGTERM.append(True)
        _exit_if_idle()


def _exit_if_idle():
    with _LOCK:
        if _EARLY_SIGTERM and not _STATE["loop"] and not _STATE["busy"] and not _STATE["multi"]:
            print("kdjax: SIGTERM: stopped (nothing was being written; every checkpoint and export is complete)",
                  file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(0)


def _watch():
    """A thread that learns of SIGTERM from the C-level signal handler, while the main thread may be busy in C."""
    if _STATE["watching"]:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(read_fd)
        os.close(write_fd)
        return
    _STATE["watching"] = True

    def run():
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data:
                _on_sigterm()

    threading.Thread(target=run, name="kdjax-sigterm", daemon=True).start()


def begin_write():
    with _LOCK:
        _STATE["busy"] += 1


def end_write():
    with _LOCK:
        _STATE["busy"] = max(0, _STATE["busy"] - 1)
        _exit_if_idle()


@contextlib.contextmanager
def writing():
    """A write that a SIGTERM must not cut short (the exit waits until it is complete)."""
    begin_write()
    try:
        yield
    finally:
        end_write()


class Preemption:
    """SIGTERM → finish the current step, checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None
        # several processes: each records its own SIGTERM, and `requested` is set on all of them at once (agree)
        self._multi, self._local = jax.process_count() > 1, False

    def __enter__(self):
        try:  # the loop's handler first: a SIGTERM from here on is the loop's
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners)
            self._previous = None
        with _LOCK:
            _STATE["loop"] += 1
            early = bool(_EARLY_SIGTERM)
            _EARLY_SIGTERM.clear()
        if self._multi:
            self._local = self._local or early
        else:
            self.requested = self.requested or early
        return self

    def _handle(self, *_):
        if self._multi:
            self._local = True
        else:
            self.requested = True

    def agree(self, step: int, every: int = 10):
        """Multi-host: SIGTERM reaches the hosts at different steps, and one host checkpointing while another
        trains would deadlock both; every `every` steps they decide together and stop at the same step."""
        if self._multi and not self.requested and step % every == 0:
            from jax.experimental import multihost_utils

            self.requested = bool(np.max(multihost_utils.process_allgather(np.int32(self._local))))

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        with _LOCK:
            _STATE["loop"] -= 1
