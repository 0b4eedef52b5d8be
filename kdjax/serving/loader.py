"""Run a `kdjax.serving` artifact with plain JAX: no kdjax, no Flax, no model code.

    python loader.py model.jax_exported image.png ...      (or import `load` from this file)

Deliberately self-contained (copy this one file next to the artifact).
"""

import json
import sys

import numpy as np


def load(path: str):
    """(callable uint8 NHWC batch → logits, metadata dict)."""
    from jax import export

    with open(path, "rb") as f:
        exported = export.deserialize(bytearray(f.read()))
    with open(path + ".json") as f:
        meta = json.load(f)
    return (lambda images: np.asarray(exported.call(np.asarray(images, dtype=np.uint8)))), meta


def _read_image(path, size):
    from PIL import Image

    h, w, c = size
    with Image.open(path) as img:
        arr = np.asarray(img.convert("L" if c == 1 else "RGB").resize((w, h)), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


if __name__ == "__main__":
    run, meta = load(sys.argv[1])
    images = np.stack([_read_image(p, meta["input_size"]) for p in sys.argv[2:]])
    for p, logits in zip(sys.argv[2:], run(images)):
        k = int(np.argmax(logits))
        name = meta["label_names"][k] if meta.get("label_names") else str(k)
        print(json.dumps({"file_name": p, "class_id": k, "label_name": name}))
