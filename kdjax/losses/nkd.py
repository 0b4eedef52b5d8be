"""`nkd`: Normalized KD (Yang et al., ICCV 2023, "From Knowledge Distillation to Self-Knowledge Distillation"), as
yzd-v/cls_KD's NKDLoss computes it:

    L = −mean_n sg(p^t_y) · log p^s_y  −  γ·τ² · mean_n Σ_{c≠y} softmax(t'/τ)_c · log softmax(s'/τ)_c

p^s, p^t: softmaxes at temperature 1 (the target term ignores τ); s', t': the logits without the target column
(C − 1 classes, renormalised among themselves: a soft CE, not a KL). y: the labels, or the argmax of mixup/cutmix
scores. The distiller adds L to the usual CE. Configs in the paper: τ = 1, γ = 1.5 (ImageNet ResNet); τ = 3,
γ = 3.5 (CIFAR-100); τ = 1, γ = 1 (DeiT).
"""

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import drop_columns, hard_targets, target_or_teacher_argmax, teacher_side
from kdjax.losses.numerics import f32, log_softmax, softmax
from kdjax.losses.registry import LossSpec, class_logits, non_negative, positive, register_loss


def nkd_parts(student_logits, teacher_logits, labels, temperature: float = 1.0, teacher_grad: bool = False):
    """(target term, non-target term before γ): both batch means.

    The target term's teacher probability is always detached (as in the reference); `teacher_grad=True` lets the
    non-target term differentiate the teacher, as the reference's own code does (its teacher runs under no_grad
    in training, so kdjax's default stops it).
    """
    s, t = f32(student_logits), teacher_side(teacher_logits, teacher_grad)
    y = jnp.asarray(labels).reshape(-1).astype(jnp.int32)
    rows = jnp.arange(s.shape[0])
    p_t = jax.lax.stop_gradient(softmax(t, axis=-1))[rows, y]
    loss_t = -jnp.mean(p_t * log_softmax(s, axis=-1)[rows, y])
    temp = float(temperature)
    s_non, t_non = drop_columns(s, y) / temp, drop_columns(t, y) / temp
    non = -jnp.mean(jnp.sum(softmax(t_non, axis=-1) * log_softmax(s_non, axis=-1), axis=-1)) * temp * temp
    return loss_t, non


def nkd_loss(student_logits, teacher_logits, labels, temperature: float = 1.0, gamma: float = 1.5,
             teacher_grad: bool = False):
    """NKDLoss: target term + γ · τ² · non-target soft CE; `labels` [N] ids or [N, C] scores (argmax)."""
    labels = jnp.asarray(labels)
    y = hard_targets(None, labels) if labels.ndim == 2 and labels.shape[1] > 1 else hard_targets(labels)
    loss_t, non = nkd_parts(student_logits, teacher_logits, y, temperature, teacher_grad)
    return loss_t + gamma * non


def _compute(e, a, b, ctx):
    t = b[e.t_key]
    if ctx.soft_labels is not None:  # mixup / cutmix: the scores' argmax, as the reference
        y = hard_targets(None, ctx.soft_labels)
    elif ctx.labels is None:
        raise ValueError(f"losses[{e.index}] (nkd) needs labels; got labels=None")
    else:  # SSLD's unlabeled rows (label_mask 0) take the teacher's argmax, as dkd / wsl do
        y = target_or_teacher_argmax(ctx.labels, t, ctx.label_mask)
    return (nkd_loss(a[e.s_key], t, y, e.params["temperature"], e.params["gamma"]),)


register_loss(LossSpec(
    "nkd", "normalized KD: target CE weighted by the teacher + γ·τ²·soft CE over the non-target classes (NKDLoss)",
    "NKD: Yang et al., ICCV 2023", "pairs", "required", dict(temperature=1.0, gamma=1.5), _compute,
    checks=dict(temperature=positive, gamma=non_negative), shape_check=class_logits,
    # separable: both terms are batch means of per-sample terms (unlabeled SSLD rows take the teacher's argmax)
    separable=True))
