"""A source whose records also carry their own dataset index as "index" (CRD memory rows, teacher caches)."""

from kdjax.data.sources import read_records


class IndexedRecords:
    """Records that also carry their own index as "index"; the pipeline batches it as int32 [N].

    Mixing labeled and unlabeled sources (SSLD) is refused: their records have no single index space."""

    def __init__(self, source, needed_by: str = "losses"):
        if hasattr(source, "mixed_dataset"):
            from kdjax.errors import ConfigError

            raise ConfigError(needed_by, "needs the dataset index of every training example; SSLD's mixed "
                                         "labeled/unlabeled data has none: drop data.unlabeled_* or that setting")
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        return dict(self._source[index], index=int(index))

    def _getitems(self, indices):
        """Batched read (kdjax.data.pipeline.GatherBatches): the wrapped source's own when it has one."""
        return [dict(r, index=int(i)) for r, i in zip(read_records(self._source, indices), indices)]

    def __getattr__(self, name):  # options, image_shape, description, ... of the wrapped source
        if name.startswith("__") or name in ("_source", "_getitems"):
            raise AttributeError(name)
        return getattr(self._source, name)
