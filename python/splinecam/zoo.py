"""Small models built in code, shared by the tests, benchmarks and examples."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["mlp", "small_cnn", "small_resnet", "SmallResNet", "BasicBlock"]


def mlp(widths: Sequence[int], seed: int = 0, act=nn.ReLU) -> nn.Sequential:
    """``torch.manual_seed(seed)``, then ``nn.Linear`` layers created in order (default
    initialisation) with ``act()`` between them; returned in eval mode. With
    ``widths = (2, 16, 16, 16, 1)`` and seed 0 this is the network whose 178 regions on
    [-1, 1]^2 several independent tools agree on."""
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1]).eval()


def small_cnn(input_shape=(3, 32, 32), channels=(6, 16), dense=(120, 84), classes: int = 10,
              seed: int = 0) -> nn.Sequential:
    """The original SplineCam's random CNN layout: 3x3 'same' convolutions with ReLU and
    2x2 average pooling, then dense layers; eval mode."""
    torch.manual_seed(seed)
    c, h, w = input_shape
    layers = []
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
        c, h, w = out, h // 2, w // 2
    layers.append(nn.Flatten())
    d = c * h * w
    for width in dense:
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers).eval()


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.out = nn.ReLU()

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.out(h + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-18 layout at reduced width and depth for 3x32x32 inputs: stem conv +
    MaxPool, one basic block per stage, global average pooling, linear classifier."""

    def __init__(self, widths=(8, 16, 32), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(2))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(c, w, stride=1 if i == 0 else 2))
            c = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        h = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(h), 1))


def small_resnet(widths=(8, 16, 32), classes: int = 10, seed: int = 0) -> SmallResNet:
    """:class:`SmallResNet` with seeded random weights and non-trivial BatchNorm
    statistics, in eval mode."""
    torch.manual_seed(seed)
    m = SmallResNet(widths, classes)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m.eval()
