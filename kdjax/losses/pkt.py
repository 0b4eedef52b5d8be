"""`pkt`: probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as mdistiller's `pkt_loss`.

On pooled features [N, D] (widths may differ): each row is divided by (‖f‖₂ + eps); the cosine similarities
M = f fᵀ are mapped to [0, 1] by (M + 1)/2 and normalised per row into conditional probabilities, P (student) and
Q (teacher); L = mean over all N² entries (diagonal included) of Q · log((Q + eps)/(P + eps)). A mean, not the
paper's per-row KL sum; the weight absorbs it (mdistiller: 30000). The probabilities relate the samples of the batch,
so the loss is not separable into micro-batches. The teacher gets no gradient in training (the reference runs it
under no_grad); `pkt_loss` itself differentiates both sides, as the reference function does. An all-zero row gets
a zero gradient where the reference's is NaN (sqrt′(0)).
"""

import jax
import jax.numpy as jnp

from kdjax.losses.numerics import f32, safe_norm
from kdjax.losses.registry import LossSpec, positive, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


def _conditional_probabilities(f, eps: float):
    f = f32(f)
    f = f / (safe_norm(f, 1)[:, None] + eps)
    f = jnp.where(jnp.isnan(f), 0.0, f)  # the reference's f[f != f] = 0
    m = (jnp.matmul(f, f.T, precision=HIGHEST) + 1.0) / 2.0
    return m / jnp.sum(m, axis=1, keepdims=True)


def pkt_loss(student, teacher, eps: float = 1e-7):
    """mean_{i,j} Q_ij · log((Q_ij + eps)/(P_ij + eps)) over the N×N conditional-probability matrices."""
    p = _conditional_probabilities(student, eps)
    q = _conditional_probabilities(teacher, eps)
    return jnp.mean(q * jnp.log((q + eps) / (p + eps)))


def _shapes(e, s, t):
    if len(s) != 2 or len(t) != 2:
        return (f"needs pooled [N, D] features on both sides (e.g. key 'avg_pool'), got student {list(s)} and "
                f"teacher {list(t)}")
    return None


register_loss(LossSpec(
    "pkt", "probabilistic knowledge transfer: KL of cosine-similarity conditional probabilities (mdistiller pkt_loss)",
    "PKT: Passalis & Tefas, ECCV 2018", "pairs", "unused", dict(eps=1e-7),
    lambda e, a, b, ctx: (pkt_loss(a[e.s_key], jax.lax.stop_gradient(b[e.t_key]), e.params["eps"]),),
    checks=dict(eps=positive), shape_check=_shapes, separable=False))
