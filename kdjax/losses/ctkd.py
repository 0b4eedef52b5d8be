"""`ctkd`: Curriculum Temperature KD (Li et al., AAAI 2023), as zhengli97/CTKD trains it: KD (or DKD) whose
temperature is learned adversarially.

Learnable part (training state, checkpointed, never exported): one scalar g (`Global_T`, init 1.0), trained with
the student by the same optimizer. Each step, with λ the curriculum value of the current epoch:

    T = t_start + t_end · sigmoid(GRL_λ(g))        GRL_λ: identity forward, gradient × λ backward
    L = KD_T(s, t)        (base='kd': T² · KL(softmax(t/T) ‖ softmax(s/T)), batchmean)
      = DKD_T(s, t, y)    (base='dkd': α·TCKD + β·NCKD at temperature T)

λ ≤ 0, so g ascends the loss (the temperature makes distillation harder) while the student descends it normally.
The curriculum is the reference's CosineDecay(max=lambda_max, min=lambda_min, loops=decay_loops) read at the
1-based epoch e (`ctx.epoch`; constant within an epoch, as the reference sets it once per epoch):

    λ(e) = lambda_min + (lambda_max − lambda_min) · (cos(π · min(e, L) / L) + 1) / 2

(0 at e = 0, lambda_min from epoch L on; L = 10 on CIFAR-100, 5 on ImageNet). `logit_stand=True` is the
logit-standardization repo's CTKD (`DistillKL_logit_stand`): both logits z-scored inside the KD term; that repo
standardises only the KD term, so it is refused with base='dkd'. Unlike torch, the temperature's gradient through
DKD stays finite where the teacher's masked target probability is exactly 0 (torch differentiates 0·log 0 → NaN).
"""

import math

import jax
import jax.numpy as jnp

from kdjax.losses.dkd import dkd_loss
from kdjax.losses.kd import kl_div_loss
from kdjax.losses.logit_ops import standardize_logits, target_or_teacher_argmax
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import (LossSpec, boolean, class_logits, non_negative, number, one_of, positive,
                                   register_loss)


@jax.custom_vjp
def gradient_reversal(x, lam):
    """Identity in the forward pass; the backward pass multiplies the gradient by `lam` (CTKD's GRL: the
    reversal comes from λ ≤ 0, there is no built-in minus sign)."""
    return x


def _grl_fwd(x, lam):
    return x, lam


def _grl_bwd(lam, g):
    return g * lam, jnp.zeros_like(lam)


gradient_reversal.defvjp(_grl_fwd, _grl_bwd)


def curriculum_lambda(epoch, decay_loops: float = 10.0, lambda_max: float = 0.0, lambda_min: float = -1.0):
    """CTKD's CosineDecay value at (1-based) `epoch`: lambda_max at 0, lambda_min from `decay_loops` on."""
    e = jnp.clip(f32(epoch), 0.0, float(decay_loops))
    return (jnp.cos(e * (math.pi / float(decay_loops))) + 1.0) * 0.5 * (lambda_max - lambda_min) + lambda_min


def ctkd_temperature(global_t, lam, t_start: float = 1.0, t_end: float = 20.0):
    """T = t_start + t_end · sigmoid(GRL_λ(g)): the forward value of g, its gradient reversed by λ."""
    return t_start + t_end * jax.nn.sigmoid(gradient_reversal(f32(global_t), f32(lam)))


def ctkd_loss(global_t, student_logits, teacher_logits, lam, target=None, *, base: str = "kd", t_start: float = 1.0,
              t_end: float = 20.0, alpha: float = 1.0, beta: float = 2.0, logit_stand: bool = False,
              teacher_grad: bool = False):
    """KD or DKD at the learnable temperature; a scalar whatever g's shape (the reference's is [1])."""
    temp = jnp.reshape(ctkd_temperature(global_t, lam, t_start, t_end), ())
    s, t = f32(student_logits), f32(teacher_logits)
    if base == "kd":
        if logit_stand:
            s, t = standardize_logits(s), standardize_logits(t)
        return kl_div_loss(s, t, temp, teacher_grad=teacher_grad)
    if logit_stand:
        raise ValueError("ctkd: logit_stand is only defined for base='kd'")
    return dkd_loss(s, t, target, temp, alpha, beta, teacher_grad=teacher_grad)


def _compute(e, a, b, ctx):
    p = e.params
    if ctx.epoch is None:
        raise ValueError(f"losses[{e.index}] (ctkd) reads the epoch for its curriculum: pass epoch= (1-based) to "
                         "CombinedLoss.__call__")
    lam = curriculum_lambda(ctx.epoch, p["decay_loops"], p["lambda_max"], p["lambda_min"])
    t = b[e.t_key]
    target = target_or_teacher_argmax(ctx.labels, t, ctx.label_mask) if p["base"] == "dkd" else None
    return (ctkd_loss(ctx.params["global_t"], a[e.s_key], t, lam, target, base=p["base"], t_start=p["t_start"],
                      t_end=p["t_end"], alpha=p["alpha"], beta=p["beta"], logit_stand=p["logit_stand"]),)


def _entry(e):
    p = e.params
    if p["base"] == "dkd" and p["logit_stand"]:
        return ("params.logit_stand", "the logit-standardization repo's CTKD standardises only the KD term "
                                      "(DistillKL_logit_stand); with base='dkd' there is no reference: use "
                                      "base='kd', or logit_stand=False")
    if p["base"] == "kd" and (p["alpha"] != 1.0 or p["beta"] != 2.0):
        return ("params.alpha", "alpha and beta weigh DKD's parts and are read only with base='dkd'; remove them "
                                "(the entry's weight scales KD)")
    if p["lambda_min"] > p["lambda_max"]:
        return ("params.lambda_min", f"must be <= lambda_max ({p['lambda_max']}): the curriculum goes from "
                                     "lambda_max at epoch 0 to lambda_min")
    return None


register_loss(LossSpec(
    "ctkd", "KD / DKD with a learnable temperature trained through gradient reversal on a cosine curriculum",
    "CTKD: Li et al., AAAI 2023", "pairs", "optional",
    dict(base="kd", t_start=1.0, t_end=20.0, init=1.0, decay_loops=10.0, lambda_max=0.0, lambda_min=-1.0,
         alpha=1.0, beta=2.0, logit_stand=False), _compute,
    checks=dict(base=one_of("kd", "dkd"), t_start=non_negative, t_end=positive, init=number, decay_loops=positive,
                lambda_max=number, lambda_min=number, alpha=number, beta=number, logit_stand=boolean),
    shape_check=class_logits, entry_check=_entry, learnable=True, needs_epoch=True,
    init=lambda e, a, b, rng: {"global_t": jnp.asarray(e.params["init"], F32)},
    # separable: KD / DKD at the learned temperature are batch means of per-sample terms, and so is g's gradient
    separable=True))
