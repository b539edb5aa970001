"""What the log says about a search learning: alpha entropy per edge, how many derived edges
changed since the epoch before, and DFS offsets that move when given their own rate."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from image_folders import make_image_folder

from genotypes import load_genotype
from genotypes.derive import changed_edges, edge_entropy
from search.cli import main

TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0", "--set", "runtime.plot=false"]


def test_edge_entropy_and_changed_edges():
    uniform = np.full((14, 8), 1 / 8)
    np.testing.assert_allclose(edge_entropy(uniform), math.log(8), rtol=1e-12)
    sharp = np.eye(8)[np.arange(14) % 8]
    np.testing.assert_allclose(edge_entropy(sharp), 0.0, atol=1e-12)
    half = np.zeros((14, 8))
    half[:, :2] = 0.5
    np.testing.assert_allclose(edge_entropy(half), math.log(2), rtol=1e-12)
    np.testing.assert_allclose(edge_entropy(np.zeros((14, 8))), math.log(8))  # logits: softmax
    a = load_genotype("DARTS_V2")
    normal, reduce = list(a.normal), list(a.reduce)
    normal[0] = ("dil_conv_5x5", normal[0][1])  # another op
    reduce[5] = (reduce[5][0], 0 if reduce[5][1] else 1)  # another input
    b = dataclasses.replace(a, normal=tuple(normal), reduce=tuple(reduce))
    assert changed_edges(a, a) == 0 and changed_edges(a, b) == 2


def _log(run) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_offset_learning_rate_scale_moves_the_offsets(tmp_path):
    """Tiny search, 2 epochs (6 architecture steps at arch.lr 3e-3): offsets at 100x arch.lr
    (no decay) end with a clearly lower offset entropy than DFSNet's recipe (scale 1), whose
    offsets barely leave their uniform start."""
    data = make_image_folder(tmp_path / "imgs")
    ends = {}
    for scale in (1, 100):
        run = tmp_path / f"run-{scale}"
        main([str(data), *TINY, "--epochs", "2", "--set", f"fs.offset_lr_scale={scale}",
              "--set", "arch.lr=3e-3", "--out", str(run)])
        log = _log(run)
        ends[scale] = log[-1]["offset_entropy"]
        assert log[0]["changed_edges"] is None and isinstance(log[1]["changed_edges"], int)
        for r in log:
            assert 0.0 < r["alpha_entropy"]["normal"] <= math.log(8) + 1e-9
    assert ends[100] < ends[1] - 0.05


def _search_data(root, augment: bool):
    """The search's data for the image folder `root` at preset smoke with `arch.augment`."""
    from common.config import resolve_config
    from common.data import open_dataset
    from common.distributed import DistInfo
    from search.data import build_search_data

    cfg = resolve_config("search", "smoke", [f"arch.augment={str(augment).lower()}",
                                             "batch_size=8", "data.workers=0"])
    train_set, _, info = open_dataset(str(root), cfg.data.root, False, cfg.data.input_size)
    return build_search_data(train_set, info, cfg, DistInfo())


def test_arch_augment_keeps_the_architecture_batches_order(tmp_path):
    """arch.augment changes the transform only: the same images in the same batches (what
    bench/arch_snr.py --plain relies on to compare the two on paired batches)."""
    import torch

    root = make_image_folder(tmp_path / "data", per_class=16)
    orders = []
    for augment in (True, False):
        data = _search_data(root, augment)
        # the sampler's keys name the images of a pass; then the labels as loaded
        orders.append((list(data.valid.sampler), torch.cat([y for _, y in data.valid])))
    assert orders[0][0] == orders[1][0]
    assert torch.equal(orders[0][1], orders[1][1])


@pytest.mark.parametrize("augment", [True, False])
def test_arch_augment_chooses_the_architecture_batches_transform(tmp_path, augment):
    """arch.augment false: the architecture steps see the architecture half exactly as the
    evaluation transform gives it; true (DARTS): randomly cropped and flipped copies."""
    import torch

    from common.data import TransformedSubset

    data = _search_data(make_image_folder(tmp_path / "data", per_class=16), augment)

    def nearest(loader, plain_set):
        """Each loaded image's distance to the nearest evaluation-transform image."""
        plain = torch.stack([plain_set[i][0] for i in range(len(plain_set))])
        seen = torch.cat([x for x, _ in loader])
        return torch.cdist(seen.flatten(1), plain.flatten(1),
                           compute_mode="donot_use_mm_for_euclid_dist").min(1).values

    arch = nearest(data.valid, data.valid_eval)
    if augment:
        assert (arch > 1e-3).float().mean() > 0.5
    else:
        assert arch.max() < 1e-5
    # the weights half trains on augmented images either way
    w = data.train.dataset.dataset  # SeededAugment over the weights half's TransformedSubset
    weights = nearest(data.train, TransformedSubset(w.dataset, data.valid_eval.transform, w.indices))
    assert (weights > 1e-3).float().mean() > 0.5
