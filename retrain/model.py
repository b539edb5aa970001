"""The spec of a retrain network and its construction, through the network registry
(space.models): the DARTS network of a genotype, or any registered network by name, its convs
optionally converted to FS layers (space.layers.convert).

`NetSpec` is everything needed to rebuild a network: for the DARTS network the genotype,
widths, classes, input size, FS settings with any per-op ratios and stem; for a registered
network its name, its settings (`model.*`) and its FS conversion. Checkpoints and exported
models store its dict; files written before registered networks existed (no `model` key)
read as the DARTS network.

Stems (DARTS): inputs whose smaller side is below ``common.shapes.LARGE_IMAGE`` pixels get the
CIFAR stem (one 3x3 conv, full resolution); larger ones get the two ImageNet stems (three
stride-2 convs, /8). The network classes are importable from here too (their home before
they moved to the space).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from common.shapes import is_large
from genotypes import FSSpec, Genotype, from_dict, fs_from_dict, fs_to_dict, to_dict, validate
from space.darts.network import (
    AugmentCell,
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    NetworkCIFAR,
    NetworkImageNet,
    drop_path,
)
from space.layers.channel_prune import apply_plan
from space.layers.convert import Conversion, convert
from space.models import get_model

__all__ = [
    "AugmentCell", "AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "NetSpec", "NetworkCIFAR",
    "NetworkImageNet", "build_network", "drop_path", "pick_stem",
]


def pick_stem(input_size: tuple[int, int] | list[int]) -> str:
    """'imagenet' for ImageNet-like inputs (common.shapes.is_large), else 'cifar'."""
    return "imagenet" if is_large(input_size) else "cifar"


@dataclass
class NetSpec:
    """Everything needed to rebuild a network: stored in checkpoints and exported models.
    `model` is "darts" (the genotype's network: genotype, init_channels, layers, auxiliary,
    fs, stem) or a registered name (then `settings` and `conversion`, a space.layers.convert
    Conversion's dict or None for plain convs, and `pruned`, the channels structural pruning
    removed, replayed after the build)."""

    genotype: Genotype | None
    init_channels: int
    layers: int
    num_classes: int
    input_size: tuple[int, int]
    auxiliary: bool = True
    fs: FSSpec | None = None
    stem: str = "auto"
    in_channels: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    model: str = "darts"
    settings: dict[str, Any] = field(default_factory=dict)
    conversion: dict[str, Any] | None = None
    #: Channels removed by structural pruning (space.layers.channel_prune's plan), or None.
    pruned: list[Any] | None = None

    @property
    def is_darts(self) -> bool:
        return self.model == "darts"

    @property
    def has_fs(self) -> bool:
        """Whether the network has FS layers (so a WQ export exists)."""
        return self.fs is not None or self.conversion is not None

    @property
    def has_dfs(self) -> bool:
        """Whether the network has DFS layers (learned offsets, hardened during training)."""
        if self.conversion is not None:
            return self.conversion["mode"] == "dfs"
        return self.fs is not None and self.fs.dfs

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.stem == "auto":
            self.stem = pick_stem(self.input_size)
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be auto, cifar or imagenet, got {self.stem!r}")
        if not self.is_darts:
            if self.genotype is not None or self.fs is not None:
                raise ValueError(f"a {self.model} network takes no genotype or DARTS FS settings")
            return
        if self.genotype is None:
            raise ValueError("the DARTS network needs a genotype")
        if self.fs is not None:
            # Per-op ratios must fit this genotype's edges (a GenotypeError is a ValueError).
            validate(replace(self.genotype, fs=self.fs))

    def to_dict(self) -> dict[str, Any]:
        """The plain-types form checkpoints and exports store (fs as genotypes.fs_to_dict:
        the per-op ratio lists only when set)."""
        if not self.is_darts:
            return {"model": self.model, "settings": dict(self.settings),
                    "conversion": self.conversion, "num_classes": self.num_classes,
                    "input_size": list(self.input_size), "in_channels": self.in_channels,
                    "extra": dict(self.extra),
                    **({} if self.pruned is None else
                       {"pruned": [[n, list(i)] for n, i in self.pruned]})}
        fs = fs_to_dict(self.fs)
        return {
            "genotype": to_dict(self.genotype), "init_channels": self.init_channels,
            "layers": self.layers, "num_classes": self.num_classes,
            "input_size": list(self.input_size), "auxiliary": self.auxiliary, "fs": fs,
            "stem": self.stem, "in_channels": self.in_channels, "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetSpec:
        """The NetSpec of `to_dict`'s form; files from before per-op ratios (fs with ratio, dfs
        and num_offsets only) read as a single ratio."""
        d = dict(d)
        if d.get("model", "darts") != "darts":
            return cls(genotype=None, init_channels=0, layers=0, **d)
        d["genotype"] = from_dict(d["genotype"])
        d["fs"] = fs_from_dict(d.get("fs"))
        return cls(**d)


def build_network(spec: NetSpec) -> nn.Module:
    """The network that `spec` describes, from the registry (a ValueError, one line, when
    its settings do not fit)."""
    if spec.is_darts:
        return get_model("darts", spec.num_classes, spec.in_channels, spec.input_size,
                         genotype=spec.genotype, init_channels=spec.init_channels,
                         layers=spec.layers, auxiliary=spec.auxiliary, fs=spec.fs, stem=spec.stem)
    net = get_model(spec.model, spec.num_classes, spec.in_channels, spec.input_size,
                    **spec.settings)
    if spec.conversion is not None:
        convert(net, Conversion.from_dict(spec.conversion))
    if spec.pruned:
        apply_plan(net, spec.pruned, spec.in_channels, spec.input_size)
    return net
