"""Batch-level augmentations on uint8 NHWC numpy batches, run as grain random maps.

Working on whole batches keeps per-image Python overhead out of the hot loop; the random generator grain hands
each batch is derived from the pipeline seed and the batch index, so a resumed run (or one with worker
processes) sees the same views. Teacher and student receive the same augmented images (one batch feeds every
sub-model).

`data.augment` names a recipe; its per-record part (for variable-size images) lives in `transforms.py`:
  auto       (the default) `flip` for the default Fashion-MNIST (clothes are left-right symmetric), `crop` for any
             data the config names: a flip can change what an image is (digits, text, arrows), a small shift cannot
  none       nothing
  crop       zero-pad by size/14 (2 px at 28×28), random crop back to size; no flip: keeps every label valid
  flip       random horizontal flip
  crop_flip  zero-pad 2, random crop back to size, flip (small grayscale images)
  cifar      zero-pad 4, random crop back to size, flip (CIFAR recipe)
  imagenet   random-resized crop to data.image_size per record, then flip; eval: resize + centre crop
("imagenet_train" and "cifar_train" are accepted as aliases.)
"""

import numpy as np

AUGMENTATIONS = ("none", "crop", "flip", "crop_flip", "cifar", "imagenet")
AUTO = "auto"
ALIASES = {"imagenet_train": "imagenet", "cifar_train": "cifar"}  # PaddleClas-style names used by presets
_CROP_PAD = {"crop_flip": 2, "cifar": 4, "crop": -1}  # -1: relative to the image size (size / 14)
_NO_FLIP = ("crop",)


def canonical_augment(kind: str) -> str:
    return ALIASES.get(kind, kind)


def resolve_augment(kind: str, default_data: bool) -> str:
    """`auto` → `flip` on the default Fashion-MNIST, `crop` (label-safe) on data the config names."""
    kind = canonical_augment(kind)
    if kind != AUTO:
        return kind
    return "flip" if default_data else "crop"


def relative_pad(height: int, width: int) -> int:
    return max(1, int(round(min(height, width) / 14)))


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
    """grain random map over a batch: optional pad-and-crop (crop_pad -1: size / 14), then a random flip unless
    the recipe keeps orientation (`crop`)."""

    def __init__(self, kind: str, crop_pad: int = 0):
        self.kind, self.crop_pad = kind, crop_pad
        self.flip = kind not in _NO_FLIP

    def __call__(self, batch, rng: np.random.Generator):
        images = batch["image"]
        pad = relative_pad(*images.shape[1:3]) if self.crop_pad < 0 else self.crop_pad
        if pad:
            images = random_crop(images, rng, pad)
        if self.flip:
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
