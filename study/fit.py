"""Genotypes fitted to a parameter budget, and the plain width that matches a count.

`budget_fit` is the fit a search applies to its derived genotype (search.run.final_genotype),
space.darts.budget_fit's, for a dataset's shape: the counter is the search's own (the retrain
network at the budget's width with the dataset's classes and stem), and the fit changes one
op's ratio at a time, here without the search's preference (the largest op first), as for any
genotype no search rated. `python -m genotypes random --budget` calls the same function.

With `rule="width"` (the default, the search's) the fit is space.darts.width_fit's: the ratios,
then the network narrowed where they cannot reach the budget (the genotype records the width
as fs.width).

`narrow_width` is the even retrain width whose plain network (no FS layers) has the number
of parameters closest to a target: the parameter count grows with the width, so a bisection
over even widths finds it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.shapes import is_large
from genotypes import FSSpec, Genotype
from space.darts.budget import BudgetModel
from space.darts.budget_fit import BUDGET_CHANNELS, BUDGET_LAYERS, BudgetFit, CountedNet
from space.darts.width_fit import fit_budget, scaled_width

__all__ = ["BUDGET_CHANNELS", "BUDGET_LAYERS", "BudgetFit", "budget_fit", "count_at",
           "narrow_width", "plain_count", "dataset_shape"]

#: Widest plain network narrow_width considers.
MAX_WIDTH = 256


def budget_fit(g: Genotype, budget: int, ratios: list[float] | None, fs: FSSpec | None,
               init_channels: int = BUDGET_CHANNELS, layers: int = BUDGET_LAYERS,
               num_classes: int = 10, in_channels: int = 3,
               input_size: tuple[int, int] = (32, 32), rule: str = "width") -> BudgetFit:
    """space.darts.width_fit.fit_budget of the network retrain builds for that dataset shape
    (its stem from the image size, as retrain's `stem: auto`): `rule` "width" (the ratios,
    then the width) or "ratios" (FS ratios only)."""
    net = CountedNet(int(init_channels), int(layers), int(num_classes), int(in_channels),
                     is_large(tuple(input_size)))
    return fit_budget(g, budget, ratios, fs, net, rule)


def plain_count(g: Genotype, init_channels: int, layers: int, num_classes: int = 10,
                in_channels: int = 3, imagenet: bool = False) -> int:
    """Parameters of the plain (no FS) retrain network of `g` at that width: what retrain's
    summary reports as its effective count, without the auxiliary head."""
    plain = dataclasses.replace(g, fs=None)
    model = BudgetModel(None, [1.0], init_channels, layers, num_classes, in_channels, imagenet)
    return model.exact(plain)


def count_at(g: Genotype, init_channels: int, layers: int, num_classes: int = 10,
             in_channels: int = 3, imagenet: bool = False) -> int:
    """Effective parameters of `g`'s retrain network (its own FS settings, hardened) at
    that width (scaled by the genotype's fs.width, as the retrain scales it) and depth."""
    if g.fs is not None:
        init_channels = scaled_width(init_channels, g.fs.width)
    model = BudgetModel(g.fs, [1.0], init_channels, layers, num_classes, in_channels, imagenet)
    return model.exact(g)


def narrow_width(g: Genotype, target: int, layers: int, num_classes: int = 10,
                 in_channels: int = 3, imagenet: bool = False) -> tuple[int, int]:
    """(width, count): the even init_channels whose plain network of `g` has the count
    closest to `target` (the narrower one on a tie)."""
    def count(c: int) -> int:
        return plain_count(g, c, layers, num_classes, in_channels, imagenet)

    lo, hi = 2, 16  # even widths; widen until the target is reached (counts grow with C)
    while count(hi) < target:
        if hi >= MAX_WIDTH:
            raise ValueError(f"a plain network wider than {MAX_WIDTH} channels would be needed "
                             f"for {target:,} parameters; lower the target")
        lo, hi = hi, 2 * hi
    while hi - lo > 2:  # invariant: count(hi) >= target, and lo == 2 or count(lo) < target
        mid = (lo + hi) // 4 * 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid
    below, above = count(lo), count(hi)
    return (lo, below) if target - below <= above - target else (hi, above)


def dataset_shape(dataset: str) -> tuple[int, tuple[int, int]]:
    """(classes, image size) of a named dataset or an ImageFolder path (its train/ class
    folders and the size of its first image), without opening the whole dataset."""
    from common.shapes import KNOWN_SHAPES

    if dataset.lower() in KNOWN_SHAPES:
        classes, side = KNOWN_SHAPES[dataset.lower()]
        return classes, (side, side)
    train = Path(dataset) / "train"
    classes = sorted(p for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
    first = next((f for c in classes for f in sorted(c.iterdir()) if f.is_file()), None)
    if first is None:
        raise ValueError(f"{dataset} has no train/<class>/<image> files to count classes from")
    from PIL import Image

    with Image.open(first) as im:
        return len(classes), (im.height, im.width)
