"""Data source `idx`: IDX (MNIST-format) files, the offline default data as Debian's `dataset-fashion-mnist`
installs them, or any folder of them named by `data.data_dir`."""

import gzip
import os
from typing import Optional

import numpy as np

from kdjax.data.registry import SourceKind, register_source
from kdjax.errors import ConfigError, DataError

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

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# file stems per split, as distributed by Zalando / LeCun
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but holds {len(data) - header} bytes; "
                        f"the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_file(directory: str, stem: str) -> Optional[str]:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def has_idx_split(directory: str, split: str) -> bool:
    return directory is not None and all(find_idx_file(directory, s) for s in IDX_FILES[split])


class IdxSource:
    """Random-access source over an IDX image/label pair, held in memory (Fashion-MNIST is 47 MB)."""

    def __init__(self, directory: str, split: str):
        if split not in IDX_FILES:
            raise DataError(f"IDX data has splits {sorted(IDX_FILES)}, not {split!r}")
        paths = [find_idx_file(directory, stem) for stem in IDX_FILES[split]]
        if not all(paths):
            raise DataError(f"{directory} lacks the IDX files of split {split!r}: expected "
                            f"{' and '.join(s + '[.gz]' for s in IDX_FILES[split])}")
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim == 3:
            images = images[..., None]
        if len(images) != len(labels):
            raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels")
        if len(images) == 0:
            raise DataError(f"{paths[0]}: the {split!r} split is empty")
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.labels = labels.astype(np.int32)
        self.image_shape = self.images.shape[1:]
        self.description = f"IDX files in {directory} ({split})"

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"image": self.images[index], "label": self.labels[index]}

    def _getitems(self, indices):
        """Batched read (grain's SupportsBatchedReadRandomAccessDataSource): one gather for a whole batch."""
        idx = np.asarray(indices, dtype=np.int64)
        images, labels = self.images[idx], self.labels[idx]
        return [{"image": images[k], "label": labels[k]} for k in range(len(idx))]


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


def _check(data):
    path = data.get("data_dir")
    if path and not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"config.data.data_dir: {path!r} does not exist or is not a directory; fix the path "
                        f"(or unset it to use the default data)")


register_source(SourceKind(
    "idx", _open_idx, named=lambda data: True, priority=30, check=_check,
    summary="IDX (MNIST-format) files: Debian's Fashion-MNIST, or a folder named by data.data_dir"))
