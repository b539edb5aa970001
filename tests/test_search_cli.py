"""The search command line: its one-line errors (exit 2, nothing lost), the config plumbing,
a complete tiny run directory, and NaN handling."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_exits import one_line_exit
from image_folders import make_image_folder
from run_files import run_files_outside_the_list

from common.checkpoint import load_checkpoint
from common.runlog import make_run_dir
from search.cli import main
from search.outputs import retrain_command
from search.trainer import SearchTrainer

ROOT = Path(__file__).resolve().parents[1]
# A small, fast search: 4 channels, 5 cells, 16x16 images, 8-image batches, 1 thread.
TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "imgs")


def _fail(argv: list[str], capsys) -> str:
    return one_line_exit(main, argv, capsys)


def test_bad_preset(folder, capsys):
    err = _fail([str(folder), "--preset", "nosuch"], capsys)
    assert "unknown preset 'nosuch'" in err and "paper" in err and "smoke" in err


def test_unknown_set_key_suggests(folder, capsys):
    err = _fail([str(folder), "--set", "weigths.lr=0.1"], capsys)
    assert "unknown config key 'weigths.lr'" in err and "weights.lr" in err


def test_bad_value_is_one_line(folder, capsys):
    err = _fail([str(folder), "--set", "arch.order=third"], capsys)
    assert "arch.order" in err and "first, second" in err
    err = _fail([str(folder), "--set", "epochs=abc"], capsys)
    assert "epochs='abc'" in err and "integer" in err


def test_missing_dataset_path(tmp_path, capsys):
    err = _fail([str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")], capsys)
    assert "nowhere" in err and not (tmp_path / "run").exists()


def test_cifar_without_data_or_network(tmp_path, capsys):
    err = _fail(["cifar10", "--data-root", str(tmp_path / "d"), "--no-download",
                 "--out", str(tmp_path / "run")], capsys)
    assert "cifar-10-batches-py" in err and str(tmp_path / "d") in err
    assert not (tmp_path / "run").exists()


def test_overwrite_refuses_a_non_run_directory(folder, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    err = _fail([str(folder), "--out", str(precious), "--overwrite"], capsys)
    assert "not a run directory" in err and (precious / "thesis.tex").exists()


def test_overwrite_keeps_old_run_when_input_is_bad(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", "search", "x")
    (run / "config.yaml").write_text("search: {}\n")
    _fail([str(tmp_path / "missing"), "--out", str(run), "--overwrite"], capsys)
    assert (run / "config.yaml").exists()  # the dataset is checked before anything is deleted


def test_second_order_refused_under_ddp(folder, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    err = _fail([str(folder), "--order", "second"], capsys)
    assert "second-order" in err and "--order first" in err


def test_resume_errors(tmp_path, capsys):
    err = _fail(["--resume", str(tmp_path)], capsys)
    assert "not a search run directory" in err
    err = _fail([], capsys)
    assert "DATASET" in err


def test_print_config_applies_flags_in_order(capsys):
    main(["--print-config", "--set", "search.epochs=7", "--set", "fs.temperature.end=0.5",
          "--fs", "off", "--order", "second", "--ratio", "4"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["epochs"] == 7 and cfg["fs"]["mode"] == "off" and cfg["arch"]["order"] == "second"
    assert cfg["fs"]["ratio"] == 4.0 and cfg["fs"]["temperature"]["end"] == 0.5
    assert cfg["weights"]["lr"] == 0.025 and cfg["batch_size"] == 64  # paper preset defaults


@pytest.mark.slow
def test_tiny_run_directory(folder, tmp_path, capsys):
    run = tmp_path / "run"
    main([str(folder), *TINY, "--epochs", "2", "--out", str(run), "--set", "runtime.draw_every=1",
          "--set", "fs.temperature.start=2.0", "--set", "fs.temperature.end=0.5",
          "--set", "arch.warmup_epochs=1", "--order", "second"])
    out = capsys.readouterr().out
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    keys = {"epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "alphas_normal",
            "alphas_reduce", "offset_entropy", "temperature", "genotype", "seconds", "images_per_s",
            "threads"}
    assert [r["epoch"] for r in records] == [0, 1] and keys <= set(records[0])
    assert records[0]["threads"] == 1  # --threads 1: nothing to take away
    assert [r["temperature"] for r in records] == [2.0, 0.5]  # cosine from start to end
    assert records[0]["arch_loss"] is None and records[1]["arch_loss"] > 0  # warm-up epoch
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert records[0]["lr"] == saved["search"]["weights"]["lr"] > records[1]["lr"]  # cosine
    a = torch.tensor(records[-1]["alphas_normal"])
    assert a.shape == (14, 8) and torch.allclose(a.sum(1), torch.ones(14), atol=1e-5)
    assert isinstance(records[-1]["offset_entropy"], float)
    for name in ("genotype.json", "genotypes/epoch-000.json", "genotypes/epoch-001.json",
                 "checkpoint.pt", "config.yaml", "cells/normal.png", "cells/reduce.png",
                 "cells/epoch-000-normal.png", "plots/curves.png"):
        assert (run / name).exists(), name
    assert run_files_outside_the_list(run) == []  # --overwrite can clear all it wrote
    g = json.loads((run / "genotype.json").read_text())
    assert g == records[-1]["genotype"]
    assert saved["dataset"] == str(folder) and "--epochs 2" in saved["command"]
    assert saved["search"]["epochs"] == 2 and saved["search"]["arch"]["order"] == "second"
    # The retrain hint carries the preset, the --threads the search was given, and this
    # interpreter's path (no venv to activate).
    hint = shlex.join([sys.executable, "-m", "retrain", "--genotype", str(run / "genotype.json"),
                       "--dataset", str(folder), "--preset", "smoke", "--threads", "1"])
    assert f"retrain it: {hint}\n" in out
    assert "genotype: Genotype(normal=[" in out and "FSSpec" not in out
    assert "\nfs: ratio 2, DFS, 4 offsets\n" in out
    assert "on cpu with 1 thread, 0 loader workers; run dir" in out  # the start-up line
    # The saved config is a preset that repeats the run.
    main([str(folder), "--preset", str(run / "config.yaml"), "--print-config"])
    assert yaml.safe_load(capsys.readouterr().out) == saved["search"]


@pytest.mark.slow
def test_nan_stops_and_keeps_last_good_checkpoint(folder, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real = SearchTrainer.weight_loss

    def poisoned(self, logits, y):
        loss = real(self, logits, y)
        return loss * float("nan") if self.scheduler.last_epoch >= 1 else loss

    monkeypatch.setattr(SearchTrainer, "weight_loss", poisoned)
    err = _fail([str(folder), *TINY, "--epochs", "2", "--out", str(run), "--set", "runtime.plot=false"],
                capsys)
    assert "diverged at epoch 2/2, batch 1" in err and "--resume" in err
    state = load_checkpoint(run / "checkpoint.pt", "search")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert len((run / "log.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(SearchTrainer, "weight_loss", real)
    # Resume changes where and how fast a run computes, never its arithmetic.
    for key in ("runtime.channels_last=false", "runtime.amp=false", "weights.lr=0.01"):
        assert "cannot change" in _fail(["--resume", str(run), "--set", key], capsys)
    main(["--resume", str(run)])  # and the kept checkpoint really continues
    assert len((run / "log.jsonl").read_text().splitlines()) == 2


def test_entry_script_error_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([str(ROOT / "run_search.sh"), str(tmp_path / "nope")], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "neither one of" in r.stderr
    assert r.stdout == "" and not (tmp_path / "runs").exists()


# --- what a new user hits on the first day ---------------------------------------------------

def test_unrolled_is_order_second(capsys):
    main(["--print-config", "--unrolled"])
    assert yaml.safe_load(capsys.readouterr().out)["arch"]["order"] == "second"
    err = _fail(["--print-config", "--unrolled", "--order", "first"], capsys)
    assert "--unrolled is DARTS's name for --order second" in err


def test_misspelt_dataset_name_suggests(tmp_path, capsys):
    err = _fail(["cifr10", "--out", str(tmp_path / "run")], capsys)
    assert "did you mean cifar10?" in err and not (tmp_path / "run").exists()


def test_retrain_hint_carries_data_root_of_named_datasets():
    g = Path("runs/s/genotype.json")
    hint = retrain_command(g, "cifar10", "smoke", "/datasets")
    assert hint.endswith("--dataset cifar10 --preset smoke --data-root /datasets")
    assert hint.startswith(f"{shlex.quote(sys.executable)} -m retrain --genotype {g}")
    assert "--data-root" not in retrain_command(g, "cifar10", "paper", "data")  # the default
    assert "--data-root" not in retrain_command(g, "/imgs/flowers", "paper", "/datasets")
    # The thread count a search was given goes with it; one it chose stays the retrain's choice.
    assert retrain_command(g, "cifar10", "smoke", "data", 3).endswith("--preset smoke --threads 3")
    assert "--threads" not in retrain_command(g, "cifar10", "smoke", "data", None)


@pytest.mark.slow
def test_ctrl_c_says_what_is_kept(folder, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real = SearchTrainer.train_epoch

    def interrupted_at(stop: int):
        def train_epoch(self, epoch, show=True):
            if epoch >= stop:
                raise KeyboardInterrupt
            return real(self, epoch, show)
        return train_epoch

    def ctrl_c(argv: list[str]) -> str:
        return one_line_exit(main, argv, capsys, code=130)

    argv = [str(folder), *TINY, "--epochs", "2", "--out", str(run), "--set", "runtime.plot=false"]
    # In the first epoch: nothing to resume, and the message says how to start again.
    monkeypatch.setattr(SearchTrainer, "train_epoch", interrupted_at(0))
    err = ctrl_c(argv)
    assert "no checkpoint yet" in err and f"--out {run} --overwrite" in err
    assert "continue with --resume" not in err
    assert "no checkpoint.pt yet" in _fail(["--resume", str(run)], capsys)  # as it said
    # In the second: the first epoch's checkpoint is kept. Started by run_search.sh, the
    # run records that command.
    monkeypatch.setenv("DFS_LAUNCHER", "./run_search.sh")
    monkeypatch.setattr(SearchTrainer, "train_epoch", interrupted_at(1))
    err = ctrl_c(argv + ["--overwrite"])
    assert f"continue with --resume {run}" in err and "checkpoint.pt" in err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["command"] == shlex.join(["./run_search.sh", *argv, "--overwrite"])
    assert saved["search"]["runtime"]["threads"] == 1 and saved["search"]["data"]["workers"] == 0
    # A corrupt checkpoint names the file and says what to do (not "use another file").
    (run / "checkpoint.pt").write_bytes(b"\x00" * 64)
    err = _fail(["--resume", str(run)], capsys)
    assert f"cannot resume {run}: checkpoint.pt is not a readable checkpoint" in err
    assert f"--out {run} --overwrite" in err and "another file" not in err


def test_ratio_list_slip_and_argparse_errors_are_one_line(folder, capsys):
    err = _fail([str(folder), "--ratio", "1,2,4,8"], capsys)
    assert "use --ratios 1,2,4,8" in err
    assert "a ratio is a number >= 1, not 'two'" in _fail([str(folder), "--ratio", "two"], capsys)
    err = _fail([str(folder), "--algo", "pcdarts"], capsys)
    assert "invalid choice: 'pcdarts'" in err and "--help" in err
