"""Write an image-classification dataset in TFDS's on-disk format (ArrayRecord shards + dataset_info.json).

`tfds.data_source(name, data_dir=DIR)` (and `source=tfds` here) then reads it back without TensorFlow. We write
the files ourselves because TFDS's own writers need TensorFlow (to encode arrays) or extra packages; the record
encoding (a tf.train.Example proto) and the metadata come from TFDS's feature classes, so the result is what
`tfds build --file_format=array_record` would produce for features {"image": Image, "label": ClassLabel}.
"""

import dataclasses
import io
import os
import shutil
from typing import Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image

from kdjax.errors import DataError

FILE_FORMAT = "array_record"
FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def encode_png(image: np.ndarray) -> bytes:
    """Lossless bytes for an array image (TFDS's Image feature stores encoded images only)."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


@dataclasses.dataclass
class SplitRecords:
    """One split to write: `records` yields (encoded image bytes, label); `count` of them."""

    name: str
    records: Iterable
    count: int


class TfdsWriter:
    """Writes DIR/name/version/ with one ArrayRecord file set per split."""

    def __init__(self, data_dir: str, name: str, *, num_classes: int, label_names: Optional[Sequence[str]] = None,
                 image_shape=(None, None, 3), encoding: str = "jpeg", version: str = "1.0.0",
                 description: str = "", examples_per_shard: int = 10_000, overwrite: bool = False):
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import example_serializer

        self.directory = os.path.join(data_dir, name, version)
        if os.path.exists(os.path.join(self.directory, "dataset_info.json")):
            if not overwrite:
                raise DataError(f"{self.directory} already holds a dataset; pass --overwrite to replace it")
            shutil.rmtree(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self.name, self.version, self.description = name, version, description
        label = tfds.features.ClassLabel(names=list(label_names)) if label_names else \
            tfds.features.ClassLabel(num_classes=num_classes)
        self._label = label
        self._declare_images(image_shape, encoding)
        self._serializer = example_serializer.ExampleSerializer(self.features.get_serialized_info())
        self.examples_per_shard = max(1, int(examples_per_shard))
        self.num_classes = num_classes
        self._splits: List = []

    def _declare_images(self, image_shape, encoding):
        import tensorflow_datasets as tfds

        self.features = tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=tuple(image_shape), encoding_format=encoding),
            "label": self._label,
        })

    def _shard_path(self, split: str, shard: int, shards: int) -> str:
        return os.path.join(self.directory, f"{self.name}-{split}.{FILE_FORMAT}-{shard:05d}-of-{shards:05d}")

    def write_split(self, split: SplitRecords) -> int:
        """Write one split; returns the number of records written (bad ones may have been dropped upstream)."""
        from array_record.python.array_record_module import ArrayRecordWriter
        from tensorflow_datasets.core.proto import dataset_info_pb2

        if split.count == 0:
            raise DataError(f"split {split.name!r} is empty")
        shards = -(-split.count // self.examples_per_shard)
        lengths, num_bytes, writer, written = [], 0, None, 0
        tmp_paths = []
        for image_bytes, label in split.records:
            if writer is None or lengths[-1] == self.examples_per_shard:
                if writer is not None:
                    writer.close()
                tmp_paths.append(self._shard_path(split.name, len(lengths), shards) + ".tmp")
                writer = ArrayRecordWriter(tmp_paths[-1], "group_size:1")
                lengths.append(0)
            example = self.features.encode_example({"image": image_bytes, "label": int(label)})
            data = self._serializer.serialize_example(example)
            writer.write(data)
            lengths[-1] += 1
            num_bytes += len(data)
            written += 1
        if writer is not None:
            writer.close()
        if not written:
            raise DataError(f"split {split.name!r}: no readable records")
        # Shard names carry the final count (some records may have been skipped): rename once complete.
        for i, tmp in enumerate(tmp_paths):
            os.replace(tmp, self._shard_path(split.name, i, len(tmp_paths)))
        self._splits.append(dataset_info_pb2.SplitInfo(name=split.name, num_bytes=num_bytes, shard_lengths=lengths,
                                                       filepath_template=FILEPATH_TEMPLATE))
        return written

    def finish(self, image_shape=None, encoding="unchanged"):
        """Write dataset_info.json, features.json and label names: the dataset is readable from here on.

        `image_shape` / `encoding`: what the written images turned out to be (prepare_data learns it while
        writing), declared in the metadata instead of the constructor's."""
        from google.protobuf import json_format
        from tensorflow_datasets.core.proto import dataset_info_pb2

        if image_shape is not None or encoding != "unchanged":
            self._declare_images(image_shape or self.features["image"].shape,
                                 self.features["image"].encoding_format if encoding == "unchanged" else encoding)
        info = dataset_info_pb2.DatasetInfo(name=self.name, version=self.version, description=self.description,
                                            splits=self._splits, file_format=FILE_FORMAT,
                                            module_name="kdjax.tools.prepare_data")
        info.features.CopyFrom(self.features.to_proto())
        self.features.save_config(self.directory)
        self.features.save_metadata(self.directory)
        with open(os.path.join(self.directory, "dataset_info.json"), "w") as f:
            f.write(json_format.MessageToJson(info, sort_keys=True))
