"""What the pipeline does to records and batches, read once from `config.data` and checked there.

`open_source` attaches these options to the source it returns (`source.options`), so `train_pipeline` and
`eval_batches` apply the configured decode, resize, augmentation, mixing and workers without every caller
passing each field through.
"""

import dataclasses
from typing import Optional, Tuple

from kdjax.data.augment import ALIASES, AUGMENTATIONS, AUTO, resolve_augment
from kdjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    augment: str = "none"              # a recipe of augment.AUGMENTATIONS
    image_size: int = 0                # 0: the images' own (fixed) size
    eval_crop_ratio: float = 0.875     # eval: shorter side → image_size / ratio, then centre crop
    crop_scale: Tuple[float, float] = (0.08, 1.0)  # random-resized crop area range
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    num_classes: int = 0               # for soft labels
    skip_bad_images: bool = False
    num_workers: int = 0               # grain worker processes (0: threads only)
    interpolation: str = "bilinear"    # the resize filter of both crops (transforms.FILTERS)
    replayable: bool = False           # draws per record from (seed, view=epoch, index): kdjax/data/replay.py

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def options_from_config(data, num_classes: int, default_data: bool = False, image_shape=None) -> PipelineOptions:
    """`data.augment='auto'` resolves here: `flip` for the default Fashion-MNIST, `crop` for data the config names."""
    opts = PipelineOptions(
        augment=resolve_augment(str(data.get("augment", "none")), default_data),
        image_size=int(data.get("image_size", 0) or 0),
        eval_crop_ratio=float(data.get("eval_crop_ratio", 0.875)),
        crop_scale=tuple(float(v) for v in data.get("crop_scale", (0.08, 1.0))),
        mixup_alpha=float(data.get("mixup_alpha", 0.0) or 0.0),
        cutmix_alpha=float(data.get("cutmix_alpha", 0.0) or 0.0),
        num_classes=int(num_classes),
        skip_bad_images=bool(data.get("skip_bad_images", False)),
        num_workers=int(data.get("num_workers", 0) or 0),
        interpolation=str(data.get("interpolation", "bilinear")),
        replayable=bool(data.get("replayable", False)),
    )
    check_options(opts)
    return opts


def check_options(opts: PipelineOptions, image_shape: Optional[tuple] = None):
    if opts.augment not in AUGMENTATIONS:
        raise ConfigError("data.augment", f"unknown augmentation {opts.augment!r}; use one of "
                                          f"{', '.join((AUTO,) + AUGMENTATIONS + tuple(ALIASES))}")
    if opts.image_size < 0:
        raise ConfigError("data.image_size", f"{opts.image_size} must be >= 0 (0: the images' own size)")
    if not 0 < opts.eval_crop_ratio <= 1:
        raise ConfigError("data.eval_crop_ratio", f"{opts.eval_crop_ratio} must be in (0, 1]")
    lo, hi = opts.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError("data.crop_scale", f"{opts.crop_scale} must be (low, high) with 0 < low <= high <= 1")
    if opts.mixup_alpha < 0 or opts.cutmix_alpha < 0:
        raise ConfigError("data.mixup_alpha", "mixup_alpha and cutmix_alpha must be >= 0 (0: off)")
    if opts.mixing and opts.num_classes <= 0:
        raise ConfigError("data.num_classes", "mixup/cutmix soft labels need the number of classes")
    if opts.num_workers < 0:
        raise ConfigError("data.num_workers", f"{opts.num_workers} must be >= 0 (0: threads only)")
    if opts.replayable and (image_shape is not None or opts.augment == "imagenet"):
        from kdjax.data.replay import recipe_from  # refuses what cannot be replayed, naming data.augment

        recipe_from(opts, image_shape)
    if image_shape is not None:
        variable = image_shape[0] is None or image_shape[1] is None
        if (variable or opts.augment == "imagenet") and opts.image_size == 0:
            raise ConfigError("data.image_size", "these images have no fixed size (or augment='imagenet' crops "
                                                 "them): set data.image_size, e.g. 224")


def resizes_records(opts: PipelineOptions, image_shape: Optional[tuple]) -> bool:
    """Whether records need the per-record path (variable size, a different target size, or random crops)."""
    if opts.augment == "imagenet":
        return True
    if image_shape is None or not opts.image_size:
        return False
    return tuple(image_shape[:2]) != (opts.image_size, opts.image_size)
