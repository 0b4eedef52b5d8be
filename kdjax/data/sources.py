"""Choose and open a data source from `config.data`; every source yields {"image": uint8 HWC, "label": int}.

`data.source` picks the kind: `tfds` (a prepared TFDS dataset in ArrayRecord format), `list` (PaddleClas list
files under `data.root`, optionally mixed with `data.unlabeled_list` for SSLD), `idx` (MNIST-format files), or
`auto`: a prepared TFDS directory if there is one, else list files if `data.root` is set, else IDX files
(for Fashion-MNIST: Debian's /usr/share/datasets/fashion-mnist, then `data.data_dir`).
The returned source carries `options` (see options.py) for the pipeline.
"""

import dataclasses
import os
from typing import List, Optional, Tuple

from kdjax.data.idx import IdxSource, has_idx_split
from kdjax.data.listfile import ListFileSource, read_label_names, resolve
from kdjax.data.options import check_options, options_from_config
from kdjax.data.ssld import SsldSource
from kdjax.data.tfds_source import TfdsSource, tfds_prepared, tfds_root
from kdjax.errors import ConfigError, DataError

SOURCES = ("auto", "tfds", "list", "idx")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

_HOW_TO_GET_FASHION_MNIST = (
    "Fashion-MNIST was not found. Get it one of these ways:\n"
    "  - Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (installs IDX files in "
    f"{DEBIAN_FASHION_MNIST});\n"
    "  - a prepared TFDS directory: `tfds build fashion_mnist --data_dir=DIR --file_format=array_record` on a "
    "machine with internet, or `python -m kdjax.tools.prepare_data --idx_dir=FOLDER --out_dir=DIR`, then "
    "--config.data.tfds_data_dir=DIR;\n"
    "  - the four IDX files (train-images-idx3-ubyte.gz, ...) in a folder: --config.data.data_dir=FOLDER.")


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
    source, num_classes, label_names = _OPENERS[kind](data, split)
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


def _kind(data) -> str:
    kind = data.get("source", "auto")
    if kind not in SOURCES:
        raise ConfigError("data.source", f"unknown source {kind!r}; use one of {', '.join(SOURCES)}")
    if kind != "auto":
        return kind
    if tfds_prepared(data.get("name", "fashion_mnist"), data.get("tfds_data_dir")):
        return "tfds"
    return "list" if data.get("root") else "idx"


def _open_tfds(data, split):
    name, data_dir = data.get("name", "fashion_mnist"), data.get("tfds_data_dir")
    if not tfds_prepared(name, data_dir):
        raise DataError(f"no prepared TFDS dataset {name!r} in {tfds_root(data_dir)} (set config.data.tfds_data_dir "
                        f"to the directory holding {name}/; `python -m kdjax.tools.prepare_data` writes one)")
    source = TfdsSource(name, data.get(f"{split}_split", split), data_dir)
    labels = source.label_names or (FASHION_MNIST_LABELS if name == "fashion_mnist" else None)
    return source, source.num_classes, labels


def _num_classes_for_lists(data) -> Tuple[int, Optional[List[str]]]:
    names_file = data.get("label_names_file")
    num_classes = int(data.get("num_classes") or 0)
    names = read_label_names(resolve(data.get("root"), names_file), num_classes) if names_file else None
    num_classes = num_classes or (len(names) if names else 0)
    if num_classes <= 0:
        raise ConfigError("data.num_classes", "list files need the number of classes: set data.num_classes (or "
                                              "data.label_names_file)")
    return num_classes, names


def _open_list(data, split):
    root = data.get("root")
    if not root:
        raise ConfigError("data.root", "source='list' needs the image root directory (data.root)")
    if not os.path.isdir(root):
        raise DataError(f"image root {root} (config.data.root) does not exist")
    list_path = data.get(f"{split}_list") or ("train_list.txt" if split == "train" else "val_list.txt")
    num_classes, names = _num_classes_for_lists(data)
    return ListFileSource(root, list_path, num_classes=num_classes), num_classes, names


def _open_idx(data, split):
    name = data.get("name", "fashion_mnist")
    split_name = data.get(f"{split}_split", split)
    # Fashion-MNIST: Debian's copy first, then data_dir (the documented lookup order; both hold the same files).
    candidates = [DEBIAN_FASHION_MNIST] if name == "fashion_mnist" else []
    if data.get("data_dir"):
        if not os.path.isdir(data.data_dir):
            raise ConfigError("data.data_dir", f"{data.data_dir!r} does not exist")
        candidates.append(data.data_dir)
    for directory in candidates:
        if has_idx_split(directory, split_name):
            source = IdxSource(directory, split_name)
            labels = FASHION_MNIST_LABELS if name == "fashion_mnist" else None
            num_classes = len(labels) if labels else int(source.labels.max()) + 1
            return source, num_classes, labels
    if name == "fashion_mnist":
        raise DataError(_HOW_TO_GET_FASHION_MNIST)
    raise DataError(f"no data for {name!r} split {split_name!r}: set config.data.tfds_data_dir to a TFDS data dir "
                    f"holding {name}/ (ArrayRecord), config.data.root to a folder of PaddleClas list files "
                    f"(train_list.txt, val_list.txt), or config.data.data_dir to a folder of IDX files")


_OPENERS = {"tfds": _open_tfds, "list": _open_list, "idx": _open_idx}


def _with_unlabeled(data, kind: str, labeled):
    """The SSLD mixture when an unlabeled list/split is configured, else `labeled` unchanged."""
    unlabeled_list, unlabeled_split = data.get("unlabeled_list"), data.get("unlabeled_split")
    if not unlabeled_list and not unlabeled_split:
        return labeled
    ratio = float(data.get("unlabeled_ratio", 0.5))
    if unlabeled_list:
        if kind != "list":
            raise ConfigError("data.unlabeled_list", f"needs data.source='list' (this is {kind!r}); with TFDS "
                                                     f"use data.unlabeled_split")
        unlabeled = ListFileSource(data.root, unlabeled_list, num_classes=0, labeled=False)
    else:
        if kind != "tfds":
            raise ConfigError("data.unlabeled_split", f"needs data.source='tfds' (this is {kind!r}); with list "
                                                      f"files use data.unlabeled_list")
        unlabeled = TfdsSource(data.get("name"), unlabeled_split, data.get("tfds_data_dir"))
    return SsldSource(labeled, unlabeled, ratio)


def _image_shape(source, options) -> Tuple[int, int, int]:
    shape = getattr(source, "image_shape", None)
    if shape is None:
        shape = tuple(int(v) for v in source[0]["image"].shape)
    if len(shape) == 2:
        shape = tuple(shape) + (1,)
    if options.image_size:
        return (options.image_size, options.image_size, int(shape[2]))
    return tuple(int(v) for v in shape)
