"""The validation split: held out of the training split by index, disjoint, deterministic, never the test split."""

import numpy as np
import pytest

from conftest import load_config
from kdjax.data.holdout import holdout_indices
from kdjax.errors import ConfigError


def test_indices_are_disjoint_cover_everything_and_are_fixed():
    kept, held = holdout_indices(1000, 150, seed=0)
    assert len(held) == 150 and len(kept) == 850
    assert not set(kept) & set(held)
    assert sorted(set(kept) | set(held)) == list(range(1000))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)
    again_kept, again_held = holdout_indices(1000, 150, seed=0)
    np.testing.assert_array_equal(held, again_held)
    np.testing.assert_array_equal(kept, again_kept)
    assert not np.array_equal(held, holdout_indices(1000, 150, seed=1)[1])
    # spread over the whole split, not its first or last examples (classes stay balanced in sorted datasets)
    assert held.min() < 100 and held.max() > 900


def _data(**fields):
    c = load_config("configs/kd.py")
    with c.unlocked():
        c.data.train_limit, c.data.test_limit = 600, 200
        c.data.update(fields)
    return c.data


def _images(source):
    return np.stack([np.asarray(source[i]["image"]) for i in range(len(source))])


def test_open_source_splits_the_training_images_and_leaves_the_test_split_alone():
    from kdjax.data.identity import fingerprint
    from kdjax.data.sources import open_source

    full, _ = open_source(_data(), "train")
    test_plain, _ = open_source(_data(), "test")
    train, _ = open_source(_data(holdout=100), "train")
    val, _ = open_source(_data(holdout=100), "holdout")
    test, _ = open_source(_data(holdout=100), "test")
    assert (len(train), len(val), len(test)) == (500, 100, 200)
    kept, held = holdout_indices(600, 100, seed=0)
    everything = _images(full)
    np.testing.assert_array_equal(_images(train), everything[kept])
    np.testing.assert_array_equal(_images(val), everything[held])
    assert [val[i]["label"] for i in range(5)] == [full[int(j)]["label"] for j in held[:5]]
    assert fingerprint(test) == fingerprint(test_plain)  # the test split is the test split
    # opened again: the same examples held out
    np.testing.assert_array_equal(_images(open_source(_data(holdout=100), "holdout")[0]), everything[held])


def test_holdout_too_large_or_missing_is_refused_naming_the_field():
    from kdjax.data.sources import open_source

    with pytest.raises(ConfigError, match="data.holdout"):
        open_source(_data(holdout=600), "train")
    with pytest.raises(ConfigError, match="data.holdout"):
        open_source(_data(), "holdout")
