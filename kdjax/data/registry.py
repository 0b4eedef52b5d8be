"""The contract of a data source: one `SourceKind`, registered by the module that reads that kind of data.

`config.data.source` names a kind ("tfds", "list", "idx", ...) or is "auto": the data the config names wins, so
"auto" takes the one kind whose `named(data)` says its location field (`field`: data.tfds_data_dir, data.root,
data.data_dir) is set (several: an error asking for data.source); with nothing named, the first kind (in priority
order) whose `fallback(data)` has default data (a prepared TFDS dataset in the default TFDS dir, then Debian's
Fashion-MNIST). `open(data, split)` returns (records, num_classes, label_names): random-access records
{"image": uint8 HWC, "label": int} with `__len__`, `description`, `image_shape` ((None, None, C) for variable-size
images) and where they came from (`location`, `default_data`, `dataset_name`). `check(data)` checks the kind's own
config fields before any file is read. kdjax.data.sources imports every module of the package, so a new source is one file
(docs/extending.md).
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional


@dataclass(frozen=True)
class SourceKind:
    name: str
    open: Callable  # (config.data, split: "train" | "test") -> (records, num_classes, label_names or None)
    named: Callable  # (config.data) -> bool: the config names this kind's data location (its `field` is set)
    check: Optional[Callable] = None  # (config.data) -> None, raising ConfigError/DataError naming the field
    priority: int = 50  # lower is tried first by source="auto"
    open_unlabeled: Optional[Callable] = None  # (config.data) -> unlabeled records (SSLD), if this kind has them
    unlabeled_field: str = ""  # the config.data field naming them: "unlabeled_list" / "unlabeled_split"
    summary: str = ""
    fallback: Optional[Callable] = None  # (config.data) -> bool: with no data named, this kind has the default data
    field: str = ""  # the config.data field that names this kind's location, e.g. "data.data_dir"


_SOURCES: Dict[str, SourceKind] = {}


def register_source(kind: SourceKind) -> SourceKind:
    if kind.name in _SOURCES or kind.name == "auto":
        raise ValueError(f"data source {kind.name!r} registered twice (or named 'auto')")
    _SOURCES[kind.name] = kind
    return kind


def source_kinds() -> Dict[str, SourceKind]:
    """Every registered kind, in `auto` priority order (importing kdjax.data.sources registers all of them)."""
    return dict(sorted(_SOURCES.items(), key=lambda item: (item[1].priority, item[0])))
