"""ShaRDNet's ImageNet-size variants (see shardnet.py for the method), from torchvision's
ResNet blocks with their convs replaced by shared ones.

- sl-resnet34 (SL-ResNet-34(n)): the stem (conv7 stride 2 from the image to n channels, BN,
  ReLU, max-pool) unshared; ResNet-34's 3, 4, 6, 3 basic blocks all applying one shared conv3
  n -> n; between stages a 1x1 blend n -> n (its own weights) and a max-pool 2 in place of
  the strided convs; average pooling, FC.
- sl-resnet50 (SL-ResNet-50(n)): the same with ResNet-50's 3, 4, 6, 3 bottleneck blocks
  sharing ONE bottleneck's three convs (1x1 n -> n/4, 3x3 n/4 -> n/4, 1x1 n/4 -> n); n must
  be a multiple of 4.

Both are laid out for large inputs (/32 overall) and refuse CIFAR-size ones in one line; the
unshared counterparts (for C) are torchvision's ResNet-34 / ResNet-50 (`tv:resnet34`).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from space.models.registry import register_model
from space.models.shardnet import Blend, check_width

__all__ = ["SharedImageNetResNet"]

# ShaRDNet's ImageNet layout (conv7 stride 2, max-pool, three more halvings: /32) is meant for
# ImageNet-size images; the CIFAR layout of the same method is sl-resnet.
_SMALL = "it is ShaRDNet's ImageNet layout (conv7 stride 2, /32): on CIFAR-size images use sl-resnet"

STAGES = (3, 4, 6, 3)


class SharedImageNetResNet(ResNet):
    """torchvision's ResNet forward (conv1, bn1, relu, maxpool, layer1..4, avgpool, fc) over
    stages whose blocks share their convs; the stages after the first start with a blend and
    a max-pool instead of a strided block."""

    def __init__(self, block: type[BasicBlock | Bottleneck], n: int, num_classes: int,
                 in_channels: int) -> None:
        # nn.Module's init, not ResNet's: ResNet's would build (then drop) its own stages;
        # these are the attributes its forward reads.
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(in_channels, n, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(n)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        planes = n // block.expansion
        first: nn.Module | None = None
        for i, count in enumerate(STAGES):
            blocks: list[nn.Module] = []
            if i > 0:
                blocks += [Blend(n), nn.BatchNorm2d(n), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            for _ in range(count):
                b = block(n, planes)
                if first is None:
                    first = b
                    if block is BasicBlock:  # SL-ResNet-34: one conv3 at both places of a block
                        first.conv2 = first.conv1
                else:  # every block applies the first block's convs
                    for name in ("conv1", "conv2", "conv3"):
                        if hasattr(b, name):
                            setattr(b, name, getattr(first, name))
                blocks.append(b)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(n, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _build(name: str, block: type, counterpart: str, num_classes: int, in_channels: int,
           input_size: tuple[int, int], width: int) -> nn.Module:
    check_width(name, width, 1, shared=False)
    if width % block.expansion:
        raise ValueError(f"model.width={width} does not fit {name}: its shared bottleneck "
                         f"narrows n to n/{block.expansion}; give a multiple of {block.expansion}")
    model = SharedImageNetResNet(block, int(width), num_classes, in_channels)
    model.unshared = (counterpart, {}) if in_channels == 3 else None
    return model


@register_model("sl-resnet34", "ShaRDNet's SL-ResNet-34(n), ImageNet layout: one shared conv3 "
                "n->n in all basic blocks (model.width n)", "imagenet", min_input=128,
                small_hint=_SMALL)
def sl_resnet34(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
                width: int = 256) -> nn.Module:
    return _build("sl-resnet34", BasicBlock, "tv:resnet34", num_classes, in_channels,
                  input_size, width)


@register_model("sl-resnet50", "ShaRDNet's SL-ResNet-50(n), ImageNet layout: one shared "
                "bottleneck n->n/4->n in all blocks (model.width n, a multiple of 4)", "imagenet",
                min_input=128, small_hint=_SMALL, width_step=4)
def sl_resnet50(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
                width: int = 1024) -> nn.Module:
    return _build("sl-resnet50", Bottleneck, "tv:resnet50", num_classes, in_channels,
                  input_size, width)
