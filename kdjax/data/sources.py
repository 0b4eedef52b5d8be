"""Choose and open a data source from `config.data`; every source yields {"image": uint8 HWC, "label": int}."""

import dataclasses
import os
from typing import List, Optional, Tuple

from kdjax.data.idx import IdxSource, has_idx_split
from kdjax.errors import ConfigError, DataError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

_HOW_TO_GET_FASHION_MNIST = (
    "Fashion-MNIST was not found. Get it one of these ways:\n"
    "  - Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (installs IDX files in "
    f"{DEBIAN_FASHION_MNIST});\n"
    "  - a prepared TFDS directory: `tfds build fashion_mnist --data_dir=DIR` on a machine with internet, then "
    "--config.data.tfds_data_dir=DIR;\n"
    "  - the four IDX files (train-images-idx3-ubyte.gz, ...) in a folder: --config.data.data_dir=FOLDER.")


@dataclasses.dataclass
class DatasetInfo:
    num_classes: int
    label_names: Optional[List[str]]
    image_shape: Tuple[int, int, int]
    description: str


def _tfds_prepared(name: str, data_dir: Optional[str]) -> bool:
    root = data_dir or os.path.expanduser("~/tensorflow_datasets")
    return os.path.isdir(os.path.join(root, name))


class TfdsSource:
    """ArrayRecord-backed TFDS split read through `tfds.data_source` (no TensorFlow needed)."""

    def __init__(self, name: str, split: str, data_dir: Optional[str]):
        import tensorflow_datasets as tfds

        try:
            self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as e:  # tfds raises assorted errors for missing or unprepared data
            raise DataError(f"cannot open TFDS dataset {name!r} split {split!r} in {data_dir or '~/tensorflow_datasets'}: "
                            f"{e}") from None
        if len(self._source) == 0:
            raise DataError(f"TFDS dataset {name!r} split {split!r} is empty")
        label = builder.info.features["label"]
        self.num_classes = label.num_classes
        self.label_names = list(label.names)
        self.description = f"TFDS {name}:{split} in {data_dir or '~/tensorflow_datasets'}"

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = self._source[index]
        return {"image": record["image"], "label": int(record["label"])}


class LimitedSource:
    """The first `limit` examples of a source (smoke tests, quick looks)."""

    def __init__(self, source, limit: int):
        self._source, self._n = source, min(limit, len(source))
        self.description = f"{source.description}, first {self._n}"

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        if index >= self._n:
            raise IndexError(index)
        return self._source[index]


def open_source(data, split: str):
    """Return (source, DatasetInfo) for `split` ("train" or "test") following `config.data`.

    `config.data.<split>_limit` > 0 keeps only the first that many examples.
    """
    source, info = _open_source(data, split)
    limit = int(data.get(f"{split}_limit", 0) or 0)
    if limit:
        source = LimitedSource(source, limit)
        info = dataclasses.replace(info, description=source.description)
    return source, info


def _open_source(data, split: str):
    name = data.get("name", "fashion_mnist")
    kind = data.get("source", "auto")
    split_name = data.get(f"{split}_split", split)
    if kind not in ("auto", "tfds", "idx"):
        raise ConfigError("data.source", f"unknown source {kind!r}; use 'auto', 'tfds' or 'idx'")

    if kind in ("auto", "tfds") and _tfds_prepared(name, data.get("tfds_data_dir")):
        source = TfdsSource(name, split_name, data.get("tfds_data_dir"))
        return source, _info(data, source, source.num_classes, source.label_names)
    if kind == "tfds":
        raise DataError(f"no prepared TFDS dataset {name!r} in {data.get('tfds_data_dir') or '~/tensorflow_datasets'} "
                        f"(set config.data.tfds_data_dir)")

    candidates = []
    if data.get("data_dir"):
        if not os.path.isdir(data.data_dir):
            raise ConfigError("data.data_dir", f"{data.data_dir!r} does not exist")
        candidates.append(data.data_dir)
    if name == "fashion_mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    for directory in candidates:
        if has_idx_split(directory, split_name):
            source = IdxSource(directory, split_name)
            labels = FASHION_MNIST_LABELS if name == "fashion_mnist" else None
            num_classes = data.get("num_classes") or (len(labels) if labels else int(source.labels.max()) + 1)
            return source, _info(data, source, num_classes, labels)
    if name == "fashion_mnist":
        raise DataError(_HOW_TO_GET_FASHION_MNIST)
    raise DataError(f"no data for {name!r} split {split_name!r}: set config.data.tfds_data_dir to a prepared TFDS "
                    f"directory or config.data.data_dir to a folder of IDX files")


def _info(data, source, num_classes, label_names):
    shape = tuple(int(v) for v in source[0]["image"].shape)
    if len(shape) == 2:
        shape = shape + (1,)
    return DatasetInfo(int(num_classes), label_names, shape, source.description)
