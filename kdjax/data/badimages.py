"""`data.skip_bad_images`: replace undecodable or missing images by the next good record, and count them.

Substituting (rather than filtering) keeps every batch full and every epoch the same number of steps, and it is
a pure function of the record index, so runs stay deterministic and resumable. The count travels inside each
batch under BAD_KEY (records → batch → across worker processes) and is taken out in the main process, where
`BadImageCount.value` is what the trainer logs.
"""

import threading

import numpy as np

from kdjax.data.decode import BadImage
from kdjax.errors import DataError

BAD_KEY = "_bad_images"
MAX_CONSECUTIVE = 100


class SubstituteBadImages:
    """A source whose record i is the first decodable of records i, i+1, ...; records carry BAD_KEY (skipped)."""

    def __init__(self, source):
        self._source = source
        self.image_shape = getattr(source, "image_shape", None)
        self.description = getattr(source, "description", "")

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        n = len(self._source)
        last = None
        for skipped in range(min(MAX_CONSECUTIVE, n)):
            try:
                record = self._source[(int(index) + skipped) % n]
            except BadImage as e:
                last = e
                continue
            return dict(record, **{BAD_KEY: np.int32(skipped)})
        raise DataError(f"{min(MAX_CONSECUTIVE, n)} consecutive images could not be read; the data looks broken, "
                        f"not just a few files. Last error: {last}")

    def _getitems(self, indices):
        """Batched read (the wrapped source's, e.g. threaded decoding); a batch holding a bad image is read record
        by record, substituting as `__getitem__` does."""
        from kdjax.data.sources import read_records

        try:
            return [dict(r, **{BAD_KEY: np.int32(0)}) for r in read_records(self._source, indices)]
        except BadImage:
            return [self[i] for i in indices]


class BadImageCount:
    """Images skipped so far by this process's iterator (not saved in checkpoints: it restarts at 0)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int):
        with self._lock:
            self.value += int(n)

    def take(self, batch):
        """IterDataset map in the main process: move the batch's count into this counter."""
        batch = dict(batch)
        self.add(batch.pop(BAD_KEY, 0))
        return batch
