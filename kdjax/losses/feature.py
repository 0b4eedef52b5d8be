"""Feature losses (DistanceLoss, RKD angle / distance) on kdjax's NHWC features or [N, D] embeddings.

PaddleClas works on NCHW maps; where the layout matters (RKD flattens each sample C-then-H-then-W,
DistillationDistanceLoss' softmax runs over the last NCHW axis, W) these functions reproduce the
NCHW result from NHWC input. Relation-matrix products use HIGHEST precision: the pairwise distances
cancel badly in reduced-precision (TF32/bf16) matmuls.
"""

import math
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from kdjax.losses.numerics import f32, l2_normalize, softmax

HIGHEST = jax.lax.Precision.HIGHEST
TargetSize = Union[None, int, Sequence[Optional[int]]]


def smooth_l1(z, delta: float = 1.0):
    """Elementwise paddle SmoothL1Loss: 0.5·z² inside |z| < δ, δ·|z| − 0.5·δ² outside."""
    az = jnp.abs(z)
    return jnp.where(az < delta, 0.5 * z * z, delta * az - 0.5 * delta * delta)


def _activate(x, act):
    """DistillationDistanceLoss' `act`: softmax over the last NCHW axis, i.e. W for NHWC maps."""
    if act is None:
        return x
    if act == "sigmoid":
        return jax.nn.sigmoid(x)
    if act == "softmax":
        return softmax(x, axis=2 if x.ndim == 4 else -1)
    raise ValueError(f"act must be None, 'softmax' or 'sigmoid', got {act!r}")


def distance_loss(student, teacher, mode: str = "l2", act: Optional[str] = None, delta: float = 1.0):
    """DistanceLoss: elementwise mean of l1 (|z|), l2 (z², paddle MSELoss: no ½, no root) or smooth_l1."""
    x, y = _activate(f32(student), act), _activate(f32(teacher), act)
    z = x - y
    if mode == "l2":
        return jnp.mean(z * z)
    if mode == "l1":
        return jnp.mean(jnp.abs(z))
    if mode == "smooth_l1":
        return jnp.mean(smooth_l1(z, delta))
    raise ValueError(f"mode must be 'l1', 'l2' or 'smooth_l1', got {mode!r}")


def _pool_matrix(size: int, out: int) -> np.ndarray:
    """[out, size] averaging weights of PyTorch-style adaptive bins [floor(i·H/k), ceil((i+1)·H/k))."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, math.ceil((i + 1) * size / out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _pair(target_size: TargetSize, h: int, w: int):
    if isinstance(target_size, int):
        return target_size, target_size
    th, tw = target_size
    return (h if th is None else int(th)), (w if tw is None else int(tw))


def adaptive_avg_pool(x, target_size: TargetSize):
    """AdaptiveAvgPool2D on NHWC maps (an int or an (h, w) pair; None in the pair keeps that size)."""
    _, h, w, _ = x.shape
    th, tw = _pair(target_size, h, w)
    ph, pw = jnp.asarray(_pool_matrix(h, th)), jnp.asarray(_pool_matrix(w, tw))
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw, precision=HIGHEST)


def flatten_nchw(x):
    """Per-sample flattening in the reference's NCHW order (NHWC maps are transposed first)."""
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 3, 1, 2))
    return x.reshape(x.shape[0], -1)


def _rkd_embed(x, target_size: TargetSize):
    x = f32(x)
    if target_size is not None:
        if x.ndim != 4:
            raise ValueError(f"target_size needs [N, H, W, C] feature maps, got shape {x.shape}")
        x = adaptive_avg_pool(x, target_size)
    return flatten_nchw(x)


def _angles(e):
    """A_ijk = <d̂_ij, d̂_ik> with d_ij = e_j − e_i normalised as d / max(|d|, 1e-12)."""
    d = e[None, :, :] - e[:, None, :]
    d = l2_normalize(d, -1)
    return jnp.einsum("ijd,ikd->ijk", d, d, precision=HIGHEST)


def rkd_angle_loss(student, teacher, target_size: TargetSize = None):
    """RKdAngle: smooth-L1 between student and teacher angle tensors, mean over all N³ entries.

    Memory is N²·D (explicit differences, as in the reference, keep duplicate rows exactly zero):
    pool large maps with `target_size`.
    """
    s, t = _rkd_embed(student, target_size), _rkd_embed(teacher, target_size)
    return jnp.mean(smooth_l1(_angles(s) - _angles(t)))


def _pdist(e, eps: float):
    """sqrt(clip(|e_i|² + |e_j|² − 2<e_i, e_j>, eps)), the reference's Gram-matrix form.

    The squared norms are read off the Gram matrix's diagonal, so two identical rows cancel exactly
    (same products, same summation order) and get the clip value like the diagonal, which is set to
    it outright (sqrt(eps), zero gradient) instead of trusting rounding.
    """
    gram = jnp.matmul(e, e.T, precision=HIGHEST)
    sq = jnp.diagonal(gram)
    d2 = sq[:, None] + sq[None, :] - 2.0 * gram
    d2 = jnp.where(jnp.eye(e.shape[0], dtype=bool), eps, jnp.maximum(d2, eps))
    return jnp.sqrt(d2)


def rkd_distance_loss(student, teacher, target_size: TargetSize = 1, eps: float = 1e-12):
    """RkdDistance: smooth-L1 between mean-normalised pairwise distances (diagonal included).

    Its own default pools to 1×1; DistillationRKDLoss passes target_size=None (no pooling).
    """
    s, t = _rkd_embed(student, target_size), _rkd_embed(teacher, target_size)
    ds, dt = _pdist(s, eps), _pdist(t, eps)
    ds = ds / (jnp.mean(ds) + eps)
    dt = dt / (jnp.mean(dt) + eps)
    return jnp.mean(smooth_l1(ds - dt))
