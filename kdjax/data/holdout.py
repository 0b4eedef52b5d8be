"""A validation split carved from the training split: `data.holdout` examples held out by index.

The held-out indices are a fixed function of (training-split size, `data.holdout`, `data.holdout_seed`): a seeded
permutation of the training indices whose first `holdout` entries are held out. They never depend on the run's
seed, the method or the test split, so every run of a sweep trains on the same examples and validates on the same
others, and the test split is never used to choose anything. Training reads the rest (`open_source(data, "train")`),
periodic evaluations read the held-out part (`open_source(data, "holdout")`).
"""

from typing import Tuple

import numpy as np

from kdjax.errors import ConfigError

HOLDOUT = "holdout"  # open_source's split name for the held-out part of the training split


def holdout_indices(n: int, size: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(kept, held_out): sorted, disjoint int64 indices covering range(n); `size` of them held out."""
    if not 0 < size < n:
        raise ValueError(f"cannot hold out {size} of {n} examples")
    order = np.random.Generator(np.random.PCG64(int(seed))).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


class SubsetSource:
    """Records `indices` of a source, renumbered 0..len-1 (the training rest, or the held-out examples)."""

    def __init__(self, source, indices, what: str):
        self._source, self._indices = source, np.asarray(indices, np.int64)
        self.image_shape = getattr(source, "image_shape", None)
        self.description = f"{source.description}, {what} ({len(self._indices)})"

    def __len__(self):
        return len(self._indices)

    def __getitem__(self, index):
        if not 0 <= index < len(self._indices):
            raise IndexError(index)
        return self._source[int(self._indices[index])]

    def _getitems(self, indices):
        from kdjax.data.sources import read_records

        if any(not 0 <= i < len(self._indices) for i in indices):
            raise IndexError(max(indices))
        return read_records(self._source, [int(self._indices[i]) for i in indices])


def base_split(split: str) -> str:
    """The split a requested one is read from: the held-out part comes from the training split."""
    return "train" if split == HOLDOUT else split


def apply_holdout(data, split: str, source):
    """`source` (the training split, already limited by data.train_limit) without the held-out examples for
    "train", only them for "holdout"; other splits and data.holdout=0 unchanged."""
    size = int(data.get("holdout", 0) or 0)
    if split == HOLDOUT and not size:
        raise ConfigError("data.holdout", "is 0: there is no held-out split to evaluate on; set data.holdout > 0")
    if not size or split not in ("train", HOLDOUT):
        return source
    n = len(source)
    if size >= n:
        raise ConfigError("data.holdout", f"is {size} but the training split has only {n} examples (after "
                                          f"data.train_limit); hold out fewer, e.g. {max(1, n // 6)}")
    kept, held = holdout_indices(n, size, int(data.get("holdout_seed", 0) or 0))
    if split == "train":
        return SubsetSource(source, kept, f"without {size} held out")
    return SubsetSource(source, held, f"held-out validation examples, seed {int(data.get('holdout_seed', 0))}")
