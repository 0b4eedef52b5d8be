"""`run(config, workdir)`: train any model marked init="train" first, then distill, export, and summarise."""

import copy
import json
import os

import jax
import ml_collections

from kdjax.config_check import check_config, check_workdir
from kdjax.config_defaults import loss_entry
from kdjax.data.sources import open_source
from kdjax.errors import ConfigError
from kdjax.export import is_export_dir
from kdjax.phase import Phase

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


def run(config, workdir: str) -> dict:
    """Train and export; returns {"teacher": eval dict or None, "student": eval dict, "export_dir": path}."""
    config = copy.deepcopy(config)
    workdir = os.path.abspath(workdir)
    check_config(config)
    train_src, info = open_source(config.data, "train")
    test_src, _ = open_source(config.data, "test")
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    check_workdir(config, workdir)

    pretrained = {}
    for name, m in config.models.items():
        if m.init != TRAIN_FIRST:
            continue
        phase_dir = os.path.join(workdir, "pretrain", name)
        export_dir = os.path.join(phase_dir, "export")
        if not is_export_dir(export_dir):
            if is_main:
                print(f"models.{name} has init='train': training {name} ({m.arch}) first with ground-truth CE for "
                      f"{config.pretrain.epochs} epochs, then distilling.", flush=True)
            phase = Phase(pretrain_config(config, name), phase_dir, train_src, test_src, info, f"train {name}")
            result = phase.train(export_dir)
            if result.get("preempted"):
                return result
        elif is_main:
            print(f"models.{name}: using the {name} trained earlier in {export_dir}", flush=True)
        with config.unlocked():
            config.models[name].init = export_dir
        pretrained[name] = export_dir

    phase = Phase(config, workdir, train_src, test_src, info, "distill")
    result = phase.train(os.path.join(workdir, "export"))
    if result.get("preempted"):
        return result
    summary = {"eval": result, "export_dir": os.path.join(workdir, "export"), "pretrained": pretrained}
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
    lines.append(f"Exported {config.export_model} → {export_dir}")
    lines.append(f"  try: python -m kdjax.infer --export_dir={export_dir} --from_dataset=8")
    return "\n".join(lines)


def check_export_model(config):
    if config.export_model not in config.models:
        raise ConfigError("export_model", f"{config.export_model!r} is not a model; models are "
                                          f"{', '.join(config.models)}")
