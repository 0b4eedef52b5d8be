"""FitNet hints (Romero et al., ICLR 2015) and attention transfer (Zagoruyko & Komodakis, ICLR 2017), NHWC.

FitNet: L_HT = mean((r(v_s) − u_t)²), a student ("guided") feature map v_s through a learned regressor r
against a teacher ("hint") map u_t. The regressor is the paper's convolutional one: a valid convolution with
kernel (H_s − H_t + 1, W_s − W_t + 1), i.e. a 1×1 conv when the maps have the same size, followed by the
hint's non-linearity (ReLU: the paper requires u_t and r to share it; pass relu=False for pre-activation
hints). `regressor="conv3x3"` is RepDistiller / mdistiller's ConvReg instead (3×3 conv, BatchNorm, ReLU; equal
sizes). The value is the mean over N·H_t·W_t·C_t elements (RepDistiller's HintLoss = nn.MSELoss); the paper's
½‖·‖² summed is N·H·W·C/2 times it, which the loss weight absorbs. The regressor lives in the training state
with the other loss parameters and is never exported.

AT: Q = vec(Σ_c |A_c|^p) / ‖·‖₂ per sample and layer (the reference code averages over channels, the same map
after normalisation); L = β/2 · Σ_j mean_{n,i}((Q_s,j − Q_t,j)²) over layer pairs j, as in the authors' code
(β = 1000; RepDistiller / mdistiller apply β without the ½). A larger map is average-pooled to the smaller
one's size first (RepDistiller). Teacher features get no gradient in both losses (the references run the
teacher under no_grad / detach it).
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.feature import adaptive_avg_pool
from kdjax.losses.numerics import F32, f32, l2_normalize

HIGHEST = jax.lax.Precision.HIGHEST
REGRESSORS = ("conv", "conv3x3")


def torch_uniform_bias(fan_in: int):
    """torch's default Linear/Conv bias init: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


# torch's default Linear/Conv weight init, kaiming_uniform(a=√5): U(−1/√fan_in, 1/√fan_in)
TORCH_DEFAULT_KERNEL = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class BatchStatNorm2d(nn.Module):
    """BatchNorm2d in training mode on NHWC maps: statistics over N, H, W (biased variance, eps 1e-5), learnable
    scale/bias. The regressor only ever runs in training, so no running averages are kept."""

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), F32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), F32)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def regressor_kernel(s_shape, t_shape) -> Tuple[int, int]:
    """The paper's regressor kernel (H_s − H_t + 1, W_s − W_t + 1) for NHWC shapes."""
    return int(s_shape[1]) - int(t_shape[1]) + 1, int(s_shape[2]) - int(t_shape[2]) + 1


class FitNetRegressor(nn.Module):
    """r(v): conv (valid, paper kernel) [+ ReLU], or conv3x3 + BatchNorm (batch statistics) [+ ReLU]."""

    teacher_channels: int
    kernel: Tuple[int, int]
    regressor: str = "conv"
    relu: bool = True

    @nn.compact
    def __call__(self, x):
        x = f32(x)
        fan_in = x.shape[-1] * (9 if self.regressor == "conv3x3" else self.kernel[0] * self.kernel[1])
        conv = dict(kernel_init=TORCH_DEFAULT_KERNEL, bias_init=torch_uniform_bias(fan_in), precision=HIGHEST,
                    param_dtype=F32, dtype=F32, name="conv")
        if self.regressor == "conv3x3":
            x = nn.Conv(self.teacher_channels, (3, 3), padding=((1, 1), (1, 1)), **conv)(x)
            x = BatchStatNorm2d(name="bn")(x)
        else:
            x = nn.Conv(self.teacher_channels, tuple(self.kernel), padding="VALID", **conv)(x)
        return nn.relu(x) if self.relu else x


def _regressor(s_feat, t_feat, regressor: str, relu: bool) -> FitNetRegressor:
    return FitNetRegressor(int(t_feat.shape[-1]), regressor_kernel(s_feat.shape, t_feat.shape), regressor, relu)


def fitnet_init(rng, s_feat, t_feat, regressor: str = "conv", relu: bool = True) -> dict:
    """Regressor parameters sized from the two NHWC maps (arrays or shape structs)."""
    return _regressor(s_feat, t_feat, regressor, relu).init(rng, jnp.zeros(s_feat.shape, F32))["params"]


def fitnet_loss(params, s_feat, t_feat, regressor: str = "conv", relu: bool = True):
    """mean((r(s) − t)²) over all N·H_t·W_t·C_t elements; the teacher map gets no gradient."""
    t = jax.lax.stop_gradient(f32(t_feat))
    out = _regressor(s_feat, t_feat, regressor, relu).apply({"params": params}, f32(s_feat))
    return jnp.mean(jnp.square(out - t))


# --- attention transfer -----------------------------------------------------------------------------

def attention_map(feat, p: float = 2.0):
    """[N, H·W]: Σ_c |A_c|^p (as a channel mean), flattened and L2-normalised per sample."""
    f = f32(feat)
    a = jnp.square(f) if float(p) == 2.0 else jnp.power(jnp.abs(f), float(p))
    a = jnp.mean(a, axis=-1).reshape(f.shape[0], -1)
    return l2_normalize(a, 1)


def _match_sizes(s, t):
    """Average-pool the larger map to the smaller one's H×W (RepDistiller's at_loss)."""
    (hs, ws), (ht, wt) = s.shape[1:3], t.shape[1:3]
    if (hs, ws) == (ht, wt):
        return s, t
    if hs * ws > ht * wt:
        return adaptive_avg_pool(s, (ht, wt)), t
    return s, adaptive_avg_pool(t, (hs, ws))


def at_losses(s_feats: Sequence, t_feats: Sequence, p: float = 2.0):
    """[mean_{n,i}((Q_s,j − Q_t,j)²) for each layer pair j] (no β)."""
    if len(s_feats) != len(t_feats):
        raise ValueError(f"AT pairs student and teacher maps one to one, got {len(s_feats)} and {len(t_feats)}")
    out = []
    for s, t in zip(s_feats, t_feats):
        s, t = _match_sizes(f32(s), jax.lax.stop_gradient(f32(t)))
        out.append(jnp.mean(jnp.square(attention_map(s, p) - attention_map(t, p))))
    return out


def at_loss(s_feats: Sequence, t_feats: Sequence, p: float = 2.0, beta: float = 1000.0):
    """β/2 · Σ_j mean((Q_s,j − Q_t,j)²) over the layer pairs."""
    return beta / 2.0 * sum(at_losses(s_feats, t_feats, p))
