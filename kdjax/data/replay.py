"""Replayable augmentation: every random draw of a training view is a pure function of (seed, view, record index).

The default pipeline draws its flips, crops and mixes from one generator per batch (augment.py, mixing.py), so a
view depends on which batch a record landed in and cannot be rebuilt on its own. Here a record's view is drawn
from its own counter-based generator, Philox keyed by (seed, view, index), and described by explicit parameters
(`ViewParams`): crop offset, flip, mix kind, partner record, λ and cutmix box. `apply_view` rebuilds the image
from those parameters alone, so

  * `data.replayable=True` trains with view = epoch (a live teacher sees the same images as the student), and
  * a replay cache (`python -m kdjax.tools.cache_teacher --views=K`) stores the parameters of views 0..K-1 with
    the teacher's logits on exactly those images; training from it uses view `epoch mod K` and rebuilds the image
    from the stored parameters (kdjax/data/replay_cache.py).

The view of epoch e in a live replayable run is view e of the cache, so a cache with K >= epochs trains the same
student as the live teacher. Mixing is per record (timm's "elem" mode): the partner is a uniformly drawn record
of the whole training split, given its own view v, then mixed with λ ~ Beta(α, α) (cutmix: a box, λ the exact
kept area); the ground-truth soft label is λ·onehot(y) + (1-λ)·onehot(y_partner) as in mixing.py.
"""

import dataclasses
from typing import Optional

import numpy as np

from kdjax.data.augment import _CROP_PAD, _NO_FLIP, canonical_augment, relative_pad
from kdjax.errors import ConfigError

NO_MIX, MIXUP, CUTMIX = 0, 1, 2
PARAM_FIELDS = ("dy", "dx", "flip", "mix", "partner", "lam", "box")  # box: y0, y1, x0, x1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a view may do, resolved from the pipeline options and the image size."""
    pad: int = 0
    flip: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    num_classes: int = 0

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def recipe_from(opts, image_shape) -> Recipe:
    """The replayable recipe of `opts` (PipelineOptions) on fixed-size images of `image_shape`, or a ConfigError."""
    kind = canonical_augment(opts.augment)
    if kind == "imagenet" or image_shape is None or image_shape[0] is None or \
            (opts.image_size and tuple(image_shape[:2]) != (opts.image_size, opts.image_size)):
        raise ConfigError("data.augment", f"{opts.augment!r} on images that are resized per record cannot be "
                                          "replayed yet (only fixed-size recipes: none, crop, flip, crop_flip, cifar, "
                                          "with mixup/cutmix); use one of those or drop data.replayable/the replay cache")
    pad = _CROP_PAD.get(kind, 0)
    if pad < 0:
        pad = relative_pad(image_shape[0], image_shape[1])
    return Recipe(pad=int(pad), flip=kind not in _NO_FLIP and kind != "none", mixup_alpha=float(opts.mixup_alpha),
                  cutmix_alpha=float(opts.cutmix_alpha), num_classes=int(opts.num_classes))


def generator(seed: int, view: int, index: int) -> np.random.Generator:
    """The record's own counter-based generator: Philox keyed by (seed, view, index), no shared state."""
    key = np.array([int(seed) & 0xFFFFFFFFFFFFFFFF, (int(view) << 40) | int(index)], np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


def draw(recipe: Recipe, seed: int, view: int, index: int, count: int, height: int, width: int) -> dict:
    """The parameters of view `view` of record `index` (of `count`), as scalars."""
    rng = generator(seed, view, index)
    p = {"dy": 0, "dx": 0, "flip": 0, "mix": NO_MIX, "partner": int(index), "lam": 1.0, "box": (0, 0, 0, 0)}
    if recipe.pad:
        p["dy"] = int(rng.integers(0, 2 * recipe.pad + 1))
        p["dx"] = int(rng.integers(0, 2 * recipe.pad + 1))
    if recipe.flip:
        p["flip"] = int(rng.random() < 0.5)
    if recipe.mixing:
        cut = recipe.cutmix_alpha > 0 and (recipe.mixup_alpha <= 0 or rng.random() < 0.5)
        alpha = recipe.cutmix_alpha if cut else recipe.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        p["partner"] = int(rng.integers(0, count))
        if cut:
            ch, cw = int(height * np.sqrt(1.0 - lam)), int(width * np.sqrt(1.0 - lam))
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            y0, y1 = int(np.clip(cy - ch // 2, 0, height)), int(np.clip(cy + ch // 2, 0, height))
            x0, x1 = int(np.clip(cx - cw // 2, 0, width)), int(np.clip(cx + cw // 2, 0, width))
            p.update(mix=CUTMIX, box=(y0, y1, x0, x1), lam=1.0 - (y1 - y0) * (x1 - x0) / float(height * width))
        else:
            p.update(mix=MIXUP, lam=lam)
    return p


def geometry(image: np.ndarray, pad: int, dy: int, dx: int, flip: int) -> np.ndarray:
    """Zero-pad by `pad`, crop back at offset (dy, dx), flip left-right: augment.random_crop/random_flip for one."""
    h, w = image.shape[:2]
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))[dy:dy + h, dx:dx + w]
    if flip:
        image = image[:, ::-1]
    return image


def apply_view(recipe: Recipe, image: np.ndarray, p: dict, partner_image: Optional[np.ndarray] = None,
               partner_p: Optional[dict] = None) -> np.ndarray:
    """The view of a uint8 HWC image from its parameters `p` (the partner's image and its own view parameters when
    p mixes)."""
    image = image[..., None] if image.ndim == 2 else image
    out = geometry(image, recipe.pad, p["dy"], p["dx"], p["flip"])
    if p["mix"] == NO_MIX:
        return np.ascontiguousarray(out)
    partner_image = partner_image[..., None] if partner_image.ndim == 2 else partner_image
    other = geometry(partner_image, recipe.pad, partner_p["dy"], partner_p["dx"], partner_p["flip"])
    if p["mix"] == MIXUP:
        lam = np.float32(p["lam"])
        mixed = lam * out.astype(np.float32) + (np.float32(1.0) - lam) * other.astype(np.float32)
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    y0, y1, x0, x1 = (int(v) for v in p["box"])
    out = np.array(out)
    out[y0:y1, x0:x1] = other[y0:y1, x0:x1]
    return out


class ViewSource:
    """How a pipeline gets view parameters: drawn live (`params` None) or read from a replay cache's arrays."""

    def __init__(self, recipe: Recipe, seed: int, count: int, height: int, width: int, views: int = 0,
                 params: Optional[dict] = None):
        self.recipe, self.seed, self.count, self.height, self.width = recipe, int(seed), count, height, width
        self.views, self.params = int(views), params

    def view_of(self, epoch: int) -> int:
        """Live: view = epoch; from a K-view cache: epoch mod K."""
        return epoch % self.views if self.views else epoch

    def get(self, index: int, view: int) -> dict:
        if self.params is None:
            return draw(self.recipe, self.seed, view, index, self.count, self.height, self.width)
        return stored(self.params, index, view)


def stored(params: dict, index: int, view: int) -> dict:
    """One (record, view)'s parameters from the cache's arrays (replay_cache.py), as `draw` returns them."""
    p = {k: params[k][index, view] for k in PARAM_FIELDS}
    return {"dy": int(p["dy"]), "dx": int(p["dx"]), "flip": int(p["flip"]), "mix": int(p["mix"]),
            "partner": int(p["partner"]), "lam": float(p["lam"]), "box": tuple(int(v) for v in p["box"])}


class ReplayRecords:
    """Per-record map of the training stream in replay mode: record at global stream position `pos` (epoch
    pos // count) → its view, plus "view" and, when mixing, "soft_label". `read(i)` reads record i of the
    (bad-image-substituted) training split for mix partners."""

    def __init__(self, views: ViewSource, read):
        self.views, self.read = views, read

    def __call__(self, record: dict, pos: int) -> dict:
        recipe, index = self.views.recipe, int(record["index"])
        view = self.views.view_of(pos // self.views.count)
        p = self.views.get(index, view)
        out = dict(record, view=view)
        if p["mix"] == NO_MIX:
            out["image"] = apply_view(recipe, np.asarray(record["image"], np.uint8), p)
        else:
            partner = self.read(p["partner"])
            out["image"] = apply_view(recipe, np.asarray(record["image"], np.uint8), p,
                                      np.asarray(partner["image"], np.uint8), self.views.get(p["partner"], view))
        if recipe.mixing:
            soft = np.zeros(recipe.num_classes, np.float32)
            soft[int(record["label"])] += np.float32(p["lam"])
            if p["mix"] != NO_MIX:
                soft[int(partner["label"])] += np.float32(1.0) - np.float32(p["lam"])
            out["soft_label"] = soft
        return out
