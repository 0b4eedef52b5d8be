"""Shared building blocks of the model zoo.

Every convolution of the zoo is built through `conv()` (one `Conv` class), so a faster implementation
(e.g. a convolution with its own weight-gradient VJP for XLA:CPU) can be swapped in here, in one place.
Parameter names stay Flax's (`kernel`, `bias`, `scale`, `mean`, `var`): `kdjax.weights.pretrained` relies on them.

Padding is explicit and symmetric, `(k - 1) // 2` on each side, as in PyTorch and Paddle. Flax's "SAME" pads
asymmetrically for stride 2, which would shift every strided feature map by one pixel against
imported weights.
"""

import math
from functools import partial
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from kdjax import kernels
from kdjax.kernels import conv as fast_conv


KERNELS_AUTO = kernels.AUTO_NAME


def using_kernels(choice: str = KERNELS_AUTO):
    """Context in which the zoo's layers trace with `config.kernels`' choice (kdjax/kernels/__init__.py); models see
    kernels only through this module."""
    return kernels.use(choice)


class Conv(nn.Conv):
    """The zoo's convolution (NHWC, HWIO kernel). Swap this class to change how all convs are computed.

    The forward pass is `lax.conv_general_dilated` itself; the backward pass comes from
    `kdjax.kernels.conv` (weight gradient computed where the input gradient is, strided input gradients
    without multiplications by zero). Same parameters, same values; gradients equal to float rounding.
    """

    conv_general_dilated: Optional[Callable] = fast_conv.flax_conv_general_dilated


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1, use_bias: bool = False,
         padding: Optional[int] = None, name: Optional[str] = None) -> Conv:
    """A `kernel`x`kernel` convolution with PyTorch/Paddle semantics (symmetric zero padding)."""
    p = (kernel - 1) // 2 if padding is None else padding
    return Conv(features, (kernel, kernel), strides=(stride, stride), padding=((p, p), (p, p)),
                feature_group_count=groups, use_bias=use_bias, name=name)


def batch_norm(train: bool, name: Optional[str] = None) -> "BatchNorm":
    """BatchNorm as both source frameworks define it (eps 1e-5, running-average momentum 0.9)."""
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _rows_of(hw: int, c: int) -> int:
    """k for `_channel_sum`'s [N·H·W/k, k·C] view: a divisor of H·W, the largest with k·C <= 1024; where that leaves
    rows of at most 512 floats (7×7×512 maps: k=1), the smallest with k·C >= 1024 if the row stays <= 4096 floats.
    Measured on XLA:CPU, BatchNorm forward + backward of [32, 7, 7, 512]: k=1 40 ms, k=2 (rows straddling samples,
    the former view) 19 ms, k=7 4.4 ms; where k·C is already 512-1024 a longer row was slower ([64, 6, 6, 128]:
    k=6 0.8 ms, k=9 2.2 ms; [64, 14, 14, 512]: k=2 101 ms, k=7 254 ms)."""
    divisors = [d for d in range(1, hw + 1) if hw % d == 0]
    k = max(d for d in divisors if d * c <= 1024 or d == 1)
    if k * c <= 512:
        longer = [d for d in divisors if 1024 <= d * c <= 4096]
        if longer:
            k = longer[0]
    return k


def _channel_sum(a, materialize: bool = False):
    """Σ over every axis but the last, in the form XLA:CPU reduces fastest, with rows that never straddle samples.

    XLA:CPU sums [N, H, W, C] over (N, H, W) at ~1.3 GB/s per core (as a split reduce-window); the same sum as a
    column sum of a 2-D [N·H·W/k, k·C] view (k·C ≈ 1024, `_rows_of`) runs ~15x faster — but only for a plain
    operand: an elementwise producer fused into it (x², dy·x̂) falls back to the slow loop, so `materialize` writes
    such an operand out first (an optimisation barrier keeps XLA from fusing it).

    k divides H·W (not just N·H·W): every row then holds pixels of one sample, so a batch split over devices is a
    split of the rows, each device sums its own and XLA adds the [k·C] partial sums with one all-reduce. With
    rows straddling two samples (k dividing N·H·W only), GSPMD all-gathered the whole activation instead."""
    if materialize:
        a = lax.optimization_barrier(a)
    n, c = a.shape[0], a.shape[-1]
    hw = a.size // (n * c) if n else 0
    k = _rows_of(hw, c) if hw else 1
    return jnp.sum(jnp.sum(a.reshape(n * hw // k, k * c), axis=0).reshape(k, c), axis=0)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x, scale, bias, epsilon):
    """(y, batch mean, biased batch variance) of training-mode BatchNorm, with a hand-written backward pass."""
    return _bn_train_fwd(x, scale, bias, epsilon)[0]


def _bn_train_fwd(x, scale, bias, epsilon):
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    count = xf.size // xf.shape[-1]
    mean = _channel_sum(xf) / count
    mean2 = _channel_sum(xf * xf, materialize=True) / count
    var = jnp.maximum(0.0, mean2 - mean * mean)   # flax's fast variance, clipped like flax
    rstd = lax.rsqrt(var + epsilon)
    y = (x - mean) * (rstd * scale) + bias
    return (y, mean, var), (x, mean, rstd, scale)


def _bn_train_bwd(epsilon, res, cotangents):
    x, mean, rstd, scale = res
    dy, dmean, dvar = cotangents
    xf = x.astype(mean.dtype)
    dyf = dy.astype(mean.dtype)
    count = xf.size // xf.shape[-1]
    xhat = (xf - mean) * rstd
    dbias = _channel_sum(dyf)
    dscale = _channel_sum(dyf * xhat, materialize=True)
    dx = (scale * rstd) * (dyf - (dbias + xhat * dscale) / count)
    # the statistics are outputs too (running averages; their cotangents are zero in training)
    dx = dx + dmean / count + dvar * (2.0 / count) * (xf - mean)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm(nn.Module):
    """`flax.linen.BatchNorm` for NHWC features: same variables (params scale/bias, batch_stats mean/var), same
    semantics (float32 statistics, biased batch variance E[x²] − E[x]² clipped at 0, running averages left
    alone during init; inference mode is flax's formula verbatim). Training mode is chosen per backend
    (`kdjax.kernels`): flax's formulation differentiated by JAX ('xla', GPU/TPU), or statistics from
    `_channel_sum` with a hand-written backward pass (two fast reductions and one elementwise pass; 'cpu_tuned'):
    on XLA:CPU the resnet8x4 forward + backward is ~1.2x faster than with autodiff through flax's, the whole DKD
    step 1.12x → 1.19x of the plain one (benchmarks/README.md, ablation)."""

    use_running_average: Optional[bool] = None
    momentum: float = 0.99
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: Optional[bool] = None):
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        out_dtype = jnp.result_type(x, scale, bias)
        if use_running_average:
            y = (x - ra_mean.value) * (lax.rsqrt(ra_var.value + self.epsilon) * scale)
            return jnp.asarray(y + bias, out_dtype)
        if kernels.current().batch_norm == "custom_vjp":
            y, mean, var = _bn_train(x, scale, bias, self.epsilon)
        else:  # flax's formulation, differentiated by JAX
            xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            axes = tuple(range(x.ndim - 1))
            mean, mean2 = jnp.mean(xf, axes), jnp.mean(xf * xf, axes)
            var = jnp.maximum(0.0, mean2 - mean * mean)
            y = (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return jnp.asarray(y, out_dtype)


def hardswish(x):
    """Paddle/PyTorch hardswish: x * relu6(x + 3) / 6."""
    return x * jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def paddle_hardsigmoid(x):
    """paddle.nn.Hardsigmoid: clip(0.1666667 x + 0.5, 0, 1); Paddle's slope is this literal, not 1/6."""
    return jnp.clip(x * 0.1666667 + 0.5, 0.0, 1.0)


def relu6(x):
    return jnp.clip(x, 0.0, 6.0)


ACTIVATIONS = {"relu": nn.relu, "hardswish": hardswish, "relu6": relu6, None: None}


class ConvBN(nn.Module):
    """conv -> BN -> optional activation, with submodules `conv` and `bn` (Paddle's ConvBNLayer layout)."""

    features: int
    kernel: int
    stride: int = 1
    groups: int = 1
    act: Optional[str] = None
    avg_down: bool = False  # ResNet-vd shortcut: 2x2 average pool (stride `stride`) before a stride-1 conv

    @nn.compact
    def __call__(self, x, train: bool = False):
        stride = self.stride
        if self.avg_down:
            x = paddle_avg_pool_same(x, 2, stride)
            stride = 1
        x = conv(self.features, self.kernel, stride, self.groups, name="conv")(x)
        x = batch_norm(train, name="bn")(x)
        fn: Optional[Callable] = ACTIVATIONS[self.act]
        return fn(x) if fn is not None else x


def paddle_avg_pool_same(x, window: int, stride: int):
    """Paddle AvgPool2D(padding="SAME", ceil_mode=True, exclusive=True): padding is left out of the mean."""
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        pads.append((total // 2, total - total // 2))
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=pads, count_include_pad=False)


def max_pool(x, window: int, stride: int, padding: int = 0):
    """PyTorch/Paddle MaxPool2d: padding never wins the max."""
    return nn.max_pool(x, (window, window), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)))


def global_avg_pool(x):
    """[N, H, W, C] -> [N, C]."""
    return jnp.mean(x, axis=(1, 2))


def channel_shuffle(x, groups: int):
    """ShuffleNet's shuffle, written for NHWC so it matches the NCHW view/permute/reshape channel order."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)


def count_params(variables) -> int:
    """Trainable parameter count, like PyTorch's sum(p.numel() for p in model.parameters())."""
    params = variables["params"] if "params" in variables else variables
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
