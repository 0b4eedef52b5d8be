"""Encoded image bytes (PNG, JPEG, TIFF, ...) → uint8 HWC arrays: the ONE decoder that training, evaluation and
`kdjax.infer` share, with errors that say which file or record failed.

Pixel values are scaled to 0..255 by the range of their type, never clipped: 16-bit images (PIL modes I;16*, or I
holding values up to 65535) are divided by 257, float images in [0, 1] multiplied by 255 (float images already in
[0, 255] are kept), palette images expanded through their palette, 1-bit images mapped to 0/255. Alpha is dropped.
Channels: `channels=0` keeps the image's own (1 for grayscale, 3 for colour), 1 converts colour to luma (ITU-R
601-2, exactly as PIL's "L"), 3 repeats a grayscale channel.

Decoding failures raise `BadImage`, a `DataError` the pipeline can tell apart from configuration mistakes, so
that `data.skip_bad_images` skips exactly the images that cannot be read and nothing else. This module is also the
one place that sets PIL's decompression-bomb limit.
"""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdjax.errors import DataError

# Refuse decompression bombs with a clear error instead of PIL's warning, but allow large photos. PIL only warns
# between this limit and twice it, so `decode_image` checks the header's size itself before decoding.
MAX_PIXELS = 20_000 * 20_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class BadImage(DataError):
    """One image cannot be read or decoded; `origin` names the file (and list line) or dataset record."""

    def __init__(self, origin: str, reason: str):
        self.origin = origin
        super().__init__(f"{origin}: {reason}")


def mode_channels(img: Image.Image) -> int:
    """1 for a grayscale image (a palette of grays included), else 3: what `channels=0` decodes it to."""
    if img.mode in GRAY_MODES:
        return 1
    if img.mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [], np.int32)
        if palette.size and palette.size % 3 == 0:
            rgb = palette.reshape(-1, 3)
            return 1 if np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]) else 3
    return 3


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] → uint8 [..., 1] with PIL's fixed-point ITU-R 601-2 weights (bit-identical to convert("L"))."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HWC (or HW) → `channels` (0: unchanged; 1: luma of colour; 3: grayscale repeated)."""
    if array.ndim == 2:
        array = array[..., None]
    have = array.shape[-1]
    if not channels or channels == have:
        return array
    if channels == 1 and have >= 3:
        return luma(array[..., :3])
    if channels == 3 and have == 1:
        return np.repeat(array, 3, axis=-1)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def scale_to_uint8(values: np.ndarray, origin: str, mode: str) -> np.ndarray:
    """16-bit / 32-bit integer / float pixel values → uint8 by the range of their type."""
    if mode == "F":
        values = values.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise BadImage(origin, "float image with NaN or infinite pixels")
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0.0 and hi <= 1.0:
            values = values * 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            raise BadImage(origin, f"float pixel values span [{lo:g}, {hi:g}]; kdjax reads float images in [0, 1] "
                                   f"or [0, 255]")
        return np.rint(values).astype(np.uint8)
    values = values.astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > 65535:
        raise BadImage(origin, f"integer pixel values span [{lo}, {hi}]; kdjax reads 8-bit, 16-bit and float images")
    return np.rint(values / 257.0).astype(np.uint8)


def image_array(img: Image.Image, origin: str) -> np.ndarray:
    """A loaded PIL image → uint8 HW1 (grayscale) or HW3 (colour), values scaled to 0..255 (see module doc)."""
    mode = img.mode
    if mode in ("P", "PA"):  # expanded through the palette; a palette of grays stays one channel
        gray = mode_channels(img) == 1
        rgb = np.asarray(img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB"), np.uint8)
        return rgb[..., :1] if gray else np.ascontiguousarray(rgb[..., :3])
    if mode == "1":
        array = np.asarray(img.convert("L"), np.uint8)
    elif mode in ("L", "RGB"):
        array = np.asarray(img, np.uint8)
    elif mode in ("LA", "La"):
        array = np.asarray(img.getchannel(0), np.uint8)
    elif mode in ("I", "F") or mode.startswith("I;16"):
        array = scale_to_uint8(np.asarray(img), origin, mode)
    else:  # RGBA, CMYK, YCbCr, LAB, HSV, ...: PIL's conversion to RGB
        array = np.asarray(img.convert("RGB"), np.uint8)
    return array[..., None] if array.ndim == 2 else array


def decode_image(data: bytes, origin: str, channels: int = 0) -> np.ndarray:
    """Decode bytes into uint8 [H, W, C]: C is the image's own (0) or `channels` (1 or 3)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise BadImage(origin, f"the image is {img.size[0]}×{img.size[1]} pixels, more than kdjax decodes "
                                       f"({MAX_PIXELS:,}); downscale it first")
            img.load()
            array = image_array(img, origin)
    except BadImage:
        raise
    except _DECODE_ERRORS as e:
        raise BadImage(origin, f"cannot decode the image ({type(e).__name__}: {e})") from None
    return to_channels(array, channels)


def image_header(data: bytes, origin: str):
    """(format, width, height, channels) from the header alone (no pixel decoding): cheap enough to sample a split."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format, img.size[0], img.size[1], mode_channels(img)
    except _DECODE_ERRORS as e:
        raise BadImage(origin, f"cannot decode the image ({type(e).__name__}: {e})") from None


def read_file(path: str, origin: str) -> bytes:
    """The bytes of one image file; a missing or unreadable file is a `BadImage` naming `origin`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise BadImage(origin, "the image file does not exist") from None
    except OSError as e:
        raise BadImage(origin, f"cannot read the image file ({e.strerror or e})") from None


def read_image_file(path: str, origin: str, channels: int = 0) -> np.ndarray:
    """Read and decode one image file; a missing or unreadable file is a `BadImage` naming `origin`."""
    return decode_image(read_file(path, origin), origin, channels)
