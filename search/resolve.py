"""A search's settings, resolved once into one value that the rest of the search reads.

The CLI resolves the `search` config (preset, then --set and the flags; or a resumed run's
config.yaml) and hands it here; nothing changes a config afterwards. `settle` adds the one
choice that needs no dataset (a budget without fixed ratios searches each op's ratio among
BUDGET_RATIOS): it is what --print-config shows and what the cross-key checks read.
`resolve_search` makes the rest of the choices once the dataset's shape is known (threads
and loader workers to fit the cores; with a budget and searched ratios, the cell
preprocessing's ratio) and returns them with what is derived from them: the FS spec, the
network the budget counts, and the algorithm. Each step builds a new config; the input is
never changed, and `SearchSettings.cfg` is the config config.yaml records.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from common.cpu import CpuBudget, cpu_budget
from common.errors import UserError
from common.fs_settings import fs_spec
from common.shapes import is_large
from genotypes import FSSpec
from search.algorithms import Algorithm
from search.settings import SearchConfig, checked_algorithm
from space.darts.budget_fit import CountedNet
from space.darts.budget_fit import preprocess_ratio as fit_preprocess_ratio
from space.darts.width_fit import BUDGET_RATIOS, reference_width, rule_ratios


@dataclass(frozen=True)
class SearchSettings:
    """A resolved search: the config as config.yaml records it, and what it implies.

    `fs` is the supernet's FS spec (None: plain 1x1 convolutions); with searched ratios its
    ratio is the cell preprocessing's. `counted` is the network the budget counts (None
    without a budget and searched ratios). `cpu` is what the process runs with (already in
    cfg.runtime.threads / cfg.data.workers). `chose_ratios`: the budget chose the ratio
    candidates; `preprocess_ratio`: the ratio the budget chose for the cell preprocessing
    when it differs from the config's fs.ratio (else None). `retrain_threads`: the thread
    count the retrain command repeats (a count that was given, not chosen to fit the cores).
    `width`: under the budget's width rule, the counted network's width over
    budget.init_channels (space.darts.width_fit.reference_width; 1.0: not narrowed); the
    derived genotype records it as fs.width.
    """

    cfg: Any
    algorithm: Algorithm
    fs: FSSpec | None
    counted: CountedNet | None
    cpu: CpuBudget
    chose_ratios: bool = False
    preprocess_ratio: float | None = None
    retrain_threads: int | None = None

    @property
    def ratios(self) -> list[float] | None:
        """The searched ratio candidates (fs.ratios), None when every op has fs.ratio."""
        return self.cfg.fs.ratios

    @property
    def budget(self) -> int | None:
        return self.cfg.budget.params

    @property
    def width(self) -> float:
        """The counted network's width over budget.init_channels (below 1: the width rule
        narrowed it)."""
        if self.counted is None:
            return 1.0
        return self.counted.init_channels / int(self.cfg.budget.init_channels)


def budget_chooses_ratios(cfg: SearchConfig, given: set[str]) -> bool:
    """A budget asks for a size: unless the ratios are fixed (fs.ratios, or --ratio /
    fs.ratio given), each op's ratio is searched among BUDGET_RATIOS (under the width rule
    those up to budget.max_ratio), so that the result can fit. FS off has no ratio to
    choose."""
    fs = cfg.fs
    return not (cfg.budget.params is None or fs.ratios is not None or fs.mode == "off"
                or "fs.ratio" in given)


def settle(cfg: SearchConfig, given: set[str] | None) -> SearchConfig:
    """`cfg` with the budget's ratio candidates when it chooses them (a copy), else `cfg`
    itself. `given`: the keys the command line set; None for a run's recorded config
    (config.yaml, which holds the choice already)."""
    if given is None or not budget_chooses_ratios(cfg, given):
        return cfg
    out = copy.deepcopy(cfg)
    out.fs.ratios = list(budget_ratios(cfg))
    return out


def budget_ratios(cfg: SearchConfig) -> tuple[float, ...]:
    """The ratio candidates a budget searches when nobody chose them: BUDGET_RATIOS, under the
    width rule only those up to budget.max_ratio (space.darts.width_fit.rule_ratios)."""
    if cfg.budget.rule != "width":
        return BUDGET_RATIOS
    return tuple(rule_ratios(float(cfg.budget.max_ratio)))


def counted_net(cfg: SearchConfig, num_classes: int, in_channels: int,
                input_size: tuple[int, int]) -> CountedNet:
    """The network the budget counts: the one retrain builds for this dataset (CIFAR or
    ImageNet stem from its image size, as retrain's `stem: auto`) at the budget's width."""
    return CountedNet(int(cfg.budget.init_channels), int(cfg.budget.layers), int(num_classes),
                      int(in_channels), is_large(tuple(input_size)))


def uncountable(cfg: SearchConfig, e: ValueError) -> UserError:
    """The one line for a budget network the ratios cannot compress."""
    return UserError(f"cannot count the budget's network (budget.init_channels="
                     f"{cfg.budget.init_channels}, budget.layers={cfg.budget.layers}): {e}")


def resolve_search(cfg: SearchConfig, info: Any, device_type: str = "cpu",
                   given: set[str] | None = None,
                   algorithm: Algorithm | None = None) -> SearchSettings:
    """The settings of a search of `cfg` on a dataset of shape `info` (a DatasetInfo, or
    anything with num_classes, in_channels and input_size) on `device_type`. `given`: the
    keys the command line set (settle; None for a run's recorded config); `algorithm`: the
    one the CLI made when it checked the config (else made here). `cfg` is not changed."""
    settled = settle(cfg, given)
    algorithm = algorithm or checked_algorithm(settled)
    cpu = cpu_budget(settled.runtime.threads, settled.data.workers, device_type,
                     min(info.input_size))
    fs = fs_spec(settled.fs)  # the one reading of the fs section
    has_count = settled.budget.params is not None or settled.fs.ratios is not None
    counted = (counted_net(settled, info.num_classes, info.in_channels, info.input_size)
               if has_count else None)
    counted = _narrowed(settled, fs, counted)
    chosen = _preprocess_ratio(settled, fs, counted)
    out = copy.deepcopy(settled)
    # Recorded in config.yaml as chosen, so that --preset RUN/config.yaml repeats the run.
    out.runtime.threads, out.data.workers = cpu.threads, cpu.workers
    changed = fs is not None and chosen is not None and chosen != fs.ratio
    if changed:
        out.fs.ratio = chosen
        fs = dataclasses.replace(fs, ratio=float(chosen))
    return SearchSettings(
        cfg=out, algorithm=algorithm, fs=fs, counted=counted, cpu=cpu,
        chose_ratios=settled is not cfg, preprocess_ratio=chosen if changed else None,
        retrain_threads=None if cpu.auto else cpu.threads)


def _narrowed(cfg: SearchConfig, fs: FSSpec | None, counted: CountedNet | None) -> CountedNet | None:
    """Under the width rule, the budget's network at the widest width where the reference
    cell at the largest ratio the search may use fits the budget (the search then chooses ops
    and ratios inside it); else `counted` as it is."""
    if cfg.budget.params is None or cfg.budget.rule != "width" or fs is None or counted is None:
        return counted
    largest = max(cfg.fs.ratios) if cfg.fs.ratios is not None else float(fs.ratio)
    try:
        width = reference_width(fs, largest, int(cfg.budget.params), counted)
    except ValueError as e:
        raise uncountable(cfg, e) from None
    return dataclasses.replace(counted, init_channels=width)


def _preprocess_ratio(cfg: SearchConfig, fs: FSSpec | None,
                      counted: CountedNet | None) -> float | None:
    """With a budget and searched ratios, the ratio of the cell preprocessing
    (space.darts.budget_fit.preprocess_ratio); None when the config's fs.ratio stands."""
    ratios, budget = cfg.fs.ratios, cfg.budget.params
    if ratios is None or budget is None or fs is None or counted is None:
        return None
    try:
        return fit_preprocess_ratio(fs, ratios, budget, counted)
    except ValueError as e:
        raise uncountable(cfg, e) from None
