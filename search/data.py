"""The search's data: the weights and architecture halves of the training set, and their
loaders (common.loader.make_loader: augmentation seeded per sample, so reproducible whatever
the number of workers or the resume point)."""

from __future__ import annotations

from dataclasses import dataclass

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
from common.loader import make_loader
from search.settings import SearchConfig


@dataclass
class SearchData:
    """The loaders of one search and the figures the run reports about them."""

    info: DatasetInfo
    train: DataLoader  # weights half, training augmentation
    valid: DataLoader  # architecture half, for the arch steps (cycled; arch.augment)
    valid_eval: Dataset  # architecture half, evaluation transform (common.evaluate, per epoch)
    num_train: int
    num_valid: int


def build_search_data(
    train_set: Dataset, info: DatasetInfo, cfg: SearchConfig, dist_info: DistInfo, pin_memory: bool = False,
) -> SearchData:
    """Split the training set (capped to `data.max_images`, class-stratified) into the weights
    and architecture halves (`train_portion`) and build their loaders."""
    seed = int(cfg.seed)
    indices = list(range(len(train_set)))
    cap = cfg.data.max_images
    if cap is not None:
        cap = int(cap)
        if cap < 2 * info.num_classes:
            raise UserError(f"data.max_images={cap} is too small: it needs at least 2 images per "
                            f"class ({2 * info.num_classes}) for the two search halves")
        indices = balanced_subset(train_set, indices, cap, seed)
    w_idx, a_idx = split_indices(train_set, float(cfg.train_portion), seed, indices)
    bs, workers = int(cfg.batch_size), int(cfg.data.workers)
    if min(len(w_idx), len(a_idx)) < bs * dist_info.world_size:
        raise UserError(
            f"each search half ({len(w_idx)} and {len(a_idx)} images) needs at least one batch of "
            f"{bs} per process; lower --batch-size or use more images"
        )
    aug, plain = make_transforms(info, train=True), make_transforms(info, train=False)
    kw = dict(batch_size=bs, dist_info=dist_info, workers=workers, pin_memory=pin_memory)
    # drop_last: the architecture and weight steps see full batches, as in DARTS's loaders
    # for all but the last batch; a 3-image tail batch would only add noise to BatchNorm.
    train = make_loader(TransformedSubset(train_set, aug, w_idx), shuffle=True,
                        seed=seed, drop_last=True, **kw)
    # arch.augment false: the upper level's loss on the images as the test set has them
    # (bench/arch_snr.py measures the alpha gradient's signal-to-noise either way).
    arch_tf = aug if cfg.arch.augment else plain
    valid = make_loader(TransformedSubset(train_set, arch_tf, a_idx), shuffle=True,
                        seed=seed + 1, drop_last=True, **kw)
    valid_eval = TransformedSubset(train_set, plain, a_idx)
    return SearchData(info, train, valid, valid_eval, len(w_idx), len(a_idx))
