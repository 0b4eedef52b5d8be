"""`dml`: deep mutual learning, the symmetric KL of PaddleClas DMLLoss between two trainable models (both get
gradient), with its quirks: ×C, eps in numerator and denominator, mean over N·C elements."""

from typing import Optional

import jax
import jax.numpy as jnp

from kdjax.losses.numerics import f32, softmax
from kdjax.losses.registry import LossSpec, boolean, one_of, positive, register_loss, same_shape

DEFAULTS = dict(act="softmax", sum_across_class_dim=False, eps=1e-12)
CHECKS = dict(act=one_of(None, "softmax", "sigmoid"), sum_across_class_dim=boolean, eps=positive)


def dml_loss(student, teacher, act: Optional[str] = "softmax", sum_across_class_dim: bool = False,
             eps: float = 1e-12):
    """DMLLoss: symmetric KL per element, ×C quirk, eps in both numerator and denominator.

    `act=None` takes the inputs as probabilities. With the default reduction (mean over N·C elements)
    this is the batch mean of the symmetric KL; `sum_across_class_dim=True` is C times larger.
    """
    x, y = f32(student), f32(teacher)
    if act == "softmax":
        x, y = softmax(x, axis=-1), softmax(y, axis=-1)
    elif act == "sigmoid":
        x, y = jax.nn.sigmoid(x), jax.nn.sigmoid(y)
    elif act is not None:
        raise ValueError(f"act must be 'softmax', 'sigmoid' or None, got {act!r}")
    c = x.shape[-1]

    def k(a, b):  # reference _kldiv(a, b): b · log((b + eps) / (a + eps)) · C
        return b * jnp.log((b + eps) / (a + eps)) * c

    elem = (k(x, y) + k(y, x)) / 2.0
    if sum_across_class_dim:
        return jnp.mean(jnp.sum(elem, axis=-1))
    return jnp.mean(elem)



def compute(e, a, b, ctx, detach_teacher: bool = False):
    p, t = e.params, b[e.t_key]
    if detach_teacher:
        t = jax.lax.stop_gradient(t)
    return (dml_loss(a[e.s_key], t, p["act"], p["sum_across_class_dim"], p["eps"]),)


register_loss(LossSpec(
    "dml", "symmetric KL, both models trainable (DistillationDMLLoss)", "DML: Zhang et al., CVPR 2018", "pairs",
    "unused", DEFAULTS, compute, checks=CHECKS, shape_check=same_shape,
    # separable: mean over samples (or N·C elements)
    separable=True))
