"""Terms added to the architecture loss: the parameter budget and beta-DARTS's regulariser.

Budget (space/darts/budget.py gives E[P], the expected effective parameter count of the derived
network at the budget's width, differentiable in the alphas and ratio logits). With budget B
and weight lambda(t) ramped linearly from 0 to `budget.weight` over `budget.warmup_epochs`
architecture epochs:

    hinge  (default):  lambda(t) * max(0, E[P]/(a B) - 1)   only above the aim
    target:            lambda(t) * |E[P]/(a B) - 1|         towards the aim from both sides

where a = `budget.aim` (1 by default; 0.95 aims the relaxed network 5% inside the budget, as
the hinge settles where its pull balances the loss's, a little above its aim).

    E[P] = P0 + sum_c sum_e kappa_ce sum_(o != none) pi_ceo sum_r rho_ceor T_c[e, o, r]

(space/darts/budget.py: pi the op weights, kappa the edge-keep weights, both functions of alpha;
rho the ratio weights). By default (`budget.acts_on: all`) the penalty's gradient moves all
three, so the budget can be met by the op choice: in the proxy searches the first
architecture epoch moved 30-58% of the sep_convs' weight (the ops with the most parameters)
to the parameter-free ones (docs/results.md). With `budget.acts_on: ratios`, pi and kappa
enter the penalty detached: it moves only the ratio logits, and the op choice is the
validation loss's alone.

A size penalty pushes the search towards parameter-free ops (skip, pools), DARTS's collapse.
Two remedies, on by default with a budget:

    beta-DARTS (Ye et al., 2022):  mu(t) * mean over edges and cells of logsumexp_o(alpha_eo),
    mu(t) ramped linearly from 0 at the first epoch to `arch.beta_decay` at the last;

and caps at derivation (genotypes/derive.py): at most `arch.max_skip` skip_connect edges per
cell (P-DARTS keeps 2) and at most `arch.max_free` parameter-free ops (skips and pools) per
cell, since the penalty pushes towards pools as much as towards skips. Both loss terms
depend only on architecture parameters, so their gradient is exact and the same for first
and second order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from search.resolve import SearchSettings, uncountable
from search.settings import SearchConfig
from space.darts.budget import BudgetModel
from space.darts.budget_fit import counter

#: beta-DARTS weight and skip cap when a budget is set and the config leaves them null.
BUDGET_BETA_DECAY = 1.0
BUDGET_MAX_SKIP = 2
BUDGET_MAX_FREE = 2


def beta_decay_weight(cfg: SearchConfig) -> float:
    """The beta-DARTS weight: the config's, or BUDGET_BETA_DECAY with a budget, else 0."""
    v = cfg.arch.beta_decay
    if v is None:
        return BUDGET_BETA_DECAY if cfg.budget.params is not None else 0.0
    return float(v)


def derive_caps(cfg: SearchConfig) -> dict[str, int | None]:
    """genotypes.derive's `max_skip` and `max_free`: the config's, or with a budget and a
    null config value BUDGET_MAX_SKIP / BUDGET_MAX_FREE, else no cap."""
    budget = cfg.budget.params is not None
    out: dict[str, int | None] = {}
    for key, default in (("max_skip", BUDGET_MAX_SKIP), ("max_free", BUDGET_MAX_FREE)):
        v = getattr(cfg.arch, key)
        out[key] = int(v) if v is not None else (default if budget else None)
    return out


def budget_model(settings: SearchSettings) -> BudgetModel | None:
    """The exact/expected counter of a resolved search (search.resolve), when it has a
    budget or searched ratios (then E[P] is logged): its FS spec (the cell preprocessing at
    the resolved ratio), its ratio candidates and the network the budget counts."""
    if settings.counted is None:
        return None
    fs = settings.fs
    ratios = settings.ratios or ([fs.ratio] if fs is not None else [1.0])
    try:
        return counter(fs, ratios, settings.counted)
    except ValueError as e:
        raise uncountable(settings.cfg, e) from None


class ArchPenalty:
    """The architecture loss's extra terms for one search (module docstring); call it for
    the term of the current epoch (`epoch` is set by the trainer)."""

    def __init__(self, net: nn.Module, cfg: SearchConfig, model: BudgetModel | None) -> None:
        self.net, self.model = net, model
        self.budget = cfg.budget.params
        self.aim = float(cfg.budget.aim)
        self.mode, self.weight = cfg.budget.mode, float(cfg.budget.weight)
        self.warmup = int(cfg.budget.warmup_epochs)
        self.ratios_only = cfg.budget.acts_on == "ratios"
        self.first_arch_epoch = int(cfg.arch.warmup_epochs)
        self.epochs = int(cfg.epochs)
        self.beta = beta_decay_weight(cfg)
        self.epoch = 0

    @property
    def active(self) -> bool:
        return self.beta > 0 or (self.budget is not None and self.weight > 0)

    def expected_params(self) -> Tensor:
        """E[P] of the current architecture parameters (differentiable; in the ratio logits
        only with `budget.acts_on: ratios`)."""
        assert self.model is not None
        net = self.net
        ratios = None if net.ratios is None else [net.ratios_normal, net.ratios_reduce]
        alphas = [net.alphas_normal, net.alphas_reduce]
        edges = None if not net.edge_norm else [net.edge_weights(False), net.edge_weights(True)]
        if self.ratios_only:
            alphas = [a.detach() for a in alphas]
            edges = None if edges is None else [e.detach() for e in edges]
        return self.model.expected(*self.model.relaxed(alphas, ratios, edges))

    def budget_weight(self) -> float:
        """lambda(t): 0 at the first architecture epoch, `budget.weight` after
        `budget.warmup_epochs` of them (at once without warm-up)."""
        if self.warmup == 0:
            return self.weight
        done = self.epoch - self.first_arch_epoch  # architecture epochs before this one
        return self.weight * min(1.0, max(0.0, done / self.warmup))

    def beta_weight(self) -> float:
        """mu(t): 0 at the first architecture epoch, `arch.beta_decay` at the last."""
        span = max(1, self.epochs - 1 - self.first_arch_epoch)
        return self.beta * min(1.0, max(0.0, (self.epoch - self.first_arch_epoch) / span))

    def __call__(self) -> Tensor | None:
        terms: list[Tensor] = []
        if self.budget is not None and self.weight > 0:
            excess = self.expected_params() / (self.aim * float(self.budget)) - 1.0
            gap = excess.clamp(min=0.0) if self.mode == "hinge" else excess.abs()
            terms.append(self.budget_weight() * gap.float())
        if self.beta > 0:
            alphas = torch.cat([self.net.alphas_normal, self.net.alphas_reduce])
            terms.append(self.beta_weight() * torch.logsumexp(alphas, dim=-1).mean())
        return sum(terms) if terms else None
