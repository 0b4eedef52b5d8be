"""Defaults every config file starts from (`base_config()`), and small builders for its entries.

Config files in `configs/` import this module and change what their method needs, big_vision style.
Sub-models and losses are named entries (`config.models.Student.arch`, `config.losses.dkd.weight`) so that
`--config.x.y=v` overrides reach every field.
"""

import ml_collections
from ml_collections import config_dict

FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


def model_entry(arch: str, *, frozen: bool = False, init: str = "", capture=(), **kwargs):
    """One sub-model: PaddleClas' models[i] + freeze_params_list[i] + pretrained + return_patterns."""
    return ml_collections.ConfigDict(dict(arch=arch, frozen=frozen, init=init, capture=list(capture),
                                          kwargs=dict(kwargs)))


def loss_entry(type_: str, weight: float = 1.0, *, pairs=None, models=None, key: str = "logits", **params):
    """One loss: `type` from the loss registry, applied to model pairs (or single models) on output `key`."""
    entry = dict(type=type_, weight=float(weight), key=key, params=dict(params))
    if pairs is not None:
        entry["pairs"] = [list(p) for p in pairs]
    if models is not None:
        entry["models"] = list(models)
    return ml_collections.ConfigDict(entry)


def base_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="fashion_mnist",
        source="auto",            # auto: prepared TFDS dir, else IDX files (Debian package, or data_dir)
        tfds_data_dir=config_dict.placeholder(str),
        data_dir=config_dict.placeholder(str),
        train_split="train",
        test_split="test",
        num_classes=0,            # 0: from the dataset
        train_limit=0,            # > 0: use only the first N training examples (smoke tests)
        test_limit=0,
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
        augment="flip",           # none | flip | crop_flip
        num_threads=2,
        prefetch=4,
    )
    c.models = ml_collections.ConfigDict()
    c.losses = ml_collections.ConfigDict()
    c.export_model = "Student"
    c.train = dict(
        batch_size=128,
        epochs=4.0,
        log_every_steps=50,
        checkpoint_every_steps=500,
        keep_checkpoints=3,
        eval_every_epochs=1.0,
        eval_batch_size=500,
        nonfinite="stop",        # stop | skip: what a NaN/inf loss does (skip drops the update, up to max_skipped)
        max_skipped=10,
    )
    c.optim = dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                   warmup_epochs=0.0, milestones=(), decay_rate=0.1, grad_clip_norm=0.0)
    # Used for any sub-model whose init is "train": it is trained alone with ground-truth CE first.
    c.pretrain = dict(epochs=4.0, batch_size=128,
                      optim=dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_epochs=0.0, milestones=(), decay_rate=0.1,
                                 grad_clip_norm=0.0))
    c.mesh = dict(data=-1)
    c.precision = "float32"     # float32 | bfloat16 (compute); params and losses stay float32
    return c
