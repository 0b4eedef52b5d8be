"""A replay cache: K augmented views per training record, each with its parameters and the teacher's logits on
exactly that view (`python -m kdjax.tools.cache_teacher --views=K`; views are described in kdjax/data/replay.py).

Layout (plain .npy, memory-mapped; row i = record i of the training split as teacher_cache.py defines it):

    manifest.json       format, model/arch/kwargs/init fingerprint, num_classes, count, views, top_k, dtype,
                        identity (data, teacher, recipe, seed, precision) and "max_rest_mass" (top-k caches)
    labels.npy          int32 [N]
    dy.npy dx.npy       int16 [N, K]   crop offset into the zero-padded image
    flip.npy mix.npy    uint8 [N, K]   left-right flip; 0 none, 1 mixup, 2 cutmix
    partner.npy         int32 [N, K]   the record mixed in (itself when not mixing)
    lam.npy             float32 [N, K] share of this record (cutmix: the exact kept area)
    box.npy             int16 [N, K, 4] cutmix box y0, y1, x0, x1
    logits.npy          [N, K, C] in `dtype` (float32 or float16), top_k == 0, or
    topk_values.npy [N, K, k] `dtype`, topk_indices.npy int32 [N, K, k], logsumexp.npy float32 [N, K]

Exactness: top_k=0 with float32 stores the teacher's logits as the step computed them (exact); float16 rounds them
(relative error <= 2^-11; refused like top-k unless accepted). A top-k cache keeps the k largest logits and the log-sum-exp, so the k probabilities at
temperature 1 and the total mass of the rest are exact, but how the rest spreads over the other classes is lost
(rebuilt evenly, teacher_cache.rebuild_logits); every loss then sees approximate teacher outputs, up to
"max_rest_mass" of probability at T=1 and more at higher temperatures. Training refuses such a cache unless
`config.teacher_cache_approximate=True`.
"""

import json
import os

import numpy as np

from kdjax.data.replay import PARAM_FIELDS
from kdjax.data.teacher_cache import rebuild_logits
from kdjax.errors import ConfigError

FORMAT = "kdjax-replay-cache"
VERSION = 1
PARAM_DTYPES = {"dy": np.int16, "dx": np.int16, "flip": np.uint8, "mix": np.uint8, "partner": np.int32,
                "lam": np.float32, "box": np.int16}
DTYPES = {"float32": np.float32, "float16": np.float16}


def is_replay(manifest: dict) -> bool:
    return manifest.get("format") == FORMAT


def param_shape(field: str, n: int, k: int) -> tuple:
    return (n, k, 4) if field == "box" else (n, k)


class ReplayCache:
    def __init__(self, directory: str, manifest: dict):
        self.directory, self.manifest = os.path.abspath(os.path.expanduser(directory)), manifest
        if int(manifest.get("version", 0)) > VERSION:
            raise ConfigError("teacher_cache", f"{directory} is a replay cache of version {manifest.get('version')}; "
                                               f"this kdjax reads version <= {VERSION}")
        if int(manifest.get("views_done", 0)) < int(manifest["views"]):
            raise ConfigError("teacher_cache", f"{directory} holds {manifest.get('views_done')} of its "
                                               f"{manifest['views']} views: run the same cache_teacher command to "
                                               f"finish it")
        self.model, self.count = manifest["model"], int(manifest["count"])
        self.views, self.num_classes = int(manifest["views"]), int(manifest["num_classes"])
        self.top_k = int(manifest.get("top_k", 0))
        load = lambda f: np.load(os.path.join(self.directory, f + ".npy"), mmap_mode="r")  # noqa: E731
        self.labels = load("labels")
        self.params = {k: load(k) for k in PARAM_FIELDS}
        if self.top_k:
            self._values, self._indices, self._lse = load("topk_values"), load("topk_indices"), load("logsumexp")
        else:
            self._logits = load("logits")

    def check_source(self, source):
        from kdjax.data.replay import recipe_from
        from kdjax.runtime.fingerprint import data_fingerprint

        if len(source) != self.count:
            raise ConfigError("teacher_cache", f"{self.directory} holds {self.count} rows but the training split "
                                               f"has {len(source)} records; rebuild the cache")
        if data_fingerprint(source) != self.manifest["identity"]["data_fingerprint"]:
            raise ConfigError("teacher_cache", f"{self.directory} was computed on other images than this training "
                                               f"split; rebuild it with python -m kdjax.tools.cache_teacher --views=K")
        recipe = recipe_from(source.options, source.image_shape).describe()
        stored = self.manifest["identity"]["recipe"]
        if recipe != stored:
            diff = sorted(k for k in recipe if recipe[k] != stored.get(k))
            raise ConfigError("data.augment", f"the replay cache {self.directory} holds views of another "
                                              f"augmentation (differs in {', '.join(diff)}: cache {stored}, config "
                                              f"{recipe}); rebuild it or match data.augment/mixup_alpha/cutmix_alpha")

    def logits(self, index, view) -> np.ndarray:
        index, view = np.asarray(index, np.int64), np.asarray(view, np.int64)
        if not self.top_k:
            return np.asarray(self._logits[index, view], np.float32)
        return rebuild_logits(np.asarray(self._values[index, view], np.float32),
                              np.asarray(self._indices[index, view]), np.asarray(self._lse[index, view]),
                              self.num_classes)

    def complete(self, batch: dict, key: str, keep_index: bool = False) -> dict:
        """A replay batch (it carries "index" and "view") plus the stored logits of exactly those views."""
        batch = dict(batch)
        index = np.asarray(batch["index"] if keep_index else batch.pop("index"), np.int64)
        view = np.asarray(batch.pop("view"), np.int64)
        if not np.array_equal(self.labels[index], batch["label"]):
            raise ConfigError("teacher_cache", f"the labels in {self.directory} differ from the training data's; "
                                               f"rebuild the cache with python -m kdjax.tools.cache_teacher")
        batch[key] = self.logits(index, view)
        return batch


def write_manifest(directory: str, manifest: dict):
    tmp = os.path.join(directory, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(directory, "manifest.json"))


def check_config(config, manifest: dict, directory: str, name: str):
    """What config.check can compare without opening the data: seed, mixing, teacher weights, top-k acceptance."""
    ident = manifest["identity"]
    if int(config.seed) != int(ident["seed"]):
        raise ConfigError("seed", f"{config.seed}, but the replay cache {directory} drew its views with seed "
                                  f"{ident['seed']}; use that seed or rebuild the cache")
    for field in ("mixup_alpha", "cutmix_alpha"):
        if float(config.data.get(field, 0.0) or 0.0) != float(ident["recipe"][field]):
            raise ConfigError(f"data.{field}", f"{config.data.get(field)}, but the replay cache {directory} was "
                                               f"built with {ident['recipe'][field]}; match it or rebuild the cache")
    init = config.models[name].get("init") or ""
    if init and init != "train" and ident.get("teacher_init"):
        from kdjax.runtime.fingerprint import init_fingerprint

        if init_fingerprint(init) != ident["teacher_init"]:
            raise ConfigError(f"models.{name}.init", f"{init} holds other weights than the teacher the replay cache "
                                                     f"{directory} was built with; rebuild the cache")
    top_k = int(manifest.get("top_k", 0))
    if manifest.get("dtype", "float32") != "float32" and not config.get("teacher_cache_approximate", False):
        raise ConfigError("teacher_cache_approximate", f"the replay cache {directory} stores its logits in "
                                                       f"{manifest['dtype']} (relative error up to 2^-11), so losses "
                                                       f"see rounded teacher outputs; set teacher_cache_approximate="
                                                       f"True to accept that, or rebuild with --dtype=float32")
    if top_k and not config.get("teacher_cache_approximate", False):
        raise ConfigError("teacher_cache_approximate", f"the replay cache {directory} keeps the top {top_k} of "
                                                       f"{manifest['num_classes']} logits per view (up to "
                                                       f"{manifest.get('max_rest_mass', 1.0):.3g} of the probability "
                                                       f"mass is rebuilt evenly), so every loss sees approximate "
                                                       f"teacher outputs; set teacher_cache_approximate=True to "
                                                       f"accept that, or rebuild with --top_k=0")
