"""Data source `tfds`: TFDS datasets read through `tfds.data_source` (ArrayRecord files; no TensorFlow needed to read).

Images are fetched as the stored bytes and decoded here rather than by TFDS, so that an undecodable image is a
`BadImage` naming the dataset, split and record (and can be skipped), like a bad file in a list.
"""

import os
from typing import Optional

from kdjax.data.decode import decode_image
from kdjax.data.idx import FASHION_MNIST_LABELS
from kdjax.data.registry import SourceKind, register_source
from kdjax.errors import DataError


def tfds_root(data_dir: Optional[str]) -> str:
    return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def tfds_prepared(name: str, data_dir: Optional[str]) -> bool:
    """Whether `name` (possibly `name/config:version`) has been prepared under the TFDS data dir."""
    base = name.split(":")[0].split("/")[0]
    return os.path.isdir(os.path.join(tfds_root(data_dir), base))


def _version_key(version: str):
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def prepared_dir(name: str, data_dir: Optional[str]) -> Optional[str]:
    """DIR/name[/config]/version holding dataset_info.json: the requested version or the newest on disk.

    Reading what is on disk (rather than what a registered builder class expects) lets a dataset written by
    kdjax.tools.prepare_data under a registered name such as fashion_mnist be read at its own version.
    """
    base, _, version = name.partition(":")
    directory = os.path.join(tfds_root(data_dir), base)
    if not os.path.isdir(directory):
        return None
    versions = [version] if version else sorted(os.listdir(directory), key=_version_key, reverse=True)
    for v in versions:
        if os.path.isfile(os.path.join(directory, v, "dataset_info.json")):
            return os.path.join(directory, v)
    return None


class TfdsSource:
    """Random-access records {"image": uint8 HWC, "label": int32} of one split of a prepared TFDS dataset."""

    def __init__(self, name: str, split: str, data_dir: Optional[str], *, image_key: str = "image",
                 label_key: str = "label"):
        import tensorflow_datasets as tfds

        where = tfds_root(data_dir)
        try:
            on_disk = prepared_dir(name, data_dir)
            builder = tfds.builder_from_directory(on_disk) if on_disk else tfds.builder(name, data_dir=data_dir)
            features = builder.info.features
            decoders = {image_key: tfds.decode.SkipDecoding()} if image_key in features else None
            self._source = builder.as_data_source(split=split, decoders=decoders)
        except Exception as e:  # tfds raises assorted errors for missing, unprepared or non-ArrayRecord data
            raise DataError(f"cannot open TFDS dataset {name!r} split {split!r} in {where}: "
                            f"{type(e).__name__}: {e}. Prepare it in ArrayRecord format (`tfds build {name} "
                            f"--file_format=array_record`, or `python -m kdjax.tools.prepare_data`)") from None
        if image_key not in features or label_key not in features:
            raise DataError(f"TFDS dataset {name!r} has features {sorted(features.keys())}; kdjax needs "
                            f"{image_key!r} and {label_key!r}")
        if len(self._source) == 0:
            raise DataError(f"TFDS dataset {name!r} split {split!r} in {where} is empty")
        label = features[label_key]
        self.num_classes = int(getattr(label, "num_classes", 0) or 0)
        names = list(getattr(label, "names", []) or [])
        # ClassLabel(num_classes=N) without names reports "0".."N-1": no real names then.
        self.label_names = None if names == [str(i) for i in range(len(names))] else names
        shape = tuple(features[image_key].shape)
        self.channels = int(shape[-1]) if shape and shape[-1] else 3
        self.image_shape = tuple(None if d is None or d < 0 else int(d) for d in shape[:2]) + (self.channels,)
        self._name, self._split, self._image_key, self._label_key = name, split, image_key, label_key
        self.description = f"TFDS {name}:{split} in {where}"

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        index = int(index)
        record = self._source[index]
        image = record[self._image_key]
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_image(bytes(image), f"TFDS {self._name}:{self._split} record {index}", self.channels)
        elif image.ndim == 2:
            image = image[..., None]
        return {"image": image, "label": int(record[self._label_key])}


def _open_tfds(data, split):
    name, data_dir = data.get("name", "fashion_mnist"), data.get("tfds_data_dir")
    if not tfds_prepared(name, data_dir):
        raise DataError(f"no prepared TFDS dataset {name!r} in {tfds_root(data_dir)} (set config.data.tfds_data_dir "
                        f"to the directory holding {name}/; `python -m kdjax.tools.prepare_data` writes one)")
    source = TfdsSource(name, data.get(f"{split}_split", split), data_dir)
    labels = source.label_names or (FASHION_MNIST_LABELS if name == "fashion_mnist" else None)
    return source, source.num_classes, labels


def _open_unlabeled(data):
    return TfdsSource(data.get("name"), data.unlabeled_split, data.get("tfds_data_dir"))


def _check(data):
    path = data.get("tfds_data_dir")
    if path and not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"config.data.tfds_data_dir: {path!r} does not exist or is not a directory; fix the path "
                        f"(or unset it to use the default data)")


register_source(SourceKind(
    "tfds", _open_tfds, named=lambda data: tfds_prepared(data.get("name", "fashion_mnist"), data.get("tfds_data_dir")),
    priority=10, check=_check, open_unlabeled=_open_unlabeled, unlabeled_field="unlabeled_split",
    summary="a prepared TFDS dataset (ArrayRecord) in data.tfds_data_dir"))
