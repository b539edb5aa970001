"""`python -m retrain` and `python -m retrain.evaluate`: summary, a tiny training run with
every output file, and one clear line (exit status 2, nothing lost) for each user error."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from cli_exits import one_line_exit
from PIL import Image
from run_files import run_files_outside_the_list

from retrain import load_exported
from retrain.cli import main
from retrain.evaluate import main as evaluate_main
from retrain.trainer import Trainer
from search.cli import main as search_main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=3", "--batch-size", "8",
        "--threads", "1", "--set", "data.workers=0"]
LOG_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr",
            "drop_path_prob", "hardened", "offset_entropy", "seconds", "images_per_s",
            "threads"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def make_folder(root: Path, per_class: int = 12, test_per_class: int = 4, size: int = 12) -> Path:
    """A 3-class ImageFolder of colour-coded noise (learnable in a few steps)."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in range(3):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = torch.rand(size, size, 3, generator=g) * 0.5
                img[..., c] += 0.5
                arr = (img * 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("tiny"))


def _fail(capsys, argv, fn=main) -> str:
    return one_line_exit(fn, argv, capsys)


def test_summary_table_and_json(capsys):
    small = ["--set", "init_channels=16", "--set", "layers=8"]
    assert main(["--genotype", "DARTS_V2", "--summary", *small]) == 0
    out = capsys.readouterr().out
    assert "cells.7" in out and "246,106" in out and "DFS ratio 2" in out
    assert main(["--genotype", "DARTS_V2", "--summary", "--json", "--fs", "off", *small]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["totals"]["params"] == rep["totals"]["uncompressed"] == 246_106
    assert main(["--genotype", "PDARTS", "--summary", "--json", "--ratio", "4", *small,
                 "--dataset", "cifar100"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["network"]["num_classes"] == 100 and rep["totals"]["compression"] > 2.2


def test_summary_with_per_op_ratios(capsys, tmp_path):
    """A genotype with per-op FS ratios: the summary's network is built with them (what it
    reports equals the summary of that NetSpec), the header lists them, and --ratio R makes
    R the one ratio everywhere."""
    import dataclasses

    from genotypes import ZOO, FSSpec, save_genotype
    from retrain.model import NetSpec
    from retrain.outputs import run_genotype_lines
    from retrain.summary import summarize

    fs = FSSpec(2.0, True, 4, normal_ratios=(None, 8, None, 1, 4, 8, 1.5, None),
                reduce_ratios=(None, 8, 4, 2, None, 1, 2, 4))
    g = dataclasses.replace(ZOO["PDARTS"], fs=fs)
    path = save_genotype(g, tmp_path / "g.json")
    small = ["--set", "init_channels=8", "--set", "layers=5"]
    assert main(["--genotype", str(path), "--summary", "--json", *small]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["network"]["fs"]["normal_ratios"] == [None, 8.0, None, 1.0, 4.0, 8.0, 1.5, None]
    want = summarize(NetSpec(g, 8, 5, 10, (32, 32), fs=fs))["totals"]
    assert rep["totals"]["fs"] == want["fs"] and rep["totals"]["effective"] == want["effective"]
    assert main(["--genotype", str(path), "--summary", *small]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.endswith("1x1 convs: DFS ratio 2, 4 offsets (cell inputs; ops normal "
                         "[-, 8, -, 1, 4, 8, 1.5, -], reduce [-, 8, 4, 2, -, 1, 2, 4])")
    assert main(["--genotype", str(path), "--summary", "--json", "--ratio", "4", *small]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["network"]["fs"] == {"ratio": 4.0, "dfs": True, "num_offsets": 4}
    one = summarize(NetSpec(g, 8, 5, 10, (32, 32), fs=FSSpec(4.0, True, 4)))["totals"]
    assert rep["totals"]["fs"] == one["fs"] != want["fs"]
    # The training banner's fs line: the hardening note, then the per-op ratios.
    lines = run_genotype_lines(g, NetSpec(g, 8, 5, 10, (32, 32), fs=fs), 3, 6)
    assert lines[1] == ("fs: ratio 2, DFS, 4 offsets (offsets fixed from epoch 4); per op: "
                        "normal [-, 8, -, 1, 4, 8, 1.5, -], reduce [-, 8, 4, 2, -, 1, 2, 4]")


def test_imagenet_summary_uses_imagenet_stems_and_widths(capsys):
    assert main(["--genotype", "DARTS_V2", "--summary", "--json", "--dataset", "imagenet",
                 "--fs", "off", "--set", "layers=5", "--set", "imagenet.init_channels=8"]) == 0
    rep = json.loads(capsys.readouterr().out)
    net = rep["network"]
    assert net["stem"] == "imagenet" and net["init_channels"] == 8 and net["layers"] == 5
    assert net["input_size"] == [224, 224] and rep["rows"][0]["part"] == "stem"


def test_user_errors_are_one_line_and_lose_nothing(capsys, tmp_path, tiny_folder):
    base = ["--dataset", str(tiny_folder), *TINY]
    assert "bad genotype" in _fail(capsys, ["--genotype", "NOT_A_GENOTYPE", *base])
    bad = tmp_path / "bad.json"
    cell = [["conv_9x9", 0], ["skip_connect", 1]] * 4
    bad.write_text(json.dumps({"normal": cell, "normal_concat": [2, 3, 4, 5], "reduce": cell,
                               "reduce_concat": [2, 3, 4, 5]}))
    assert "unknown op 'conv_9x9'" in _fail(capsys, ["--genotype", str(bad), *base])
    assert "neither" in _fail(capsys, ["--genotype", "DARTS_V2", "--dataset", "cifar11"])
    assert "neither" in _fail(capsys, ["--genotype", "DARTS_V2", "--dataset", str(tmp_path / "no")])
    assert "unknown config key 'optimizer.lrr'" in _fail(
        capsys, ["--genotype", "DARTS_V2", *base, "--set", "optimizer.lrr=0.1"])
    assert "unknown preset" in _fail(capsys, ["--genotype", "DARTS_V2", *base, "--preset", "nope"])
    assert "--ratio" in _fail(capsys, ["--genotype", "DARTS_V2", *base, "--fs", "off",
                                       "--ratio", "2"])
    assert "cannot build" in _fail(capsys, ["--genotype", "DARTS_V2", *base, "--ratio", "99"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    for overwrite in ([], ["--overwrite"]):  # a folder that is not a run is never touched
        err = _fail(capsys, ["--genotype", "DARTS_V2", *base, "--out", str(run), *overwrite])
        assert "not a run directory" in err and "--resume" not in err
        assert (run / "precious.txt").read_text() == "keep me" and len(list(run.iterdir())) == 1
    assert "not a retrain run" in _fail(capsys, ["--resume", str(run)])
    assert "needs --genotype" in _fail(capsys, ["--dataset", str(tiny_folder)])
    assert "does not exist" in _fail(capsys, [str(tmp_path / "none.pt"), "--dataset", "cifar10"],
                                     evaluate_main)


def test_error_exit_status_in_a_real_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "retrain", "--genotype", "DARTS_V2", "--dataset",
                        str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")


@pytest.mark.slow
def test_tiny_run_writes_every_file_and_evaluate_reproduces_it(capsys, tmp_path, tiny_folder):
    out = tmp_path / "run"
    argv = ["--genotype", "PC_DARTS", "--dataset", str(tiny_folder), *TINY, "--epochs", "2",
            "--out", str(out)]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "genotype.json", "log.jsonl", "latest.pt", "best.pt", "model.pt",
            "model-wq.pt", "model.onnx", "metrics.json"} <= names
    assert run_files_outside_the_list(out) == []  # --overwrite can clear all it wrote
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and all(LOG_KEYS <= set(r) for r in log)
    assert [r["hardened"] for r in log] == [False, True]  # default: hardened at half
    # The offsets' entropy at hardening (the epoch before), below ln M = ln 4 once learned.
    assert 0.0 < log[0]["offset_entropy"] <= math.log(4) + 1e-6 and log[1]["offset_entropy"] is None
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_acc"] == log[-1]["test_acc"] and m["test_images"] == 12
    assert m["test_acc_onnx"] == m["test_acc"]  # model.onnx in onnxruntime
    assert m["file_bytes"]["model.pt"] == (out / "model.pt").stat().st_size
    assert {"params", "effective", "effective_wq", "uncompressed", "compression", "macs"} <= set(
        m["counts"])
    capsys.readouterr()
    assert evaluate_main([str(out / "model.pt"), "--dataset", str(tiny_folder), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["top1"] == m["test_acc"] and ev["images"] == 12
    net = load_exported(out / "model-wq.pt")
    assert net(torch.zeros(1, 3, 12, 12))[0].shape == (1, 3)
    # The run's config.yaml is a preset that reproduces the run's settings, and with the
    # dataset the summary's predicted sizes are the files' sizes, to the byte.
    assert main(["--genotype", str(out), "--summary", "--json", "--preset",
                 str(out / "config.yaml"), "--dataset", str(tiny_folder)]) == 0
    t = json.loads(capsys.readouterr().out)["totals"]
    assert t["file_bytes_exact"] and t["file_bytes"] == (out / "model.pt").stat().st_size
    assert t["file_bytes_wq"] == (out / "model-wq.pt").stat().st_size
    assert main(["--genotype", str(out), "--summary", "--preset", str(out / "config.yaml")]) == 0
    assert "model.pt about " in capsys.readouterr().out  # no dataset: labelled as estimates
    assert "already exists" in _fail(capsys, argv)


# --- what a new user hits on the first day ---------------------------------------------------

def test_darts_habits_arch_and_print_config(capsys):
    assert main(["--arch", "DARTS_V2", "--summary", "--json", "--set", "layers=5",
                 "--set", "init_channels=8"]) == 0
    assert json.loads(capsys.readouterr().out)["network"]["layers"] == 5
    assert main(["--print-config", "--preset", "smoke", "--epochs", "3", "--ratio", "4"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["epochs"] == 3 and cfg["init_channels"] == 16 and cfg["fs"]["ratio"] == 4
    assert cfg["runtime"]["threads"] is None and cfg["data"]["workers"] is None  # chosen at start
    assert main(["--print-config", "--dataset", "imagenet"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["epochs"] == 250  # its imagenet section


def test_search_and_retrain_word_errors_alike(capsys, tiny_folder):
    retrain_err = _fail(capsys, ["--genotype", "DARTS_V2", "--summary", "--ratio", "0.5"])
    search_err = _fail(capsys, [str(tiny_folder), "--ratio", "0.5"], search_main)
    assert retrain_err == search_err and "FS ratio 0.5 is invalid" in retrain_err
    err = _fail(capsys, ["--genotype", "DARTS_V2", "--dataset", "cifr10"])
    assert err == _fail(capsys, ["cifr10"], search_main) and "did you mean cifar10?" in err


@pytest.mark.slow
def test_ctrl_c_resume_times_and_corrupt_checkpoint(capsys, tmp_path, tiny_folder, monkeypatch):
    out = tmp_path / "run"
    argv = ["--genotype", "DARTS_V2", "--dataset", str(tiny_folder), *TINY, "--epochs", "2",
            "--out", str(out)]
    real = Trainer.train_epoch

    def interrupted_at(stop: int):
        def train_epoch(self, epoch):
            if epoch >= stop:
                time.sleep(1.0)  # time lost in the interrupted epoch: never counted
                raise KeyboardInterrupt
            return real(self, epoch)
        return train_epoch

    def ctrl_c(args: list[str]) -> str:
        return one_line_exit(main, args, capsys, code=130)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_at(0))
    err = ctrl_c(argv)
    assert "no checkpoint yet" in err and f"--out {out} --overwrite" in err
    assert "continue with --resume" not in err
    monkeypatch.setattr(Trainer, "train_epoch", interrupted_at(1))
    err = ctrl_c(argv + ["--overwrite"])
    assert f"continue with --resume {out}" in err and "latest.pt" in err
    monkeypatch.setattr(Trainer, "train_epoch", real)
    assert main(["--resume", str(out)]) == 0
    banner = capsys.readouterr().out
    assert "resuming" in banner and "with 1 thread, 0 loader workers" in banner
    assert "\ngenotype: Genotype(normal=[" in banner and "FSSpec" not in banner
    assert "\nfs: ratio 2, DFS, 4 offsets (offsets fixed from epoch 2)\n" in banner
    m = json.loads((out / "metrics.json").read_text())
    epochs = sum(r["seconds"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()))
    assert abs(m["train_seconds"] - epochs) < 0.1 and m["wall_minutes"] >= 0  # sleep not counted
    # A corrupt latest.pt: the error names it and offers best.pt (or starting again).
    (out / "latest.pt").write_bytes(b"\x00" * 64)
    err = _fail(capsys, ["--resume", str(out)])
    assert f"cannot resume {out}: latest.pt is not a readable checkpoint" in err
    assert f"cp {out / 'best.pt'} {out / 'latest.pt'}" in err and "--overwrite" in err


@pytest.mark.slow
def test_nan_stops_and_keeps_last_good_checkpoint(capsys, tmp_path, tiny_folder, monkeypatch):
    """A NaN loss stops the run with one line before the epoch is logged or checkpointed
    (retrain has the search's divergence checks)."""
    from common.checkpoint import load_checkpoint

    out = tmp_path / "run"
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        real = self.criterion
        self.criterion = lambda logits, y: real(logits, y) * (
            float("nan") if self.scheduler.last_epoch >= 1 else 1.0)

    monkeypatch.setattr(Trainer, "__init__", init)
    err = _fail(capsys, ["--genotype", "DARTS_V2", "--dataset", str(tiny_folder), *TINY,
                         "--epochs", "2", "--out", str(out)])
    assert "the retrain diverged at epoch 2/2, batch 1 (training loss is nan)" in err
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    state = load_checkpoint(out / "latest.pt", "retrain")
    assert state["epoch"] == 1 and not (out / "metrics.json").exists()
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.slow
def test_fs_off_run_writes_no_wq_file_and_the_summary_lists_none(capsys, tmp_path, tiny_folder):
    out = tmp_path / "run"
    assert main(["--genotype", "DARTS_V2", "--dataset", str(tiny_folder), *TINY, "--epochs", "1",
                 "--fs", "off", "--out", str(out), "--set", "export.onnx=false"]) == 0
    assert not (out / "model-wq.pt").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["file_bytes"]) == {"model.pt"} and m["test_acc_wq"] is None
    assert "model-wq" not in capsys.readouterr().out
    assert main(["--genotype", "DARTS_V2", "--summary", "--fs", "off"]) == 0
    text = capsys.readouterr().out
    assert "model.pt about" in text and "WQ" not in text and "model-wq" not in text
    assert main(["--genotype", "DARTS_V2", "--summary", "--json", "--fs", "off"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["file_bytes_wq"] is None


@pytest.mark.slow
def test_summary_prints_whole_8bit_figures(capsys):
    """The paper DARTS_V2 network's FS count is not a multiple of 4: its 8-bit size is
    printed in weight bytes (an integer: 1 per FS element, 4 per other parameter)."""
    assert main(["--genotype", "DARTS_V2", "--summary", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["totals"]
    assert t["weight_bytes_wq"] == 4 * (t["effective"] - t["fs"]) + t["fs"]
    assert main(["--genotype", "DARTS_V2", "--summary"]) == 0
    text = capsys.readouterr().out
    assert f"{t['weight_bytes_wq']:,} weight bytes with 8-bit WQ" in text
    assert not re.search(r"\d,\d{3}\.\d", text)  # no fractional parameter counts
