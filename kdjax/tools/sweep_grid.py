"""Per-method hyper-parameter grids of the sweep: their trials, applying one to a run's config, choosing the best.

`sweep.grids.<method>` is a tuple of (path, values) axes; the trials are their product, in order. A path is a dotted
field of the run's config (`losses.kd.weight`, `losses.kd.params.temperature`, `optim.lr`); several paths joined by
commas take the same value together (`losses.dkd.params.alpha,losses.dkd.params.beta`). Every method gets the same
number of trials as the baseline (the same tuning budget), each run with one seed (`sweep.tune_seed`) and judged on
the held-out validation split only; the first best trial in grid order wins a tie.
"""

import itertools
from typing import Dict, List, Optional

from kdjax.errors import ConfigError


def axes(sweep, method: str):
    grids = sweep.get("grids") or {}
    if method not in grids:
        raise ConfigError(f"grids.{method}", f"method {method!r} has no tuning grid; declare one, e.g. "
                                             f"(('losses.<name>.weight', (0.5, 1.0)),) (the baseline's: optim.lr)")
    out = []
    for i, axis in enumerate(grids[method]):
        if len(axis) != 2 or not isinstance(axis[0], str) or not len(axis[1]):
            raise ConfigError(f"grids.{method}", f"axis {i} is {axis!r}; each axis is ('path[,path]', (values...))")
        out.append((str(axis[0]), tuple(axis[1])))
    return out


def trials(sweep, method: str) -> List[Dict[str, object]]:
    """The method's trials: one {path: value} per point of its grid, in grid order."""
    ax = axes(sweep, method)
    points = itertools.product(*(values for _, values in ax)) if ax else [()]
    out = []
    for point in points:
        settings = {}
        for (paths, _), value in zip(ax, point):
            for path in paths.split(","):
                settings[path.strip()] = value
        out.append(settings)
    return out


def check_budgets(sweep):
    """Every method in `sweep.methods` has a grid with as many trials as the baseline's."""
    counts = {m: len(trials(sweep, m)) for m in sweep.methods}
    reference = counts.get("baseline", next(iter(counts.values()), 0))
    for method, n in counts.items():
        if n != reference:
            raise ConfigError(f"grids.{method}", f"has {n} trials but the baseline has {reference}: every method "
                                                 f"gets the same tuning budget; give it {reference}")


def apply(config, settings: Dict[str, object], method: str = ""):
    """Set each dotted `path` of `config` to its value; a path the config lacks is refused (a typo in a grid would
    otherwise tune nothing)."""
    with config.unlocked():
        for path, value in settings.items():
            *parents, leaf = path.split(".")
            node = config
            for part in parents:
                if part not in node:
                    raise ConfigError(f"grids.{method}", f"path {path!r}: the run's config has no {part!r} there")
                node = node[part]
            if leaf not in node and not (parents and parents[-1] == "params"):
                raise ConfigError(f"grids.{method}", f"path {path!r}: the run's config has no field {leaf!r}")
            node[leaf] = value
    return config


def choose(scores: List[Optional[float]], method: str = "") -> int:
    """Index of the best validation score; the earliest in grid order on a tie. None: a trial that diverged."""
    finite = [i for i, s in enumerate(scores) if s is not None]
    if not finite:
        raise ConfigError(f"grids.{method}", f"every trial diverged (non-finite loss; see each trial's diverged.json): "
                                             f"add smaller values (loss weight, lr) to the grid")
    best = finite[0]
    for i in finite:
        if scores[i] > scores[best]:
            best = i
    return best


def describe(settings: Dict[str, object]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()) or "–"
