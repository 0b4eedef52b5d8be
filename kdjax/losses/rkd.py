"""`rkd`: relational KD, angle + distance relations between the samples of a batch (PaddleClas DistillationRKDLoss,
RKdAngle / RkdDistance), on [N, D] embeddings or NHWC maps flattened in the reference's NCHW order.

Relation-matrix products use HIGHEST precision: the pairwise distances cancel badly in reduced-precision (TF32/bf16)
matmuls. The relations span the whole batch, so the loss is not separable into micro-batches."""


import jax
import jax.numpy as jnp

from kdjax.losses.feature_ops import TargetSize, adaptive_avg_pool, flatten_nchw, smooth_l1
from kdjax.losses.numerics import f32, l2_normalize
from kdjax.losses.registry import LossSpec, number, positive_int, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


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



def _target_size(v):
    if v is None or (positive_int(v) is None):
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(x is None or positive_int(x) is None for x in v):
        return None
    return f"must be None, a positive int or a pair [h, w] of positive ints, got {v!r}"


def _shapes(e, s, t):
    if e.params["target_size"] is not None and (len(s) != 4 or len(t) != 4):
        return f"target_size needs [N, H, W, C] feature maps, got {list(s)} and {list(t)}"
    return None


def _compute(e, a, b, ctx):
    p, s, t = e.params, a[e.s_key], b[e.t_key]
    return (p["angle_weight"] * rkd_angle_loss(s, t, p["target_size"]),
            p["distance_weight"] * rkd_distance_loss(s, t, p["target_size"]))


register_loss(LossSpec(
    "rkd", "RKD angle + distance relations (DistillationRKDLoss)", "RKD: Park et al., CVPR 2019", "pairs", "unused",
    dict(target_size=None, angle_weight=1.0, distance_weight=1.0), _compute,
    checks=dict(target_size=_target_size, angle_weight=number, distance_weight=number), shape_check=_shapes,
    parts=("angle", "distance"), separable=False))
