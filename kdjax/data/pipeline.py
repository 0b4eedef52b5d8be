"""grain pipelines: shuffled, repeated, per-process sliced, resized, batched, augmented, prefetched.

    source ─shuffle(seed)/repeat (SSLD: mix labeled + unlabeled)─▶ slice(process) ─▶ per-record resize/crop
      (variable-size images only) ─▶ batch ─▶ batch augment, mixup/cutmix ─▶ threads ─▶ [worker processes]

Everything up to the batch augment is a grain MapDataset, so each batch is a pure function of (seed, step):
resuming from a saved iterator state, or adding worker processes, gives the same batches. The training
iterator is a grain DatasetIterator whose state ({"step": n}, see resumable.py) is saved with every checkpoint,
and stays valid when data.num_workers or data.num_threads change between runs.

Batch keys: "image" uint8 [N, H, W, C], "label" int32 [N]; "label_mask" float32 [N] (SSLD: 0 = unlabeled);
"soft_label" float32 [N, num_classes] (when mixup or cutmix is on); "image_strong" uint8 (when a loss reads the
strong view, see strong_augment.py). Eval batches add "mask" (0 = padding).
"""

import dataclasses
import math
from typing import Optional

import grain
import numpy as np

from kdjax.data.augment import AUTO, canonical_augment, make_batch_augment, resolve_augment
from kdjax.data.badimages import BAD_KEY, BadImageCount, SubstituteBadImages
from kdjax.data.decode import BadImage
from kdjax.data.mixing import MixBatch
from kdjax.data.options import PipelineOptions, check_options, resizes_records
from kdjax.data.resumable import ResumableBatches
from kdjax.data.ssld import SsldSource
from kdjax.data.strong_augment import StrongAugment, StrongRecordCrop, check_views
from kdjax.data.transforms import EvalRecordTransform, TrainRecordTransform
from kdjax.errors import ConfigError


def _stack(records):
    image = np.stack([np.asarray(r["image"], dtype=np.uint8) for r in records])
    if image.ndim == 3:
        image = image[..., None]
    label = np.asarray([r["label"] for r in records], dtype=np.int32)
    out = {"image": image, "label": label}
    if "label_mask" in records[0]:
        out["label_mask"] = np.asarray([r["label_mask"] for r in records], dtype=np.float32)
    if "index" in records[0]:  # dataset index of each record (CRD's memory bank rows, losses.crd.IndexedRecords)
        out["index"] = np.asarray([r["index"] for r in records], dtype=np.int32)
    if BAD_KEY in records[0]:
        out[BAD_KEY] = int(sum(int(r[BAD_KEY]) for r in records))
    for key in records[0]:  # extra views cropped per record (strong_augment.StrongRecordCrop)
        if key.startswith("image_"):
            out[key] = np.stack([np.asarray(r[key], dtype=np.uint8) for r in records]).reshape(image.shape)
    return out


class GatherBatches(grain.MapDataset):
    """`records.batch(size, drop_remainder=True, batch_fn=batch_fn)`, reading each batch's records with ONE
    `_getitems` call down the grain chain (slice → shuffle → repeat → source) instead of one `__getitem__` per
    record: a source with a batched read (IdxSource) then gathers the batch at once. grain's own batch reads
    per record (~50 µs of Python each, which on a 2-core machine competes with the train step); same batches."""

    def __init__(self, records: grain.MapDataset, batch_size: int, batch_fn):
        super().__init__(records)
        self._records, self._size, self._batch_fn = records, int(batch_size), batch_fn

    def __len__(self):
        return len(self._records) // self._size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        start = index * self._size
        return self._batch_fn(self._records._getitems(list(range(start, start + self._size))))

    def __str__(self):
        return f"GatherBatches(batch_size={self._size})"


@dataclasses.dataclass
class TrainPipeline:
    dataset: grain.IterDataset
    steps_per_epoch: int
    total_steps: int
    bad_images: BadImageCount = dataclasses.field(default_factory=BadImageCount)  # skipped so far (log it)


def _resolve_options(source, options: Optional[PipelineOptions], **overrides) -> PipelineOptions:
    opts = options or getattr(source, "options", None) or PipelineOptions()
    if overrides.get("augment") == AUTO:  # data.augment='auto' was resolved when the source was opened
        overrides["augment"] = None if options or getattr(source, "options", None) else resolve_augment(AUTO, False)
    opts = dataclasses.replace(opts, **{k: v for k, v in overrides.items() if v is not None})
    opts = dataclasses.replace(opts, augment=canonical_augment(opts.augment))
    check_options(opts, getattr(source, "image_shape", None))
    return opts


def _records(source, seed: int, records: int, opts: PipelineOptions) -> grain.MapDataset:
    """The global, shuffled record stream (every process builds the same one and takes its slice)."""
    wrap = SubstituteBadImages if opts.skip_bad_images else (lambda s: s)
    if isinstance(source, SsldSource):
        return source.mixed_dataset(seed, records, wrap)
    repeats = math.ceil(records / len(source)) + 1
    return grain.MapDataset.source(wrap(source)).shuffle(seed=seed).repeat(repeats)


class _Reader:
    """MapDataset of batches → IterDataset: reader threads, optional worker processes, bad-image counting."""

    def __init__(self, num_threads: int, prefetch: int, num_workers: int, counter: Optional[BadImageCount]):
        self.num_threads, self.prefetch, self.num_workers, self.counter = num_threads, prefetch, num_workers, counter

    def __call__(self, batches: grain.MapDataset) -> grain.IterDataset:
        ds = batches.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                                       prefetch_buffer_size=self.prefetch))
        if self.num_workers > 0:
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers))
        if self.counter is not None:  # after mp_prefetch: runs in this process
            ds = ds.map(self.counter.take)
        return ds


def _add_views(views, opts: PipelineOptions):
    """(per-record map or None, batch map or None) that add the extra input `views` some loss reads
    (LossSpec.views): "strong" adds batch["image_strong"] (strong_augment.py); none for ()."""
    if not check_views(views):
        return None, None
    if opts.mixing:
        raise ConfigError("data.mixup_alpha", "a loss here reads a strong view of each image (e.g. mlkd), which "
                          "mixup/cutmix would have to mix identically; set data.mixup_alpha and data.cutmix_alpha "
                          "to 0")
    record_map = StrongRecordCrop(opts.image_size, opts.crop_scale) if opts.augment == "imagenet" else None
    return record_map, StrongAugment(opts.augment)


def train_pipeline(source, *, global_batch: int, epochs: float, seed: int, process_index: int = 0,
                   process_count: int = 1, augment: Optional[str] = None, num_threads: int = 2,
                   prefetch: int = 4, options: Optional[PipelineOptions] = None,
                   num_workers: Optional[int] = None, views=(), replay_cache=None) -> TrainPipeline:
    """Batches of `global_batch // process_count` local examples; epochs may be fractional.

    `options` defaults to `source.options` (set by `open_source` from config.data); `augment` and
    `num_workers`, when given, override it. `views` ("strong"): extra augmented copies of each batch's records,
    batch["image_<view>"], for the losses that read them (CombinedLoss.views); drawn from their own seeds, so
    the weak view ("image") is the same batch with or without them. With `options.replayable` or a `replay_cache`
    (ReplayCache), views are drawn per record from (seed, view, index) or read from the cache (kdjax/data/replay.py).
    """
    opts = _resolve_options(source, options, augment=augment, num_workers=num_workers)
    if opts.replayable or replay_cache is not None:
        from kdjax.data.replay_pipeline import replay_pipeline

        if views:
            raise ConfigError("data.replayable", f"losses reading extra views ({', '.join(views)}) cannot be "
                                                 f"replayed yet; drop data.replayable/the replay cache")
        return replay_pipeline(source, opts, replay_cache, global_batch=global_batch, epochs=epochs, seed=seed,
                                process_index=process_index, process_count=process_count, num_threads=num_threads,
                                prefetch=prefetch)
    view_record_map, view_batch_map = _add_views(views, opts)
    n = len(source)
    if global_batch % process_count:
        raise ConfigError("train.batch_size", f"{global_batch} is not divisible by the {process_count} processes")
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise ConfigError("train.batch_size", f"batch size {global_batch} is larger than the dataset ({n} examples)")
    total_steps = max(1, int(math.floor(epochs * steps_per_epoch)))
    ds = _records(source, seed, total_steps * global_batch, opts)
    ds = ds.slice(slice(process_index, None, process_count))
    image_shape = getattr(source, "image_shape", None)
    if resizes_records(opts, image_shape):
        if view_record_map is not None:  # before the weak view's crop replaces the record's image
            ds = ds.random_map(view_record_map, seed=(seed + 6) % 2**32)
        ds = ds.random_map(TrainRecordTransform(opts.image_size, opts.augment == "imagenet", opts.eval_crop_ratio,
                                                opts.crop_scale, opts.interpolation), seed=(seed + 2) % 2**32)
    ds = GatherBatches(ds, global_batch // process_count, _stack)
    if view_batch_map is not None:  # from the records before the weak view's batch augmentation
        ds = ds.random_map(view_batch_map, seed=(seed + 5) % 2**32)
    aug = make_batch_augment(opts.augment)
    if aug is not None:
        ds = ds.random_map(aug, seed=(seed + 1) % 2**32)
    if opts.mixing:
        ds = ds.random_map(MixBatch(opts.num_classes, opts.mixup_alpha, opts.cutmix_alpha),
                           seed=(seed + 3) % 2**32)
    counter = BadImageCount()
    it_ds = ResumableBatches(ds, _Reader(num_threads, prefetch, opts.num_workers,
                                         counter if opts.skip_bad_images else None))
    return TrainPipeline(it_ds, steps_per_epoch, total_steps, counter)


class _EvalBatch:
    """Builds local eval batch b: decode (bad images become masked-out rows when skipping), resize, pad."""

    def __init__(self, source, n, global_batch, local, process_index, process_count, resize, skip_bad):
        self.source, self.n, self.global_batch, self.local = source, n, global_batch, local
        self.process_index, self.process_count = process_index, process_count
        self.resize, self.skip_bad = resize, skip_bad

    def __call__(self, b: int):
        start = b * self.global_batch
        idx = np.arange(start, min(start + self.global_batch, self.n))[self.process_index::self.process_count]
        records, mask, bad = [], np.zeros(self.local, np.float32), 0
        for i in idx:
            try:
                record = self.source[int(i)]
            except BadImage:
                if not self.skip_bad:
                    raise
                bad += 1
                continue
            records.append(self.resize(record) if self.resize else record)
        mask[:len(records)] = 1
        if records:
            batch = _stack(records)
        else:  # every image of this slice was bad: an all-padding batch with the source's shape
            batch = _stack([self._placeholder()])
            batch = {k: v[:0] for k, v in batch.items()}
        pad = self.local - len(records)
        if pad:
            batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
        batch["mask"] = mask
        return batch, bad

    def _placeholder(self):
        for i in range(self.n):
            try:
                record = self.source[i]
            except BadImage:
                continue
            return self.resize(record) if self.resize else record
        raise BadImage("every evaluation image", "none of them can be decoded")


def eval_batches(source, *, global_batch: int, process_index: int = 0, process_count: int = 1, limit: int = 0,
                 options: Optional[PipelineOptions] = None, num_threads: int = 4,
                 bad_images: Optional[BadImageCount] = None):
    """Fixed-shape batches over the whole split (or its first `limit` examples); padding rows have mask 0.

    Variable-size images are resized the eval way (shorter side, centre crop). With data.skip_bad_images,
    an undecodable image becomes a padding row (mask 0) and is counted in `bad_images`. Batches are built
    in `num_threads` threads (decoding releases the GIL) and come out in order.
    """
    opts = _resolve_options(source, options)
    n = len(source) if not limit else min(limit, len(source))
    local = global_batch // process_count
    resize = EvalRecordTransform(opts.image_size, opts.eval_crop_ratio, opts.interpolation) \
        if resizes_records(dataclasses.replace(opts, augment="none"), getattr(source, "image_shape", None)) else None
    build = _EvalBatch(source, n, global_batch, local, process_index, process_count, resize, opts.skip_bad_images)
    ds = grain.MapDataset.range(math.ceil(n / global_batch)).map(build)
    for batch, bad in ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, num_threads),
                                                           prefetch_buffer_size=2 * max(1, num_threads))):
        if bad and bad_images is not None:
            bad_images.add(bad)
        yield batch
