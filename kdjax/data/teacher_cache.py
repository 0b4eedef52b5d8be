"""Offline distillation: a frozen teacher's logits precomputed once (`python -m kdjax.tools.cache_teacher`) and read
during training (`config.teacher_cache=DIR`) instead of running the teacher.

Layout of a cache directory (plain .npy files, memory-mapped for reading; chosen over ArrayRecord because rows
are fixed-size float arrays read by index, which .npy serves with no decoding and no extra package):

    manifest.json        format, model name and arch, num_classes, count, top_k, dataset identity, fingerprint
    labels.npy           int32 [N]      the label of record i (as the training pipeline sees it)
    logits.npy           float32 [N, C] (top_k == 0)
    topk_values.npy      float32 [N, K] (top_k > 0) the K largest logits,
    topk_indices.npy     int32 [N, K]   their classes,
    logsumexp.npy        float32 [N]    logsumexp of the full logits: the remaining probability mass is spread
                                        evenly over the other classes when the logits are rebuilt

Row i belongs to record i of the training split (after `data.train_limit`; with `data.skip_bad_images`, to the
record that replaces an undecodable one). Training reads rows by record index: the training source is wrapped so
that every record carries its index (`kdjax.data.indexed.IndexedRecords`; the pipeline batches it as "index", int32 [N]), and
`TeacherCache.complete` adds the cached logits to each batch on the host. That survives shuffling, per-process
slicing, worker processes and checkpoint/resume, since all of them move whole records.

Only valid where teacher and student see the same deterministic view of each record: `check` refuses the cache
with augmentations (data.augment other than 'none', mixup, cutmix), SSLD unlabeled data, and losses that read
teacher outputs other than logits. For augmented training, `cache_teacher --views=K` writes a replay cache instead
(kdjax/data/replay_cache.py): K stored views per record with their parameters; `open_cache` opens either kind.
"""

import hashlib
import json
import os
from typing import Optional

import numpy as np

from kdjax.errors import ConfigError

MANIFEST = "manifest.json"
FORMAT = "kdjax-teacher-cache"
VERSION = 1
_DATA_IDENTITY = ("name", "source", "train_split", "train_limit", "image_size", "skip_bad_images", "root",
                  "train_list", "data_dir", "tfds_data_dir")


def data_identity(data) -> dict:
    """The config.data fields that decide which records (and which view of them) the cache rows hold."""
    return {k: data.get(k) for k in _DATA_IDENTITY}


def fingerprint(source, n: Optional[int] = None) -> str:
    """A hash of a few records (image bytes and label), so a cache is never applied to other data."""
    n = len(source) if n is None else n
    h = hashlib.sha1(str(n).encode())
    for i in sorted({0, n // 2, n - 1} if n else set()):
        try:
            record = source[i]
        except Exception:  # an undecodable image (data.skip_bad_images): its position still counts
            h.update(b"bad")
            continue
        h.update(np.ascontiguousarray(np.asarray(record["image"], np.uint8)).tobytes())
        h.update(str(int(record["label"])).encode())
    return h.hexdigest()


def read_manifest(directory: str, field: str = "teacher_cache") -> dict:
    path = os.path.join(os.path.expanduser(directory), MANIFEST)
    if not os.path.isfile(path):
        raise ConfigError(field, f"{directory!r} holds no {MANIFEST}: it is not a teacher cache; write one with "
                                 f"`python -m kdjax.tools.cache_teacher --config=... --output={directory}`")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") == "kdjax-replay-cache":  # K augmented views per record: replay_cache.py
        return manifest
    if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > VERSION:
        raise ConfigError(field, f"{path} is not a kdjax teacher cache of version <= {VERSION}")
    return manifest


def open_cache(directory: str):
    """A TeacherCache (one un-augmented view per record) or a ReplayCache (K replayed views), by its manifest."""
    manifest = read_manifest(directory)
    if manifest.get("format") == "kdjax-replay-cache":
        from kdjax.data.replay_cache import ReplayCache

        return ReplayCache(directory, manifest)
    return TeacherCache(directory)


class TeacherCache:
    views = 0  # one un-augmented view per record (ReplayCache: K replayed views)

    def __init__(self, directory: str):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.manifest = read_manifest(self.directory)
        self.model = self.manifest["model"]
        self.count = int(self.manifest["count"])
        self.num_classes = int(self.manifest["num_classes"])
        self.top_k = int(self.manifest.get("top_k", 0))
        load = lambda f: np.load(os.path.join(self.directory, f), mmap_mode="r")  # noqa: E731
        self.labels = load("labels.npy")
        if self.top_k:
            self._values, self._indices, self._lse = load("topk_values.npy"), load("topk_indices.npy"), \
                load("logsumexp.npy")
        else:
            self._logits = load("logits.npy")

    def check_source(self, source):
        if len(source) != self.count:
            raise ConfigError("teacher_cache", f"{self.directory} holds {self.count} rows but the training split "
                                               f"has {len(source)} records; rebuild the cache")
        if fingerprint(source) != self.manifest.get("fingerprint"):
            raise ConfigError("teacher_cache", f"{self.directory} was computed on other images than this training "
                                               f"split; rebuild it with python -m kdjax.tools.cache_teacher")

    def logits(self, index) -> np.ndarray:
        """float32 [len(index), num_classes] (top-k caches: rebuilt, the rest of the mass spread evenly)."""
        index = np.asarray(index, np.int64)
        if not self.top_k:
            return np.asarray(self._logits[index], np.float32)
        return rebuild_logits(np.asarray(self._values[index]), np.asarray(self._indices[index]),
                              np.asarray(self._lse[index]), self.num_classes)

    def complete(self, batch: dict, key: str, keep_index: bool = False) -> dict:
        """A batch from an `IndexedRecords` pipeline plus the cached logits of its records under `key`."""
        batch = dict(batch)
        if "index" not in batch:
            raise RuntimeError("training batches carry no 'index': the data pipeline must batch the records' "
                               "'index' key (kdjax/data/pipeline.py::_stack)")
        index = np.asarray(batch["index"] if keep_index else batch.pop("index"), np.int64)
        if not np.array_equal(self.labels[index], batch["label"]):
            raise ConfigError("teacher_cache", f"the labels in {self.directory} differ from the training data's; "
                                               f"rebuild the cache with python -m kdjax.tools.cache_teacher")
        batch[key] = self.logits(index)
        return batch


def rebuild_logits(values, indices, lse, num_classes: int) -> np.ndarray:
    values, lse = np.asarray(values, np.float32), np.asarray(lse, np.float32)
    k = values.shape[-1]
    out = np.empty(values.shape[:-1] + (num_classes,), np.float32)
    if k < num_classes:
        kept = np.exp(values - lse[..., None]).sum(-1)
        rest = np.maximum(1.0 - kept, 1e-12) / (num_classes - k)
        out[...] = (np.log(rest) + lse)[..., None]
    np.put_along_axis(out, np.asarray(indices, np.int64), values, axis=-1)
    return out
