"""`python -m kdjax.sweep --config=configs/sweep_fashion_mnist.py --workdir=DIR`: the accuracy benchmark.

Trains one teacher once, then the same student under each method for N seeds with identical budgets, and
writes DIR/results.md (mean ± std top-1 per method, the teacher's, gain over the baseline, wall time) and
DIR/results.png (bars with error bars, learning curves). Finished runs are kept: running the same command again
resumes a half-finished sweep (each run also resumes from its own checkpoints).
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import copy
import importlib.util
import json
import os
import time

import ml_collections
import numpy as np
from kdjax.cli import flags as cli_flags  # noqa: E402

from kdjax.config.defaults import loss_entry

_CONFIG = cli_flags.DEFINE_config_file("config", None, "Sweep config, e.g. configs/sweep_fashion_mnist.py.")
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Directory for the teacher, every run and the results.")


def load_method_config(directory: str, method: str):
    from kdjax.cli.config_path import resolve

    path = resolve(os.path.join(directory, f"{method}.py"))  # configs/ of the installed package when not here
    if not os.path.isfile(path):
        from kdjax.errors import ConfigError

        raise ConfigError("methods", f"no config {path} for method {method!r}")
    spec = importlib.util.spec_from_file_location(f"kdjax_method_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _extra_teachers(sweep) -> dict:
    return sweep.get("extra_teachers") or {}


def teacher_name(sweep, model_name: str) -> str:
    """Which sweep teacher frozen model `model_name` gets: itself when `extra_teachers` names it, else "" (main)."""
    return model_name if model_name in _extra_teachers(sweep) else ""


def teacher_entry(sweep, name: str = ""):
    """The sweep's model for teacher `name`: `extra_teachers[name]`, or `teacher` for ""."""
    return _extra_teachers(sweep)[name] if name else sweep.teacher


def teacher_config(sweep, name: str = ""):
    """Pre-training config of the main teacher, or of extra teacher `name`."""
    c = copy.deepcopy(sweep.base)
    with c.unlocked():
        teacher = copy.deepcopy(teacher_entry(sweep, name))
        teacher.frozen, teacher.init, teacher.capture = False, "", ()
        c.models = ml_collections.ConfigDict({"Teacher": teacher})
        c.losses = ml_collections.ConfigDict({"gt_ce": loss_entry("gt_ce", 1.0, models=["Teacher"])})
        c.export_model = "Teacher"
        c.train.epochs = sweep.teacher_epochs
    return c


def method_config(sweep, method: str, seed: int, teacher_export):
    """The method's own losses and captures (configs/<method>.py) on the sweep's models, data and budget.

    `teacher_export`: the main teacher's export dir, or {frozen model name or "": export dir} when a method has
    several frozen models (multi-teacher KD): a name in `sweep.extra_teachers` gets that teacher, others the
    main one."""
    exports = teacher_export if isinstance(teacher_export, dict) else {"": teacher_export}
    c = copy.deepcopy(sweep.base)
    with c.unlocked():
        c.seed = int(seed)
        if method == "baseline":
            c.models = ml_collections.ConfigDict({"Student": copy.deepcopy(sweep.student)})
            c.losses = ml_collections.ConfigDict({"gt_ce": loss_entry("gt_ce", 1.0, models=["Student"])})
            c.export_model = "Student"
            return c
        mc = load_method_config(sweep.method_configs_dir, method)
        c.models = ml_collections.ConfigDict()
        for name, m in mc.models.items():
            source = teacher_entry(sweep, teacher_name(sweep, name)) if m.frozen else sweep.student
            entry = copy.deepcopy(m)
            entry.arch, entry.kwargs = source.arch, copy.deepcopy(source.kwargs)
            if m.frozen:
                entry.init = exports.get(teacher_name(sweep, name), "")
            c.models[name] = entry
        c.losses = copy.deepcopy(mc.losses)
        c.export_model = mc.export_model
        _method_optimizer(c, mc)
    return c


def _method_optimizer(c, mc):
    """A method that is an optimizer choice (DOT: optim.name='dot') keeps its optimizer and the fields that choice
    sets (delta, momentum, nesterov); learning rate, schedule, weight decay and budget stay the sweep's."""
    name = mc.get("optim", {}).get("name", c.optim.name)
    if name != c.optim.name:
        for field in ("name", "delta", "momentum", "nesterov"):
            if field in mc.optim:
                c.optim[field] = mc.optim[field]


def _read(path):
    with open(path) as f:
        return json.load(f)


def teacher_dir(workdir: str, name: str = "") -> str:
    return os.path.join(workdir, "teacher") if not name else os.path.join(workdir, "teachers", name)


def teachers_needed(sweep, method: str):
    """"" (the main teacher) plus each extra teacher the method's frozen models name; none for the baseline."""
    if method == "baseline":
        return ()
    frozen = [n for n, m in load_method_config(sweep.method_configs_dir, method).models.items() if m.frozen]
    return ("",) + tuple(sorted(n for n in frozen if teacher_name(sweep, n)))


def run_sweep(sweep, workdir: str) -> dict:
    from kdjax.config.check import check

    # every method's config is checked before the first run, not hours later when its turn comes
    placeholder = {name: "/trained/by/the/sweep" for name in ("",) + tuple(_extra_teachers(sweep))}
    for method in sweep.methods:
        check(method_config(sweep, method, seeds_of(sweep, method)[0], placeholder), splits=(), inits=False)
    workdir = os.path.abspath(workdir)
    from kdjax.runtime.lock import WorkdirLock

    with WorkdirLock(workdir):  # one sweep per workdir (each of its runs also locks its own folder)
        return _sweep_locked(sweep, workdir)


def _sweep_locked(sweep, workdir: str) -> dict:
    from kdjax import train

    names = sorted({""}.union(*(teachers_needed(sweep, m) for m in sweep.methods)))
    for name in names:
        directory = teacher_dir(workdir, name)
        if not os.path.isfile(os.path.join(directory, "summary.json")):
            print(f"sweep: training the {'teacher' if not name else 'extra teacher ' + name} "
                  f"({teacher_entry(sweep, name).arch}, {sweep.teacher_epochs} epochs)", flush=True)
            if train.run(teacher_config(sweep, name), directory).get("preempted"):
                return _stopped()
    teacher_export = {name: os.path.join(teacher_dir(workdir, name), "export") for name in names}
    runs = [(m, s) for m in sweep.methods for s in seeds_of(sweep, m)]
    started = time.time()
    done_now = 0
    for i, (method, seed) in enumerate(runs):
        run_dir = os.path.join(workdir, "runs", method, f"seed{seed}")
        if os.path.isfile(os.path.join(run_dir, "summary.json")):
            continue
        if done_now:
            eta = (time.time() - started) / done_now * sum(
                not os.path.isfile(os.path.join(workdir, "runs", m, f"seed{s}", "summary.json")) for m, s in runs)
            print(f"sweep: about {eta / 60:.0f} min left", flush=True)
        print(f"sweep: run {i + 1}/{len(runs)}: {method}, seed {seed}", flush=True)
        if train.run(method_config(sweep, method, seed, teacher_export), run_dir).get("preempted"):
            return _stopped()
        done_now += 1
    results = collect(sweep, workdir)
    from kdjax.runtime.preemption import writing

    with writing():  # a SIGTERM waits until the report is complete
        write_report(sweep, results, workdir)
    return results


def _stopped() -> dict:
    """A run stopped early (SIGTERM, train.stop_after_steps): the sweep stops too, every run resumable."""
    print("sweep: stopped early; run the same command again to continue where it stopped", flush=True)
    return {"preempted": True}


def seeds_of(sweep, method: str):
    return tuple(sweep.get("seeds_for", {}).get(method, sweep.seeds))


def collect(sweep, workdir: str) -> dict:
    teacher = _read(os.path.join(workdir, "teacher", "summary.json"))["eval"]
    out = {"teacher": {"arch": sweep.teacher.arch, "top1": teacher["Teacher/top1"]}, "methods": {},
           "extra_teachers": {}}
    for name in sorted(_extra_teachers(sweep)):
        summary = os.path.join(teacher_dir(workdir, name), "summary.json")
        if os.path.isfile(summary):
            out["extra_teachers"][name] = {"arch": teacher_entry(sweep, name).arch,
                                           "top1": _read(summary)["eval"]["Teacher/top1"]}
    for method in sweep.methods:
        accs, secs, curves = [], [], []
        for seed in seeds_of(sweep, method):
            run_dir = os.path.join(workdir, "runs", method, f"seed{seed}")
            summary = _read(os.path.join(run_dir, "summary.json"))
            accs.append(summary["eval"]["Student/top1"])
            secs.append(_read(os.path.join(run_dir, "result.json"))["seconds"])
            with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                evals = [json.loads(line) for line in f if '"eval"' in line]
            curves.append([(r["step"], r["Student/top1"]) for r in evals])
        cfg = method_config(sweep, method, seeds_of(sweep, method)[0], "")
        losses = "; ".join(_describe(e) for e in cfg.losses.values())
        if cfg.optim.name != sweep.base.optim.name:  # an optimizer method (DOT)
            losses += f"; optim {cfg.optim.name}(delta={cfg.optim.get('delta')})"
        out["methods"][method] = {"top1": accs, "seconds": secs, "curves": curves, "losses": losses,
                                  "seeds": list(seeds_of(sweep, method))}
    return out


def _describe(entry) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(dict(entry.get("params", {})).items()) if v is not None)
    return f"{entry.weight:g}×{entry.type}" + (f"({params})" if params else "")


def _data_name(data) -> str:
    """data.name, or (unset) the named folder's name, or the default data's."""
    named = next((data.get(f) for f in ("data_dir", "root", "tfds_data_dir") if data.get(f)), "")
    return data.get("name") or (os.path.basename(os.path.normpath(named)) if named else "fashion_mnist")


def write_report(sweep, results: dict, workdir: str):
    base = np.asarray(results["methods"]["baseline"]["top1"]) if "baseline" in results["methods"] else None
    lines = ["# Distillation benchmark", "",
             f"Teacher `{sweep.teacher.arch}`: top-1 {100 * results['teacher']['top1']:.2f}%. "
             f"Student `{sweep.student.arch}` under each method, {len(sweep.seeds)} seeds "
             f"({', '.join(map(str, sweep.seeds))}), {sweep.base.train.epochs:g} epochs, batch "
             f"{sweep.base.train.batch_size}, data `{_data_name(sweep.base.data)}`."
             + "".join(f" Extra teacher {name} (`{t['arch']}`, frozen model {name} of the methods that name it): "
                       f"top-1 {100 * t['top1']:.2f}%." for name, t in results.get("extra_teachers", {}).items()),
             "",
             "| method | top-1 mean ± std (%) | gain over baseline (pp) | gain / std | seeds | wall time per run (s) | "
             "losses |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method, r in results["methods"].items():
        acc = 100 * np.asarray(r["top1"])
        std = acc.std(ddof=1) if len(acc) > 1 else 0.0
        if base is None or method == "baseline":
            gain, ratio = "–", "–"
        else:
            g = acc.mean() - 100 * base.mean()
            base_std = (100 * base).std(ddof=1) if len(base) > 1 else 0.0
            pooled = np.sqrt((std ** 2 + base_std ** 2) / 2) if len(acc) > 1 else base_std
            gain, ratio = f"{g:+.2f}", (f"{g / pooled:+.1f}" if pooled > 0 else "–")
        std_text = f"{std:.2f}" if len(acc) > 1 else "–"
        lines.append(f"| {method} | {acc.mean():.2f} ± {std_text} | {gain} | {ratio} | {len(acc)} | "
                     f"{np.mean(r['seconds']):.0f} | {r['losses']} |")
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _plot(results, os.path.join(workdir, "results.png"))


def _plot(results: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    means = [100 * np.mean(results["methods"][m]["top1"]) for m in methods]
    stds = [100 * np.std(results["methods"][m]["top1"], ddof=1) if len(results["methods"][m]["top1"]) > 1 else 0
            for m in methods]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    ax1.bar(methods, means, yerr=stds, capsize=4, color=["#999999"] + ["#4477aa"] * (len(methods) - 1))
    ax1.axhline(100 * results["teacher"]["top1"], color="#cc6677", ls="--", label="teacher")
    if "baseline" in results["methods"]:
        ax1.axhline(means[0], color="#999999", ls=":", label="baseline student")
    lo = min(m - s for m, s in zip(means, stds))
    ax1.set_ylim(lo - 1.0, max(100 * results["teacher"]["top1"], max(means)) + 0.5)
    ax1.set_ylabel("test top-1 (%)")
    ax1.set_title("student top-1, mean ± std over seeds")
    ax1.tick_params(axis="x", rotation=45)
    ax1.legend(loc="lower right")
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(methods), 2)))
    for i, m in enumerate(methods):
        curves = results["methods"][m]["curves"]
        n = min(len(c) for c in curves)
        steps = [c[i][0] for i in range(n) for c in curves[:1]]
        acc = np.mean([[100 * c[i][1] for i in range(n)] for c in curves], axis=0)
        ax2.plot(steps, acc, marker="o", ms=3, label=m, color=colors[i], ls="-" if i % 2 == 0 else "--")
    ax2.set_xlabel("step")
    ax2.set_ylabel("test top-1 (%)")
    ax2.set_title("learning curves (mean over seeds)")
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError

    from kdjax.runtime import preemption

    absl_logging.set_verbosity(absl_logging.WARNING)
    preemption.listen_for_sigterm()  # SIGTERM: a run checkpoints and the sweep stops (exit 0), or it exits at once
    if not _WORKDIR.value:
        raise KdjaxError("--workdir is required")
    if run_sweep(_CONFIG.value, _WORKDIR.value).get("preempted"):
        return
    print(f"sweep: wrote {os.path.join(os.path.abspath(_WORKDIR.value), 'results.md')} and results.png")


FLAG_NAMES = ('config', 'workdir')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.sweep", module="kdjax.sweep", doc=__doc__, flag_names=FLAG_NAMES, interrupted="run the same command again to resume")


if __name__ == "__main__":
    cli()
