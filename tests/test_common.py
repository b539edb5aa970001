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


def test_presets_resolve_and_smoke_inherits_paper():
    paper = resolve_config("search", "paper")
    smoke = resolve_config("search", "smoke")
    assert paper.weights.lr == 0.025 and paper.epochs == 50
    assert smoke.weights.momentum == paper.weights.momentum  # inherited from base
    assert smoke.epochs < paper.epochs


def test_override_types_and_yaml_booleans():
    cfg = resolve_config("search", "paper", ["weights.lr=1", "fs.mode=off", "arch.betas=[0.9, 0.99]"])
    assert cfg.weights.lr == 1.0 and isinstance(cfg.weights.lr, float)
    assert cfg.fs.mode == "off"  # YAML would read `off` as False
    assert cfg.arch.betas == [0.9, 0.99]


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
    # Nor is a run from before the marker: names alone never make a folder deletable.
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.yaml").write_text("search: {}")
    (old / "log.jsonl").write_text("{}")
    with pytest.raises(UserError, match="not a run directory"):
        make_run_dir(old, "search", "x", overwrite=True)
    assert (old / "log.jsonl").exists() and not is_run_dir(old)


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


def test_evaluate_topk_counts():
    """common.evaluate's top-1/top-5 (the only accuracy code the pipelines use)."""
    from common.evaluate import evaluate

    logits = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # target 1: top-1
                           [0.8, 0.15, 0.05, 0.04, 0.03, 0.0]])  # target 5: ranked last

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[x.flatten().long()], None

    data = [(torch.tensor([0.0]), 1), (torch.tensor([1.0]), 5)]
    r = evaluate(Fixed(), data, 2, torch.device("cpu"))
    assert r["top1"] == 50.0 and r["top5"] == 50.0 and r["count"] == 2


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


# --- what a new user hits on the first day ---------------------------------------------------

def test_cpu_budget_fits_the_cores(monkeypatch):
    from common.cpu import cpu_budget

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores in range(1, 17):
        for device, side in (("cpu", 32), ("cpu", 224), ("cuda", 32), ("cuda", 224)):
            b = cpu_budget(None, None, device, side, cores=cores)
            assert b.threads >= 1 and b.auto
            assert b.threads + b.workers <= cores, (cores, device, side, b)
    # Small images on a CPU: no workers, every core computes (2 cores: as the smoke preset
    # ran before, so its figures do not change).
    b = cpu_budget(None, None, "cpu", 32, cores=2)
    assert (b.threads, b.workers) == (2, 0) and b.describe() == "2 threads, 0 loader workers"
    assert (cpu_budget(None, None, "cpu", 224, cores=8).workers,
            cpu_budget(None, None, "cpu", 224, cores=8).threads) == (1, 7)
    assert cpu_budget(None, None, "cuda", 32, cores=8).workers == 2
    # Given values win; threads given are not "auto" (no busy-machine hint).
    b = cpu_budget(3, 2, "cpu", 32, cores=2)
    assert (b.threads, b.workers, b.auto) == (3, 2, False)
    assert cpu_budget(None, 1, "cpu", 32, cores=2).threads == 1
    # torchrun processes on one machine share its cores.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_budget(None, None, "cpu", 32, cores=4).threads == 2


def test_busy_machine_hint(monkeypatch):
    import os

    from common import cpu

    cores = os.cpu_count()
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 1)
    note = cpu.busy_note(cpu.CpuBudget(cores, 0, cores))
    if cores >= 2:
        assert note and f"--threads {cores - 1}" in note and "1 other process" in note
    assert cpu.busy_note(cpu.CpuBudget(cores, 0, cores, auto=False)) is None  # --threads given
    assert cpu.busy_note(cpu.CpuBudget(1, 0, cores)) is None  # nothing better to suggest
    monkeypatch.setattr(cpu, "busy_cores", lambda: 0)
    assert cpu.busy_note(cpu.CpuBudget(cores, 0, cores)) is None


def test_openmp_wait_policy_follows_the_load_and_the_user():
    from common import cpu

    assert cpu.openmp_wait_policy(0) is None  # free cores: OpenMP's spinning default
    assert cpu.openmp_wait_policy(None) is None  # load unknown (not Linux)
    assert cpu.openmp_wait_policy(1) == "PASSIVE"
    assert cpu.openmp_wait_policy(0, processes=2) == "PASSIVE"  # torchrun ranks share cores


@pytest.mark.slow
def test_entry_points_choose_the_openmp_policy_before_torch_loads():
    """OMP_WAIT_POLICY is read once, when torch loads OpenMP: each entry point must set it
    first, from the load it sees (a spinning neighbour here), and leave a user's own choice
    alone."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spy = ("import builtins, os, runpy, sys\n"
           "real = builtins.__import__\n"
           "def spy(name, *a, **k):\n"
           "    if name == 'torch' and 'torch' not in sys.modules:\n"
           "        print('policy', os.environ.get('OMP_WAIT_POLICY'), flush=True)\n"
           "    return real(name, *a, **k)\n"
           "builtins.__import__ = spy\n"
           "sys.argv = ['x', '--help']\n"
           "runpy.run_module(sys.argv.pop(), run_name='__main__', alter_sys=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        for module in ("search", "retrain", "retrain.evaluate"):
            code = spy.replace("sys.argv.pop()", repr(module))
            r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.stdout.splitlines()[0] == "policy PASSIVE", (module, r.stdout, r.stderr[-2000:])
            r = subprocess.run([sys.executable, "-c", code], cwd=root,
                               env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                               capture_output=True, text=True, timeout=120)
            assert r.stdout.splitlines()[0] == "policy ACTIVE", (module, r.stdout)
    finally:
        neighbour.kill()
        neighbour.wait()


def test_retrain_preset_of_a_search_preset(tmp_path):
    from common.config import preset_with_section

    assert preset_with_section("smoke", "retrain") == "smoke"
    assert preset_with_section("paper", "retrain") == "paper"
    run_config = tmp_path / "config.yaml"  # what a search run writes: no retrain section
    run_config.write_text("base: paper\ndataset: x\npreset: smoke\nsearch: {epochs: 1}\n")
    assert preset_with_section(str(run_config), "retrain") == "smoke"
    own = tmp_path / "mine.yaml"
    own.write_text("search: {epochs: 1}\n")
    assert preset_with_section(str(own), "retrain") is None


def test_ratio_and_dataset_name_errors():
    from common.config import check_fs_ratio

    assert check_fs_ratio(2) == 2.0
    for bad in (0.5, "2", True, float("nan"), float("inf")):
        with pytest.raises(UserError, match=r"FS ratio .* is invalid: it must be a number >= 1"):
            check_fs_ratio(bad)
    with pytest.raises(UserError, match=r"'cifr10' .*did you mean cifar10\?"):
        open_dataset("cifr10")
    with pytest.raises(UserError, match="check the path$"):
        open_dataset("runs/cifr10")


def test_command_line_records_the_launcher(monkeypatch):
    from common.runlog import LAUNCHER_ENV, command_line

    monkeypatch.delenv(LAUNCHER_ENV, raising=False)
    assert command_line("search", ["x", "--epochs", "1"]) == ["python", "-m", "search", "x",
                                                             "--epochs", "1"]
    monkeypatch.setenv(LAUNCHER_ENV, "./run_search.sh")
    assert command_line("search", ["x"]) == ["./run_search.sh", "x"]


def test_interrupt_and_corrupt_checkpoint_messages(tmp_path):
    from common.checkpoint import load_resume_checkpoint
    from common.runlog import interrupted_message

    msg = interrupted_message(tmp_path, "latest.pt")
    assert "no checkpoint yet" in msg and f"--out {tmp_path} --overwrite" in msg
    assert "continue with --resume" not in msg
    save_checkpoint({"epoch": 3}, tmp_path / "best.pt", "retrain")
    (tmp_path / "latest.pt").write_bytes(b"not a checkpoint")
    assert f"continue with --resume {tmp_path}" in interrupted_message(tmp_path, "latest.pt")
    with pytest.raises(UserError) as e:
        load_resume_checkpoint(tmp_path, "latest.pt", "retrain", older="best.pt")
    text = str(e.value)
    assert "latest.pt is not a readable checkpoint" in text and "use another file" not in text
    assert f"cp {tmp_path / 'best.pt'} {tmp_path / 'latest.pt'}" in text
    assert "epoch 4" in text and "--overwrite" in text
    (tmp_path / "best.pt").write_bytes(b"broken too")
    with pytest.raises(UserError, match=r"checkpoint .*; start it again .* --overwrite$"):
        load_resume_checkpoint(tmp_path, "latest.pt", "retrain", older="best.pt")


def test_exponent_without_a_dot_is_a_number():
    """YAML 1.1 reads 3e-3 as text; as an override it is the number a user means."""
    cfg = resolve_config("search", "paper")
    apply_override(cfg, "arch.lr=3e-3")
    apply_override(cfg, "weights.lr=1E-2")
    assert cfg.arch.lr == 0.003 and cfg.weights.lr == 0.01
    apply_override(cfg, "fs.mode=off")  # text stays text
    assert cfg.fs.mode == "off"
