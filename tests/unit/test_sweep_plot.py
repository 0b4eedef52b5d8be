"""The report's gain plot keeps the ordinary methods readable when one method collapses: the axis spans the others'
95% intervals and the collapsed one is labelled with its value at the edge."""

import matplotlib

matplotlib.use("Agg")

from kdjax.tools import sweep_report  # noqa: E402


def _stats(mean, half):
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def test_an_outlier_is_labelled_off_scale_and_the_others_set_the_axis():
    import matplotlib.pyplot as plt

    gains = {"a": 0.5, "b": -0.2, "c": 0.3, "d": 0.1, "collapsed": -19.0}
    results = {"stats": {w: {m: _stats(g, 0.4) for m, g in gains.items()} for w in ("last", "best")}}
    fig, ax = plt.subplots()
    sweep_report._clip_outliers(ax, results, list(gains))
    low, high = ax.get_ylim()
    assert -1.5 < low < -0.6 and 0.9 < high < 2.0  # the others' intervals (−0.6 … 0.9) plus a margin
    assert [t.get_text() for t in ax.texts] == ["-19.0 (off scale)"]
    plt.close(fig)
    fig, ax = plt.subplots()  # no outlier: matplotlib's own limits, nothing labelled
    gains["collapsed"] = -0.3
    results = {"stats": {w: {m: _stats(g, 0.4) for m, g in gains.items()} for w in ("last", "best")}}
    sweep_report._clip_outliers(ax, results, list(gains))
    assert not ax.texts
    plt.close(fig)
