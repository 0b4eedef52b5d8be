"""`check`: the one validation entry point. Every route (train, eval, check, sweep, cache_teacher, bench) calls it
before anything is computed or written; every problem is one ConfigError naming the field and the fix.

What it checks, in this order:
  fields     every scalar field's type and range (kdjax/config/fields.py)
  models     archs exist, frozen models have an init, export_model names a model
  losses     each entry through its loss module: type, weight, hyper-parameters, pairs, keys (kdjax/losses/entries.py)
  data       the data source's own fields (its SourceKind.check), then the opened splits: labels against the number
             of classes, the training split against the batch sizes
  inits      every `init` exists and holds the configured arch with these classes (reads spec.json only)
The models' output shapes (captured features exist, logits cover the classes, the losses can pair what they read) are
checked from jax.eval_shape when a Trainer is built (`check_model_outputs`); the workdir's identity by
kdjax/runtime/workdir.py.
"""

import dataclasses
import numbers
from typing import Any, Optional, Sequence

import numpy as np

from kdjax.config.fields import check_fields
from kdjax.errors import ConfigError
from kdjax.models.registry import check_arch

TRAIN_FIRST = "train"  # models.<name>.init value: train that model with ground-truth CE first


@dataclasses.dataclass
class Checked:
    """What `check` opened: the splits asked for (None otherwise), the dataset info and the number of classes."""

    train: Any = None
    test: Any = None
    info: Any = None
    num_classes: int = 0


def check(config, *, splits: Sequence[str] = ("train", "test"), inits: bool = True, channels: int = 0) -> Checked:
    """Every check of `config` (see the module docstring); opens the data `splits` it names ("train", "test") and
    returns them. `splits=()` checks the config alone (e.g. bench's synthetic data); `inits=False` skips the init
    files (bench replaces missing ones by random weights). The test split gets the training split's channels
    (`channels`: an export's, when only the test split is opened); with the training split opened, `info` also
    carries the normalisation (data.mean/std, or computed from the training images) and both splits' identity."""
    check_config(config)
    if not splits:
        return Checked()
    from kdjax.data.preprocess import complete
    from kdjax.data.sources import open_source

    opened, infos = {}, {}
    for split in splits:
        opened[split], infos[split] = open_source(config.data, split, channels=channels)
        channels = channels or int(infos[split].image_shape[-1])
    info = infos[splits[0]]
    if "train" in opened:
        complete(config.data, info, opened["train"], infos.get("test"), log=_log_main)
    check_data(config, info, **opened)
    num_classes = int(config.data.get("num_classes") or info.num_classes)
    if inits:
        check_inits(config, num_classes)
    return Checked(train=opened.get("train"), test=opened.get("test"), info=info, num_classes=num_classes)


def _log_main(message: str):
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool) and np.isfinite(float(value))


def check_config(config):
    """The config alone: fields, models, losses; nothing is opened."""
    check_fields(config)
    _check_optimizers(config)
    if not config.get("models"):
        raise ConfigError("models", "no sub-models configured; add e.g. config.models.Student = model_entry('resnet8x4')")
    for name, m in config.models.items():
        if not m.get("arch"):
            raise ConfigError(f"models.{name}.arch", "missing")
        check_arch(m.arch, f"models.{name}.arch")  # a zoo name, or a user's 'file.py:Class' that resolves
        if m.get("train_mode") and not m.get("frozen"):
            raise ConfigError(f"models.{name}.train_mode", f"only means something for a frozen model (a trained one "
                                                           f"always runs in training mode); set models.{name}.frozen="
                                                           f"True or drop train_mode")
        if m.get("frozen") and not m.get("init"):
            raise ConfigError(f"models.{name}.init",
                              f"models.{name} is frozen but has no init: give a checkpoint (export dir, converted "
                              f"dir, .pdparams or .pth), or init='train' to train it first with ground-truth CE")
    if config.export_model not in config.models:
        raise ConfigError("export_model", f"{config.export_model!r} is not one of the models "
                                          f"({', '.join(config.models)})")
    if not config.get("losses"):
        raise ConfigError("losses", "no losses configured")
    for name, entry in config.losses.items():
        weight = entry.get("weight", 1.0) if hasattr(entry, "get") else 1.0  # (not a dict: _check_losses says so)
        if not _is_number(weight):
            raise ConfigError(f"losses.{name}.weight", f"must be a finite number (e.g. 1.0), got {weight!r}")
    mean, std = config.data.get("mean") or (), config.data.get("std") or ()
    if bool(mean) != bool(std):
        raise ConfigError("data.std" if mean else "data.mean", "set both data.mean and data.std, or neither (then "
                                                               "both are computed from the training images)")
    if len(mean) != len(std):
        raise ConfigError("data.std", "data.mean and data.std must have one value per channel")
    from kdjax.data.sources import check_data_config

    check_data_config(config.data)  # each data source's own fields
    check_teacher_cache(config)
    _check_losses(config)
    check_accumulation(config)


def _check_optimizers(config):
    """Rules between optimizer fields (DOT: optim.delta set, momentum ± delta >= 0, no Nesterov/clipping)."""
    from kdjax.optim import check_optimizer

    check_optimizer(config.optim, "optim")
    if config.get("pretrain") and config.pretrain.get("optim"):
        check_optimizer(config.pretrain.optim, "pretrain.optim")


def loss_field(config, field: str) -> str:
    """`losses[1].pairs` (the loss package numbers entries) → `losses.dkd.pairs` (what users override)."""
    if field.startswith("losses["):
        names = list(config.losses)
        index = int(field[len("losses["):field.index("]")])
        if 0 <= index < len(names):
            return f"losses.{names[index]}" + field[field.index("]") + 1:]
    return field


def _renamed(config, e: ConfigError) -> ConfigError:
    message = getattr(e, "message", None) or str(e).split(": ", 1)[-1]
    return ConfigError(loss_field(config, e.field), message)


def _check_losses(config):
    from kdjax.losses import validate_losses

    captured = {n: set(m.get("capture", []) or []) | {"logits"} for n, m in config.models.items()}
    frozen = {n: bool(m.get("frozen")) for n, m in config.models.items()}
    try:
        validate_losses(list(config.losses.values()), list(config.models), captured, frozen)
    except ConfigError as e:  # the registry numbers entries; users address them by name
        raise _renamed(config, e) from None


def check_accumulation(config):
    """train.grad_accum_steps > 1 splits each batch into micro-batches whose gradients are averaged: exact only for
    losses that are a mean of per-sample terms (`LossSpec.separable`, declared in each loss's module). Any other
    entry, and SSLD's labeled-rows-only CE of a model trained first, is refused."""
    accum = int(config.train.get("grad_accum_steps", 1) or 1)
    if accum <= 1:
        return
    from kdjax.losses.entries import parse_entries
    from kdjax.losses.registry import BatchKind, is_separable

    masked = bool(config.data.get("unlabeled_list") or config.data.get("unlabeled_split"))
    batch = BatchKind(label_mask=masked)
    names = list(config.losses)
    for entry in parse_entries(list(config.losses.values())):
        if not is_separable(entry, batch):
            why = ""
            if entry.type == "gt_ce" and entry.params.get("reduction") == "sum":
                why = " with reduction='sum'"
            elif entry.type in ("gt_ce", "deit") and masked:
                why = " on SSLD batches (its CE is a mean over the labeled rows only)"
            elif entry.spec.separable is None:
                why = (" declares no `separable` in its LossSpec and so counts as relating the samples of a batch:"
                       " it")
            raise ConfigError(f"losses.{names[entry.index]}",
                              f"'{entry.type}'{why} is not a mean of per-sample terms, so train.grad_accum_steps="
                              f"{accum} would change its gradient (micro-batches of {config.train.batch_size // accum}"
                              f" instead of the batch of {config.train.batch_size}); set train.grad_accum_steps=1 "
                              f"(more devices, mesh.fsdp or a smaller train.batch_size fit memory instead)")
    if masked and any(m.get("init") == TRAIN_FIRST for m in config.models.values()):
        raise ConfigError("train.grad_accum_steps",
                          f"models trained first (init='train') learn with CE over the labeled rows of SSLD batches, "
                          f"which micro-batches of train.grad_accum_steps={accum} would change; set it to 1, or "
                          f"train those models separately")


def check_inits(config, num_classes: int):
    """Every configured `init` (other than 'train') exists and holds this arch with this many classes, read from
    its spec.json only (`num_classes`: what the models get from the data unless their kwargs say otherwise)."""
    from kdjax.weights.init import check_init_path

    for name, m in config.models.items():
        if m.get("init") and m.init != TRAIN_FIRST:
            check_init_path(name, m, num_classes)


# ---- data ------------------------------------------------------------------------------------------------------

def _max_label(source):
    """Largest label of a source, cheaply: from its label array (IDX, list files) or its metadata (TFDS)."""
    n, s = len(source), source
    for _ in range(6):
        labels = getattr(s, "labels", None)
        if labels is not None and hasattr(labels, "__len__"):
            labels = np.asarray(labels)[:n]
            return int(labels.max()) if len(labels) else None
        if hasattr(s, "labeled"):  # SSLD mixture: the labeled part
            s = s.labeled
            n = len(s)
        elif getattr(s, "num_classes", 0):  # TFDS: the ClassLabel's size
            return int(s.num_classes) - 1
        elif hasattr(s, "_source"):  # LimitedSource / SubstituteBadImages keep the first n records
            s = s._source
        else:
            break
    return None


def check_data(config, info, **splits):
    """Labels fit the number of classes the models get; the training split holds at least one batch."""
    configured = int(config.data.get("num_classes") or 0)
    num_classes = configured or int(info.num_classes)
    for split, source in splits.items():
        top = _max_label(source)
        if top is not None and top >= num_classes:
            where = getattr(source, "description", split)
            if configured:
                raise ConfigError("data.num_classes",
                                  f"is {configured} but the {split} data ({where}) has labels up to {top}; set "
                                  f"data.num_classes={top + 1} (or 0 to take it from the dataset)")
            raise ConfigError("data.num_classes",
                              f"the dataset declares {num_classes} classes but the {split} data ({where}) has "
                              f"labels up to {top}; set data.num_classes={top + 1}")
    train = splits.get("train")
    if train is not None:
        batches = [("train.batch_size", int(config.train.batch_size))]
        if any(m.get("init") == TRAIN_FIRST for m in config.models.values()):
            batches.append(("pretrain.batch_size", int(config.pretrain.batch_size)))
        for field, batch in batches:
            if batch > len(train):
                raise ConfigError(field, f"batch size {batch} is larger than the training data ({len(train)} "
                                         f"examples in {getattr(train, 'description', 'the train split')}); lower "
                                         f"{field} or use more data (data.train_limit)")


# ---- model outputs ---------------------------------------------------------------------------------------------

def check_captures(config, feature_names: dict):
    """Every `capture` name exists in its model (feature_names: model name → names the model records)."""
    for name, m in config.models.items():
        for key in m.get("capture", []) or []:
            if key not in feature_names[name]:
                raise ConfigError(f"models.{name}.capture",
                                  f"{m.arch} records no feature {key!r}; it records: {', '.join(feature_names[name])}")


def _output_shapes(model, sample):
    """{model: {"logits": ShapeDtypeStruct, captured feature: ...}} without running anything."""
    import jax

    def run(x):
        rng = jax.random.PRNGKey(0)
        variables = model.init_variables(rng, x)
        params = {n: variables[n]["params"] for n in model.trainable}
        stats = {n: variables[n]["batch_stats"] for n in model.trainable if "batch_stats" in variables[n]}
        frozen = {n: variables[n] for n in model.frozen}
        outputs, _ = model.apply(params, stats, frozen, x, train=False, rng=rng)
        return outputs

    return jax.eval_shape(run, sample)


def check_model_outputs(config, model, losses, sample, num_classes: int):
    """Captured features exist, every model's logits cover the data's classes, and every loss can pair the
    shapes it reads (e.g. `distance` between blocks of different shapes) — from jax.eval_shape, before compute."""
    check_captures(config, {n: model.feature_names(n, sample) for n in model.names})
    outputs = _output_shapes(model, sample)
    for name, out in outputs.items():
        classes = int(out["logits"].shape[-1])
        if classes < num_classes:
            kwargs = config.models[name].get("kwargs") or {}
            field = f"models.{name}.kwargs.num_classes" if "num_classes" in kwargs else "data.num_classes"
            raise ConfigError(field, f"models.{name} ({config.models[name].arch}) outputs {classes} classes but the "
                                     f"data has {num_classes}; labels >= {classes} would be silently wrong. Give the "
                                     f"model num_classes={num_classes} (or fix data.num_classes)")
    try:
        losses.shape_check(outputs)
        if losses.reads_teachers:  # OFD: the teacher BatchNorms its margins come from
            import jax

            shapes = jax.eval_shape(model.init_variables, jax.random.PRNGKey(0), sample)
            losses.check_teachers({n: shapes[n] for n in model.frozen}, outputs)
    except ConfigError as e:
        raise _renamed(config, e) from None


# ---- teacher cache ---------------------------------------------------------------------------------------------

def check_teacher_cache(config) -> Optional[str]:
    """The name of the model whose logits `config.teacher_cache` supplies in this config, or None.

    None also for the phase that trains that model itself (init='train' pre-training). Raises a ConfigError
    naming the field when the cache cannot stand in for the live teacher.
    """
    directory = config.get("teacher_cache")
    if not directory:
        return None
    from kdjax.data.teacher_cache import data_identity, read_manifest

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
    if manifest.get("format") == "kdjax-replay-cache":
        return _check_replay_cache(config, manifest, directory, name)
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
    _check_cache_losses(config, name)
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


def _check_replay_cache(config, manifest, directory, name: str) -> str:
    """A replay cache (K augmented views, kdjax/data/replay_cache.py) stands in for the teacher under augmentation
    and mixing that match its own; the training split and the resolved recipe are compared when the Trainer opens
    it (ReplayCache.check_source)."""
    from kdjax.data.replay_cache import check_config
    from kdjax.data.teacher_cache import data_identity

    for field in ("unlabeled_list", "unlabeled_split"):
        if config.data.get(field):
            raise ConfigError(f"data.{field}", "SSLD unlabeled images are not in the replay cache; drop one of them")
    _check_cache_losses(config, name)
    wanted, stored = data_identity(config.data), manifest["identity"]["data"]
    if stored != wanted:
        diff = sorted(k for k in wanted if wanted[k] != stored.get(k))
        raise ConfigError(f"data.{diff[0]}" if diff else "teacher_cache",
                          f"the replay cache in {directory} was computed on other data (differs in: "
                          f"{', '.join(diff)}); rebuild it with python -m kdjax.tools.cache_teacher --views=K")
    if config.get("precision", "float32") != manifest.get("precision", "float32"):
        raise ConfigError("precision", f"{config.precision!r}, but the cache was computed in "
                                       f"{manifest.get('precision')!r}; rebuild it or match the precision")
    check_config(config, manifest, directory, name)
    return name


def _check_cache_losses(config, name: str):
    from kdjax.losses.entries import input_keys, parse_entries

    names = list(config.losses)
    for lname, entry in zip(names, parse_entries(list(config.losses.values()))):
        for unit in entry.units:
            for side, model in enumerate(unit):
                if model != name:
                    continue
                if entry.spec.views:
                    raise ConfigError("teacher_cache", f"losses.{lname} ({entry.type}) reads {name} on extra views "
                                                       f"{list(entry.spec.views)} of each image (e.g. mlkd's strong "
                                                       f"view), which a cache does not hold; drop teacher_cache to "
                                                       f"run {name} live")
                keys = [k for k in input_keys(entry, side) if k != "logits"]
                if keys:
                    raise ConfigError(f"losses.{lname}.{entry.key_fields[side]}",
                                      f"reads {name}'s {keys[0]!r}, but a teacher cache holds logits only; drop "
                                      f"teacher_cache to run the teacher live")
