"""Genotypes fitted to a parameter budget, and the plain width that matches a count.

`budget_fit` is the fit a search applies to its derived genotype (search.run.final_genotype):
the counter is the search's own (`search.penalty.budget_model`, the retrain network at the
budget's width with the dataset's classes and stem), the cell preprocessing takes the
search's ratio (`search.penalty.preprocess_ratio`), and `space.budget.fit_to_budget`
changes one op's ratio at a time, here without the search's preference (the largest op
first), as for any genotype no search rated. The genotypes CLI and the study both use it.

`narrow_width` is the even retrain width whose plain network (no FS layers) has the number
of parameters closest to a target: the parameter count grows with the width, so a bisection
over even widths finds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from common.config_schema import SearchConfig
from genotypes import FSSpec, Genotype
from search.penalty import budget_model, preprocess_ratio
from space.budget import BudgetModel, fit_to_budget

#: The network a budget counts unless told otherwise: the paper's retrain width and depth.
BUDGET_CHANNELS, BUDGET_LAYERS = 36, 20
#: Widest plain network narrow_width considers.
MAX_WIDTH = 256


@dataclass(frozen=True)
class BudgetFit:
    """A genotype fitted to a budget: the fitted genotype, the counts before and after
    (effective parameters of the counted network), the fit's steps and the counter's words."""

    genotype: Genotype
    budget: int
    derived: int
    exact: int
    notes: tuple[str, ...]
    network: str

    @property
    def within(self) -> bool:
        return self.exact <= self.budget

    def lines(self) -> list[str]:
        """The fit as a search prints it."""
        share = 100.0 * self.derived / self.budget
        out = [f"budget: {self.budget:,} effective parameters of {self.network}",
               f"genotype before the fit: {self.derived:,} parameters ({share:.1f}% of the budget)"]
        out += [f"  {n}" for n in self.notes]
        verdict = "within" if self.within else "OVER"
        out.append(f"final genotype: {self.exact:,} parameters, "
                   f"{100.0 * self.exact / self.budget:.1f}% of the budget ({verdict} it)")
        return out


def _info(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> SimpleNamespace:
    """What the search's counter reads of a dataset (common.data.DatasetInfo's fields)."""
    return SimpleNamespace(num_classes=int(num_classes), in_channels=int(in_channels),
                           input_size=tuple(input_size))


def budget_fit(g: Genotype, budget: int, ratios: list[float] | None, fs: FSSpec | None,
               init_channels: int = BUDGET_CHANNELS, layers: int = BUDGET_LAYERS,
               num_classes: int = 10, in_channels: int = 3,
               input_size: tuple[int, int] = (32, 32)) -> BudgetFit:
    """`g` with FS settings `fs` (None: plain) fitted to `budget` as a search fits its
    genotype: each op's ratio among `ratios` (sorted; None: every op at fs.ratio, nothing to
    fit, only counted). Raises ValueError (one line) for ratios without FS layers."""
    if ratios is not None and fs is None:
        raise ValueError("ratios need FS layers; give an FS mode (fs or dfs) or drop the ratios")
    mode = "off" if fs is None else ("dfs" if fs.dfs else "fs")
    cfg = SearchConfig()  # what the search's counter reads: fs and budget
    cfg.fs.mode, cfg.fs.ratios = mode, None if ratios is None else sorted(float(r) for r in ratios)
    if fs is not None:
        cfg.fs.ratio, cfg.fs.num_offsets = fs.ratio, fs.num_offsets
    cfg.budget.params, cfg.budget.init_channels = int(budget), int(init_channels)
    cfg.budget.layers = int(layers)
    info = _info(num_classes, in_channels, input_size)
    chosen = preprocess_ratio(cfg, info)
    if chosen is not None and fs is not None:
        fs = dataclasses.replace(fs, ratio=chosen, normal_ratios=None, reduce_ratios=None)
        cfg.fs.ratio = chosen
    model = budget_model(cfg, info)
    assert model is not None  # a budget is set
    g = dataclasses.replace(g, fs=fs)
    derived = model.count(g)
    fitted, notes = fit_to_budget(model, g, int(budget), None)
    exact = model.exact(fitted)
    source = {**(g.source or {}), "budget": int(budget), "fitted_params": exact}
    fitted = dataclasses.replace(fitted, source=source)
    return BudgetFit(fitted, int(budget), derived, exact, tuple(notes), model.describe())


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
    that width and depth."""
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
