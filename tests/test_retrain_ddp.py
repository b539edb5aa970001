"""DDP: `torch.distributed.run --nproc_per_node 2 -m retrain` on CPU (gloo) trains, reduces
metrics over both ranks exactly, and only rank 0 writes or talks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_retrain_cli import make_folder

from retrain.export import load_exported_full

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run(tmp_path):
    data = make_folder(tmp_path / "data", per_class=12, test_per_class=5)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "retrain", "--genotype", "DARTS_V1",
           "--dataset", str(data), "--preset", "smoke", "--set", "init_channels=4", "--set",
           "layers=3", "--batch-size", "4", "--threads", "1", "--set", "data.workers=0",
           "--epochs", "2", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    # Rank 0 alone prints the epoch lines and writes the files.
    assert r.stdout.count("epoch 1/2  train") == 1 and r.stdout.count("exported") == 1
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log] == [0, 1]
    m = json.loads((out / "metrics.json").read_text())
    # Both ranks' test shards add up to the whole test set, each image once: the sharded
    # evaluation of the last epoch equals rank 0's evaluation of the reloaded export.
    assert m["test_images"] == 15
    assert log[-1]["test_acc"] == m["test_acc"]
    model, spec, info = load_exported_full(out / "model.pt")
    assert spec.num_classes == 3 and info["meta"]["batch_size"] == 4
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".dfs-lock", ".dfs-run",
         "best.pt", "config.yaml", "genotype.json", "latest.pt", "log.jsonl", "metrics.json",
         "model-wq.pt", "model.onnx", "model.pt"])


_ONE_RANK_NAN = """
import os, sys
from retrain.trainer import Trainer
from retrain.cli import main

real_init = Trainer.__init__

def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    real = self.criterion
    poison = os.environ["RANK"] == "1"
    self.criterion = lambda logits, y: real(logits, y) * (
        float("nan") if poison and self.scheduler.last_epoch >= 1 else 1.0)

Trainer.__init__ = init
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(tmp_path):
    """A loss that goes NaN on rank 1 only stops both ranks in the same step with the one-line
    divergence error: rank 0 sees it through the averaged gradients. (Before, rank 1 alone
    stopped, and rank 0 went on with NaN weights until torchrun killed it.)"""
    data = make_folder(tmp_path / "data", per_class=12, test_per_class=5)
    out = tmp_path / "run"
    script = tmp_path / "poisoned_retrain.py"
    script.write_text(_ONE_RANK_NAN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(script), "--genotype", "DARTS_V1",
           "--dataset", str(data), "--preset", "smoke", "--set", "init_channels=4", "--set",
           "layers=3", "--batch-size", "4", "--threads", "1", "--set", "data.workers=0",
           "--epochs", "3", "--out", str(out)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode != 0
    # Rank 0 (the one that talks) stops at the same step as the poisoned rank.
    assert "the retrain diverged at epoch 2/3, batch 1 (the weight gradients' norm is nan" in r.stderr
    assert len((out / "log.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_two_process_run_of_a_converted_network_hardens_under_ddp(tmp_path):
    """A registered network with DFS layers: hardening mid-run replaces parameters, so DDP is
    wrapped again; both ranks go on and rank 0 exports the hardened network."""
    data = make_folder(tmp_path / "data", per_class=12, test_per_class=5)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "retrain", "--model", "resnet8", "--set",
           "model.width=4", "--fs", "dfs", "--ratio", "2", "--dataset", str(data), "--preset",
           "cnn-subset", "--batch-size", "4", "--threads", "1", "--set", "data.workers=0",
           "--epochs", "2", "--set", "fs.harden_epoch=1", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["hardened"] for x in log] == [False, True]
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_images"] == 15 and log[-1]["test_acc"] == m["test_acc"]
    _, spec, _ = load_exported_full(out / "model.pt")
    assert spec.model == "resnet8" and spec.conversion["mode"] == "fs"
