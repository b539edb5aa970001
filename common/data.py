"""Datasets for search and retrain: CIFAR-10/100, ImageNet, or any ImageFolder tree.

`open_dataset` gives the train and test splits with their transforms and a `DatasetInfo`
(classes, input size, normalisation). Nothing here downloads unless `download=True`, and a
missing dataset is one clear line saying where to put it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision import datasets, transforms

from common.data_check import check_images, check_links
from common.errors import UserError
from common.shapes import KNOWN, is_large

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class DatasetInfo:
    """What a network and its transforms need to know about a dataset."""

    name: str
    num_classes: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    in_channels: int = 3

    @property
    def is_imagenet_like(self) -> bool:
        return is_large(self.input_size)


class Cutout(torch.nn.Module):
    """Zero a random `length` x `length` square (clipped at the border) of a CHW tensor, as in
    DARTS's evaluation. torchvision's RandomErasing keeps its box inside the image, which is a
    different augmentation, so this one is kept."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, (1,)))
        cx = int(torch.randint(w, (1,)))
        half = self.length // 2
        img = img.clone()
        img[..., max(cy - half, 0) : min(cy + half, h), max(cx - half, 0) : min(cx + half, w)] = 0
        return img


def make_transforms(info: DatasetInfo, train: bool, cutout: int = 0) -> transforms.Compose:
    """DARTS-style augmentation: small images get pad-and-crop + flip, large ones
    random-resized-crop + flip; evaluation resizes and centre-crops large images only."""
    h, w = info.input_size
    norm = [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if info.is_imagenet_like:
        if train:
            aug = [
                transforms.RandomResizedCrop((h, w)),
                transforms.RandomHorizontalFlip(),
                transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
            ]
        else:
            aug = [transforms.Resize(int(round(min(h, w) / 0.875))), transforms.CenterCrop((h, w))]
    elif train:
        aug = [
            transforms.Resize((h, w)),
            transforms.RandomCrop((h, w), padding=max(h, w) // 8),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        aug = [transforms.Resize((h, w))]
    extra = [Cutout(cutout)] if train and cutout > 0 else []
    return transforms.Compose(aug + norm + extra)


def _cifar(name: str, root: Path, download: bool):
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    try:
        train = cls(str(root), train=True, download=False)
    except RuntimeError:
        if not download:
            raise UserError(
                f"{name} is not in {root.resolve()}: put {folder}/ (or the torchvision archive) there, "
                "or pass --data-root DIR"
            ) from None
        try:
            train = cls(str(root), train=True, download=True)
        except Exception:
            raise UserError(
                f"{name} is not in {root.resolve()} and could not be downloaded (no network?): put "
                f"{folder}/ there (from https://www.cs.toronto.edu/~kriz/), or pass --data-root DIR"
            ) from None
    test = cls(str(root), train=False, download=False)
    mean, std = CIFAR_STATS[name]
    info = DatasetInfo(name, len(train.classes), (32, 32), mean, std, list(train.classes))
    return train, test, info


def _folder_stats(ds: datasets.ImageFolder, limit: int = 500):
    """Per-channel mean/std and the input size from an evenly spaced sample of images."""
    step = max(1, len(ds) // limit)
    pixels = []
    size = None
    for i in range(0, len(ds), step):
        with Image.open(ds.samples[i][0]) as im:
            im = im.convert("RGB")
            size = size or (im.height, im.width)
            pixels.append(transforms.functional.to_tensor(im.resize(size[::-1])).flatten(1))
    x = torch.cat(pixels, dim=1)
    mean = tuple(round(v, 4) for v in x.mean(1).tolist())
    std = tuple(round(v, 4) for v in x.std(1).tolist())
    return size, mean, std


def _read_folder(split: Path) -> datasets.ImageFolder:
    """An ImageFolder of `split`, its symlinks checked first (common.data_check)."""
    check_links(split)
    try:
        return datasets.ImageFolder(str(split))
    except (FileNotFoundError, RuntimeError) as e:
        raise UserError(f"cannot read {split} as an ImageFolder ({e}); check the layout") from None


def _image_folder(path: Path, name: str, imagenet: bool):
    train_dir = path / "train"
    if not train_dir.is_dir():
        raise UserError(f"{path} has no train/ folder; an ImageFolder dataset needs "
                        "DIR/train/<class>/<image> (and optionally DIR/test or DIR/val)")
    train = _read_folder(train_dir)
    test = None
    for split in ("test", "val"):
        if (path / split).is_dir():
            test = _read_folder(path / split)
            if test.classes != train.classes:
                raise UserError(f"{path / split} has other classes than {train_dir}; fix the folders")
            break
    # Every image, before anything uses one (and before any run directory exists). Under
    # torchrun rank 0 opens the dataset first (common.distributed.rank0_first) and its
    # refusal stops every rank, so the other ranks do not read every file again.
    if int(os.environ.get("RANK", "0")) == 0:
        check_images(path, [p for p, _ in train.samples], None if test is None else
                     [p for p, _ in test.samples])
    if imagenet:
        size, (mean, std) = (224, 224), IMAGENET_STATS
    else:
        size, mean, std = _folder_stats(train)
    return train, test, DatasetInfo(name, len(train.classes), size, mean, std, list(train.classes))


def suggest_dataset(spec: str) -> str:
    """The end of the unknown-dataset error: the named dataset a typo is closest to."""
    if "/" in spec or "\\" in spec:  # a path: a folder that is not there, not a typo of a name
        return "check the path"
    close = difflib.get_close_matches(spec.strip().lower(), KNOWN, n=1, cutoff=0.7)
    return f"did you mean {close[0]}?" if close else "check the name or the path"


def open_dataset(
    spec: str, data_root: str | Path = "data", download: bool = True,
    input_size: int | None = None,
):
    """(train, test or None, info) for `cifar10`, `cifar100`, `imagenet` or an ImageFolder path.

    The datasets carry no transform yet; wrap them in a `TransformedSubset` with
    `make_transforms`."""
    root = Path(data_root)
    key = spec.lower()
    if key in ("cifar10", "cifar100"):
        train, test, info = _cifar(key, root, download)
    elif key == "imagenet":
        if not (root / "imagenet" / "train").is_dir():
            raise UserError(
                f"ImageNet is not in {root / 'imagenet'}: put the ILSVRC2012 train/ and val/ "
                "class folders there (it cannot be downloaded automatically), or pass --data-root"
            )
        train, test, info = _image_folder(root / "imagenet", "imagenet", imagenet=True)
    else:
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise UserError(f"dataset {spec!r} is neither one of {', '.join(KNOWN)} nor an "
                            f"existing folder; {suggest_dataset(spec)}")
        train, test, info = _image_folder(path, path.name, imagenet=False)
    if input_size:
        info.input_size = (int(input_size), int(input_size))
    return train, test, info


class TransformedSubset(torch.utils.data.Dataset):
    """A view of `dataset` restricted to `indices` (all when None) with its own transform,
    so the two search halves and the test split can share one underlying dataset."""

    def __init__(self, dataset, transform, indices: list[int] | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, target = self.dataset[self.indices[i]]
        return self.transform(img), target


def targets_of(dataset) -> list[int]:
    if hasattr(dataset, "targets"):
        return list(dataset.targets)
    return [t for _, t in dataset.samples]


def split_indices(
    dataset, portion: float, seed: int, indices: Sequence[int] | None = None
) -> tuple[list[int], list[int]]:
    """A class-stratified random split of `indices` (all of `dataset` when None) into two
    parts, the first holding `portion` of each class: the search's (weights, architecture)
    halves, and every class-balanced subset of the project. Returns dataset indices.

    DARTS splits by index order, which on a class-sorted ImageFolder would put different
    classes in each half; stratifying keeps both halves balanced on every dataset."""
    if not 0.0 < portion < 1.0:
        raise UserError(f"train_portion must be between 0 and 1, got {portion}")
    all_targets = targets_of(dataset)
    base = list(range(len(all_targets))) if indices is None else list(indices)
    targets = torch.tensor([all_targets[i] for i in base])
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in torch.unique(targets).tolist():
        idx = torch.nonzero(targets == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        k = int(round(len(idx) * portion))
        first += idx[:k]
        second += idx[k:]
    return [base[i] for i in sorted(first)], [base[i] for i in sorted(second)]


def balanced_subset(dataset, indices: list[int] | None, limit: int | None,
                    seed: int) -> list[int] | None:
    """At most `limit` of `indices` (all of `dataset` when None), class-stratified by
    `split_indices` with `seed`: search's data.max_images cap and retrain's image limits.
    `indices` come back unchanged when `limit` is null, 0 or not below their number."""
    n = len(dataset) if indices is None else len(indices)
    if not limit or limit >= n:
        return indices
    if limit < 1:
        raise UserError(f"image limits must be positive, got {limit}")
    return split_indices(dataset, limit / n, seed, indices)[0]
