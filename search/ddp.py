"""The search's distributed checks; `rank0_first` (download, create the run directory on one
rank first) is common.distributed's, shared with retrain, and importable from here."""

from __future__ import annotations

import torch
import torch.distributed as dist

from common.distributed import rank0_first

__all__ = ["rank0_first", "ranks_agree"]


def ranks_agree(params: list[torch.Tensor]) -> bool:
    """Whether every rank holds bit-identical `params` (the architecture must not drift apart:
    its gradients are averaged, so the Adam updates are the same everywhere)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], t) for t in gathered)
