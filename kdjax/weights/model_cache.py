"""A model trained first (`init='train'`) is trained once: its export is kept in a cache keyed by everything that
decides its weights, and any later run whose model has the same identity reuses it instead of training it again.

Identity (kdjax/weights/model_cache.py::identity): the arch and its kwargs, the classes, input shape and
normalisation (computed from the data when data.mean/std are empty), the training data (source, paths made absolute,
split, limit, augmentation, mixing, the number of records, the source's own description and its content fingerprint), the pretrain recipe (`config.pretrain`: epochs, batch size, optimizer),
`seed`, `precision`, `train.grad_accum_steps` and the kdjax version. Anything else differing means another key, so
a cached model is never used for a run it does not fit (change the seed or `data.train_limit`: retrained).

Where: `$KDJAX_CACHE/models/<key>/` (an export directory plus `identity.json`); KDJAX_CACHE defaults to
`$XDG_CACHE_HOME/kdjax` or `~/.cache/kdjax`; `KDJAX_CACHE=off` turns the cache off. A reused model is copied into
the run's `pretrain/<name>/export`, so the workdir stays self-contained. Concurrency: two runs training the same model
both train it; each publishes by renaming a complete copy into place, the first rename wins and the other keeps its
own copy (rename is atomic, so a reader never sees half a model). `--config.models.<name>.init=PATH` bypasses it.
"""

import hashlib
import json
import os
import shutil
import tempfile
from typing import Optional

from kdjax.runtime.cache_dir import cache_root  # noqa: F401  (also this module's API: tests, tools)

IDENTITY_FILE = "identity.json"
_DATA_FIELDS = ("name", "source", "tfds_data_dir", "data_dir", "train_split", "root", "train_list", "unlabeled_list",
                "unlabeled_split", "unlabeled_ratio", "num_classes", "train_limit", "augment", "image_size",
                "crop_scale", "mixup_alpha", "cutmix_alpha", "skip_bad_images", "label_names_file", "interpolation")
_PATH_FIELDS = ("tfds_data_dir", "data_dir", "root", "train_list", "unlabeled_list", "label_names_file")


def _plain(v):
    if hasattr(v, "to_dict"):
        v = v.to_dict()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def identity(config, name: str, info, train_source) -> dict:
    """Everything that decides the weights of `config.models[name]` trained first (see the module docstring)."""
    import kdjax

    m = config.models[name]
    # the normalisation the model is trained with: the data's computed one (config.check) when data.mean/std are empty
    mean = getattr(info, "mean", None) or config.data.mean
    std = getattr(info, "std", None) or config.data.std
    data = {f: _plain(config.data.get(f)) for f in _DATA_FIELDS}
    for f in _PATH_FIELDS:
        if data.get(f):
            data[f] = os.path.abspath(os.path.expanduser(str(data[f])))
    return {
        "arch": m.arch, "kwargs": _plain(m.get("kwargs") or {}),
        "num_classes": int(config.data.get("num_classes") or info.num_classes),
        "image_shape": [int(v) for v in info.image_shape],
        "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "data": data, "train_records": int(len(train_source)), "train_data": _fingerprint(train_source),
        "train_source": str(getattr(train_source, "description", "")),
        "pretrain": _plain(config.pretrain), "seed": int(config.seed), "precision": config.get("precision", "float32"),
        "grad_accum_steps": int(config.train.get("grad_accum_steps", 1) or 1),
        "kdjax_version": getattr(kdjax, "__version__", "0"),
    }


def _fingerprint(source) -> str:
    """The training data's content fingerprint (kdjax/runtime/fingerprint.py: labels + sampled records)."""
    from kdjax.runtime.fingerprint import data_fingerprint

    return data_fingerprint(source)["digest"]


def key_of(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def cached_path(ident: dict) -> Optional[str]:
    root = cache_root()
    return None if root is None else os.path.join(root, "models", key_of(ident))


def _copy_in(source: str, target: str):
    """Copy directory `source` to `target` through a temporary sibling and one rename (never half-written)."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def reuse(config, name: str, info, train_source, export_dir: str) -> bool:
    """Copy the cached model of this identity into `export_dir` when the cache has it (process 0 copies, every
    process returns the same answer). Says so; returns whether it did."""
    import jax

    from kdjax.runtime.distributed import barrier
    from kdjax.weights.export_dir import is_export_dir

    path = cached_path(identity(config, name, info, train_source))
    hit = path is not None and is_export_dir(path)
    if hit and jax.process_index() == 0:
        _copy_in(path, export_dir)
        print(f"models.{name} has init='train': reusing the {name} ({config.models[name].arch}) trained earlier with "
              f"the same identity (arch, data, pretrain recipe, seed, precision) from {path} (KDJAX_CACHE); "
              f"--config.models.{name}.init=PATH uses another, KDJAX_CACHE=off trains it again", flush=True)
    barrier("kdjax_model_cache_reuse")
    return hit


def publish(config, name: str, info, train_source, export_dir: str) -> Optional[str]:
    """Put the freshly trained `export_dir` into the cache under its identity (process 0; the first of concurrent
    publishers wins, the others leave the cache as it is). Returns the cache path, or None (cache off / lost race)."""
    import jax

    from kdjax.weights.export_dir import is_export_dir

    ident = identity(config, name, info, train_source)
    path = cached_path(ident)
    if path is None or jax.process_index() != 0 or is_export_dir(path):
        return None
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        shutil.copytree(export_dir, tmp, dirs_exist_ok=True)
        with open(os.path.join(tmp, IDENTITY_FILE), "w") as f:
            json.dump(ident, f, indent=2, sort_keys=True)
        try:
            os.rename(tmp, path)  # atomic; fails when another run published first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
    except OSError as e:  # a read-only or full cache must not fail the run
        print(f"kdjax: warning: could not keep models.{name} in the cache {parent} ({e}); it will be trained again "
              f"next time", flush=True)
        return None
    print(f"models.{name}: kept in the cache {path} for later runs with the same identity (KDJAX_CACHE)", flush=True)
    return path
