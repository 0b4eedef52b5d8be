"""`--mode=check`: what a run would train and what it would cost, without training (nothing is written).

Prints the sub-models (parameter counts, frozen, init), the features each captures with their shapes, the loss
entries, the device mesh and the kernels chosen, and from the train step compiled for this mesh — built from shapes
alone, so no weights are loaded — XLA's FLOPs per image and its memory estimate per device, then whether that fits
the devices' free memory (kdjax/runtime/device_memory.py). Missing data or checkpoints are reported, not fatal:
the images' shape then comes from the config (known datasets, else data.image_size) and the weights are random.
A step that would not fit ends the command with a ConfigError naming train.batch_size / train.grad_accum_steps.
"""

import copy
import math
import os
import tempfile

import jax

from kdjax.config.check import TRAIN_FIRST, check_config, check_inits
from kdjax.errors import ConfigError, KdjaxError

KNOWN_SHAPES = {"fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3)}
MISSING_INIT = "<none>"  # stands for a frozen model's missing init while checking
KNOWN_SIZES = {"fashion_mnist": 60000, "mnist": 60000, "cifar10": 50000, "cifar100": 50000, "imagenet2012": 1281167}


def declared_image_shape(config):
    """(H, W, C) of the images as the config declares them: a known dataset's, else data.image_size (224 if 0).
    data.name "" is the default data (Fashion-MNIST) when no location is named either (kdjax/data/sources.py)."""
    name = config.data.name or ("" if any(config.data.get(f) for f in ("data_dir", "root", "tfds_data_dir"))
                                else "fashion_mnist")
    if name in KNOWN_SHAPES and not config.data.get("image_size"):
        return KNOWN_SHAPES[name]
    size = int(config.data.get("image_size") or 224)
    return (size, size, KNOWN_SHAPES.get(name, (0, 0, 3))[2])


def _open_data(config, notes):
    """(train source or None, DatasetInfo): the real data when it opens, else the config's declared shapes."""
    from kdjax.config.check import check as full_check
    from kdjax.data.sources import DatasetInfo

    try:
        checked = full_check(config, splits=("train",), inits=False)  # opens it and checks labels, batch sizes
        return checked.train, checked.info
    except KdjaxError as e:
        notes.append(f"data: not available ({e}); using the config's declared shape "
                     f"{list(declared_image_shape(config))} and {int(config.data.get('num_classes') or 10)} classes")
        classes = int(config.data.get("num_classes") or 10)
        return None, DatasetInfo(classes, None, declared_image_shape(config), "declared by the config")


def _inits(config, num_classes, notes):
    """Report each init; a missing one is replaced by random weights (shapes are all the check needs)."""
    for name, m in config.models.items():
        if not m.get("init") or m.init == MISSING_INIT:
            continue
        if m.init == TRAIN_FIRST:
            notes.append(f"models.{name}: init='train', trained first for {config.pretrain.epochs} epochs with "
                         f"ground-truth CE; random weights here")
            continue
        one = copy.deepcopy(config)
        with one.unlocked():
            one.models = {name: m}
        try:
            check_inits(one, num_classes)
        except KdjaxError as e:
            notes.append(f"models.{name}.init: not usable ({e}); random weights here")


def _count(tree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _shape(s, batch_axis=True) -> str:
    dims = list(s.shape)
    return "[" + ", ".join(["N"] + [str(d) for d in dims[1:]] if batch_axis and dims else [str(d) for d in dims]) + "]"


def report(config, workdir: str = "") -> dict:
    """Everything `--mode=check` prints, as a dict (also printed); raises ConfigError at the end when the train step
    would not fit in device memory."""
    from kdjax import kernels
    from kdjax.config.check import _output_shapes
    from kdjax.runtime import compiled
    from kdjax.tools import lowering, mfu
    from kdjax.runtime.device_memory import MARGIN, check_fits, free_bytes, gib
    from kdjax.steps import LOSS_PARAMS, build_optimizer
    from kdjax.trainer import Trainer

    config = copy.deepcopy(config)
    notes = []
    with config.unlocked():
        for name, m in config.models.items():
            if m.get("frozen") and not m.get("init"):  # training refuses this; the check can still size it
                notes.append(f"models.{name}.init: none given, but {name} is frozen: training needs a checkpoint "
                             f"(export dir, .pdparams or .pth) or init='train'; random weights here")
                m.init = MISSING_INIT
    check_config(config)
    train_src, info = _open_data(config, notes)
    _inits(config, info.num_classes, notes)
    if config.get("teacher_cache") and not os.path.isdir(config.teacher_cache):
        notes.append(f"teacher_cache: {config.teacher_cache} does not exist; the teacher runs in the step here")
        with config.unlocked():
            config.teacher_cache = ""
    trainer = Trainer(config, workdir or tempfile.gettempdir(), train_src, None, info, "check")
    tx, _ = build_optimizer(config.optim, 1, 1)
    num_data = 0
    if trainer.losses.stateful:  # CRD's memory banks: one row per training example
        num_data = len(train_src) if train_src is not None else int(config.data.get("train_limit") or
                                                                     KNOWN_SIZES.get(config.data.name, 0))
        if train_src is None:
            notes.append(f"loss state sized for {num_data} training examples (the config's dataset size)")
    state, frozen = lowering.abstract_state(trainer, tx, num_data)
    outputs = _output_shapes(trainer.model, trainer.sample)
    out = {"notes": notes, "models": {}, "losses": {}, "image_shape": list(info.image_shape),
           "num_classes": info.num_classes, "data": info.description}
    for name, m in config.models.items():
        params = frozen[name]["params"] if m.get("frozen") else state.params[name]
        out["models"][name] = dict(arch=m.arch, params=_count(params), frozen=bool(m.get("frozen")),
                                   init=m.get("init") if m.get("init") not in ("", MISSING_INIT) else "random",
                                   features={k: _shape(v) for k, v in outputs[name].items()},
                                   recordable=trainer.model.feature_names(name, trainer.sample))
    if LOSS_PARAMS in state.params:
        out["loss_params"] = _count(state.params[LOSS_PARAMS])
    from kdjax.losses.entries import parse_entries
    from kdjax.losses.registry import BatchKind, is_separable

    masked = BatchKind(label_mask=bool(config.data.get("unlabeled_list") or config.data.get("unlabeled_split")))
    for name, e in zip(config.losses, parse_entries(list(config.losses.values()))):
        keys = ", ".join(e.s_keys or (e.s_key,))
        if e.spec.arity == "pairs":
            keys = f"{keys} -> {', '.join(e.t_keys or (e.t_key,))}"
        out["losses"][name] = dict(type=e.type, weight=e.weight, units=[list(u) for u in e.units], keys=keys,
                                   params=dict(e.params), separable=is_separable(e, masked))
    par = trainer.parallel
    devices = jax.devices()
    batch = int(config.train.batch_size)
    accum = int(config.train.get("grad_accum_steps", 1) or 1)
    chosen = kernels.select(config.get("kernels", "auto"))
    out["mesh"] = dict(data=par.mesh.shape["data"], fsdp=par.fsdp_size, devices=len(devices),
                       platform=devices[0].platform, device_kind=devices[0].device_kind, batch=batch,
                       batch_per_device=batch // par.data_size, grad_accum_steps=accum,
                       precision=config.get("precision", "float32"),
                       kernels=f"{config.get('kernels', 'auto')} -> {chosen.name} (batch_norm {chosen.batch_norm}, "
                               f"conv {chosen.conv})")
    # XLA:CPU: skip LLVM's optimisation passes; buffer assignment (the memory estimate) and the FLOP count come from
    # the HLO passes before them and are the same (checked on dkd:cifar100: equal figures, 4x faster compile)
    options = {"xla_backend_optimization_level": 0} if devices[0].platform == "cpu" else None
    exe = lowering.lower_train_step(trainer, num_data=num_data).compile(options)
    flops = mfu.step_flops(exe, len(devices))  # cost_analysis (per device program) + oneDNN convolutions
    mem = compiled.memory(exe)
    free, source = free_bytes()
    out["step"] = dict(flops=flops, flops_per_image=flops / batch, memory_per_device=mem.total,
                       arguments=mem.arguments, outputs=mem.outputs, aliased=mem.aliased,
                       temporaries=mem.temporaries, code=mem.code, free_per_device=free, free_source=source)
    print(format_report(out, config), flush=True)
    if free is not None:
        try:
            check_fits(mem, config, arguments_resident=False)
        except ConfigError:
            print(f"DOES NOT FIT: {gib(mem.total)} per device > {int(MARGIN * 100)}% of {gib(free)} free ({source})",
                  flush=True)
            raise
        print(f"fits: {gib(mem.total)} per device <= {int(MARGIN * 100)}% of {gib(free)} free ({source})", flush=True)
    return out


def format_report(r: dict, config) -> str:
    from kdjax.runtime.device_memory import gib

    lines = []
    for note in r["notes"]:
        lines.append(f"note: {note}")
    lines.append(f"data: {r['data']}, images {r['image_shape']}, {r['num_classes']} classes")
    lines.append("models:")
    for name, m in r["models"].items():
        role = "frozen" if m["frozen"] else ("trained, exported" if name == config.export_model else "trained")
        lines.append(f"  {name}: {m['arch']}, {m['params']:,} params, {role}, init {m['init']}")
        for key, shape in m["features"].items():
            lines.append(f"    {key:<14} {shape}")
        others = [k for k in m["recordable"] if k not in m["features"]]
        if others:
            lines.append(f"    (also recordable via capture: {', '.join(others)})")
    if r.get("loss_params"):
        lines.append(f"  loss-side modules (trained, not exported): {r['loss_params']:,} params")
    lines.append("losses:")
    for name, e in r["losses"].items():
        params = ", ".join(f"{k}={v}" for k, v in e["params"].items())
        units = ", ".join("/".join(u) for u in e["units"])
        lines.append(f"  {name}: {e['type']} x{e['weight']:g} on {units} ({e['keys']})"
                     f"{' (' + params + ')' if params else ''}{'' if e['separable'] else ', not per-sample separable'}")
    m = r["mesh"]
    lines.append(f"mesh: data={m['data']} x fsdp={m['fsdp']} over {m['devices']} {m['platform']} device(s) "
                 f"({m['device_kind']}); batch {m['batch']} = {m['batch_per_device']} per device, "
                 f"grad_accum_steps {m['grad_accum_steps']}, precision {m['precision']}, kernels {m['kernels']}")
    s = r["step"]
    lines.append(f"train step (XLA): {s['flops'] / 1e9:,.2f} GFLOP per step, {s['flops_per_image'] / 1e9:,.3f} GFLOP "
                 f"per image")
    lines.append(f"memory per device (XLA estimate): {gib(s['memory_per_device'])} = arguments "
                 f"{gib(s['arguments'])} + outputs {gib(s['outputs'])} - aliased {gib(s['aliased'])} + temporaries "
                 f"{gib(s['temporaries'])} + code {gib(s['code'])}")
    return "\n".join(lines)
