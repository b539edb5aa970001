"""Model-level helpers for FS/DFS layers (space/layers/fs.py) and nested-ratio layers
(space/layers/nested_fs.py): find them, split their parameters, harden, anneal, set the gradient
rule, and build the space's 1x1 conv."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.nested_fs import nested_layers

if TYPE_CHECKING:
    from genotypes import FSSpec

__all__ = [
    "is_fs_layer", "fs_layers", "fs_places", "offset_parameters", "weight_parameters", "harden_model",
    "set_temperature", "set_grad_reduce", "pointwise_conv", "offset_entropy", "replace_modules",
]


def is_fs_layer(m: nn.Module) -> bool:
    """True for FSConv2d and DFSConv2d."""
    return isinstance(m, (FSConv2d, DFSConv2d))


def fs_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) of every FS/DFS layer, in `named_modules` order."""
    return [(name, m) for name, m in model.named_modules() if is_fs_layer(m)]


def fs_places(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) of every place an FS/DFS layer sits: a layer shared by several
    parents (ShaRDNet's one conv) once per place, as state_dict lists it."""
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False) if is_fs_layer(m)]


def offset_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every DFS layer's offset_logits, nested DFS layers' included (each once)."""
    seen: dict[int, nn.Parameter] = {}
    layers = [m for _, m in fs_layers(model) if isinstance(m, DFSConv2d)] + nested_layers(model)
    for m in layers:
        for p in m.offset_parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of `model` that is not an offset logit (by identity)."""
    offs = {id(p) for p in offset_parameters(model)}
    return [p for p in model.parameters() if id(p) not in offs]


def harden_model(model: nn.Module) -> nn.Module:
    """Replace every DFSConv2d in place by its `harden()` FSConv2d; returns model (or the
    hardened layer when model itself is a DFSConv2d). A layer shared by several parents is
    replaced by one shared FSConv2d."""
    if isinstance(model, DFSConv2d):
        return model.harden()
    return replace_modules(model, lambda m: m.harden() if isinstance(m, DFSConv2d) else None)


def replace_modules(model: nn.Module, new_of: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Replace, in place, every submodule m of `model` for which `new_of(m)` is a module by
    that module (called once per module: a module held at several places, or under several
    names, becomes one shared replacement); returns model, or its replacement when `model`
    itself is replaced."""
    done: dict[int, nn.Module | None] = {}

    def new(m: nn.Module) -> nn.Module | None:
        if id(m) not in done:
            done[id(m)] = new_of(m)
        return done[id(m)]

    for parent in list(model.modules()):
        # _modules, not named_children(): that lists a child held under two names once.
        for name, child in list(parent._modules.items()):
            if child is not None and new(child) is not None:
                setattr(parent, name, done[id(child)])
    root = new(model)
    return model if root is None else root


def offset_entropy(model: nn.Module) -> float | None:
    """Mean over the DFS layers of `model` (nested DFS layers included) of their offset
    entropy in nats (ln M: a uniform candidate mix); None without DFS layers."""
    layers = [m for _, m in fs_layers(model) if isinstance(m, DFSConv2d)]
    layers += [m for m in nested_layers(model) if m.dfs]
    if not layers:
        return None
    with torch.no_grad():
        return float(torch.stack([m.offset_entropy() for m in layers]).mean())


def set_temperature(model: nn.Module, t: float) -> None:
    """Set the softmax temperature of every DFS layer, nested ones included (annealing)."""
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t}")
    for _, m in fs_layers(model):
        if isinstance(m, DFSConv2d):
            m.temperature = t
    for m in nested_layers(model):
        m.temperature = float(t)


def set_grad_reduce(model: nn.Module, rule: str) -> None:
    """Give every FS/DFS layer of `model` the gradient rule `rule` ("mean" or "sum")."""
    if rule not in ("mean", "sum"):
        raise ValueError(f"grad_reduce must be 'mean' or 'sum', got {rule!r}")
    for _, m in fs_layers(model):
        m.grad_reduce = rule


def pointwise_conv(in_channels: int, out_channels: int, stride: int = 1,
                   fs: FSSpec | None = None) -> nn.Module:
    """The space's 1x1 conv (bias=False): nn.Conv2d when fs is None, else FS/DFS per `fs`."""
    if fs is None:
        return nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)
    if fs.dfs:
        return DFSConv2d(in_channels, out_channels, 1, stride, ratio=fs.ratio,
                         num_offsets=fs.num_offsets)
    return FSConv2d(in_channels, out_channels, 1, stride, ratio=fs.ratio)
