"""Shared building blocks of the model zoo.

Every convolution of the zoo is built through `conv()` (one `Conv` class), so a faster implementation
(e.g. a convolution with its own weight-gradient VJP for XLA:CPU) can be swapped in here, in one place.
Parameter names stay Flax's (`kernel`, `bias`, `scale`, `mean`, `var`): `kdjax.pretrained` relies on them.

Padding is explicit and symmetric, `(k - 1) // 2` on each side, as in PyTorch and Paddle. Flax's "SAME" pads
asymmetrically for stride 2, which would shift every strided feature map by one pixel against
imported weights.
"""

import math
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class Conv(nn.Conv):
    """The zoo's convolution (NHWC, HWIO kernel). Swap this class to change how all convs are computed."""


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1, use_bias: bool = False,
         padding: Optional[int] = None, name: Optional[str] = None) -> Conv:
    """A `kernel`x`kernel` convolution with PyTorch/Paddle semantics (symmetric zero padding)."""
    p = (kernel - 1) // 2 if padding is None else padding
    return Conv(features, (kernel, kernel), strides=(stride, stride), padding=((p, p), (p, p)),
                feature_group_count=groups, use_bias=use_bias, name=name)


def batch_norm(train: bool, name: Optional[str] = None) -> nn.BatchNorm:
    """BatchNorm as both source frameworks define it (eps 1e-5, running-average momentum 0.9)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


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
