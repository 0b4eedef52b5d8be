"""Encoded image bytes (JPEG, PNG, ...) → uint8 HWC arrays, with errors that say which file or record failed.

Decoding failures raise `BadImage`, a `DataError` the pipeline can tell apart from configuration mistakes, so
that `data.skip_bad_images` skips exactly the images that cannot be read and nothing else.
"""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdjax.errors import DataError

# Refuse decompression bombs with a clear error instead of PIL's warning, but allow large photos.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


class BadImage(DataError):
    """One image cannot be read or decoded; `origin` names the file (and list line) or dataset record."""

    def __init__(self, origin: str, reason: str):
        self.origin = origin
        super().__init__(f"{origin}: {reason}")


def decode_image(data: bytes, origin: str, channels: int = 3) -> np.ndarray:
    """Decode bytes into uint8 [H, W, channels] (RGB for 3 channels, grayscale for 1)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImage(origin, f"cannot decode the image ({type(e).__name__}: {e})") from None
    return array[..., None] if array.ndim == 2 else array


def read_image_file(path: str, origin: str, channels: int = 3) -> np.ndarray:
    """Read and decode one image file; a missing or unreadable file is a `BadImage` naming `origin`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImage(origin, "the image file does not exist") from None
    except OSError as e:
        raise BadImage(origin, f"cannot read the image file ({e})") from None
    return decode_image(data, origin, channels)
