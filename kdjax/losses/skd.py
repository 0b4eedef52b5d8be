"""`skd`: PaddleClas' SKDLoss, **Spherical** Knowledge Distillation (Guo et al., 2020, arXiv:2010.07485): both logits
layer-normalised and scaled, then α·KD + (1 − α)·CE. Not Streamlined KD (CVPR 2026), which kdjax does not implement;
the type keeps PaddleClas' name."""

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import flat_labels, soft_ce_t, target
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, boolean, class_logits, number, positive, register_loss


def _layer_norm(z, eps: float):
    """paddle F.layer_norm over the class axis without weight/bias: (z − mean) / √(biased var + ε)."""
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)



def skd_loss(student_logits, teacher_logits, target=None, temperature: float = 1.0, multiplier: float = 2.0,
             alpha: float = 0.9):
    """PaddleClas SKDLoss (spherical KD, Guo et al. 2020): both logits layer-normalised (ε = 1e-7) and scaled by
    `multiplier`, then α · T² · mean_n(soft-CE_T(teacher ‖ student)) + (1 − α) · CE(student, target).

    `target=None` means the teacher's argmax (PaddleClas). The teacher side is differentiated as in the
    reference (explicit softmax, not paddle's soft-label op); a frozen teacher is unaffected.
    """
    s = _layer_norm(f32(student_logits), 1e-7) * multiplier
    t = _layer_norm(f32(teacher_logits), 1e-7) * multiplier
    c = s.shape[-1]
    if target is None:
        target = jnp.argmax(t, axis=-1)
    temp = float(temperature)
    kd = jnp.mean(soft_ce_t(s, t, temp)) * temp * temp
    onehot = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    ce = jnp.mean(-jnp.sum(onehot * jax.nn.log_softmax(s, axis=-1), axis=-1))
    return kd * alpha + ce * (1.0 - alpha)


def _compute(e, a, b, ctx):
    p, t = e.params, b[e.t_key]
    return (skd_loss(a[e.s_key], t, target(e, t, ctx), p["temperature"], p["multiplier"], p["alpha"]),)


register_loss(LossSpec(
    "skd", "Spherical KD: layer-normed logits ×multiplier, α·KD + (1−α)·CE (PaddleClas SKDLoss)",
    "Spherical KD: Guo et al., 2020 (PaddleClas' SKD; not Streamlined KD)", "pairs", "optional",
    dict(temperature=1.0, multiplier=2.0, alpha=0.9, use_target_as_gt=False), _compute,
    checks=dict(temperature=positive, multiplier=number, alpha=number, use_target_as_gt=boolean),
    shape_check=class_logits,
    # separable: per-sample layer norm, KD and CE averaged over samples
    separable=True))
