"""`uskd`: Universal Self-KD with customised soft labels (Yang et al., ICCV 2023, same paper as NKD), as yzd-v/cls_KD's
USKDLoss computes it. A self-distillation loss: one model (no teacher), reading its logits and a mid-level feature.

Learnable part (training state, never exported): `fc`, a linear classifier channel → C on the mid feature (the
"weak logits" w; torch's default Linear init). A mid feature map [N, H, W, ch] is global-average-pooled first (the
reference's neck). Targets: the label (K = 1, value 1), or with mixup/cutmix scores the top-2 classes and their
scores (K = 2). With p = softmax(s), all per sample except where said:

    a      = p[target]² + v − mean_batch(p[target]²), set to 0 where v = 0, detached   (the batch mean: not separable)
    L_t    = −mean_n Σ_k a_k · log p[target_k]
    L_weak = −mean_n Σ_c μ · q_c · log softmax(w)_c,   q = 0.9·onehot (or 0.9·scores) + 0.1/C
    r      = softmax(w) / (1 − Σ_k softmax(w)[target] + 1e-6) + log p / (1 − Σ_k log p[target] + 1e-6)
             (the reference's second term uses log-probabilities: it reuses a variable after overwriting it)
    z_c    = 1 / (1 + rank of c in r, descending)  (float32 Zipf table), target classes dropped, renormalised, detached
    L_non  = −mean_n Σ z' · log softmax(s')        s' = s without the target classes
    L      = α · L_t + β · L_non + L_weak

No gradient flows through the ranking. Ties in r (and, with scores, between a zero second score and the other
zeros) are broken by the lower class index (the reference's torch.sort leaves them implementation-defined).
Paper settings: α = 1, β = 0.1, μ = 0.005 (ImageNet ResNet-18, channel 256 = stage 3); CIFAR-100 ResNet-18:
α = 0.1, β = 0.1, μ = 0.1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.heads import TORCH_DEFAULT_KERNEL, torch_uniform_bias
from kdjax.losses.logit_ops import drop_columns, flat_labels
from kdjax.losses.numerics import F32, f32, log_softmax, softmax
from kdjax.losses.registry import LossSpec, non_negative, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


def mid_feature(x):
    """[N, ch] as is; a map [N, H, W, ch] global-average-pooled (the reference's neck)."""
    x = f32(x)
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1))) if x.ndim > 2 else x


class WeakClassifier(nn.Module):
    """USKD's `fc`: Linear(channel, C) with torch's default init."""

    num_classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes, kernel_init=TORCH_DEFAULT_KERNEL, bias_init=torch_uniform_bias(x.shape[-1]),
                        precision=HIGHEST, param_dtype=F32, dtype=F32, name="fc")(x)


def uskd_init(rng, feature, logits) -> dict:
    x = jnp.zeros(mid_feature(jnp.zeros(feature.shape, F32)).shape, F32)
    return WeakClassifier(int(logits.shape[-1])).init(rng, x)["params"]


def _targets(labels, soft_labels, c):
    """(columns [N, K], values [N, K], smoothed target q [N, C]) from labels or mixup/cutmix scores."""
    if soft_labels is None:
        y = flat_labels(labels).astype(jnp.int32)[:, None]
        values = jnp.ones(y.shape, F32)
        q = 0.9 * jax.nn.one_hot(y[:, 0], c, dtype=F32) + 0.1 / c
        return y, values, q
    scores = f32(soft_labels)
    order = jnp.argsort(-scores, axis=-1, stable=True)[:, :2]  # the top-2 classes, lower index first on ties
    return order, jnp.take_along_axis(scores, order, axis=-1), scores * 0.9 + 0.1 / c


def uskd_loss(params, feature, logits, labels=None, soft_labels=None, alpha: float = 1.0, beta: float = 0.1,
              mu: float = 0.005):
    """USKDLoss on the student's mid `feature` and `logits`; `params` = the WeakClassifier's ({"fc": ...})."""
    s = f32(logits)
    n, c = s.shape
    cols, values, q = _targets(labels, soft_labels, c)
    log_p = log_softmax(s, axis=-1)
    log_p_t = jnp.take_along_axis(log_p, cols, axis=-1)
    p_t = jnp.take_along_axis(softmax(s, axis=-1), cols, axis=-1)
    a = p_t * p_t
    a = a + values - jnp.mean(a, axis=0, keepdims=True)
    a = jax.lax.stop_gradient(jnp.where(values == 0, 0.0, a))
    loss_t = -jnp.mean(jnp.sum(a * log_p_t, axis=-1))

    w = WeakClassifier(c).apply({"params": params}, mid_feature(feature))
    loss_weak = -jnp.mean(jnp.sum(mu * q * log_softmax(w, axis=-1), axis=-1))

    w_p = softmax(w, axis=-1)
    w_t = jnp.take_along_axis(w_p, cols, axis=-1)
    rank = (w_p / (1.0 - jnp.sum(w_t, axis=-1, keepdims=True) + 1e-6)
            + log_p / (1.0 - jnp.sum(log_p_t, axis=-1, keepdims=True) + 1e-6))
    position = jnp.argsort(jnp.argsort(-jax.lax.stop_gradient(rank), axis=-1, stable=True), axis=-1)
    zipf = 1.0 / (position + 1).astype(F32)
    z = drop_columns(zipf, cols)
    z = jax.lax.stop_gradient(z / jnp.sum(z, axis=-1, keepdims=True))
    loss_non = -jnp.mean(jnp.sum(z * log_softmax(drop_columns(s, cols), axis=-1), axis=-1))
    return alpha * loss_t + beta * loss_non + loss_weak


def _compute(e, a, b, ctx):
    p = e.params
    if ctx.soft_labels is None and ctx.labels is None:
        raise ValueError(f"losses[{e.index}] (uskd) needs labels; got labels=None")
    if ctx.label_mask is not None:
        raise ValueError(f"losses[{e.index}] (uskd) has no meaning on unlabeled rows (label_mask): its soft labels "
                         "are built from the ground truth")
    return (uskd_loss(ctx.params, a[e.s_key], a["logits"], ctx.labels, ctx.soft_labels, p["alpha"], p["beta"],
                      p["mu"]),)


def _entry(e):
    if e.s_key == "logits":
        return ("key", "'uskd' reads the student's logits and a mid-level feature: set key to that feature's name "
                       "(e.g. key='blocks[1]', captured by the model; a map is average-pooled), not 'logits'")
    return None


def _shapes(e, feature, t=None):
    if len(feature) not in (2, 4):
        return f"needs a mid-level feature [N, ch] or a map [N, H, W, ch], got {list(feature)}"
    return None


register_loss(LossSpec(
    "uskd", "self-KD: target soft label from the model's own confidence + Zipf non-target labels + a weak "
    "classifier on a mid feature (USKDLoss)", "USKD: Yang et al., ICCV 2023", "models", "required",
    dict(alpha=1.0, beta=0.1, mu=0.005), _compute, checks=dict(alpha=non_negative, beta=non_negative, mu=non_negative),
    shape_check=_shapes, entry_check=_entry, learnable=True,
    init=lambda e, a, b, rng: uskd_init(rng, a[e.s_key], a["logits"]),
    separable=False))  # the target soft label subtracts a batch mean
