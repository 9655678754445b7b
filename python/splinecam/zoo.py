"""Small models built in code, shared by the tests, benchmarks and examples.

Also torchvision's ResNet-18/34 and VGG-11/16 (plain and with BatchNorm), rebuilt here
under torchvision's module names so that torchvision weights load into them."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["mlp", "small_cnn", "small_resnet", "SmallResNet", "BasicBlock",
           "resnet18", "resnet34", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "ResNet", "ResNetBasicBlock", "VGG"]


def mlp(widths: Sequence[int], seed: int = 0, act=nn.ReLU) -> nn.Sequential:
    """Build a seeded MLP: ``nn.Linear`` layers with ``act()`` between them.

    ``torch.manual_seed(seed)``, then the linear layers created in order (PyTorch's
    default initialisation). With ``widths = (2, 16, 16, 16, 1)`` and seed 0 this is the
    network whose 178 regions on [-1, 1]^2 several independent tools agree on.

    Parameters
    ----------
    widths : sequence of int
        Input width, hidden widths, output width.
    seed : int
        The seed of torch's global generator (it is reseeded).
    act : callable
        The nonlinearity's constructor (a module class such as ``nn.ReLU`` or
        ``nn.LeakyReLU``), called once per hidden layer.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, act, Linear, act, ..., Linear``, in eval mode.

    Examples
    --------
    >>> import splinecam
    >>> from splinecam import zoo
    >>> sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    >>> splinecam.partition(zoo.mlp([2, 16, 16, 16, 1]), sl, progress=False).num_regions
    178
    """
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1]).eval()


def small_cnn(input_shape=(3, 32, 32), channels=(6, 16), dense=(120, 84), classes: int = 10,
              seed: int = 0) -> nn.Sequential:
    """Build the original SplineCam's random CNN layout.

    3x3 'same' convolutions, each followed by ReLU and 2x2 average pooling, then
    ``Flatten`` and dense layers with ReLU, then the linear classifier.

    Parameters
    ----------
    input_shape : (int, int, int)
        Channels, height and width of one input.
    channels : sequence of int
        Output channels of each convolution.
    dense : sequence of int
        Widths of the hidden dense layers.
    classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    torch.nn.Sequential
        The network, in eval mode.
    """
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
    """ResNet basic block: conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU.

    Parameters
    ----------
    c_in : int
        Input channels.
    c_out : int
        Output channels; a 1x1 convolution with BatchNorm projects the input when they
        differ from ``c_in`` or when ``stride`` is not 1.
    stride : int
        Stride of the first 3x3 convolution (and of the projection).
    """

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
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, c_in, H, W)`` inputs.

        Returns
        -------
        torch.Tensor
            ``(n, c_out, H', W')``: the block's output.
        """
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.out(h + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-18 layout at reduced width and depth for 3x32x32 inputs.

    Stem conv + BatchNorm + ReLU + MaxPool, one :class:`BasicBlock` per stage (stride 2
    from the second), global average pooling, linear classifier.

    Parameters
    ----------
    widths : sequence of int
        Channels of the stem and of each stage.
    classes : int
        Number of outputs.
    """

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
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, 3, H, W)`` inputs.

        Returns
        -------
        torch.Tensor
            ``(n, classes)`` logits.
        """
        h = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(h), 1))


def small_resnet(widths=(8, 16, 32), classes: int = 10, seed: int = 0) -> SmallResNet:
    """Build a :class:`SmallResNet` with seeded random weights and non-trivial BatchNorm.

    Parameters
    ----------
    widths : sequence of int
        Channels of the stem and of each stage.
    classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    SmallResNet
        In eval mode, every BatchNorm with random affine parameters and running
        statistics (so that BatchNorm is not nearly the identity).
    """
    torch.manual_seed(seed)
    return _randomise_batchnorm(SmallResNet(widths, classes)).eval()


# -- torchvision's ResNet and VGG --------------------------------------------------------------
# Written from torchvision's architecture definitions (torchvision is not a dependency):
# module, parameter and buffer names match torchvision's, so a torchvision state dict loads
# with ``load_state_dict(strict=True)``. forward() has no data-dependent control flow, so
# torch.fx can trace it.

def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class ResNetBasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: conv-BN-ReLU-conv-BN, plus the input (through
    ``downsample`` when given), then the same ReLU module again. ``downsample`` is a plain
    ``None`` attribute when absent, as in torchvision.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels.
    stride : int
        Stride of the first 3x3 convolution.
    downsample : torch.nn.Module, optional
        What the input goes through before it is added (a strided 1x1 convolution with
        BatchNorm when the shape changes).
    """
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, inplanes, H, W)`` inputs.

        Returns
        -------
        torch.Tensor
            ``(n, planes, H', W')``: the block's output.
        """
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:  # static: fixed when the block is built
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with basic blocks: 7x7/2 stem conv, BN, ReLU, 3x3/2
    MaxPool, four stages of ``layers[i]`` blocks (64, 128, 256, 512 channels; stride 2 from
    the second stage), global average pooling, ``fc``.

    Parameters
    ----------
    layers : sequence of int
        Blocks per stage (four numbers: ``(2, 2, 2, 2)`` is ResNet-18).
    num_classes : int
        Outputs of ``fc``.
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * ResNetBasicBlock.expansion, num_classes)
        for m in self.modules():  # torchvision's init; fc keeps the default one
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * ResNetBasicBlock.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * ResNetBasicBlock.expansion, stride),
                                       nn.BatchNorm2d(planes * ResNetBasicBlock.expansion))
        layers = [ResNetBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * ResNetBasicBlock.expansion
        layers += [ResNetBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, 3, H, W)`` inputs.

        Returns
        -------
        torch.Tensor
            ``(n, num_classes)`` logits.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


_VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                          # VGG-11
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # VGG-16
}


def _vgg_features(cfg, batch_norm: bool) -> nn.Sequential:
    """torchvision's ``make_layers``: 3x3 'same' convs (with bias) each followed by
    [BatchNorm2d and] ReLU; "M" is a 2x2/2 MaxPool."""
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's ``VGG``: ``features``, AdaptiveAvgPool2d((7, 7)) (on inputs smaller
    than 224x224 this replicates the feature map: still affine), then the 4096-4096
    classifier with Dropout (the identity in eval mode).

    Parameters
    ----------
    features : torch.nn.Sequential
        The convolutional part (512 output channels).
    num_classes : int
        Outputs of the classifier.
    dropout : float
        Dropout probability of the classifier (training mode only).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, 3, H, W)`` inputs.

        Returns
        -------
        torch.Tensor
            ``(n, num_classes)`` logits.
        """
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _randomise_batchnorm(m: nn.Module) -> nn.Module:
    """Give every BatchNorm2d random affine parameters and running statistics (the
    torchvision layouts and :func:`small_resnet`). A departure from torchvision's init (weight 1, bias 0,
    running stats 0 / 1), which makes BatchNorm nearly the identity and so leaves it
    untested; the architecture and names are unchanged."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m


def _resnet(layers, num_classes: int, seed: int) -> ResNet:
    torch.manual_seed(seed)
    return _randomise_batchnorm(ResNet(layers, num_classes)).eval()


def _vgg(cfg: str, batch_norm: bool, num_classes: int, seed: int) -> VGG:
    torch.manual_seed(seed)
    return _randomise_batchnorm(VGG(_vgg_features(_VGG_CFGS[cfg], batch_norm), num_classes)).eval()


def resnet18(num_classes: int = 10, seed: int = 0) -> ResNet:
    """Build torchvision's ResNet-18 (2, 2, 2, 2 basic blocks) with seeded random weights.

    torchvision's initialisation, then random BatchNorm parameters and statistics (a
    departure from torchvision's weight 1, bias 0, statistics 0 / 1, which would make
    BatchNorm nearly the identity); module names as torchvision's, so its weights load.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    ResNet
        In eval mode, every BatchNorm with random affine parameters and running statistics.
    """
    return _resnet((2, 2, 2, 2), num_classes, seed)


def resnet34(num_classes: int = 10, seed: int = 0) -> ResNet:
    """Build torchvision's ResNet-34 (3, 4, 6, 3 basic blocks); as :func:`resnet18`.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    ResNet
        In eval mode, every BatchNorm with random affine parameters and running statistics.
    """
    return _resnet((3, 4, 6, 3), num_classes, seed)


def vgg11(num_classes: int = 10, seed: int = 0) -> VGG:
    """Build torchvision's VGG-11 (configuration "A") with seeded random weights.

    torchvision's initialisation; module names as torchvision's, so its weights load.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    VGG
        In eval mode.
    """
    return _vgg("A", False, num_classes, seed)


def vgg11_bn(num_classes: int = 10, seed: int = 0) -> VGG:
    """Build VGG-11 with BatchNorm after every conv; BatchNorm randomised as in :func:`resnet18`.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    VGG
        In eval mode, every BatchNorm with random affine parameters and running statistics.
    """
    return _vgg("A", True, num_classes, seed)


def vgg16(num_classes: int = 10, seed: int = 0) -> VGG:
    """Build torchvision's VGG-16 (configuration "D"); as :func:`vgg11`.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    VGG
        In eval mode.
    """
    return _vgg("D", False, num_classes, seed)


def vgg16_bn(num_classes: int = 10, seed: int = 0) -> VGG:
    """Build VGG-16 with BatchNorm after every conv; as :func:`vgg11_bn`.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    seed : int
        The seed of torch's global generator (it is reseeded).

    Returns
    -------
    VGG
        In eval mode, every BatchNorm with random affine parameters and running statistics.
    """
    return _vgg("D", True, num_classes, seed)
