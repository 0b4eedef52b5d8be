"""Input-pipeline benchmark: images/s for decode + augment + batch, with threads only and with worker processes.

  python -m kdjax.tools.bench_input --workers=0,2 [--num_images=2000 --image_size=224 --batch_size=64]

It writes `num_images` random 256×256 JPEGs (smooth noise, so they compress like photos rather than static)
and a PaddleClas list file into a temporary directory, then runs the training pipeline (augment=imagenet:
decode, random-resized crop to image_size, flip, batch) over them for each worker count. Worker start-up
(~5 s) and the first batches are excluded from the timing.
"""

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
_DIR = cli_flags.DEFINE_string("dir", None, "Write the JPEGs here instead of a temporary directory.")


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


def main(argv):
    del argv
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kdjax_bench_") as tmp:
        directory = _DIR.value or tmp
        t0 = time.perf_counter()
        write_jpegs(directory, _NUM_IMAGES.value, _SOURCE_SIZE.value)
        print(f"wrote {_NUM_IMAGES.value} {_SOURCE_SIZE.value}x{_SOURCE_SIZE.value} JPEGs in "
              f"{time.perf_counter() - t0:.1f}s to {directory}; {os.cpu_count()} CPUs; "
              f"augment={_AUGMENT.value} to {_IMAGE_SIZE.value}, batch {_BATCH.value}, {_THREADS.value} threads",
              flush=True)
        for workers in (int(w) for w in _WORKERS.value):
            rate = measure(directory, workers)
            print(f"workers={workers}: {rate:,.0f} images/s (decode + {_AUGMENT.value} augment + batch)", flush=True)


FLAG_NAMES = ('num_images', 'source_size', 'image_size', 'batch_size', 'workers', 'threads', 'batches', 'warmup', 'augment', 'dir')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.bench_input", module="kdjax.tools.bench_input", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
