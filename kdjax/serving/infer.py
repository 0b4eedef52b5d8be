"""`python -m kdjax.infer --export_dir=DIR IMAGES_OR_FOLDERS...`: top-k predictions of an exported model.

Needs only the export (spec.json + variables), like PaddleClas tools/infer.py after export. `--from_dataset=N`
first writes N test images of the spec's dataset as PNG files, so there is always something real to try.
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

MAX_PIXELS = 20_000 * 20_000  # as kdjax/data/decode.py: larger images are refused, not decoded into many GB
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


def load_image(path: str, input_size) -> np.ndarray:
    """Decode, convert to the model's channels and resize to its input size: uint8 HWC."""
    from PIL import Image, UnidentifiedImageError

    from kdjax.errors import DataError

    h, w, c = input_size
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise DataError(f"{path}: the image is {img.size[0]}×{img.size[1]} pixels, more than kdjax decodes "
                                f"({MAX_PIXELS:,}); downscale it first")
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as e:  # PIL refuses it before kdjax sees its size
        raise DataError(f"{path}: the image is too large to decode ({e}); downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:  # PIL's ways to say "broken"
        raise DataError(f"{path}: cannot decode this image ({type(e).__name__}: {e}); give readable "
                        f"PNG/JPEG/BMP/GIF/WebP/TIFF files") from None
    return arr[..., None] if arr.ndim == 2 else arr


def write_dataset_samples(spec: dict, count: int, directory: str):
    """Save `count` test images of the export's dataset as PNGs named by index and true label."""
    import ml_collections
    from PIL import Image

    from kdjax.config.defaults import base_config
    from kdjax.data.sources import open_source
    from kdjax.runtime.preemption import writing

    data = base_config().data
    data.name = spec.get("dataset", data.name)
    source, info = open_source(ml_collections.ConfigDict(data), "test")
    os.makedirs(directory, exist_ok=True)
    names = spec.get("label_names") or info.label_names
    for i in range(min(count, len(source))):
        rec = source[i]
        label = int(rec["label"])
        tag = names[label] if names else str(label)
        safe = "".join(ch if ch.isalnum() else "_" for ch in tag)
        img = np.asarray(rec["image"])
        path = os.path.join(directory, f"{i:03d}_{safe}.png")
        tmp = f"{path}.tmp-{os.getpid()}"  # complete files only, also when stopped half-way
        with writing():
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp, format="PNG")
            os.replace(tmp, path)
    return directory


def predict(export_dir: str, files, topk: int = 5, batch_size: int = 32):
    """[{"class_ids", "scores", "file_name", "label_names"}] per file, scores being softmax probabilities."""
    import jax

    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn

    logits_fn, spec = export_logits_fn(export_dir)
    names = spec.get("label_names")
    k = min(topk, spec["num_classes"])
    results = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        images = np.stack([load_image(f, spec["input_size"]) for f in chunk])
        probs = np.asarray(jax.nn.softmax(logits_fn(normalize(images, spec["mean"], spec["std"]))))
        for f, p in zip(chunk, probs):
            ids = np.argsort(-p)[:k]
            results.append({"class_ids": [int(i) for i in ids], "scores": [round(float(p[i]), 5) for i in ids],
                            "file_name": f, "label_names": [names[i] for i in ids] if names else []})
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
        paths.append(write_dataset_samples(spec, _FROM_DATASET.value, samples))
        print(f"wrote {_FROM_DATASET.value} test images to {samples}", file=sys.stderr)
    if not paths:
        raise KdjaxError("no images given: pass image files or folders, or --from_dataset=N")
    files = list_images(paths)
    if not files:
        raise KdjaxError(f"no image files found in {', '.join(paths)}")
    for r in predict(_EXPORT.value, files, _TOPK.value, _BATCH.value):
        print(json.dumps(r, ensure_ascii=False))


FLAG_NAMES = ('export_dir', 'topk', 'from_dataset', 'samples_dir', 'batch_size')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.infer", module="kdjax.infer", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
