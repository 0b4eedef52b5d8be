"""`python -m kdjax.infer --export_dir=DIR IMAGES_OR_FOLDERS...`: top-k predictions of an exported model.

Needs only the export (spec.json + variables), like PaddleClas tools/infer.py after export. Each image goes through
exactly the preprocessing the export's evaluation used, as its spec records it (kdjax/data/preprocess.py: the shared
decoder, channels, shorter-side resize + centre crop at the recorded ratio, mean/std), so its logits are the ones
evaluation computed. Inputs unlike the training images (channels, size or aspect ratio, brightness/polarity,
contrast) get one warning line per kind on stderr; they are still predicted.

`--from_dataset=N` first writes N test images of the export's dataset as PNG files, so there is always something real
to try: the export records where its test data was; `--data_dir` / `--data_root` / `--tfds_data_dir` (and the other
`--data_*` flags, named after config.data fields) point elsewhere when it has moved.
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import json
import os
import sys

import numpy as np
from kdjax.cli import flags as cli_flags  # noqa: E402

_EXPORT = cli_flags.DEFINE_string("export_dir", None, "Export directory (WORKDIR/export, or kdjax.tools.convert output).")
_TOPK = cli_flags.DEFINE_integer("topk", 5, "How many classes to print per image.")
_FROM_DATASET = cli_flags.DEFINE_integer("from_dataset", 0, "Write this many test images of the dataset as PNG files "
                                     "(into --samples_dir) and predict them too.")
_SAMPLES_DIR = cli_flags.DEFINE_string("samples_dir", None, "Where --from_dataset writes (default: EXPORT_DIR/../samples).")
_BATCH = cli_flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
# --from_dataset: where the test data is now, when not where the export recorded it (config.data field names)
_DATA_FLAGS = {
    "source": cli_flags.DEFINE_string("data_source", None, "--from_dataset: config.data.source (idx, list, tfds)."),
    "name": cli_flags.DEFINE_string("data_name", None, "--from_dataset: config.data.name."),
    "data_dir": cli_flags.DEFINE_string("data_dir", None, "--from_dataset: config.data.data_dir (IDX folder)."),
    "root": cli_flags.DEFINE_string("data_root", None, "--from_dataset: config.data.root (list files' image root)."),
    "test_list": cli_flags.DEFINE_string("data_test_list", None, "--from_dataset: config.data.test_list."),
    "tfds_data_dir": cli_flags.DEFINE_string("tfds_data_dir", None, "--from_dataset: config.data.tfds_data_dir."),
    "test_split": cli_flags.DEFINE_string("data_test_split", None, "--from_dataset: config.data.test_split."),
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(paths):
    from kdjax.errors import DataError

    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise DataError(f"{p}: no such image file or folder")
    return files


def load_native(path: str) -> np.ndarray:
    """The image as the shared decoder gives it (its own channels, values scaled to 0..255): uint8 HWC."""
    from kdjax.data.decode import BadImage, read_image_file
    from kdjax.errors import DataError

    try:
        return read_image_file(path, path)
    except BadImage as e:
        raise DataError(f"{e}; give readable PNG/JPEG/BMP/GIF/WebP/TIFF files") from None


def test_data_config(spec: dict, overrides: dict = None):
    """config.data that opens the export's test split: base defaults + what the export recorded + `overrides`."""
    import ml_collections

    from kdjax.config.defaults import base_config
    from kdjax.errors import CheckpointError

    data = ml_collections.ConfigDict(base_config().data.to_dict())
    recorded = dict((spec.get("data") or {}).get("reopen") or {})
    if not recorded and spec.get("dataset") not in (None, "", "fashion_mnist"):
        raise CheckpointError(f"the export does not record where its test data ({spec.get('dataset')!r}) was (it was "
                              f"written by an older kdjax): pass --data_dir, --data_root or --tfds_data_dir with "
                              f"--data_name")
    with data.unlocked():
        for key, value in recorded.items():
            data[key] = value
        for key, value in (overrides or {}).items():
            if value is not None:
                data[key] = value
                if key in ("data_dir", "root", "tfds_data_dir"):  # another location: its own source
                    data.source = {"data_dir": "idx", "root": "list", "tfds_data_dir": "tfds"}[key] \
                        if not (overrides or {}).get("source") else data.source
    return data


def write_dataset_samples(spec: dict, count: int, directory: str, overrides: dict = None):
    """Save `count` test images of the export's dataset as PNGs named by index and true label (lossless: the
    decoded pixels, in the export's channels, at their own size)."""
    from PIL import Image

    from kdjax.data.sources import open_source
    from kdjax.errors import CheckpointError, KdjaxError
    from kdjax.runtime.preemption import writing

    data = test_data_config(spec, overrides)
    try:
        source, info = open_source(data, "test", channels=int(spec["input_size"][-1]), decode_once=False)
    except KdjaxError as e:
        where = {k: v for k, v in ((spec.get("data") or {}).get("reopen") or {}).items()}
        raise CheckpointError(f"--from_dataset: cannot open the export's test data (recorded: {where or 'the default'}"
                              f"): {e}. Pass --data_dir / --data_root / --tfds_data_dir where it is now") from None
    os.makedirs(directory, exist_ok=True)
    names = spec.get("label_names") or info.label_names
    for i in range(min(count, len(source))):
        rec = source[i]
        label = int(rec["label"])
        tag = names[label] if names and label < len(names) else str(label)
        safe = "".join(ch if ch.isalnum() else "_" for ch in tag)
        img = np.asarray(rec["image"])
        path = os.path.join(directory, f"{i:03d}_{safe}.png")
        tmp = f"{path}.tmp-{os.getpid()}"  # complete files only, also when stopped half-way
        with writing():
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp, format="PNG")
            os.replace(tmp, path)
    return directory


def predict(export_dir: str, files, topk: int = 5, batch_size: int = 32, warn=None, return_logits: bool = False):
    """[{"class_ids", "scores", "file_name", "label_names"}] per file, scores being softmax probabilities.

    `warn(line)` receives one line per kind of input that differs from the training images."""
    import jax

    from kdjax.data.preprocess import input_differences, prepare_image, spec_preprocess, warning_lines
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn

    logits_fn, spec = export_logits_fn(export_dir)
    pre = spec_preprocess(spec)
    names = spec.get("label_names")
    k = min(topk, spec["num_classes"])
    results, differences = [], {}
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        natives = [load_native(f) for f in chunk]
        if warn:
            input_differences(natives, chunk, pre, differences)
        images = np.stack([prepare_image(n, pre) for n in natives])
        logits = np.asarray(logits_fn(normalize(images, pre["mean"], pre["std"])))
        probs = np.asarray(jax.nn.softmax(logits))
        for f, p, z in zip(chunk, probs, logits):
            ids = np.argsort(-p)[:k]
            r = {"class_ids": [int(i) for i in ids], "scores": [round(float(p[i]), 5) for i in ids],
                 "file_name": f, "label_names": [names[i] for i in ids] if names else []}
            if return_logits:
                r["logits"] = z
            results.append(r)
    for line in warning_lines(differences, len(files), pre) if warn else ():
        warn(line)
    return results


def main(argv):
    from absl import logging as absl_logging

    from kdjax.errors import ConfigError, KdjaxError
    from kdjax.runtime import preemption
    from kdjax.weights.export_dir import load_spec

    absl_logging.set_verbosity(absl_logging.WARNING)
    preemption.listen_for_sigterm()  # read-only: a SIGTERM ends it at once, exit 0
    for flag in (_TOPK, _BATCH):
        if flag.value is None or flag.value < 1:
            raise ConfigError("", f"--{flag.name} must be a whole number >= 1, got {flag.value}")
    if _FROM_DATASET.value is not None and _FROM_DATASET.value < 0:
        raise ConfigError("", f"--from_dataset must be >= 0, got {_FROM_DATASET.value}")
    if not _EXPORT.value:
        raise KdjaxError("--export_dir is required (e.g. WORKDIR/export)")
    spec = load_spec(_EXPORT.value)
    paths = list(argv[1:])
    if _FROM_DATASET.value:
        samples = _SAMPLES_DIR.value or os.path.join(os.path.dirname(os.path.abspath(_EXPORT.value)), "samples")
        overrides = {key: flag.value for key, flag in _DATA_FLAGS.items()}
        paths.append(write_dataset_samples(spec, _FROM_DATASET.value, samples, overrides))
        print(f"wrote {_FROM_DATASET.value} test images to {samples}", file=sys.stderr)
    if not paths:
        raise KdjaxError("no images given: pass image files or folders, or --from_dataset=N")
    files = list_images(paths)
    if not files:
        raise KdjaxError(f"no image files found in {', '.join(paths)}")
    for r in predict(_EXPORT.value, files, _TOPK.value, _BATCH.value,
                     warn=lambda line: print(line, file=sys.stderr, flush=True)):
        print(json.dumps(r, ensure_ascii=False))


FLAG_NAMES = ('export_dir', 'topk', 'from_dataset', 'samples_dir', 'batch_size', 'data_source', 'data_name', 'data_dir',
              'data_root', 'data_test_list', 'tfds_data_dir', 'data_test_split')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.infer", module="kdjax.infer", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
