"""`run(config, workdir)`: train any model marked init="train" first, then distill, export, and summarise."""

import copy
import json
import os
from typing import Optional

import jax
import ml_collections

from kdjax.config.check import check
from kdjax.config.defaults import loss_entry
from kdjax.config.identity import identity
from kdjax.data.preprocess import record
from kdjax.errors import CheckpointError, ConfigError, KdjaxError
from kdjax.runtime.distributed import barrier
from kdjax.runtime.lock import hold_workdir
from kdjax.runtime.oserrors import describe
from kdjax.runtime.workdir import (SUMMARY_FILE, check_workdir, check_workdir_path, compare_workdir, move_aside,
                                   write_summary)
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


def _pretrain_error(e: ConfigError) -> ConfigError:
    """A pretrain phase's error, its field renamed to the config.pretrain field that set it."""
    for ours, theirs in _PRETRAIN_FIELDS:
        if e.field.startswith(ours):
            return ConfigError(theirs + e.field[len(ours):], e.message)
    return e


def _pretrain_phase(config, name, phase_dir, train_src, test_src, info):
    try:
        return Trainer(pretrain_config(config, name), phase_dir, train_src, test_src, info, f"train {name}")
    except ConfigError as e:
        raise _pretrain_error(e) from None


def _train_pretrain_phase(pre, export_dir):
    """`pre.train(export_dir)`; a refusal at its first step (e.g. device memory) names the pretrain field."""
    try:
        return pre.train(export_dir)
    except ConfigError as e:
        raise _pretrain_error(e) from None


def run(config, workdir: str, restart: bool = False) -> dict:
    """Train and export; returns {"eval": eval dict, "export_dir": path, "pretrained": {name: export dir}}.

    Every check (config, inits, data, model output shapes, devices, workdir) runs before anything is written to
    `workdir`; then the workdir is locked (one writer, kdjax/runtime/lock.py), and `restart` moves an existing run
    there aside (`WORKDIR.old-DATE`) and starts fresh. A finished run run again changes nothing. An OS failure
    (disk full, read-only, permission) is one CheckpointError saying what is saved and how to resume.
    """
    config = copy.deepcopy(config)
    workdir = os.path.abspath(workdir)
    check_workdir_path(workdir)
    checked = check(config)
    train_src, test_src, info = checked.train, checked.test, checked.info

    mine = identity(config, checked)  # what this run computes and is built from (init and data fingerprints)
    done = None if restart else _finished_same_run(workdir, mine)
    if done is not None:  # nothing to do, nothing written
        return _already_finished(config, workdir, done)

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

    if not restart:
        compare_workdir(workdir, mine)  # read-only: a workdir holding another run is refused before any write
    lock = None
    try:
        lock = hold_workdir(workdir)
        return _run_locked(config, workdir, restart, mine, phase, pretrain_phases, lock)
    except OSError as e:
        raise CheckpointError(os_failure(e, workdir)) from None
    finally:
        if lock is not None:
            lock.release()


def os_failure(e: OSError, workdir: str) -> str:
    """One line for a disk full / read-only / permission failure: the OS reason, what is saved, how to resume."""
    saved = saved_progress(workdir)
    if saved.startswith("Nothing"):
        return f"{describe(e)}. Nothing of this run was saved yet; once fixed, run the same command again."
    return f"{describe(e)}. {saved}; once fixed, run the same command again to resume from there."


def _finished_same_run(workdir: str, mine: dict):
    """The summary of a finished run of this very identity in `workdir`, else None (never raises: a workdir that
    holds something else is refused later, after the remaining checks)."""
    try:
        same = compare_workdir(workdir, mine) == "same"
    except KdjaxError:
        return None
    return finished_summary(workdir) if same else None


def _already_finished(config, workdir: str, summary: dict) -> dict:
    if jax.process_index() == 0:
        try:
            print(summary_table(config, summary["eval"], summary.get("export_dir", os.path.join(workdir, "export"))),
                  flush=True)
        except (KeyError, TypeError, ValueError):  # a summary of an older kdjax
            print(json.dumps(summary.get("eval"), indent=2), flush=True)
        print(f"This run is already finished ({os.path.join(workdir, 'summary.json')}); nothing was changed. "
              f"To train it again, pass --restart (moves it aside) or use a new --workdir.", flush=True)
    return summary


def _run_locked(config, workdir, restart, mine, phase, pretrain_phases, lock):
    is_main = jax.process_index() == 0
    if restart and is_main:
        moved = move_aside(workdir)
        if moved and not moved.startswith(workdir + os.sep):  # the lock file moved with the old run
            lock.release()
            lock.acquire()
    barrier("kdjax_workdir_moved")
    os.makedirs(workdir, exist_ok=True)
    check_workdir(workdir, mine)
    barrier("kdjax_config_written")

    pretrained = {}
    for name, (pre, export_dir) in pretrain_phases.items():
        if not is_export_dir(export_dir) and not model_cache.reuse(config, name, pre.info, pre.train_source, export_dir):
            if is_main:
                print(f"models.{name} has init='train': training {name} ({config.models[name].arch}) first with "
                      f"ground-truth CE for {config.pretrain.epochs} epochs, then distilling.", flush=True)
            result = _train_pretrain_phase(pre, export_dir)
            if result.get("preempted"):
                return result
            model_cache.publish(config, name, pre.info, pre.train_source, export_dir)  # trained once: kept for later runs
        elif is_main:
            print(f"models.{name}: using the {name} trained earlier in {export_dir}", flush=True)
        with config.unlocked():
            config.models[name].init = export_dir
        pretrained[name] = export_dir

    result = phase.train(os.path.join(workdir, "export"))
    if result.get("preempted"):
        return result
    summary = {"eval": result, "export_dir": os.path.join(workdir, "export"), "pretrained": pretrained,
               "dataset": record(phase.info), "best": result.get("best")}
    if is_main:
        print(summary_table(config, result, summary["export_dir"]), flush=True)
        write_summary(workdir, summary)
    return summary


def summary_table(config, result: dict, export_dir: str) -> str:
    rows = [("model", "arch", "role", "top-1", "top-5")]
    result, split = _tested_or_validated(config, result)
    for name, m in config.models.items():
        role = "frozen teacher" if m.frozen else ("exported" if name == config.export_model else "trained")
        rows.append((name, m.arch, role, f"{100 * result[f'{name}/top1']:.2f}%", f"{100 * result[f'{name}/top5']:.2f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["", f"{split} accuracy on {result['count']} images:"]
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


def _tested_or_validated(config, result: dict):
    """(result, "Test"), or for a run that never saw the test split (data.holdout with train.final_test=False) its
    held-out validation figures under the plain keys, labelled as such."""
    if f"{config.export_model}/top1" in result or f"val/{config.export_model}/top1" not in result:
        return result, "Test"
    return {k[4:]: v for k, v in result.items() if k.startswith("val/")}, "Held-out validation (not test)"


# ---- what a workdir holds -------------------------------------------------------------------------------------

def finished_summary(workdir: str) -> Optional[dict]:
    """The summary of a finished run in `workdir` (summary.json beside a complete export), else None."""
    try:
        with open(os.path.join(workdir, SUMMARY_FILE), "rb") as f:
            summary = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not isinstance(summary.get("eval"), dict):
        return None
    if not is_export_dir(os.path.join(workdir, "export")):  # this workdir's (summary.json may name another path)
        return None
    return summary


def _steps(directory: str):
    try:
        return sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    except OSError:
        return []


def saved_progress(workdir: str) -> str:
    """What the workdir holds that a rerun resumes from, in one sentence."""
    parts = []
    pretrain = os.path.join(workdir, "pretrain")
    for name in sorted(os.listdir(pretrain)) if os.path.isdir(pretrain) else []:
        phase = os.path.join(pretrain, name)
        if is_export_dir(os.path.join(phase, "export")):
            parts.append(f"the trained {name} ({os.path.join(phase, 'export')})")
        elif _steps(os.path.join(phase, "checkpoints")):
            parts.append(f"{name}'s checkpoint step {_steps(os.path.join(phase, 'checkpoints'))[-1]}")
    steps = _steps(os.path.join(workdir, "checkpoints"))
    if steps:
        parts.append(f"checkpoint step {steps[-1]} ({os.path.join(workdir, 'checkpoints')})")
    if is_export_dir(os.path.join(workdir, "export")):
        parts.append(f"the export ({os.path.join(workdir, 'export')})")
    if not parts:
        return "Nothing was saved yet"
    return "Saved and intact: " + ", ".join(parts)
