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
teacher outputs other than logits.
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
    if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > VERSION:
        raise ConfigError(field, f"{path} is not a kdjax teacher cache of version <= {VERSION}")
    return manifest


def check(config) -> Optional[str]:
    """The name of the model whose logits `config.teacher_cache` supplies in this config, or None.

    None also for the phase that trains that model itself (init='train' pre-training). Raises a ConfigError
    naming the field when the cache cannot stand in for the live teacher.
    """
    directory = config.get("teacher_cache")
    if not directory:
        return None
    manifest = read_manifest(directory)
    name = manifest["model"]
    if name not in config.models:
        raise ConfigError("teacher_cache", f"{directory} holds logits of model {name!r}, which is not one of the "
                                           f"models ({', '.join(config.models)})")
    m = config.models[name]
    if not m.get("frozen"):
        if len(config.models) == 1 and config.export_model == name:
            return None  # pre-training the teacher itself: it must run
        raise ConfigError(f"models.{name}.frozen", f"teacher_cache holds logits of {name}, so {name} must be a "
                                                   f"frozen model; a trained model's outputs change every step")
    if m.get("train_mode"):
        raise ConfigError(f"models.{name}.train_mode", f"{name} runs in training mode (batch statistics), so its "
                                                       f"logits depend on the batch and cannot be cached; drop one")
    if m.arch != manifest["arch"]:
        raise ConfigError(f"models.{name}.arch", f"{m.arch!r}, but the cache in {directory} was computed by "
                                                 f"{manifest['arch']!r}")
    from kdjax.data.augment import canonical_augment

    data = config.data
    if canonical_augment(str(data.get("augment", "none"))) != "none":
        raise ConfigError("data.augment", f"{data.augment!r}: a teacher cache holds one view of each image, so "
                                          f"teacher_cache needs data.augment='none' (or drop teacher_cache)")
    for field in ("mixup_alpha", "cutmix_alpha"):
        if float(data.get(field, 0.0) or 0.0) > 0:
            raise ConfigError(f"data.{field}", "mixes images, so cached teacher logits would not match; set it to 0 "
                                               "or drop teacher_cache")
    for field in ("unlabeled_list", "unlabeled_split"):
        if data.get(field):
            raise ConfigError(f"data.{field}", "SSLD unlabeled images are not in the teacher cache; drop one of "
                                               "them")
    _check_losses(config, name)
    wanted = data_identity(data)
    if manifest.get("data") != wanted:
        diff = sorted(k for k in wanted if wanted[k] != (manifest.get("data") or {}).get(k))
        raise ConfigError(f"data.{diff[0]}" if diff else "teacher_cache",
                          f"the cache in {directory} was computed on other data (differs in: {', '.join(diff)}); "
                          f"rebuild it with python -m kdjax.tools.cache_teacher")
    if config.get("precision", "float32") != manifest.get("precision", "float32"):
        raise ConfigError("precision", f"{config.precision!r}, but the cache was computed in "
                                       f"{manifest.get('precision')!r}; rebuild it or match the precision")
    return name


def _check_losses(config, name: str):
    from kdjax.losses.entries import input_keys, parse_entries

    names = list(config.losses)
    for lname, entry in zip(names, parse_entries(list(config.losses.values()))):
        for unit in entry.units:
            for side, model in enumerate(unit):
                if model != name:
                    continue
                keys = [k for k in input_keys(entry, side) if k != "logits"]
                if keys:
                    raise ConfigError(f"losses.{lname}.{entry.key_fields[side]}",
                                      f"reads {name}'s {keys[0]!r}, but a teacher cache holds logits only; drop "
                                      f"teacher_cache to run the teacher live")


class TeacherCache:
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
