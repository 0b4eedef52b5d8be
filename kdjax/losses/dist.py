"""`dist`: DIST, β·(1 − mean row Pearson) + γ·(1 − mean column Pearson) of the softmaxes (PaddleClas DISTLoss).

The column (intra-class) term correlates each class's probabilities across the batch, so the loss relates the
samples of a batch: it is not separable into micro-batches."""

import jax.numpy as jnp

from kdjax.losses.numerics import f32, safe_norm, softmax
from kdjax.losses.registry import LossSpec, number, register_loss, same_shape


def _pearson_rows(a, b, eps=1e-8):
    a = a - jnp.mean(a, axis=1, keepdims=True)
    b = b - jnp.mean(b, axis=1, keepdims=True)
    return jnp.sum(a * b, axis=1) / (safe_norm(a, 1) * safe_norm(b, 1) + eps)


def dist_loss(student_logits, teacher_logits, beta: float = 1.0, gamma: float = 1.0):
    """DISTLoss: β·(1 − mean row Pearson) + γ·(1 − mean column Pearson) of the softmaxes (no T)."""
    ys = softmax(f32(student_logits), axis=-1)
    yt = softmax(f32(teacher_logits), axis=-1)
    inter = 1.0 - jnp.mean(_pearson_rows(ys, yt))
    intra = 1.0 - jnp.mean(_pearson_rows(ys.T, yt.T))
    return beta * inter + gamma * intra



register_loss(LossSpec(
    "dist", "DIST inter/intra-class Pearson relation (DistillationDISTLoss)", "DIST: Huang et al., NeurIPS 2022",
    "pairs", "unused", dict(beta=1.0, gamma=1.0),
    lambda e, a, b, ctx: (dist_loss(a[e.s_key], b[e.t_key], e.params["beta"], e.params["gamma"]),),
    checks=dict(beta=number, gamma=number), shape_check=same_shape, separable=False))
