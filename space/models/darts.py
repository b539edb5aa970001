"""The DARTS evaluation network of a genotype, as a registry entry (`--genotype G` builds it):
the CIFAR network (3x3 stem, full resolution) or the ImageNet one (three stride-2 convs),
with FS/DFS 1x1 convolutions when `fs` is set (space/darts/network.py)."""

from __future__ import annotations

from torch import nn

from genotypes import FSSpec, Genotype
from space.darts.network import NetworkCIFAR, NetworkImageNet
from space.models.registry import register_model


@register_model("darts", "the DARTS network of a genotype (--genotype G; C and cells from the "
                "config's init_channels and layers)")
def darts(num_classes: int, in_channels: int, input_size: tuple[int, int], *,
          genotype: Genotype, init_channels: int = 36, layers: int = 20, auxiliary: bool = True,
          fs: FSSpec | None = None, stem: str = "cifar") -> nn.Module:
    net_cls = NetworkImageNet if stem == "imagenet" else NetworkCIFAR
    return net_cls(init_channels, num_classes, layers, auxiliary, genotype, fs, in_channels)
