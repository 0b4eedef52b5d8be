"""`reviewkd`: knowledge review (Chen et al., CVPR 2021), as mdistiller's ReviewKD distiller: attention-based fusion
(ABF) of the student's features along the review path, then the hierarchical context loss (HCL) against the teacher's.

s_keys / t_keys list the features shallow to deep (mdistiller: the student's stages[0..2] and avg_pool, the teacher's
stages_preact[0..2] and avg_pool; [N, C] features count as 1×1 maps). ABF i maps the student's i-th feature
(C_s,i channels) to the teacher's i-th (C_t,i channels, H_t,i × H_t,i):

    x = BN(conv1×1(f_s,i))                                         C_s,i → mid = min(512, C_s of the deepest feature)
    fused (every ABF but the deepest): y = nearest(r_{i+1}, H_s,i × H_s,i); [a, b] = sigmoid(conv1×1([x, y]) + bias);
                                       x = x·a + y·b
    x = nearest(x, H_t,i × H_t,i) when its width differs; r_i = x;  out_i = BN(conv3×3(x))           mid → C_t,i

The review path runs deepest first, each ABF fusing the residual r of the one below it, exactly as the reference
orders it. HCL(out, f_t) = Σ_i ℓ_i with ℓ = [MSE(o, t) + Σ_{l∈(4,2,1), l<H} 2^−j·MSE(pool_l(o), pool_l(t))]/Σ weights
(pool_l: adaptive average pooling to l×l; only H decides which levels are used). The loss is HCL times
min(epoch / warmup_epochs, 1) (mdistiller: REVIEWKD_WEIGHT 1, 5 for resnet32x4 → resnet8x4; 20 warm-up epochs).

The ABFs live with the other loss parameters (trained with the student, never exported); their BatchNorms run in
training mode (batch statistics), so the loss is not separable. Init as the reference: conv1 / conv2 kaiming_uniform
(a=1), the attention conv torch's default, BatchNorms weight 1 / bias 0. Nearest resizing is torch's
F.interpolate(mode='nearest'): source index floor(i · in/out). The reference resizes to square (shape, shape) maps,
so every map must be square (refused otherwise). The teacher gets no gradient (no_grad in the reference);
`hcl_loss` itself differentiates both sides, as the reference function does.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kdjax.losses.dkd import dkd_warmup_factor
from kdjax.losses.feature_ops import adaptive_avg_pool
from kdjax.losses.heads import TORCH_DEFAULT_KERNEL, BatchStatNorm, torch_uniform_bias
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, non_negative, register_loss

HIGHEST = jax.lax.Precision.HIGHEST
MAX_MID_CHANNELS = 512  # mdistiller hard-codes min(512, ·) (its cfg MAX_MID_CHANNEL is not read)
KAIMING_UNIFORM_A1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")  # kaiming_uniform_(a=1)


def hcl_loss(s_feats: Sequence, t_feats: Sequence):
    """mdistiller's hcl_loss on pairs of same-shape NHWC maps."""
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(s_feats, t_feats):
        s, t = f32(s), f32(t)
        loss, cnt, tot = jnp.mean(jnp.square(s - t)), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= s.shape[1]:
                continue
            cnt /= 2.0
            loss = loss + jnp.mean(jnp.square(adaptive_avg_pool(s, level) - adaptive_avg_pool(t, level))) * cnt
            tot += cnt
        total = total + loss / tot
    return total


def _nearest_index(size: int, out: int) -> np.ndarray:
    """torch 'nearest': min(floor(i · (float)in/out), in − 1), in float32 as torch computes it."""
    scale = np.float32(size) / np.float32(out)
    idx = np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, size - 1)


def nearest_resize(x, size: int):
    """F.interpolate(x, (size, size), mode='nearest') on an NHWC map."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    x = jnp.take(x, jnp.asarray(_nearest_index(x.shape[1], size)), axis=1)
    return jnp.take(x, jnp.asarray(_nearest_index(x.shape[2], size)), axis=2)


class ABF(nn.Module):
    """One attention-based fusion module; returns (output for HCL, residual for the next, shallower ABF)."""

    mid_channels: int
    out_channels: int
    fuse: bool

    @nn.compact
    def __call__(self, x, residual, out_size: int):
        conv = dict(use_bias=False, precision=HIGHEST, param_dtype=F32, dtype=F32, kernel_init=KAIMING_UNIFORM_A1)
        x = f32(x)
        h = x.shape[1]
        x = BatchStatNorm(name="bn1")(nn.Conv(self.mid_channels, (1, 1), name="conv1", **conv)(x))
        if self.fuse:
            y = nearest_resize(residual, h)
            z = nn.Conv(2, (1, 1), kernel_init=TORCH_DEFAULT_KERNEL, bias_init=torch_uniform_bias(2 * self.mid_channels),
                        precision=HIGHEST, param_dtype=F32, dtype=F32, name="att_conv")(jnp.concatenate([x, y], -1))
            z = jax.nn.sigmoid(z)
            x = x * z[..., 0:1] + y * z[..., 1:2]
        if x.shape[2] != out_size:
            x = nearest_resize(x, out_size)
        out = nn.Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), name="conv2", **conv)(x)
        return BatchStatNorm(name="bn2")(out), x


def _as_map(x):
    x = f32(x)
    return x.reshape(x.shape[0], 1, 1, x.shape[1]) if x.ndim == 2 else x


class ReviewPath(nn.Module):
    """ABFs abf{i} (i: position in s_keys, shallow to deep), run deepest first."""

    t_channels: Sequence[int]
    t_sizes: Sequence[int]

    @nn.compact
    def __call__(self, s_feats):
        s_feats = [_as_map(f) for f in s_feats]
        k = len(s_feats)
        mid = min(MAX_MID_CHANNELS, int(s_feats[-1].shape[-1]))
        outs, residual = [None] * k, None
        for i in reversed(range(k)):
            abf = ABF(mid, int(self.t_channels[i]), fuse=i < k - 1, name=f"abf{i}")
            outs[i], residual = abf(s_feats[i], residual, int(self.t_sizes[i]))
        return outs


def _path(t_feats) -> ReviewPath:
    maps = [t.shape if len(t.shape) == 4 else (t.shape[0], 1, 1, t.shape[1]) for t in t_feats]
    return ReviewPath(tuple(int(m[3]) for m in maps), tuple(int(m[1]) for m in maps))


def reviewkd_init(rng, s_feats: Sequence, t_feats: Sequence) -> dict:
    """ABF parameters sized from the student and teacher features (arrays or shape structs)."""
    zeros = [jnp.zeros((2,) + tuple(s.shape[1:]), F32) for s in s_feats]
    return _path(t_feats).init(rng, zeros)["params"]


def reviewkd_loss(params, s_feats: Sequence, t_feats: Sequence):
    """HCL(ABF review path of the student features, teacher features), without the warm-up factor."""
    outs = _path(t_feats).apply({"params": params}, list(s_feats))
    return hcl_loss(outs, [_as_map(t) for t in t_feats])


def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'reviewkd' maps each student feature to one teacher feature: s_keys has {len(e.s_keys)} "
                          f"names and t_keys {len(e.t_keys)}; give both the same length")
    return None


def _shapes(e, s, t):
    for side, shapes in (("student", s), ("teacher", t)):
        for i, x in enumerate(shapes):
            if len(x) not in (2, 4):
                return f"needs NHWC maps or [N, C] features, {side} feature {i} is {list(x)}"
            if len(x) == 4 and x[1] != x[2]:
                return (f"{side} feature {i} {list(x)} is not square; the reference resizes to square "
                        "(shape, shape) maps, so kdjax refuses other maps rather than compute something else")
    return None


def _compute(e, a, b, ctx):
    value = reviewkd_loss(ctx.params, [a[k] for k in e.s_keys], [jax.lax.stop_gradient(b[k]) for k in e.t_keys])
    if e.params["warmup_epochs"]:
        if ctx.epoch is None:
            raise ValueError(f"losses[{e.index}] (reviewkd) has warmup_epochs={e.params['warmup_epochs']}: pass "
                             "epoch= (1-based) to CombinedLoss.__call__")
        value = value * dkd_warmup_factor(ctx.epoch, e.params["warmup_epochs"])
    return (value,)


register_loss(LossSpec(
    "reviewkd", "knowledge review: ABF fusion along the review path + hierarchical context loss (mdistiller ReviewKD)",
    "ReviewKD: Chen et al., CVPR 2021", "pairs", "unused", dict(warmup_epochs=20.0), _compute,
    checks=dict(warmup_epochs=non_negative), entry_check=_entry, shape_check=_shapes, multi_key=True,
    learnable=True, init=lambda e, a, b, rng: reviewkd_init(rng, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys]),
    separable=False))  # the ABFs' BatchNorms normalise with the whole batch's statistics
