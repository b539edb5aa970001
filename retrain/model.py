"""The spec of a retrain network and its construction (the networks are space.network's).

`NetSpec` is everything needed to rebuild a network (genotype, widths, classes, input size,
FS settings with any per-op ratios, stem); checkpoints and exported models store its dict.

Stems: inputs whose smaller side is below ``common.shapes.LARGE_IMAGE`` pixels get the CIFAR stem (one
3x3 conv, full resolution); larger ones get the two ImageNet stems (three stride-2 convs, /8).
The network classes are importable from here too (their home before they moved to the space).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from common.shapes import is_large
from genotypes import FSSpec, Genotype, from_dict, fs_from_dict, fs_to_dict, to_dict, validate
from space.network import (
    AugmentCell,
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    NetworkCIFAR,
    NetworkImageNet,
    _Network,
    drop_path,
)

__all__ = [
    "AugmentCell", "AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "NetSpec", "NetworkCIFAR",
    "NetworkImageNet", "build_network", "drop_path", "pick_stem",
]


def pick_stem(input_size: tuple[int, int] | list[int]) -> str:
    """'imagenet' for ImageNet-like inputs (common.shapes.is_large), else 'cifar'."""
    return "imagenet" if is_large(input_size) else "cifar"


@dataclass
class NetSpec:
    """Everything needed to rebuild a network: stored in checkpoints and exported models."""

    genotype: Genotype
    init_channels: int
    layers: int
    num_classes: int
    input_size: tuple[int, int]
    auxiliary: bool = True
    fs: FSSpec | None = None
    stem: str = "auto"
    in_channels: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.stem == "auto":
            self.stem = pick_stem(self.input_size)
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be auto, cifar or imagenet, got {self.stem!r}")
        if self.fs is not None:
            # Per-op ratios must fit this genotype's edges (a GenotypeError is a ValueError).
            validate(replace(self.genotype, fs=self.fs))

    def to_dict(self) -> dict[str, Any]:
        """The plain-types form checkpoints and exports store (fs as genotypes.fs_to_dict:
        the per-op ratio lists only when set)."""
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
        d["genotype"] = from_dict(d["genotype"])
        d["fs"] = fs_from_dict(d.get("fs"))
        return cls(**d)


def build_network(spec: NetSpec) -> _Network:
    """The CIFAR- or ImageNet-style network that `spec` describes."""
    net_cls = NetworkImageNet if spec.stem == "imagenet" else NetworkCIFAR
    return net_cls(spec.init_channels, spec.num_classes, spec.layers, spec.auxiliary,
                   spec.genotype, spec.fs, spec.in_channels)
