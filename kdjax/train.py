"""`run(config, workdir)`: train any model marked init="train" first, then distill, export, and summarise."""

import copy
import json
import os

import jax
import ml_collections

from kdjax.config.check import check
from kdjax.config.defaults import loss_entry
from kdjax.errors import ConfigError
from kdjax.runtime.distributed import barrier
from kdjax.runtime.workdir import check_workdir, move_aside
from kdjax.weights import model_cache
from kdjax.weights.export_dir import is_export_dir
from kdjax.trainer import Trainer

TRAIN_FIRST = "train"


def pretrain_config(config, name: str):
    """A one-model config that trains `config.models[name]` with ground-truth CE on the same data."""
    c = copy.deepcopy(config)
    with c.unlocked():
        m = c.models[name]
        m.frozen, m.init, m.capture = False, "", ()
        c.models = ml_collections.ConfigDict({name: m})
        c.losses = ml_collections.ConfigDict({"gt_ce": loss_entry("gt_ce", 1.0, models=[name])})
        c.export_model = name
        c.train.epochs = config.pretrain.epochs
        c.train.batch_size = config.pretrain.batch_size
        c.optim = copy.deepcopy(config.pretrain.optim)
    return c


# a pretrain phase trains with these fields of config.pretrain (see pretrain_config): name them in its errors
_PRETRAIN_FIELDS = (("train.batch_size", "pretrain.batch_size"), ("train.epochs", "pretrain.epochs"),
                    ("optim.", "pretrain.optim."))


def _pretrain_phase(config, name, phase_dir, train_src, test_src, info):
    try:
        return Trainer(pretrain_config(config, name), phase_dir, train_src, test_src, info, f"train {name}")
    except ConfigError as e:
        for ours, theirs in _PRETRAIN_FIELDS:
            if e.field.startswith(ours):
                raise ConfigError(theirs + e.field[len(ours):], e.message) from None
        raise


def run(config, workdir: str, restart: bool = False) -> dict:
    """Train and export; returns {"eval": eval dict, "export_dir": path, "pretrained": {name: export dir}}.

    Every check (config, inits, data, model output shapes, devices, workdir) runs before anything is written to
    `workdir`; `restart` then moves an existing run there aside (`WORKDIR.old-DATE`) and starts fresh.
    """
    config = copy.deepcopy(config)
    workdir = os.path.abspath(workdir)
    checked = check(config)
    train_src, test_src, info = checked.train, checked.test, checked.info
    is_main = jax.process_index() == 0

    # Build every phase first: their constructors check captures, output shapes, classes and the device mesh.
    pretrain_phases = {}
    distill_config = copy.deepcopy(config)
    for name, m in config.models.items():
        if m.init != TRAIN_FIRST:
            continue
        phase_dir = os.path.join(workdir, "pretrain", name)
        export_dir = os.path.join(phase_dir, "export")
        pretrain_phases[name] = (_pretrain_phase(config, name, phase_dir, train_src, test_src, info), export_dir)
        with distill_config.unlocked():
            distill_config.models[name].init = export_dir
    phase = Trainer(distill_config, workdir, train_src, test_src, info, "distill")

    if restart and is_main:
        move_aside(workdir)
    barrier("kdjax_workdir_moved")
    os.makedirs(workdir, exist_ok=True)
    check_workdir(config, workdir)
    barrier("kdjax_config_written")

    pretrained = {}
    for name, (pre, export_dir) in pretrain_phases.items():
        if not is_export_dir(export_dir) and not model_cache.reuse(config, name, info, train_src, export_dir):
            if is_main:
                print(f"models.{name} has init='train': training {name} ({config.models[name].arch}) first with "
                      f"ground-truth CE for {config.pretrain.epochs} epochs, then distilling.", flush=True)
            result = pre.train(export_dir)
            if result.get("preempted"):
                return result
            model_cache.publish(config, name, info, train_src, export_dir)  # trained once: kept for later runs
        elif is_main:
            print(f"models.{name}: using the {name} trained earlier in {export_dir}", flush=True)
        with config.unlocked():
            config.models[name].init = export_dir
        pretrained[name] = export_dir

    result = phase.train(os.path.join(workdir, "export"))
    if result.get("preempted"):
        return result
    summary = {"eval": result, "export_dir": os.path.join(workdir, "export"), "pretrained": pretrained,
               "best": result.get("best")}
    if is_main:
        print(summary_table(config, result, summary["export_dir"]), flush=True)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def summary_table(config, result: dict, export_dir: str) -> str:
    rows = [("model", "arch", "role", "top-1", "top-5")]
    for name, m in config.models.items():
        role = "frozen teacher" if m.frozen else ("exported" if name == config.export_model else "trained")
        rows.append((name, m.arch, role, f"{100 * result[f'{name}/top1']:.2f}%", f"{100 * result[f'{name}/top5']:.2f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["", f"Test accuracy on {result['count']} images:"]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    best = result.get("best")
    if best:
        lines.append(f"Best {config.export_model}: top-1 {100 * best['top1']:.2f}% at step {best['step']} "
                     f"→ {best['dir']}")
    lines.append(f"Exported {config.export_model} → {export_dir}")
    lines.append(f"  try: python -m kdjax.infer --export_dir={export_dir} --from_dataset=8")
    return "\n".join(lines)
