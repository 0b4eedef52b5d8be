"""VGG with BatchNorm of the RepDistiller/mdistiller CIFAR zoo (`vgg8` = vgg8_bn, `vgg13` = vgg13_bn, ...).

Five conv blocks (3x3 conv with bias, BN, ReLU; the block's last ReLU is applied outside it), 2x2 max-pools
after blocks 0-2 and after block 3 only for 64x64 inputs (as the original), global average pool, one
linear classifier. Submodules carry the PyTorch Sequential indices (`block1_0` conv, `block1_1` BN,
`block1_3` next conv, ...). Default `num_classes=100`.

Recorded features (NHWC):
  stem           block0 output after ReLU (RepDistiller f0)
  stages[0..3]   block1..block4 outputs after ReLU (f1..f4)
  avg_pool       [N, 512] pre-logits (f5)
  logits         [N, num_classes]
"""

import flax.linen as nn

from kdjax.models.features import record
from kdjax.models.layers import batch_norm, conv, global_avg_pool, max_pool
from kdjax.models.registry import register_model

CFG = {
    "S": ((64,), (128,), (256,), (512,), (512,)),
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(nn.Module):
    cfg: str = "S"
    num_classes: int = 100

    @nn.compact
    def __call__(self, x, train: bool = False):
        height = x.shape[1]
        for b, widths in enumerate(CFG[self.cfg]):
            if b in (1, 2, 3) or (b == 4 and height == 64):
                x = max_pool(x, 2, 2)
            for j, width in enumerate(widths):
                if j > 0:
                    x = nn.relu(x)
                x = conv(width, 3, use_bias=True, name=f"block{b}_{3 * j}")(x)
                x = batch_norm(train, f"block{b}_{3 * j + 1}")(x)
            x = nn.relu(x)
            record(self, "stem" if b == 0 else f"stages[{b - 1}]", x)
        x = global_avg_pool(x)
        record(self, "avg_pool", x)
        x = nn.Dense(self.num_classes, name="classifier")(x)
        record(self, "logits", x)
        return x


def _register(name: str, cfg: str):
    def build(num_classes: int = 100, **kwargs):
        return VGG(cfg=cfg, num_classes=num_classes, **kwargs)

    build.__doc__ = f"{name}: CIFAR VGG (config {cfg}) with BatchNorm."
    register_model(name)(build)


for _name, _cfg in (("vgg8", "S"), ("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"), ("vgg19", "E")):
    _register(_name, _cfg)
