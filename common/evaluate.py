"""Evaluation of a network on a dataset, the one function both pipelines use: the search on
its architecture half (every epoch), retrain on its test split (every epoch and on the
exported files).

Each rank takes every world_size-th image, with no padding, so the ranks' shards partition
the set exactly, and every rank first takes rank 0's buffers (BN statistics), so the summed
figures are those of a single-process evaluation of rank 0's model: the one checkpointed
and exported.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from common.distributed import DistInfo, all_reduce_sum, broadcast_buffers
from common.runlock import drop_inherited_locks
from common.runtime import autocast, to_memory_format


class _Shard(Sampler):
    """Every world_size-th index from `rank`, in order."""

    def __init__(self, n: int, dist: DistInfo) -> None:
        self.idx = list(range(dist.rank, n, dist.world_size))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self) -> int:
        return len(self.idx)


def split_logits(out: torch.Tensor | tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, auxiliary logits or None) of a network's output: the DARTS networks return
    the pair, the registry's other networks their logits alone."""
    if isinstance(out, tuple):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
             dist: DistInfo | None = None, amp: bool = False, channels_last: bool = False,
             workers: int = 0) -> dict[str, float]:
    """Mean loss, top-1 and top-5 accuracy (percent) and the image count of `model` on
    `dataset`. A model may return its logits or a tuple whose first item they are (retrain's
    networks also return the auxiliary head's). With a distributed `dist`, each rank takes
    its shard and the sums are reduced over ranks. The model is left in eval mode."""
    dist = dist or DistInfo()
    if dist.enabled:
        broadcast_buffers(model)
    model.eval()
    # Its own generator: a loader without one draws a seed from the global RNG per pass.
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_Shard(len(dataset), dist),
                        num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator(), worker_init_fn=drop_inherited_locks)
    # Summed on the device in float64 (the same additions as Python floats) and read once at
    # the end: a read per batch would make the CPU wait for the GPU after every batch.
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, top1, top5 correct
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = to_memory_format(x, channels_last)
        with autocast(device, amp):
            out = model(x)
        logits = split_logits(out)[0].float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top.eq(y.view(-1, 1))
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                             hit[:, :1].any(1).sum().double(), hit.any(1).sum().double()])
        n += y.shape[0]
    figures = [*sums.tolist(), float(n)]
    # Only a distributed evaluation reduces: rank 0 alone evaluating a model must not wait
    # for ranks that are not evaluating.
    loss, c1, c5, n = all_reduce_sum(figures, device) if dist.enabled else figures
    n = max(n, 1)
    return {"loss": loss / n, "top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "count": int(n)}
