"""Defaults every config file starts from (`base_config()`), and small builders for its entries.

Config files in `configs/` import this module and change what their method needs, big_vision style.
Sub-models and losses are named entries (`config.models.Student.arch`, `config.losses.dkd.weight`) so that
`--config.x.y=v` overrides reach every field.
"""

import ml_collections
from ml_collections import config_dict

def model_entry(arch: str, *, frozen: bool = False, init: str = "", capture=(), train_mode: bool = False, **kwargs):
    """One sub-model: PaddleClas' models[i] + freeze_params_list[i] + pretrained + return_patterns.

    train_mode=True runs a frozen model in training mode during training steps (BatchNorm normalises with the
    batch's statistics; its stored statistics are not updated): the teacher of mdistiller / the authors' OFD."""
    entry = dict(arch=arch, frozen=frozen, init=init, capture=tuple(capture), kwargs=dict(kwargs))
    if train_mode:  # only where set: other configs keep their identity (config.json of existing workdirs)
        entry["train_mode"] = True
    return ml_collections.ConfigDict(entry)


def loss_entry(type_: str, weight: float = 1.0, *, pairs=None, models=None, key: str = "logits", s_key=None,
               t_key=None, s_keys=None, t_keys=None, **params):
    """One loss: `type` from the loss registry, applied to model pairs (or single models) on output `key`.

    `s_key`/`t_key` pick different outputs of the student and teacher (PaddleClas DistillationPairLoss);
    `s_keys`/`t_keys` list several (AFD). Everything else is a hyper-parameter of the loss.
    """
    entry = dict(type=type_, weight=float(weight), key=key, params=dict(params))
    if pairs is not None:
        entry["pairs"] = tuple(tuple(p) for p in pairs)
    if models is not None:
        entry["models"] = tuple(models)
    for name, value in (("s_key", s_key), ("t_key", t_key)):
        if value is not None:
            entry[name] = value
    for name, value in (("s_keys", s_keys), ("t_keys", t_keys)):
        if value is not None:
            entry[name] = tuple(value)
    return ml_collections.ConfigDict(entry)


def base_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="",                  # TFDS name (source=tfds), or a label for list/IDX data; "": fashion_mnist for the
                                  # default data, the folder's name for data_dir/root, the one dataset in tfds_data_dir
        source="auto",            # auto | tfds | list | idx; auto: the data you name (tfds_data_dir, root or
                                  # data_dir: set one); with none set, Debian's Fashion-MNIST (/usr/share/datasets)
        tfds_data_dir=config_dict.placeholder(str),
        data_dir=config_dict.placeholder(str),   # a folder of IDX files
        train_split="train",      # TFDS / IDX split names
        test_split="test",
        root=config_dict.placeholder(str),        # list files: image root (PaddleClas image_root)
        train_list="train_list.txt",              # list files: `relative/path label` per line; relative to root
        test_list="val_list.txt",
        label_names_file=config_dict.placeholder(str),  # one class name per line (`id name` lines work too)
        unlabeled_list=config_dict.placeholder(str),    # SSLD (list files): e.g. train_list_unlabel.txt
        unlabeled_split=config_dict.placeholder(str),   # SSLD (TFDS): a split of unlabeled images
        unlabeled_ratio=0.5,      # SSLD: fraction of training records drawn from the unlabeled data
        num_classes=0,            # 0: from the dataset (list files need it, or label_names_file)
        train_limit=0,            # > 0: use only the first N training examples (smoke tests)
        test_limit=0,
        holdout=0,                # > 0: hold this many training examples out as the validation split (after
                                  # train_limit): training reads the rest, periodic evaluations read them and the
                                  # run keeps its best-validation weights (kdjax/data/holdout.py)
        holdout_seed=0,           # which examples are held out (a fixed permutation; never the run's seed)
        mean=(),                  # per-channel normalisation of [0, 1] pixels; () with std=(): computed from the
        std=(),                   # training images once (logged, recorded in the run and the export)
        channels=0,               # 0: the data's own (grayscale stays 1 channel); 1 or 3: convert every image
        augment="auto",           # auto | none | crop | flip | crop_flip | cifar | imagenet; auto: flip on the
                                  # default Fashion-MNIST, crop (no flip: labels stay valid) on data you name
        image_size=0,             # 0: the images' own size; variable-size images (JPEG lists) need one, e.g. 224
        eval_crop_ratio=0.875,    # eval resize: shorter side to image_size / ratio, then centre crop
        crop_scale=(0.08, 1.0),   # augment=imagenet: random-resized crop area range
        interpolation="bilinear",  # resize filter of the train crop and the eval resize: bilinear | bicubic (PIL's)
        mixup_alpha=0.0,          # > 0: mixup; batches gain "soft_label" float32 [N, num_classes]
        cutmix_alpha=0.0,         # > 0: cutmix (with both: one of them per batch, 50/50)
        replayable=False,         # True: every view drawn per record from (seed, epoch, index), so it can be
                                  # rebuilt exactly (kdjax/data/replay.py; a replay cache implies it)
        skip_bad_images=False,    # True: replace undecodable/missing images by the next good one, and count them
        num_threads=2,
        num_workers=0,            # grain worker processes (0: threads only)
        decode_once_mb=1024,      # PNG/JPEG splits whose decoded images fit this many MB are decoded once into
                                  # memory (0: decode on every read, in a thread pool)
        prefetch=4,
        device_prefetch=2,        # batches a thread keeps transferred to the devices ahead of the step (0: none)
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
        stop_after_steps=0,      # > 0: checkpoint and stop after this many steps in this invocation (time-sliced jobs)
        final_test=True,         # with data.holdout: False evaluates on the validation split only, never the test
                                 # split (hyper-parameter trials); True tests the last and the best-validation weights
        grad_accum_steps=1,      # > 1: split each batch into this many micro-batches, one update (batch > memory)
    )
    c.optim = dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                   warmup_epochs=0.0, milestones=(), decay_rate=0.1, grad_clip_norm=0.0,
                   delta=0.0)  # name="dot" only (kdjax/optim/dot.py): task momentum − delta, distillation + delta
    # Used for any sub-model whose init is "train": it is trained alone with ground-truth CE first.
    c.pretrain = dict(epochs=4.0, batch_size=128,
                      optim=dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_epochs=0.0, milestones=(), decay_rate=0.1,
                                 grad_clip_norm=0.0, delta=0.0))
    # Devices: data × fsdp = all devices (data=-1: the rest). fsdp > 1 shards params, optimizer state and frozen
    # models (arrays of at least fsdp_min_size elements) over that axis; batches split over data and fsdp jointly.
    c.mesh = dict(data=-1, fsdp=1, fsdp_min_size=2 ** 14)
    c.precision = "float32"     # float32 | bfloat16 (compute); params and losses stay float32
    # BatchNorm training pass and convolution VJP (kdjax/kernels/__init__.py): auto = cpu_tuned on XLA:CPU (measured
    # faster there), xla (flax BatchNorm, lax.conv gradients) on GPU/TPU; 'xla' or 'cpu_tuned' force one; 'onednn' =
    # cpu_tuned with oneDNN convolutions (FFI kernels built by install.sh; XLA:CPU only, falls back with a warning)
    c.kernels = "auto"
    # Offline distillation: a directory written by `python -m kdjax.tools.cache_teacher`; the frozen teacher's logits are
    # read from it instead of running the teacher in the train step (needs data.augment='none'; a replay cache,
    # cache_teacher --views=K, serves augmented and mixed training: epoch e replays stored view e mod K).
    c.teacher_cache = ""
    # Loss-term names in metrics.jsonl, TensorBoard and the progress line: "kdjax" (loss/dkd/Student-Teacher) or
    # "paddleclas" (loss_dkd_Student_Teacher, CELoss_Student, ...); see kdjax/config/metric_names.py
    c.metric_names = "kdjax"
    # A replay cache (cache_teacher --views=K) that keeps only the top-k logits is approximate for every loss:
    # refused unless this is True (kdjax/data/replay_cache.py states the error).
    c.teacher_cache_approximate = False
    return c
