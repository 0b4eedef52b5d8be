"""A validation split carved from the training data: train on all but the last N training images, score on them.

kdjax evaluates on the test split only; deciding a config on test would tune on it. `train_and_validate` runs the
config exactly as `kdjax.main` does (kdjax.train.run: teacher first, then distillation) with
`data.train_limit = len(train) - N`, then reports top-1 of the exported model on training images [len - N, len).
"""

import copy
import os


class TailSource:
    """Records [start, len(source)) of a source, re-indexed from 0 (the held-out tail of the training split)."""

    def __init__(self, source, start: int):
        self._source, self._start = source, int(start)
        self._n = len(source) - self._start
        self.image_shape = getattr(source, "image_shape", None)
        self.description = f"{source.description}, records {self._start}..{len(source) - 1}"

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._source[self._start + index]

    def _getitems(self, indices):
        from kdjax.data.sources import read_records

        if any(not 0 <= i < self._n for i in indices):
            raise IndexError(max(indices))
        return read_records(self._source, [self._start + int(i) for i in indices])


def heldout_source(config, heldout: int):
    """(the training split's last `heldout` records, the full training split's length)."""
    from kdjax.data.sources import open_source
    from kdjax.errors import ConfigError

    data = copy.deepcopy(config.data)
    with data.unlocked():
        data.train_limit = 0
    full, _ = open_source(data, "train")
    if not 0 < heldout < len(full):
        raise ConfigError("heldout", f"{heldout} held-out images out of {len(full)} training images; give 0 < N < "
                                     f"{len(full)}")
    return TailSource(full, len(full) - heldout), len(full)


def train_and_validate(config, workdir: str, heldout: int, teacher: str = None) -> dict:
    """Train on the first len - `heldout` training images (or the first data.train_limit, if fewer); returns
    {"val_top1": ..., "val_count": ..., "train_images": ..., "seed": ..., "workdir": ...}.

    `teacher`: an export dir for every init='train' model (else trained first, as kdjax.train.run does)."""
    from kdjax.config.check import check
    from kdjax.errors import ConfigError
    from kdjax.train import run
    from kdjax.trainer import Trainer, evaluate_split

    config = copy.deepcopy(config)
    tail, total = heldout_source(config, heldout)
    limit = int(config.data.get("train_limit", 0) or 0)
    if limit > total - heldout:
        raise ConfigError("data.train_limit", f"{limit} training images overlap the last {heldout} held out; give "
                                              f"at most {total - heldout} (0: all of them)")
    with config.unlocked():
        config.data.train_limit = limit or total - heldout  # a smaller limit: a subset, still disjoint
        if teacher:
            for m in config.models.values():
                if m.init == "train":
                    m.init = teacher
    run(config, workdir)
    distill = copy.deepcopy(config)
    with distill.unlocked():
        for name, m in distill.models.items():
            if m.init == "train":
                m.init = os.path.join(workdir, "pretrain", name, "export")
    checked = check(distill)
    trainer = Trainer(distill, workdir, checked.train, checked.test, checked.info, "validate")
    tail.options = checked.test.options  # evaluated the test split's way (no augmentation)
    state, frozen, _ = trainer.restore_latest()
    scores = evaluate_split(trainer.parallel, trainer._jit_eval_step(state, frozen), state.params,
                            state.batch_stats, frozen, tail, batch_size=int(distill.train.eval_batch_size))
    name = distill.export_model
    return {"val_top1": float(scores[f"{name}/top1"]), "val_count": int(scores["count"]),
            "train_images": int(config.data.train_limit), "seed": int(config.seed), "workdir": os.path.abspath(workdir)}
