"""`mlkd`: Multi-Level Logit Distillation (Jin et al., CVPR 2023), exactly as Jin-Ying/Multi-Level-Logit-Distillation's
`KD_ours` distiller computes it, quirks included; `logit_stand=True` is the logit-standardization repo's `MLKD`
distiller (Sun et al., CVPR 2024): both logits z-scored inside every instance-level (kd) term only.

Reads two views of each image (LossSpec.views = ("strong",)): the batch's weak view (`key`) and a strong
(RandAugment) view (`strong/<key>`), student and teacher each run on both. With P = softmax(s/τ), Q = softmax(t/τ)
[N, C], 𝒯 = (T, 3, 5, 2, 6), w = kd_weight and every term a scalar:

    kd(s, t, τ) = τ² · mean_n KL(Q_n ‖ P_n)      cc = Σ (QᵀQ − PᵀP)² / C      bc = Σ (QQᵀ − PPᵀ)² / N
    f_inst = mean_n [max_c softmax(t_w)_n ≤ median]   f_cls = mean_c [Σ_n softmax(t_w)_c ≤ median]   (no gradient)

    ce = ce_weight · (CE(s_w, y) + CE(s_s, y))
    kd = w·f_inst·Σ_𝒯 kd(s_w, t_w, τ) + w·[kd(s_s, t_s, T) + kd(s_s, t_s, 3) + kd(s_s, t_s, 5) + kd(s_w, t_w, 2)
                                            + kd(s_w, t_w, 6)]
    cc = w·f_cls·Σ_𝒯 cc(s_w, t_w, τ)          bc = w·f_inst·Σ_𝒯 bc(s_w, t_w, τ)

The reference's quirks, reproduced: its masks multiply scalars (the per-sample reduction is commented out), so they
only scale by the fraction of entries at or below the median (percentile 50 with linear interpolation, `≤`);
the strong kd sum's τ = 2 and 6 terms read the weak view (copy-paste); the strong cc/bc terms are computed there but
never returned. The medians, the batch and the class correlations relate the samples of a batch: not separable.
The distiller's total is the sum of the four parts, so this entry (weight 1) replaces gt_ce: do not add one.
Defaults: the CIFAR-100 configs (T = 4, ce_weight 0.1, kd_weight 0.9); ImageNet: T = 1, 0.5, 0.5; with
logit standardization the authors run T = 2, kd_weight 9.
"""

import jax
import jax.numpy as jnp

from kdjax.losses.gt_ce import cross_entropy
from kdjax.losses.kd import kl_div_loss
from kdjax.losses.logit_ops import standardize_logits
from kdjax.losses.numerics import f32, softmax
from kdjax.losses.registry import LossSpec, boolean, class_logits, non_negative, positive, register_loss

HIGHEST = jax.lax.Precision.HIGHEST
STRONG = "strong"
OTHER_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)  # fixed in the reference, after its configurable T


def _probs(z, temp):
    return softmax(f32(z) / temp, axis=-1)


def class_correlation_loss(student_logits, teacher_logits, temperature):
    """cc: Σ (QᵀQ − PᵀP)² / C over the C×C class correlation matrices."""
    p, q = _probs(student_logits, temperature), _probs(teacher_logits, temperature)
    diff = jnp.matmul(q.T, q, precision=HIGHEST) - jnp.matmul(p.T, p, precision=HIGHEST)
    return jnp.sum(diff * diff) / p.shape[1]


def batch_correlation_loss(student_logits, teacher_logits, temperature):
    """bc: Σ (QQᵀ − PPᵀ)² / N over the N×N batch correlation matrices."""
    p, q = _probs(student_logits, temperature), _probs(teacher_logits, temperature)
    diff = jnp.matmul(q, q.T, precision=HIGHEST) - jnp.matmul(p, p.T, precision=HIGHEST)
    return jnp.sum(diff * diff) / p.shape[0]


def confidence_masks(teacher_logits_weak):
    """(instance mask [N], class mask [C]): teacher confidence (T = 1, weak view) at most its median, the max
    probability per sample and the summed probability per class (numpy's percentile 50, linear; `≤`)."""
    p = jax.lax.stop_gradient(softmax(f32(teacher_logits_weak), axis=-1))
    conf, class_conf = jnp.max(p, axis=1), jnp.sum(p, axis=0)
    return conf <= jnp.percentile(conf, 50.0), class_conf <= jnp.percentile(class_conf, 50.0)


def confidence_fractions(teacher_logits_weak):
    """(f_inst, f_cls): the fractions of True in the masks, all the reference's masks amount to (see above)."""
    inst, cls = confidence_masks(teacher_logits_weak)
    return jnp.mean(inst.astype(jnp.float32)), jnp.mean(cls.astype(jnp.float32))


def mlkd_parts(student_weak, student_strong, teacher_weak, teacher_strong, labels, temperature: float = 4.0,
               ce_weight: float = 0.1, kd_weight: float = 0.9, logit_stand: bool = False):
    """(loss_ce, loss_kd, loss_cc, loss_bc) of KD_ours (or, with logit_stand, of the LS repo's MLKD)."""
    s_w, s_s = f32(student_weak), f32(student_strong)
    t_w, t_s = (jax.lax.stop_gradient(f32(t)) for t in (teacher_weak, teacher_strong))
    temps = (float(temperature),) + OTHER_TEMPERATURES
    f_inst, f_cls = confidence_fractions(t_w)

    def kd(s, t, tau):
        if logit_stand:
            s, t = standardize_logits(s), standardize_logits(t)
        return kl_div_loss(s, t, tau)

    loss_ce = ce_weight * (cross_entropy(s_w, labels) + cross_entropy(s_s, labels))
    weak = sum(kd(s_w, t_w, tau) for tau in temps)
    strong = (kd(s_s, t_s, temps[0]) + kd(s_s, t_s, 3.0) + kd(s_s, t_s, 5.0)  # the reference's τ = 2, 6 terms
              + kd(s_w, t_w, 2.0) + kd(s_w, t_w, 6.0))                      # read the weak view
    loss_kd = kd_weight * f_inst * weak + kd_weight * strong
    loss_cc = kd_weight * f_cls * sum(class_correlation_loss(s_w, t_w, tau) for tau in temps)
    loss_bc = kd_weight * f_inst * sum(batch_correlation_loss(s_w, t_w, tau) for tau in temps)
    return loss_ce, loss_kd, loss_cc, loss_bc


def _view(outputs, key, model, e):
    name = f"{STRONG}/{key}"
    if name not in outputs:
        raise ValueError(f"losses[{e.index}] (mlkd) reads {model}'s strong-view output {name!r}, which is missing: "
                         "the train step runs every model on batch['image_strong'] when a loss declares "
                         "views=('strong',) (CombinedLoss.views)")
    return outputs[name]


def _compute(e, a, b, ctx):
    if ctx.labels is None:
        raise ValueError(f"losses[{e.index}] (mlkd) needs labels; got labels=None")
    if ctx.soft_labels is not None or ctx.label_mask is not None:
        raise ValueError(f"losses[{e.index}] (mlkd): the reference's CE is on hard labels of every row; "
                         "mixup/cutmix soft labels and SSLD's unlabeled rows are not defined for it")
    p = e.params
    return mlkd_parts(a[e.s_key], _view(a, e.s_key, "the student", e), b[e.t_key], _view(b, e.t_key, "the teacher", e),
                      ctx.labels, p["temperature"], p["ce_weight"], p["kd_weight"], p["logit_stand"])


register_loss(LossSpec(
    "mlkd", "multi-level logit distillation: instance/class/batch alignment over 5 temperatures on a weak and a "
    "strong view, confidence-masked (KD_ours; LS repo's MLKD with logit_stand)",
    "MLKD: Jin et al., CVPR 2023", "pairs", "required",
    dict(temperature=4.0, ce_weight=0.1, kd_weight=0.9, logit_stand=False), _compute,
    checks=dict(temperature=positive, ce_weight=non_negative, kd_weight=non_negative, logit_stand=boolean),
    shape_check=class_logits, parts=("ce", "kd", "cc", "bc"), views=(STRONG,),
    separable=False))  # medians over the batch, batch correlations (N×N)
