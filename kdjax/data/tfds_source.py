"""Data source `tfds`: TFDS datasets read through `tfds.data_source` (ArrayRecord files; no TensorFlow needed to read).

Images are fetched as the stored bytes and decoded here rather than by TFDS, so that an undecodable image is a
`BadImage` naming the dataset, split and record (and can be skipped), like a bad file in a list.
"""

import os
from typing import Optional

import numpy as np

from kdjax.data.decode import to_channels
from kdjax.data.decoded import EncodedImages, resolve_channels
from kdjax.data.labels import label_names_from_file
from kdjax.data.registry import SourceKind, register_source
from kdjax.errors import ConfigError, DataError


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


def prepared_names(data_dir: Optional[str]):
    """The datasets prepared under a TFDS data dir (folders holding a version with dataset_info.json)."""
    root = tfds_root(data_dir)
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if prepared_dir(n, data_dir))


class TfdsSource(EncodedImages):
    """Random-access records {"image": uint8 HWC, "label": int32} of one split of a prepared TFDS dataset.

    Each batch is one batched read (`__getitems__`) decoded in a thread pool, or the split is decoded once into
    memory (kdjax/data/decoded.py)."""

    def __init__(self, name: str, split: str, data_dir: Optional[str], *, image_key: str = "image",
                 label_key: str = "label", channels: int = 0, threads: int = 2):
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
        self.stored_channels = int(shape[-1]) if shape and shape[-1] and shape[-1] > 0 else 0
        self.channels = int(channels) or self.stored_channels
        self.threads = int(threads)
        self.image_shape = tuple(None if d is None or d < 0 else int(d) for d in shape[:2]) + (self.channels or 3,)
        self._name, self._split, self._image_key, self._label_key = name, split, image_key, label_key
        self.description = f"TFDS {name}:{split} in {where}"

    def __len__(self):
        return len(self._source)

    def _fetch(self, indices):
        records = self._source.__getitems__(list(indices)) if len(indices) > 1 else [self._source[indices[0]]]
        out = []
        for index, record in zip(indices, records):
            image, label = record[self._image_key], int(record[self._label_key])
            origin = f"TFDS {self._name}:{self._split} record {index}"
            if isinstance(image, (bytes, bytearray, memoryview)):
                out.append((bytes(image), label, origin))
            else:  # stored as an array (no encoding): already pixels
                out.append(_Pixels(np.asarray(image, np.uint8), label))
        return out

    def _decode_one(self, item):
        if isinstance(item, _Pixels):
            return {"image": to_channels(item.image, self.channels), "label": np.int32(item.label)}
        return super()._decode_one(item)


class _Pixels:
    def __init__(self, image, label):
        self.image, self.label = image, label


def resolve_name(data) -> str:
    """data.name, or (unset) the only dataset prepared in the named tfds_data_dir, or fashion_mnist."""
    name = data.get("name") or ""
    if name:
        return name
    if not data.get("tfds_data_dir"):
        return "fashion_mnist"
    found = prepared_names(data.tfds_data_dir)
    if len(found) == 1:
        return found[0]
    raise ConfigError("data.name", f"{data.tfds_data_dir!r} holds "
                                   f"{'the datasets ' + ', '.join(found) if found else 'no prepared dataset'}; set "
                                   f"data.name to the one to read" + ("" if found else " (`python -m "
                                                                                       "kdjax.tools.prepare_data` "
                                                                                       "writes one)"))


def _open_tfds(data, split):
    name, data_dir = resolve_name(data), data.get("tfds_data_dir")
    if not tfds_prepared(name, data_dir):
        raise DataError(f"no prepared TFDS dataset {name!r} in {tfds_root(data_dir)} (set config.data.tfds_data_dir "
                        f"to the directory holding {name}/; `python -m kdjax.tools.prepare_data` writes one)")
    source = TfdsSource(name, data.get(f"{split}_split", split), data_dir, channels=int(data.get("channels", 0) or 0),
                        threads=int(data.get("num_threads", 2) or 2))
    if not source.channels:  # the dataset does not declare its channels: sample the images
        source.channels = resolve_channels(data, source)
        source.image_shape = source.image_shape[:2] + (source.channels,)
    root = os.path.abspath(os.path.expanduser(tfds_root(data_dir)))
    names = label_names_from_file(data, source.num_classes, root) or source.label_names
    source.location = os.path.join(root, name)
    source.default_data = not data_dir and not data.get("name")
    source.dataset_name = name
    return source, source.num_classes or (len(names) if names else 0), names


def _open_unlabeled(data):
    return TfdsSource(resolve_name(data), data.unlabeled_split, data.get("tfds_data_dir"),
                      channels=int(data.get("channels", 0) or 0))


def _check(data):
    path = data.get("tfds_data_dir")
    if path and not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"config.data.tfds_data_dir: {path!r} does not exist or is not a directory; fix the path "
                        f"(or unset it to use the default data)")


register_source(SourceKind(
    "tfds", _open_tfds, named=lambda data: bool(data.get("tfds_data_dir")),
    fallback=lambda data: tfds_prepared(data.get("name") or "fashion_mnist", None), priority=10, check=_check,
    open_unlabeled=_open_unlabeled, unlabeled_field="unlabeled_split", field="data.tfds_data_dir",
    summary="a prepared TFDS dataset (ArrayRecord) in data.tfds_data_dir (with no data named: in $TFDS_DATA_DIR "
            "or ~/tensorflow_datasets)"))
