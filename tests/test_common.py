"""The shared package: config, data, loaders, checkpoints, run directories."""

from __future__ import annotations

import pytest
import torch

from common.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from common.config import apply_override, resolve_config
from common.data import Cutout, open_dataset, split_indices
from common.distributed import DistInfo
from common.errors import UserError
from common.loader import CyclingLoader, make_loader
from common.runlog import JsonlLog, is_run_dir, make_run_dir
from common.runtime import accuracy


def test_presets_resolve_and_smoke_inherits_paper():
    paper = resolve_config("search", "paper")
    smoke = resolve_config("search", "smoke")
    assert paper["weights"]["lr"] == 0.025 and paper["epochs"] == 50
    assert smoke["weights"]["momentum"] == paper["weights"]["momentum"]  # inherited from base
    assert smoke["epochs"] < paper["epochs"]


def test_override_types_and_yaml_booleans():
    cfg = resolve_config("search", "paper", ["weights.lr=1", "fs.mode=off", "arch.betas=[0.9, 0.99]"])
    assert cfg["weights"]["lr"] == 1.0 and isinstance(cfg["weights"]["lr"], float)
    assert cfg["fs"]["mode"] == "off"  # YAML would read `off` as False
    assert cfg["arch"]["betas"] == [0.9, 0.99]


def test_unknown_key_suggests_and_bad_preset_is_one_line():
    cfg = resolve_config("search", "paper")
    with pytest.raises(UserError, match="did you mean weights.lr"):
        apply_override(cfg, "weights.lrr=0.1")
    with pytest.raises(UserError, match="key=value"):
        apply_override(cfg, "epochs")
    with pytest.raises(UserError, match="unknown preset 'papr'.*paper"):
        resolve_config("search", "papr")


def test_run_dir_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    make_run_dir(out, "search", "x")
    (out / "checkpoint.pt").write_text("precious")
    with pytest.raises(UserError, match="--overwrite"):
        make_run_dir(out, "search", "x")
    assert (out / "checkpoint.pt").read_text() == "precious"
    make_run_dir(out, "search", "x", overwrite=True)
    assert not (out / "checkpoint.pt").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    # The guard lives in make_run_dir itself, so no caller can skip it.
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work")
    with pytest.raises(UserError, match="not a run directory"):
        make_run_dir(folder, "retrain", "x", overwrite=True)
    assert (folder / "thesis.txt").read_text() == "three years of work"
    # A folder a user keeps a config.yaml in is not a run either.
    (folder / "config.yaml").write_text("lr: 0.1")
    with pytest.raises(UserError, match="not a run directory"):
        make_run_dir(folder, "search", "x", overwrite=True)
    # A run created before the marker existed (config.yaml + a run's own files) may be replaced.
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.yaml").write_text("search: {}")
    (old / "log.jsonl").write_text("{}")
    assert make_run_dir(old, "search", "x", overwrite=True) == old
    assert not (old / "log.jsonl").exists() and is_run_dir(old)


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"epoch": 3, "w": torch.arange(4.0)}, path, kind="search")
    state = load_checkpoint(path, kind="search")
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    with pytest.raises(UserError, match="'search' checkpoint, not a 'retrain'"):
        load_checkpoint(path, kind="retrain")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not a DFSNet-DARTS checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_survives_a_checkpoint(tmp_path):
    import random

    torch.manual_seed(5)
    random.seed(5)
    save_checkpoint({"rng": rng_state()}, tmp_path / "r.pt", kind="t")
    expected = (torch.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_jsonl_log_truncates_on_resume(tmp_path):
    log = JsonlLog(tmp_path / "log.jsonl")
    for e in range(4):
        log.write({"epoch": e, "loss": float("nan") if e == 3 else 1.0})
    assert log.read()[3]["loss"] is None  # non-finite numbers stay valid JSON
    log.truncate(2)
    assert [r["epoch"] for r in log.read()] == [0, 1]


class _Range(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(i), i % 3


def test_cycling_loader_resumes_at_the_same_batch():
    def make():
        return CyclingLoader(make_loader(_Range(10), 3, DistInfo(), shuffle=True, seed=7))

    a = make()
    full = [next(a)[0].tolist() for _ in range(9)]  # crosses two pass boundaries
    b = make()
    for _ in range(5):
        next(b)
    state = b.state_dict()
    c = make()
    c.load_state_dict(state)
    assert [next(c)[0].tolist() for _ in range(4)] == full[5:]
    assert sorted(sum(full[:4], [])) == list(range(10))  # one pass covers the set once


def test_sharded_loaders_partition_each_pass():
    seen = []
    for rank in range(2):
        loader = make_loader(_Range(10), 5, DistInfo(rank, 2, rank), shuffle=True, seed=1)
        loader.sampler.set_epoch(3)
        seen += [int(i) for batch, _ in loader for i in batch]
    assert sorted(seen) == list(range(10))


def test_stratified_split_is_balanced_and_disjoint(cifar_subset):
    train, test, info = open_dataset(str(cifar_subset), download=False)
    assert info.num_classes == 10 and info.input_size == (32, 32)
    assert info.classes[0] == "airplane" and test is not None
    a, b = split_indices(train, 0.5, seed=0)
    assert not set(a) & set(b) and len(a) + len(b) == len(train)
    targets = torch.tensor(train.targets)
    counts_a = torch.bincount(targets[a], minlength=10)
    counts_b = torch.bincount(targets[b], minlength=10)
    assert (counts_a - counts_b).abs().max() <= 1
    assert 0.4 < info.mean[0] < 0.55  # CIFAR-like statistics measured from the images
    # A split of a subset stays inside it, still stratified, and is reproducible.
    c, d = split_indices(train, 0.25, seed=3, indices=b)
    assert set(c) | set(d) == set(b) and not set(c) & set(d)
    counts_c = torch.bincount(targets[c], minlength=10)
    assert ((counts_c - 0.25 * counts_b).abs() <= 0.5).all()
    assert (c, d) == split_indices(train, 0.25, seed=3, indices=b)


def test_dataset_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="neither one of cifar10"):
        open_dataset(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        open_dataset("cifar10", data_root=tmp_path, download=False)
    (tmp_path / "imgs").mkdir()
    with pytest.raises(UserError, match="no train/ folder"):
        open_dataset(str(tmp_path / "imgs"))


def test_cutout_zeroes_a_clipped_square():
    torch.manual_seed(0)
    out = Cutout(16)(torch.ones(3, 32, 32))
    zeros = (out == 0).all(dim=0).sum().item()
    assert 0 < zeros <= 256 and out.shape == (3, 32, 32)


def test_accuracy_topk():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05]])
    top1, top2 = accuracy(logits, torch.tensor([1, 2]), topk=(1, 2))
    assert top1 == 50.0 and top2 == 50.0


@pytest.mark.parametrize("argv", [["genotypes", "show", "DARTS_V2"],
                                  ["retrain", "--genotype", "DARTS_V2", "--summary"]])
def test_closed_stdout_ends_quietly(argv):
    """`python -m ... | head`: the reader is gone before the first write; no error, status 0."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen([sys.executable, "-m", *argv], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # long before the interpreter has imported torch
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and err == b"", err.decode()[-2000:]
