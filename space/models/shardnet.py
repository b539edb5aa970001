"""ShaRDNet ("One filter set to rule them all"): one convolution shared across a network's
depth, for CIFAR-size inputs (VGG- and ResNet-like); the ImageNet variants are in
shardnet_imagenet.py.

A standard CNN applies L independent conv layers; a ShaRDNet builds ONE conv f (n -> n
channels) and applies it at every position, BatchNorm, ReLU and pooling staying per position.
The image is zero-padded from its 3 channels to n so that the first position uses f too.
Sharing is one nn.Conv2d module object placed at every position: `parameters()` yields its
weight once (so the optimizer, DDP and parameter counts see one tensor), `state_dict()` has
one key per position, all the same tensor (retrain.export packs it once), and
space.layers.convert turns it into ONE shared FS layer (`--fs fs --ratio R`: FS inside the shared
filter set).

- e-vgg (E-VGGNet(n)): VGG-16's layout, n channels in every conv3, nothing shared (the
  baseline); blocks of 2, 2, 3, 3, 3 convs (or `layers_per_block` each), max-pool after
  each block, then FC-512, FC-512, FC-classes (FC-1024 for 100 classes or more).
- s-vgg (S-VGGNet(n)): the same pipeline applying one shared conv3 n -> n.
- sl-vgg (SL-VGGNet(n)): S-VGGNet plus a learned 1x1 blend layer (n -> n, no bias, its own
  weights) before each of the first four max-pools; `layers_per_block` l gives SLl-VGGNet.
- e-resnet (Eb-ResNet(p)): conv3-p, b x block-p, conv1-2p, maxpool, b x block-2p, conv1-4p,
  maxpool, b x block-4p, avgpool, FC (b = `blocks`, p = `width`).
- sl-resnet (SLb-ResNet(n)): every conv3 (the stem included) the one shared n -> n conv3,
  the two conv1 layers n -> n blend layers of their own.

Each model carries `unshared`: (registered name, settings) of its unshared counterpart
(None for the E networks, which are their own), from which retrain.summary computes the
compression factor C = |W_conv unshared| / |W_conv|. Conv3 layers carry biases and blend
layers none, as the paper counts them (its E-VGGNet(64) 445K is 444,096 weights + 832 biases).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from space.layers.fs_model import is_fs_layer
from space.models.registry import register_model

__all__ = ["Blend", "PadChannels", "ShardVGG", "ShardResNet", "VGG_LAYOUT", "conv_weights",
           "check_width"]

#: VGG-16's conv3 layers per block (5 blocks, a max-pool after each).
VGG_LAYOUT = (2, 2, 3, 3, 3)
SMALLEST_INPUT = 32  # five max-pools of 2


class Blend(nn.Conv2d):
    """A learned 1x1 blend layer n -> n without bias: its own weights at each place (the
    class marks it for the blend pruning of retrain.prune)."""

    def __init__(self, n: int) -> None:
        super().__init__(n, n, 1, bias=False)


class PadChannels(nn.Module):
    """Zero-pad the channels of the input up to `n` (the image's 3 to the shared conv's n)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, 0, 0, 0, 0, self.n - x.shape[1]))


def conv_weights(model: nn.Module) -> int:
    """|W_conv|: elements of every convolution's weights and biases (an FS layer's FS vector
    and bias; DFS offset logits are not weights), each shared parameter once."""
    seen: dict[int, int] = {}
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or is_fs_layer(m):
            for name, p in m.named_parameters(recurse=False):
                if name != "offset_logits":
                    seen[id(p)] = p.numel()
    return sum(seen.values())


def check_width(name: str, width: int, in_channels: int, shared: bool) -> None:
    """One line when `width` cannot be a network's channel count (a shared network pads its
    input up to n channels: n below the image's channels does not fit)."""
    if width < 1:
        raise ValueError(f"model.width={width} must be a positive channel count")
    if shared and width < in_channels:
        raise ValueError(f"model.width={width} does not fit {name}: its shared conv takes the "
                         f"{in_channels}-channel image zero-padded up to n channels, so n must "
                         f"be at least {in_channels}; give model.width >= {in_channels}")


def _check_input(name: str, input_size: tuple[int, int], smallest: int) -> None:
    if min(input_size) < smallest:
        raise ValueError(f"{name} halves its input five times and needs images of at least "
                         f"{smallest}x{smallest}, not {input_size[0]}x{input_size[1]}")


def _position(conv: nn.Module, n: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(n), nn.ReLU(inplace=True)]


def _init(model: nn.Module) -> None:
    for m in model.modules():  # a shared module is visited once
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ShardVGG(nn.Module):
    """E-, S- and SL-VGGNet(n) (see the module docstring): `kind` 'e', 's' or 'sl'."""

    def __init__(self, kind: str, n: int, layout: tuple[int, ...], num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        shared = kind != "e"
        self.pad = PadChannels(n) if shared else nn.Identity()
        conv = nn.Conv2d(n, n, 3, padding=1) if shared else None
        c_in = n if shared else in_channels
        for b, count in enumerate(layout):
            layers: list[nn.Module] = []
            for _ in range(count):
                layers += _position(conv if shared else nn.Conv2d(c_in, n, 3, padding=1), n)
                c_in = n
            if kind == "sl" and b < 4:
                layers += _position(Blend(n), n)
            layers.append(nn.MaxPool2d(2))
            self.add_module(f"block{b + 1}", nn.Sequential(*layers))
        self.blocks = len(layout)
        hidden = 1024 if num_classes >= 100 else 512
        self.classifier = nn.Sequential(
            nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pad(x)
        for b in range(self.blocks):
            x = getattr(self, f"block{b + 1}")(x)
        # At 32x32 five max-pools leave 1x1; larger inputs are averaged down to it.
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Block(nn.Module):
    """A basic residual block from two given convs (the same module twice when shared):
    conv-BN-ReLU-conv-BN, plus the input, then ReLU."""

    def __init__(self, conv_a: nn.Module, conv_b: nn.Module, n: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = conv_a, nn.BatchNorm2d(n), conv_b, nn.BatchNorm2d(n)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ShardResNet(nn.Module):
    """Eb-ResNet(p) (shared=False: widths p, 2p, 4p, conv1 doubling before each max-pool)
    and SLb-ResNet(n) (shared=True: one conv3 n -> n everywhere, 1x1 blends n -> n)."""

    def __init__(self, shared: bool, width: int, blocks: int, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        widths = (width,) * 3 if shared else (width, 2 * width, 4 * width)
        conv = nn.Conv2d(width, width, 3, padding=1) if shared else None

        def conv3(c_in: int, c: int) -> nn.Module:
            return conv if shared else nn.Conv2d(c_in, c, 3, padding=1)

        pad: list[nn.Module] = [PadChannels(width)] if shared else []
        self.stem = nn.Sequential(*pad, *_position(conv3(in_channels, width), width))
        for i, c in enumerate(widths):
            self.add_module(f"layer{i + 1}", nn.Sequential(
                *(Block(conv3(c, c), conv3(c, c), c) for _ in range(blocks))))
            if i < 2:  # a 1x1 (its own weights: a blend when shared), then max-pool 2
                down = Blend(c) if shared else nn.Conv2d(c, widths[i + 1], 1)
                self.add_module(f"down{i + 1}", nn.Sequential(
                    *_position(down, widths[i + 1]), nn.MaxPool2d(2)))
        self.fc = nn.Linear(widths[-1], num_classes)
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer1(self.stem(x))
        x = self.layer3(self.down2(self.layer2(self.down1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _vgg(kind: str, name: str, num_classes: int, in_channels: int, input_size: tuple[int, int],
         width: int, layers_per_block: int | None) -> nn.Module:
    check_width(name, width, in_channels, kind != "e")
    _check_input(name, input_size, SMALLEST_INPUT)
    if layers_per_block is not None and layers_per_block < 1:
        raise ValueError(f"model.layers_per_block={layers_per_block} must be at least 1 (the "
                         "paper's SLl-VGGNet: 2 or 3); null: VGG-16's 2, 2, 3, 3, 3")
    layout = VGG_LAYOUT if layers_per_block is None else (int(layers_per_block),) * 5
    model = ShardVGG(kind, int(width), layout, num_classes, in_channels)
    settings: dict[str, Any] = {"width": int(width)}
    if layers_per_block is not None:
        settings["layers_per_block"] = int(layers_per_block)
    model.unshared = None if kind == "e" else ("e-vgg", settings)
    return model


@register_model("e-vgg", "ShaRDNet's E-VGGNet(n): VGG-16's layout at n channels per conv3, "
                "nothing shared (model.width n, model.layers_per_block)", "cifar")
def e_vgg(num_classes: int, in_channels: int, input_size: tuple[int, int], *, width: int = 64,
          layers_per_block: int | None = None) -> nn.Module:
    return _vgg("e", "e-vgg", num_classes, in_channels, input_size, width, layers_per_block)


@register_model("s-vgg", "ShaRDNet's S-VGGNet(n): E-VGGNet applying one shared conv3 n->n "
                "(model.width n)", "cifar")
def s_vgg(num_classes: int, in_channels: int, input_size: tuple[int, int], *, width: int = 64,
          layers_per_block: int | None = None) -> nn.Module:
    return _vgg("s", "s-vgg", num_classes, in_channels, input_size, width, layers_per_block)


@register_model("sl-vgg", "ShaRDNet's SL-VGGNet(n): S-VGGNet plus a 1x1 blend before the first "
                "four max-pools (model.width n, model.layers_per_block l: SLl-VGGNet)", "cifar")
def sl_vgg(num_classes: int, in_channels: int, input_size: tuple[int, int], *, width: int = 64,
           layers_per_block: int | None = None) -> nn.Module:
    return _vgg("sl", "sl-vgg", num_classes, in_channels, input_size, width, layers_per_block)


def _resnet(shared: bool, name: str, num_classes: int, in_channels: int,
            input_size: tuple[int, int], width: int, blocks: int) -> nn.Module:
    check_width(name, width, in_channels, shared)
    if blocks < 1:
        raise ValueError(f"model.blocks={blocks} must be at least 1 (the paper's: 3, 5, 7)")
    if min(input_size) < 4:
        raise ValueError(f"{name} halves its input twice; {input_size[0]}x{input_size[1]} is "
                         "too small (give images of at least 4x4)")
    model = ShardResNet(shared, int(width), int(blocks), num_classes, in_channels)
    # The paper's E-ResNet baseline: p = 16 for CIFAR-10, 32 for CIFAR-100.
    p = 32 if num_classes >= 100 else 16
    model.unshared = ("e-resnet", {"width": p, "blocks": int(blocks)}) if shared else None
    return model


@register_model("e-resnet", "ShaRDNet's Eb-ResNet(p): CIFAR ResNet with a 1x1 doubling the "
                "channels before each max-pool (model.width p, model.blocks b)", "cifar")
def e_resnet(num_classes: int, in_channels: int, input_size: tuple[int, int], *, width: int = 16,
             blocks: int = 3) -> nn.Module:
    return _resnet(False, "e-resnet", num_classes, in_channels, input_size, width, blocks)


@register_model("sl-resnet", "ShaRDNet's SLb-ResNet(n): every conv3 one shared n->n conv3, 1x1 "
                "blends before the max-pools (model.width n, model.blocks b)", "cifar")
def sl_resnet(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
              width: int = 64, blocks: int = 3) -> nn.Module:
    return _resnet(True, "sl-resnet", num_classes, in_channels, input_size, width, blocks)
