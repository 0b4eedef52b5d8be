"""Prepare once, read fast: turn PaddleClas list files or IDX files into a TFDS ArrayRecord dataset.

  python -m kdjax.tools.prepare_data --root=ILSVRC2012 --train_list=train_list.txt --test_list=val_list.txt \\
      --num_classes=1000 --name=imagenet_lists --out_dir=~/tensorflow_datasets
  python -m kdjax.tools.prepare_data --idx_dir=/usr/share/datasets/fashion-mnist --name=fashion_mnist --out_dir=DIR

then train with --config.data.source=tfds --config.data.name=NAME --config.data.tfds_data_dir=DIR. List images
are stored as their original bytes (no re-encoding); each is decoded once here so that a broken file fails now,
naming the file and list line (or is dropped and counted with --skip_bad_images). An unlabeled list (SSLD)
becomes the split "unlabeled" (--config.data.unlabeled_split=unlabeled).
"""

import concurrent.futures
import os
import sys

from kdjax.cli import flags as cli_flags  # noqa: E402

_OUT_DIR = cli_flags.DEFINE_string("out_dir", None, "TFDS data dir to write into (the dataset goes to OUT/NAME/1.0.0).")
_NAME = cli_flags.DEFINE_string("name", None, "Dataset name (config.data.name when reading it back).")
_ROOT = cli_flags.DEFINE_string("root", None, "List files: the image root.")
_TRAIN_LIST = cli_flags.DEFINE_string("train_list", "train_list.txt", "List files: train list (relative to --root).")
_TEST_LIST = cli_flags.DEFINE_string("test_list", "val_list.txt", "List files: test list; '' for none.")
_UNLABELED_LIST = cli_flags.DEFINE_string("unlabeled_list", None, "List files: SSLD unlabeled list → split 'unlabeled'.")
_NUM_CLASSES = cli_flags.DEFINE_integer("num_classes", 0, "List files: number of classes (or --label_names_file).")
_LABEL_NAMES = cli_flags.DEFINE_string("label_names_file", None, "One class name per line (`id name` lines work too).")
_IDX_DIR = cli_flags.DEFINE_string("idx_dir", None, "IDX files (train-images-idx3-ubyte.gz, ...) instead of lists.")
_SKIP_BAD = cli_flags.DEFINE_bool("skip_bad_images", False, "Drop undecodable/missing images (counted) instead of failing.")
_CHECK = cli_flags.DEFINE_bool("check_images", True, "Decode every list image once to catch broken files now.")
_SHARD = cli_flags.DEFINE_integer("examples_per_shard", 10_000, "Records per ArrayRecord file.")
_THREADS = cli_flags.DEFINE_integer("threads", 8, "Threads reading and checking images.")
_OVERWRITE = cli_flags.DEFINE_bool("overwrite", False, "Replace an existing dataset of the same name and version.")


def _list_records(source, *, check: bool, skip_bad: bool, threads: int, skipped: list, seen: list):
    """(bytes, label) of every listed image in order, read (and checked) in a thread pool; `seen` collects each
    written image's (format, width, height, channels) so the dataset's metadata says what it holds."""
    from kdjax.data.decode import BadImage, decode_image, image_header

    def load(i):
        try:
            data = source.encoded(i)
            header = image_header(data, source.origin(i))
            if check:
                decode_image(data, source.origin(i))
            return data, int(source.labels[i]), header
        except BadImage as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
            return None

    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        for chunk in range(0, len(source), 1024):
            for item in pool.map(load, range(chunk, min(chunk + 1024, len(source)))):
                if item is not None:
                    seen.append(item[2])
                    yield item[:2]


def image_metadata(seen) -> tuple:
    """(shape [H, W, C] with None for a size that varies, TFDS encoding format or None when mixed) of the images
    written: C is 1 when every image is grayscale, else 3 (the decoder converts the others)."""
    formats = {fmt for fmt, _, _, _ in seen}
    sizes = {(h, w) for _, w, h, _ in seen}
    channels = 1 if seen and all(c == 1 for *_, c in seen) else 3
    height, width = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    encoding = {"PNG": "png", "JPEG": "jpeg"}.get(next(iter(formats))) if len(formats) == 1 else None
    return (height, width, channels), encoding


def prepare_lists(out_dir: str, name: str, root: str, *, train_list: str, test_list: str = "",
                  unlabeled_list: str = "", num_classes: int = 0, label_names_file: str = "",
                  check_images: bool = True, skip_bad_images: bool = False, examples_per_shard: int = 10_000,
                  threads: int = 8, overwrite: bool = False) -> dict:
    """Write list-file splits as TFDS `name`; returns {split: records written, "skipped": [messages], "shape":
    [H, W, C] (None where the size varies), "short_side": median shorter side}."""
    from kdjax.data.arrayrecord import SplitRecords, TfdsWriter
    from kdjax.data.listfile import ListFileSource, read_label_names, resolve
    from kdjax.errors import ConfigError

    names = read_label_names(resolve(root, label_names_file), num_classes) if label_names_file else None
    num_classes = num_classes or (len(names) if names else 0)
    if num_classes <= 0:
        raise ConfigError("num_classes", "list files need --num_classes (or --label_names_file)")
    splits = [("train", train_list, True), ("test", test_list, True), ("unlabeled", unlabeled_list, False)]
    sources = [(split, ListFileSource(root, path, num_classes=num_classes, labeled=labeled))
               for split, path, labeled in splits if path]
    writer = TfdsWriter(out_dir, name, num_classes=num_classes, label_names=names, image_shape=(None, None, 3),
                        encoding=None, description=f"kdjax.tools.prepare_data from list files under {root}",
                        examples_per_shard=examples_per_shard, overwrite=overwrite)
    result, skipped, seen = {}, [], []
    for split, source in sources:
        records = _list_records(source, check=check_images, skip_bad=skip_bad_images, threads=threads,
                                skipped=skipped, seen=seen)
        result[split] = writer.write_split(SplitRecords(split, records, len(source)))
    shape, encoding = image_metadata(seen)
    writer.finish(image_shape=shape, encoding=encoding)
    result["skipped"] = skipped
    result["directory"] = writer.directory
    result["shape"] = list(shape)
    result["short_side"] = int(sorted(min(w, h) for _, w, h, _ in seen)[len(seen) // 2]) if seen else 0
    return result


def prepare_idx(out_dir: str, name: str, idx_dir: str, *, label_names_file: str = "", examples_per_shard: int = 10_000,
                overwrite: bool = False) -> dict:
    """Write the train and test IDX splits as TFDS `name` (PNG-encoded, lossless). Label names: from
    `label_names_file`, else Fashion-MNIST's only when `idx_dir` is Debian's Fashion-MNIST."""
    from kdjax.data.arrayrecord import SplitRecords, TfdsWriter, encode_png
    from kdjax.data.idx import FASHION_MNIST_LABELS, IdxSource, is_default_fashion_mnist
    from kdjax.data.listfile import read_label_names

    sources = [(split, IdxSource(idx_dir, split)) for split in ("train", "test")]
    num_classes = int(max(int(s.labels.max()) for _, s in sources)) + 1
    if label_names_file:
        names = read_label_names(label_names_file, 0)
        num_classes = max(num_classes, len(names))
    else:
        names = FASHION_MNIST_LABELS if is_default_fashion_mnist(idx_dir) and num_classes == 10 else None
    writer = TfdsWriter(out_dir, name, num_classes=num_classes, label_names=names,
                        image_shape=sources[0][1].image_shape, encoding="png",
                        description=f"kdjax.tools.prepare_data from IDX files in {idx_dir}",
                        examples_per_shard=examples_per_shard, overwrite=overwrite)
    result = {}
    for split, source in sources:
        records = ((encode_png(source.images[i]), int(source.labels[i])) for i in range(len(source)))
        result[split] = writer.write_split(SplitRecords(split, records, len(source)))
    writer.finish()
    result["directory"] = writer.directory
    result["shape"] = list(sources[0][1].image_shape)
    return result


def read_hint(name: str, out_dir: str, result: dict) -> str:
    """How to train on what was written: the image size flag only when the images' size varies."""
    hint = f"read it with --config.data.source=tfds --config.data.name={name} --config.data.tfds_data_dir={out_dir}"
    h, w, c = result["shape"]
    if h is None:
        size = result.get("short_side") or 224
        hint += (f" --config.data.image_size={size}  (the images' sizes vary; {size} is their median shorter side: "
                 f"choose the training size)")
    else:
        hint += f"  ({h}×{w}×{c} images)"
    return hint


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError

    absl_logging.set_verbosity(absl_logging.WARNING)
    if not _OUT_DIR.value or not _NAME.value:
        raise KdjaxError("--out_dir and --name are required")
    out_dir = os.path.expanduser(_OUT_DIR.value)
    if _IDX_DIR.value:
        result = prepare_idx(out_dir, _NAME.value, _IDX_DIR.value, label_names_file=_LABEL_NAMES.value or "",
                             examples_per_shard=_SHARD.value, overwrite=_OVERWRITE.value)
    elif _ROOT.value:
        result = prepare_lists(out_dir, _NAME.value, _ROOT.value, train_list=_TRAIN_LIST.value,
                               test_list=_TEST_LIST.value, unlabeled_list=_UNLABELED_LIST.value or "",
                               num_classes=_NUM_CLASSES.value, label_names_file=_LABEL_NAMES.value or "",
                               check_images=_CHECK.value, skip_bad_images=_SKIP_BAD.value,
                               examples_per_shard=_SHARD.value, threads=_THREADS.value,
                               overwrite=_OVERWRITE.value)
    else:
        raise KdjaxError("give --root (list files) or --idx_dir (IDX files)")
    for message in result.pop("skipped", []):
        print(f"skipped: {message}", file=sys.stderr)
    directory = result.pop("directory")
    counts = ", ".join(f"{k} {result[k]}" for k in ("train", "test", "unlabeled") if k in result)
    print(f"wrote {directory}: {counts}")
    print(read_hint(_NAME.value, out_dir, result))


FLAG_NAMES = ('out_dir', 'name', 'root', 'train_list', 'test_list', 'unlabeled_list', 'num_classes', 'label_names_file', 'idx_dir', 'skip_bad_images', 'check_images', 'examples_per_shard', 'threads', 'overwrite')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.prepare_data", module="kdjax.tools.prepare_data", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
