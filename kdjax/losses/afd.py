"""AFD (attention-based feature distillation): PaddleClas' LinearTransformStudent/Teacher heads and
AFDLoss' attention, as one loss-side Flax module on NHWC features.

In PaddleClas the two heads are arch modules (the teacher's head is trainable even though the
teacher backbone is frozen); kdjax keeps them with the loss, so their parameters live in the
training state and never reach the exported student. Their BatchNorms always normalise with batch
statistics (the heads only ever run in training), so no running averages are kept.
"""

import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.feature_ops import adaptive_avg_pool
from kdjax.losses.heads import BatchStatNorm
from kdjax.losses.registry import LossSpec, positive_int, register_loss
from kdjax.losses.numerics import F32, f32, l2_normalize, softmax

HIGHEST = jax.lax.Precision.HIGHEST
Shape = Tuple[int, int, int]  # (C, H, W), PaddleClas' s_shapes / t_shapes convention


def unique_shapes(shapes: Sequence[Sequence[int]]):
    """(index of each shape in the list of distinct shapes, that list in first-appearance order)."""
    uniq, index = [], []
    for shape in shapes:
        shape = tuple(int(v) for v in shape)
        if shape not in uniq:
            uniq.append(shape)
        index.append(uniq.index(shape))
    return index, uniq


def chw_shape(feat) -> Shape:
    """(C, H, W) of an NHWC feature map."""
    _, h, w, c = feat.shape
    return int(c), int(h), int(w)


def afd_attention_loss(p_t, p_s, bilinear_key, query, values_s, values_t, n_t):
    """AFDLoss' Attention: returns (Σ_i ℓ_i, [ℓ_i]) over teacher features i.

    bilinear_key [b, S, T, q], query [b, T, q], values_s: per distinct teacher shape [b, S, HW],
    values_t: per teacher feature [b, HW], n_t[i]: the distinct-shape index of teacher feature i.
    """
    q = bilinear_key.shape[-1]
    logit = (jnp.einsum("bstq,btq->bts", f32(bilinear_key), f32(query), precision=HIGHEST)
             + jnp.matmul(f32(p_t), f32(p_s).T, precision=HIGHEST)) / math.sqrt(q)
    att = softmax(logit, axis=2)  # b × T × S
    per = []
    for i, (n, v_t) in enumerate(zip(n_t, values_t)):
        diff = jnp.mean(jnp.square(f32(values_s[n]) - f32(v_t)[:, None, :]), axis=2)  # b × S
        per.append(jnp.mean(jnp.sum(diff * att[:, i], axis=1)))
    per = jnp.stack(per)
    return jnp.sum(per), per


class LinearBN(nn.Module):
    """Linear -> BatchNorm1D (-> ReLU)."""

    features: int
    relu: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.features, kernel_init=nn.initializers.xavier_uniform(),
                     precision=HIGHEST, param_dtype=F32, dtype=F32, name="linear")(x)
        x = BatchStatNorm(name="bn")(x)
        return nn.relu(x) if self.relu else x


class LinearTransformTeacher(nn.Module):
    """query [b, T, q] from channel means; value_i = normalize(mean_c f², over H·W) [b, H·W]."""

    qk_dim: int

    @nn.compact
    def __call__(self, feats):
        feats = [f32(f) for f in feats]
        query = jnp.stack([LinearBN(self.qk_dim, relu=False, name=f"query_{i}")(jnp.mean(f, axis=(1, 2)))
                           for i, f in enumerate(feats)], axis=1)
        values = [l2_normalize(jnp.mean(jnp.square(f), axis=-1).reshape(f.shape[0], -1), 1)
                  for f in feats]
        return query, values


class LinearTransformStudent(nn.Module):
    """bilinear_key [b, S, T, q]; values per distinct teacher shape [b, S, H_u·W_u] (pooled, normalised)."""

    qk_dim: int
    t_shapes: Tuple[Shape, ...]

    @nn.compact
    def __call__(self, feats):
        feats = [f32(f) for f in feats]
        b, s, t = feats[0].shape[0], len(feats), len(self.t_shapes)
        key = jnp.stack([LinearBN(self.qk_dim, relu=True, name=f"key_{j}")(jnp.mean(f, axis=(1, 2)))
                         for j, f in enumerate(feats)], axis=1).reshape(b * s, self.qk_dim)
        bilinear = LinearBN(self.qk_dim * t, relu=False, name="bilinear")(key)
        bilinear_key = bilinear.reshape(b, s, t, self.qk_dim)
        energy = [jnp.mean(jnp.square(f), axis=-1, keepdims=True) for f in feats]  # [b, H, W, 1]
        values = []
        for _, th, tw in unique_shapes(self.t_shapes)[1]:
            pooled = jnp.stack([adaptive_avg_pool(e, (th, tw)).reshape(b, th * tw) for e in energy], axis=1)
            values.append(l2_normalize(pooled, 2))
        return bilinear_key, values


class AFDModule(nn.Module):
    """Both heads plus the attention's p_t [T, q] and p_s [S, q] (XavierNormal)."""

    qk_dim: int
    t_shapes: Tuple[Shape, ...]
    num_student_feats: int

    @nn.compact
    def __call__(self, s_feats, t_feats):
        xavier = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
        p_t = self.param("p_t", xavier, (len(self.t_shapes), self.qk_dim), F32)
        p_s = self.param("p_s", xavier, (self.num_student_feats, self.qk_dim), F32)
        bilinear_key, values_s = LinearTransformStudent(self.qk_dim, self.t_shapes, name="student")(s_feats)
        query, values_t = LinearTransformTeacher(self.qk_dim, name="teacher")(t_feats)
        n_t, _ = unique_shapes(self.t_shapes)
        return afd_attention_loss(p_t, p_s, bilinear_key, query, values_s, values_t, n_t)


def _module(s_feats, t_feats, qk_dim: int) -> AFDModule:
    return AFDModule(int(qk_dim), tuple(chw_shape(f) for f in t_feats), len(s_feats))


def afd_init(rng, s_feats, t_feats, qk_dim: int = 128) -> dict:
    """Parameters of both heads and the attention, sized from the feature maps (arrays or shapes)."""
    zeros = lambda fs: [jnp.zeros(f.shape, F32) for f in fs]  # noqa: E731
    return _module(s_feats, t_feats, qk_dim).init(rng, zeros(s_feats), zeros(t_feats))["params"]


def afd_loss(params, s_feats, t_feats, qk_dim: int = 128):
    """(total, per-teacher-feature losses) for lists of NHWC student and teacher feature maps."""
    return _module(s_feats, t_feats, qk_dim).apply({"params": params}, list(s_feats), list(t_feats))


def _shapes(e, s, t):
    if any(len(x) != 4 for x in list(s) + list(t)):
        return f"needs NHWC feature maps, got {[list(x) for x in list(s) + list(t)]}"
    return None


def _compute(e, a, b, ctx):
    total, _ = afd_loss(ctx.params, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["qk_dim"])
    return (total,)


register_loss(LossSpec(
    "afd", "attention-based feature distillation (AFDLoss + LinearTransform heads)", "AFD: Ji et al., AAAI 2021",
    "pairs", "unused", dict(qk_dim=128), _compute, checks=dict(qk_dim=positive_int), shape_check=_shapes,
    learnable=True, multi_key=True,
    init=lambda e, a, b, rng: afd_init(rng, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["qk_dim"]),
    # the heads' BatchNorms normalise with the statistics of the whole batch
    separable=False))
