"""Mixup and CutMix on whole batches, with soft labels (PaddleClas MixupOperator / CutmixOperator).

Each batch is mixed with a random permutation of itself using one λ ~ Beta(α, α); with both α > 0, each batch
picks mixup or cutmix with probability 1/2. The batch keeps "label" (the hard label of the unmixed row, for
top-1 metrics) and gains "soft_label" float32 [N, C] = λ·onehot(label) + (1-λ)·onehot(label[perm]); for cutmix
λ is the exact kept area. Images stay uint8 (mixup rounds), so teacher and student see the same pixels.
With SSLD, one-hots are multiplied by `label_mask`, so soft-label rows of mixed-in unlabeled images sum to
less than 1 (only the labeled share carries ground truth).
"""

import numpy as np


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def mixup(images: np.ndarray, perm: np.ndarray, lam: float) -> np.ndarray:
    mixed = lam * images.astype(np.float32) + (1.0 - lam) * images[perm].astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def cutmix(images: np.ndarray, perm: np.ndarray, lam: float, rng: np.random.Generator):
    """Paste a box of area ≈ (1-λ)·H·W from the permuted batch; returns (images, λ actually kept)."""
    _, h, w, _ = images.shape
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
    x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
    out = images.copy()
    out[:, y0:y1, x0:x1] = images[perm, y0:y1, x0:x1]
    return out, 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)


class MixBatch:
    """grain random map adding "soft_label" (and mixing images when an α is > 0)."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        if num_classes <= 0:
            raise ValueError("mixup/cutmix need the number of classes")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha

    def __call__(self, batch, rng: np.random.Generator):
        labels = batch["label"]
        target = one_hot(labels, self.num_classes)
        if "label_mask" in batch:
            target *= batch["label_mask"][:, None]
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        perm = rng.permutation(len(labels))
        if use_cutmix:
            images, lam = cutmix(batch["image"], perm, lam, rng)
        else:
            images = mixup(batch["image"], perm, lam)
        soft = lam * target + (1.0 - lam) * target[perm]
        return dict(batch, image=images, soft_label=soft.astype(np.float32))
