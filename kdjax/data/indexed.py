"""A source whose records also carry their own dataset index as "index" (CRD memory rows, teacher caches)."""


class IndexedRecords:
    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        return dict(self._source[index], index=int(index))

    def __getattr__(self, name):  # options, image_shape, description, ... of the wrapped source
        if name.startswith("__") or name == "_source":
            raise AttributeError(name)
        return getattr(self._source, name)
