"""Magnitude pruning of ShaRDNet's blend layers, no retraining (the paper's section 5.2): zero
the smallest x% of all 1x1 blend weights (one global threshold over every blend layer, by
torch.nn.utils.prune's global L1 pruning) and evaluate; a table and a plot of accuracy
against the fraction pruned.

    python -m retrain.evaluate RUN/model.pt --dataset D --prune-blend 0,10,20,30,40,50,60,70,80,90
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from common.errors import UserError
from space.models.shardnet import Blend

__all__ = ["parse_percents", "blend_layers", "blend_zeros", "check_blends", "prune_blend",
           "format_rows", "plot_rows"]


def parse_percents(text: str) -> list[float]:
    """'0,10,50' -> [0.0, 10.0, 50.0] (percentages in [0, 100]; one line if not)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= v <= 100 for v in values):
        raise UserError(f"--prune-blend {text!r}: give comma-separated percentages from 0 to "
                        "100, e.g. 0,10,20,50,90")
    return values


def blend_layers(model: nn.Module) -> list[nn.Conv2d]:
    """The model's blend layers (space.models.shardnet.Blend), each once."""
    return [m for m in model.modules() if isinstance(m, Blend)]


def check_blends(model: nn.Module, what: str) -> None:
    """One line unless `model` (`what` names it) has blend layers to prune."""
    if not blend_layers(model):
        raise UserError(f"{what} has no blend layers to prune; --prune-blend takes a ShaRDNet "
                        "SL network (sl-vgg, sl-resnet, sl-resnet34, sl-resnet50) trained with "
                        "--fs off")


def prune_blend(model: nn.Module, percent: float) -> nn.Module:
    """A copy of `model` with the `percent`% smallest-magnitude blend weights (over all blend
    layers together) set to zero; nothing else changes."""
    check_blends(model, f"the network ({type(model).__name__})")
    pruned = copy.deepcopy(model)
    layers = blend_layers(pruned)
    params = [(m, "weight") for m in layers]
    total = sum(m.weight.numel() for m in layers)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
                              amount=round(total * percent / 100))
    for m, name in params:
        prune.remove(m, name)  # the mask folded into the weight: a plain Conv2d again
    return pruned


def blend_zeros(model: nn.Module) -> float:
    """Percentage of blend weights that are exactly zero."""
    w = torch.cat([m.weight.detach().reshape(-1) for m in blend_layers(model)])
    return 100.0 * float((w == 0).sum()) / w.numel()


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["pruned %  blend zeros %   top-1 %   top-5 %     loss"]
    for r in rows:
        lines.append(f"{r['percent']:8g}  {r['zeros']:13.1f}  {r['top1']:8.2f}  {r['top5']:8.2f}"
                     f"  {r['loss']:7.4f}")
    return "\n".join(lines)


def plot_rows(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Top-1 accuracy against the percentage of blend weights pruned, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["percent"] for r in rows], [r["top1"] for r in rows], marker="o")
    ax.set_xlabel("blend weights pruned (%)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
