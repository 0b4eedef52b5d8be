"""ShuffleNet V1 / V2 of the RepDistiller/mdistiller CIFAR zoo (`ShuffleV1`, `ShuffleV2`).

Both start from a 1x1 conv to 24 channels at full 32x32 resolution (no max-pool) and end with a global
average pool (AvgPool2d(4) on the 4x4 map) and a linear layer. V1: groups 3, widths 240/480/960, 4/8/4 units;
a stride-2 unit concatenates a 3x3/2 average pool of its input (zero padding counted, PyTorch's default).
V2 (net size 1): widths 116/232/464, a down-sampling unit plus 3/7/3 units, 1x1 conv to 1024.
Submodules carry the PyTorch names (`layer2_0/conv3`, `linear`). Default `num_classes=100`.

Recorded features (NHWC):
  stem           conv1-bn1-relu output (RepDistiller f0)
  blocks[i]      output of unit i, flat over the three stages (V2 counts the down-sampling units too)
  stages[0..2]   output of layer1..layer3 (f1..f3)
  avg_pool       [N, C] pre-logits (f4)
  logits         [N, num_classes]
"""

import flax.linen as nn
import jax.numpy as jnp

from kdjax.models.features import record
from kdjax.models.layers import batch_norm, channel_shuffle, conv, global_avg_pool
from kdjax.models.registry import register_model


class ShuffleV1Unit(nn.Module):
    out_ch: int
    stride: int
    groups: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        mid = self.out_ch // 4
        g = 1 if x.shape[-1] == 24 else self.groups
        y = nn.relu(batch_norm(train, "bn1")(conv(mid, 1, groups=g, name="conv1")(x)))
        y = channel_shuffle(y, g)
        y = nn.relu(batch_norm(train, "bn2")(conv(mid, 3, self.stride, groups=mid, name="conv2")(y)))
        y = batch_norm(train, "bn3")(conv(self.out_ch, 1, groups=self.groups, name="conv3")(y))
        if self.stride == 2:
            res = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)
            return nn.relu(jnp.concatenate([y, res], axis=-1))
        return nn.relu(y + x)


class ShuffleNetV1(nn.Module):
    out_planes: tuple = (240, 480, 960)
    num_blocks: tuple = (4, 8, 4)
    groups: int = 3
    num_classes: int = 100

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(batch_norm(train, "bn1")(conv(24, 1, name="conv1")(x)))
        record(self, "stem", x)
        idx = 0
        for stage, (planes, n) in enumerate(zip(self.out_planes, self.num_blocks)):
            for i in range(n):
                out_ch = planes - x.shape[-1] if i == 0 else planes  # stride-2 units concat their input
                x = ShuffleV1Unit(out_ch, 2 if i == 0 else 1, self.groups, name=f"layer{stage + 1}_{i}")(x, train)
                record(self, f"blocks[{idx}]", x)
                idx += 1
            record(self, f"stages[{stage}]", x)
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="linear")(x)
        record(self, "logits", x)
        return x


class ShuffleV2Down(nn.Module):
    out_ch: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        c, mid = x.shape[-1], self.out_ch // 2
        left = batch_norm(train, "bn1")(conv(c, 3, 2, groups=c, name="conv1")(x))
        left = nn.relu(batch_norm(train, "bn2")(conv(mid, 1, name="conv2")(left)))
        right = nn.relu(batch_norm(train, "bn3")(conv(mid, 1, name="conv3")(x)))
        right = batch_norm(train, "bn4")(conv(mid, 3, 2, groups=mid, name="conv4")(right))
        right = nn.relu(batch_norm(train, "bn5")(conv(mid, 1, name="conv5")(right)))
        return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleV2Basic(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1] // 2
        x1, x2 = x[..., :c], x[..., c:]
        y = nn.relu(batch_norm(train, "bn1")(conv(c, 1, name="conv1")(x2)))
        y = batch_norm(train, "bn2")(conv(c, 3, groups=c, name="conv2")(y))
        y = nn.relu(batch_norm(train, "bn3")(conv(c, 1, name="conv3")(y)))
        return channel_shuffle(jnp.concatenate([x1, y], axis=-1), 2)


class ShuffleNetV2(nn.Module):
    out_channels: tuple = (116, 232, 464, 1024)
    num_blocks: tuple = (3, 7, 3)
    num_classes: int = 100

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(batch_norm(train, "bn1")(conv(24, 1, name="conv1")(x)))
        record(self, "stem", x)
        idx = 0
        for stage, (width, n) in enumerate(zip(self.out_channels[:3], self.num_blocks)):
            for i in range(n + 1):
                unit = ShuffleV2Down(width, name=f"layer{stage + 1}_0") if i == 0 else \
                    ShuffleV2Basic(name=f"layer{stage + 1}_{i}")
                x = unit(x, train)
                record(self, f"blocks[{idx}]", x)
                idx += 1
            record(self, f"stages[{stage}]", x)
        x = nn.relu(batch_norm(train, "bn2")(conv(self.out_channels[3], 1, name="conv2")(x)))
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="linear")(x)
        record(self, "logits", x)
        return x


@register_model("ShuffleV1")
def shuffle_v1(num_classes: int = 100, **kwargs):
    """RepDistiller ShuffleV1 (groups 3) for 32x32 inputs."""
    return ShuffleNetV1(num_classes=num_classes, **kwargs)


@register_model("ShuffleV2")
def shuffle_v2(num_classes: int = 100, **kwargs):
    """RepDistiller ShuffleV2 (net size 1) for 32x32 inputs."""
    return ShuffleNetV2(num_classes=num_classes, **kwargs)
