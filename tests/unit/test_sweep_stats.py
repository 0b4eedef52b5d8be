"""The sweep's paired statistics against an independent float64 computation, its grids and trial choice."""

import math

import numpy as np
import pytest

from conftest import load_config
from kdjax.errors import ConfigError
from kdjax.tools import sweep_grid, sweep_stats


def _t_pdf(x, df):
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(c - (df + 1) / 2 * np.log1p(x * x / df))


def _t_cdf(x, df):
    """Student t CDF by Simpson integration of the density from 0 (float64, no scipy)."""
    grid = np.linspace(0.0, abs(x), 20001)
    y = _t_pdf(grid, df)
    h = grid[1] - grid[0]
    half = h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())
    return 0.5 + math.copysign(half, x)


def _t_quantile(q, df):
    lo, hi = 0.0, 50.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def test_paired_statistics_match_the_textbook_formulas():
    method = {0: 89.10, 1: 88.70, 2: 89.45, 3: 88.95, 4: 89.30, 7: 99.0}  # seed 7: no baseline run, not paired
    base = {0: 88.60, 1: 88.65, 2: 88.90, 3: 88.80, 4: 88.50, 5: 80.0}
    st = sweep_stats.paired(method, base)
    d = np.array([0.50, 0.05, 0.55, 0.15, 0.80])
    n = 5
    mean = d.sum() / n
    sd = math.sqrt(((d - mean) ** 2).sum() / (n - 1))
    se = sd / math.sqrt(n)
    t = mean / se
    p = 2 * (1 - _t_cdf(abs(t), n - 1))
    half = _t_quantile(0.975, n - 1) * se
    assert st["seeds"] == [0, 1, 2, 3, 4] and st["n"] == 5
    np.testing.assert_allclose([st["mean"], st["sd"], st["se"], st["t"], st["d_z"]], [mean, sd, se, t, mean / sd],
                               rtol=1e-12)
    np.testing.assert_allclose(st["p"], p, rtol=1e-6)
    np.testing.assert_allclose(st["ci95"], [mean - half, mean + half], rtol=1e-6)
    assert st["p"] < 0.05  # this pairing finds a gain a pooled two-sample comparison of 5 runs would call noise
    assert sweep_stats.paired({0: 1.0}, {0: 2.0}) is None


def test_holm_adjustment():
    adjusted = sweep_stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, made monotone
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_grid_trials_tied_paths_budgets_and_choice():
    cfg = load_config("configs/sweep_fashion_mnist.py")
    trials = sweep_grid.trials(cfg, "dkd_ls")
    assert len(trials) == 4
    assert trials[1] == {"losses.dkd.params.alpha": 1.0, "losses.dkd.params.beta": 1.0,
                         "losses.dkd.params.temperature": 4.0}
    sweep_grid.check_budgets(cfg)  # every shipped grid has the baseline's 4 trials
    with cfg.unlocked():
        cfg.grids.kd = (("losses.kd.weight", (0.5, 0.9, 1.5)),)
    with pytest.raises(ConfigError, match="grids.kd"):
        sweep_grid.check_budgets(cfg)
    from kdjax.tools import sweep_configs

    c = sweep_configs.run_config(cfg, "kd", 3, "/t", {"losses.kd.params.temperature": 2.0, "optim.lr": 0.05},
                         final_test=False)
    assert (c.losses.kd.params.temperature, c.optim.lr, c.seed, c.train.final_test) == (2.0, 0.05, 3, False)
    with pytest.raises(ConfigError, match="grids.kd"):
        sweep_configs.run_config(cfg, "kd", 0, "/t", {"losses.kdd.weight": 1.0})
    assert sweep_grid.choose([0.8, 0.9, 0.9, 0.85]) == 1  # the earliest best
