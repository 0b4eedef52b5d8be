"""CIFAR ResNets of the RepDistiller/mdistiller zoo: resnet8 ... resnet110, resnet8x4, resnet32x4.

3x3 stem (no pooling), three stages of BasicBlocks (n = (depth - 2) / 6 each, strides 1, 2, 2), 1x1
conv+BN projection where the shape changes, global average pool (AvgPool2d(8) on 32x32 inputs), fc.
Submodules carry the PyTorch attribute names (`conv1`, `layer2_0/downsample_0`, `fc`), so RepDistiller
state dicts map mechanically in `kdjax.weights.pretrained`. Default `num_classes=100` (CIFAR-100).

Recorded features (NHWC):
  stem           conv1-bn1-relu output (RepDistiller f0)
  blocks[i]      output of residual block i, flat over the three stages
  stages[0..2]   output of layer1..layer3 (RepDistiller f1..f3)
  stages_preact[0..2]  the same before the last block's final ReLU (bn2 + shortcut; mdistiller preact_feats[1:])
  avg_pool       [N, C] pre-logits (f4)
  logits         [N, num_classes]
"""

from typing import Sequence

import flax.linen as nn

from kdjax.models.features import record
from kdjax.models.layers import batch_norm, conv, global_avg_pool
from kdjax.models.registry import register_model


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    projection: bool = False
    preact: bool = False  # True: return (output, output before the final ReLU)

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.relu(batch_norm(train, "bn1")(conv(self.features, 3, self.stride, name="conv1")(x)))
        y = batch_norm(train, "bn2")(conv(self.features, 3, name="conv2")(y))
        if self.projection:
            x = batch_norm(train, "downsample_1")(conv(self.features, 1, self.stride, name="downsample_0")(x))
        return (nn.relu(y + x), y + x) if self.preact else nn.relu(y + x)


class CifarResNet(nn.Module):
    depth: int = 32
    num_filters: Sequence[int] = (16, 16, 32, 64)
    num_classes: int = 100

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {self.depth}")
        n = (self.depth - 2) // 6
        x = nn.relu(batch_norm(train, "bn1")(conv(self.num_filters[0], 3, name="conv1")(x)))
        record(self, "stem", x)
        in_ch, idx = self.num_filters[0], 0
        for stage, width in enumerate(self.num_filters[1:]):
            for i in range(n):
                stride = 2 if i == 0 and stage > 0 else 1
                projection = i == 0 and (stride != 1 or in_ch != width)
                last = i == n - 1
                x = BasicBlock(width, stride, projection, last, name=f"layer{stage + 1}_{i}")(x, train)
                if last:
                    x, pre = x
                    record(self, f"stages_preact[{stage}]", pre)
                record(self, f"blocks[{idx}]", x)
                in_ch, idx = width, idx + 1
            record(self, f"stages[{stage}]", x)
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x


def _register(name: str, depth: int, num_filters):
    def build(num_classes: int = 100, **kwargs):
        return CifarResNet(depth=depth, num_filters=tuple(num_filters), num_classes=num_classes, **kwargs)

    build.__doc__ = f"{name}: CIFAR ResNet-{depth}, widths {tuple(num_filters)}."
    register_model(name)(build)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))
