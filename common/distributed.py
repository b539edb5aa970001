"""torchrun / DDP plumbing: process-group set-up, rank queries, the DDP wrap and metric
reduction, for both pipelines."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.errors import UserError

T = TypeVar("T")


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


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def _is_stat(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def derived_buffers(model: torch.nn.Module) -> list[str]:
    """Names of the buffers that are not BatchNorm statistics: the FS layers' gather indices,
    read counts, shifts and offsets, and the like. Each rank builds them identically from the
    config (and DFS offsets only change by hardening, after which DDP is rebuilt), so
    broadcasting them (about 59 MB on the paper's supernet) every forward would only cost
    time; an in-place copy into `offsets` would also make every FS layer rebuild its index."""
    return [f"{m}.{n}" if m else n for m, mod in model.named_modules() if not _is_stat(mod)
            for n, _ in mod.named_buffers(recurse=False)]


def stat_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """The BatchNorm running statistics (and batch counters) of `model`."""
    return [b for mod in model.modules() if _is_stat(mod) for b in mod.buffers(recurse=False)]


def wrap_ddp(model: torch.nn.Module, device: torch.device,
             ignore: Sequence[str] = ()) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel for this process's device. DDP syncs the
    BatchNorm statistics only (`derived_buffers` stay out); parameters named in `ignore`
    (the search's architecture weights, which its architect averages itself) are neither
    broadcast nor reduced by DDP."""
    skip = list(ignore) + derived_buffers(model)
    if skip:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, skip)
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
    """Copy rank 0's BatchNorm running statistics to every rank, one broadcast per dtype.
    DDP broadcasts them at the start of each training forward, so after the last one each
    rank holds its own batch's update; evaluating then would mix models. The other buffers
    are the same on every rank (`derived_buffers`)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for b in stat_buffers(model):
        by_dtype.setdefault(b.dtype, []).append(b)
    for bufs in by_dtype.values():
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.broadcast(flat, 0)
        torch._foreach_copy_(bufs, [v.view_as(b) for v, b in zip(
            flat.split([b.numel() for b in bufs]), bufs, strict=True)])


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
