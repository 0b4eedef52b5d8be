"""The validation split of kdjax.tools.heldout: the last N training records, disjoint from data.train_limit's."""

import numpy as np
import pytest

from kdjax.config.defaults import base_config
from kdjax.errors import ConfigError
from kdjax.tools.heldout import TailSource, heldout_source


class _Rows:
    description = "rows"
    image_shape = (1, 1, 1)

    def __init__(self, n):
        self.images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": np.int32(i)}


def test_tail_source_is_the_last_records_reindexed():
    tail = TailSource(_Rows(10), 7)
    assert len(tail) == 3
    assert [int(tail[i]["label"]) for i in range(3)] == [7, 8, 9]
    assert [int(r["label"]) for r in tail._getitems([2, 0])] == [9, 7]
    with pytest.raises(IndexError):
        tail[3]


def test_heldout_of_the_default_data_is_disjoint_from_the_training_part():
    c = base_config()
    tail, total = heldout_source(c, 10000)
    assert total == 60000 and len(tail) == 10000
    # record 0 of the held-out part is training record 50000, which train_limit=50000 leaves out
    from kdjax.data.sources import open_source
    with c.unlocked():
        c.data.train_limit = 0
    full, _ = open_source(c.data, "train", decode_once=False)
    np.testing.assert_array_equal(tail[0]["image"], full[50000]["image"])
    assert int(tail[9999]["label"]) == int(full[59999]["label"])
    with pytest.raises(ConfigError):
        heldout_source(c, 60000)
