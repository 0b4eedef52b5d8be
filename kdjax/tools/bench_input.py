"""Input-pipeline benchmark: each data route's images/s next to the train step's.

  python -m kdjax.tools.bench_input [--config=configs/dkd.py] [--routes=idx,list,tfds] [--num_images=8192]
  python -m kdjax.tools.bench_input --routes=jpeg --workers=0,2 [--image_size=224 --batch_size=64]

Routes idx, list, tfds: `num_images` smooth-noise images of the config's data shape (28×28×1 for the default) are
written once as IDX files, as PNG files with a PaddleClas list, and as a prepared TFDS dataset (prepare_data); each
route is opened as training opens it (`open_source`: decode-once into memory when it fits data.decode_once_mb, else
batched threaded decoding) and its training pipeline (the config's augmentation, batch size, threads) is timed. The
config's train step is timed on a synthetic batch of the same shape (kdjax.tools.bench). A route whose images/s is
well above the step's keeps the devices busy. Route jpeg: random 256×256 JPEGs through augment=imagenet
(random-resized crop to image_size), with threads only and with worker processes. Worker start-up and the first
batches are excluded from the timing.
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import os
import tempfile
import time

from kdjax.cli import flags as cli_flags  # noqa: E402

_NUM_IMAGES = cli_flags.DEFINE_integer("num_images", 2000, "How many JPEGs to generate.")
_SOURCE_SIZE = cli_flags.DEFINE_integer("source_size", 256, "Side of the generated JPEGs.")
_IMAGE_SIZE = cli_flags.DEFINE_integer("image_size", 224, "Crop size of the ImageNet train augmentation.")
_BATCH = cli_flags.DEFINE_integer("batch_size", 64, "Batch size.")
_WORKERS = cli_flags.DEFINE_list("workers", ["0", "2"], "Worker process counts to measure (0: threads only).")
_THREADS = cli_flags.DEFINE_integer("threads", 2, "grain reader threads (per worker process).")
_BATCHES = cli_flags.DEFINE_integer("batches", 60, "Batches timed per setting (after warm-up).")
_WARMUP = cli_flags.DEFINE_integer("warmup", 4, "Batches read before timing starts.")
_AUGMENT = cli_flags.DEFINE_string("augment", "imagenet", "data.augment recipe.")
_DIR = cli_flags.DEFINE_string("dir", None, "Write the images here instead of a temporary directory.")
_CONFIG = cli_flags.DEFINE_config_file("config", "configs/dkd.py", "Config whose data options and train step are "
                                       "measured (routes idx, list, tfds).", lock_config=False)
_ROUTES = cli_flags.DEFINE_list("routes", ["idx", "list", "tfds"], "Routes to measure: idx, list, tfds, jpeg.")
_STEP = cli_flags.DEFINE_bool("step", True, "Also time the config's train step (routes idx, list, tfds).")


def write_jpegs(directory: str, count: int, size: int, seed: int = 0, classes: int = 10) -> str:
    """`count` random size×size JPEGs plus train_list.txt under `directory`; returns the list path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    lines = []
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        rel = f"images/{i:06d}.jpg"
        img.save(os.path.join(directory, rel), quality=90)
        lines.append(f"{rel} {i % classes}\n")
    path = os.path.join(directory, "train_list.txt")
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def measure(directory: str, workers: int) -> float:
    """Images/s of the training pipeline over the list in `directory` with `workers` processes."""
    from kdjax.data.listfile import ListFileSource
    from kdjax.data.options import PipelineOptions
    from kdjax.data.pipeline import train_pipeline

    source = ListFileSource(directory, "train_list.txt", num_classes=10)
    options = PipelineOptions(augment=_AUGMENT.value, image_size=_IMAGE_SIZE.value, num_classes=10,
                              num_workers=workers)
    epochs = (_BATCHES.value + _WARMUP.value + 1) * _BATCH.value / len(source)
    pipe = train_pipeline(source, global_batch=_BATCH.value, epochs=epochs, seed=0, options=options,
                          num_threads=_THREADS.value)
    it = iter(pipe.dataset)
    try:
        for _ in range(_WARMUP.value):
            next(it)
        start = time.perf_counter()
        for _ in range(_BATCHES.value):
            batch = next(it)
        elapsed = time.perf_counter() - start
    finally:
        if hasattr(it, "close"):
            it.close()
    assert batch["image"].shape == (_BATCH.value, _IMAGE_SIZE.value, _IMAGE_SIZE.value, 3)
    return _BATCHES.value * _BATCH.value / elapsed


def write_routes(directory: str, count: int, shape, classes: int = 10, seed: int = 0) -> dict:
    """The same `count` images (smooth noise of `shape`) as IDX files, a PNG list and a prepared TFDS dataset;
    returns the config.data fields that open each route."""
    import gzip

    import numpy as np
    from PIL import Image

    from kdjax.tools.prepare_data import prepare_lists

    h, w, c = shape
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, max(2, h // 4), max(2, w // 4), c), dtype=np.uint8)
    images = np.stack([np.asarray(Image.fromarray(a[..., 0] if c == 1 else a).resize((w, h), Image.BILINEAR))
                       for a in coarse]).reshape(count, h, w, c)
    labels = (np.arange(count) % classes).astype(np.uint8)
    idx_dir = os.path.join(directory, "idx")
    os.makedirs(os.path.join(directory, "list", "images"), exist_ok=True)
    os.makedirs(idx_dir, exist_ok=True)
    for stem in ("train", "t10k"):
        for kind, array in (("images", images[..., 0] if c == 1 else images), ("labels", labels)):
            with gzip.open(os.path.join(idx_dir, f"{stem}-{kind}-idx{array.ndim}-ubyte.gz"), "wb") as f:
                f.write(bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
                        + array.tobytes())
    lines = []
    for i in range(count):
        rel = f"images/{i:06d}.png"
        Image.fromarray(images[i, ..., 0] if c == 1 else images[i]).save(os.path.join(directory, "list", rel))
        lines.append(f"{rel} {labels[i]}\n")
    for name in ("train_list.txt", "val_list.txt"):
        with open(os.path.join(directory, "list", name), "w") as f:
            f.writelines(lines)
    prepare_lists(os.path.join(directory, "tfds"), "bench", os.path.join(directory, "list"),
                  train_list="train_list.txt", test_list="", num_classes=classes, threads=2, overwrite=True)
    return {"idx": dict(source="idx", data_dir=idx_dir),
            "list": dict(source="list", root=os.path.join(directory, "list"), num_classes=classes, image_size=h),
            "tfds": dict(source="tfds", tfds_data_dir=os.path.join(directory, "tfds"), name="bench")}


def measure_route(config, fields: dict) -> tuple:
    """(images/s of the training pipeline, seconds to open the route) for config.data updated with `fields`."""
    import copy

    from kdjax.data.pipeline import train_pipeline
    from kdjax.data.sources import open_source

    data = copy.deepcopy(config.data)
    with data.unlocked():
        data.update(fields)
    t0 = time.perf_counter()
    source, _ = open_source(data, "train")
    opened = time.perf_counter() - t0
    batch = int(config.train.batch_size)
    epochs = (_BATCHES.value + _WARMUP.value + 1) * batch / len(source)
    pipe = train_pipeline(source, global_batch=batch, epochs=epochs, seed=0, num_threads=int(data.num_threads),
                          prefetch=int(data.prefetch))
    it = iter(pipe.dataset)
    try:
        for _ in range(_WARMUP.value):
            next(it)
        start = time.perf_counter()
        for _ in range(_BATCHES.value):
            next(it)
        elapsed = time.perf_counter() - start
    finally:
        if hasattr(it, "close"):
            it.close()
    return _BATCHES.value * batch / elapsed, opened


def step_rate(config, shape) -> float:
    """Images/s of the config's train step on a synthetic on-device batch (kdjax.tools.bench)."""
    import copy

    from kdjax.tools import bench

    return float(bench.run(copy.deepcopy(config), steps=10, warmup=2, image_shape=shape)["images_per_s"])


def main_routes(config, directory: str):
    from kdjax.tools.bench import image_shape_for

    shape = image_shape_for(config)
    t0 = time.perf_counter()
    routes = write_routes(directory, _NUM_IMAGES.value, shape)
    print(f"wrote {_NUM_IMAGES.value} {'×'.join(map(str, shape))} images as IDX, PNG list and TFDS in "
          f"{time.perf_counter() - t0:.1f}s to {directory}; {os.cpu_count()} CPUs; batch {config.train.batch_size}, "
          f"augment {config.data.augment}, {config.data.num_threads} threads", flush=True)
    step = step_rate(config, shape) if _STEP.value else 0.0
    rows = [("route", "loader img/s", "open s", "step img/s", "loader / step")]
    for route in _ROUTES.value:
        if route not in routes:
            continue
        rate, opened = measure_route(config, routes[route])
        rows.append((route, f"{rate:,.0f}", f"{opened:.1f}", f"{step:,.0f}" if step else "-",
                     f"{rate / step:.1f}x" if step else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)), flush=True)


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.cli.flags import load_config

    absl_logging.set_verbosity(absl_logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kdjax_bench_") as tmp:
        directory = _DIR.value or tmp
        if any(r != "jpeg" for r in _ROUTES.value):
            main_routes(load_config(_CONFIG), os.path.join(directory, "routes"))
        if "jpeg" not in _ROUTES.value:
            return
        t0 = time.perf_counter()
        write_jpegs(directory, _NUM_IMAGES.value, _SOURCE_SIZE.value)
        print(f"wrote {_NUM_IMAGES.value} {_SOURCE_SIZE.value}x{_SOURCE_SIZE.value} JPEGs in "
              f"{time.perf_counter() - t0:.1f}s to {directory}; {os.cpu_count()} CPUs; "
              f"augment={_AUGMENT.value} to {_IMAGE_SIZE.value}, batch {_BATCH.value}, {_THREADS.value} threads",
              flush=True)
        for workers in (int(w) for w in _WORKERS.value):
            rate = measure(directory, workers)
            print(f"workers={workers}: {rate:,.0f} images/s (decode + {_AUGMENT.value} augment + batch)", flush=True)


FLAG_NAMES = ('num_images', 'source_size', 'image_size', 'batch_size', 'workers', 'threads', 'batches', 'warmup', 'augment', 'dir',
              'config', 'routes', 'step')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.bench_input", module="kdjax.tools.bench_input", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
