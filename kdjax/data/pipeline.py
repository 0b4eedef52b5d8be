"""grain pipelines: shuffled, repeated, per-process sliced, batched, augmented, prefetched.

The training iterator is a grain DatasetIterator whose state is saved with every checkpoint, so a resumed run
continues with the exact next batch.
"""

import dataclasses
import math

import grain
import numpy as np

from kdjax.data.augment import make_batch_augment
from kdjax.errors import ConfigError


def _stack(records):
    image = np.stack([np.asarray(r["image"], dtype=np.uint8) for r in records])
    if image.ndim == 3:
        image = image[..., None]
    label = np.asarray([r["label"] for r in records], dtype=np.int32)
    out = {"image": image, "label": label}
    if "label_mask" in records[0]:
        out["label_mask"] = np.asarray([r["label_mask"] for r in records], dtype=np.float32)
    return out


@dataclasses.dataclass
class TrainPipeline:
    dataset: grain.IterDataset
    steps_per_epoch: int
    total_steps: int


def train_pipeline(source, *, global_batch: int, epochs: float, seed: int, process_index: int = 0,
                   process_count: int = 1, augment: str = "none", num_threads: int = 2,
                   prefetch: int = 4) -> TrainPipeline:
    """Batches of `global_batch // process_count` local examples; epochs may be fractional."""
    n = len(source)
    if global_batch % process_count:
        raise ConfigError("train.batch_size", f"{global_batch} is not divisible by the {process_count} processes")
    steps_per_epoch = n // global_batch
    if steps_per_epoch == 0:
        raise ConfigError("train.batch_size", f"batch size {global_batch} is larger than the dataset ({n} examples)")
    total_steps = max(1, int(math.floor(epochs * steps_per_epoch)))
    repeats = math.ceil(total_steps * global_batch / n) + 1
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(repeats)
    ds = ds.slice(slice(process_index, None, process_count))
    ds = ds.batch(global_batch // process_count, drop_remainder=True, batch_fn=_stack)
    aug = make_batch_augment(augment)
    if aug is not None:
        ds = ds.random_map(aug, seed=seed + 1)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    return TrainPipeline(it_ds, steps_per_epoch, total_steps)


def eval_batches(source, *, global_batch: int, process_index: int = 0, process_count: int = 1, limit: int = 0):
    """Fixed-shape batches over the whole split (or its first `limit` examples); padding rows have mask 0."""
    n = len(source) if not limit else min(limit, len(source))
    local = global_batch // process_count
    for start in range(0, n, global_batch):
        idx = np.arange(start, min(start + global_batch, n))[process_index::process_count]
        records = [source[int(i)] for i in idx]
        batch = _stack(records)
        mask = np.ones(local, np.float32)
        if len(idx) < local:
            pad = local - len(idx)
            mask[len(idx):] = 0
            batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
        batch["mask"] = mask
        yield batch
