"""A whole PaddleClas distillation YAML → a kdjax config (`base_config()` with every translated field set).

Sections: Global, AMP, Arch, Loss, Optimizer, DataLoader, Metric, Infer, plus `kdjax` for translation options
(`-o kdjax.cards=4`: the number of devices PaddleClas' per-device batch sizes were written for). Any other section,
and every field kdjax cannot follow exactly, is refused with its YAML path (YamlError). What kdjax does differently
but equivalently, or ignores because it does not change what is trained, is collected as notes; `describe` prints
them with the translated config.
"""

import os
from typing import List, Sequence

import ml_collections

from kdjax.config.defaults import base_config, model_entry
from kdjax.config.paddleclas.arch import translate_arch
from kdjax.config.paddleclas.context import Ctx, YamlError, get
from kdjax.config.paddleclas.data import dataset_label, translate_data
from kdjax.config.paddleclas.losses import ModelInfo, translate_eval, translate_train
from kdjax.config.paddleclas.optim import translate_optimizer
from kdjax.config.paddleclas.yaml_io import apply_overrides, load_yaml

SECTIONS = ("Global", "AMP", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer", "kdjax")
_GLOBAL_NOTED = {
    "output_dir": "kdjax writes everything under --workdir",
    "device": "kdjax runs on the devices JAX finds",
    "use_gpu": "kdjax runs on the devices JAX finds",
    "save_interval": "kdjax checkpoints every train.checkpoint_every_steps steps and at the end (newest "
                     "train.keep_checkpoints kept) and keeps the best model by top-1 in WORKDIR/best",
    "use_visualdl": "kdjax writes TensorBoard events (WORKDIR/tensorboard) and metrics.jsonl",
    "save_inference_dir": "kdjax exports to WORKDIR/export (python -m kdjax.export for others)",
    "to_static": "kdjax always compiles with XLA",
    "start_eval_epoch": "kdjax evaluates every train.eval_every_epochs from the start (evaluation does not change "
                        "training)",
    "pdx_model_name": "not used by kdjax",
    "uniform_output_enabled": "not used by kdjax",
}
_GLOBAL_MAPPED = ("epochs", "eval_interval", "eval_during_train", "print_batch_step", "image_shape", "class_num",
                  "pretrained_model", "checkpoints", "use_dali", "use_multilabel", "eval_mode", "seed",
                  "update_freq")


def _global(ctx: Ctx, g) -> dict:
    g = ctx.mapping(g, "Global")
    ctx.only(g, "Global", _GLOBAL_MAPPED + tuple(_GLOBAL_NOTED))
    for key, why in _GLOBAL_NOTED.items():
        if g.get(key) is not None:
            ctx.note(f"Global.{key}", why)
    if get(g, "pretrained_model") is not None:
        ctx.refuse("Global.pretrained_model", "loading a whole DistillationModel checkpoint is not translated; give "
                                              "each model's weights (Arch.models.N.<name>.pretrained, or "
                                              "--config.models.<name>.init=PATH)")
    if get(g, "checkpoints") is not None:
        ctx.refuse("Global.checkpoints", "kdjax resumes from the newest checkpoint in --workdir by itself; set it null")
    for key, why in (("use_dali", "DALI input is not translated"), ("use_multilabel", "multi-label training (sigmoid "
                     "outputs, multi-hot labels, mA) is not supported by kdjax")):
        if get(g, key, False):
            ctx.refuse(f"Global.{key}", why)
    if get(g, "eval_mode", "classification") != "classification":
        ctx.refuse("Global.eval_mode", "kdjax evaluates classification (top-1 / top-5)")
    if get(g, "update_freq", 1) != 1:
        ctx.refuse("Global.update_freq", "gradient accumulation over loader steps is not translated (kdjax's "
                                         "train.grad_accum_steps splits one batch instead)")
    if g.get("epochs") is None:
        ctx.refuse("Global.epochs", "missing")
    out = dict(epochs=ctx.number(g["epochs"], "Global.epochs", positive=True))
    out["eval_every_epochs"] = ctx.number(get(g, "eval_interval", 1), "Global.eval_interval", positive=True)
    if get(g, "eval_during_train", True) is False:
        out["eval_every_epochs"] = out["epochs"]
        ctx.note("Global.eval_during_train", "False: kdjax evaluates once, at the end")
    if get(g, "print_batch_step") is not None:
        out["log_every_steps"] = ctx.number(g["print_batch_step"], "Global.print_batch_step", integer=True,
                                            positive=True)
    if get(g, "seed") is not None:
        out["seed"] = ctx.number(g["seed"], "Global.seed", integer=True)
    out["image_shape"] = get(g, "image_shape")
    out["class_num"] = get(g, "class_num")
    return out


def _amp(ctx: Ctx, amp):
    amp = ctx.mapping(amp, "AMP")
    ctx.only(amp, "AMP", ("use_amp", "use_fp16_test", "scale_loss", "use_dynamic_loss_scaling", "use_promote",
                          "level"))
    if get(amp, "use_amp", bool(amp)):
        ctx.note("AMP.use_amp", "True (float16 mixed precision): kdjax trains in float32 here; "
                                "--config.precision=bfloat16 is kdjax's mixed precision")


def _metric(ctx: Ctx, metric):
    metric = ctx.mapping(metric, "Metric")
    ctx.only(metric, "Metric", ("Train", "Eval"))
    for split in ("Train", "Eval"):
        items = metric.get(split) or []
        for i, item in enumerate(items if isinstance(items, list) else []):
            name, kw = ctx.one_entry(item, f"Metric.{split}.{i}")
            path = f"Metric.{split}.{i}.{name}"
            if name not in ("TopkAcc", "DistillationTopkAcc"):
                ctx.refuse(path, "kdjax reports top-1 / top-5 of every model (train: top1/<model>, eval: "
                                 "<model>/top1, <model>/top5); no other metric is translated")
            topk = kw.get("topk", [1, 5])
            topk = [topk] if isinstance(topk, int) else topk
            if not set(topk) <= {1, 5}:
                ctx.refuse(join_path(path, "topk"), f"{topk}: kdjax reports top-1 and top-5")
    if metric:
        ctx.note("Metric", "kdjax logs top1/<model> per training step and <model>/top1, <model>/top5 per evaluation "
                           "for every model")


def join_path(a, b):
    return f"{a}.{b}"


def _kdjax_options(ctx: Ctx, opts) -> dict:
    opts = ctx.mapping(opts, "kdjax")
    ctx.only(opts, "kdjax", ("cards",), "kdjax translation options: cards (devices the per-device batch sizes were "
                                        "written for)")
    return dict(cards=ctx.number(get(opts, "cards", 1), "kdjax.cards", integer=True, positive=True))


def translate(yaml_config: dict, yaml_file: str = "", overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The kdjax config of a parsed PaddleClas YAML (overrides already applied); raises YamlError."""
    ctx = Ctx(yaml_file)
    unknown = [k for k, v in yaml_config.items() if k not in SECTIONS and v is not None]
    if unknown:
        ctx.refuse(unknown[0], f"section not translated (translated: {', '.join(SECTIONS[:-1])})")
    opts = _kdjax_options(ctx, yaml_config.get("kdjax"))
    g = _global(ctx, yaml_config.get("Global"))
    _amp(ctx, yaml_config.get("AMP"))
    arch = translate_arch(ctx, yaml_config.get("Arch"))
    info = ModelInfo(frozen={n: m.frozen for n, m in arch.models.items()}, afd=arch.afd)
    loss = ctx.mapping(yaml_config.get("Loss"), "Loss")
    ctx.only(loss, "Loss", ("Train", "Eval"))
    train_losses = translate_train(ctx, loss.get("Train"), "Loss.Train", info)
    translate_eval(ctx, loss.get("Eval"))
    optim = translate_optimizer(ctx, yaml_config.get("Optimizer"), g["epochs"])
    data = translate_data(ctx, yaml_config.get("DataLoader"), opts["cards"])
    _metric(ctx, yaml_config.get("Metric"))
    if yaml_config.get("Infer") is not None:
        ctx.note("Infer", "not used: python -m kdjax.infer preprocesses with the export's input size, mean and std")

    # each PaddleClas model gets its own class_num (1000 when unset; Arch.class_num is only a YAML anchor)
    per_model = {n: m.num_classes or 1000 for n, m in arch.models.items()}
    num_classes = min(per_model.values())
    if not any(m.num_classes for m in arch.models.values()):
        ctx.note("Arch.models", "no model sets class_num: 1000 classes each, as in PaddleClas")
    if g["class_num"] is not None and g["class_num"] != num_classes:
        ctx.note("Global.class_num", f"not read by PaddleClas' DistillationModel (each model has its own class_num; "
                                     f"kdjax uses {num_classes})")
    shape = g["image_shape"]
    if shape is not None and list(shape) != [3, data["image_size"], data["image_size"]]:
        ctx.refuse("Global.image_shape", f"{shape} differs from the training crop {data['image_size']} "
                                         f"(kdjax's export input size is [3, crop, crop])")

    c = base_config()
    with c.unlocked():
        c.seed = int(g.get("seed", c.seed))
        d = c.data
        d.name = dataset_label(data["root"])
        d.source, d.root = "list", data["root"]
        d.train_list, d.test_list = data["train_list"], data["test_list"]
        d.num_classes = int(num_classes)
        d.mean, d.std = data["mean"], data["std"]
        d.augment, d.image_size = "imagenet", int(data["image_size"])
        d.eval_crop_ratio, d.crop_scale = float(data["eval_crop_ratio"]), data["crop_scale"]
        d.interpolation = data["interpolation"]  # the transform_ops' resize filter (both splits: one)
        for name, m in arch.models.items():
            kwargs = dict(m.kwargs)
            if per_model[name] != num_classes:
                kwargs["num_classes"] = per_model[name]
            c.models[name] = model_entry(m.arch, frozen=m.frozen, init=m.init, capture=m.capture, **kwargs)
        counts = {}
        metric_keys = {}
        for o in train_losses:
            counts[o.kind] = counts.get(o.kind, 0) + 1
            name = o.kind if counts[o.kind] == 1 else f"{o.kind}_{counts[o.kind]}"
            e = dict(o.entry)
            entry = ml_collections.ConfigDict(dict(type=e.pop("type"), weight=float(e.pop("weight")),
                                                   key=e.pop("key", "logits"), params=dict(e.pop("params"))))
            for k in ("pairs", "models", "s_keys", "t_keys"):
                if k in e:
                    entry[k] = tuple(tuple(v) if isinstance(v, list) else v for v in e.pop(k))
            for k in ("s_key", "t_key"):
                if k in e:
                    entry[k] = e.pop(k)
            c.losses[name] = entry
            units = [tuple(p) for p in o.entry.get("pairs", [])] or [(m,) for m in o.entry.get("models", [])]
            metric_keys[name] = tuple(("-".join(u), tuple(k)) for u, k in zip(units, o.keys))  # (unit, keys)
            ctx.source(f"losses.{name}", o.path)
        c.export_model = arch.export_model
        t = c.train
        t.batch_size, t.eval_batch_size = int(data["batch_size"]), int(data["eval_batch_size"])
        t.epochs, t.eval_every_epochs = float(g["epochs"]), float(g["eval_every_epochs"])
        if "log_every_steps" in g:
            t.log_every_steps = int(g["log_every_steps"])
        c.optim.update(optim)
        # a model a user sets to init='train' is trained first with this YAML's own recipe
        c.pretrain.epochs, c.pretrain.batch_size = t.epochs, t.batch_size
        c.pretrain.optim.update(optim)
        c.metric_names = "paddleclas"
        c.paddleclas = ml_collections.ConfigDict(dict(
            yaml=os.path.abspath(yaml_file) if yaml_file else "", overrides=tuple(overrides),
            notes=tuple(ctx.notes), metric_keys=metric_keys))
        for f, path in (("train.epochs", "Global.epochs"), ("train.eval_every_epochs", "Global.eval_interval"),
                        ("optim", "Optimizer"), ("data.num_classes", "Arch.models.N.class_num")):
            ctx.source(f, path)
        c.paddleclas.sources = tuple(sorted(ctx.sources.items()))  # (kdjax field, YAML path)
    return c


def translate_file(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path` (PaddleClas' reading rules), apply `-o` overrides, translate."""
    if not os.path.isfile(path):
        raise YamlError(path, "(file)", "does not exist")
    config = apply_overrides(load_yaml(path), overrides, path)
    return translate(config, path, overrides)


def retranslate(config, extra_overrides: Sequence[str], config_overrides=None) -> ml_collections.ConfigDict:
    """`config` (a translated YAML) translated again with more `-o` overrides appended, then the command line's
    `--config.FIELD=VALUE` overrides (`config_overrides`, flattened) applied on top, as they were the first time."""
    pc = config.get("paddleclas") if hasattr(config, "get") else None
    if not pc or not pc.get("yaml"):
        from kdjax.errors import ConfigError

        raise ConfigError("", "-o / --paddleclas_override applies to a PaddleClas YAML "
                              "(--config=configs/paddleclas.py:PATH.yaml)")
    new = translate_file(pc.yaml, list(pc.overrides) + list(extra_overrides))
    if config_overrides:
        new.update_from_flattened_dict(dict(config_overrides))
    return new


def notes_of(config) -> List[str]:
    pc = config.get("paddleclas") if hasattr(config, "get") else None
    return list(pc.notes) if pc else []
