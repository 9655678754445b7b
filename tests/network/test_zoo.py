"""splinecam.zoo's torchvision re-implementations (ResNet-18/34, VGG-11/16 +/- BatchNorm)
against independent evidence.

The expected parameter counts, state-dict keys and hidden layers are derived here from the
architectures' published definitions (stage depths and VGG configurations written out
again below), not from the zoo's code, and checked against torchvision's published
parameter counts. Counting, key and shape checks build the models on the meta device (no
memory, no init cost); only ResNet-18 and VGG-11 are built for real, to run them and to
trace them with :class:`splinecam.network.Network` (no partition: too big to be fast).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from splinecam import zoo

NAMES = ["resnet18", "resnet34", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"]

# ResNet basic-block stage depths and VGG configurations (Simonyan & Zisserman's A and D).
DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
CFG = {"vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
       "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}
CFG["vgg11_bn"], CFG["vgg16_bn"] = CFG["vgg11"], CFG["vgg16"]

# torchvision's documented parameter counts (1000 classes).
TORCHVISION_COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "vgg11": 132_863_336,
                      "vgg11_bn": 132_868_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992}


def meta(name, num_classes=1000):
    with torch.device("meta"):
        return getattr(zoo, name)(num_classes=num_classes)


def bn_params(c):
    return 2 * c


def resnet_count(depths, classes):
    n = 3 * 64 * 7 * 7 + bn_params(64)
    c = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), depths)):
        for b in range(blocks):
            n += c * planes * 9 + bn_params(planes) + planes * planes * 9 + bn_params(planes)
            if b == 0 and (i > 0 or c != planes):
                n += c * planes + bn_params(planes)
            c = planes
    return n + 512 * classes + classes


def vgg_count(cfg, bn, classes):
    n, c = 0, 3
    for v in cfg:
        if v != "M":
            n += c * v * 9 + v + (bn_params(v) if bn else 0)
            c = v
    return n + (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * classes + classes)


def expected_count(name, classes):
    if name in DEPTHS:
        return resnet_count(DEPTHS[name], classes)
    return vgg_count(CFG[name], name.endswith("_bn"), classes)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name):
    assert expected_count(name, 1000) == TORCHVISION_COUNTS[name]
    for classes in (1000, 10):
        m = meta(name, classes)
        assert sum(p.numel() for p in m.parameters()) == expected_count(name, classes)
    assert name in zoo.__all__


def bn_keys(prefix):
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def resnet_keys(depths):
    keys = ["conv1.weight"] + bn_keys("bn1")
    for i, blocks in enumerate(depths):
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            keys += [f"{p}.conv1.weight"] + bn_keys(f"{p}.bn1") + [f"{p}.conv2.weight"] + bn_keys(f"{p}.bn2")
            if b == 0 and i > 0:  # stages 2-4 halve the resolution and double the width
                keys += [f"{p}.downsample.0.weight"] + bn_keys(f"{p}.downsample.1")
    return keys + ["fc.weight", "fc.bias"]


def vgg_keys(cfg, bn):
    keys, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
            continue
        keys += [f"features.{i}.weight", f"features.{i}.bias"] + (bn_keys(f"features.{i + 1}") if bn else [])
        i += 3 if bn else 2
    return keys + [f"classifier.{j}.{k}" for j in (0, 3, 6) for k in ("weight", "bias")]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys(name):
    m = meta(name)
    expected = resnet_keys(DEPTHS[name]) if name in DEPTHS else vgg_keys(CFG[name], name.endswith("_bn"))
    assert list(m.state_dict()) == expected


def test_resnet18_structure_and_strict_load():
    m = meta("resnet18")
    assert isinstance(m.avgpool, nn.AdaptiveAvgPool2d) and m.avgpool.output_size == (1, 1)
    assert isinstance(m.maxpool, nn.MaxPool2d) and (m.maxpool.kernel_size, m.maxpool.stride, m.maxpool.padding) == (3, 2, 1)
    assert m.layer1[0].downsample is None and "downsample" not in dict(m.layer1[0].named_children())
    ds = m.layer2[0].downsample
    assert isinstance(ds, nn.Sequential) and [type(x) for x in ds] == [nn.Conv2d, nn.BatchNorm2d]
    assert ds[0].kernel_size == (1, 1) and ds[0].stride == (2, 2) and ds[0].bias is None
    assert [c for c, _ in m.layer1[0].named_children()] == ["conv1", "bn1", "relu", "conv2", "bn2"]
    # A state dict from another seed loads strictly (the same names and shapes).
    a, b = zoo.resnet18(seed=0), zoo.resnet18(seed=1)
    a.load_state_dict(b.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_vgg_structure():
    m = meta("vgg11_bn")
    assert m.avgpool.output_size == (7, 7)
    assert [type(x) for x in m.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert [type(x) for x in m.features[:4]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert len(meta("vgg16").features) == 31 and len(meta("vgg16_bn").features) == 44


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_and_output_shapes(name):
    m = meta(name, 10)
    assert not any(mod.training for mod in m.modules())
    for hw in (32, 64):
        assert m(torch.empty(2, 3, hw, hw, device="meta")).shape == (2, 10)


def test_batchnorm_is_not_the_identity():
    m = zoo.resnet18()
    for bn in (m.bn1, m.layer3[0].downsample[1]):
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
        assert bn.running_var.min() >= 0.5 and bn.running_var.max() <= 1.5


@pytest.fixture(scope="module")
def built():
    return {"resnet18": zoo.resnet18(), "vgg11": zoo.vgg11()}


def expected_layers(name):
    """The hidden layers (ReLU / MaxPool nodes) in topological order."""
    if name in DEPTHS:
        names = ["relu", "maxpool"]
        for i, blocks in enumerate(DEPTHS[name]):
            names += [f"layer{i + 1}.{b}.relu" for b in range(blocks) for _ in range(2)]  # one ReLU module, twice
        return names
    names, i = [], 0
    for v in CFG[name]:
        names.append(f"features.{i}" if v == "M" else f"features.{i + 1}")
        i += 1 if v == "M" else 2
    return names + ["classifier.1", "classifier.4"]


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_real_forward(built, name):
    m = built[name]
    assert not any(mod.training for mod in m.modules())
    with torch.no_grad():
        for hw in (32, 64):
            y = m(torch.randn(2, 3, hw, hw, generator=torch.Generator().manual_seed(hw)))
            assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_traced_by_network(built, name):
    from splinecam.network import Network

    m = built[name]
    net = Network.from_model(m, (3, 32, 32))
    expected = expected_layers(name)
    assert len(expected) == (18 if name == "resnet18" else 8 + 5 + 2)
    assert net.num_layers == len(expected)
    assert net.layer_names == expected
    assert net.num_outputs == 10
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ref = m.double()(x).numpy()
    m.float()
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-9, atol=1e-12)
