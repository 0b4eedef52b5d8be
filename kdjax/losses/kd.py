"""`kd`: Hinton's knowledge distillation, T²-scaled KL divergence with batchmean (PaddleClas DistillationKLDivLoss,
mdistiller kd_loss); `logit_stand=True` z-scores both logits first (logit standardization, Sun et al., CVPR 2024)."""

from kdjax.losses.logit_ops import kl_logits, maybe_standardize, teacher_side, temperature_value
from kdjax.losses.numerics import f32
from kdjax.losses.registry import LossSpec, boolean, positive, register_loss, same_shape


def kl_div_loss(student_logits, teacher_logits, temperature=4.0, teacher_grad: bool = False):
    """KLDivLoss / mdistiller kd_loss: T² · KL_sum(softmax_T(t) ‖ softmax_T(s)) / N (batchmean). `temperature` may
    be a scalar array (CTKD's learnable one), differentiated through both sides."""
    s, t = f32(student_logits), teacher_side(teacher_logits, teacher_grad)
    temp = temperature_value(temperature)
    return kl_logits(t / temp, s / temp) * (temp * temp) / s.shape[0]



def _compute(e, a, b, ctx):
    return (kl_div_loss(maybe_standardize(e, a[e.s_key]), maybe_standardize(e, b[e.t_key]), e.params["temperature"]),)


register_loss(LossSpec(
    "kd", "T²-scaled KL divergence, batchmean (DistillationKLDivLoss)", "KD: Hinton et al., 2015", "pairs", "unused",
    dict(temperature=4.0, logit_stand=False), _compute, checks=dict(temperature=positive, logit_stand=boolean),
    shape_check=same_shape,
    # separable: T²·KL summed over samples / N (batchmean)
    separable=True))
