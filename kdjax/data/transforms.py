"""Per-record geometry: what turns variable-size images into fixed-size ones before batching.

ImageNet train: random-resized crop (torchvision/PaddleClas RandCropImage: area scale 0.08–1, aspect 3/4–4/3,
ten tries, then a centre crop) to `image_size`. ImageNet eval: resize the shorter side to
`image_size / eval_crop_ratio` (256 for 224) and take the centre crop. Both resize with PIL's bilinear filter
(`data.interpolation='bicubic'`: its bicubic one, PaddleClas' `interpolation: bicubic` with `backend: pil`), which
antialiases when shrinking. Fixed-size sources at their native size skip this stage entirely and use the
faster batch-level augmentations in `augment.py`.
"""

import math

import numpy as np
from PIL import Image

_BILINEAR = Image.Resampling.BILINEAR
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}  # data.interpolation


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _to_array(img: Image.Image) -> np.ndarray:
    array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)):
    """(left, top, right, bottom) of a random crop covering `scale` of the area with aspect ratio in `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    # Fallback: the largest centre crop whose aspect ratio lies within `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator, scale=(0.08, 1.0),
                        interpolation: str = "bilinear") -> np.ndarray:
    box = random_resized_crop_box(image.shape[0], image.shape[1], rng, scale)
    return _to_array(_to_pil(image).resize((size, size), FILTERS[interpolation], box=box))


def resize_center_crop(image: np.ndarray, size, crop_ratio: float = 0.875, interpolation: str = "bilinear") -> np.ndarray:
    """Resize the shorter side to round(size / crop_ratio), then cut the centred size × size window.

    `size` is an int or (height, width) (then the image is scaled so the window fits at that ratio). Images already
    at the target size pass through unchanged. Evaluation and `kdjax.infer` both use this (data/preprocess.py)."""
    th, tw = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    h, w = image.shape[:2]
    if h == th and w == tw:
        return image
    if th == tw:
        short = max(th, int(round(th / crop_ratio)))
        scale = short / min(h, w)
    else:
        scale = max(int(round(th / crop_ratio)) / h, int(round(tw / crop_ratio)) / w)
    new_h, new_w = max(th, int(round(h * scale))), max(tw, int(round(w * scale)))
    # Crop in the resized frame, expressed as a box in the source frame, so PIL resizes only what is kept.
    top, left = (new_h - th) // 2, (new_w - tw) // 2
    box = (left / scale, top / scale, (left + tw) / scale, (top + th) / scale)
    return _to_array(_to_pil(image).resize((tw, th), FILTERS[interpolation], box=box))


class TrainRecordTransform:
    """grain random map: one record → fixed `size` via random-resized crop (imagenet) or resize + centre crop."""

    def __init__(self, size: int, random_crop: bool, crop_ratio: float = 0.875, scale=(0.08, 1.0),
                 interpolation: str = "bilinear"):
        self.size, self.random_crop, self.crop_ratio, self.scale = size, random_crop, crop_ratio, tuple(scale)
        self.interpolation = interpolation

    def __call__(self, record, rng: np.random.Generator):
        image = np.asarray(record["image"], np.uint8)
        if self.random_crop:
            image = random_resized_crop(image, self.size, rng, self.scale, self.interpolation)
        else:
            image = resize_center_crop(image, self.size, self.crop_ratio, self.interpolation)
        return dict(record, image=image)


class EvalRecordTransform:
    """Deterministic: resize + centre crop to `size` (images already size × size pass through)."""

    def __init__(self, size: int, crop_ratio: float = 0.875, interpolation: str = "bilinear"):
        self.size, self.crop_ratio, self.interpolation = size, crop_ratio, interpolation

    def __call__(self, record):
        return dict(record, image=resize_center_crop(np.asarray(record["image"], np.uint8), self.size,
                                                     self.crop_ratio, self.interpolation))
