"""Distributed set-up steps that one rank must do first (download, create the run directory),
with its errors reported once and every rank stopping instead of waiting at a barrier."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from common.distributed import DistInfo
from common.errors import UserError

T = TypeVar("T")


def rank0_first(dist_info: DistInfo, fn: Callable[[bool], T], share: bool = False) -> T:
    """Run `fn(True)` on rank 0, then `fn(False)` on the other ranks (or, with `share`, hand
    them rank 0's result, which must be picklable). A UserError on rank 0 is raised there and
    makes the other ranks exit quietly with status 2, so the user reads one line."""
    if not dist_info.enabled:
        return fn(True)
    err, result = None, None
    if dist_info.is_main:
        try:
            result = fn(True)
        except UserError as e:
            err = str(e)
    box = [err, result if share else None]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        if dist_info.is_main:
            raise UserError(box[0])
        raise SystemExit(2)
    if dist_info.is_main:
        return result  # type: ignore[return-value]
    return box[1] if share else fn(False)  # type: ignore[return-value]


def ranks_agree(params: list[torch.Tensor]) -> bool:
    """Whether every rank holds bit-identical `params` (the architecture must not drift apart:
    its gradients are averaged, so the Adam updates are the same everywhere)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], t) for t in gathered)
