"""Batches made ready on the devices ahead of the train step, by a background thread.

The train loop dispatches a step asynchronously and then fetches the next batch. Fetching on the loop's own
thread (grain hand-off, teacher-cache lookup, host → device transfer) costs ~2 ms per step on a 2-core CPU, all
counted as waiting for data; a thread that keeps `depth` batches transferred ahead takes that work off the loop
(measured on the default run: README "Performance").

Its checkpointed position is that of the batches the loop has TAKEN, not of those read ahead, so a resume starts
with exactly the next batch the loop would have used. An error raised while reading (a bad image, say) is raised
by `next()` at the batch where it occurred.
"""

import queue
import threading
from typing import Callable, Iterator

import grain


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class DevicePrefetch(grain.DatasetIterator):
    """Wraps a kdjax StepIterator (state {"step": n}); `transfer(host_batch)` → device batch, run on the thread.
    depth 0: no thread, each batch read and transferred by `next()` itself."""

    def __init__(self, iterator: Iterator, transfer: Callable[[dict], dict], depth: int = 2):
        super().__init__()
        self._iterator, self._transfer, self._depth = iterator, transfer, max(0, int(depth))
        self._taken = int(iterator.get_state()["step"])
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, self._depth))
        self._stop = threading.Event()
        self._thread = None

    def _produce(self):
        try:
            while not self._stop.is_set():
                item = self._transfer(next(self._iterator))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # StopIteration included: handed to the consumer in order
            self._queue.put(_Failure(e))

    def __next__(self) -> dict:
        if self._depth == 0:
            item = self._transfer(next(self._iterator))
            self._taken += 1
            return item
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="kdjax-device-prefetch", daemon=True)
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, _Failure):
            self._queue.put(item)  # every later next() fails the same way
            raise item.error
        self._taken += 1
        return item

    def get_state(self) -> dict:
        return {"step": self._taken}

    def set_state(self, state: dict) -> None:
        if self._thread is not None:
            raise RuntimeError("DevicePrefetch.set_state after iteration started; restore the wrapped iterator first")
        self._iterator.set_state(state)
        self._taken = int(state["step"])

    def close(self) -> None:
        """Stops the thread (it may be blocked on a full queue) and closes the wrapped iterator."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread = None
        if hasattr(self._iterator, "close"):
            self._iterator.close()
