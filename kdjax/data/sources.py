"""Choose and open a data source from `config.data`; every source yields {"image": uint8 HWC, "label": int}.

`data.source` names a registered kind (kdjax/data/registry.py; `tfds`, `list`, `idx`) or is `auto`: the first kind,
in priority order, whose config fields name its data (a prepared TFDS directory, then list files if `data.root` is
set, then IDX files). With `data.unlabeled_list` / `unlabeled_split` the train split is an SSLD mixture. The
returned source carries `options` (see options.py) for the pipeline.
"""

import dataclasses
from typing import List, Optional, Tuple

import importlib
import pkgutil

import kdjax.data
from kdjax.data.options import check_options, options_from_config
from kdjax.data.registry import source_kinds
from kdjax.data.ssld import SsldSource
from kdjax.errors import ConfigError


@dataclasses.dataclass
class DatasetInfo:
    num_classes: int
    label_names: Optional[List[str]]
    image_shape: Tuple[int, int, int]
    description: str


def read_records(source, indices):
    """Records `indices` of `source`: through its batched read (`_getitems`, as IdxSource has) when it has one."""
    read = getattr(source, "_getitems", None)
    return read(indices) if read is not None else [source[i] for i in indices]


class LimitedSource:
    """The first `limit` examples of a source (smoke tests, quick looks)."""

    def __init__(self, source, limit: int):
        self._source, self._n = source, min(limit, len(source))
        self.image_shape = getattr(source, "image_shape", None)
        self.description = f"{source.description}, first {self._n}"

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        if index >= self._n:
            raise IndexError(index)
        return self._source[index]

    def _getitems(self, indices):
        if any(i >= self._n for i in indices):
            raise IndexError(max(indices))
        return read_records(self._source, indices)


def open_source(data, split: str):
    """Return (source, DatasetInfo) for `split` ("train" or "test") following `config.data`.

    `config.data.<split>_limit` > 0 keeps only the first that many examples. With `data.unlabeled_list` (list
    files) or `data.unlabeled_split` (TFDS) the train split is an SSLD mixture whose records carry `label_mask`.
    """
    kind = _kind(data)
    source, num_classes, label_names = kind.open(data, split)
    limit = int(data.get(f"{split}_limit", 0) or 0)
    if limit:
        source = LimitedSource(source, limit)
    if split == "train":
        source = _with_unlabeled(data, kind, source)
    num_classes = int(data.get("num_classes") or num_classes)
    options = options_from_config(data, num_classes)
    check_options(options, source.image_shape)
    source.options = options
    return source, DatasetInfo(num_classes, label_names, _image_shape(source, options), source.description)


def check_data_config(data) -> None:
    """config.data before any file is read: the source name, and every registered source's own fields."""
    _kind(data)  # an unknown data.source is refused here
    for kind in source_kinds().values():
        if kind.check is not None:
            kind.check(data)


def _kind(data):
    kinds = source_kinds()
    name = data.get("source", "auto")
    if name == "auto":
        return next(kind for kind in kinds.values() if kind.named(data))
    if name not in kinds:
        raise ConfigError("data.source", f"unknown source {name!r}; use one of {', '.join(['auto'] + list(kinds))}")
    return kinds[name]


def _with_unlabeled(data, kind, labeled):
    """The SSLD mixture when an unlabeled list/split is configured, else `labeled` unchanged."""
    for field in ("unlabeled_list", "unlabeled_split"):
        if not data.get(field):
            continue
        if kind.unlabeled_field != field:
            readers = [k.name for k in source_kinds().values() if k.unlabeled_field == field]
            raise ConfigError(f"data.{field}", f"needs data.source={' or '.join(map(repr, readers))} (this is "
                                               f"{kind.name!r})")
        return SsldSource(labeled, kind.open_unlabeled(data), float(data.get("unlabeled_ratio", 0.5)))
    return labeled


def _image_shape(source, options) -> Tuple[int, int, int]:
    shape = getattr(source, "image_shape", None)
    if shape is None:
        shape = tuple(int(v) for v in source[0]["image"].shape)
    if len(shape) == 2:
        shape = tuple(shape) + (1,)
    if options.image_size:
        return (options.image_size, options.image_size, int(shape[2]))
    return tuple(int(v) for v in shape)



# every module of kdjax.data is imported, so each source module registers its SourceKind (a new source is one file)
for _module in pkgutil.iter_modules(kdjax.data.__path__):
    importlib.import_module(f"kdjax.data.{_module.name}")
