"""The training pipeline in replay mode (kdjax/data/replay.py): the same shuffled record stream as
`train_pipeline`, each record turned into its view by its own parameters before batching.

    source (+ index) ─shuffle(seed)/repeat─▶ view of (seed, epoch or epoch mod K, index) ─▶ slice(process)
      ─▶ batch ─▶ threads ─▶ [worker processes]

Batches are a pure function of the batch index, as in pipeline.py, so resuming mid-epoch (iterator state
{"step": n}) and worker processes give the same batches.
"""

import math

import grain
import numpy as np

from kdjax.data.badimages import BadImageCount, SubstituteBadImages
from kdjax.data.replay import ReplayRecords, ViewSource, recipe_from
from kdjax.data.resumable import ResumableBatches
from kdjax.errors import ConfigError


class Positioned(grain.MapDataset):
    """`fn(record, position)` over a MapDataset, keeping the batched `_getitems` read of its parent."""

    def __init__(self, parent: grain.MapDataset, fn):
        super().__init__(parent)
        self._inner_ds, self._fn = parent, fn

    def __len__(self):
        return len(self._inner_ds)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._fn(self._inner_ds[index], int(index))

    def _getitems(self, indices):
        return [self._fn(r, int(i)) for r, i in zip(self._inner_ds._getitems(list(indices)), indices)]

    def __str__(self):
        return "Positioned"


def _stacker(keep_index: bool, keep_view: bool):
    from kdjax.data.pipeline import _stack

    def stack(records):
        out = _stack(records)
        if not keep_index:
            out.pop("index", None)
        if keep_view:
            out["view"] = np.asarray([r["view"] for r in records], dtype=np.int32)
        if "soft_label" in records[0]:
            out["soft_label"] = np.stack([r["soft_label"] for r in records]).astype(np.float32)
        return out

    return stack


def view_source(source, opts, seed: int, replay_cache=None) -> ViewSource:
    """Where views come from: drawn from (seed, epoch, index), or the parameters stored in `replay_cache`."""
    shape = getattr(source, "image_shape", None)
    recipe = recipe_from(opts, shape)
    views, params = (replay_cache.views, replay_cache.params) if replay_cache is not None else (0, None)
    return ViewSource(recipe, seed, len(source), int(shape[0]), int(shape[1]), views=views, params=params)


def replay_pipeline(source, opts, replay_cache, *, global_batch, epochs, seed, process_index, process_count,
                    num_threads, prefetch):
    from kdjax.data.indexed import IndexedRecords  # here: kdjax.data.sources imports every data module
    from kdjax.data.pipeline import GatherBatches, TrainPipeline, _Reader

    if hasattr(source, "mixed_dataset"):
        raise ConfigError("data.unlabeled_list", "SSLD's labeled/unlabeled mixture cannot be replayed: drop "
                                                 "data.unlabeled_* or data.replayable/the replay cache")
    keep_index = isinstance(source, IndexedRecords)  # a loss (CRD) or the cache reads it
    indexed = source if keep_index else IndexedRecords(source)
    n = len(source)
    if global_batch % process_count:
        raise ConfigError("train.batch_size", f"{global_batch} is not divisible by the {process_count} processes")
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise ConfigError("train.batch_size", f"batch size {global_batch} is larger than the dataset ({n} examples)")
    total_steps = max(1, int(math.floor(epochs * steps_per_epoch)))
    views = view_source(source, opts, seed, replay_cache)
    records = SubstituteBadImages(indexed) if opts.skip_bad_images else indexed
    repeats = math.ceil(total_steps * global_batch / n) + 1
    ds = grain.MapDataset.source(records).shuffle(seed=seed).repeat(repeats)  # the stream of pipeline._records
    ds = Positioned(ds, ReplayRecords(views, records.__getitem__))
    ds = ds.slice(slice(process_index, None, process_count))
    ds = GatherBatches(ds, global_batch // process_count, _stacker(keep_index, replay_cache is not None))
    counter = BadImageCount()
    it_ds = ResumableBatches(ds, _Reader(num_threads, prefetch, opts.num_workers,
                                         counter if opts.skip_bad_images else None))
    return TrainPipeline(it_ds, steps_per_epoch, total_steps, counter)

