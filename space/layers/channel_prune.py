"""Structural channel pruning to a parameter target, with Torch-Pruning (`torch_pruning`).

Torch-Pruning's dependency graph groups every tensor slice that one output channel reaches
(a conv's filters, the BatchNorm after it, the next layer's input slices, the other side of a
residual sum); a group is kept or removed whole, so the pruned network is an ordinary smaller
network. The importance of a group is the L1 (or L2) norm of its weights, ranked across the
whole network (`global_ranking`, Torch-Pruning's `global_pruning`) or within each layer.

`plan_pruning` finds the smallest pruning ratio whose network has at most `target` parameters
(a bisection over the ratio; the count falls as the ratio grows) and returns the *plan*: the
channels it removed, as (module name, channel indices) in the order they were removed.
`apply_plan` replays a plan on a freshly built network of the same kind through the same
dependency graph, so a checkpoint or an exported model stores its pruned structure as plain
data (retrain.model.NetSpec.pruned) instead of pickled modules.

What is never pruned: the classifier's outputs (every Linear with `num_classes` outputs) and
whatever a network declares with `prune_fixed()` (the CIFAR ResNets' residual stream under
option-A shortcuts, whose zero-padding the dependency graph cannot follow).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["MAX_RATIO", "Plan", "apply_plan", "check_target", "count_params", "plan_pruning"]

#: The largest ratio tried. Past it Torch-Pruning skips a group that it would empty, so the
#: count stops falling with the ratio (ResNet-20: 22,876 parameters at 0.9, 239,334 at 0.98).
MAX_RATIO = 0.9

#: [(module name, channel indices removed)], in the order they were removed.
Plan = list[tuple[str, list[int]]]


def count_params(model: nn.Module) -> int:
    """Parameters of `model` (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _fixed(model: nn.Module, num_classes: int) -> list[nn.Module]:
    fixed = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    declared = getattr(model, "prune_fixed", None)
    return fixed + (list(declared()) if callable(declared) else [])


def _example(in_channels: int, input_size: tuple[int, int]) -> torch.Tensor:
    return torch.zeros(1, in_channels, *input_size)


def _prune(model: nn.Module, ratio: float, example: torch.Tensor, num_classes: int, norm: int,
           global_ranking: bool) -> Plan:
    """Prune `model` in place at `ratio` (Torch-Pruning's pruning_ratio); returns its plan."""
    import torch_pruning as tp

    names = {m: n for n, m in model.named_modules()}
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=norm),
        pruning_ratio=ratio, global_pruning=global_ranking,
        ignored_layers=_fixed(model, num_classes))
    plan: Plan = []
    for group in pruner.step(interactive=True):
        root = group[0]
        plan.append((names[root.dep.target.module], [int(i) for i in root.idxs]))
        group.prune()
    return plan


def _trial(model: nn.Module, ratio: float, example: torch.Tensor, num_classes: int, norm: int,
           global_ranking: bool) -> int:
    """Parameters of a copy of `model` pruned at `ratio` (the model itself is untouched)."""
    m = copy.deepcopy(model).eval()  # traced with a forward: no BatchNorm statistics move
    _prune(m, ratio, example, num_classes, norm, global_ranking)
    return count_params(m)


def check_target(model: nn.Module, target: int, in_channels: int, input_size: tuple[int, int],
                 num_classes: int, norm: int = 1, global_ranking: bool = True) -> None:
    """A ValueError (one line) unless pruning can bring `model` to `target` parameters."""
    if count_params(model) <= target:
        return
    least = _trial(model, MAX_RATIO, _example(in_channels, input_size), num_classes, norm,
                   global_ranking)
    if least > target:
        raise ValueError(f"channel pruning brings this network to {least:,} parameters at least "
                         f"(its classifier and the layers it keeps whole stay), above the target "
                         f"{target:,}; raise prune.params")


def plan_pruning(model: nn.Module, target: int, in_channels: int, input_size: tuple[int, int],
                 num_classes: int, norm: int = 1, global_ranking: bool = True,
                 steps: int = 20) -> Plan:
    """Prune `model` in place to at most `target` parameters, removing as little as that
    allows (the smallest ratio, to MAX_RATIO / 2**steps); returns the plan. A ValueError (one
    line) when no ratio gets there."""
    if count_params(model) <= target:
        return []
    check_target(model, target, in_channels, input_size, num_classes, norm, global_ranking)
    example = _example(in_channels, input_size)
    lo, hi = 0.0, MAX_RATIO
    for _ in range(steps):  # invariant: count(lo) > target >= count(hi)
        mid = (lo + hi) / 2
        if _trial(model, mid, example, num_classes, norm, global_ranking) <= target:
            hi = mid
        else:
            lo = mid
    # The same ratio on the model itself: pruning is deterministic in the weights.
    was_training = model.training
    model.eval()
    plan = _prune(model, hi, example, num_classes, norm, global_ranking)
    model.train(was_training)
    return plan


def apply_plan(model: nn.Module, plan: Plan | list[Any], in_channels: int,
               input_size: tuple[int, int]) -> nn.Module:
    """Replay `plan` on `model` (a fresh build of the network it was made on), in place."""
    if not plan:
        return model
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=_example(in_channels,
                                                                                   input_size))
    for name, idxs in plan:
        module = model.get_submodule(name)
        fn = tp.prune_linear_out_channels if isinstance(module, nn.Linear) else tp.prune_conv_out_channels
        graph.get_pruning_group(module, fn, [int(i) for i in idxs]).prune()
    model.train(was_training)
    return model
