"""The strong view: a second, RandAugment-augmented copy of each training image, for losses that declare
`views=("strong",)` (MLKD). Numpy on uint8 NHWC batches (grayscale or colour), run as a grain random map, so each
batch's view is a pure function of (pipeline seed, batch index) like the weak view.

Recipe, after MLKD's `get_cifar100_train_transform_strong` / its ImageNet twin (FixMatch's RandAugment): the
recipe's own crop and flip drawn independently of the weak view's (zero-pad + random crop for `crop` / `crop_flip` /
`cifar`, no flip for `crop`; for `imagenet` an independent random-resized crop per record, `StrongRecordCrop`), then RandAugment(n=2): two ops
drawn with replacement from the 14 below, each at a magnitude uniform in its range, then Cutout of a random square
of side U(0, 0.5)·W filled with (125, 123, 114) (grayscale: its luminance, 123).

Ops (ranges as the reference's augment_list): AutoContrast, Brightness [0.05, 0.95], Color [0.05, 0.95],
Contrast [0.05, 0.95], Equalize, Identity, Posterize [4, 8] bits, Rotate [−30, 30]°, Sharpness [0.05, 0.95],
ShearX/ShearY [−0.3, 0.3], Solarize [0, 256], TranslateX/TranslateY [−0.3, 0.3]·size. Geometric ops sample the
nearest pixel and fill with 0, as PIL's defaults; the photometric ones follow PIL's ImageOps/ImageEnhance formulas
(blends with a degenerate image, rounded), which numpy reproduces to within rounding rather than bit for bit.
"""

import numpy as np

from kdjax.data.augment import _CROP_PAD, _NO_FLIP, canonical_augment, random_crop, random_flip, relative_pad
from kdjax.data.transforms import random_resized_crop

STRONG = "strong"
CUTOUT_RGB = (125, 123, 114)
CUTOUT_GRAY = 123  # 0.299·125 + 0.587·123 + 0.114·114
OPS = ("autocontrast", "brightness", "color", "contrast", "equalize", "identity", "posterize", "rotate",
       "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")
RANGES = {"brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95), "posterize": (4, 8),
          "rotate": (-30, 30), "sharpness": (0.05, 0.95), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3),
          "solarize": (0, 256), "translate_x": (-0.3, 0.3), "translate_y": (-0.3, 0.3)}


def view_key(view: str) -> str:
    """Batch key of an extra view's images."""
    return f"image_{view}"


# --- photometric ops: x uint8 [G, H, W, C], v float [G] -------------------------------------------------------

def _blend(degenerate, x, v):
    """PIL ImageEnhance: degenerate + v · (x − degenerate), rounded and clipped."""
    out = degenerate + v[:, None, None, None] * (x.astype(np.float32) - degenerate)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _luma(x):
    """PIL's L conversion (ITU-R 601-2), [G, H, W, 1] float."""
    if x.shape[-1] == 1:
        return x.astype(np.float32)
    return (x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]


def autocontrast(x, v):
    lo = x.min(axis=(1, 2), keepdims=True).astype(np.float32)
    hi = x.max(axis=(1, 2), keepdims=True).astype(np.float32)
    scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1.0), 1.0)
    out = np.where(hi > lo, (x - lo) * scale, x)
    return np.clip(np.floor(out), 0, 255).astype(np.uint8)


def brightness(x, v):
    return _blend(np.zeros((1, 1, 1, 1), np.float32), x, v)


def color(x, v):
    return _blend(np.rint(_luma(x)), x, v)


def contrast(x, v):
    mean = np.floor(_luma(x).mean(axis=(1, 2, 3), keepdims=True) + 0.5)
    return _blend(mean, x, v)


def equalize(x, v):
    """PIL ImageOps.equalize, per image and channel."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[-1]):
            ch = x[i, ..., c]
            hist = np.bincount(ch.ravel(), minlength=256)
            nonzero = hist[hist > 0]
            step = (nonzero.sum() - nonzero[-1]) // 255
            if step == 0:
                out[i, ..., c] = ch
                continue
            lut = (np.concatenate([[0], np.cumsum(hist)[:-1]]) + step // 2) // step
            out[i, ..., c] = np.clip(lut, 0, 255).astype(np.uint8)[ch]
    return out


def identity(x, v):
    return x


def posterize(x, v):
    bits = np.maximum(1, v.astype(np.int64))
    mask = (0xFF << (8 - bits)) & 0xFF
    return (x & mask[:, None, None, None].astype(np.uint8)).astype(np.uint8)


def solarize(x, v):
    return np.where(x >= v[:, None, None, None], 255 - x, x).astype(np.uint8)


def sharpness(x, v):
    """Blend with PIL's SMOOTH filter (3×3, centre 5, others 1, /13), borders kept."""
    f = x.astype(np.float32)
    smooth = f.copy()
    acc = sum(f[:, 1 + dy:f.shape[1] - 1 + dy, 1 + dx:f.shape[2] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    smooth[:, 1:-1, 1:-1] = np.rint((acc + 4.0 * f[:, 1:-1, 1:-1]) / 13.0)
    return _blend(smooth, x, v)


# --- geometric ops: nearest-pixel inverse affine maps, fill 0 -----------------------------------------------------

def _affine(x, m):
    """out[y, x] = in[floor(m · (x + ½, y + ½, 1))] where inside, else 0; m [G, 2, 3] maps output → input."""
    g, h, w, _ = x.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    src_x = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
    src_y = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
    ix, iy = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    out = x[np.arange(g)[:, None, None], np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
    return np.where(inside[..., None], out, 0).astype(np.uint8)


def _matrices(a, b, c, d, e, f):
    return np.stack([np.stack([a, b, c], -1), np.stack([d, e, f], -1)], -2).astype(np.float32)


def rotate(x, v):
    """PIL Image.rotate(v): counter-clockwise by v degrees about the centre."""
    h, w = x.shape[1:3]
    t = -np.radians(v)
    cos, sin = np.cos(t), np.sin(t)
    cx, cy = w / 2.0, h / 2.0
    return _affine(x, _matrices(cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))


def shear_x(x, v):
    o, z = np.ones_like(v), np.zeros_like(v)
    return _affine(x, _matrices(o, v, z, z, o, z))


def shear_y(x, v):
    o, z = np.ones_like(v), np.zeros_like(v)
    return _affine(x, _matrices(o, z, z, v, o, z))


def translate_x(x, v):
    o, z = np.ones_like(v), np.zeros_like(v)
    return _affine(x, _matrices(o, z, v * x.shape[2], z, o, z))


def translate_y(x, v):
    o, z = np.ones_like(v), np.zeros_like(v)
    return _affine(x, _matrices(o, z, z, z, o, v * x.shape[1]))


_FUNCTIONS = {name: globals()[name] for name in OPS}


def rand_augment(images: np.ndarray, rng: np.random.Generator, n: int = 2) -> np.ndarray:
    """`n` ops per image, drawn with replacement, magnitudes uniform in their ranges; each op runs once per batch
    on the images that drew it."""
    x = images.copy()
    count = len(x)
    for _ in range(n):
        ops = rng.integers(0, len(OPS), size=count)
        u = rng.random(count)
        for k, name in enumerate(OPS):
            sel = np.flatnonzero(ops == k)
            if sel.size:
                lo, hi = RANGES.get(name, (0.0, 1.0))
                x[sel] = _FUNCTIONS[name](x[sel], (lo + (hi - lo) * u[sel]).astype(np.float32))
    return x


def cutout(images: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.5) -> np.ndarray:
    """The reference's Cutout(U(0, 0.5)): a square of side v = U(0, max_fraction)·W at a random centre, clipped
    (PIL's rectangle includes its far edge)."""
    n, h, w, c = images.shape
    side = rng.random(n) * max_fraction * w
    # the reference's centre is np.random.uniform(w), i.e. uniform(low=w, high=1): U(1, w)
    x0 = np.maximum(0, rng.uniform(1, w, n) - side / 2).astype(np.int64)
    y0 = np.maximum(0, rng.uniform(1, h, n) - side / 2).astype(np.int64)
    x1, y1 = np.minimum(w - 1, np.floor(x0 + side)), np.minimum(h - 1, np.floor(y0 + side))
    cols, rows = np.arange(w)[None, :], np.arange(h)[None, :]
    inside = (((rows >= y0[:, None]) & (rows <= y1[:, None]))[:, :, None]
              & ((cols >= x0[:, None]) & (cols <= x1[:, None]))[:, None, :])
    inside &= (side > 0)[:, None, None]  # v = 0: the reference returns the image unchanged
    fill = np.array(CUTOUT_RGB if c == 3 else [CUTOUT_GRAY] * c, np.uint8)
    return np.where(inside[..., None], fill, images).astype(np.uint8)


class StrongAugment:
    """grain random map over a batch: adds `image_strong`, the strong view of the batch's records.

    Reads `image_strong` when a per-record crop already made it (`StrongRecordCrop`, variable-size images),
    else `image` before the weak view's augmentation; the weak view is left untouched.
    """

    def __init__(self, recipe: str, n_ops: int = 2):
        self.recipe = canonical_augment(recipe)
        self.crop_pad = _CROP_PAD.get(self.recipe, 0)  # -1: relative to the image size, as the weak view's
        self.flip = self.recipe not in ("none",) + _NO_FLIP  # `crop` keeps orientation (labels a flip can change)
        self.n_ops = int(n_ops)

    def __call__(self, batch, rng: np.random.Generator):
        key = view_key(STRONG)
        images = np.asarray(batch[key] if key in batch else batch["image"])
        pad = relative_pad(*images.shape[1:3]) if self.crop_pad < 0 else self.crop_pad
        if pad:
            images = random_crop(images, rng, pad)
        if self.flip:
            images = random_flip(images, rng)
        images = cutout(rand_augment(images, rng, self.n_ops), rng)
        return dict(batch, **{key: np.ascontiguousarray(images)})


class StrongRecordCrop:
    """grain random map over records (variable-size images, `imagenet` recipe): the strong view's own random-resized
    crop, drawn independently of the weak view's (the reference applies RandomResizedCrop in each pipeline)."""

    def __init__(self, size: int, scale=(0.08, 1.0)):
        self.size, self.scale = int(size), tuple(scale)

    def __call__(self, record, rng: np.random.Generator):
        image = np.asarray(record["image"], np.uint8)
        return dict(record, **{view_key(STRONG): random_resized_crop(image, self.size, rng, self.scale)})


def check_views(views) -> tuple:
    """The views the pipeline can make; a ValueError names any other."""
    views = tuple(views or ())
    unknown = [v for v in views if v != STRONG]
    if unknown:
        raise ValueError(f"unknown input view(s) {unknown}: the pipeline makes only {STRONG!r}")
    return views
