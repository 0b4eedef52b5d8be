"""Building blocks of learnable loss-side heads (FitNet regressors, AFD heads, CRD embeddings), initialised as their
reference (torch) code initialises them. They live in the training state with the other loss parameters and are
never exported."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.numerics import F32


def torch_uniform_bias(fan_in: int):
    """torch's default Linear/Conv bias init: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


# torch's default Linear/Conv weight init, kaiming_uniform(a=√5): U(−1/√fan_in, 1/√fan_in)
TORCH_DEFAULT_KERNEL = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")



class BatchStatNorm(nn.Module):
    """BatchNorm in training mode over every axis but the last (BatchNorm1D on [N, C], BatchNorm2d on NHWC maps):
    batch statistics, biased variance, eps 1e-5, learnable scale/bias. The heads only ever run in training, so no
    running averages are kept."""

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), F32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), F32)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias
