"""Small models built in code, shared by the tests, benchmarks and examples."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["mlp", "small_cnn"]


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
