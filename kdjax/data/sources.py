"""Choose and open a data source from `config.data`; every source yields {"image": uint8 HWC, "label": int}.

`data.source` names a registered kind (kdjax/data/registry.py; `tfds`, `list`, `idx`) or is `auto`: the data you
name wins. `auto` reads the kind whose location field is set (`data.tfds_data_dir`, `data.root`, `data.data_dir`;
naming several is an error asking for `data.source`); only with none of them set does it fall back to the default
data (a prepared TFDS dataset in the default TFDS dir, else Debian's Fashion-MNIST IDX files). With
`data.unlabeled_list` / `unlabeled_split` the train split is an SSLD mixture. The returned source carries `options`
(see options.py) for the pipeline, and the DatasetInfo says what was read (identity.py).
"""

import dataclasses
from typing import List, Optional, Tuple

import importlib
import pkgutil

import ml_collections

import kdjax.data
from kdjax.data.holdout import apply_holdout, base_split
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
    identity: Optional[dict] = None   # what was read (identity.py); "train"/"test": split sizes and fingerprints
    reopen: Optional[dict] = None     # config.data fields that open the test split again (kdjax.infer)
    mean: Optional[tuple] = None      # the normalisation (config, or computed from the training images: stats.py)
    std: Optional[tuple] = None
    stats: Optional[dict] = None      # pixel statistics of the training images
    normalization: str = "unset"      # "config" | "computed"
    preprocess: Optional[dict] = None  # the evaluation preprocessing an export records (preprocess.py)


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


def open_source(data, split: str, *, channels: int = 0, decode_once: bool = True):
    """Return (source, DatasetInfo) for `split` ("train", "test", or "holdout": the validation examples that
    `data.holdout` removes from "train", kdjax/data/holdout.py) following `config.data`.

    `config.data.<split>_limit` > 0 keeps only the first that many examples. With `data.unlabeled_list` (list
    files) or `data.unlabeled_split` (TFDS) the train split is an SSLD mixture whose records carry `label_mask`.
    `channels` (when data.channels is 0) makes the images that many channels: the test split takes the training
    split's, an export's evaluation the export's. `decode_once`: decode the split into memory when it fits
    `data.decode_once_mb` (decoded.py).
    """
    from kdjax.data.identity import dataset_identity, reopen_fields, split_identity

    if channels and not int(data.get("channels", 0) or 0):
        data = _with(data, channels=int(channels))
    kind = _kind(data)
    read = base_split(split)  # "holdout": part of the training split (holdout.py)
    source, num_classes, label_names = kind.open(data, read)
    limit = int(data.get(f"{read}_limit", 0) or 0)
    if limit:
        source = LimitedSource(source, limit)
    if decode_once:
        _decode_once(source, data)
    source = apply_holdout(data, split, source)
    if split == "train":
        source = _with_unlabeled(data, kind, source)
    num_classes = int(data.get("num_classes") or num_classes)
    shape = getattr(source, "image_shape", None)
    options = options_from_config(data, num_classes, default_data=bool(getattr(_inner(source), "default_data", 0)),
                                  image_shape=shape)
    check_options(options, shape)
    source.options = options
    image_shape = _image_shape(source, options)
    identity = dataset_identity(kind.name, source, num_classes, label_names, image_shape[-1])
    identity[split] = split_identity(source, data.get(f"{read}_split", read))
    info = DatasetInfo(num_classes, label_names, image_shape, source.description, identity=identity,
                       reopen=reopen_fields(data, kind.name, _inner(source), split) if split == "test" else None)
    return source, info


def _with(data, **fields):
    copy = ml_collections.ConfigDict(data.to_dict() if hasattr(data, "to_dict") else dict(data))
    copy.update(fields)
    return copy


def _inner(source):
    from kdjax.data.identity import innermost

    return innermost(getattr(source, "labeled", source))


def _decode_once(source, data):
    """Decode the split (its first `len(source)` records) into memory when it fits data.decode_once_mb."""
    budget = float(data.get("decode_once_mb", 1024) or 0)
    inner = _inner(source)
    if budget > 0 and hasattr(inner, "decode_all") and inner.decode_all(len(source), budget):
        images = inner.in_memory_images()
        size = f"{images.nbytes / 2 ** 20:.0f} MB, " if images is not None else ""
        _say(f"decoded {inner.decoded} images of {inner.description} into memory ({size}{inner.decode_seconds:.1f} s; "
             f"data.decode_once_mb={budget:g})")


def _say(message: str):
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)


def check_data_config(data) -> None:
    """config.data before any file is read: the source name, and every registered source's own fields."""
    _kind(data)  # an unknown data.source is refused here
    for kind in source_kinds().values():
        if kind.check is not None:
            kind.check(data)


def _kind(data):
    """The source kind to read: data.source, or (auto) the one whose location the config names, or the default."""
    kinds = source_kinds()
    name = data.get("source", "auto")
    if name != "auto":
        if name not in kinds:
            raise ConfigError("data.source", f"unknown source {name!r}; use one of "
                                             f"{', '.join(['auto'] + list(kinds))}")
        return kinds[name]
    named = [kind for kind in kinds.values() if kind.named(data)]
    if len(named) > 1:
        fields = ", ".join(f"{k.field}={data.get(k.field.split('.')[-1])!r}" for k in named)
        raise ConfigError("data.source", f"is 'auto' but the config names data for several sources ({fields}); "
                                         f"set data.source to {' or '.join(repr(k.name) for k in named)}, or unset "
                                         f"the others")
    if named:
        return named[0]
    return next(kind for kind in kinds.values() if kind.fallback is not None and kind.fallback(data))


def _with_unlabeled(data, kind, labeled):
    """The SSLD mixture when an unlabeled list/split is configured, else `labeled` unchanged."""
    for field in ("unlabeled_list", "unlabeled_split"):
        if not data.get(field):
            continue
        if kind.unlabeled_field != field:
            readers = [k.name for k in source_kinds().values() if k.unlabeled_field == field]
            raise ConfigError(f"data.{field}", f"needs data.source={' or '.join(map(repr, readers))} (this is "
                                               f"{kind.name!r})")
        unlabeled = kind.open_unlabeled(data)
        if hasattr(unlabeled, "channels"):  # the labeled images' channels
            unlabeled.channels = int(getattr(_inner(labeled), "channels", 0) or unlabeled.channels)
            unlabeled.image_shape = tuple(unlabeled.image_shape[:2]) + (unlabeled.channels or 3,)
        return SsldSource(labeled, unlabeled, float(data.get("unlabeled_ratio", 0.5)))
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
