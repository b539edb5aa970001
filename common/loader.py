"""Resumable, deterministic data loading.

Every pass over a dataset is shuffled by a generator seeded from (seed, pass), and sharded
over ranks, so the order depends only on the seed and the pass number: a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler

from common.distributed import DistInfo


class ResumableSampler(DistributedSampler):
    """DistributedSampler (works for one process too) that can start a pass part-way through."""

    def __init__(self, dataset, dist_info: DistInfo, shuffle: bool, seed: int, drop_last: bool):
        super().__init__(
            dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
            shuffle=shuffle, seed=seed, drop_last=drop_last,
        )
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return super().__len__() - self.skip


def make_loader(
    dataset, batch_size: int, dist_info: DistInfo, *, shuffle: bool, seed: int,
    workers: int = 0, drop_last: bool = False, pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over a ResumableSampler; call `loader.sampler.set_epoch(e)` each pass."""
    sampler = ResumableSampler(dataset, dist_info, shuffle, seed, drop_last)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        drop_last=drop_last, pin_memory=pin_memory, generator=g,
        worker_init_fn=worker_seed_init if workers > 0 else None,
    )


class CyclingLoader:
    """An endless iterator over a loader, pass after pass, whose position can be saved and
    restored (the search's validation batches cycle through the validation half this way)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.passes = 0
        self.position = 0
        self._it: Iterator | None = None

    def _start(self) -> None:
        sampler: ResumableSampler = self.loader.sampler  # type: ignore[assignment]
        sampler.set_epoch(self.passes)
        sampler.skip = self.position * self.loader.batch_size
        self._it = iter(self.loader)

    def __iter__(self) -> CyclingLoader:
        return self

    def __next__(self):
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            self.passes += 1
            self.position = 0
            self._start()
            batch = next(self._it)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.passes, self.position = int(state["passes"]), int(state["position"])
        self._it = None


def worker_seed_init(worker_id: int) -> None:
    """Seed Python's RNG in a DataLoader worker from torch's per-worker seed (torch seeds its
    own RNG per worker already; random-based transforms need this too)."""
    import random

    random.seed(torch.initial_seed() % 2**32)
