"""Retrain a genotype: the DARTS CIFAR/ImageNet evaluation networks with FS/DFS 1x1 convs,
training with checkpoints/resume/DDP, compressed export and stand-alone evaluation.

    from retrain import load_exported
    model = load_exported("runs/retrain-cifar10-.../model.pt")   # nn.Module, eval mode
    logits, _ = model(images)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn


def load_exported(path: str | os.PathLike) -> nn.Module:
    """The network an exported model.pt / model-wq.pt holds (see retrain.export); imported on
    use so that `import retrain` stays light."""
    from retrain.export import load_exported as _load

    return _load(path)


__all__ = ["load_exported"]
