"""Statistics of the training images: the normalisation when the config does not set `data.mean` / `data.std`, and
what `kdjax.infer` compares its inputs with.

Computed once per run from the training split, deterministically: over every image when the split is in memory
(IDX files, or images decoded once, see decoded.py), else over 512 evenly spaced images. Values are of pixels
scaled to [0, 1], rounded to 4 decimals (Fashion-MNIST: mean 0.2860, std 0.3530). Recorded in the workdir
(config.json, summary.json) and the export (spec.json "preprocess").
"""

from typing import Optional, Tuple

import numpy as np

from kdjax.data.identity import evenly_spaced, innermost, read_safely
from kdjax.errors import ConfigError

SAMPLE = 512
_CHUNK = 4096


def _in_memory(source) -> Optional[np.ndarray]:
    """The uint8 [n, H, W, C] array behind `source` when all its images are in memory at one size."""
    inner = innermost(source)
    images = inner.in_memory_images() if hasattr(inner, "in_memory_images") else getattr(inner, "images", None)
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        return None
    return images[:len(source)] if len(images) >= len(source) else None


def pixel_statistics(source) -> dict:
    """{"mean", "std" (per channel), "images", "of", "image_mean" [p1, p99], "image_std" [p1, p99], "height",
    "width" [min, max], "aspect" [p1, p99] (width / height)} of the training images."""
    n = len(source)
    array = _in_memory(source)
    if array is not None:
        chunks = (array[i:i + _CHUNK].astype(np.float32) / 255.0 for i in range(0, n, _CHUNK))
        channels = array.shape[-1]
        heights = widths = None
    else:
        records = [r for r in read_safely(source, evenly_spaced(n, SAMPLE)) if r is not None]
        if not records:
            raise ConfigError("data.mean", "no training image can be decoded to compute the mean/std from; set "
                                           "data.mean and data.std")
        chunks = [np.asarray(r["image"], np.float32)[None] / 255.0 for r in records]
        heights = np.array([c.shape[1] for c in chunks])
        widths = np.array([c.shape[2] for c in chunks])
        channels = chunks[0].shape[-1]
    total, total_sq, pixels = np.zeros(channels), np.zeros(channels), 0
    image_means, image_stds = [], []
    for c in chunks:
        flat = c.reshape(len(c), -1, channels).astype(np.float64)
        total += flat.sum(axis=(0, 1))
        total_sq += np.square(flat).sum(axis=(0, 1))
        pixels += flat.shape[0] * flat.shape[1]
        image_means.append(flat.mean(axis=(1, 2)))
        image_stds.append(flat.std(axis=1).mean(axis=1))
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0.0))
    image_means, image_stds = np.concatenate(image_means), np.concatenate(image_stds)
    if heights is None:
        heights = np.full(1, array.shape[1])
        widths = np.full(1, array.shape[2])
    aspect = widths / heights
    pct = (lambda v: [round(float(np.percentile(v, 1)), 4), round(float(np.percentile(v, 99)), 4)])
    return {
        "mean": [round(float(v), 4) for v in mean],
        "std": [round(float(max(v, 1e-4)), 4) for v in std],
        "images": int(len(image_means)), "of": int(n),
        "image_mean": pct(image_means), "image_std": pct(image_stds),
        "height": [int(heights.min()), int(heights.max())], "width": [int(widths.min()), int(widths.max())],
        "aspect": pct(aspect),
    }


def normalization(data, stats: Optional[dict], channels: int) -> Tuple[tuple, tuple, str]:
    """(mean, std, "config" | "computed"): data.mean / data.std when set, else the training images' statistics."""
    mean, std = tuple(data.get("mean") or ()), tuple(data.get("std") or ())
    if bool(mean) != bool(std):
        raise ConfigError("data.std" if mean else "data.mean",
                          "set both data.mean and data.std, or neither (then both are computed from the training "
                          "images)")
    if mean:
        for field, values in (("data.mean", mean), ("data.std", std)):
            if channels and len(values) not in (1, channels):
                raise ConfigError(field, f"has {len(values)} values but the images have {channels} channel"
                                         f"{'s' if channels > 1 else ''}: give one value per channel (or one for all)")
        return tuple(float(v) for v in mean), tuple(float(v) for v in std), "config"
    if stats is None:
        return None, None, "unset"
    return tuple(stats["mean"]), tuple(stats["std"]), "computed"


def describe(stats: dict) -> str:
    sample = "every" if stats["images"] == stats["of"] else f"{stats['images']} evenly spaced of the"
    return (f"mean {tuple(stats['mean'])} std {tuple(stats['std'])} computed from {sample} {stats['of']} training "
            f"images")
