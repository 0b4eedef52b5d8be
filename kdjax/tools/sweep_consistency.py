"""A sweep resumes by skipping finished runs; a finished run is skipped only if it ran what the config now asks.

Without this check, a changed grid (or method config, or base recipe) in an existing workdir would silently reuse
runs made with other settings and report them under the new ones. Each finished run's recorded config.json must
hold every loss and optimizer field, and the seed, that the sweep config gives that run now (imported runs carry no
config.json: kdjax/tools/sweep_import.py checked them against their report)."""

import json
import os

from kdjax.errors import KdjaxError


def _leaves(d) -> dict:
    """{dotted path: value} of a nested dict, tuples as the JSON lists config.json records."""
    from kdjax.runtime.workdir import flat_fields

    return flat_fields(json.loads(json.dumps(d, default=list)))


def _expected(config) -> dict:
    want = _leaves({"losses": config.losses.to_dict(), "optim": config.optim.to_dict()})
    want["seed"] = int(config.seed)
    return want


def check_finished_runs(sweep, workdir: str, exports: dict):
    """Refuse (one line) when a finished run of WORKDIR was made with other settings than the config now gives."""
    from kdjax.tools import sweep as sw, sweep_configs as sc, sweep_grid

    for method in sweep.methods:
        runs = [(sw.trial_dir(workdir, method, k), lambda s=s: sc.run_config(sweep, method, int(sweep.tune_seed),
                                                                            exports, s, final_test=False))
                for k, s in enumerate(sweep_grid.trials(sweep, method))]
        if all(sw.finished(d) for d, _ in runs):  # the final runs' settings are the chosen trial's
            _, settings = sw.chosen(sweep, workdir, method)
            runs += [(sw.run_dir(workdir, method, seed), lambda seed=seed: sc.run_config(sweep, method, seed,
                                                                                        exports, settings))
                     for seed in sw.seeds_of(sweep, method)]
        for directory, config in runs:
            recorded = os.path.join(directory, "config.json")
            if not (sw.finished(directory) and os.path.isfile(recorded)):
                continue
            with open(recorded) as f:
                have = _leaves(json.load(f))
            for path, value in _expected(config()).items():
                if path in have and have[path] != value or path not in have and value not in (None, 0, 0.0, False):
                    raise KdjaxError(
                        f"{os.path.relpath(directory, workdir)} in {workdir} ran with {path}={have.get(path)!r}; "
                        f"the sweep config now gives {value!r}: a finished run is only reused for what it ran. "
                        f"Use a new --workdir, or delete that method's folders to run it again")
