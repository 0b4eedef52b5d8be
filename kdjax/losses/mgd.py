"""MGD (masked generative distillation): a loss with its own learnable generator, NHWC.

The generator's parameters live in the training state (CombinedLoss.init), never in the exported
student. Layer names mirror PaddleClas' state dict (`align`, `generation.0`, `generation.2`) so
reference weights map one to one (OIHW -> HWIO: transpose (2, 3, 1, 0)).
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.registry import REQUIRED, LossSpec, number, positive_int, register_loss, unit_interval
from kdjax.losses.numerics import F32, f32

# kaiming_normal(mode='fan_out', nonlinearity='relu'), paddle's default zero bias
_KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, name: str) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), name=name,
                   kernel_init=_KAIMING_FAN_OUT, bias_init=nn.initializers.zeros,
                   precision=jax.lax.Precision.HIGHEST, param_dtype=F32, dtype=F32)


class MGDGenerator(nn.Module):
    """[align 1×1 only when channels differ] -> × channel mask -> conv3×3 -> ReLU -> conv3×3."""

    student_channels: int
    teacher_channels: int

    @nn.compact
    def __call__(self, s_feat, mask):
        x = f32(s_feat)
        if self.student_channels != self.teacher_channels:
            x = _conv(self.teacher_channels, 1, "align")(x)
        x = x * mask
        x = nn.relu(_conv(self.teacher_channels, 3, "generation_0")(x))
        return _conv(self.teacher_channels, 3, "generation_2")(x)


def mgd_mask(uniform, lambda_mgd: float):
    """0 where u < λ (that channel of that sample is dropped), else 1."""
    return jnp.where(f32(uniform) < lambda_mgd, 0.0, 1.0).astype(F32)


def mgd_uniform(rng, s_feat, t_feat):
    """The fresh U[0, 1) draw of every call: one value per (sample, teacher channel), [N, 1, 1, C_t]."""
    return jax.random.uniform(rng, (s_feat.shape[0], 1, 1, t_feat.shape[-1]), F32)


def _generator(s_feat, t_feat) -> MGDGenerator:
    return MGDGenerator(int(s_feat.shape[-1]), int(t_feat.shape[-1]))


def mgd_init(rng, s_feat, t_feat) -> dict:
    """Generator parameters sized from the two NHWC feature maps (arrays or shape structs)."""
    s = jnp.zeros(s_feat.shape, F32)
    mask = jnp.ones((s_feat.shape[0], 1, 1, t_feat.shape[-1]), F32)
    return _generator(s_feat, t_feat).init(rng, s, mask)["params"]


def mgd_loss(params, s_feat, t_feat, *, alpha_mgd: float = 1.756, lambda_mgd: float = 0.15,
             rng=None, mask_uniform: Optional[jax.Array] = None):
    """alpha · mean((generator(align(s) · mask) − t)²) over all N·H·W·C_t elements.

    Give `rng` (training) or `mask_uniform` ([N, 1, 1, C_t] or [N, C_t], e.g. a reference draw).
    """
    s, t = f32(s_feat), f32(t_feat)
    if s.shape[1:3] != t.shape[1:3]:
        raise ValueError(f"MGD needs equal spatial sizes, got student {s.shape} and teacher {t.shape}")
    if mask_uniform is None:
        if rng is None:
            raise ValueError("mgd_loss needs rng (or mask_uniform) to draw its channel mask")
        mask_uniform = mgd_uniform(rng, s, t)
    mask = mgd_mask(mask_uniform, lambda_mgd).reshape(s.shape[0], 1, 1, t.shape[-1])
    new = _generator(s, t).apply({"params": params}, s, mask)
    return alpha_mgd * jnp.mean(jnp.square(new - t))


def _shapes(e, s, t):
    p = e.params
    if len(s) != 4 or len(t) != 4 or s[1:3] != t[1:3]:
        return f"needs NHWC maps of equal H and W, got student {list(s)} and teacher {list(t)}"
    if s[3] != p["student_channels"] or t[3] != p["teacher_channels"]:
        return (f"params say {p['student_channels']} -> {p['teacher_channels']} channels but the features have "
                f"{s[3]} -> {t[3]}; set params.student_channels / teacher_channels to match")
    return None


def _compute(e, a, b, ctx):
    p = e.params
    return (mgd_loss(ctx.params, a[e.s_key], b[e.t_key], alpha_mgd=p["alpha_mgd"], lambda_mgd=p["lambda_mgd"],
                     rng=ctx.rng),)


register_loss(LossSpec(
    "mgd", "masked generative distillation (DistillationPairLoss + MGDLoss)", "MGD: Yang et al., ECCV 2022", "pairs",
    "unused", dict(student_channels=REQUIRED, teacher_channels=REQUIRED, alpha_mgd=1.756, lambda_mgd=0.15), _compute,
    checks=dict(student_channels=positive_int, teacher_channels=positive_int, alpha_mgd=number,
                lambda_mgd=unit_interval),
    shape_check=_shapes, learnable=True, init=lambda e, a, b, rng: mgd_init(rng, a[e.s_key], b[e.t_key]),
    needs_rng=True,
    # separable: mean over elements; each micro-batch draws its own masks (equal in distribution)
    separable=True))
