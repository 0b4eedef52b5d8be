"""PP-LCNet (PaddleClas `legendary_models/pp_lcnet.py` semantics), x0_25 ... x2_5.

Facts that matter for exact import: Paddle's hardswish and Hardsigmoid (slope 0.1666667), SE only in
blocks6 (1x1 convs with bias, ReLU, hardsigmoid, multiplied into the input), head = global pool ->
1x1 conv to 1280 (no bias) -> hardswish -> Dropout(0.2, "downscale_in_infer") -> fc. That dropout mode
keeps training activations unscaled and MULTIPLIES by (1 - p) at inference.

Submodules follow Paddle's state-dict names (`conv1`, `blocks5_3/dw_conv`, `blocks6_0/se/conv1`,
`last_conv`, `fc`).

Recorded features (NHWC):
  stem               output of conv1 (3x3/2 ConvBN + hardswish)
  blocks2..blocks6   output of each stage (PaddleClas return_patterns / stages_pattern)
  avg_pool           the fc input, [N, 1280] (after pool, last_conv, hardswish and dropout)
  logits             [N, num_classes]
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models.features import record
from kdjax.models.layers import ConvBN, conv, hardswish, paddle_hardsigmoid
from kdjax.models.registry import register_model

# stage -> [(kernel, in_ch, out_ch, stride, use_se)] at scale 1.0
NET_CONFIG = {
    "blocks2": [(3, 16, 32, 1, False)],
    "blocks3": [(3, 32, 64, 2, False), (3, 64, 64, 1, False)],
    "blocks4": [(3, 64, 128, 2, False), (3, 128, 128, 1, False)],
    "blocks5": [(3, 128, 256, 2, False)] + [(5, 256, 256, 1, False)] * 5,
    "blocks6": [(5, 256, 512, 2, True), (5, 512, 512, 1, True)],
}


def make_divisible(v, divisor=8, min_value=None):
    """Channel rounding exactly as PaddleClas does it (parameter counts depend on it)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class SEModule(nn.Module):
    channels: int
    reduction: int = 4

    @nn.compact
    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.relu(conv(self.channels // self.reduction, 1, use_bias=True, name="conv1")(s))
        s = paddle_hardsigmoid(conv(self.channels, 1, use_bias=True, name="conv2")(s))
        return x * s


class DepthwiseSeparable(nn.Module):
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    use_se: bool

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBN(self.in_ch, self.kernel, self.stride, groups=self.in_ch, act="hardswish",
                   name="dw_conv")(x, train)
        if self.use_se:
            x = SEModule(self.in_ch, name="se")(x)
        return ConvBN(self.out_ch, 1, act="hardswish", name="pw_conv")(x, train)


class PPLCNet(nn.Module):
    scale: float = 1.0
    num_classes: int = 1000
    dropout_prob: float = 0.2
    class_expand: int = 1280

    @nn.compact
    def __call__(self, x, train: bool = False):
        s = self.scale
        x = ConvBN(make_divisible(16 * s), 3, 2, act="hardswish", name="conv1")(x, train)
        record(self, "stem", x)
        for stage, cfg in NET_CONFIG.items():
            for i, (k, cin, cout, stride, se) in enumerate(cfg):
                x = DepthwiseSeparable(make_divisible(cin * s), make_divisible(cout * s), k, stride, se,
                                       name=f"{stage}_{i}")(x, train)
            record(self, stage, x)

        x = jnp.mean(x, axis=(1, 2), keepdims=True)
        x = hardswish(conv(self.class_expand, 1, name="last_conv")(x))
        x = self._downscale_in_infer_dropout(x, train)
        x = x.reshape(x.shape[0], -1)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x

    def _downscale_in_infer_dropout(self, x, train):
        """Paddle Dropout(mode="downscale_in_infer"): mask without rescale in training, x*(1-p) in eval."""
        p = self.dropout_prob
        if p <= 0.0:
            return x
        if not train:
            return x * (1.0 - p)
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - p, x.shape)
        return jnp.where(keep, x, 0.0)


_SCALES = {"x0_25": 0.25, "x0_35": 0.35, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0, "x1_5": 1.5,
           "x2_0": 2.0, "x2_5": 2.5}


def _register(suffix: str, scale: float):
    def build(num_classes: int = 1000, **kwargs):
        return PPLCNet(scale=scale, num_classes=num_classes, **kwargs)

    build.__doc__ = f"PPLCNet_{suffix}: PP-LCNet at width scale {scale}."
    register_model(f"PPLCNet_{suffix}")(build)


for _suffix, _scale in _SCALES.items():
    _register(_suffix, _scale)
