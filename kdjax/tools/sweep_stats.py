"""Paired statistics of the sweep: each method against the baseline on the seeds both ran (same seed: same student
initialisation and data order), per-seed differences d_s = acc_method(s) − acc_baseline(s).

Reported per method: mean gain, its standard error (sd/√n), the 95% confidence interval of the mean gain
(Student t, n−1 degrees of freedom), Cohen's d_z = mean/sd (paired effect size), the two-sided paired t-test p-value
(scipy.stats.ttest_rel) and the Holm–Bonferroni adjusted p over all methods compared.
"""

from typing import Dict, Optional, Sequence

import numpy as np


def paired(method: Dict[int, float], baseline: Dict[int, float]) -> Optional[dict]:
    """Statistics of method − baseline over their common seeds ({seed: accuracy in %}); None without two seeds."""
    from scipy import stats

    seeds = sorted(set(method) & set(baseline))
    if len(seeds) < 2:
        return None
    a = np.asarray([method[s] for s in seeds], np.float64)
    b = np.asarray([baseline[s] for s in seeds], np.float64)
    d = a - b
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    if sd > 0:
        t, p = (float(v) for v in stats.ttest_rel(a, b))
    else:  # identical differences: no variance to test against
        t, p = (float("inf") if mean else float("nan")), (0.0 if mean else 1.0)
    return {"seeds": seeds, "n": n, "mean": mean, "sd": sd, "se": float(se), "ci95": [mean - half, mean + half],
            "t": t, "p": p, "d_z": (mean / sd if sd > 0 else None)}


def holm(pvalues: Dict[str, float]) -> Dict[str, float]:
    """Holm–Bonferroni adjusted p-values (family: the methods compared), monotone, capped at 1."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


def mean_std(values: Sequence[float]):
    v = np.asarray(values, np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)
