"""Shared fixtures. Real-data tests need ../shared/data/cifar10-subset and fail (never skip) without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get("DFS_CIFAR_SUBSET", ROOT.parent / "shared" / "data" / "cifar10-subset"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a GPU: skipped, with the reason, where torch sees none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run bench/device_check.sh on one)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: a second thread only adds wake-up
    latency, which on a shared machine (other jobs holding the cores) makes each op
    milliseconds slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cifar_subset() -> Path:
    if not (SUBSET / "train").is_dir():
        pytest.fail(
            f"real-data test needs the CIFAR-10 subset at {SUBSET} "
            "(put the shared folder beside the repo or set DFS_CIFAR_SUBSET)"
        )
    return SUBSET
