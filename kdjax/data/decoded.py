"""Sources of encoded images (list files, TFDS): batched, threaded decoding, and decode-once into memory.

PNG/JPEG records cost ~50-250 µs each to decode in PIL, most of it per-image overhead; one record at a time that
starved the training loop (16-63% of the time waiting on a 2-core machine). Two remedies, both exact:

- `_getitems` (the batched read `kdjax.data.pipeline.GatherBatches` makes once per batch) reads the batch's bytes
  in one call and decodes them in a small thread pool (PIL releases the GIL while it decodes);
- `decode_all` decodes a whole split once, in the same pool, when its decoded images fit
  `data.decode_once_mb`; records are then served from memory like IDX files (one gather per batch). The
  decoded pixels are those a per-record decode gives; an undecodable image is remembered and raised when read,
  so `data.skip_bad_images` behaves the same either way.

A subclass provides `__len__`, `_fetch(indices)` → [(bytes, label, origin)] (raising `BadImage` for a record it
cannot read) and `channels`.
"""

import concurrent.futures
import time
from typing import List, Optional

import numpy as np

from kdjax.data.decode import BadImage, decode_image, image_header


class Unreadable:
    """A record that could not be read or decoded: its error, raised when the record is read."""

    def __init__(self, error: BadImage):
        self.error = error


class EncodedImages:
    channels: int = 0
    threads: int = 2
    _pool = None
    _images = None      # decoded images: uint8 [n, H, W, C] (one size) or a list of arrays
    _labels = None
    _failed = None      # {index: BadImage} of the decoded split
    decode_seconds = 0.0

    # ---- subclass interface ------------------------------------------------------------------------------------
    def _fetch(self, indices) -> List:  # [(bytes, label, origin) or Unreadable]
        raise NotImplementedError

    # ---- reading ---------------------------------------------------------------------------------------------------
    @property
    def decoded(self) -> int:
        """How many leading records are held decoded in memory (0: none)."""
        return 0 if self._labels is None else len(self._labels)

    def in_memory_images(self):
        """The decoded uint8 [decoded, H, W, C] array when the split (or its first records) was decoded at one size
        and every image could be decoded, else None."""
        return self._images if isinstance(self._images, np.ndarray) and not self._failed else None

    def __getitem__(self, index):
        return self._getitems([int(index)])[0]

    def _getitems(self, indices):
        indices = [int(i) for i in indices]
        if self._labels is not None and all(i < self.decoded for i in indices):
            return self._from_memory(indices)
        return [self._raise_failed(r) for r in self._decode_many(indices)]

    def _from_memory(self, indices):
        for i in indices:
            if i in self._failed:
                raise self._failed[i]
        if isinstance(self._images, np.ndarray):
            images = self._images[np.asarray(indices, np.int64)]
            return [{"image": images[k], "label": self._labels[i]} for k, i in enumerate(indices)]
        return [{"image": self._images[i], "label": self._labels[i]} for i in indices]

    @staticmethod
    def _raise_failed(record):
        if isinstance(record, Unreadable):
            raise record.error
        return record

    def _decode_many(self, indices) -> List:
        """Records (or Unreadable) of `indices`: one batched fetch, decoded in the thread pool, in order."""
        fetched = self._fetch(indices)
        if len(fetched) == 1:
            return [self._decode_one(fetched[0])]
        return list(self._executor().map(self._decode_one, fetched))

    def _decode_one(self, item):
        if isinstance(item, Unreadable):
            return item
        data, label, origin = item
        try:
            return {"image": decode_image(data, origin, self.channels), "label": np.int32(label)}
        except BadImage as e:
            return Unreadable(e)

    def _executor(self):
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max(1, int(self.threads)),
                                                               thread_name_prefix="kdjax-decode")
        return self._pool

    def __getstate__(self):  # worker processes get their own pool
        state = dict(self.__dict__)
        state.pop("_pool", None)
        return state

    # ---- sampling headers, decoding once ------------------------------------------------------------------------
    def headers(self, indices):
        """(format, width, height, channels) of each record that can be read (unreadable ones are left out)."""
        out = []
        for item in self._fetch(list(indices)):
            if isinstance(item, Unreadable):
                continue
            try:
                out.append(image_header(item[0], item[2]))
            except BadImage:
                continue
        return out

    def decode_all(self, count: Optional[int] = None, budget_mb: float = 0.0, chunk: int = 512) -> bool:
        """Decode the first `count` records (all by default) into memory when an estimate of their decoded size
        (from a sample of headers) fits `budget_mb`; returns whether it did."""
        count = len(self) if count is None else min(int(count), len(self))
        if budget_mb <= 0 or count == 0 or self._labels is not None:
            return self._labels is not None
        sample = self.headers(np.unique(np.linspace(0, count - 1, min(count, 64)).astype(np.int64)).tolist())
        if not sample:
            return False
        channels = self.channels or max(h[3] for h in sample)
        estimate = count * float(np.mean([w * h for _, w, h, _ in sample])) * channels / 2 ** 20
        if estimate > budget_mb:
            return False
        start = time.perf_counter()
        images, labels, failed = [], np.zeros(count, np.int32), {}
        for lo in range(0, count, chunk):
            for i, record in zip(range(lo, min(lo + chunk, count)), self._decode_many(list(range(lo, min(lo + chunk, count))))):
                if isinstance(record, Unreadable):
                    failed[i] = record.error
                    images.append(None)
                else:
                    images.append(record["image"])
                    labels[i] = record["label"]
        good = [a for a in images if a is not None]
        if good and all(a.shape == good[0].shape for a in good):
            stacked = np.zeros((count,) + good[0].shape, np.uint8)
            for i, a in enumerate(images):
                if a is not None:
                    stacked[i] = a
            self._images = stacked
        else:
            self._images = images
        self._labels, self._failed = labels, failed
        self.decode_seconds = time.perf_counter() - start
        return True


CHANNEL_SAMPLE = 64


def resolve_channels(data, source: EncodedImages) -> int:
    """`data.channels` when set (1 or 3), else the data's own: 1 when every sampled image (up to 64, evenly spaced
    over the split) is grayscale, 3 when any is colour. The test split takes the training split's (open_source)."""
    configured = int(data.get("channels", 0) or 0)
    if configured:
        return configured
    n = len(source)
    sample = source.headers(np.unique(np.linspace(0, n - 1, min(n, CHANNEL_SAMPLE)).astype(np.int64)).tolist())
    return max((h[3] for h in sample), default=3)
