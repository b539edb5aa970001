"""A genotype's ratios fitted to a parameter budget, from an FS spec and the counted network
alone (no config): the one function the search, the study and `genotypes random --budget`
call.

The counter is the retrain network at the budget's width and depth with the dataset's classes
and stem (`CountedNet`), built under a forked RNG so that counting never changes a search's own
draws. With searched ratios the cell preprocessing (which no op owns) takes the smallest
candidate at which the reference cell with every op at that ratio fits (`preprocess_ratio`);
`fit_to_budget` then changes one op's ratio at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genotypes import FSSpec, Genotype
from space.darts.budget import BudgetModel, fit_to_budget

#: The network a budget counts unless told otherwise: the paper's retrain width and depth.
BUDGET_CHANNELS, BUDGET_LAYERS = 36, 20


@dataclass(frozen=True)
class CountedNet:
    """The network a budget counts: width, cells, classes, input channels, ImageNet stem."""

    init_channels: int = BUDGET_CHANNELS
    layers: int = BUDGET_LAYERS
    num_classes: int = 10
    in_channels: int = 3
    imagenet: bool = False


def counter(fs: FSSpec | None, ratios: Sequence[float], net: CountedNet) -> BudgetModel:
    """A BudgetModel of `net` with FS settings `fs` (one ratio per layer, per-op ratios
    dropped) and the ratio candidates `ratios`, built under a forked RNG (building modules
    draws random numbers). A width the ratios cannot compress raises ValueError."""
    if fs is not None:
        fs = FSSpec(ratio=float(fs.ratio), dfs=bool(fs.dfs), num_offsets=int(fs.num_offsets))
    with torch.random.fork_rng(devices=[]):
        return BudgetModel(fs, list(ratios), net.init_channels, net.layers, net.num_classes,
                           net.in_channels, imagenet=net.imagenet)


def preprocess_ratio(fs: FSSpec, ratios: Sequence[float], budget: int, net: CountedNet) -> float:
    """The ratio of the cell preprocessing with searched `ratios` (sorted): the smallest
    candidate at which the reference cell (sep_conv_3x3 on every kept edge) with every op at
    that ratio fits `budget`, else the largest candidate."""
    for r in ratios:
        model = counter(dataclasses.replace(fs, ratio=float(r)), [r], net)
        if model.count(model.reference) <= budget:
            return float(r)
    return float(ratios[-1])


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


def budget_fit(g: Genotype, budget: int, ratios: Sequence[float] | None, fs: FSSpec | None,
               net: CountedNet = CountedNet()) -> BudgetFit:
    """`g` with FS settings `fs` (None: plain) fitted to `budget` as a search fits its
    genotype, without a search's preference (the largest op first): each op's ratio among
    `ratios` (None: every op at fs.ratio, nothing to fit, only counted). Raises ValueError
    (one line) for ratios without FS layers."""
    if ratios is not None and fs is None:
        raise ValueError("ratios need FS layers; give an FS mode (fs or dfs) or drop the ratios")
    candidates = None if ratios is None else sorted(float(r) for r in ratios)
    if candidates is not None and fs is not None:
        chosen = preprocess_ratio(fs, candidates, int(budget), net)
        fs = dataclasses.replace(fs, ratio=chosen, normal_ratios=None, reduce_ratios=None)
    model = counter(fs, candidates or ([fs.ratio] if fs is not None else [1.0]), net)
    g = dataclasses.replace(g, fs=fs)
    derived = model.count(g)
    fitted, notes = fit_to_budget(model, g, int(budget), None)
    exact = model.exact(fitted)
    source = {**(g.source or {}), "budget": int(budget), "fitted_params": exact}
    fitted = dataclasses.replace(fitted, source=source)
    return BudgetFit(fitted, int(budget), derived, exact, tuple(notes), model.describe())
