"""Resumable, deterministic data loading, the same for the search and retrain.

Every pass over a dataset is shuffled by a generator seeded from (seed, pass), and sharded
over ranks, so the order depends only on the seed and the pass number: a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would.

Random augmentation is seeded per sample from (seed, pass, index) (`SeededAugment`): the
images a batch holds, and how they are cropped, flipped and cut out, depend only on the
seed, the pass number and the position in the pass. A run resumed mid-pass (the search's
validation half is cycled) or run with another `data.workers` count sees exactly the same
tensors as an uninterrupted one, and the training process's own RNG streams (drop path,
dropout) do not depend on how many images were loaded in it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from common.distributed import DistInfo
from common.runlock import drop_inherited_locks

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, pass, index) over seeds


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


class PassTaggedSampler(ResumableSampler):
    """A ResumableSampler that yields (pass, index) pairs, so that a SeededAugment dataset
    (even a copy of it inside a worker process) knows which pass a sample belongs to."""

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((epoch, i) for i in super().__iter__())


class SeededAugment(Dataset):
    """Fetches `dataset[i]` with torch's and Python's RNGs seeded from (seed, pass, i), and
    restores the caller's RNG state afterwards (so the main process's streams do not depend
    on how many images were loaded in it)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        s = ((self.seed * _MIX + epoch) * _MIX + i) % (2**63)
        torch_state, py_state = torch.get_rng_state(), random.getstate()
        # The CPU generator only (the transforms draw from it): torch.manual_seed would also
        # reseed CUDA's, which this does not restore (drop path draws there).
        torch.default_generator.manual_seed(s)
        random.seed(s)
        try:
            return self.dataset[i]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)


def make_loader(
    dataset: Dataset, batch_size: int, dist_info: DistInfo, *, shuffle: bool, seed: int,
    workers: int = 0, drop_last: bool = False, pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over a PassTaggedSampler with per-sample seeded augmentation (see the
    module doc); call `loader.sampler.set_epoch(e)` each pass (CyclingLoader does)."""
    sampler = PassTaggedSampler(dataset, dist_info, shuffle, seed, drop_last)
    # persistent_workers: each pass (every epoch; every cycle of the search's validation
    # half) reuses the workers instead of starting new ones; the sampler is read afresh
    # at each pass, and augmentation depends on (seed, pass, index) only.
    return DataLoader(
        SeededAugment(dataset, seed), batch_size=batch_size, sampler=sampler,
        num_workers=workers, drop_last=drop_last, pin_memory=pin_memory,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
        worker_init_fn=drop_inherited_locks,
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

