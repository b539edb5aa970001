"""torchrun / DDP plumbing: process-group set-up, rank queries, the DDP wrap and metric
reduction, for both pipelines."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op otherwise).

    gloo on CPU, nccl on CUDA; each CUDA process takes the GPU of its LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def wrap_ddp(model: torch.nn.Module, device: torch.device,
             ignore: Sequence[str] = ()) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel for this process's device; parameters named
    in `ignore` (the search's architecture weights, which its architect averages itself) are
    neither broadcast nor reduced by DDP."""
    if ignore:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(ignore))
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars over ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts
    them at the start of each training forward, so after the last one each rank holds its
    own batch's update; evaluating then would mix models."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for b in model.buffers():
        dist.broadcast(b, 0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of the gradients over ranks, for parameters that DDP does not manage (the
    architecture weights of a search)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
