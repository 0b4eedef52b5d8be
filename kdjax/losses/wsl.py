"""`wsl`: weighted soft labels, T² · mean_n(w_n · soft-CE_T) with w from detached T=1 CEs (PaddleClas WSLLoss)."""

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import flat_labels, soft_ce_t, target
from kdjax.losses.numerics import F32, f32, log_softmax
from kdjax.losses.registry import LossSpec, boolean, class_logits, positive, register_loss


def wsl_loss(student_logits, teacher_logits, target=None, temperature=2.0):
    """WSLLoss: T² · mean_n(w_n · soft-CE_T), w from detached T=1 CEs; a CE, not a KL. `temperature` may be an
    array (traced)."""
    s, t = f32(student_logits), f32(teacher_logits)
    c = s.shape[-1]
    if target is None:
        target = jnp.argmax(t, axis=-1)
    onehot = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    # the weight scales a whole row's gradient, so it must be accurate where it is small: a confident student
    # (small CE: log1p form, see numerics.log_softmax) and 1 − exp(−r) for small r (expm1)
    ce_s = -jnp.sum(onehot * log_softmax(jax.lax.stop_gradient(s), axis=-1), axis=-1)
    ce_t = -jnp.sum(onehot * log_softmax(jax.lax.stop_gradient(t), axis=-1), axis=-1)
    ratio = jnp.maximum(ce_s / (ce_t + 1e-7), 0.0)
    weight = -jnp.expm1(-ratio)
    temp = jnp.asarray(temperature, F32)
    return jnp.mean(soft_ce_t(s, t, temp) * weight) * (temp * temp)


def _compute(e, a, b, ctx):
    t = b[e.t_key]
    return (wsl_loss(a[e.s_key], t, target(e, t, ctx), e.params["temperature"]),)


register_loss(LossSpec(
    "wsl", "weighted soft labels (DistillationWSLLoss)", "WSL: Zhou et al., ICLR 2021", "pairs", "optional",
    dict(temperature=2.0, use_target_as_gt=False), _compute,
    checks=dict(temperature=positive, use_target_as_gt=boolean), shape_check=class_logits,
    # separable: per-sample weights (from that sample's CEs), mean over samples
    separable=True))
