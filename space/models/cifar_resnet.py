"""He et al.'s CIFAR ResNets (torchvision has none): ResNet-(6n+2) with basic blocks, and
the pre-activation bottleneck ResNet-164.

ResNet-(6n+2) (He et al., CVPR 2016, section 4.2): a 3x3 conv to p channels, three stages of
n basic blocks at p, 2p, 4p channels (the first block of stages 2 and 3 halves the
resolution), global average pooling and a linear classifier; p = 16 by default
(`model.width`). Where a block changes shape the shortcut is option A (the input subsampled
by 2 and its new channels zero: parameter-free) or option B (a 1x1 conv and BatchNorm).
ResNet-20/32/44/56/110 count 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962 parameters
with option A on CIFAR-10 (a test pins them), 1,730,714 for ResNet-110 with option B.

ResNet-164 (He et al., ECCV 2016): pre-activation bottleneck blocks (BN-ReLU-conv1x1,
BN-ReLU-conv3x3, BN-ReLU-conv1x1, expansion 4), 18 per stage, p = 16; a 1x1 projection
where the shape changes; 1,703,258 parameters on CIFAR-10.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from space.models.registry import register_model

__all__ = ["CifarResNet", "BasicBlock", "PreActBottleneck"]


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


class ShortcutA(nn.Module):
    """Option A: subsample by `stride`, then zero channels up to `c_out` (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != planes:
            self.shortcut = (ShortcutA(c_in, planes, stride) if shortcut == "A" else nn.Sequential(
                nn.Conv2d(c_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 (x4), plus the shortcut
    (a 1x1 projection of the pre-activated input where the shape changes)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + skip


class CifarResNet(nn.Module):
    """Stem conv3x3 to `width`, three stages of `blocks` blocks at width x 1, 2, 4 (x the
    block's expansion), global average pooling, linear classifier."""

    def __init__(self, block: type[nn.Module], blocks: int, num_classes: int = 10,
                 in_channels: int = 3, width: int = 16, shortcut: str = "A") -> None:
        super().__init__()
        preact = block is PreActBottleneck
        self.conv1 = _conv3x3(in_channels, width)
        # Pre-activation blocks normalise their own input: no BN after the stem then.
        self.bn1 = None if preact else nn.BatchNorm2d(width)
        c = width
        stages = []
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            layers = []
            for b in range(blocks):
                layers.append(block(c, planes, 2 if i > 0 and b == 0 else 1, shortcut))
                c = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        # Pre-activation blocks end unactivated: one BN-ReLU before the pooling.
        self.bn_final = nn.BatchNorm2d(c) if preact else None
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def prune_fixed(self) -> list[nn.Module]:
        """The convs whose output channels structural pruning must keep whole
        (space.layers.channel_prune): under option A the residual stream, whose zero-padding
        shortcuts no dependency graph can follow: the stem and each basic block's last conv.
        Projection shortcuts (option B, ResNet-164) are followed: nothing is fixed there."""
        if not any(isinstance(m, ShortcutA) for m in self.modules()):
            return []
        blocks = [b for stage in (self.layer1, self.layer2, self.layer3) for b in stage]
        return [self.conv1, *(b.conv2 for b in blocks)]

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.bn_final is not None:
            x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _check(width: int, shortcut: str) -> None:
    if width < 1:
        raise ValueError(f"model.width={width} must be a positive channel count")
    if shortcut not in ("A", "B"):
        raise ValueError(f"model.shortcut={shortcut!r} must be A (zero-padding) or B (1x1 "
                         "projection)")


def _register_basic(depth: int) -> None:
    n = (depth - 2) // 6

    def build(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
              width: int = 16, shortcut: str = "A") -> nn.Module:
        _check(width, shortcut)
        return CifarResNet(BasicBlock, n, num_classes, in_channels, width, shortcut)

    register_model(f"resnet{depth}", f"He et al.'s CIFAR ResNet-{depth} ({n} basic blocks per "
                   "stage; model.shortcut A or B)", "cifar")(build)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register_basic(_depth)


@register_model("resnet164", "pre-activation bottleneck CIFAR ResNet-164 (18 blocks per stage)",
                "cifar")
def resnet164(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
              width: int = 16) -> nn.Module:
    _check(width, "B")
    return CifarResNet(PreActBottleneck, 18, num_classes, in_channels, width, "B")
