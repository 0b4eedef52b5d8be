"""`dkd`: decoupled knowledge distillation, α·TCKD + β·NCKD (PaddleClas DistillationDKDLoss, mdistiller DKD), with
mdistiller's warm-up and optional logit standardization (Sun et al., CVPR 2024)."""

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import flat_labels, kl_logits, maybe_standardize, target, teacher_side, temperature_value
from kdjax.losses.numerics import F32, f32, softmax
from kdjax.losses.registry import LossSpec, boolean, class_logits, non_negative, number, positive, register_loss


def _binary(z, is_gt):
    """DKD's [target, non-target] probabilities and their logs.

    As in the reference, each is a sum of softmax probabilities (in float32 that is the more accurate
    form); where a sum underflows (saturated ±30 logits) its log comes from log-sum-exps instead of
    log(0), so the loss and its gradient stay finite.
    """
    p = softmax(z, axis=-1)
    b = jnp.stack([jnp.sum(jnp.where(is_gt, p, 0.0), axis=-1), jnp.sum(jnp.where(is_gt, 0.0, p), axis=-1)], -1)
    log_p = jax.nn.log_softmax(z, axis=-1)  # one target class: its log-probability is exact
    log_b_exact = jnp.stack([jnp.sum(jnp.where(is_gt, log_p, 0.0), axis=-1),
                             jax.nn.logsumexp(jnp.where(is_gt, -jnp.inf, log_p), axis=-1)], -1)
    ok = b > 1e-30
    return b, jnp.where(ok, jnp.log(jnp.where(ok, b, 1.0)), log_b_exact)


def dkd_parts(student_logits, teacher_logits, target=None, temperature=1.0, teacher_grad: bool = False):
    """(TCKD, NCKD) of DKD, each already T²-scaled and batch-averaged.

    TCKD compares the binary [target, non-target] distributions (sums of masked probabilities, not
    1 − p_gt); NCKD keeps the reference's `z/T − 1000·gt_mask` trick. `temperature` may be a scalar array
    (CTKD); its gradient stays finite where the teacher's masked target probability is exactly 0.
    """
    s, t = f32(student_logits), teacher_side(teacher_logits, teacher_grad)
    n, c = s.shape
    if target is None:
        target = jnp.argmax(t, axis=-1)
    gt = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    is_gt = gt > 0
    temp = temperature_value(temperature)
    zs, zt = s / temp, t / temp
    scale = temp * temp / n
    bt, log_bt = _binary(zt, is_gt)
    _, log_bs = _binary(zs, is_gt)
    tckd = jnp.sum(bt * (log_bt - log_bs)) * scale
    nckd = kl_logits(zt - 1000.0 * gt, zs - 1000.0 * gt) * scale
    return tckd, nckd


def dkd_loss(student_logits, teacher_logits, target=None, temperature: float = 1.0,
             alpha: float = 1.0, beta: float = 1.0, teacher_grad: bool = False):
    """DKDLoss: α·TCKD + β·NCKD; `target=None` means the teacher's argmax (PaddleClas)."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, target, temperature, teacher_grad)
    return alpha * tckd + beta * nckd


def dkd_warmup_factor(epoch, warmup_epochs: float):
    """mdistiller's min(epoch / warmup, 1); epochs count from 1, so epoch 1 already gets 1/warmup."""
    if not warmup_epochs:
        return F32(1.0)
    return jnp.minimum(f32(epoch) / float(warmup_epochs), 1.0)



def _compute(e, a, b, ctx):
    p = e.params
    s, t = a[e.s_key], b[e.t_key]
    value = dkd_loss(maybe_standardize(e, s), maybe_standardize(e, t), target(e, t, ctx), p["temperature"], p["alpha"],
                     p["beta"])
    if p["warmup_epochs"]:
        if ctx.epoch is None:
            raise ValueError(f"losses[{e.index}] (dkd) has warmup_epochs={p['warmup_epochs']}: pass epoch= "
                             "(1-based) to CombinedLoss.__call__")
        value = value * dkd_warmup_factor(ctx.epoch, p["warmup_epochs"])
    return (value,)


register_loss(LossSpec(
    "dkd", "decoupled KD: alpha·TCKD + beta·NCKD (DistillationDKDLoss)", "DKD: Zhao et al., CVPR 2022", "pairs",
    "optional", dict(temperature=1.0, alpha=1.0, beta=1.0, use_target_as_gt=False, warmup_epochs=0, logit_stand=False),
    _compute, checks=dict(temperature=positive, alpha=number, beta=number, use_target_as_gt=boolean,
                          warmup_epochs=non_negative, logit_stand=boolean), shape_check=class_logits,
    # separable: T²·KL summed over samples / N (batchmean)
    separable=True))
