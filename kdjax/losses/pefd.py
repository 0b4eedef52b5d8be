"""PEFD (Chen et al., NeurIPS 2022, "Improved Feature Distillation via Projector Ensemble"), as PaddleClas'
PEFDLoss: q projectors g_k (1×1 conv + ReLU; a Dense layer on [N, C] features such as `avg_pool`) map the
student feature to the teacher's channels, their mean is compared with the teacher feature by cosine:

    L = mean_n(1 − cos(flatten(1/q Σ_k g_k(s_n)), flatten(t_n)))

The projectors are learnable loss parameters (training state only, never exported), initialised like paddle's
Conv2D default (normal, std √(2 / fan_in), zero bias). As in PaddleClas the teacher side is not detached (a
frozen teacher gets no update anyway). A zero vector is normalised to zero instead of NaN.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.registry import REQUIRED, LossSpec, positive_int, register_loss
from kdjax.losses.numerics import F32, f32, l2_normalize

HIGHEST = jax.lax.Precision.HIGHEST
_PADDLE_CONV_DEFAULT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class PEFDProjectors(nn.Module):
    """Mean of `num_projectors` (1×1 conv | Dense) + ReLU heads to `teacher_channels`."""

    teacher_channels: int
    num_projectors: int = 3

    @nn.compact
    def __call__(self, x):
        x = f32(x)
        total = 0.0
        for k in range(self.num_projectors):
            # a 1×1 conv on NHWC maps is a Dense over the channel axis; on [N, C] it is PaddleClas' conv on 1×1
            total = total + nn.relu(nn.Dense(self.teacher_channels, kernel_init=_PADDLE_CONV_DEFAULT,
                                             bias_init=nn.initializers.zeros, precision=HIGHEST, param_dtype=F32,
                                             dtype=F32, name=f"projector_{k}")(x))
        return total / self.num_projectors


def pefd_init(rng, s_feat, t_feat, num_projectors: int = 3) -> dict:
    return PEFDProjectors(int(t_feat.shape[-1]), int(num_projectors)).init(
        rng, jnp.zeros(s_feat.shape, F32))["params"]


def pefd_loss(params, s_feat, t_feat, num_projectors: int = 3):
    """mean over the batch of 1 − cos(projected student, teacher), per-sample features flattened."""
    s, t = f32(s_feat), f32(t_feat)
    if s.shape[1:-1] != t.shape[1:-1]:
        raise ValueError(f"PEFD needs the same H and W on both sides, got student {s.shape} and teacher {t.shape}")
    fs = PEFDProjectors(int(t.shape[-1]), int(num_projectors)).apply({"params": params}, s)
    fs = l2_normalize(fs.reshape(fs.shape[0], -1), 1)
    ft = l2_normalize(t.reshape(t.shape[0], -1), 1)
    return jnp.mean(1.0 - jnp.sum(fs * ft, axis=1))


def _shapes(e, s, t):
    p = e.params
    if len(s) not in (2, 4) or len(s) != len(t) or s[1:-1] != t[1:-1]:
        return (f"needs [N, C] features or NHWC maps of equal H and W on both sides, got student {list(s)} and "
                f"teacher {list(t)}")
    if s[-1] != p["student_channels"] or t[-1] != p["teacher_channels"]:
        return (f"params say {p['student_channels']} -> {p['teacher_channels']} channels but the features have "
                f"{s[-1]} -> {t[-1]}; set params.student_channels / teacher_channels to match")
    return None


register_loss(LossSpec(
    "pefd", "projector-ensemble feature distillation, 1 − cos (PEFDLoss)", "PEFD: Chen et al., NeurIPS 2022",
    "pairs", "unused", dict(student_channels=REQUIRED, teacher_channels=REQUIRED, num_projectors=3),
    lambda e, a, b, ctx: (pefd_loss(ctx.params, a[e.s_key], b[e.t_key], e.params["num_projectors"]),),
    checks=dict(student_channels=positive_int, teacher_channels=positive_int, num_projectors=positive_int),
    shape_check=_shapes, learnable=True,
    init=lambda e, a, b, rng: pefd_init(rng, a[e.s_key], b[e.t_key], e.params["num_projectors"]),
    # separable: mean over samples of 1 − cos
    separable=True))
