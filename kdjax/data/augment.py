"""Batch-level augmentations on uint8 NHWC numpy batches, run as grain random maps.

Working on whole batches keeps per-image Python overhead out of the hot loop; the random generator grain hands
each batch is derived from the pipeline seed and the batch index, so a resumed run (or one with worker
processes) sees the same views. Teacher and student receive the same augmented images (one batch feeds every
sub-model).

`data.augment` names a recipe; its per-record part (for variable-size images) lives in `transforms.py`:
  none       nothing
  flip       random horizontal flip
  crop_flip  zero-pad 2, random crop back to size, flip (small grayscale images)
  cifar      zero-pad 4, random crop back to size, flip (CIFAR recipe)
  imagenet   random-resized crop to data.image_size per record, then flip; eval: resize + centre crop
("imagenet_train" and "cifar_train" are accepted as aliases.)
"""

import numpy as np

AUGMENTATIONS = ("none", "flip", "crop_flip", "cifar", "imagenet")
ALIASES = {"imagenet_train": "imagenet", "cifar_train": "cifar"}  # PaddleClas-style names used by presets
_CROP_PAD = {"crop_flip": 2, "cifar": 4}


def canonical_augment(kind: str) -> str:
    return ALIASES.get(kind, kind)


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


class BatchAugment:
    """grain random map over a batch: optional pad-and-crop, then a random flip."""

    def __init__(self, kind: str, crop_pad: int = 0):
        self.kind, self.crop_pad = kind, crop_pad

    def __call__(self, batch, rng: np.random.Generator):
        images = batch["image"]
        if self.crop_pad:
            images = random_crop(images, rng, self.crop_pad)
        images = random_flip(images, rng)
        return dict(batch, image=np.ascontiguousarray(images))


def make_batch_augment(kind: str, crop_pad: int = None):
    """The batch-level part of recipe `kind`, or None when it has none."""
    kind = canonical_augment(kind)
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; use one of {', '.join(AUGMENTATIONS)}")
    if kind == "none":
        return None
    pad = _CROP_PAD.get(kind, 0)
    return BatchAugment(kind, crop_pad if pad and crop_pad is not None else pad)
