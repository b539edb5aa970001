"""The named datasets and the one image-size threshold, shared by search and retrain.

Torch-free on purpose: common.cpu reads the threshold before torch is imported.

`LARGE_IMAGE` (128 px, the smaller side) splits CIFAR-like from ImageNet-like data in every
place that treats them differently: the network's stems (retrain.model.pick_stem), the
augmentation (common.data.make_transforms) and the loader workers on CPU (common.cpu).
"""

from __future__ import annotations

#: (classes, image side) of the named datasets, so shapes are known without the files.
KNOWN_SHAPES: dict[str, tuple[int, int]] = {
    "cifar10": (10, 32), "cifar100": (100, 32), "imagenet": (1000, 224),
}
#: The dataset names the command lines accept besides an ImageFolder path.
KNOWN: tuple[str, ...] = tuple(KNOWN_SHAPES)
#: Smallest image side (pixels) treated as ImageNet-like.
LARGE_IMAGE = 128


def is_large(input_size: tuple[int, int] | list[int]) -> bool:
    """Whether images of `input_size` (h, w) are ImageNet-like (smaller side >= LARGE_IMAGE)."""
    return min(input_size) >= LARGE_IMAGE
