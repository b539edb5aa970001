"""torchvision's ResNet, VGG and DenseNet definitions, laid out for CIFAR-size inputs.

Built from torchvision's own classes and blocks (nothing of theirs is rewritten); only the
parts that assume 224 px images change, as the CIFAR versions in the FSNet papers do:

- ResNet-18/34/50/101: the 7x7 stride-2 stem conv becomes a 3x3 stride-1 conv and the stem
  max-pool goes (11,173,962 parameters for ResNet-18 on CIFAR-10). `model.width` is the first
  stage's channels (64); narrower widths rebuild the stages with torchvision's `_make_layer`.
- VGG-16 (BN): torchvision's 13 conv layers with BatchNorm (`make_layers`), then, since a
  32 px image leaves 1 x 1 x 512 features, a linear classifier on those 512 (as the CIFAR VGGs
  do) instead of the 25,088 x 4,096 x 4,096 head.
- DenseNet-121 (k = 32) and DenseNet-100 (k = 12 or 24, 16 bottleneck layers per block): a
  3x3 stride-1 stem conv, no stem BN, ReLU or max-pool (Huang et al.'s CIFAR layout).
  DenseNet-100's transitions keep `model.compression` of the channels: 0.5 is DenseNet-BC-100
  (769,162 parameters for k = 12 on CIFAR-10), 1 the FSNet papers' DenseNet-100 (1,210,066
  for k = 12, 4,754,074 for k = 24; 1.25M and 4.83M with BatchNorm's running statistics, as
  the papers count).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models import densenet, resnet, vgg

from space.models.registry import register_model

__all__ = ["cifar_resnet", "cifar_vgg16", "cifar_densenet"]

_RESNETS = {18: (resnet.BasicBlock, [2, 2, 2, 2]), 34: (resnet.BasicBlock, [3, 4, 6, 3]),
            50: (resnet.Bottleneck, [3, 4, 6, 3]), 101: (resnet.Bottleneck, [3, 4, 23, 3])}


def _init_like_torchvision(modules) -> None:
    """torchvision's ResNet init, for the layers rebuilt here."""
    for m in modules:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def cifar_resnet(depth: int, num_classes: int, in_channels: int = 3, width: int = 64) -> resnet.ResNet:
    """torchvision's ResNet-`depth` with the CIFAR stem, first stage `width` channels."""
    if width < 1:
        raise ValueError(f"model.width={width} must be a positive channel count")
    block, layers = _RESNETS[depth]
    net = resnet.ResNet(block, layers, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    if width != 64:
        net.bn1 = nn.BatchNorm2d(width)
        net.inplanes = width
        net.layer1 = net._make_layer(block, width, layers[0])
        net.layer2 = net._make_layer(block, 2 * width, layers[1], stride=2)
        net.layer3 = net._make_layer(block, 4 * width, layers[2], stride=2)
        net.layer4 = net._make_layer(block, 8 * width, layers[3], stride=2)
        net.fc = nn.Linear(8 * width * block.expansion, num_classes)
    _init_like_torchvision([net.conv1, net.bn1, *net.layer1.modules(), *net.layer2.modules(),
                            *net.layer3.modules(), *net.layer4.modules()])
    return net


def _register_resnet(depth: int) -> None:
    def build(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
              width: int = 64) -> nn.Module:
        return cifar_resnet(depth, num_classes, in_channels, width)

    register_model(f"resnet{depth}", f"torchvision's ResNet-{depth} with the CIFAR stem "
                   "(3x3 conv, no max-pool); model.width: first stage's channels", "cifar")(build)


for _depth in _RESNETS:
    _register_resnet(_depth)


def cifar_vgg16(num_classes: int, in_channels: int = 3) -> vgg.VGG:
    """torchvision's VGG-16 with BatchNorm, a linear classifier on the 512 final features."""
    if in_channels != 3:
        raise ValueError(f"vgg16 takes 3-channel images, not {in_channels}")
    net = vgg.VGG(vgg.make_layers(vgg.cfgs["D"], batch_norm=True), num_classes=num_classes)
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(512, num_classes)
    return net


@register_model("vgg16", "torchvision's VGG-16 (BN) with a 512 -> classes linear head", "cifar")
def vgg16(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    return cifar_vgg16(num_classes, in_channels)


def cifar_densenet(growth: int, blocks: tuple[int, ...], init_features: int, num_classes: int,
                   in_channels: int = 3, compression: float = 0.5) -> densenet.DenseNet:
    """A DenseNet with bottleneck layers and the CIFAR stem, built from torchvision's
    `_DenseBlock` and `_Transition` (whose DenseNet class always halves the channels at a
    transition): `compression` is the transitions' channel factor (0.5: DenseNet-BC)."""
    if growth < 1:
        raise ValueError(f"model.growth={growth} must be a positive channel count")
    if not 0 < compression <= 1:
        raise ValueError(f"model.compression={compression} must be in (0, 1] (0.5: DenseNet-BC, "
                         "1: no compression)")
    net = densenet.DenseNet(growth, blocks, init_features, num_classes=num_classes)
    layers: list[tuple[str, nn.Module]] = [
        ("conv0", nn.Conv2d(in_channels, init_features, 3, 1, 1, bias=False))]
    c = init_features
    for i, n in enumerate(blocks):
        layers.append((f"denseblock{i + 1}", densenet._DenseBlock(n, c, 4, growth, 0.0)))
        c += n * growth
        if i < len(blocks) - 1:
            out = int(c * compression)
            layers.append((f"transition{i + 1}", densenet._Transition(c, out)))
            c = out
    layers.append(("norm5", nn.BatchNorm2d(c)))
    net.features = nn.Sequential(OrderedDict(layers))
    net.classifier = nn.Linear(c, num_classes)
    for m in net.modules():  # torchvision's DenseNet init, for the layers built here
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, 0)
    return net


@register_model("densenet121", "torchvision's DenseNet-121 (k=32) with the CIFAR stem", "cifar")
def densenet121(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
                growth: int = 32) -> nn.Module:
    return cifar_densenet(growth, (6, 12, 24, 16), 2 * growth, num_classes, in_channels)


@register_model("densenet100", "DenseNet-100 (3 blocks of 16 bottleneck layers); model.growth: k "
                "(12 or 24), model.compression: 0.5 (BC, default) or 1 (the FSNet papers')", "cifar")
def densenet100(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
                growth: int = 12, compression: float = 0.5) -> nn.Module:
    return cifar_densenet(growth, (16, 16, 16), 2 * growth, num_classes, in_channels,
                          compression)
