"""Tiny synthetic ImageFolder trees for the search tests (real images: the cifar_subset fixture)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image


def make_image_folder(root: Path, classes: int = 4, per_class: int = 12, size: int = 16) -> Path:
    """A learnable ImageFolder with a train/ split only: one base colour per class plus noise."""
    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True)
        base = torch.rand(3, generator=g) * 255
        for i in range(per_class):
            noise = torch.randn(size, size, 3, generator=g) * 40
            arr = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(d / f"{i}.png")
    return root
