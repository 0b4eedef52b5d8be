"""A run's identity: what it computes (the config fields that change the result) and what it is built from (a
content fingerprint of every `init`, of the teacher cache, of the train/test data, and the normalisation computed from
the data). kdjax/runtime/workdir.py records it in WORKDIR/config.json and refuses a workdir holding another run."""

import json
import os

from kdjax.runtime.workdir import IDENTITY_VERSION

# fields that define what a run computes; a workdir holding a run that differs in these is refused
IDENTITY_FIELDS = ("seed", "models", "losses", "export_model", "optim", "pretrain", "precision")
IDENTITY_DATA = ("name", "augment", "mean", "std", "num_classes", "train_limit", "test_limit", "image_size",
                  "crop_scale", "eval_crop_ratio", "mixup_alpha", "cutmix_alpha", "unlabeled_ratio")
IDENTITY_TRAIN = ("batch_size", "epochs")


def identity(config, checked=None) -> dict:
    """What the run computes (config fields) and, given `checked` (config.check's result), what it is built from:
    fingerprints of every init file and of the train/test data selection."""
    d = json.loads(config.to_json())
    out = {k: d.get(k) for k in IDENTITY_FIELDS}
    out["data"] = {k: d["data"].get(k) for k in IDENTITY_DATA}
    if d["data"].get("interpolation", "bilinear") != "bilinear":  # only when set: runs recorded before it stay equal
        out["data"]["interpolation"] = d["data"]["interpolation"]
    if d["data"].get("replayable"):  # only when on, so workdirs written before the field existed still resume
        out["data"]["replayable"] = True
    out["train"] = {k: d["train"].get(k) for k in IDENTITY_TRAIN}
    out["identity_version"] = IDENTITY_VERSION
    if checked is not None:
        out["built_from"] = built_from(config, checked)
        if checked.info is not None:  # the normalisation computed from the data, its classes and channels
            from kdjax.data.preprocess import record

            rec = record(checked.info)
            out["data_stats"] = {k: rec.get(k) for k in ("classes", "channels", "mean", "std", "normalization")}
    return out


def built_from(config, checked) -> dict:
    from kdjax.config.check import TRAIN_FIRST
    from kdjax.runtime.fingerprint import data_fingerprint, init_fingerprint

    out = {}
    for name, m in config.models.items():
        if m.get("init") and m.init != TRAIN_FIRST:
            out[f"models.{name}.init"] = init_fingerprint(m.init)
    cache = config.get("teacher_cache")
    if cache and os.path.isfile(os.path.join(cache, "manifest.json")):
        out["teacher_cache"] = init_fingerprint(os.path.join(cache, "manifest.json"))
    for split in ("train", "test"):
        source = getattr(checked, split, None)
        if source is not None:
            out[f"data.{split}"] = data_fingerprint(source)
    return out
