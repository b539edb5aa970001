"""The train and test splits of a retrain run, shared with `retrain.evaluate` so that an
exported model is evaluated on exactly the images the run reported.

A dataset without a test/ (or val/) folder is split 90/10, class-stratified, with a fixed
seed. `train_limit` / `test_limit` take a class-balanced subset (quick runs, CI).
"""

from __future__ import annotations

from typing import Any

from common.data import (
    DatasetInfo,
    TransformedSubset,
    balanced_subset,
    make_transforms,
    split_indices,
)
from common.errors import UserError

#: Seed of the held-out split and of the limited subsets: fixed, so evaluation reproduces them.
SPLIT_SEED = 0
HOLDOUT = 0.1


def splits(train, test) -> tuple[Any, list[int] | None, Any, list[int] | None]:
    """(train set, its indices, test set, its indices); holds out HOLDOUT of train if no test."""
    if test is not None:
        return train, None, test, None
    if len(train) < 20:
        raise UserError(f"the dataset has only {len(train)} images and no test/ folder; add one")
    tr, te = split_indices(train, 1.0 - HOLDOUT, SPLIT_SEED)
    return train, tr, train, te


def test_set(train, test, info: DatasetInfo, limit: int | None) -> TransformedSubset:
    _, _, ds, idx = splits(train, test)
    return TransformedSubset(ds, make_transforms(info, train=False),
                             balanced_subset(ds, idx, limit, SPLIT_SEED))


def train_set(train, test, info: DatasetInfo, limit: int | None, cutout: int) -> TransformedSubset:
    ds, idx, _, _ = splits(train, test)
    return TransformedSubset(ds, make_transforms(info, train=True, cutout=int(cutout or 0)),
                             balanced_subset(ds, idx, limit, SPLIT_SEED))
