"""PyTorch twins of kdjax's PaddleClas ImageNet ResNet18/34 (`kdjax/models/resnet.py`, version "vb"), for
benchmarks/torch_reference.py --model=imagenet.

Same network as kdjax's ResNet18/ResNet34: 7x7/2 conv stem + BN + ReLU, 3x3/2 max-pool, BasicBlocks
(3x3 conv-BN-ReLU, 3x3 conv-BN, shortcut, ReLU), a 1x1 conv + BN projection on the first block of EVERY stage
(PaddleClas' use_first_short_conv, also the 64 -> 64 one torchvision leaves out), global average pool, fc.
Convolutions without bias, as in kdjax. Parameter counts equal kdjax's (checked by benchmarks/accelerator.py
--smoke when torch is installed).
"""

import torch.nn as nn
import torch.nn.functional as F

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, projection):
        super().__init__()
        self.conv0 = ConvBN(cin, cout, 3, stride)
        self.conv1 = ConvBN(cout, cout, 3)
        self.short = ConvBN(cin, cout, 1, stride) if projection else None

    def forward(self, x):
        y = self.conv1(F.relu(self.conv0(x)))
        return F.relu(y + (self.short(x) if self.short is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBN(3, 64, 7, 2)
        blocks, cin = [], 64
        for stage, (width, n) in enumerate(zip(WIDTHS, DEPTHS[depth])):
            for i in range(n):
                blocks.append(BasicBlock(cin, width, 2 if (i == 0 and stage > 0) else 1, projection=i == 0))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def resnet18(num_classes=1000):
    return ResNet(18, num_classes)


def resnet34(num_classes=1000):
    return ResNet(34, num_classes)
