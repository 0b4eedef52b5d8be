"""The sweep's report: results.md (protocol, last-epoch and best-epoch tables with paired statistics, every tuning
trial), results.json (every number) and results.png, from the dict `kdjax.tools.sweep.collect` returns.

Regenerate a report from a results.json (e.g. into docs/results/) without running anything:

    python -m kdjax.tools.sweep_report runs/sweep/results.json docs/results
"""

import json
import os
import sys

import numpy as np

from kdjax.tools import sweep_grid, sweep_stats

ALPHA = 0.05


def baseline_of(r: dict):
    """The row a method's record is paired against ("baseline" in reports written before `paired_with`); None for
    a baseline row."""
    return r.get("paired_with", "baseline")


def compared(results: dict) -> list:
    """The methods with a paired comparison (every row but the baseline rows), in report order."""
    return [m for m, r in results["methods"].items() if m != "baseline" and baseline_of(r) is not None]


def add_statistics(results: dict) -> dict:
    """results["stats"][which][method]: paired statistics against the method's baseline row (which: "last" or
    "best"), with "p_holm" over all the methods compared."""
    results["stats"] = {}
    for which in ("last", "best"):
        table = {}
        for method in compared(results):
            r = results["methods"][method]
            base = results["methods"].get(baseline_of(r))
            if base is not None:
                b = {s: 100 * a for s, a in zip(base["seeds"], base[which])}
                table[method] = sweep_stats.paired({s: 100 * a for s, a in zip(r["seeds"], r[which])}, b)
        adjusted = sweep_stats.holm({m: st["p"] for m, st in table.items() if st is not None})
        for m, p in adjusted.items():
            table[m]["p_holm"] = p
        results["stats"][which] = table
    return results


def write_report(results: dict, out_dir: str):
    results = add_statistics(results)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(results))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(results, os.path.join(out_dir, "results.png"))


def protocol_paragraph(results: dict) -> str:
    p = results["protocol"]
    r0 = next(iter(results["methods"].values()))
    ntrials = len(r0["trials"])
    limit = f"the first {p['train_limit']} training images" if p["train_limit"] else "the training split"
    test = f"the first {p['test_limit']} test images" if p["test_limit"] else "the whole test split"
    o = p["optim"]
    return (
        f"**Protocol.** Data `{p['data']}`: {p['holdout']} examples of {limit} are held out as a validation split "
        f"(a fixed permutation, seed {p['holdout_seed']}, the same for every run); every run trains on the rest. "
        f"The teacher `{p['teacher']}` ({p['teacher_epochs']:g} epochs) is trained once on the same examples. Each "
        f"method, and the student baseline over its learning rate and weight decay, gets the same tuning budget: "
        f"{ntrials} trials of a declared grid, each one run with seed {p['tune_seed']} (not a reported seed) and "
        f"judged by its last-epoch validation top-1; tuning runs never evaluate on the test split. The chosen "
        f"settings then run with seeds {', '.join(map(str, p['seeds']))}; seed s gives the baseline and every "
        f"method the same student initialisation and data order, so a method's gain is the paired difference "
        f"method − baseline per seed. Every run has the same budget: `{p['student']}`, {p['epochs']:g} epochs, batch "
        f"{p['batch_size']}, {o['name']} lr {o['lr']:g} (unless tuned), {o['schedule']} schedule, weight decay "
        f"{o['weight_decay']:g} (unless tuned), augment `{p['augment']}`, validation every "
        f"{p['eval_every_epochs']:g} epoch. Each final run evaluates {test} once, with its last-epoch weights and "
        f"with the weights of its best validation epoch (earliest on a tie); the test split chooses nothing. Gains "
        f"are reported as mean ± standard error over the paired seeds with a 95% t confidence interval, Cohen's d_z "
        f"(mean/sd of the differences), the two-sided paired t-test p-value and its Holm–Bonferroni adjustment over "
        f"all methods; mean ± std of accuracy is over the seeds." + _own_students(results) + _execution(p))


def own_student_rows(results: dict) -> list:
    """(method, its baseline row) for each method on its config's own student (a `recipe` in its record)."""
    return [(m, baseline_of(r)) for m, r in results["methods"].items() if r.get("recipe") and baseline_of(r)]


def _own_students(results: dict) -> str:
    """The methods that keep their config's own student and recipe, and the baseline row each is paired with."""
    rows = results["methods"]
    return "".join(
        f" Except: `{m}` keeps its config's own student and recipe ({rows[m]['recipe']}; the sweep's CNN student "
        f"cannot take its place) and is paired against `{b}`, that student trained alone on the labels "
        f"({rows[b]['recipe'] if b in rows else 'missing'}) with the same tuning budget and seeds; its gain is "
        f"over `{b}`, not over the CNN baseline." for m, b in own_student_rows(results))


def _execution(p: dict) -> str:
    """How the runs were executed: their thread count changes results at float-rounding level."""
    if "workers" not in p:
        return ""
    cores = p.get("cores_per_worker")
    each = f", each process on {cores} CPU core{'s' if cores != 1 else ''}" if cores else ""
    return f" Runs went {p['workers']} at a time{each} (`workers` in the sweep config)." + _imported(p)


def _imported(p: dict) -> str:
    """Runs taken from an earlier report of the same protocol (kdjax/tools/sweep_import.py), said with the check."""
    i = p.get("imported")
    if not i:
        return ""
    checks = "; ".join(
        f"`{c['run']}` {'reproduced its record exactly' if c['reproduced'] else 'did NOT reproduce its record'}"
        + ("" if c["reproduced"] else f" (recorded {c['recorded']}, rerun {c['rerun']})") for c in i["checks"])
    return (f" {i['runs']} of the {i['of']} runs (tuning trials and final runs) are imported from "
            f"{', '.join(i['from'])}, the report of an earlier invocation of this protocol whose working directory "
            f"was lost, with the same teacher accuracies (checked); the others ran in this one."
            + (f" Imported runs rerun as a check: {checks}." if checks else ""))


def fmt(v, spec=".2f", none="–"):
    return none if v is None else format(v, spec)


def _table(results: dict, which: str) -> list:
    lines = ["| method | settings (chosen on validation) | top-1 mean ± std (%) | gain mean ± SE (pp) | 95% CI (pp) | "
             "d_z | p | p (Holm) | seeds | " + ("mean best epoch | " if which == "best" else "") + "s per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | " + ("--- | " if which == "best" else "") + "--- |"]
    for method, r in results["methods"].items():
        mean, std = sweep_stats.mean_std([100 * a for a in r[which]])
        st = results["stats"][which].get(method)
        if st is None:
            gain = ci = dz = p = ph = "–"
        else:
            gain, ci = f"{st['mean']:+.2f} ± {st['se']:.2f}", f"[{st['ci95'][0]:+.2f}, {st['ci95'][1]:+.2f}]"
            dz, p, ph = fmt(st["d_z"], "+.2f"), f"{st['p']:.3g}", fmt(st.get("p_holm"), ".3g")
        extra = ""
        if which == "best":
            steps = r["best_step"]
            per_epoch = _steps_per_epoch(r, results["protocol"]["eval_every_epochs"])
            extra = f"{np.mean([s / per_epoch for s in steps]):.1f} | " if per_epoch else "– | "
        lines.append(f"| {method} | {sweep_grid.describe(r['settings'])} | {mean:.2f} ± {fmt(std)} | {gain} | {ci} | "
                     f"{dz} | {p} | {ph} | {len(r[which])} | {extra}{np.mean(r['seconds']):.0f} |")
    return lines


def _steps_per_epoch(r: dict, eval_every_epochs: float):
    """Steps per epoch, from the first validation step (one evaluation every `eval_every_epochs`)."""
    curve = r["curves"][0] if r["curves"] else []
    return curve[0][0] / eval_every_epochs if curve else None


def _tuning(results: dict) -> list:
    lines = ["| method | trial | settings | validation top-1 (%) | s | chosen |", "| --- | --- | --- | --- | --- | --- |"]
    for method, r in results["methods"].items():
        for k, t in enumerate(r["trials"]):
            val = "diverged" if t["val_top1"] is None else f"{100 * t['val_top1']:.2f}"
            lines.append(f"| {method} | {k} | {sweep_grid.describe(t['settings'])} | {val} | "
                         f"{fmt(t['seconds'], '.0f')} | {'**yes**' if k == r['chosen'] else ''} |")
    return lines


def winners(results: dict, which: str, key: str = "p") -> list:
    """Methods whose paired gain over the baseline is positive with p (or p_holm) < ALPHA."""
    return [m for m, st in results["stats"][which].items()
            if st is not None and st["mean"] > 0 and st.get(key, 1.0) < ALPHA]


def markdown(results: dict) -> str:
    p, t = results["protocol"], results["teacher"]
    lines = ["# Distillation benchmark", ""]
    if p.get("label"):
        lines += [f"> **{p['label']}**", ""]
    lines += [protocol_paragraph(results), "",
              f"Teacher `{t['arch']}`: test top-1 {100 * t['top1']:.2f}%"
              + (f" (validation {100 * t['val_top1']:.2f}%)" if t.get("val_top1") is not None else "") + "."
              + "".join(f" Extra teacher {n} (`{e['arch']}`): test top-1 {100 * e['top1']:.2f}%."
                        for n, e in results.get("extra_teachers", {}).items()), "",
              "## Last epoch (test top-1)", ""] + _table(results, "last") + [
              "", "## Best epoch (chosen on validation, test top-1)", ""] + _table(results, "best") + [
              "", f"## Tuning (seed {p['tune_seed']}, validation top-1 at the last epoch)", ""] + _tuning(results)
    for which, title in (("last", "last epoch"), ("best", "best epoch")):
        plain, holm = winners(results, which), winners(results, which, "p_holm")
        lines += ["", f"Beat the baseline at p < {ALPHA} ({title}, paired t-test): "
                  f"{', '.join(plain) if plain else 'none'}; after Holm's correction: {', '.join(holm) if holm else 'none'}."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = compared(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = np.arange(len(methods))
    for i, (which, color) in enumerate((("last", "#4477aa"), ("best", "#ee7733"))):
        stats = [results["stats"][which].get(m) for m in methods]
        means = [s["mean"] if s else 0.0 for s in stats]
        errs = np.array([[s["mean"] - s["ci95"][0], s["ci95"][1] - s["mean"]] if s else [0, 0] for s in stats]).T
        ax1.bar(x + (i - 0.5) * 0.4, means, 0.4, yerr=errs if len(methods) else None, capsize=3, color=color,
                label=f"{which} epoch")
    ax1.axhline(0, color="#555555", lw=0.8)
    _clip_outliers(ax1, results, methods)
    ax1.set_xticks(x, methods, rotation=45, ha="right")
    ax1.set_ylabel("paired gain over its baseline row (pp)")
    ax1.set_title("gain, mean with 95% CI over paired seeds")
    ax1.legend()
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(results["methods"]), 2)))
    for i, (m, r) in enumerate(results["methods"].items()):
        n = min(len(c) for c in r["curves"])
        steps = [r["curves"][0][j][0] for j in range(n)]
        acc = np.mean([[100 * c[j][1] for j in range(n)] for c in r["curves"]], axis=0)
        ax2.plot(steps, acc, marker="o", ms=3, label=m, color=colors[i], ls="-" if i % 2 == 0 else "--")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation top-1 (%)")
    ax2.set_title("validation curves (mean over seeds)")
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _clip_outliers(ax, results: dict, methods: list):
    """One collapsed method (MLKD+LS: −19 pp) would flatten every other bar to a line: the gain axis spans the
    others' intervals, and a bar beyond it is labelled with its value at the edge."""
    lows = {m: min(results["stats"][w][m]["ci95"][0] for w in ("last", "best")) for m in methods
            if all(results["stats"][w].get(m) for w in ("last", "best"))}
    highs = {m: max(results["stats"][w][m]["ci95"][1] for w in ("last", "best")) for m in lows}
    if len(lows) < 3:
        return
    spread = np.median([highs[m] - lows[m] for m in lows])
    bottom, top = np.percentile(list(lows.values()), 10), np.percentile(list(highs.values()), 90)
    limit = (min(bottom, 0) - 4 * spread, max(top, 0) + 4 * spread)
    out = [m for m in lows if lows[m] < limit[0] or highs[m] > limit[1]]
    if not out:
        return
    limit = (min(v for m, v in lows.items() if m not in out) - spread, max(v for m, v in highs.items() if m not in out)
             + spread)
    ax.set_ylim(*limit)
    for m in out:
        mean = results["stats"]["last"][m]["mean"]
        edge = limit[0] if mean < 0 else limit[1]
        ax.annotate(f"{mean:+.1f} (off scale)", (methods.index(m), edge), fontsize=7, rotation=90,
                    ha="center", va="bottom" if mean < 0 else "top")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        results = json.load(f)
    write_report(results, argv[2])
    print(f"wrote {os.path.join(argv[2], 'results.md')}, results.json and results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
