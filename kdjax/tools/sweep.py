"""`python -m kdjax.sweep --config=configs/sweep_fashion_mnist.py --workdir=DIR`: the accuracy benchmark.

The protocol (docs/results/README.md states it for readers):
  1. the teacher(s) are trained once on the training split minus the held-out validation examples
     (`base.data.holdout`, kdjax/data/holdout.py; fixed, recorded);
  2. tuning: every method (the baseline too, over its lr/weight decay) runs each trial of its grid (`grids.<method>`,
     the same number of trials for all: kdjax/tools/sweep_grid.py) with one seed (`tune_seed`) and is judged on the
     validation split only; these runs never evaluate on the test split (`train.final_test=False`);
  3. final runs: the chosen settings with every seed in `seeds`; seed s gives the baseline and every method the same
     student initialisation and data order; each run reports the test top-1 of its last epoch and of its best
     epoch (chosen on validation);
  4. report: mean ± std, paired gains over the baseline with standard error, 95% CI, effect size, paired t-test
     and Holm-adjusted p (kdjax/tools/sweep_stats.py), the grids with every trial (kdjax/tools/sweep_report.py).
Finished runs are kept: running the same command again resumes a half-finished sweep (each run also resumes from its
own checkpoints).
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import json
import os
import time

from kdjax.cli import flags as cli_flags  # noqa: E402

from kdjax.tools import sweep_grid, sweep_report
# what each run of the protocol trains (a method's losses on the sweep's models, data and budget): sweep_configs.py
from kdjax.tools.sweep_configs import (extra_teachers, losses_text, method_config, method_config_path, paired_with,
                                       recipe_text, run_config, teacher_config, teacher_entry, teachers_needed)

_CONFIG = cli_flags.DEFINE_config_file("config", None, "Sweep config, e.g. configs/sweep_fashion_mnist.py.")
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Directory for the teacher, every run and the results.")
_IMPORT = cli_flags.DEFINE_string("import_runs", None, "A previous report's results.json of the same protocol (its "
                                  "workdir lost): its finished runs are taken instead of run again, once the teacher "
                                  "trained here matches it (kdjax/tools/sweep_import.py); two are rerun as a check.")
_PARTIAL = cli_flags.DEFINE_bool("partial_report", False, "Write WORKDIR/partial/results.md from the runs finished "
                                 "so far (labelled partial) and exit; trains nothing, works while the sweep runs.")


def _read(path):
    with open(path) as f:
        return json.load(f)


def teacher_dir(workdir: str, name: str = "") -> str:
    return os.path.join(workdir, "teacher") if not name else os.path.join(workdir, "teachers", name)


def run_sweep(sweep, workdir: str, import_runs: str = "") -> dict:
    from kdjax.config.check import check

    _check_protocol(sweep)
    # every method's config and every trial is checked before the first run, not hours later when its turn comes
    placeholder = {name: "/trained/by/the/sweep" for name in ("",) + tuple(extra_teachers(sweep))}
    for method in sweep.methods:
        for settings in sweep_grid.trials(sweep, method):
            check(run_config(sweep, method, seeds_of(sweep, method)[0], placeholder, settings), splits=(),
                  inits=False)
    if import_runs:
        from kdjax.tools.sweep_import import check_report

        check_report(sweep, import_runs)  # another protocol is refused before anything trains
    workdir = os.path.abspath(workdir)
    from kdjax.runtime.lock import WorkdirLock

    with WorkdirLock(workdir):  # one sweep per workdir (each of its runs also locks its own folder)
        return _sweep_locked(sweep, workdir, import_runs)


def _check_protocol(sweep):
    from kdjax.errors import ConfigError

    if not int(sweep.base.data.get("holdout", 0) or 0):
        raise ConfigError("base.data.holdout", "is 0: the sweep chooses hyper-parameters and best epochs on a "
                                               "validation split held out of the training data; set it (e.g. 10000)")
    if "baseline" not in sweep.methods:
        raise ConfigError("methods", "must include 'baseline': gains are paired differences against it")
    own = sweep.get("own_student") or {}
    for name, entry in own.items():
        row = entry.get("baseline")
        if not row or row == "baseline" or row in own or os.path.isfile(method_config_path(sweep.method_configs_dir, row)):
            # a method's name here would turn it into this baseline row (or pair with the CNN baseline)
            raise ConfigError(f"own_student.{name}.baseline", f"is {row!r}: name a row of its own (e.g. "
                                                              f"'baseline_{name}'), not 'baseline' or a method")
        if name in sweep.methods and row not in sweep.methods:
            raise ConfigError(f"own_student.{name}", f"{name!r} is in `methods` but its baseline row "
                                                     f"{entry.get('baseline')!r} is not: add it (its gains pair "
                                                     f"with that row)")
    sweep_grid.check_budgets(sweep)
    n = sweep.get("workers", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError("workers", f"is {n!r}: runs at once, an integer >= 1 (0: one per CPU core)")
    if int(sweep.tune_seed) in set(int(s) for m in sweep.methods for s in seeds_of(sweep, m)):
        raise ConfigError("tune_seed", f"{sweep.tune_seed} is also a final seed; tuning on a seed that is then "
                                       f"reported favours the chosen settings on it: use another")


def grid_trials(sweep, method: str):
    """The method's trials ({path: value} each), in grid order (kdjax/tools/sweep_grid.py)."""
    return sweep_grid.trials(sweep, method)


def trial_dir(workdir: str, method: str, k: int) -> str:
    return os.path.join(workdir, "tune", method, f"trial{k}")


def run_dir(workdir: str, method: str, seed: int) -> str:
    return os.path.join(workdir, "runs", method, f"seed{seed}")


DIVERGED = "diverged.json"


def finished(directory: str) -> bool:
    """Finished: a summary, or (tuning trials only) the record that it diverged."""
    return any(os.path.isfile(os.path.join(directory, f)) for f in ("summary.json", DIVERGED))


def execute(config, directory: str) -> dict:
    """train.run; a tuning trial (no final test) whose training turns non-finite is a result, not a failure: its
    setting diverged. Recorded in DIRECTORY/diverged.json, reported as such and never chosen. A final run that
    diverges stops the sweep (its seed would be missing from the paired comparison)."""
    from kdjax import train
    from kdjax.runtime.loop import NonFiniteLoss

    try:
        return train.run(config, directory)
    except NonFiniteLoss as e:
        if config.train.final_test:
            raise
        from kdjax.runtime.preemption import writing

        with writing(), open(os.path.join(directory, DIVERGED), "w") as f:
            json.dump({"error": str(e)}, f)
        print(f"sweep: this trial diverged (recorded in {os.path.join(directory, DIVERGED)}; never chosen)",
              flush=True)
        return {}


def _sweep_locked(sweep, workdir: str, import_runs: str = "") -> dict:
    from kdjax import train

    names = sorted({""}.union(*(teachers_needed(sweep, m) for m in sweep.methods)))
    for name in names:
        directory = teacher_dir(workdir, name)
        if not finished(directory):
            print(f"sweep: training the {'teacher' if not name else 'extra teacher ' + name} "
                  f"({teacher_entry(sweep, name).arch}, {sweep.teacher_epochs} epochs)", flush=True)
            if train.run(teacher_config(sweep, name), directory).get("preempted"):
                return _stopped()
    exports = {name: os.path.join(teacher_dir(workdir, name), "export") for name in names}
    if import_runs:
        from kdjax.tools.sweep_import import import_runs as import_from

        import_from(sweep, workdir, import_runs)
    from kdjax.tools.sweep_consistency import check_finished_runs

    check_finished_runs(sweep, workdir, exports)  # a changed grid or config never reuses runs made with other settings
    n = workers(sweep)
    if n > 1:
        from kdjax.tools import sweep_workers

        if not sweep_workers.run(sweep, workdir, exports, n):
            return _stopped()
    else:
        progress = _Progress(sweep, workdir)
        for directory, what, config in pending_runs(sweep, workdir, exports):
            progress.say(what)
            if execute(config(), directory).get("preempted"):
                return _stopped()
            progress.ran()
    results = collect(sweep, workdir)
    from kdjax.runtime.preemption import writing

    with writing():  # a SIGTERM waits until the report is complete
        sweep_report.write_report(results, workdir)
    return results


def pending_runs(sweep, workdir: str, exports: dict):
    """The runs not finished yet, in protocol order: (directory, what, config thunk).

    1. tuning: one seed per trial, validation only; 2. final runs, seed by seed: a method's chosen settings, the
    test split once per run, listed once all of that method's trials are finished. Callers list again after each
    run (a run another worker finished meanwhile is then skipped)."""
    for method in sweep.methods:
        for k, settings in enumerate(sweep_grid.trials(sweep, method)):
            directory = trial_dir(workdir, method, k)
            if not finished(directory):
                yield (directory, f"tuning {method}, trial {k} ({sweep_grid.describe(settings)})",
                       lambda m=method, s=settings: run_config(sweep, m, int(sweep.tune_seed), exports, s,
                                                               final_test=False))
    tuned = {m: all(finished(trial_dir(workdir, m, k)) for k in range(len(sweep_grid.trials(sweep, m))))
             for m in sweep.methods}
    settings = {m: chosen(sweep, workdir, m)[1] for m in sweep.methods if tuned[m]}
    seeds = list(dict.fromkeys(s for m in sweep.methods for s in seeds_of(sweep, m)))
    for seed in seeds:  # seed by seed: a sweep cut short has every method at the same number of seeds (±1)
        for method in sweep.methods:
            directory = run_dir(workdir, method, seed)
            if tuned[method] and seed in seeds_of(sweep, method) and not finished(directory):
                yield (directory, f"{method}, seed {seed} ({sweep_grid.describe(settings[method])})",
                       lambda m=method, s=seed: run_config(sweep, m, s, exports, settings[m]))


def all_runs(sweep, workdir: str):
    """Every run directory of the protocol (tuning trials, then final runs)."""
    return ([trial_dir(workdir, m, k) for m in sweep.methods for k in range(len(sweep_grid.trials(sweep, m)))]
            + [run_dir(workdir, m, s) for m in sweep.methods for s in seeds_of(sweep, m)])


def workers(sweep) -> int:
    """`workers` (default 1): runs at once, each its own process on its share of the CPU cores; 0: one per core
    on CPU, 1 on an accelerator."""
    n = int(sweep.get("workers", 1) or 0)
    if n > 0:
        return n
    import jax

    return len(os.sched_getaffinity(0)) if jax.default_backend() == "cpu" else 1


class _Progress:
    """'run i/N' lines with the time left, estimated from the runs this invocation has finished."""

    def __init__(self, sweep, workdir):
        self.todo = all_runs(sweep, workdir)
        self.started, self.finished = time.time(), 0

    def say(self, what: str):
        left = sum(not finished(d) for d in self.todo)
        eta = ""
        if self.finished:
            eta = f", about {(time.time() - self.started) / self.finished * left / 60:.0f} min left"
        print(f"sweep: run {len(self.todo) - left + 1}/{len(self.todo)}: {what}{eta}", flush=True)

    def ran(self):
        self.finished += 1


def _stopped() -> dict:
    """A run stopped early (SIGTERM, train.stop_after_steps): the sweep stops too, every run resumable."""
    print("sweep: stopped early; run the same command again to continue where it stopped", flush=True)
    return {"preempted": True}


def seeds_of(sweep, method: str):
    return tuple(sweep.get("seeds_for", {}).get(method, sweep.seeds))


def val_key(sweep, method: str) -> str:
    return f"val/{method_config(sweep, method, 0, '').export_model}/top1"


def trial_scores(sweep, workdir: str, method: str):
    """Each trial's last-epoch validation top-1 (the tuning criterion); None for a trial that diverged."""
    key = val_key(sweep, method)
    out = []
    for k in range(len(sweep_grid.trials(sweep, method))):
        directory = trial_dir(workdir, method, k)
        diverged = os.path.isfile(os.path.join(directory, DIVERGED))
        out.append(None if diverged else _read(os.path.join(directory, "summary.json"))["eval"][key])
    return out


def chosen(sweep, workdir: str, method: str):
    """(index, settings) of the method's best trial on validation."""
    k = sweep_grid.choose(trial_scores(sweep, workdir, method), method)
    return k, sweep_grid.trials(sweep, method)[k]


def collect(sweep, workdir: str, partial: bool = False) -> dict:
    """Everything the report needs, read back from the runs' summaries and logs. `partial`: only the final runs
    finished so far (a method without any is left out), labelled as such in the report."""
    teacher = _read(os.path.join(workdir, "teacher", "summary.json"))["eval"]
    out = {"protocol": protocol(sweep), "teacher": {"arch": sweep.teacher.arch, "top1": teacher["Teacher/top1"],
                                                    "val_top1": teacher.get("val/Teacher/top1")},
           "methods": {}, "extra_teachers": {}}
    for name in sorted(extra_teachers(sweep)):
        summary = os.path.join(teacher_dir(workdir, name), "summary.json")
        if os.path.isfile(summary):
            out["extra_teachers"][name] = {"arch": teacher_entry(sweep, name).arch,
                                           "top1": _read(summary)["eval"]["Teacher/top1"]}
    for method in sweep.methods:
        seeds = list(seeds_of(sweep, method))
        if partial:
            seeds = [s for s in seeds if finished(run_dir(workdir, method, s))]
            if not seeds:
                continue
        cfg = method_config(sweep, method, 0, "")
        name = cfg.export_model
        k, settings = chosen(sweep, workdir, method)
        scores = trial_scores(sweep, workdir, method)
        losses = losses_text(sweep, method, cfg)
        r = {"losses": losses, "seeds": seeds, "paired_with": paired_with(sweep, method),
             "recipe": recipe_text(sweep, method, cfg),
             "trials": [{"settings": t, "val_top1": v, "seconds": _trial_seconds(trial_dir(workdir, method, i))}
                        for i, (t, v) in enumerate(zip(sweep_grid.trials(sweep, method), scores))],
             "chosen": k, "settings": settings,
             "last": [], "best": [], "best_step": [], "val_last": [], "val_best": [], "seconds": [], "curves": []}
        for seed in r["seeds"]:
            directory = run_dir(workdir, method, seed)
            e = _read(os.path.join(directory, "summary.json"))["eval"]
            r["last"].append(e[f"{name}/top1"])
            r["best"].append(e[f"best/{name}/top1"])
            r["best_step"].append(e["best_step"])
            r["val_last"].append(e[f"val/{name}/top1"])
            r["val_best"].append(e[f"best/val/{name}/top1"])
            r["seconds"].append(_read(os.path.join(directory, "result.json"))["seconds"])
            with open(os.path.join(directory, "metrics.jsonl")) as f:
                evals = [json.loads(line) for line in f if '"eval"' in line]
            r["curves"].append([(ev["step"], ev[f"val/{name}/top1"]) for ev in evals])
        out["methods"][method] = r
    from kdjax.tools.sweep_import import provenance

    imported = provenance(sweep, workdir)
    if imported:
        out["protocol"]["imported"] = imported
    if partial:
        counts = {m: len(r["seeds"]) for m, r in out["methods"].items()}
        missing = [m for m in sweep.methods if m not in counts]
        out["protocol"]["label"] = (
            f"PARTIAL REPORT of an unfinished sweep: the final runs finished so far ({sum(counts.values())} of "
            f"{sum(len(seeds_of(sweep, m)) for m in sweep.methods)}; {min(counts.values(), default=0)}–"
            f"{max(counts.values(), default=0)} seeds per method"
            + (f"; not yet run: {', '.join(missing)}" if missing else "")
            + "); paired statistics over the seeds each method shares with the baseline. "
            + out["protocol"].get("label", "")).strip()
    return out


def _trial_seconds(directory: str):
    path = os.path.join(directory, "result.json")
    return _read(path)["seconds"] if os.path.isfile(path) else None  # (a diverged trial has no result)


def protocol(sweep) -> dict:
    """The recipe every run shares, recorded with the results."""
    b, n = sweep.base, workers(sweep)
    return {"data": _data_name(b.data), "train_limit": int(b.data.train_limit), "holdout": int(b.data.holdout),
            "holdout_seed": int(b.data.holdout_seed), "test_limit": int(b.data.test_limit),
            "epochs": float(b.train.epochs), "batch_size": int(b.train.batch_size),
            "eval_every_epochs": float(b.train.eval_every_epochs),
            "optim": {k: (list(v) if isinstance(v, tuple) else v) for k, v in b.optim.items()},
            "augment": b.data.augment, "teacher": sweep.teacher.arch, "teacher_epochs": float(sweep.teacher_epochs),
            "student": sweep.student.arch, "seeds": [int(s) for s in sweep.seeds], "tune_seed": int(sweep.tune_seed),
            "label": sweep.get("label", ""), "workers": n,
            "cores_per_worker": len(os.sched_getaffinity(0)) // n}


def _data_name(data) -> str:
    """data.name, or (unset) the named folder's name, or the default data's."""
    named = next((data.get(f) for f in ("data_dir", "root", "tfds_data_dir") if data.get(f)), "")
    return data.get("name") or (os.path.basename(os.path.normpath(named)) if named else "fashion_mnist")


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError

    from kdjax.runtime import preemption

    absl_logging.set_verbosity(absl_logging.WARNING)
    if _PARTIAL.value:
        return partial_report(_CONFIG.value, _WORKDIR.value)
    preemption.listen_for_sigterm()  # SIGTERM: a run checkpoints and the sweep stops (exit 0), or it exits at once
    if not _WORKDIR.value:
        raise KdjaxError("--workdir is required")
    if run_sweep(_CONFIG.value, _WORKDIR.value, _IMPORT.value or "").get("preempted"):
        return
    print(f"sweep: wrote {os.path.join(os.path.abspath(_WORKDIR.value), 'results.md')}, results.json and "
          f"results.png")


def partial_report(sweep, workdir: str):
    """--partial_report: the report of the runs finished so far, into WORKDIR/partial/, without training (and
    without the workdir's lock: a running sweep keeps going)."""
    from kdjax.errors import KdjaxError

    workdir = os.path.abspath(workdir or "")
    if not os.path.isfile(os.path.join(workdir, "teacher", "summary.json")):
        raise KdjaxError(f"--partial_report: {workdir} has no finished teacher yet: nothing to report")
    results = collect(sweep, workdir, partial=True)
    if "baseline" not in results["methods"]:
        raise KdjaxError(f"--partial_report: no final run of the baseline has finished in {workdir} yet: "
                         f"nothing to compare")
    out = os.path.join(workdir, "partial")
    sweep_report.write_report(results, out)
    print(f"sweep: wrote {os.path.join(out, 'results.md')} (partial: the runs finished so far), results.json and "
          f"results.png")


FLAG_NAMES = ('config', 'workdir', 'import_runs', 'partial_report')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.sweep", module="kdjax.sweep", doc=__doc__, flag_names=FLAG_NAMES, interrupted="run the same command again to resume")


if __name__ == "__main__":
    cli()
