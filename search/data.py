"""The search's data: the weights and architecture halves of the training set, and loaders
whose augmentation is reproducible whatever the number of workers or the resume point.

Random augmentation is seeded per sample from (seed, pass, index): the images a batch
holds, and how they are cropped and flipped, depend only on the seed, the pass number and
the position in the pass. A run resumed mid-pass (the validation half is cycled) or run
with another `data.workers` count sees exactly the same tensors as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from common.data import (
    DatasetInfo,
    TransformedSubset,
    balanced_subset,
    make_transforms,
    split_indices,
)
from common.distributed import DistInfo
from common.errors import UserError
from common.loader import ResumableSampler, worker_seed_init

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, pass, index) over seeds


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
        torch.manual_seed(s)
        random.seed(s)
        try:
            return self.dataset[i]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)


def make_search_loader(
    dataset: Dataset, batch_size: int, dist_info: DistInfo, *, shuffle: bool, seed: int,
    workers: int = 0, drop_last: bool = False, pin_memory: bool = False,
) -> DataLoader:
    """Like common.loader.make_loader (call `loader.sampler.set_epoch(e)` per pass; works with
    CyclingLoader), with per-sample seeded augmentation."""
    sampler = PassTaggedSampler(dataset, dist_info, shuffle, seed, drop_last)
    return DataLoader(
        SeededAugment(dataset, seed), batch_size=batch_size, sampler=sampler,
        num_workers=workers, drop_last=drop_last, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=worker_seed_init if workers > 0 else None,
        persistent_workers=False,  # workers must be re-forked per pass (see module doc)
    )


@dataclass
class SearchData:
    """The loaders of one search and the figures the run reports about them."""

    info: DatasetInfo
    train: DataLoader  # weights half, training augmentation
    valid: DataLoader  # architecture half, training augmentation (cycled for arch steps)
    valid_eval: DataLoader  # architecture half, evaluation transform (per-epoch metrics)
    num_train: int
    num_valid: int


def build_search_data(
    train_set: Dataset, info: DatasetInfo, cfg: dict, dist_info: DistInfo, pin_memory: bool = False,
) -> SearchData:
    """Split the training set (capped to `data.max_images`, class-stratified) into the weights
    and architecture halves (`train_portion`) and build their loaders."""
    seed = int(cfg["seed"])
    indices = list(range(len(train_set)))
    cap = cfg["data"].get("max_images")
    if cap is not None:
        cap = int(cap)
        if cap < 2 * info.num_classes:
            raise UserError(f"data.max_images={cap} is too small: it needs at least 2 images per "
                            f"class ({2 * info.num_classes}) for the two search halves")
        indices = balanced_subset(train_set, indices, cap, seed)
    w_idx, a_idx = split_indices(train_set, float(cfg["train_portion"]), seed, indices)
    bs, workers = int(cfg["batch_size"]), int(cfg["data"]["workers"])
    if min(len(w_idx), len(a_idx)) < bs * dist_info.world_size:
        raise UserError(
            f"each search half ({len(w_idx)} and {len(a_idx)} images) needs at least one batch of "
            f"{bs} per process; lower --batch-size or use more images"
        )
    aug, plain = make_transforms(info, train=True), make_transforms(info, train=False)
    kw = dict(batch_size=bs, dist_info=dist_info, workers=workers, pin_memory=pin_memory)
    # drop_last: the architecture and weight steps see full batches, as in DARTS's loaders
    # for all but the last batch; a 3-image tail batch would only add noise to BatchNorm.
    train = make_search_loader(TransformedSubset(train_set, aug, w_idx), shuffle=True,
                               seed=seed, drop_last=True, **kw)
    valid = make_search_loader(TransformedSubset(train_set, aug, a_idx), shuffle=True,
                               seed=seed + 1, drop_last=True, **kw)
    valid_eval = make_search_loader(TransformedSubset(train_set, plain, a_idx), shuffle=False,
                                    seed=seed + 2, **kw)
    return SearchData(info, train, valid, valid_eval, len(w_idx), len(a_idx))
