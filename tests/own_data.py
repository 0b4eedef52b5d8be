"""Small generated datasets that are not Fashion-MNIST, for the "your own data" tests (tests/unit/test_own_data.py,
tests/e2e/test_own_data_runs.py).

- glyphs: 20×20 grayscale, 10 classes that are five mirror pairs (b d, p q, ( ), [ ], < >), so a horizontal flip
  turns a valid image of one class into one of another: flip augmentation cannot learn them, a crop can.
- colours: 12×12×3 (another size and channel count), class = which of 10 colours fills a square.
- variable-size JPEGs / 16-bit PNGs in PaddleClas list files.
"""

import gzip
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GLYPHS = "bdpq()[]<>"
STUDENT_ONLY = '''
from kdjax.config.defaults import base_config, loss_entry, model_entry


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.export_model = "Student"
    c.train.batch_size, c.train.epochs, c.train.eval_batch_size = 64, 1.0, 200
    c.train.log_every_steps = c.train.checkpoint_every_steps = 10
    c.optim.lr = 0.05
    return c
'''


def student_config(directory) -> str:
    """A one-model config (the student with ground-truth CE): the quickest real training run."""
    path = os.path.join(str(directory), "student_only.py")
    with open(path, "w") as f:
        f.write(STUDENT_ONLY)
    return path


def glyph_images(count: int, seed: int, size: int = 20):
    """(uint8 [count, size, size], labels): each a mirror-pair glyph, randomly shifted, with a little noise."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=14)
    images, labels = np.zeros((count, size, size), np.uint8), (np.arange(count) % len(GLYPHS)).astype(np.uint8)
    rng.shuffle(labels)
    for i, label in enumerate(labels):
        img = Image.new("L", (size, size))
        ImageDraw.Draw(img).text((5 + rng.integers(-2, 3), 1 + rng.integers(-2, 3)), GLYPHS[label], fill=255,
                                 font=font)
        noise = rng.normal(0, 12, (size, size))
        images[i] = np.clip(np.asarray(img, np.float64) * rng.uniform(0.7, 1.0) + noise, 0, 255).astype(np.uint8)
    return images, labels


def colour_images(count: int, seed: int, size: int = 12):
    """(uint8 [count, size, size, 3], labels): a square of one of 10 colours on a noisy gray background."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                        [255, 128, 0], [128, 0, 255], [255, 255, 255], [0, 0, 0]], np.float64)
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.normal(128, 20, (count, size, size, 3))
    for i, label in enumerate(labels):
        y, x = rng.integers(0, size // 2, 2)
        images[i, y:y + size // 2, x:x + size // 2] = colours[label]
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_idx(directory, train, test, names=None) -> str:
    """IDX files (train-*, t10k-*) of two (images, labels) pairs, plus labels.txt when `names` are given."""
    os.makedirs(directory, exist_ok=True)
    for stem, (images, labels) in (("train", train), ("t10k", test)):
        for kind, array in (("images", images), ("labels", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(os.path.join(directory, f"{stem}-{kind}-idx{array.ndim}-ubyte.gz"), "wb") as f:
                f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())
    if names:
        with open(os.path.join(directory, "labels.txt"), "w") as f:
            f.writelines(f"{k} {n}\n" for k, n in enumerate(names))
    return str(directory)


def write_list(root, splits: dict, *, ext: str = ".png", sizes=None, bits16: bool = False, seed: int = 0) -> str:
    """PaddleClas lists under `root`: {list name: (images, labels)}; each image saved as `ext`, resized to a random
    size from `sizes` (w, h ranges) when given, as a 16-bit PNG (values × 257) with `bits16`."""
    rng = np.random.default_rng(seed)
    for list_name, (images, labels) in splits.items():
        sub = list_name.split(".")[0]
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            rel = f"{sub}/{i:05d}{ext}"
            img = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
            if sizes:
                img = img.resize((int(rng.integers(*sizes[0])), int(rng.integers(*sizes[1]))), Image.BILINEAR)
            if bits16:
                img = Image.fromarray(np.asarray(img, np.uint16) * 257)  # mode I;16: 0..65535
            img.save(os.path.join(root, rel), **({"quality": 95} if ext == ".jpg" else {}))
            lines.append(f"{rel} {int(label)}\n")
        with open(os.path.join(root, list_name), "w") as f:
            f.writelines(lines)
    return str(root)
