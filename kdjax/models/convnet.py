"""Small VGG-style CNNs for the offline default (Fashion-MNIST): fast enough to train on 2 CPU cores.

Feature names follow the zoo convention: `stem`, `blocks[i]` (one per stage), `avg_pool`, `logits`;
`blocks_preact[i]` is blocks[i] before its final ReLU (the last BatchNorm's output: OFD, ReviewKD's teacher side).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from kdjax.models.features import record
from kdjax.models.layers import Conv
from kdjax.models.registry import register_model


class ConvBN(nn.Module):
    features: int
    kernel: int = 3
    stride: int = 1
    relu: bool = True  # False: return the BatchNorm output (the ReLU is applied by the caller)

    @nn.compact
    def __call__(self, x, train: bool):
        # the zoo's Conv (its convolution hook): with "SAME" padding XLA's path is lax.conv_general_dilated unchanged,
        # and the convolution choice (KDJAX_CONV=onednn) reaches the default models too
        x = Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding="SAME", use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        return nn.relu(x) if self.relu else x


class ConvNet(nn.Module):
    """stem conv, then one stage per width (conv-BN-ReLU ×depth, 2×2 max-pool between stages), GAP, linear."""

    widths: Sequence[int] = (32, 64, 128)
    depth: int = 2
    num_classes: int = 10
    stem_stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBN(self.widths[0], stride=self.stem_stride, name="stem_conv")(x, train)
        record(self, "stem", x)
        for i, width in enumerate(self.widths):
            if i > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for j in range(self.depth):
                x = ConvBN(width, relu=False, name=f"stage{i}_conv{j}")(x, train)
                if j == self.depth - 1:
                    record(self, f"blocks_preact[{i}]", x)
                x = nn.relu(x)
            record(self, f"blocks[{i}]", x)
        x = jnp.mean(x, axis=(1, 2))
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x


@register_model("convnet_teacher")
def convnet_teacher(num_classes: int = 10, **kw):
    """Stride-2 stem keeps the maps at 14×14 and smaller: fast enough to train on 2 CPU cores in minutes."""
    kw.setdefault("stem_stride", 2)
    return ConvNet(widths=(32, 64, 128), depth=1, num_classes=num_classes, **kw)


@register_model("convnet_student")
def convnet_student(num_classes: int = 10, **kw):
    """A few thousand params: small enough to leave room below the teacher."""
    kw.setdefault("stem_stride", 2)
    return ConvNet(widths=(8, 16, 32), depth=1, num_classes=num_classes, **kw)


@register_model("ConvNet")
def convnet(**kw):
    return ConvNet(**kw)
