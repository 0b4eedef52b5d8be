"""ImageNet ResNets with PaddleClas `legendary_models/resnet.py` semantics, plus torchvision's ResNets.

PaddleClas "vb" ResNets (ResNet18/34/50/101/152) differ from torchvision's in one place: every stage's first
block has a 1x1 ConvBN projection shortcut, also the 64->64 first block of ResNet18/34
(`use_first_short_conv=True`). The "_vd" variants use a 3-conv stem (32, 32, 64) and shortcuts of
2x2 average pool (exclusive, ceil mode) + stride-1 1x1 conv, except in the very first block.
torchvision's resnet18..152 are the same network with `use_first_short_conv=False`, registered as
`tv_resnet18` ... `tv_resnet152` so their parameter counts are torchvision's.

Submodules follow Paddle's state-dict names (`stem_0`, `blocks_3/short/conv`, `fc`) so the import in
`kdjax.weights.pretrained` is a mechanical rename.

Recorded features (NHWC; `kdjax.models.features.collect` reads them):
  stem                 after the stem convs and the 3x3/2 max-pool (input of blocks[0])
  blocks[i]            output of residual block i, flat index over all stages (PaddleClas return_patterns;
                       ResNet18: blocks[0..7], ResNet34/50: blocks[0..15], ResNet101: blocks[0..32])
  stages[0..3]         output of each stage (= its last block); tv_resnet*: `layer1`..`layer4` instead
  avg_pool             global average pool, [N, C] (pre-logits)
  logits               [N, num_classes]
"""

from typing import Sequence

import flax.linen as nn

from kdjax.models.features import record
from kdjax.models.layers import ConvBN, global_avg_pool, max_pool
from kdjax.models.registry import register_model

# depth -> (block kind, blocks per stage)
NET_CONFIG = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 12, 48, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
PADDLE_STAGE_NAMES = ("stages[0]", "stages[1]", "stages[2]", "stages[3]")
TORCHVISION_STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    projection: bool = False
    avg_down: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = ConvBN(self.features, 3, self.stride, act="relu", name="conv0")(x, train)
        y = ConvBN(self.features, 3, name="conv1")(y, train)
        if self.projection:
            x = ConvBN(self.features, 1, self.stride, avg_down=self.avg_down, name="short")(x, train)
        return nn.relu(y + x)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (carries the stride, like torchvision's v1.5) -> 1x1 x4."""

    features: int
    stride: int = 1
    projection: bool = False
    avg_down: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = ConvBN(self.features, 1, act="relu", name="conv0")(x, train)
        y = ConvBN(self.features, 3, self.stride, act="relu", name="conv1")(y, train)
        y = ConvBN(self.features * 4, 1, name="conv2")(y, train)
        if self.projection:
            x = ConvBN(self.features * 4, 1, self.stride, avg_down=self.avg_down, name="short")(x, train)
        return nn.relu(y + x)


class ResNet(nn.Module):
    depth: int = 50
    num_classes: int = 1000
    version: str = "vb"  # "vb" (7x7 stem) or "vd" (3-conv stem, avg-pool shortcuts)
    use_first_short_conv: bool = True
    stage_names: Sequence[str] = PADDLE_STAGE_NAMES

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.depth not in NET_CONFIG:
            raise ValueError(f"ResNet depth {self.depth} unsupported; choose from {sorted(NET_CONFIG)}")
        if self.version not in ("vb", "vd"):
            raise ValueError(f"ResNet version must be 'vb' or 'vd', got {self.version!r}")
        kind, depths = NET_CONFIG[self.depth]
        block_cls = BasicBlock if kind == "basic" else BottleneckBlock
        expansion = 1 if kind == "basic" else 4

        stem = [(64, 7, 2)] if self.version == "vb" else [(32, 3, 2), (32, 3, 1), (64, 3, 1)]
        for i, (width, k, s) in enumerate(stem):
            x = ConvBN(width, k, s, act="relu", name=f"stem_{i}")(x, train)
        x = max_pool(x, 3, 2, padding=1)
        record(self, "stem", x)

        in_ch, idx = 64, 0
        for stage, (width, n) in enumerate(zip(STAGE_WIDTHS, depths)):
            for i in range(n):
                first = i == 0
                stride = 2 if first and stage > 0 else 1
                out_ch = width * expansion
                projection = first and (self.use_first_short_conv or stage > 0 or in_ch != out_ch)
                avg_down = self.version == "vd" and not (stage == 0 and first)
                x = block_cls(width, stride, projection, avg_down, name=f"blocks_{idx}")(x, train)
                record(self, f"blocks[{idx}]", x)
                in_ch, idx = out_ch, idx + 1
            record(self, self.stage_names[stage], x)

        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="fc")(x)
        record(self, "logits", x)
        return x


def _register(name: str, depth: int, version: str, torchvision: bool = False):
    extra = dict(use_first_short_conv=False, stage_names=TORCHVISION_STAGE_NAMES) if torchvision else {}

    def build(num_classes: int = 1000, **kwargs):
        return ResNet(depth=depth, version=version, num_classes=num_classes, **{**extra, **kwargs})

    build.__doc__ = f"{name}: {'torchvision' if torchvision else 'PaddleClas'} ResNet-{depth} ({version})."
    register_model(name)(build)


for _depth in (18, 34, 50, 101, 152):
    _register(f"ResNet{_depth}", _depth, "vb")
    _register(f"tv_resnet{_depth}", _depth, "vb", torchvision=True)
for _depth in (18, 34, 50, 101, 152, 200):
    _register(f"ResNet{_depth}_vd", _depth, "vd")
