"""MobileNetV2: torchvision's ImageNet network (`MobileNetV2`) and RepDistiller's CIFAR one (`MobileNetV2_cifar`).

Both: inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 project; identity shortcut when stride 1 and
widths match), a 1x1 conv to 1280 channels, global average pool, linear classifier.
  * `MobileNetV2` follows torchvision (ReLU6, stem stride 2, strides 1,2,2,2,1,2,1, channel rounding to
    multiples of 8, no expand conv when t=1, Dropout(0.2) before the classifier) and keeps torchvision's
    state-dict names (`features_3/conv_1_0`, `classifier_1`) so its weights import mechanically.
  * `MobileNetV2_cifar` is RepDistiller's `mobile_half` (T=6, width 0.5, ReLU, always an expand conv,
    strides 1,1,2,2,1,2,1 after a stride-2 stem, no dropout); names `conv1_0`, `blocks_2_1/conv_3`, ...
    Its AvgPool2d(2) on the 2x2 map of a 32x32 input is the global pool used here.

Recorded features (NHWC):
  stem           stem ConvBN output
  blocks[i]      output of inverted residual i, flat (17 of them)
  stages[0..6]   output of each (t, c, n, s) group
  avg_pool       [N, 1280] pre-logits (before dropout)
  logits         [N, num_classes]
"""

import flax.linen as nn

from kdjax.models.features import record
from kdjax.models.layers import batch_norm, conv, global_avg_pool, relu6
from kdjax.models.pplcnet import make_divisible
from kdjax.models.registry import register_model

SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1))  # (expand t, channels c, repeats n, stride s) of torchvision


class TorchvisionInvertedResidual(nn.Module):
    out_ch: int
    stride: int
    expand: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_ch = x.shape[-1]
        hidden = int(round(in_ch * self.expand))
        y, i = x, 0
        if self.expand != 1:
            y = relu6(batch_norm(train, "conv_0_1")(conv(hidden, 1, name="conv_0_0")(y)))
            i = 1
        y = conv(hidden, 3, self.stride, groups=hidden, name=f"conv_{i}_0")(y)
        y = relu6(batch_norm(train, f"conv_{i}_1")(y))
        y = conv(self.out_ch, 1, name=f"conv_{i + 1}")(y)
        y = batch_norm(train, f"conv_{i + 2}")(y)
        return x + y if self.stride == 1 and in_ch == self.out_ch else y


class MobileNetV2(nn.Module):
    num_classes: int = 1000
    width_mult: float = 1.0
    dropout: float = 0.2

    @nn.compact
    def __call__(self, x, train: bool = False):
        ch = make_divisible(32 * self.width_mult)
        x = relu6(batch_norm(train, "features_0_1")(conv(ch, 3, 2, name="features_0_0")(x)))
        record(self, "stem", x)
        idx = 0
        for stage, (t, c, n, s) in enumerate(SETTING):
            out_ch = make_divisible(c * self.width_mult)
            for i in range(n):
                x = TorchvisionInvertedResidual(out_ch, s if i == 0 else 1, t, name=f"features_{idx + 1}")(x, train)
                record(self, f"blocks[{idx}]", x)
                idx += 1
            record(self, f"stages[{stage}]", x)
        last = make_divisible(1280 * max(1.0, self.width_mult))
        x = conv(last, 1, name=f"features_{idx + 1}_0")(x)
        x = relu6(batch_norm(train, f"features_{idx + 1}_1")(x))
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, name="classifier_1")(x)
        record(self, "logits", x)
        return x


class CifarInvertedResidual(nn.Module):
    out_ch: int
    stride: int
    expand: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_ch = x.shape[-1]
        hidden = in_ch * self.expand
        y = nn.relu(batch_norm(train, "conv_1")(conv(hidden, 1, name="conv_0")(x)))
        y = nn.relu(batch_norm(train, "conv_4")(conv(hidden, 3, self.stride, groups=hidden, name="conv_3")(y)))
        y = batch_norm(train, "conv_7")(conv(self.out_ch, 1, name="conv_6")(y))
        return x + y if self.stride == 1 and in_ch == self.out_ch else y


class MobileNetV2Cifar(nn.Module):
    num_classes: int = 100
    expand: int = 6
    width_mult: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = self.width_mult
        x = nn.relu(batch_norm(train, "conv1_1")(conv(int(32 * w), 3, 2, name="conv1_0")(x)))
        record(self, "stem", x)
        idx = 0
        for stage, (t, c, n, s) in enumerate(SETTING):
            t = 1 if stage == 0 else self.expand
            s = 1 if stage == 1 else s  # RepDistiller keeps 32x32 inputs at stride 1 in the 24-channel group
            for i in range(n):
                x = CifarInvertedResidual(int(c * w), s if i == 0 else 1, t, name=f"blocks_{stage}_{i}")(x, train)
                record(self, f"blocks[{idx}]", x)
                idx += 1
            record(self, f"stages[{stage}]", x)
        last = int(1280 * w) if w > 1.0 else 1280
        x = nn.relu(batch_norm(train, "conv2_1")(conv(last, 1, name="conv2_0")(x)))
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="classifier_0")(x)
        record(self, "logits", x)
        return x


@register_model("MobileNetV2")
def mobilenet_v2(num_classes: int = 1000, **kwargs):
    """torchvision mobilenet_v2 (3,504,872 parameters at 1000 classes)."""
    return MobileNetV2(num_classes=num_classes, **kwargs)


@register_model("MobileNetV2_cifar")
def mobilenet_v2_cifar(num_classes: int = 100, **kwargs):
    """RepDistiller `mobile_half`: MobileNetV2 T=6, width 0.5, for 32x32 inputs."""
    return MobileNetV2Cifar(num_classes=num_classes, **kwargs)
