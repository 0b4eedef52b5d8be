"""`ickd`: inter-channel correlation KD (Liu et al., ICCV 2021), as ADLab-AutoDrive/ICKD's `ICKDLoss` (CIFAR-100).

The student map goes through the embedding `embed_s`: a bias-free 1×1 conv C_s→C_t and a BatchNorm in training mode
(batch statistics, biased variance, eps 1e-5, learnable affine); per sample, the channel Gram matrix G = X Xᵀ
([C, C] over the H·W positions) has its rows L2-normalised (F.normalize(dim=2), eps 1e-12), for the embedded student
and the raw teacher alike; ℓ = Σ (G_s − G_t)² / (C·N), summed over the feature pairs. As in the reference one
embedding serves every pair (so every student map needs the same C_s and every teacher map the same C_t = feat_dim;
H·W may differ between student and teacher, the Gram matrices sum over it). The embedding lives with the other loss parameters (trained with the student, never
exported); the reference's `embed_t` is unused by the loss and not kept. The BatchNorm makes the loss depend on the
whole batch: not separable. The teacher gets no gradient in training (no_grad in the authors' loop); `ickd_loss`
itself differentiates both sides, as the reference module does.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.heads import TORCH_DEFAULT_KERNEL, BatchStatNorm
from kdjax.losses.numerics import F32, f32, l2_normalize
from kdjax.losses.registry import LossSpec, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


class ICKDEmbed(nn.Module):
    """embed_s: conv (1×1, no bias, torch default init) → BatchNorm (batch statistics, weight 1 / bias 0 at init)."""

    channels: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.channels, (1, 1), use_bias=False, kernel_init=TORCH_DEFAULT_KERNEL, precision=HIGHEST,
                    param_dtype=F32, dtype=F32, name="conv")(f32(x))
        return BatchStatNorm(name="bn")(x)


def _gram(x):
    """Row-normalised channel Gram matrices [N, C, C] of an NHWC map."""
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    return l2_normalize(jnp.einsum("nki,nkj->nij", x, x, precision=HIGHEST), 2)


def ickd_init(rng, s_feat, t_feat) -> dict:
    return ICKDEmbed(int(t_feat.shape[-1])).init(rng, jnp.zeros((2, 1, 1, int(s_feat.shape[-1])), F32))["params"]


def ickd_loss(params, s_feats: Sequence, t_feats: Sequence):
    """Σ over pairs of ‖G(embed_s(f_s)) − G(f_t)‖²_F / (C·N)."""
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(s_feats, t_feats):
        t = f32(t)
        x = ICKDEmbed(int(t.shape[-1])).apply({"params": params}, s)
        n, c = x.shape[0], x.shape[-1]
        total = total + jnp.sum(jnp.square(_gram(x) - _gram(t))) / (c * n)
    return total


def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'ickd' pairs student and teacher maps one to one: s_keys has {len(e.s_keys)} names and "
                          f"t_keys {len(e.t_keys)}; give both the same length")
    return None


def _shapes(e, s, t):
    if any(len(x) != 4 for x in list(s) + list(t)):
        return f"needs NHWC feature maps, got {[list(x) for x in list(s) + list(t)]}"
    if len({x[3] for x in s}) > 1 or len({x[3] for x in t}) > 1:
        return (f"one embedding serves every pair (as in the reference), so all student maps need one channel count "
                f"and all teacher maps another; got student {[x[3] for x in s]} and teacher {[x[3] for x in t]}")
    return None


register_loss(LossSpec(
    "ickd", "inter-channel correlation: row-normalised channel Gram matrices, student through a 1×1 conv + BN "
            "embedding (ICKDLoss)", "ICKD: Liu et al., ICCV 2021", "pairs", "unused", {},
    lambda e, a, b, ctx: (ickd_loss(ctx.params, [a[k] for k in e.s_keys],
                                    [jax.lax.stop_gradient(b[k]) for k in e.t_keys]),),
    entry_check=_entry, shape_check=_shapes, multi_key=True, learnable=True,
    init=lambda e, a, b, rng: ickd_init(rng, a[e.s_keys[0]], b[e.t_keys[0]]),
    separable=False))  # the embedding's BatchNorm normalises with the whole batch's statistics
