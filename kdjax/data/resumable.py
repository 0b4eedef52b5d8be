"""An iterator whose checkpointed position is just the number of batches taken.

grain's own iterator states differ between threads-only and worker-process pipelines (one holds an index, the
other per-worker positions), so a run could not resume after `data.num_workers` changed. Our batches are a
grain MapDataset, i.e. a pure function of the batch index, so the position {"step": n} is enough: resuming
reads `batches[n:]` through the same threads/workers. The state is tiny and readable in the checkpoint.
"""

import atexit
import weakref
from typing import Callable

import grain


class ResumableBatches(grain.IterDataset):
    """Iterates `batches` (a MapDataset) through `build` (MapDataset → IterDataset: threads, workers, ...)."""

    def __init__(self, batches: grain.MapDataset, build: Callable[[grain.MapDataset], grain.IterDataset]):
        super().__init__(batches)
        self._batches, self._build = batches, build

    def __iter__(self) -> "StepIterator":
        return StepIterator(self._batches, self._build)

    def __str__(self):
        return "ResumableBatches"


class StepIterator(grain.DatasetIterator):
    def __init__(self, batches: grain.MapDataset, build):
        super().__init__()
        self._batches, self._build = batches, build
        self._step = 0
        self._inner = None
        self._exit_hook = False

    def _start(self):
        self._inner = iter(self._build(self._batches[self._step:]))
        if not self._exit_hook:  # worker processes and their shared memory go away even if nobody calls close()
            atexit.register(_close_if_alive, weakref.ref(self))
            self._exit_hook = True

    def start_prefetch(self) -> None:
        if self._inner is None:
            self._start()

    def __next__(self):
        if self._inner is None:
            self._start()
        batch = next(self._inner)
        self._step += 1
        return batch

    def get_state(self) -> dict:
        return {"step": self._step}

    def set_state(self, state: dict) -> None:
        self._stop()
        self._step = int(state["step"])

    def _stop(self):
        if self._inner is not None and hasattr(self._inner, "close"):
            self._inner.close()
        self._inner = None

    def close(self) -> None:
        self._stop()
        super().close()


def _close_if_alive(ref):
    iterator = ref()
    if iterator is not None:
        iterator.close()
