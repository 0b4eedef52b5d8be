"""SSLD: a labeled source mixed with an unlabeled one in a fixed ratio, each record flagged by `label_mask`.

PaddleClas' SSLD recipe distils on ImageNet plus unlabeled images (`train_list_unlabel.txt`, label 0); losses
that need ground truth ignore rows whose `label_mask` is 0. The training mixture is built with grain's
deterministic `MapDataset.mix` over two independently shuffled, repeated streams, so every epoch sees each
labeled image once and keeps walking through (and reshuffling) the unlabeled list rather than reusing the same
subset.
"""

import math

import grain
import numpy as np

from kdjax.errors import ConfigError


class WithMask:
    """Adds `label_mask` to a record (a class, not a lambda, so worker processes can unpickle it)."""

    def __init__(self, value: float):
        self.value = np.float32(value)

    def __call__(self, record):
        return dict(record, label_mask=self.value)


class SsldSource:
    """A labeled and an unlabeled source; `ratio` is the fraction of training records taken from the unlabeled.

    One epoch is `len(self)` records: every labeled record once plus the unlabeled share that goes with it.
    Indexing it directly (as evaluation or a quick look would) gives the labeled records first, then unlabeled
    ones; training uses `mixed_dataset`.
    """

    def __init__(self, labeled, unlabeled, ratio: float):
        if not 0.0 < ratio < 1.0:
            raise ConfigError("data.unlabeled_ratio", f"{ratio} is not in (0, 1): it is the fraction of each batch "
                                                      f"drawn from the unlabeled list")
        self.labeled, self.unlabeled, self.ratio = labeled, unlabeled, float(ratio)
        self.image_shape = getattr(labeled, "image_shape", None)
        self._length = int(math.ceil(len(labeled) / (1.0 - self.ratio)))
        self.description = (f"{labeled.description} + {unlabeled.description} as unlabeled "
                            f"({100 * self.ratio:.0f}% of records)")

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        index = int(index) % self._length
        n = len(self.labeled)
        if index < n:
            return dict(self.labeled[index], label_mask=np.float32(1))
        return dict(self.unlabeled[(index - n) % len(self.unlabeled)], label_mask=np.float32(0))

    def mixed_dataset(self, seed: int, records: int, wrap=lambda s: s) -> grain.MapDataset:
        """A shuffled stream of at least `records` records, labeled and unlabeled interleaved by the ratio.

        `wrap` is applied to each underlying source (bad-image substitution stays inside one list).
        """
        parts = []
        for k, (source, share, mask) in enumerate(((self.labeled, 1.0 - self.ratio, 1.0),
                                                   (self.unlabeled, self.ratio, 0.0))):
            repeats = math.ceil(records * share / len(source)) + 1
            ds = grain.MapDataset.source(wrap(source)).shuffle(seed=(seed + 7919 * k) % 2**32).repeat(repeats)
            parts.append(ds.map(WithMask(mask)))
        return grain.MapDataset.mix(parts, weights=[1.0 - self.ratio, self.ratio])
