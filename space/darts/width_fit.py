"""A budget met through width as well as FS ratios: the rule `--budget` follows.

The committed studies (docs/results.md) measured, on the CIFAR-10 subset, what FS ratio costs:

* FS at ratio 2 in DARTS_V2 stays within 0.4-0.9 points of the full network at 57% of its
  parameters (fs-fidelity, 3 seeds);
* at 0.7M, where the ratios-only fit put most ops at ratios 4-8, DARTS_V2 without FS narrowed
  to the same count was 2.9 points above the fitted genotype (search-vs-random, 3 seeds).

So where nobody chose the ratio candidates, the fit takes ratios of at most `max_ratio` (2:
`rule_ratios`) and, where those cannot reach the budget, narrows the network: the widest even
width (at the counted depth) at which the genotype fits. Candidates or a ratio given by hand
are kept as given; only the width moves. The width is recorded in the genotype as `fs.width`, the
fraction of the counted width (36 -> 30: 0.8333): a retrain that takes the genotype's ratios
takes its width too, scaling its own `init_channels` by it (retrain.setup).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

from genotypes import FSSpec, Genotype
from space.darts.budget_fit import BudgetFit, CountedNet, budget_fit

__all__ = ["BUDGET_RATIOS", "MAX_RATIO", "fit_budget", "fit_with_width", "reference_width",
           "rule_ratios", "scaled_width", "widest"]

#: The largest FS ratio the budget's rule uses before it narrows the network instead.
MAX_RATIO = 2.0

#: Narrowest width the rule considers (channels of the first cell).
MIN_WIDTH = 2


def scaled_width(init_channels: int, width: float) -> int:
    """`init_channels` x `width`, to the nearest even width (at least 2): the cells' widths are
    even."""
    return max(MIN_WIDTH, int(round(init_channels * width / 2)) * 2)


def _at(g: Genotype, budget: int, ratios: list[float] | None, fs: FSSpec, net: CountedNet,
        width: int) -> BudgetFit:
    fit = budget_fit(g, budget, ratios, fs, dataclasses.replace(net, init_channels=width))
    scale = width / net.init_channels
    fitted = fit.genotype
    if fitted.fs is not None:
        fitted = dataclasses.replace(fitted, fs=dataclasses.replace(fitted.fs, width=scale))
    # Only a narrowed network records its width: a fit at full width reads as before.
    source = {**(fitted.source or {}), **({"width": width} if scale < 1.0 else {})}
    return dataclasses.replace(fit, genotype=dataclasses.replace(fitted, source=source))


#: Each op's ratio candidates a budget searches when nobody chose them (search.resolve).
BUDGET_RATIOS = (1.0, 2.0, 4.0, 8.0)


def rule_ratios(max_ratio: float = MAX_RATIO) -> list[float]:
    """The ratio candidates the width rule takes when none are given: BUDGET_RATIOS up to
    `max_ratio` (at least two)."""
    capped = [r for r in BUDGET_RATIOS if r <= float(max_ratio)]
    return capped if len(capped) >= 2 else list(BUDGET_RATIOS[:2])


def fit_with_width(g: Genotype, budget: int, ratios: Sequence[float] | None, fs: FSSpec,
                   net: CountedNet) -> BudgetFit:
    """`g` fitted to `budget` with each op's ratio among `ratios` (None: every op at
    fs.ratio, kept; the caller caps candidates nobody chose, rule_ratios) and, when that is
    not enough, at the widest even width of `net` that fits. The genotype's fs.width is the
    chosen width over net.init_channels; its source records the width. Over budget even at
    the narrowest width: returned as fitted there (`within` false: the caller says so)."""
    allowed = None if ratios is None else sorted({float(r) for r in ratios})
    # From the narrowest width whose 1x1 convs the largest ratio can compress (K >= ratio).
    largest = max(allowed) if allowed is not None else float(fs.ratio)
    fits = functools.lru_cache(maxsize=None)(lambda width: _at(g, budget, allowed, fs, net, width))
    return fits(widest(_narrowest(largest), net.init_channels, lambda w: fits(w).within))


def _narrowest(ratio: float) -> int:
    """The narrowest even width whose 1x1 convs `ratio` can compress (K filters >= ratio)."""
    return max(MIN_WIDTH, 2 * math.ceil(ratio / 2))


def widest(lo: int, hi: int, fits: Callable[[int], bool], step: int = 2) -> int:
    """The widest width in [lo, hi] on the grid of `step` (even widths by default: a DARTS
    reduction halves C) at which `fits` holds (a count that grows with the width: whatever
    fits, a narrower network fits too), by bisection; `lo` when none does (`hi` when the
    range is empty). `lo` and `hi` are on the grid."""
    if lo >= hi or fits(hi):
        return hi
    if not fits(lo):
        return lo
    while hi - lo > step:  # invariant: lo fits, hi does not
        mid = (lo + hi) // (2 * step) * step
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def fit_budget(g: Genotype, budget: int, ratios: Sequence[float] | None, fs: FSSpec | None,
               net: CountedNet, rule: str = "width") -> BudgetFit:
    """The budget fit of `rule`: "width" (fit_with_width) or "ratios" (space.darts.budget_fit
    alone), with the ratio candidates `ratios` as given (None: fs.ratio fixed). A plain
    genotype (fs None) is only counted."""
    if rule == "width" and fs is not None:
        return fit_with_width(g, budget, ratios, fs, net)
    return budget_fit(g, budget, ratios, fs, net)


def reference_width(fs: FSSpec, ratio: float, budget: int, net: CountedNet) -> int:
    """The widest even width of `net` at which the reference cell (sep_conv_3x3 on every kept
    edge) with every op at `ratio` fits `budget`: the network a budgeted search counts under
    the width rule (at least the narrowest width `ratio` can compress)."""
    from space.darts.budget_fit import counter

    def fits(width: int) -> bool:
        spec = dataclasses.replace(fs, ratio=float(ratio), normal_ratios=None, reduce_ratios=None)
        model = counter(spec, [float(ratio)], dataclasses.replace(net, init_channels=width))
        return model.count(model.reference) <= budget

    return widest(_narrowest(ratio), net.init_channels, fits)
