"""`soft_ce`: cross-entropy of the student against softmax(teacher) as soft targets (PaddleClas DistillationCELoss)."""

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import teacher_side
from kdjax.losses.numerics import f32, softmax
from kdjax.losses.registry import LossSpec, register_loss, same_shape


def soft_ce_loss(student_logits, teacher_logits, teacher_grad: bool = False):
    """DistillationCELoss: CE of the student against softmax(teacher logits) as soft targets."""
    s, t = f32(student_logits), teacher_side(teacher_logits, teacher_grad)
    per_sample = -jnp.sum(softmax(t, axis=-1) * jax.nn.log_softmax(s, axis=-1), axis=-1)
    return jnp.mean(per_sample)



register_loss(LossSpec(
    "soft_ce", "CE against softmax(teacher) (DistillationCELoss)", "soft-label cross-entropy (Hinton et al., 2015)",
    "pairs", "unused", {}, lambda e, a, b, ctx: (soft_ce_loss(a[e.s_key], b[e.t_key]),), shape_check=same_shape,
    # separable: mean over samples
    separable=True))
