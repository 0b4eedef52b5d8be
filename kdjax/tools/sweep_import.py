"""`kdjax.sweep --import_runs=REPORT.json`: finish a sweep whose workdir was lost from its last report.

A sweep's runs take hours; when its machine and workdir are gone, its report (results.json, e.g. the committed
partial report) still holds every finished tuning trial and final run. Importing writes those records into the new
workdir, so the sweep runs only what is missing. Nothing is imported unless it is the same experiment:
  - the protocol (data, split, budget, optimizer, seeds, models, workers and cores per worker: thread count changes
    results at rounding level) equals the report's;
  - the teacher(s), trained again here first, reach exactly the report's accuracies;
  - a method is imported only when its losses (as the report describes them) and its grid are unchanged; a method
    whose config changed since is run again in full.
Two imported final runs (the baseline's first seed and the first method's) are not imported but run again, their
recorded accuracies kept beside them (`expected.json`); the report states whether the rerun reproduced them, and
how many runs were imported from where (`protocol.imported`).
"""

import json
import os

from kdjax.errors import KdjaxError

IMPORTED = "imported.json"   # in an imported run's folder: where its record came from
EXPECTED = "expected.json"   # in a rerun check's folder: the report's record, compared with the rerun's result
# protocol fields that describe how a report was written, not the experiment
_NOT_PROTOCOL = ("label", "imported")


def import_runs(sweep, workdir: str, report_path: str) -> dict:
    """Write the report's runs into WORKDIR (teachers already trained there); returns {method: runs imported}."""
    from kdjax.tools import sweep as sw, sweep_configs as sc

    report = check_report(sweep, report_path)
    _check_same_teachers(sweep, workdir, report, report_path)
    source = {"from": os.path.abspath(report_path)}
    same = []
    for method in sweep.methods:
        r = report["methods"].get(method)
        if r is None:
            continue
        trials = sw.grid_trials(sweep, method)
        if r["losses"] != sc.losses_text(sweep, method) or _norm([t["settings"] for t in r["trials"]]) != _norm(trials):
            print(f"sweep: not importing {method}: its config or grid changed since {report_path}; it runs again",
                  flush=True)
        else:
            same.append(method)
    counts, checks = {}, _rerun_checks(same, report)
    for method in same:
        r = report["methods"][method]
        n = 0
        for k, t in enumerate(r["trials"]):
            n += _write_trial(sw.trial_dir(workdir, method, k), sw.val_key(sweep, method), t, source)
        name = sc.method_config(sweep, method, 0, "").export_model
        for i, seed in enumerate(r["seeds"]):
            record = {f: r[f][i] for f in ("last", "best", "best_step", "val_last", "val_best", "seconds", "curves")}
            directory = sw.run_dir(workdir, method, seed)
            if (method, seed) in checks:
                _write_expected(directory, name, record, source)
            else:
                n += _write_final(directory, name, record, source)
        counts[method] = n
    print(f"sweep: imported {sum(counts.values())} finished runs of {len(counts)} methods from {report_path}; "
          f"rerunning {', '.join(f'{m} seed {s}' for m, s in checks)} to check they reproduce", flush=True)
    return counts


def check_report(sweep, report_path: str) -> dict:
    """The report, read and checked against this sweep's protocol (before any training)."""
    report = _load(report_path)
    _check_same_protocol(sweep, report, report_path)
    return report


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise KdjaxError(f"--import_runs: cannot read {path} ({e}): give a sweep report's results.json") from None
    if not isinstance(report, dict) or not {"protocol", "teacher", "methods"} <= set(report):
        raise KdjaxError(f"--import_runs: {path} is not a sweep report's results.json (no protocol/teacher/methods)")
    return report


def _norm(x):
    return json.loads(json.dumps(x, sort_keys=True, default=list))


def _check_same_protocol(sweep, report, path):
    from kdjax.tools.sweep import protocol

    now = {k: v for k, v in _norm(protocol(sweep)).items() if k not in _NOT_PROTOCOL}
    then = {k: v for k, v in _norm(report["protocol"]).items() if k not in _NOT_PROTOCOL}
    differ = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if differ:
        k = differ[0]
        raise KdjaxError(f"--import_runs: {path} was run with another protocol ({k}: {then.get(k)!r} there, "
                         f"{now.get(k)!r} here{'; also ' + ', '.join(differ[1:]) if differ[1:] else ''}): "
                         f"its runs are another experiment; run the sweep without --import_runs")


def _check_same_teachers(sweep, workdir, report, path):
    """The imported runs were distilled from the report's teacher: the one trained here must be the same (the
    training is deterministic for a fixed thread count, so its accuracies agree exactly)."""
    from kdjax.tools.sweep import _read, teacher_dir

    here = _read(os.path.join(teacher_dir(workdir), "summary.json"))["eval"]
    pairs = [("teacher top-1", report["teacher"]["top1"], here["Teacher/top1"]),
             ("teacher validation top-1", report["teacher"].get("val_top1"), here.get("val/Teacher/top1"))]
    for name, entry in report.get("extra_teachers", {}).items():
        summary = os.path.join(teacher_dir(workdir, name), "summary.json")
        pairs.append((f"{name} top-1", entry["top1"], _read(summary)["eval"]["Teacher/top1"]
                      if os.path.isfile(summary) else None))
    for what, then, now in pairs:
        if then != now:
            raise KdjaxError(f"--import_runs: the {what} trained here is {now}, {then} in {path}: its runs were "
                             f"distilled from another teacher; run the sweep without --import_runs")


def _rerun_checks(methods, report):
    """The baseline's first recorded seed and the first other imported method's: run again, compared with the
    record."""
    out = []
    for method in sorted(methods, key=lambda m: m != "baseline"):
        if report["methods"][method]["seeds"]:
            out.append((method, report["methods"][method]["seeds"][0]))
        if len(out) == 2:
            break
    return out


def _write(directory, files: dict) -> int:
    from kdjax.tools.sweep import finished

    if finished(directory) or os.path.isfile(os.path.join(directory, EXPECTED)):
        return 0  # finished (or checked) here already: the workdir's own result wins
    if os.path.isdir(directory) and os.listdir(directory):
        return 0  # a run started here: it finishes here
    os.makedirs(directory, exist_ok=True)
    for name in sorted(files, key=lambda n: n in ("summary.json", "diverged.json")):  # the 'done' file last
        body = files[name]
        with open(os.path.join(directory, name), "w") as f:
            f.write(body if isinstance(body, str) else json.dumps(body))
    return 1


def _write_trial(directory, val_key, trial, source) -> int:
    from kdjax.tools.sweep import DIVERGED

    files = {IMPORTED: source}
    if trial["val_top1"] is None:
        files[DIVERGED] = {"error": "diverged (imported record)"}
    else:
        files["summary.json"] = {"eval": {val_key: trial["val_top1"]}}
        if trial.get("seconds") is not None:
            files["result.json"] = {"seconds": trial["seconds"]}
    return _write(directory, files)


def _final_files(name, record):
    evals = {f"{name}/top1": record["last"], f"best/{name}/top1": record["best"], "best_step": record["best_step"],
             f"val/{name}/top1": record["val_last"], f"best/val/{name}/top1": record["val_best"]}
    curve = "".join(json.dumps({"step": s, "kind": "eval", f"val/{name}/top1": v}) + "\n" for s, v in record["curves"])
    return {"summary.json": {"eval": evals}, "result.json": {"seconds": record["seconds"]}, "metrics.jsonl": curve}


def _write_final(directory, name, record, source) -> int:
    return _write(directory, {IMPORTED: source, **_final_files(name, record)})


def _write_expected(directory, name, record, source):
    """A rerun check: the run is not imported (the sweep runs it); the record waits beside it."""
    _write(directory, {EXPECTED: {**source, **_final_files(name, record)["summary.json"]}})


def provenance(sweep, workdir: str) -> dict:
    """For the report: how many of the runs were imported and from where, and each rerun check's outcome."""
    from kdjax.tools.sweep import _read, all_runs

    runs = all_runs(sweep, workdir)
    imported = [d for d in runs if os.path.isfile(os.path.join(d, IMPORTED))]
    if not imported:
        return {}
    sources = sorted({_read(os.path.join(d, IMPORTED))["from"] for d in imported})
    checks = []
    for d in runs:
        expected = os.path.join(d, EXPECTED)
        if os.path.isfile(expected) and os.path.isfile(os.path.join(d, "summary.json")):
            then, now = _read(expected)["eval"], _read(os.path.join(d, "summary.json"))["eval"]
            keys = sorted(k for k in then if k in now)
            checks.append({"run": os.path.relpath(d, workdir), "keys": keys,
                           "reproduced": all(then[k] == now[k] for k in keys),
                           "recorded": {k: then[k] for k in keys}, "rerun": {k: now[k] for k in keys}})
    return {"from": [os.path.basename(os.path.dirname(s)) + "/" + os.path.basename(s) for s in sources],
            "runs": len(imported), "of": len(runs), "checks": checks}
