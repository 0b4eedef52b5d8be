"""Operations the logit (response) losses share: integer labels, the DKD/WSL target, KL from log-softmaxes, the
teacher's stop-gradient, and logit standardization.

Logs of probabilities come from log-softmax or log-sum-exp wherever a probability can underflow, so ±30 logits and
saturated one-hot teachers stay finite: a probability that underflows to 0 contributes exactly 0, as in the
references. Definitions and quirks: ../shared/golden/LOSSES.md.
"""

import math

import jax
import jax.numpy as jnp

from kdjax.losses.numerics import f32, log_softmax, safe_norm, softmax


def flat_labels(labels):
    """PaddleClas feeds labels as [N, 1]; everything here wants [N] integers."""
    labels = jnp.asarray(labels)
    return labels.reshape(labels.shape[0]) if labels.ndim == 2 and labels.shape[1] == 1 else labels


def target_or_teacher_argmax(labels, teacher_logits, label_mask=None):
    """DKD/WSL target: the labels, the teacher's argmax where there are none (None, or mask 0)."""
    t_arg = jnp.argmax(teacher_logits, axis=-1)
    if labels is None:
        return t_arg
    labels = flat_labels(labels)
    if label_mask is None:
        return labels
    return jnp.where(jnp.asarray(label_mask) > 0, labels, t_arg.astype(labels.dtype))


def kl_logits(target_logits, input_logits):
    """KL_sum(softmax(target) ‖ softmax(input)) from log-softmaxes: a p that underflows to 0 adds
    exactly 0 instead of 0·log 0 = NaN."""
    p = softmax(target_logits, axis=-1)
    return jnp.sum(p * (jax.nn.log_softmax(target_logits, axis=-1) - jax.nn.log_softmax(input_logits, axis=-1)))



def teacher_side(t, teacher_grad: bool):
    """Paddle's soft-label cross_entropy and kl_div ops never differentiate their label input, so in
    PaddleClas the teacher side of CE/KD/DKD gets no gradient (golden files: grad_teacher == 0);
    `teacher_grad=True` gives the torch/mdistiller behaviour instead."""
    t = f32(t)
    return t if teacher_grad else jax.lax.stop_gradient(t)



def standardize_logits(logits, eps: float = 1e-7):
    """Logit standardization (Sun et al., CVPR 2024): per-sample z-score (z − mean) / (std + ε), std with
    Bessel's correction and ε = 1e-7, as the authors' `normalize` (torch.std is unbiased). A constant row maps
    to zeros with a finite gradient (safe_norm) instead of NaN."""
    z = f32(logits)
    c = z.shape[-1]
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    std = safe_norm(centred, -1)[..., None] / math.sqrt(max(c - 1, 1))
    return centred / (eps + std)



def maybe_standardize(entry, logits):
    """kd / dkd with `logit_stand=True`: z-scored logits (Sun et al., CVPR 2024) before the temperature."""
    return standardize_logits(logits) if entry.params.get("logit_stand") else logits


def target(entry, teacher_logits, ctx):
    """DKD/WSL/SKD target: labels where known, teacher argmax for None / unlabeled rows; None (the teacher's
    argmax everywhere) with `use_target_as_gt`."""
    if entry.params["use_target_as_gt"]:
        return None
    return target_or_teacher_argmax(ctx.labels, teacher_logits, ctx.label_mask)


def soft_ce_t(student_logits, teacher_logits, temperature: float):
    """Per-row −Σ softmax(t/T) · log softmax(s/T): the soft-label CE of WSL and SKD (a CE, not a KL).

    The value comes from log-softmaxes (accurate when it is small); the gradient from the equal form
    logsumexp(s/T) − Σ p · s/T (Σ p = 1), whose teacher side sees s/T − s_k/T (k: the teacher's top class) instead
    of log-softmax values of magnitude ~|s|/T: differences of close logits keep their precision at large logits.
    """
    s, t = f32(student_logits), f32(teacher_logits)
    zs, p = s / temperature, softmax(t / temperature, axis=-1)
    value = -jnp.sum(p * log_softmax(zs, axis=-1), axis=-1)
    ref = jnp.take_along_axis(zs, jnp.argmax(t, axis=-1)[:, None], axis=-1)  # teacher's top class: its d = 0
    same = jax.nn.logsumexp(zs, axis=-1) - ref[:, 0] - jnp.sum(p * (zs - ref), axis=-1)
    return jax.lax.stop_gradient(value) + (same - jax.lax.stop_gradient(same))


def temperature_value(temperature):
    """A temperature for the losses: a Python number stays a float (exactly as before); an array (a learnable
    temperature, CTKD) becomes a float32 array of the same shape."""
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return float(temperature)
    return f32(temperature)


def hard_targets(labels, soft_labels=None):
    """[N] class ids: the labels, or the argmax of [N, C] soft labels (mixup/cutmix scores), as cls_KD does."""
    if soft_labels is not None:
        return jnp.argmax(f32(soft_labels), axis=-1)
    return flat_labels(labels)


def drop_columns(x, columns):
    """[N, C] → [N, C − K]: each row without its K distinct `columns` [N, K] (or [N]), the rest in order (torch's
    `x[mask].reshape(N, -1)` with the target columns masked out)."""
    columns = jnp.asarray(columns).reshape(x.shape[0], -1)
    c, k = x.shape[-1], columns.shape[-1]
    dropped = jnp.any(jnp.arange(c)[None, :, None] == columns[:, None, :], axis=-1)
    keep = jnp.argsort(dropped, axis=-1, stable=True)[:, :c - k]  # kept columns first, in their order
    return jnp.take_along_axis(x, keep, axis=-1)
