"""MobileNetV3 large / small (Howard et al., ICCV 2019) with PaddleClas' `legendary_models/mobilenet_v3.py` semantics,
x0_35 ... x1_25 (PaddleClas commit d178931fca432204e6b7422bac4f92e09ff22fa4, 2024-10-18, the commit of the golden
PaddleClas checkpoints in ../shared/weights).

Facts that matter for exact import of `.pdparams`:
  * stem: 3x3/2 ConvBN + hardswish to make_divisible(16·scale); then one ResidualUnit per NET_CONFIG row:
    1x1 expand ConvBN + act, kxk depthwise ConvBN (stride s) + act, SE (if set), 1x1 linear ConvBN; identity
    shortcut when stride 1 and in == out channels (also the first large block, 16 -> 16);
  * SE: global pool, 1x1 conv (bias) to channels // 4 (no rounding), ReLU, 1x1 conv (bias), then Paddle's
    hardsigmoid with slope 0.2 and offset 0.5 (PaddleClas' own Hardsigmoid class; not PP-LCNet's 1/6), multiplied in;
  * head: 1x1 ConvBN + hardswish to make_divisible(scale·960 | 576), global pool, 1x1 conv to 1280 without bias,
    hardswish, Dropout(0.2, mode="downscale_in_infer") — training keeps activations unscaled, inference multiplies
    by 0.8 — then fc (Paddle [in, out] weights);
  * every BatchNorm: eps 1e-5, momentum 0.9; all activations inside blocks are ReLU or hardswish per row.

Submodules carry Paddle's state-dict names (`conv/conv`, `blocks_3/mid_se/conv1`, `last_second_conv/bn`,
`last_conv`, `fc`), so `kdjax.weights.pretrained` maps `blocks.3.mid_se.conv1.weight` by its generic rule.

Recorded features (NHWC):
  stem        output of the stem ConvBN (PaddleClas `conv`)
  blocks[i]   output of ResidualUnit i (PaddleClas return_patterns `blocks[i]`)
  stages[j]   the blocks of PaddleClas' MODEL_STAGES_PATTERN (large: blocks[0, 2, 5, 11, 14]; small:
              blocks[0, 2, 7, 10]); PaddleClas gives large_x0_35 the small pattern by mistake, kdjax the large one
  avg_pool    [N, 1280] the fc input (after pool, last_conv, hardswish and dropout), the zoo's convention
  logits      [N, num_classes]
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models.features import record
from kdjax.models.layers import ConvBN, conv, hardswish
from kdjax.models.pplcnet import make_divisible
from kdjax.models.registry import register_model

# k, exp, c, se, act, s (PaddleClas NET_CONFIG)
NET_CONFIG = {
    "large": [
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
        (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
        (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
        (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
        (5, 960, 160, True, "hardswish", 1),
    ],
    "small": [
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1), (5, 240, 40, True, "hardswish", 1),
        (5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
        (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1),
    ],
}
CLASS_SQUEEZE = {"large": 960, "small": 576}
STAGES = {"large": (0, 2, 5, 11, 14), "small": (0, 2, 7, 10)}
STEM_CHANNELS = 16
CLASS_EXPAND = 1280


def se_hardsigmoid(x):
    """paddle.nn.functional.hardsigmoid(x, slope=0.2, offset=0.5), as PaddleClas' MobileNetV3 SE calls it."""
    return jnp.clip(0.2 * x + 0.5, 0.0, 1.0)


class SEModule(nn.Module):
    channels: int
    reduction: int = 4

    @nn.compact
    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.relu(conv(self.channels // self.reduction, 1, use_bias=True, name="conv1")(s))
        s = se_hardsigmoid(conv(self.channels, 1, use_bias=True, name="conv2")(s))
        return x * s


class ResidualUnit(nn.Module):
    mid: int
    out: int
    kernel: int
    stride: int
    use_se: bool
    act: str

    @nn.compact
    def __call__(self, x, train: bool = False):
        shortcut = self.stride == 1 and x.shape[-1] == self.out
        y = ConvBN(self.mid, 1, act=self.act, name="expand_conv")(x, train)
        y = ConvBN(self.mid, self.kernel, self.stride, groups=self.mid, act=self.act, name="bottleneck_conv")(y, train)
        if self.use_se:
            y = SEModule(self.mid, name="mid_se")(y)
        y = ConvBN(self.out, 1, name="linear_conv")(y, train)
        return x + y if shortcut else y


def downscale_in_infer_dropout(module: nn.Module, x, p: float, train: bool):
    """Paddle Dropout(mode="downscale_in_infer"): zero with probability p in training (no rescale), x·(1-p) in eval."""
    if not p:
        return x
    if not train:
        return x * (1.0 - p)
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - p, x.shape)
    return jnp.where(keep, x, 0.0)


class MobileNetV3(nn.Module):
    config: str = "large"
    scale: float = 1.0
    num_classes: int = 1000
    dropout_prob: float = 0.2
    class_expand: int = CLASS_EXPAND

    @nn.compact
    def __call__(self, x, train: bool = False):
        s, cfg = self.scale, NET_CONFIG[self.config]
        x = ConvBN(make_divisible(STEM_CHANNELS * s), 3, 2, act="hardswish", name="conv")(x, train)
        record(self, "stem", x)
        stages = STAGES[self.config]
        for i, (k, exp, c, se, act, stride) in enumerate(cfg):
            x = ResidualUnit(make_divisible(s * exp), make_divisible(s * c), k, stride, se, act,
                             name=f"blocks_{i}")(x, train)
            record(self, f"blocks[{i}]", x)
            if i in stages:
                record(self, f"stages[{stages.index(i)}]", x)
        x = ConvBN(make_divisible(s * CLASS_SQUEEZE[self.config]), 1, act="hardswish", name="last_second_conv")(x, train)
        x = jnp.mean(x, axis=(1, 2), keepdims=True)
        x = hardswish(conv(self.class_expand, 1, name="last_conv")(x))
        x = downscale_in_infer_dropout(self, x, self.dropout_prob or 0.0, train)
        x = x.reshape(x.shape[0], -1)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x


SCALES = {"x0_35": 0.35, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0, "x1_25": 1.25}


def _register(config: str, suffix: str, scale: float):
    def build(num_classes: int = 1000, **kwargs):
        return MobileNetV3(config=config, scale=scale, num_classes=num_classes, **kwargs)

    build.__doc__ = f"PaddleClas MobileNetV3_{config}_{suffix}: MobileNetV3-{config.capitalize()} at width scale {scale}."
    register_model(f"MobileNetV3_{config}_{suffix}")(build)


for _config in NET_CONFIG:
    for _suffix, _scale in SCALES.items():
        _register(_config, _suffix, _scale)
