"""Preemption: SIGTERM (Kubernetes, Slurm, spot VMs) makes a training loop checkpoint and stop cleanly, on every host
at the same step."""

import signal

import jax
import numpy as np

_EARLY_SIGTERM = []  # SIGTERMs that arrived outside a training loop (see listen_for_sigterm)


def listen_for_sigterm(pending: bool = False):
    """The CLI calls this first: a SIGTERM that arrives before or between training loops (start-up, compilation,
    evaluation) is remembered, and the next loop checkpoints after its first step and returns, instead of the
    process dying with nothing saved. `pending`: one arrived already (caught by the CLI while importing)."""
    if pending:
        _EARLY_SIGTERM.append(True)
    try:
        signal.signal(signal.SIGTERM, lambda *_: _EARLY_SIGTERM.append(True))
    except ValueError:  # not the main thread
        pass


class Preemption:
    """SIGTERM → finish the current step, checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None
        # several processes: each records its own SIGTERM, and `requested` is set on all of them at once (agree)
        self._multi, self._local = jax.process_count() > 1, False

    def __enter__(self):
        self.requested = bool(_EARLY_SIGTERM)
        _EARLY_SIGTERM.clear()
        if self._multi:
            self._local, self.requested = self.requested, False
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners)
            self._previous = None
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
