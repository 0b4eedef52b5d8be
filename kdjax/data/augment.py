"""Batch-level augmentations on uint8 NHWC numpy batches, run as grain random maps.

Working on whole batches keeps per-image Python overhead out of the hot loop; the random generator grain hands
each batch is derived from the pipeline seed and the batch index, so a resumed run sees the same views.
Teacher and student receive the same augmented images (one batch feeds every sub-model).
"""

import numpy as np

AUGMENTATIONS = ("none", "flip", "crop_flip")


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def random_crop(images: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """Zero-pad by `pad` and crop back to the original size at a random offset per image (CIFAR style)."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def make_batch_augment(kind: str, crop_pad: int = 2):
    if kind == "none":
        return None

    def augment(batch, rng: np.random.Generator):
        images = batch["image"]
        if kind == "crop_flip":
            images = random_crop(images, rng, crop_pad)
        images = random_flip(images, rng)
        return dict(batch, image=np.ascontiguousarray(images))

    return augment
