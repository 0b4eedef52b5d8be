"""Data source `idx`: IDX (MNIST-format) files in the folder `data.data_dir` names, or, when the config names no
data at all, the offline default: Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it."""

import gzip
import os
from typing import Optional

import numpy as np

from kdjax.data.decode import scale_to_uint8, to_channels
from kdjax.data.labels import label_names_from_file
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
    return directory is not None and split in IDX_FILES and all(find_idx_file(directory, s) for s in IDX_FILES[split])


class IdxSource:
    """Random-access source over an IDX image/label pair, held in memory (Fashion-MNIST is 47 MB)."""

    def __init__(self, directory: str, split: str, channels: int = 0):
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
        if images.dtype != np.uint8:  # scaled by the range of their type, as the image decoder scales
            images = scale_to_uint8(images, paths[0], "F" if images.dtype.kind == "f" else "I")
        self.images = np.ascontiguousarray(to_channels_all(images, channels))
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


def to_channels_all(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [N, H, W, C] → `channels` (0: unchanged), in chunks (the same conversion the image decoder applies)."""
    if not channels or channels == images.shape[-1]:
        return images
    return np.concatenate([to_channels(images[i:i + 8192], channels) for i in range(0, len(images), 8192)])


def is_default_fashion_mnist(directory: str) -> bool:
    return os.path.realpath(directory) == os.path.realpath(DEBIAN_FASHION_MNIST)


def _open_idx(data, split):
    name = data.get("name") or ""
    split_name = data.get(f"{split}_split", split)
    channels = int(data.get("channels", 0) or 0)
    named = data.get("data_dir")
    if named:  # the folder the config names is what is read, whatever data.name says
        directory = os.path.abspath(os.path.expanduser(named))
        if not os.path.isdir(directory):
            raise ConfigError("data.data_dir", f"{named!r} does not exist")
        if not has_idx_split(directory, split_name):
            raise ConfigError("data.data_dir", f"{named!r} lacks the IDX files of split {split_name!r}: expected "
                                               f"{' and '.join(s + '[.gz]' for s in IDX_FILES[split_name])}"
                              if split_name in IDX_FILES else f"IDX data has splits {sorted(IDX_FILES)}, not "
                                                              f"{split_name!r} (data.{split}_split)")
        default = False
    elif name in ("", "fashion_mnist"):  # nothing named: the offline default
        directory, default = DEBIAN_FASHION_MNIST, True
        if not has_idx_split(directory, split_name):
            raise DataError(_HOW_TO_GET_FASHION_MNIST)
    else:
        raise DataError(f"no data for {name!r} split {split_name!r}: set config.data.tfds_data_dir to a TFDS data "
                        f"dir holding {name}/ (ArrayRecord), config.data.root to a folder of PaddleClas list files "
                        f"(train_list.txt, val_list.txt), or config.data.data_dir to a folder of IDX files")
    source = IdxSource(directory, split_name, channels)
    names = label_names_from_file(data, int(data.get("num_classes") or 0), directory)
    if names is None and default:
        names = FASHION_MNIST_LABELS
    num_classes = int(data.get("num_classes") or 0) or (len(names) if names else int(source.labels.max()) + 1)
    source.location, source.default_data = directory, default
    source.dataset_name = name or ("fashion_mnist" if default else os.path.basename(directory.rstrip("/")))
    return source, num_classes, names


def _check(data):
    path = data.get("data_dir")
    if path and not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"config.data.data_dir: {path!r} does not exist or is not a directory; fix the path "
                        f"(or unset it to use the default data)")


register_source(SourceKind(
    "idx", _open_idx, named=lambda data: bool(data.get("data_dir")), fallback=lambda data: True, priority=30,
    check=_check, field="data.data_dir",
    summary="IDX (MNIST-format) files in data.data_dir; with no data named, Debian's Fashion-MNIST"))
