"""Wide ResNets of the RepDistiller/mdistiller CIFAR zoo: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.

Pre-activation blocks (BN-ReLU-conv), n = (depth - 4) / 6 per stage, widths 16k/32k/64k, a final BN-ReLU,
global average pool, fc. Where a block changes width, its shortcut (a 1x1 conv) reads the *activated*
input, as in the original code. Submodules carry the PyTorch names (`block2/layer_0/convShortcut`).
Default `num_classes=100`.

Recorded features (NHWC):
  stem           conv1 output (RepDistiller f0)
  blocks[i]      output of pre-activation block i, flat over the three stages
  stages[0..2]   output of block1..block3 (f1..f3, before the next BN)
  stages_preact[0..2]  stages[i] through the BatchNorm that follows it (block2/layer_0/bn1, block3/layer_0/bn1, the
                 final bn1), before that ReLU: mdistiller's preact_feats[1:]
  avg_pool       [N, C] after the final BN-ReLU and pooling (f4)
  logits         [N, num_classes]
"""

import flax.linen as nn

from kdjax.models.features import record
from kdjax.models.layers import batch_norm, conv, global_avg_pool
from kdjax.models.registry import register_model


class WideBasic(nn.Module):
    features: int
    stride: int = 1
    drop_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        equal_in_out = x.shape[-1] == self.features
        pre = batch_norm(train, "bn1")(x)
        act = nn.relu(pre)
        y = conv(self.features, 3, self.stride, name="conv1")(act)
        y = nn.relu(batch_norm(train, "bn2")(y))
        if self.drop_rate > 0:
            y = nn.Dropout(self.drop_rate, deterministic=not train)(y)
        y = conv(self.features, 3, name="conv2")(y)
        short = x if equal_in_out else conv(self.features, 1, self.stride, padding=0, name="convShortcut")(act)
        return short + y, pre


class NetworkBlock(nn.Module):
    """One stage; returns every block's output so the top-level model can record them, and the output of the first
    block's bn1 (the previous stage's output normalised: that stage's pre-ReLU feature)."""

    n: int
    features: int
    stride: int
    drop_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        outs, first_pre = [], None
        for i in range(self.n):
            x, pre = WideBasic(self.features, self.stride if i == 0 else 1, self.drop_rate, name=f"layer_{i}")(x, train)
            outs.append(x)
            first_pre = pre if i == 0 else first_pre
        return outs, first_pre


class WideResNet(nn.Module):
    depth: int = 40
    widen_factor: int = 2
    num_classes: int = 100
    drop_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {self.depth}")
        n, k = (self.depth - 4) // 6, self.widen_factor
        x = conv(16, 3, name="conv1")(x)
        record(self, "stem", x)
        idx = 0
        for stage, (width, stride) in enumerate(((16 * k, 1), (32 * k, 2), (64 * k, 2))):
            outs, pre = NetworkBlock(n, width, stride, self.drop_rate, name=f"block{stage + 1}")(x, train)
            if stage > 0:
                record(self, f"stages_preact[{stage - 1}]", pre)
            for out in outs:
                record(self, f"blocks[{idx}]", out)
                x, idx = out, idx + 1
            record(self, f"stages[{stage}]", x)
        pre = batch_norm(train, "bn1")(x)
        record(self, "stages_preact[2]", pre)
        x = nn.relu(pre)
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x


def _register(depth: int, k: int):
    def build(num_classes: int = 100, **kwargs):
        return WideResNet(depth=depth, widen_factor=k, num_classes=num_classes, **kwargs)

    build.__doc__ = f"wrn_{depth}_{k}: WRN-{depth}-{k} for 32x32 inputs."
    register_model(f"wrn_{depth}_{k}")(build)


for _depth, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _k)
